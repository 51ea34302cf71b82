/* Conditions of trust policies ({"equals"|"in"|"glob"|"regex"|"not": ...}): parsing, evaluation and
 * description. Internal to the policy module (policy_doc.c, policy_eval.c). */
#ifndef BROKER_POLICY_COND_H
#define BROKER_POLICY_COND_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "policy.h"

/* Shared by the document parsers of the policy module: format err ("PATH: what is wrong"), fail
 * the current function with BROKER_ERR_INVALID_DOCUMENT, or propagate an error. Functions using
 * them have `enum broker_err rc`, `char *err, size_t errlen` and a `done:` label. */
void policy_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define DOC_FAIL(...)                                   \
    do {                                                \
        policy_errf(err, errlen, __VA_ARGS__);          \
        rc = BROKER_ERR_INVALID_DOCUMENT;               \
        goto done;                                      \
    } while (0)
#define DOC_TRY(expr)                                   \
    do {                                                \
        rc = (expr);                                    \
        if (rc != BROKER_OK)                            \
            goto done;                                  \
    } while (0)

/* Parse one condition object; err receives "PATH: what is wrong". On error *out is cleared. */
enum broker_err policy_cond_parse(const json_t *v, const char *path, struct cond *out, char *err,
                                  size_t errlen) BROKER_WUR;
void policy_cond_clear(struct cond *c);
/* v is the claim value or NULL when missing. Allocation-free (regexec aside). */
bool policy_cond_eval(const struct cond *c, const json_t *v);
const char *policy_cond_op_name(enum cond_op op);
/* The condition's operand as JSON for explanations: a string, an array ("in"), or {"op": ...} ("not"). */
json_t *policy_cond_expected(const struct cond *c);
/* A claim name as written in a policy: a plain name, or an RFC 6901 JSON Pointer starting with '/'. */
bool policy_cond_claim_name_ok(const char *s, size_t len);

#endif
