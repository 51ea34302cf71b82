/* Internal to the lint module: what lint.c (documents, patterns) and lint_platform.c (rules that
 * depend on the issuer's platform) share. Not for other modules; they use lint.h. */
#ifndef BROKER_LINT_INT_H
#define BROKER_LINT_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "lint.h"
#include "policy.h"

/* The platform of a policy's issuer, from its preset or its url. */
enum lint_iss { ISS_UNKNOWN, ISS_OTHER, ISS_GITHUB, ISS_GITLAB };

struct lint_ctx {
    struct lint_report *out;
    const json_t *issuers;
    enum lint_doc kind;
    size_t index;
    const char *identity, *policy, *issuer;
    enum broker_err rc;   /* sticky: the first allocation failure */
};

/* What a policy binds, gathered over its conditions for the per-policy platform rules. */
struct lint_binds {
    const char *name;     /* first claim bound by name, or NULL */
    bool pinned;          /* an id claim with equals/in */
};

/* A new finding in the current document/identity/policy; NULL (and c->rc set) when out of memory. */
struct lint_finding *lint_new(struct lint_ctx *c, enum lint_level level, const char *rule);
/* snprintf into a finding field, then replace control characters. */
void lint_text(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* s is one of the NULL-terminated list. */
bool lint_in(const char *s, const char *const *list);

/* lint_platform.c */
enum lint_iss lint_issuer_kind(const json_t *doc);
/* shared-default-audience for a policy's "audience". */
void lint_platform_audience(struct lint_ctx *c, const char *aud);
/* One parsed condition of a policy (claim base name, or "sub" for the subject): platform findings
 * about it, and what it binds into *b. scopes: the scopes the policy grants. */
void lint_platform_cond(struct lint_ctx *c, enum lint_iss iss, const char *base, bool is_sub, const struct cond *cd,
                        const json_t *scopes, struct lint_binds *b);
/* After every condition of a policy that binds something: the platform's identity rules. */
void lint_platform_policy(struct lint_ctx *c, enum lint_iss iss, const char *iname, const struct lint_binds *b);

#endif
