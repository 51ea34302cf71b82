/* Per-identity rate limits ("rate_limit" in identity documents): token buckets shared by the
 * event loops of this replica. The configured rate is for the whole deployment; each replica
 * enforces its fair share (rate / live replicas), so no request needs a database round trip. */
#ifndef BROKER_IDLIMIT_H
#define BROKER_IDLIMIT_H
#include <stdbool.h>
#include <stdint.h>

/* Live replicas sharing the limits (from the state thread's heartbeat); at least 1. */
void idlimit_set_replicas(unsigned n);
unsigned idlimit_replicas(void);
/* Take one exchange for identity. false when limited; *retry_after_s (>= 1) is then set. */
bool idlimit_take(const char *identity, uint32_t per_minute, uint32_t burst, uint64_t now_us, unsigned *retry_after_s);

#endif
