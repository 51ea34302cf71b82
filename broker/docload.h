/* Trust policy documents read from files, for the CLI commands (apply, lint, test). */
#ifndef BROKER_DOCLOAD_H
#define BROKER_DOCLOAD_H
#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>

struct docset {
    json_t *issuers, *identities;          /* the documents */
    json_t *issuer_files, *identity_files; /* the file each document came from (parallel arrays) */
    json_t *bad;                           /* [{"file","message"}]: files that are not documents */
    size_t nfiles;                         /* files read */
};

/* 0, or -1 when out of memory. */
int docset_init(struct docset *d);
void docset_clear(struct docset *d);
/* Load a file, or a directory's *.json files (sorted, not recursive: examples/ stays out).
 * Relative jwks_file, ca_file and bearer_token_file of issuer documents become absolute against
 * the document's directory, so every replica reads the same file. A file that is not a document
 * (bad JSON, duplicate keys, too large, neither kind) is written to err and fails (-1), or with
 * collect_bad is recorded in d->bad and skipped. I/O errors: -1, written to err. */
int docset_load_path(struct docset *d, const char *path, bool collect_bad, FILE *err);

#endif
