/* Trust policy documents: validation, an indexed immutable policy set, and pure evaluation
 * with explanation. No I/O, no clock, no globals. Default deny. */
#ifndef BROKER_POLICY_H
#define BROKER_POLICY_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <regex.h>
#include <sys/socket.h>
#include <jansson.h>
#include "err.h"
#include "bounds.h"
#include "cidr.h"

enum cond_op { COND_EQUALS = 1, COND_IN, COND_GLOB, COND_REGEX, COND_NOT };

/* Scalars (strings, numbers, booleans) are held and compared as their canonical text: the string
 * itself, integers in decimal, reals in the shortest form that round-trips, "true"/"false". */
struct cond {
    enum cond_op op;
    char *value;          /* equals (canonical text), glob, regex (source text) */
    size_t value_len;
    char **list;          /* in (canonical text) */
    size_t *list_len;
    size_t nlist;
    regex_t re;           /* regex, compiled as "^(" src ")$": POSIX ERE anchored to the whole string */
    struct cond *inner;   /* not */
};

struct claim_cond {
    char *claim;          /* as written: "repository_id" or "/kubernetes.io/namespace" */
    struct cond cond;
};

struct claim_mapping {
    char *from;           /* claim name or JSON Pointer in the subject token */
    char *to;             /* key in the minted token's "ext" */
};

struct trust_policy {
    char *name;
    char *issuer;         /* issuer document name */
    char *audience;       /* NULL: the broker's own issuer URL */
    struct cond *subject; /* NULL: not bound */
    struct claim_cond *claims;
    size_t nclaims;
    char **scopes;        /* NULL: every scope of the identity */
    size_t nscopes;
    int64_t ttl_s;        /* 0: unset */
    struct cidr *cidrs;   /* NULL: any source */
    size_t ncidrs;
    struct claim_mapping *mappings;
    size_t nmappings;
    bool single_use;
};

struct identity {
    char *name;
    char *description;
    char **scopes;
    size_t nscopes;
    char **audiences;     /* at least one */
    size_t naudiences;
    int64_t ttl_s;        /* default BROKER_DEFAULT_TTL_S */
    int64_t max_ttl_s;    /* default 3600 */
    uint32_t rate_per_minute; /* "rate_limit": exchanges per minute across all replicas; 0: none */
    uint32_t rate_burst;      /* bucket size; default rate_per_minute */
    struct trust_policy *trust;
    size_t ntrust;
    json_t *doc;          /* the validated document, owned */
};

struct issuer_cfg {
    char *name;
    char *url;            /* exact iss */
    char *jwks_uri;       /* NULL: discovery from url */
    char *jwks_inline;    /* JSON text of an inline "jwks", or NULL */
    char *jwks_file;      /* path, or NULL */
    char *ca_file;        /* PEM bundle, or NULL: system store */
    char *bearer_token_file; /* sent as Authorization: Bearer when fetching keys (Kubernetes), or NULL;
                                re-read at each fetch (issuers_fetch.c) */
    uint32_t algs;        /* JWT_ALG_BIT mask; never HMAC; default RS256 */
    int64_t leeway_s;     /* default 60 */
    char *token_review_url; /* "token_review": the Kubernetes TokenReview endpoint
                               (<url>/apis/authentication.k8s.io/v1/tokenreviews), or NULL: no review */
    int64_t token_review_cache_s; /* how long a review's answer is reused: 0..60, default 5 */
    json_t *doc;          /* the validated document, owned */
};

struct policy_set;        /* immutable once built; shared by reference */

/* Validate one document. err receives "field: what is wrong" on failure. */
enum broker_err policy_issuer_parse(const json_t *doc, struct issuer_cfg *out, char *err, size_t errlen) BROKER_WUR;
void policy_issuer_clear(struct issuer_cfg *c);
enum broker_err policy_identity_parse(const json_t *doc, struct identity *out, char *err, size_t errlen) BROKER_WUR;
void policy_identity_clear(struct identity *id);
/* "issuer" or "identity" by the document's discriminating key, NULL otherwise. */
const char *policy_doc_kind(const json_t *doc);

