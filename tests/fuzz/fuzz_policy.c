// SOURCES: broker/policy_doc.c broker/policy_preset.c broker/policy_eval.c broker/policy_cond.c broker/glob.c broker/cidr.c broker/err.c
/* libFuzzer target: trust policy documents. An object is parsed both as an issuer and as an identity
 * document (invariants checked on success, a message and a cleared struct on failure) and, when it
 * is a valid identity, built into a set and evaluated against fixed tokens. An array
 * [issuers, identities, claims?] goes through policy_set_build and policy_eval. Evaluation is run
 * with and without explanation; both must decide the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_issuer(const struct issuer_cfg *c)
{
    if (!c->name || !c->url || !c->doc || c->algs == 0 || c->leeway_s < 0 || c->leeway_s > 300)
        abort();
    if (c->jwks_inline && c->jwks_file)
        abort();
}

static void check_identity(const struct identity *id)
{
    if (!id->name || id->naudiences == 0 || id->ntrust == 0 || id->ntrust > BROKER_MAX_POLICIES_PER_IDENTITY ||
        !id->doc || id->ttl_s <= 0 || id->ttl_s > id->max_ttl_s || id->max_ttl_s > BROKER_MAX_TTL_S)
        abort();
    for (size_t i = 0; i < id->ntrust; i++) {
        const struct trust_policy *tp = &id->trust[i];
        if (!tp->name || !tp->issuer || (!tp->subject && tp->nclaims == 0) || tp->ttl_s > id->max_ttl_s)
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(id->trust[j].name, tp->name) == 0)
                abort();
    }
}

static void check_cleared(const void *p, size_t n, const char *err)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            abort();
    if (err[0] == 0)
        abort();
}

static void eval_both(const struct policy_set *s, const struct issuer_cfg *iss, const json_t *claims,
                      const char *identity)
{
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr = {.s_addr = htonl(0x0a000001)}};
    struct policy_input in = {
        .issuer = iss,
        .claims = claims,
        .identity = identity,
        .peer = (const struct sockaddr *)&peer,
        .default_audience = "https://broker",
    };
    struct policy_result a, b;
    json_t *explain = json_array();
    enum broker_err ra = policy_eval(s, &in, &a, NULL);
    enum broker_err rb = policy_eval(s, &in, &b, explain);
    if (explain && rb != BROKER_ERR_NOMEM) {
        if (ra != rb || a.identity != b.identity || a.policy != b.policy || strcmp(a.scope, b.scope) != 0)
            abort();
    }
    if (ra == BROKER_OK && (!a.identity || !a.policy || !a.audience || a.ttl_s <= 0 || a.ttl_s > a.identity->max_ttl_s))
        abort();
    json_decref(explain);
}

static const char *const claim_texts[] = {
    "{\"aud\": \"https://broker\", \"sub\": \"x\", \"repository_id\": \"1\", \"groups\": [\"a\", 2, true, null, {}],"
    " \"kubernetes.io\": {\"namespace\": \"default\"}}",
    "{\"aud\": [\"https://broker\"], \"sub\": [\"x\", \"y\"], \"n\": 1.5}",
    "{\"aud\": \"other\"}",
};

static void eval_fixed(const struct policy_set *s, const char *identity)
{
    for (size_t k = 0; k < policy_set_issuer_count(s); k++) {
        for (size_t i = 0; i < sizeof(claim_texts) / sizeof(claim_texts[0]); i++) {
            json_t *claims = json_loads(claim_texts[i], 0, NULL);
            if (claims)
                eval_both(s, policy_set_issuer_at(s, k), claims, identity);
            json_decref(claims);
        }
    }
}

static void fuzz_object(const json_t *doc)
{
    char err[256];
    struct issuer_cfg ic;
    struct identity id;

    (void)policy_doc_kind(doc);
    err[0] = 0;
    if (policy_issuer_parse(doc, &ic, err, sizeof(err)) == BROKER_OK) {
        check_issuer(&ic);
        policy_issuer_clear(&ic);
    } else {
        check_cleared(&ic, sizeof(ic), err);
    }
    err[0] = 0;
    if (policy_identity_parse(doc, &id, err, sizeof(err)) != BROKER_OK) {
        check_cleared(&id, sizeof(id), err);
        return;
    }
    check_identity(&id);

    /* a set with every issuer the identity names, then evaluation against fixed tokens */
    json_t *issuers = json_array(), *ids = json_array();
    for (size_t i = 0; issuers && i < id.ntrust; i++) {
        if (i > 0 && strcmp(id.trust[i].issuer, id.trust[0].issuer) == 0)
            continue;
        char url[200];
        snprintf(url, sizeof(url), "https://issuer.example/%s", id.trust[i].issuer);
        json_t *d = json_pack("{s:s, s:s}", "issuer", id.trust[i].issuer, "url", url);
        json_array_append_new(issuers, d);
    }
    json_array_append(ids, (json_t *)doc);
    struct policy_set *s = NULL;
    if (policy_set_build(issuers, ids, &s, err, sizeof(err)) == BROKER_OK) {
        eval_fixed(s, NULL);
        eval_fixed(s, id.name);
        policy_set_unref(s);
    }
    json_decref(issuers);
    json_decref(ids);
    policy_identity_clear(&id);
}

static void fuzz_array(const json_t *arr)
{
    char err[256];
    struct policy_set *s = NULL;
    const json_t *claims = json_array_get(arr, 2);
    if (policy_set_build(json_array_get(arr, 0), json_array_get(arr, 1), &s, err, sizeof(err)) != BROKER_OK) {
        if (s)
            abort();
        return;
    }
    for (size_t k = 0; k < policy_set_issuer_count(s); k++) {
        if (json_is_object(claims)) {
            eval_both(s, policy_set_issuer_at(s, k), claims, NULL);
            if (policy_set_identity_count(s) > 0)
                eval_both(s, policy_set_issuer_at(s, k), claims, policy_set_identity_at(s, 0)->name);
        }
    }
    eval_fixed(s, NULL);
    policy_set_unref(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (json_is_object(doc))
        fuzz_object(doc);
    else if (json_is_array(doc))
        fuzz_array(doc);
    json_decref(doc);
    return 0;
}
