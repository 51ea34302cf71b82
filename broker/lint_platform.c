/* Lint rules that depend on the issuer's platform (rules in lint.h): which claims are names and
 * which are immutable ids, default audiences other relying parties share, risky GitHub events.
 * lint.c parses each condition once and hands it here; pure like the rest of lint. */
#include <stdio.h>
#include <string.h>
#include "lint_int.h"
#include "policy_cond.h"

#define LINT_GITHUB_URL "https://token.actions.githubusercontent.com"

static const char *const lint_gh_names[] = {"repository", "repository_owner", "job_workflow_ref", "workflow_ref",
                                            NULL};
static const char *const lint_gh_ids[] = {"repository_id", "repository_owner_id", NULL};
static const char *const lint_gl_names[] = {"project_path", "namespace_path", "ci_config_ref_uri", NULL};
static const char *const lint_gl_ids[] = {"project_id", "namespace_id", NULL};

enum lint_iss lint_issuer_kind(const json_t *doc)
{
    const char *preset = json_string_value(json_object_get(doc, "preset"));
    const char *url = json_string_value(json_object_get(doc, "url"));
    size_t gh = strlen(LINT_GITHUB_URL);
    if (preset && strcmp(preset, "github-actions") == 0)
        return ISS_GITHUB;
    if (preset && strcmp(preset, "gitlab") == 0)
        return ISS_GITLAB;
    if (url && strncmp(url, LINT_GITHUB_URL, gh) == 0 && (url[gh] == 0 || url[gh] == '/'))
        return ISS_GITHUB;
    if (url && (strcmp(url, "https://gitlab.com") == 0 || strcmp(url, "https://gitlab.com/") == 0))
        return ISS_GITLAB;
    return ISS_OTHER;
}

/* ---- audience ---- */

void lint_platform_audience(struct lint_ctx *c, const char *aud)
{
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
    }
    if (!why)
        return;
    struct lint_finding *f = lint_new(c, LINT_ERROR, "shared-default-audience");
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

void lint_platform_cond(struct lint_ctx *c, enum lint_iss iss, const char *base, bool is_sub, const struct cond *cd,
                        const json_t *scopes, struct lint_binds *b)
{
    bool positive = cd->op != COND_NOT, exact = cd->op == COND_EQUALS || cd->op == COND_IN;
    const char *const *names = iss == ISS_GITHUB ? lint_gh_names : lint_gl_names;
    const char *const *ids = iss == ISS_GITHUB ? lint_gh_ids : lint_gl_ids;
    if (positive && (iss == ISS_GITHUB || iss == ISS_GITLAB)) {
        if (exact && lint_in(base, ids))
            b->pinned = true;
        else if (is_sub && iss == ISS_GITHUB && lint_sub_has_ids(cd))
            b->pinned = true;
        else if ((is_sub || lint_in(base, names)) && !b->name)
            b->name = is_sub ? "sub" : base;
    }
    if (!is_sub && strcmp(base, "event_name") == 0)
        lint_event_name(c, cd, scopes);
}

void lint_platform_policy(struct lint_ctx *c, enum lint_iss iss, const char *iname, const struct lint_binds *b)
{
    char idesc[BROKER_MAX_NAME_LEN + 32];
    struct lint_finding *f;
    if ((iss != ISS_GITHUB && iss != ISS_GITLAB) || b->pinned)
        return;
    snprintf(idesc, sizeof(idesc), "%s (issuer \"%s\")", iss == ISS_GITHUB ? "GitHub Actions" : "GitLab",
             iname ? iname : "?");
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
