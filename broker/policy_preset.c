/* Issuer presets: what "preset": "github-actions", "gitlab", "google", "aws-eks", "aws-outbound" or
 * "kubernetes" implies for an issuer document (url, algorithms, where keys live), and the checks of
 * the url shapes those platforms use. Pure: no I/O, no clock, no globals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jwt.h"
#include "policy.h"
#include "policy_cond.h"
#include "policy_preset.h"

#define GITHUB_ACTIONS_URL "https://token.actions.githubusercontent.com"
#define DOC_PRESET_NAMES "github-actions, gitlab, google, aws-eks, aws-outbound, kubernetes"

enum doc_preset_kind { PRESET_GITHUB, PRESET_GITLAB, PRESET_GOOGLE, PRESET_EKS, PRESET_AWS_OUTBOUND, PRESET_K8S };

/* Each preset: its default iss (NULL: "url" is required) and the algorithms the platform signs with. */
static const struct {
    const char *name;
    enum doc_preset_kind kind;
    const char *url;
    uint32_t algs;
} doc_presets[] = {
    {"github-actions", PRESET_GITHUB, GITHUB_ACTIONS_URL, JWT_ALG_BIT(JWT_ALG_RS256)},
    {"gitlab", PRESET_GITLAB, "https://gitlab.com", JWT_ALG_BIT(JWT_ALG_RS256)},
    {"google", PRESET_GOOGLE, "https://accounts.google.com", JWT_ALG_BIT(JWT_ALG_RS256)},
    {"aws-eks", PRESET_EKS, NULL, JWT_ALG_BIT(JWT_ALG_RS256)},
    {"aws-outbound", PRESET_AWS_OUTBOUND, NULL, JWT_ALG_BIT(JWT_ALG_RS256) | JWT_ALG_BIT(JWT_ALG_ES384)},
    {"kubernetes", PRESET_K8S, NULL, JWT_ALG_BIT(JWT_ALG_RS256) | JWT_ALG_BIT(JWT_ALG_ES256)},
};

static bool doc_is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Consumes a literal prefix; false when s does not start with it. */
static bool doc_eat(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0)
        return false;
    *s += n;
    return true;
}

/* https://oidc.eks.<region>.amazonaws.com/id/<ID> (".amazonaws.com.cn" in the China partition):
 * region like "eu-west-1", ID upper-case hex/alnum. */
