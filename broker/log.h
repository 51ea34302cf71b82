/* Structured one-line logs to stderr (logfmt). Never pass a token, a body or a secret. */
#ifndef BROKER_LOG_H
#define BROKER_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level lvl);
/* msg is a short event name; fmt adds key=value pairs. */
void log_msg(enum log_level lvl, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Shorten a value for logs: first 8 characters then "…" (for jti, kid and ids, never tokens). */
const char *log_abbrev(const char *s, char buf[16]);

#endif
