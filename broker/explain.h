/* Explaining a decision: every check an exchange makes (parse, issuer, alg, signature, times,
 * audience) and every condition of every trust policy considered, so an admin sees at once why a
 * token would be (or was) denied. Pure apart from the key lookup callback; the clock is passed in.
 * The decision and its reason are those of the token endpoint: the reason comes from verify_jwt and
 * policy_eval themselves, the checks and policies around it are the explanation. */
#ifndef BROKER_EXPLAIN_H
#define BROKER_EXPLAIN_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <jansson.h>
#include "err.h"
#include "policy.h"

/* Policies listed at most per explanation (the rest are counted in "policies_omitted"). */
#define EXPLAIN_MAX_POLICIES 100

/* Keys for an issuer: returns a jwks (borrowed until the explain call returns) or NULL (keys
 * unavailable). Called at most once per explain call, only for a registered issuer. */
typedef const struct jwks *(*explain_keys_fn)(void *ctx, const struct issuer_cfg *issuer);

/* One question. Either token (compact JWS) or issuer_name + claims (no signature). */
struct explain_request {
    const char *token;
    size_t token_len;
    const char *issuer_name;          /* claims mode: the issuer document's name */
    const json_t *claims;             /* claims mode: the claims object */
    const char *identity;             /* requested identity or NULL */
    const char *scope;                /* requested scopes (space-delimited) or NULL */
    const char *audience;             /* requested audience of the minted token or NULL */
    const struct sockaddr *peer;      /* client address for source_cidrs, or NULL (unknown: they fail) */
    int64_t at;                       /* evaluation time, Unix seconds */
    const char *broker_issuer;        /* default audience of trust policies (BROKER_ISSUER) */
    explain_keys_fn keys;             /* token mode; NULL: keys unavailable */
    void *keys_ctx;
};

/* Decide and explain. Returns a new JSON object (NULL only when out of memory):
 * {"decision":"issued"|"denied", "reason": broker_strerror code, "hint": one line (denials),
 *  "mode":"token"|"claims", "at", "token":{"iss","sub","aud","kid","alg","jti"} (what was readable),
 *  "issuer": issuer document name or null, "identity", "policy" (matched, or the requested identity),
 *  "scope", "audience", "ttl" (null unless issued), "policy_reason" (policy_eval's code, when it ran),
 *  "single_use" (when the matched policy has it: replay state is not checked here),
 *  "checks":[{"check":"parse"|"issuer"|"alg"|"signature"|"exp"|"nbf"|"iat"|"audience",
 *             "result":true|false, "expected":..., "actual":..., "detail":"..."}],
 *  "policies":[the policy_eval explain entries: {"identity","policy","result":"match"|"no_match",
 *              "first_failed","conditions":[{"condition","op","expected","actual","result"}]}],
 *  "policies_omitted": N (only when > 0), "note": "..." (optional)}
 * Every step that can still be judged is reported after a failure: an expired or badly signed
 * token still shows its policy evaluation. Without an identity, every trust policy of the issuer is
 * listed (those the decision considered first), not only those the subject index reaches. */
json_t *explain_run(const struct policy_set *set, const struct explain_request *rq);

/* explain_run for a token. broker_issuer NULL: policies without "audience" cannot match. */
json_t *explain_token(const struct policy_set *set, const char *token, size_t len, const char *identity,
                      int64_t at, const char *broker_issuer, explain_keys_fn keys, void *keys_ctx);
/* Same from an issuer name + a claims object (no signature): POST /v1/policy/test {"issuer","claims"}.
 * Time claims are checked when present; a missing exp is not a failure here. */
json_t *explain_claims(const struct policy_set *set, const char *issuer_name, const json_t *claims,
                       const char *identity, int64_t at, const char *broker_issuer);

/* The body of POST /v1/policy/test: {"token"} or {"issuer","claims"}, optional "identity", "scope",
 * "audience", "at" (Unix seconds or RFC 3339; default now). NULL with err set (and *status 400)
 * for a malformed body, NULL with *status 500 when out of memory. */
json_t *explain_api(const struct policy_set *set, const json_t *body, int64_t now, const char *broker_issuer,
                    explain_keys_fn keys, void *keys_ctx, int *status, char *err, size_t errlen);

/* Render as a readable table (for the CLI and tests; explain_text.c). NULL only when out of
 * memory; free(). */
char *explain_render_text(const json_t *result);

/* "2022-08-05T01:30:00Z" (RFC 3339, any offset, optional fraction, which is dropped) or Unix
 * seconds ("1659663000"). BROKER_ERR_BAD_REQUEST otherwise. */
enum broker_err explain_parse_time(const char *s, size_t len, int64_t *out) BROKER_WUR;
/* Unix seconds as "2022-08-05T01:30:00Z" (cap >= 21); "@N" outside years 1970-9999. */
void explain_format_time(int64_t t, char *out, size_t cap);
/* Seconds as "1h30m", "45s" (the duration syntax of policy documents; the sign is dropped). */
void explain_format_duration(int64_t s, char *out, size_t cap);

#endif
