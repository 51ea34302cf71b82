/* A bearer token kept in a file (Kubernetes projected service-account tokens): read for every use,
 * because such tokens rotate. Shared by the issuer key fetcher and TokenReview. */
#ifndef BROKER_BEARER_H
#define BROKER_BEARER_H
#include <stdbool.h>
#include <stddef.h>

/* Read a regular file (opened non-blocking: a FIFO or device cannot stall the caller) into buf.
 * cap is the buffer size, one more than the largest token accepted (a file that fills buf is too
 * large). Trailing whitespace is dropped (files end with a newline); what remains must be
 * non-empty visible ASCII, since it goes into a header. The caller wipes buf. */
bool bearer_file_read(const char *path, char *buf, size_t cap, size_t *len);

#endif
