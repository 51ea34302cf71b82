/* A bearer token kept in a file (Kubernetes projected service-account tokens): read for every use,
 * because such tokens rotate. Shared by the issuer key fetcher and TokenReview.
 * Only files the operator allowed in BROKER_BEARER_TOKEN_FILES are ever read: issuer documents come
 * from admins (or straight from PostgreSQL), and a file's contents are sent to a URL of theirs. */
#ifndef BROKER_BEARER_H
#define BROKER_BEARER_H
#include <stdbool.h>
#include <stddef.h>
#include "err.h"

enum bearer_result {
    BEARER_OK,
    BEARER_NOT_ALLOWED, /* the path, or the file it resolves to, is outside BROKER_BEARER_TOKEN_FILES */
    BEARER_UNREADABLE,  /* missing, not a regular file, empty, too large or not a token */
};

/* BROKER_BEARER_TOKEN_FILES: comma-separated absolute paths; an entry ending in '/' allows every
 * file below that directory (any depth: Kubernetes projects tokens through "..data/" symlinks).
 * Entries must be normalised (no "//", "/./", "/../", trailing "/." or "/.."). NULL or "" allows
 * nothing. Call before any reader thread starts (start-up, or a CLI command, or a test). */
enum broker_err bearer_allowlist_set(const char *spec, char *err, size_t errlen) BROKER_WUR;

/* The path as written is normalised and allowed by an entry (no file system access: the answer
 * says nothing about whether the file exists). */
bool bearer_path_allowed(const char *path);

/* Read an allowed regular file (opened non-blocking: a FIFO or device cannot stall the caller) into
 * buf. The path must be allowed as written and the file actually opened (symlinks resolved) must be
 * allowed by an entry's resolved form too; a refusal is logged with the path, never the contents.
 * cap is the buffer size, one more than the largest token accepted (a file that fills buf is too
 * large). Trailing whitespace is dropped (files end with a newline); what remains must be
 * non-empty visible ASCII, since it goes into a header. The caller wipes buf. */
enum bearer_result bearer_file_read(const char *path, char *buf, size_t cap, size_t *len);

#endif
