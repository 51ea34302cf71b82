/* Lint rules that depend on the issuer's platform (rules in lint.h): which claims are names and
 * which are immutable ids, default audiences other relying parties share, risky GitHub events,
 * claims the caller chooses. lint.c parses each condition once and hands it here; each platform
 * gathers what the policy binds (struct lint_binds) and judges it once all conditions are seen.
 * Claim sets: trust-policies/README.md. Pure like the rest of lint. */
#include <stdio.h>
#include <string.h>
#include "lint_int.h"
#include "policy_cond.h"

#define LINT_GITHUB_URL "https://token.actions.githubusercontent.com"
#define LINT_GOOGLE_URL "https://accounts.google.com"
#define LINT_AWS_NS "/https:~1~1sts.amazonaws.com~1/"   /* AWS outbound: nested claims, as a JSON Pointer */
#define LINT_K8S_SUB "system:serviceaccount:"
#define LINT_K8S_UID "/kubernetes.io/serviceaccount/uid"

/* Claims whose whole value is a name, and the workflow refs whose OWNER/REPO part is one. */
static const char *const lint_whole_names[] = {"repository", "repository_owner", "project_path", "namespace_path",
                                               NULL};
static const char *const lint_ref_names[] = {"job_workflow_ref", "workflow_ref", NULL};
static const char *const lint_gh_names[] = {"repository", "repository_owner", "job_workflow_ref", "workflow_ref",
                                            NULL};
static const char *const lint_gh_ids[] = {"repository_id", "repository_owner_id", NULL};
static const char *const lint_gl_names[] = {"project_path", "namespace_path", "ci_config_ref_uri", NULL};
static const char *const lint_gl_ids[] = {"project_id", "namespace_id", NULL};
/* Google: claims that name an account, a domain or a project (sub is the immutable id). */
static const char *const lint_google_names[] = {"email", "hd", "/google/compute_engine/project_id",
                                                "/google/compute_engine/project_number",
                                                "/google/compute_engine/instance_id",
                                                "/google/compute_engine/instance_name", NULL};
static const char *const lint_google_ids[] = {"email", "azp", "hd", "/google/compute_engine/project_id",
                                              "/google/compute_engine/project_number",
                                              "/google/compute_engine/instance_id", NULL};
/* Kubernetes (projected tokens, then the flat claims of legacy secret-based tokens). */
static const char *const lint_k8s_ns[] = {"/kubernetes.io/namespace", "kubernetes.io/serviceaccount/namespace", NULL};
static const char *const lint_k8s_uids[] = {LINT_K8S_UID, "kubernetes.io/serviceaccount/service-account.uid",
                                            "/kubernetes.io/pod/uid", NULL};
static const char *const lint_k8s_names[] = {"/kubernetes.io/serviceaccount/name",
                                             "kubernetes.io/serviceaccount/service-account.name",
                                             "/kubernetes.io/pod/name", NULL};
static const char *const lint_k8s_ids[] = {"/kubernetes.io/namespace", "kubernetes.io/serviceaccount/namespace",
                                           "/kubernetes.io/serviceaccount/name",
                                           "kubernetes.io/serviceaccount/service-account.name", LINT_K8S_UID,
                                           "kubernetes.io/serviceaccount/service-account.uid", NULL};
static const char *const lint_aws_ids[] = {LINT_AWS_NS "aws_account", LINT_AWS_NS "org_id", NULL};

