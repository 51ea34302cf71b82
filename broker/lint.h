/* Lint of trust-policy documents: finds policies that validate but trust more than intended
 * (`broker policy lint`, and warnings on apply). Pure: no I/O, no clock, no globals.
 *
 * Works on the raw JSON documents, so it reports what it can even when validation fails; a
 * validation failure is itself a finding (invalid-document). Rules (kebab-case ids):
 *   invalid-document          error   the document (or the set) fails validation: apply refuses it
 *   unbound-policy            error   binds neither subject nor any claim (apply refuses it too)
 *   undeclared-scope          error   a policy scope the identity does not declare (apply refuses it)
 *   long-ttl                  warning max_ttl above LINT_LONG_TTL_S; error above BROKER_MAX_TTL_S
 *   glob-extends-name         error   a glob wildcard where a repository/owner/project name (or another
 *                                     platform's identifier, below) is expected
 *   regex-unanchored-effect   error   a leading `.*`, or a trailing one inside the name part
 *   regex-crosses-separator   error   `.*`, `.+`, `[^/]*`... inside the name part (can match '/' or ':');
 *                             warning for a single unescaped `.` (or such a class) there
 *   regex-extends-name        error   a repetition glued to a name (`app[a-z-]*`); warning when it is a
 *                                     whole segment (`acme/[a-z0-9-]+`: every repository of acme)
 *   mutable-name-without-id   error   GitHub/GitLab: names bound (sub, repository...) without pinning
 *                                     repository_id/repository_owner_id (project_id/namespace_id)
 *                             warning Google: email (hd, project) bound without an exact sub (unique id);
 *                                     Kubernetes/EKS: namespace bound without the service-account uid
 *   unscoped-public-issuer    error   GitHub/GitLab: no repository/project bound at all; Google: no exact
 *                                     sub and no email/hd/project claim (azp, aud only name the client)
 *   email-not-verified        warning Google: email bound without email_verified required to be true
 *   unscoped-namespace        error   Kubernetes/EKS: neither a namespace spelled out (sub, namespace
 *                                     claim) nor a service-account (or pod) uid: any namespace matches
 *   unpinned-principal        warning AWS outbound: no sub (role ARN), only account-level claims
 *                                     (aws_account, org_id, principal_tags...); error when not even those
 *   caller-chosen-claim       warning AWS outbound: a condition on request_tags (the caller sets them)
 *   privileged-event          error   event_name admits pull_request_target or workflow_run and the
 *                                     policy grants a privileged scope; warning otherwise
 *   shared-default-audience   error   audience is a value tokens get by default for another relying
 *                                     party (https://github.com/OWNER, sts.amazonaws.com,
 *                                     kubernetes.default.svc); warning for a Google OAuth client id
 * The platform is the issuer document's preset, else its url (github/gitlab.com, accounts.google.com,
 * oidc.eks.*.amazonaws.com/id/, *.tokens.sts.global.api.aws, kubernetes/serviceaccount).
 * "Name part": for `sub`, from the start up to the first ':' after the `repo:OWNER/REPO` (GitHub),
 * `project_path:GROUP/PROJECT` (GitLab) or `system:serviceaccount:NAMESPACE` (Kubernetes) prefix,
 * or up to the first ':' for other subjects, the whole of an ARN subject (AWS) or of Google's numeric
 * sub; the whole value of repository, repository_owner, project_path and namespace_path, and of the
 * identifier claims of the other platforms (Google email/azp/hd/project, Kubernetes namespace,
 * service-account name and uid, AWS aws_account/org_id); `OWNER/REPO` of job_workflow_ref and
 * workflow_ref.
 * Conditions under "not" only narrow a policy and are not checked for name extension. */
#ifndef BROKER_LINT_H
#define BROKER_LINT_H
#include <stddef.h>
#include <jansson.h>
#include "bounds.h"
#include "err.h"

/* max_ttl above this is a warning. The validator caps max_ttl at BROKER_MAX_TTL_S (12h), so the
 * issue's "above 12 hours" can only be an error on documents apply would refuse anyway. */
#define LINT_LONG_TTL_S (4 * 3600)

enum lint_level { LINT_WARNING = 1, LINT_ERROR };

/* Which input array doc_index refers to; LINT_DOC_SET: the set as a whole (cross references). */
enum lint_doc { LINT_DOC_SET = 0, LINT_DOC_ISSUER, LINT_DOC_IDENTITY };

struct lint_finding {
    enum lint_level level;
    char rule[48];
    char identity[BROKER_MAX_NAME_LEN + 1];  /* "" when not about an identity */
    char policy[BROKER_MAX_NAME_LEN + 1];    /* trust policy name ("trust[N]" if unnamed), "" if none */
    char issuer[BROKER_MAX_NAME_LEN + 1];    /* the issuer document, or the policy's issuer; may be "" */
    enum lint_doc doc_kind;
    size_t doc_index;                        /* index into issuer_docs or identity_docs */
    char message[512];
    char fix[512];
};

struct lint_report {
    size_t n;
    size_t cap;
    struct lint_finding *items;              /* malloc'd, in document order */
};

/* Check issuer and identity documents (JSON arrays of objects, as given to policy_set_build) and
 * append findings to *out (zero-initialise it first). BROKER_ERR_NOMEM or BROKER_ERR_INTERNAL (not
 * arrays) on failure; findings appended so far stay in *out. */
enum broker_err lint_documents(const json_t *issuer_docs, const json_t *identity_docs,
                               struct lint_report *out) BROKER_WUR;
void lint_report_free(struct lint_report *r);
/* Number of findings of exactly this level. */
size_t lint_report_count(const struct lint_report *r, enum lint_level level);
/* "error" or "warning". */
const char *lint_level_name(enum lint_level level);
/* {"level","rule","identity","policy","issuer","message","fix"} (empty names omitted); NULL on ENOMEM. */
json_t *lint_finding_json(const struct lint_finding *f);

#endif