/* Build a set from arrays of issuer and identity documents; the whole set is validated
 * (cross references: each trust policy's issuer exists, its scopes are the identity's,
 * names unique). Nothing partial: on error *out is NULL and err names the document. */
enum broker_err policy_set_build(const json_t *issuer_docs, const json_t *identity_docs, struct policy_set **out,
                                 char *err, size_t errlen) BROKER_WUR;
struct policy_set *policy_set_ref(struct policy_set *s);
void policy_set_unref(struct policy_set *s);
const struct issuer_cfg *policy_set_issuer_by_url(const struct policy_set *s, const char *iss);
const struct issuer_cfg *policy_set_issuer_by_name(const struct policy_set *s, const char *name);
size_t policy_set_issuer_count(const struct policy_set *s);
const struct issuer_cfg *policy_set_issuer_at(const struct policy_set *s, size_t i);
size_t policy_set_identity_count(const struct policy_set *s);
const struct identity *policy_set_identity_at(const struct policy_set *s, size_t i);
const struct identity *policy_set_identity_by_name(const struct policy_set *s, const char *name);

struct policy_input {
    const struct issuer_cfg *issuer;  /* the verified token's issuer */
    const json_t *claims;             /* the verified token's claims */
    const char *identity;             /* requested identity or NULL */
    const char *scope;                /* requested space-delimited scopes or NULL */
    const char *audience;             /* requested audience or NULL */
    const struct sockaddr *peer;      /* client address or NULL */
    const char *default_audience;     /* BROKER_ISSUER */
};

struct policy_result {
    const struct identity *identity;  /* matched (borrowed from the set) */
    const struct trust_policy *policy;
    char scope[2048];                 /* granted, space-delimited */
    const char *audience;             /* aud of the minted token */
    int64_t ttl_s;
};

/* Decide. Returns BROKER_OK, BROKER_ERR_NO_MATCH, BROKER_ERR_WRONG_AUDIENCE (no policy matched and
 * every considered policy failed first on audience, which is checked first), BROKER_ERR_AMBIGUOUS_IDENTITY,
 * BROKER_ERR_UNKNOWN_IDENTITY, BROKER_ERR_INVALID_SCOPE or BROKER_ERR_INVALID_TARGET (out->identity and
 * out->policy are set for these two), BROKER_ERR_UNKNOWN_ISSUER (in->issuer->name not in this set),
 * BROKER_ERR_INTERNAL (NULL arguments, claims not an object) or BROKER_ERR_NOMEM (explain only).
 * Conditions: audience, subject, claims in document order, source_cidrs. A missing or null claim
 * never matches, not even under "not"; an array matches when any element does, and "not" negates
 * that ("no element matches"); objects never match.
 * With explain != NULL (a JSON array) it appends, for every identity/policy considered,
 * {"identity","policy","result":"match"|"no_match","first_failed":"..."|null,"conditions":[{"condition",
 * "op","expected","actual","result"}...]} and evaluates every condition; with NULL it stops at the
 * first failure and allocates nothing (the fast path). Both decide the same. Cost does not grow with
 * unrelated identities: without in->identity only the issuer's policies whose subject equals/in the
 * token's sub, plus those with another kind of subject condition, are considered. */
enum broker_err policy_eval(const struct policy_set *s, const struct policy_input *in, struct policy_result *out,
                            json_t *explain) BROKER_WUR;

/* Claim lookup shared with minting: a plain name, or a JSON Pointer when it starts with '/'. */
const json_t *policy_claim_get(const json_t *claims, const char *name);

/* Durations "90s", "15m", "1h" (also "1h30m"); bare integers are refused. */
enum broker_err policy_parse_duration(const char *s, int64_t *out_s) BROKER_WUR;

/* Canonical text of a scalar claim or condition value (see struct cond): strings point into v,
 * numbers and booleans are written to buf. false for null, objects and arrays. */
#define POLICY_SCALAR_BUF 32
bool policy_scalar_text(const json_t *v, char buf[POLICY_SCALAR_BUF], const char **text, size_t *len);

#endif