static bool lint_prefix(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool lint_suffix(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

enum lint_iss lint_issuer_kind(const json_t *doc)
{
    const char *preset = json_string_value(json_object_get(doc, "preset"));
    const char *url = json_string_value(json_object_get(doc, "url"));
    size_t gh = strlen(LINT_GITHUB_URL);
    static const struct {
        const char *preset;
        enum lint_iss iss;
    } presets[] = {{"github-actions", ISS_GITHUB}, {"gitlab", ISS_GITLAB},         {"google", ISS_GOOGLE},
                   {"aws-eks", ISS_EKS},           {"aws-outbound", ISS_AWS_OUTBOUND}, {"kubernetes", ISS_KUBERNETES}};
    for (size_t i = 0; preset && i < sizeof(presets) / sizeof(presets[0]); i++)
        if (strcmp(preset, presets[i].preset) == 0)
            return presets[i].iss;
    /* the same issuers registered without a preset */
    if (url && strncmp(url, LINT_GITHUB_URL, gh) == 0 && (url[gh] == 0 || url[gh] == '/'))
        return ISS_GITHUB;
    if (url && (strcmp(url, "https://gitlab.com") == 0 || strcmp(url, "https://gitlab.com/") == 0))
        return ISS_GITLAB;
    if (url && (strcmp(url, LINT_GOOGLE_URL) == 0 || strcmp(url, "accounts.google.com") == 0))
        return ISS_GOOGLE;
    if (lint_prefix(url, "https://oidc.eks.") &&
        (strstr(url, ".amazonaws.com/id/") || strstr(url, ".amazonaws.com.cn/id/")))
        return ISS_EKS;
    if (lint_prefix(url, "https://") && lint_suffix(url, ".tokens.sts.global.api.aws"))
        return ISS_AWS_OUTBOUND;
    if (url && strcmp(url, "kubernetes/serviceaccount") == 0) /* the default --service-account-issuer of old clusters */
        return ISS_KUBERNETES;
    return ISS_OTHER;
}

/* "/repository" is the same claim as "repository"; NULL (the subject) is "sub". */
static const char *lint_claim_base(const char *claim)
{
    if (!claim)
        return "sub";
    if (claim[0] == '/' && !strchr(claim + 1, '/') && !strchr(claim + 1, '~'))
        return claim + 1;
    return claim;
}

/* ---- names and where wildcards may go ---- */

/* An identifier of the issuer's platform whose whole value is a name or id, so that a wildcard
 * anywhere in it admits other workloads. */
static bool lint_identifier(enum lint_iss iss, const char *claim)
{
    if (!claim)
        return iss == ISS_GOOGLE; /* a numeric unique id, no prefix to spell out */
    if (iss == ISS_GOOGLE)
        return lint_in(claim, lint_google_ids) || lint_in(lint_claim_base(claim), lint_google_ids);
    if (iss == ISS_KUBERNETES || iss == ISS_EKS)
        return lint_in(claim, lint_k8s_ids);
    if (iss == ISS_AWS_OUTBOUND)
        return lint_in(claim, lint_aws_ids);
    return false;
}

enum lint_role lint_platform_role(enum lint_iss iss, const char *claim)
{
    const char *base = lint_claim_base(claim);
    if (lint_identifier(iss, claim))
        return ROLE_ID;
    if (!claim)
        return ROLE_SUBJECT;
    if (lint_in(base, lint_whole_names))
        return ROLE_WHOLE;
    return lint_in(base, lint_ref_names) ? ROLE_WORKFLOW : ROLE_NONE;
}

const char *lint_role_noun(enum lint_role role)
{
    return role == ROLE_WHOLE      ? "name"
           : role == ROLE_WORKFLOW ? "OWNER/REPO part"
           : role == ROLE_ID       ? "identifier"
                                   : "name part";
}

/* Where wildcards may go, by the kind of value. */
static const char *lint_shape(const char *pat, enum lint_role role)
{
    if (role == ROLE_WHOLE)
        return "\"OWNER/REPO\" or \"GROUP/PROJECT\" spelled out";
    if (role == ROLE_WORKFLOW)
        return "\"OWNER/REPO/.github/workflows/deploy.yml@*\"";
    if (strncmp(pat, "project_path:", 13) == 0)
        return "\"project_path:GROUP/PROJECT:*\"";
    if (strncmp(pat, "system:serviceaccount:", 22) == 0)
        return "\"system:serviceaccount:NAMESPACE:*\"";
    if (strncmp(pat, "repo:", 5) == 0)
        return "\"repo:OWNER/REPO:*\"";
    return "after the first ':'";
}

void lint_platform_glob_fix(char *fix, size_t cap, const char *pat, size_t w, bool tail, bool whole,
                            enum lint_role role)
{
    bool known = ((strncmp(pat, "repo:", 5) == 0 || strncmp(pat, "project_path:", 13) == 0) && memchr(pat, '/', w)) ||
                 strncmp(pat, "system:serviceaccount:", 22) == 0;
    if (role == ROLE_ID)
        lint_text(fix, cap,
                  "spell the value out with {\"equals\": ...}, or list the values with {\"in\": [...]}; a wildcard "
                  "in an identifier also admits ones created later, by anyone who may create them");
    else if (role == ROLE_SUBJECT && whole && strncmp(pat, "arn:", 4) == 0)
        lint_text(fix, cap,
                  "spell the role ARN out ({\"equals\": \"arn:aws:iam::ACCOUNT:role/NAME\"}), or list the roles with "
                  "{\"in\": [...]}; a wildcard in an ARN also admits roles created later");
    else if (role == ROLE_SUBJECT && tail && known)
        lint_text(fix, cap,
                  "end the name before the wildcard: {\"glob\": \"%.*s:*\"}, or spell the subject out with "
                  "{\"equals\": ...} or {\"in\": [...]}", (int)w, pat);
    else if (role == ROLE_WHOLE && tail)
        lint_text(fix, cap, "use {\"equals\": \"%.*s\"}, or list the names with {\"in\": [...]}", (int)w, pat);
    else
        lint_text(fix, cap,
                  "spell the %s out and put wildcards only after it (%s), or list the names with {\"in\": [...]}",
                  lint_role_noun(role), lint_shape(pat, role));
}

static const char *lint_platform_name(enum lint_iss iss)
{
    switch (iss) {
    case ISS_GITHUB:
        return "GitHub Actions";
    case ISS_GITLAB:
        return "GitLab";
    case ISS_GOOGLE:
        return "Google";
    case ISS_KUBERNETES:
        return "Kubernetes";
    case ISS_EKS:
        return "AWS EKS";
    case ISS_AWS_OUTBOUND:
        return "AWS outbound identity federation";
    default:
        return "the";
    }
}

/* ---- audience ---- */

void lint_platform_audience(struct lint_ctx *c, enum lint_iss iss, const char *aud)
{
    enum lint_level level = LINT_ERROR;
    static const char *const k8s[] = {"https://kubernetes.default.svc", "kubernetes.default.svc",
                                      "https://kubernetes.default.svc.cluster.local",
                                      "kubernetes.default.svc.cluster.local", NULL};
    const char *gh = "https://github.com/", *why = NULL, *fix = NULL;
    size_t ghl = strlen(gh), rest = strlen(aud) > ghl ? strcspn(aud + ghl, "/") : 0;
    if (strncmp(aud, gh, ghl) == 0 && rest > 0 && (aud[ghl + rest] == 0 || strcmp(aud + ghl + rest, "/") == 0)) {
        why = "is the audience GitHub Actions gives every token of that owner's workflows when none is requested";
        fix = "have the workflow request a token for this broker (core.getIDToken(AUD) / "
              "ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD) and set \"audience\" to AUD, or omit it to require "
              "BROKER_ISSUER";
    } else if (strcmp(aud, "sts.amazonaws.com") == 0) {
        why = "is the audience workflows request for AWS (configure-aws-credentials), so tokens minted for AWS "
              "would be accepted here";
        fix = "use an audience unique to this broker (omit \"audience\" to require BROKER_ISSUER) and request "
              "tokens for it";
    } else if (lint_in(aud, k8s)) {
        why = "is the Kubernetes API server's default audience: every token a pod shows the API server (or any "
              "service that accepts such tokens) would be accepted here";
        fix = "mount a projected service-account token with audience BROKER_ISSUER (serviceAccountToken.audience) "
              "and omit \"audience\" (or set it to that value)";
    } else if (iss == ISS_GOOGLE && lint_suffix(aud, ".apps.googleusercontent.com")) {
        /* a warning: it may be the organisation's own client, but then users' sign-in tokens pass too */
        level = LINT_WARNING;
        why = "is a Google OAuth client id: Google puts it in the ID token of every account that signs in to that "
              "client (for a shared client such as the Cloud SDK's, any Google user), and every service of that "
              "client sees those tokens";
        fix = "have the workload request an ID token for this broker (metadata server "
              ".../identity?audience=BROKER_ISSUER&format=full, or gcloud auth print-identity-token "
              "--impersonate-service-account=SA --audiences=BROKER_ISSUER) and omit \"audience\"";
    }
    if (!why)
        return;
    struct lint_finding *f = lint_new(c, level, "shared-default-audience");
    if (f) {
        lint_text(f->message, sizeof(f->message), "audience \"%s\" %s", aud, why);
        lint_text(f->fix, sizeof(f->fix), "%s", fix);
    }
}

/* ---- GitHub Actions and GitLab ---- */

/* The GitHub subject can be customised to carry ids ("repository_owner_id:42:repository_id:99:..."):
 * every value must hold one, spelled out in digits. */
static bool lint_id_in(const char *v)
{
    static const char *const keys[] = {"repository_id:", "repository_owner_id:"};
    for (size_t k = 0; k < 2; k++) {
        const char *p = strstr(v, keys[k]);
        size_t d = p ? strspn(p + strlen(keys[k]), "0123456789") : 0;
        if (d > 0 && (p[strlen(keys[k]) + d] == ':' || p[strlen(keys[k]) + d] == 0))
            return true;
    }
    return false;
}

static bool lint_sub_has_ids(const struct cond *cd)
{
    if (cd->op == COND_IN) {
        for (size_t i = 0; i < cd->nlist; i++)
            if (!lint_id_in(cd->list[i]))
                return false;
        return cd->nlist > 0;
    }
    return cd->op != COND_NOT && lint_id_in(cd->value);
}

/* A scope that is not read-only: mentions write, admin, deploy or delete, or is a wildcard. */
static bool lint_scope_privileged(const char *s)
{
    static const char *const words[] = {"write", "admin", "deploy", "delete", NULL};
    if (strchr(s, '*'))
        return true;
    for (size_t i = 0; words[i]; i++)
        if (strcasestr(s, words[i]))
            return true;
    return false;
}

/* privileged-event: event_name admits pull_request_target or workflow_run. */
static void lint_event_name(struct lint_ctx *c, const struct cond *cd, const json_t *scopes)
{
    static const char *const events[] = {"pull_request_target", "workflow_run"};
    char admitted[64] = "";
    for (size_t i = 0; i < 2; i++) {
        json_t *ev = json_string(events[i]);
        if (!ev) {
            c->rc = BROKER_ERR_NOMEM;
            break;
        }
        if (policy_cond_eval(cd, ev))
            snprintf(admitted + strlen(admitted), sizeof(admitted) - strlen(admitted), "%s%s",
                     admitted[0] ? " and " : "", events[i]);
        json_decref(ev);
    }
    const char *priv = NULL;
    size_t i;
    const json_t *s;
    json_array_foreach (scopes, i, s)
        if (!priv && json_is_string(s) && lint_scope_privileged(json_string_value(s)))
            priv = json_string_value(s);
    struct lint_finding *f = admitted[0] ? lint_new(c, priv ? LINT_ERROR : LINT_WARNING, "privileged-event") : NULL;
    if (f) {
        lint_text(f->message, sizeof(f->message),
                  "event_name admits %s: such workflows run with the base repository's secrets and token while "
                  "acting on a pull request or run an outside contributor controls%s%s%s", admitted, priv ? "; the policy grants \"" : "",
                  priv ? priv : "", priv ? "\"" : " (the granted scopes are read-only)");
        lint_text(f->fix, sizeof(f->fix),
                  "allow only trusted events, e.g. {\"in\": [\"push\", \"workflow_dispatch\"]}; serve "
                  "pull_request_target/workflow_run jobs from a separate read-only identity");
    }
}

/* GitHub/GitLab: the id claims pin; the subject and the name claims only name. */
static void lint_ci_cond(enum lint_iss iss, const char *base, bool is_sub, const struct cond *cd, bool exact,
                         struct lint_binds *b)
{
    const char *const *names = iss == ISS_GITHUB ? lint_gh_names : lint_gl_names;
    const char *const *ids = iss == ISS_GITHUB ? lint_gh_ids : lint_gl_ids;
    if (exact && lint_in(base, ids))
        b->pinned = true;
    else if (is_sub && iss == ISS_GITHUB && lint_sub_has_ids(cd))
        b->pinned = true;
    else if ((is_sub || lint_in(base, names)) && !b->name)
        b->name = is_sub ? "sub" : base;
}

static void lint_ci_policy(struct lint_ctx *c, enum lint_iss iss, const char *idesc, const struct lint_binds *b)
{
    struct lint_finding *f;
    const char *idname = iss == ISS_GITHUB ? "repository_id" : "project_id";
    const char *owner = iss == ISS_GITHUB ? "repository_owner_id" : "namespace_id";
    if (b->name && (f = lint_new(c, LINT_ERROR, "mutable-name-without-id"))) {
        lint_text(f->message, sizeof(f->message),
                  "trusts %s by name (%s) without pinning %s or %s: after a rename, transfer or deletion "
                  "someone else can own that name", idesc, b->name, idname, owner);
        lint_text(f->fix, sizeof(f->fix),
                  "add \"claims\": {\"%s\": {\"equals\": \"ID\"}} with the numeric id (from the API, or "
                  "the claims of a token from that %s)", idname, iss == ISS_GITHUB ? "repository" : "project");
    } else if (!b->name && (f = lint_new(c, LINT_ERROR, "unscoped-public-issuer"))) {
        lint_text(f->message, sizeof(f->message),
                  "binds no repository or owner (no sub, %s, %s or name claim): any workload on the shared "
                  "issuer %s can use this identity", idname, owner, idesc);
        lint_text(f->fix, sizeof(f->fix),
                  "bind \"subject\" to the exact workload and pin \"%s\" (and/or \"%s\") with \"equals\"",
                  idname, owner);
    }
}

/* ---- Google ---- */

/* The condition admits JSON true and refuses false ("true" as a string compares equal to true). */
static bool lint_requires_true(const struct cond *cd)
{
    return policy_cond_eval(cd, json_true()) && !policy_cond_eval(cd, json_false()); /* singletons */
}

static void lint_google_cond(const char *claim, const char *base, const struct cond *cd,
                             bool exact, struct lint_binds *b)
{
    if (!claim && exact)
        b->pinned = true;
    else if (claim && (lint_in(claim, lint_google_names) || lint_in(base, lint_google_names)) && !b->name)
        b->name = base;
    if (claim && strcmp(base, "email") == 0)
        b->email = true;
    if (claim && strcmp(base, "email_verified") == 0 && lint_requires_true(cd))
        b->email_verified = true;
}

/* https://accounts.google.com signs for every Google account, user or service account: only sub (the
 * numeric unique id, never reused) pins one. An e-mail address is reused when a service account is
 * deleted and recreated under the same name, and user addresses can be recycled. */
static void lint_google_policy(struct lint_ctx *c, const char *idesc, const struct lint_binds *b)
{
    struct lint_finding *f;
    if (b->email && !b->email_verified && (f = lint_new(c, LINT_WARNING, "email-not-verified"))) {
        lint_text(f->message, sizeof(f->message),
                  "binds email on %s without requiring email_verified: an account can carry an address its "
                  "owner never proved to control", idesc);
        lint_text(f->fix, sizeof(f->fix), "add \"claims\": {\"email_verified\": {\"equals\": \"true\"}}, and pin "
                                          "the account by \"subject\" (its numeric unique id)");
    }
    if (b->pinned)
        return;
    if (b->name && (f = lint_new(c, LINT_WARNING, "mutable-name-without-id"))) {
        lint_text(f->message, sizeof(f->message),
                  "trusts %s accounts by %s without pinning sub, the account's numeric unique id: a service "
                  "account deleted and recreated under the same e-mail address (or a recycled user address) "
                  "gets a new sub but would still match", idesc, b->name);
        lint_text(f->fix, sizeof(f->fix),
                  "add \"subject\": {\"equals\": \"UNIQUE_ID\"} (gcloud iam service-accounts describe EMAIL "
                  "--format='value(uniqueId)', or the sub of a token from that account)");
    } else if (!b->name && (f = lint_new(c, LINT_ERROR, "unscoped-public-issuer"))) {
        lint_text(f->message, sizeof(f->message),
                  "binds no Google account (no exact sub, email or project claim): %s signs ID tokens for every "
                  "Google account, and azp or aud only name the client that asked for the token",
                  idesc);
        lint_text(f->fix, sizeof(f->fix),
                  "bind \"subject\": {\"equals\": \"UNIQUE_ID\"}, the service account's numeric unique id, and for "
                  "readability \"email\" with \"email_verified\": {\"equals\": \"true\"}");
    }
}

/* ---- Kubernetes and EKS ---- */

static void lint_k8s_cond(struct lint_ctx *c, const char *claim, const struct cond *cd, bool exact,
                          struct lint_binds *b)
{
    if (!claim && lint_name_spelled(c, cd, LINT_K8S_SUB))
        b->scoped = true;
    if (claim && exact && lint_in(claim, lint_k8s_ns))
        b->scoped = true;
    if (claim && exact && lint_in(claim, lint_k8s_uids))
        b->pinned = b->scoped = true; /* a uid names one object of one namespace */
    else if ((!claim || lint_in(claim, lint_k8s_ns) || lint_in(claim, lint_k8s_names)) && !b->name)
        b->name = claim ? claim : "sub";
}

/* A cluster issuer signs for every namespace; namespace and service-account names come back when
 * deleted and recreated (by anyone with RBAC rights there), their uid does not. */
static void lint_k8s_policy(struct lint_ctx *c, const char *idesc, const struct lint_binds *b)
{
    struct lint_finding *f;
    if (!b->scoped && (f = lint_new(c, LINT_ERROR, "unscoped-namespace"))) {
        lint_text(f->message, sizeof(f->message),
                  "binds no namespace and no service-account uid: a pod in any namespace of the cluster behind "
                  "%s whose token meets the other conditions (a service account or pod of the same name) can use "
                  "this identity", idesc);
        lint_text(f->fix, sizeof(f->fix),
                  "bind \"subject\": {\"equals\": \"system:serviceaccount:NAMESPACE:NAME\"} and \"claims\": "
                  "{\"" LINT_K8S_UID "\": {\"equals\": \"UID\"}}");
    } else if (b->scoped && !b->pinned && (f = lint_new(c, LINT_WARNING, "mutable-name-without-id"))) {
        lint_text(f->message, sizeof(f->message),
                  "trusts a service account of %s by name (%s) without pinning " LINT_K8S_UID ": whoever may delete "
                  "and recreate the service account or its namespace gets this identity", idesc,
                  b->name ? b->name : "namespace");
        lint_text(f->fix, sizeof(f->fix),
                  "add \"claims\": {\"" LINT_K8S_UID "\": {\"equals\": \"UID\"}} (kubectl get serviceaccount NAME "
                  "-n NAMESPACE -o jsonpath='{.metadata.uid}'; legacy secret tokens: "
                  "\"kubernetes.io/serviceaccount/service-account.uid\"); update it when the account is recreated "
                  "on purpose");
    }
}

/* ---- AWS outbound identity federation ---- */

static void lint_aws_cond(struct lint_ctx *c, const char *claim, bool positive, struct lint_binds *b)
{
    const char *rest = lint_prefix(claim, LINT_AWS_NS) ? claim + strlen(LINT_AWS_NS) : NULL;
    struct lint_finding *f;
    if (!claim) {
        b->scoped = true;
    } else if (rest && lint_prefix(rest, "request_tags")) {
        if (positive && (f = lint_new(c, LINT_WARNING, "caller-chosen-claim"))) {
            lint_text(f->message, sizeof(f->message),
                      "claim %s is a request tag: the caller of sts:GetWebIdentityToken chooses its value (unless "
                      "every principal's IAM policy restricts aws:RequestTag), so it proves nothing", claim);
            lint_text(f->fix, sizeof(f->fix),
                      "bind the principal (\"subject\": the role ARN) and use " LINT_AWS_NS "principal_tags/KEY, "
                      "which IAM administrators set, instead of request_tags");
        }
    } else if (rest && !lint_prefix(rest, "source_region")) {
        b->admin = true; /* aws_account, org_id, ou_path, principal_tags, session context */
    }
}

/* The issuer is the account's: sub (the role ARN) is what tells its principals apart. */
static void lint_aws_policy(struct lint_ctx *c, const char *idesc, const struct lint_binds *b)
{
    struct lint_finding *f;
    if (b->scoped || !(f = lint_new(c, b->admin ? LINT_WARNING : LINT_ERROR, "unpinned-principal")))
        return;
    lint_text(f->message, sizeof(f->message),
              "binds no IAM principal (no sub, the role ARN)%s: every role and user of the account behind %s "
              "that may call sts:GetWebIdentityToken can use this identity",
              b->admin ? "" : " and nothing administrators control (only request tags or the region the caller "
                              "picks)", idesc);
    lint_text(f->fix, sizeof(f->fix),
              "bind \"subject\": {\"equals\": \"arn:aws:iam::ACCOUNT:role/NAME\"} (or list the roles with "
              "{\"in\": [...]}), and pin \"" LINT_AWS_NS "aws_account\" with \"equals\"");
}

/* ---- dispatch ---- */

void lint_platform_cond(struct lint_ctx *c, enum lint_iss iss, const char *claim, const struct cond *cd,
                        const json_t *scopes, struct lint_binds *b)
{
    bool is_sub = claim == NULL, positive = cd->op != COND_NOT;
    bool exact = cd->op == COND_EQUALS || cd->op == COND_IN;
    const char *base = lint_claim_base(claim);
    if (iss == ISS_AWS_OUTBOUND)
        lint_aws_cond(c, claim, positive, b); /* request_tags is judged whatever the op */
    else if (positive && (iss == ISS_GITHUB || iss == ISS_GITLAB))
        lint_ci_cond(iss, base, is_sub, cd, exact, b);
    else if (positive && iss == ISS_GOOGLE)
        lint_google_cond(claim, base, cd, exact, b);
    else if (positive && (iss == ISS_KUBERNETES || iss == ISS_EKS))
        lint_k8s_cond(c, claim, cd, exact, b);
    if (!is_sub && strcmp(base, "event_name") == 0)
        lint_event_name(c, cd, scopes);
}

void lint_platform_policy(struct lint_ctx *c, enum lint_iss iss, const char *iname, const struct lint_binds *b)
{
    char idesc[BROKER_MAX_NAME_LEN + 64];
    snprintf(idesc, sizeof(idesc), "%s (issuer \"%s\")", lint_platform_name(iss), iname ? iname : "?");
    if ((iss == ISS_GITHUB || iss == ISS_GITLAB) && !b->pinned)
        lint_ci_policy(c, iss, idesc, b);
    else if (iss == ISS_GOOGLE)
        lint_google_policy(c, idesc, b);
    else if (iss == ISS_KUBERNETES || iss == ISS_EKS)
        lint_k8s_policy(c, idesc, b);
    else if (iss == ISS_AWS_OUTBOUND)
        lint_aws_policy(c, idesc, b);
}
