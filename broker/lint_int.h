/* Internal to the lint module: what lint.c (documents, patterns) and lint_platform.c (rules that
 * depend on the issuer's platform) share. Not for other modules; they use lint.h. */
#ifndef BROKER_LINT_INT_H
#define BROKER_LINT_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "lint.h"
#include "policy.h"

/* Where the name sits in a value (see "name part" in lint.h): nowhere, the subject's name part, the
 * whole value (a repository or group name), the OWNER/REPO of a workflow ref, or the whole value of
 * an identifier claim of another platform (e-mail, namespace, uid, account). */
enum lint_role { ROLE_NONE, ROLE_SUBJECT, ROLE_WHOLE, ROLE_WORKFLOW, ROLE_ID };

/* The platform of a policy's issuer, from its preset or its url. */
enum lint_iss { ISS_UNKNOWN, ISS_OTHER, ISS_GITHUB, ISS_GITLAB, ISS_GOOGLE, ISS_KUBERNETES, ISS_EKS, ISS_AWS_OUTBOUND };

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
    const char *name;     /* first claim bound by name (or e-mail, namespace...), or NULL */
    bool pinned;          /* an immutable id with equals/in (repository_id, Google sub, service-account uid) */
    bool scoped;          /* Kubernetes: a namespace spelled out (or a uid); AWS: the principal (sub) bound */
    bool admin;           /* AWS: a claim administrators set (aws_account, org_id, principal_tags...) bound */
    bool email, email_verified;  /* Google: email bound; email_verified required to be true */
};

/* A new finding in the current document/identity/policy; NULL (and c->rc set) when out of memory. */
struct lint_finding *lint_new(struct lint_ctx *c, enum lint_level level, const char *rule);
/* snprintf into a finding field, then replace control characters. */
void lint_text(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* s is one of the NULL-terminated list. */
bool lint_in(const char *s, const char *const *list);

/* The name part of cd (see lint.h) after the literal prefix is spelled out and ends at a ':', in
 * every value or alternative: e.g. the namespace of "system:serviceaccount:NS:NAME". */
bool lint_name_spelled(struct lint_ctx *c, const struct cond *cd, const char *prefix);

/* lint_platform.c */
enum lint_iss lint_issuer_kind(const json_t *doc);
/* shared-default-audience for a policy's "audience". */
void lint_platform_audience(struct lint_ctx *c, enum lint_iss iss, const char *aud);
/* The role of a claim (as written; NULL: the subject) on the issuer's platform. */
enum lint_role lint_platform_role(enum lint_iss iss, const char *claim);
/* "name part", "OWNER/REPO part", "identifier"... for messages. */
const char *lint_role_noun(enum lint_role role);
/* The fix of a glob-extends-name finding: the first wildcard of pat is at w; tail: it is a single
 * trailing '*' right after a name; whole: the name part runs to the end of the pattern. */
void lint_platform_glob_fix(char *fix, size_t cap, const char *pat, size_t w, bool tail, bool whole,
                            enum lint_role role);
/* One parsed condition of a policy (claim as written; NULL for the subject): platform findings
 * about it, and what it binds into *b. scopes: the scopes the policy grants. */
void lint_platform_cond(struct lint_ctx *c, enum lint_iss iss, const char *claim, const struct cond *cd,
                        const json_t *scopes, struct lint_binds *b);
/* After every condition of a policy that binds something: the platform's identity rules. */
void lint_platform_policy(struct lint_ctx *c, enum lint_iss iss, const char *iname, const struct lint_binds *b);

#endif
