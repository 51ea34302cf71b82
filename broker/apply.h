/* Applying a batch of trust policy documents: the whole resulting set is validated, then written
 * in one transaction (all or nothing). Shared by `broker policy apply` and POST /v1/policy/apply;
 * the validation (apply_check_set) is also the admin API's for PUT and DELETE of one document. */
#ifndef BROKER_APPLY_H
#define BROKER_APPLY_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "err.h"
#include "store.h"

struct apply_check {
    const json_t *incoming;   /* array of the issuer documents being written (their files are checked); NULL: none */
    bool broker_host;         /* running in the broker (admin API): bearer_token_file is checked and read too */
};

/* Everything a replica's reload checks before serving a set (policy_set_build, then issuers_check:
 * inline jwks and jwks_file parsed into keys, each url once), plus, for arg's incoming documents
 * (a struct apply_check *, may be NULL), that jwks_file / ca_file / bearer_token_file are absolute
 * and readable. BROKER_ERR_INVALID_DOCUMENT (or the key loader's error) with err naming the
 * document and the problem. The signature of struct store_doc_check's fn. */
enum broker_err apply_check_set(void *arg, const json_t *issuers, const json_t *identities, char *err,
                                size_t errlen) BROKER_WUR;

/* issuers / identities: arrays of documents (NULL: that kind untouched, not pruned either).
 * BROKER_ERR_INVALID_DOCUMENT with err set when the resulting set, as it is inside the write's
 * transaction, fails apply_check_set (nothing written; a dry run is checked too). broker_host:
 * see struct apply_check. Appends {"kind","name","change","before","after"} to changes
 * (before/after: the documents, null when absent). actor is recorded in audit_changes. */
enum broker_err apply_documents(struct store *st, const char *actor, const json_t *issuers, const json_t *identities,
                                bool prune, bool dry_run, bool broker_host, json_t *changes, char *err,
                                size_t errlen) BROKER_WUR;

#endif
