/* Admin routes for trust policies as a whole: POST /v1/policy/test (explain a decision against
 * the set this replica serves) and POST /v1/policy/apply (the GitOps batch). The worker-side
 * halves run after admin_authorize (admin.c). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "admin.h"
#include "admin_int.h"
#include "apply.h"
#include "bounds.h"
#include "explain.h"
#include "issuers.h"
#include "jwt.h"
#include "policy.h"
#include "state.h"
#include "store.h"

struct test_keys {
    struct issuer_keys *k;
};

static const struct jwks *on_test_keys(void *ctx, const struct issuer_cfg *issuer)
{
    struct test_keys *x = ctx;
    if (x->k == NULL)
        x->k = issuers_keys_get(issuer->url); /* the keys this replica serves with; never a fetch */
    return x->k != NULL ? issuer_keys_jwks(x->k) : NULL;
}

/* POST /v1/policy/test: the decision and its explanation for a token (or issuer + claims),
 * against the policy set this replica serves. */
void admin_policy_run_test(struct admin_job *j)
{
    if (!j->json_body) {
        admin_job_fail(j, 415, "invalid_request", "Content-Type must be application/json");
        return;
    }
    json_t *body = j->body ? jwt_json_load_strict((const uint8_t *)j->body, j->body_len, BROKER_MAX_JSON_DEPTH) : NULL;
    struct policy_set *set = state_policy_get();
    struct test_keys keys = {0};
    char err[512] = "";
    int status = 500;
    json_t *res = NULL;
    if (!json_is_object(body))
        admin_job_fail(j, 400, "invalid_request",
                       "the body must be a JSON object: {\"token\"} or {\"issuer\", \"claims\"}");
    else if (set == NULL)
        admin_job_fail(j, 503, "temporarily_unavailable", "trust policies are not loaded yet");
    else if ((res = explain_api(set, body, (int64_t)time(NULL), admin_issuer(), on_test_keys, &keys, &status, err,
                                sizeof(err))) == NULL)
        admin_job_fail(j, status, status == 400 ? "invalid_request" : "server_error", "%s",
                       err[0] ? err : "internal error");
    else
        admin_job_json(j, 200, res);
    if (keys.k != NULL)
        issuer_keys_unref(keys.k);
    if (set != NULL)
        policy_set_unref(set);
    json_decref(body);
}

/* The first member of an apply body that is none of its four, NULL when there is none: a
 * misspelt "identites" must not be an apply that silently changes nothing. */
static const char *apply_unknown_key(const json_t *body)
{
    static const char *const known[] = {"issuers", "identities", "prune", "dry_run"};
    const char *key;
    const json_t *v;
    json_object_foreach ((json_t *)body, key, v) {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok)
            return key;
    }
    return NULL;
}

/* POST /v1/policy/apply: {"issuers":[...], "identities":[...], "prune", "dry_run"} — the GitOps
 * batch of `broker policy apply --server`, validated whole and written in one transaction. */
void admin_policy_run_apply(struct store *st, struct admin_job *j)
{
    json_t *body = j->body ? jwt_json_load_strict((const uint8_t *)j->body, j->body_len, BROKER_MAX_JSON_DEPTH) : NULL;
    json_t *iss = json_object_get(body, "issuers"), *ids = json_object_get(body, "identities");
    json_t *prune = json_object_get(body, "prune"), *dry = json_object_get(body, "dry_run");
    json_t *changes = json_array();
    const char *unknown = json_is_object(body) ? apply_unknown_key(body) : NULL;
    char err[1024];
    if (!j->json_body)
        admin_job_fail(j, 415, "invalid_request", "Content-Type must be application/json");
    else if (unknown != NULL)
        admin_job_fail(j, 400, "invalid_request",
                       "unknown field \"%.*s\" (the body is {\"issuers\", \"identities\", \"prune\", \"dry_run\"})",
                       BROKER_MAX_NAME_LEN, unknown);
    else if (!json_is_object(body) || (iss && !json_is_array(iss)) || (ids && !json_is_array(ids)) ||
             (prune && !json_is_boolean(prune)) || (dry && !json_is_boolean(dry)))
        admin_job_fail(
            j, 400, "invalid_request",
            "the body must be {\"issuers\": [...], \"identities\": [...], \"prune\": bool, \"dry_run\": bool}");
    else if (changes == NULL)
        admin_job_fail(j, 500, "server_error", "out of memory");
    else {
        enum broker_err e = apply_documents(st, j->who, iss, ids, json_is_true(prune), json_is_true(dry), true, changes,
                                            err, sizeof(err));
        if (e == BROKER_ERR_INVALID_DOCUMENT)
            admin_job_fail(j, 400, "invalid_request", "refused, nothing changed: %s", err);
        else if (e != BROKER_OK)
            admin_job_store_fail(j, st, e);
        else {
            if (!json_is_true(dry))
                state_kick(); /* this replica reloads now; the others within 250 ms */
            admin_job_json(j, 200, json_pack("{s:O, s:b}", "changes", changes, "dry_run", json_is_true(dry)));
        }
    }
    json_decref(changes);
    json_decref(body);
}

int admin_policy_apply(struct http_request *r)
{
    return admin_submit(r, OP_POLICY_APPLY, NULL, NULL);
}

int admin_policy_test(struct http_request *r)
{
    return admin_submit(r, OP_POLICY_TEST, NULL, NULL);
}