static bool doc_eks_url(const char *s)
{
    size_t n = 0;
    if (!doc_eat(&s, "https://oidc.eks."))
        return false;
    while (doc_is_lower_alnum(s[n]) || s[n] == '-')
        n++;
    if (n == 0 || n > 32 || s[0] == '-' || s[n - 1] == '-')
        return false;
    s += n;
    if (!doc_eat(&s, ".amazonaws.com/id/") && !doc_eat(&s, ".amazonaws.com.cn/id/"))
        return false;
    for (n = 0; (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9'); n++)
        ;
    return n >= 1 && n <= 64 && s[n] == 0;
}

/* https://<id>.tokens.sts.global.api.aws: the account's issuer. AWS documents <id> as a UUID but shows
 * other shapes in samples, so accept one lower-case DNS label (never a dot: no other domain can pass). */
static bool doc_aws_outbound_url(const char *s)
{
    size_t n = 0;
    if (!doc_eat(&s, "https://"))
        return false;
    while (doc_is_lower_alnum(s[n]) || s[n] == '-')
        n++;
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    return strcmp(s + n, ".tokens.sts.global.api.aws") == 0;
}

static enum broker_err doc_set_url(char **dst, const char *url)
{
    *dst = strdup(url);
    return *dst ? BROKER_OK : BROKER_ERR_NOMEM;
}

static enum broker_err doc_preset_github(const json_t *doc, struct issuer_cfg *out, char *err, size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    const json_t *enterprise = json_object_get(doc, "enterprise");
    const json_t *ghes = json_object_get(doc, "ghes_host");
    char *tmp = NULL;

    if (enterprise && ghes)
        DOC_FAIL("enterprise: cannot be combined with ghes_host");
    if (!out->url) {
        char url[POLICY_DOC_MAX_TEXT + 64];
        if (enterprise) {
            DOC_TRY(policy_doc_string(enterprise, "enterprise", POLICY_DOC_STR_NAME, BROKER_MAX_NAME_LEN, &tmp, err, errlen));
            snprintf(url, sizeof(url), GITHUB_ACTIONS_URL "/%s", tmp);
        } else if (ghes) {
            DOC_TRY(policy_doc_string(ghes, "ghes_host", POLICY_DOC_STR_TEXT, 253, &tmp, err, errlen));
            snprintf(url, sizeof(url), "https://%s/_services/token", tmp);
        } else {
            snprintf(url, sizeof(url), "%s", GITHUB_ACTIONS_URL);
        }
        if (!policy_doc_https_url(url, strlen(url), false))
            DOC_FAIL("ghes_host: not a valid host name");
        rc = doc_set_url(&out->url, url);
    } else if (enterprise || ghes) {
        DOC_FAIL("%s: cannot be combined with an explicit url", enterprise ? "enterprise" : "ghes_host");
    }
done:
    free(tmp);
    return rc;
}

/* The API server serves its keys at <iss>/openid/v1/jwks (usually behind authentication, hence
 * ca_file and bearer_token_file); its discovery document is often not reachable at all. */
static enum broker_err doc_preset_kubernetes(struct issuer_cfg *out)
{
    enum broker_err rc = BROKER_OK;
    char uri[POLICY_DOC_MAX_TEXT + 32];
    size_t len = strlen(out->url);

    if (out->jwks_inline || out->jwks_file || out->jwks_uri)
        goto done;
    if (len > 0 && out->url[len - 1] == '/')
        len--;
    snprintf(uri, sizeof(uri), "%.*s/openid/v1/jwks", (int)len, out->url);
    /* a non-https iss needs static keys; the generic url check reports it */
    if (!policy_doc_https_url(uri, strlen(uri), true))
        goto done;
    rc = doc_set_url(&out->jwks_uri, uri);
done:
    return rc;
}

enum broker_err policy_preset_apply(const json_t *doc, struct issuer_cfg *out, char *err, size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    const json_t *preset = json_object_get(doc, "preset");
    const json_t *enterprise = json_object_get(doc, "enterprise");
    const json_t *ghes = json_object_get(doc, "ghes_host");
    size_t k;

    if (!preset) {
        if (enterprise || ghes)
            DOC_FAIL("%s: only meaningful with \"preset\": \"github-actions\"",
                     enterprise ? "enterprise" : "ghes_host");
        goto done;
    }
    if (!json_is_string(preset))
        DOC_FAIL("preset: must be a string");
    for (k = 0; k < sizeof(doc_presets) / sizeof(doc_presets[0]); k++)
        if (strlen(doc_presets[k].name) == json_string_length(preset) &&
            strcmp(json_string_value(preset), doc_presets[k].name) == 0)
            break;
    if (k == sizeof(doc_presets) / sizeof(doc_presets[0])) {
        char shown[40];
        snprintf(shown, sizeof(shown), "%s", json_string_value(preset));
        DOC_FAIL("preset: \"%s\" is not supported (supported: " DOC_PRESET_NAMES ")", shown);
    }
    if (doc_presets[k].kind != PRESET_GITHUB && (enterprise || ghes))
        DOC_FAIL("%s: only meaningful with \"preset\": \"github-actions\"", enterprise ? "enterprise" : "ghes_host");
    if (!json_object_get(doc, "algorithms"))
        out->algs = doc_presets[k].algs;

    switch (doc_presets[k].kind) {
    case PRESET_GITHUB:
        DOC_TRY(doc_preset_github(doc, out, err, errlen));
        break;
    case PRESET_GITLAB:
    case PRESET_GOOGLE:
        if (!out->url)
            DOC_TRY(doc_set_url(&out->url, doc_presets[k].url));
        break;
    case PRESET_EKS:
        if (!out->url)
            DOC_FAIL("url: required with preset aws-eks (https://oidc.eks.<region>.amazonaws.com/id/<ID>)");
        if (!doc_eks_url(out->url))
            DOC_FAIL("url: not an EKS cluster issuer (https://oidc.eks.<region>.amazonaws.com/id/<ID>)");
        break;
    case PRESET_AWS_OUTBOUND:
        if (!out->url)
            DOC_FAIL("url: required with preset aws-outbound (https://<uuid>.tokens.sts.global.api.aws)");
        if (!doc_aws_outbound_url(out->url))
            DOC_FAIL("url: not an AWS outbound identity federation issuer (https://<uuid>.tokens.sts.global.api.aws)");
        break;
    case PRESET_K8S:
        if (!out->url)
            DOC_FAIL("url: required with preset kubernetes (the API server's service-account issuer)");
        DOC_TRY(doc_preset_kubernetes(out));
        break;
    }
done:
    return rc;
}
