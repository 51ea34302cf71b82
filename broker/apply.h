/* Applying a batch of trust policy documents: the whole resulting set is validated, then written
 * in one transaction (all or nothing). Shared by `broker policy apply` and POST /v1/policy/apply. */
#ifndef BROKER_APPLY_H
#define BROKER_APPLY_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "err.h"
#include "store.h"

/* issuers / identities: arrays of documents (NULL: that kind untouched, not pruned either).
 * BROKER_ERR_INVALID_DOCUMENT with err set when the resulting set would not build (nothing
 * written). Appends {"kind","name","change","before","after"} to changes (before/after: the
 * documents, null when absent). actor is recorded in audit_changes. */
enum broker_err apply_documents(struct store *st, const char *actor, const json_t *issuers, const json_t *identities,
                                bool prune, bool dry_run, json_t *changes, char *err, size_t errlen) BROKER_WUR;

#endif
