/* apply_check_set: the check every admin write (PUT, DELETE, POST /v1/policy/apply) and the CLI's
 * policy apply run on the whole resulting set before committing it. It must refuse whatever a
 * replica's reload would refuse (inline jwks and jwks_file that yield no usable keys, not only
 * documents that do not parse), and files of the documents being written that no replica can
 * read; otherwise one write freezes policy on every replica. */
#include "test_util.h"
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "apply.h"
#include "bearer.h"

#define BOGUS_JWKS "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}"

struct fx {
    char fixtures[PATH_MAX];
    char dir[64];
};

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL)
        fail_msg("bad test JSON (%s): %s", e.text, text);
    return j;
}

/* An identity trusting issuer iss, so the set is complete. */
static json_t *identities_for(const char *iss)
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             "[{\"identity\":\"deploy\",\"scopes\":[\"s\"],\"audiences\":[\"https://a.example.com\"],"
             "\"trust\":[{\"name\":\"p\",\"issuer\":\"%s\",\"subject\":{\"equals\":\"x\"}}]}]",
             iss);
    return parse(buf);
}

/* Runs apply_check_set on [issuer] + an identity trusting it; incoming: whether the issuer is
 * one of the documents being written. Returns the result, err filled. */
static enum broker_err check_one(const char *issuer_doc, bool incoming, bool broker_host, char *err, size_t errlen)
{
    json_t *iss = parse(issuer_doc);
    json_t *arr = json_array();
    assert_non_null(arr);
    assert_int_equal(json_array_append_new(arr, iss), 0);
    const char *name = json_string_value(json_object_get(iss, "issuer"));
    json_t *ids = identities_for(name);
    struct apply_check ac = {incoming ? arr : NULL, broker_host};
    enum broker_err e = apply_check_set(&ac, arr, ids, err, errlen);
    json_decref(arr);
    json_decref(ids);
    return e;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL || realpath(test_fixtures_dir(), f->fixtures) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/broker-apply.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char p[PATH_MAX];
    const char *names[] = {"garbage.json", "ca.pem", "token"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_text(const char *dir, const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* The reviewer's repro: a key set that parses as a document but holds no usable key. */
static void test_inline_jwks_without_usable_keys(void **state)
{
    (void)state;
    char err[1024] = "";
    enum broker_err e = check_one("{\"issuer\":\"bogus2\",\"url\":\"kubernetes/y\",\"jwks\":" BOGUS_JWKS "}", true, true,
                                  err, sizeof(err));
    assert_int_equal(e, BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer bogus2: jwks: "));
    assert_non_null(strstr(err, "not a usable key set"));
    /* the same for a stored document the write does not touch: the reload loads the whole set */
    err[0] = '\0';
    assert_int_equal(check_one("{\"issuer\":\"bogus2\",\"url\":\"kubernetes/y\",\"jwks\":" BOGUS_JWKS "}", false, false,
                               err, sizeof(err)),
                     BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer bogus2: jwks: "));
}

static void test_inline_jwks_usable(void **state)
{
    (void)state;
    char err[1024] = "", doc[8192];
    size_t len = 0;
    char *jwks = test_read_file("github-actions/jwks_2024-25_token.actions.githubusercontent.com.json", 1, &len);
    assert_non_null(jwks);
    snprintf(doc, sizeof(doc), "{\"issuer\":\"gha\",\"url\":\"gha/static\",\"jwks\":%s}", jwks);
    free(jwks);
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_OK);
    assert_string_equal(err, "");
}

static void test_jwks_file(void **state)
{
    struct fx *f = *state;
    char err[1024] = "", doc[PATH_MAX + 256], p[PATH_MAX];
    /* a real JWKS, and a real PEM public key (what operators have for Kubernetes) */
    snprintf(doc, sizeof(doc), "{\"issuer\":\"k\",\"url\":\"kubernetes/k\",\"jwks_file\":\"%s/%s\"}", f->fixtures,
             "kubernetes/minikube_v1.18.10_sa.jwks.derived.json");
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_OK);
    snprintf(doc, sizeof(doc), "{\"issuer\":\"k\",\"url\":\"kubernetes/k\",\"jwks_file\":\"%s/%s\"}", f->fixtures,
             "kubernetes/minikube_v1.18.10_sa.pub.pem");
    assert_int_equal(check_one(doc, true, false, err, sizeof(err)), BROKER_OK);
    /* missing: refused when written (not readable) and when merely stored (the reload cannot read it) */
    snprintf(doc, sizeof(doc), "{\"issuer\":\"k\",\"url\":\"kubernetes/k\",\"jwks_file\":\"%s/absent.json\"}", f->dir);
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer k: jwks_file: not readable"));
    assert_int_equal(check_one(doc, true, false, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer k: jwks_file: not readable"));
    assert_int_not_equal(check_one(doc, false, false, err, sizeof(err)), BROKER_OK);
    assert_non_null(strstr(err, "issuer k: jwks_file "));
    assert_non_null(strstr(err, "cannot read"));
    /* readable but not a key set */
    write_text(f->dir, "garbage.json", "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}", p,
               sizeof(p));
    snprintf(doc, sizeof(doc), "{\"issuer\":\"k\",\"url\":\"kubernetes/k\",\"jwks_file\":\"%s\"}", p);
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer k: jwks_file "));
    assert_non_null(strstr(err, "not a usable key set"));
    /* relative: no document directory to resolve it against */
    assert_int_equal(check_one("{\"issuer\":\"rel\",\"url\":\"kubernetes/rel\",\"jwks_file\":\"keys.json\"}", true, true,
                               err, sizeof(err)),
                     BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer rel: jwks_file: must be an absolute path"));
}

static void test_ca_file(void **state)
{
    struct fx *f = *state;
    char err[1024] = "", doc[PATH_MAX + 256], p[PATH_MAX];
    snprintf(doc, sizeof(doc), "{\"issuer\":\"c\",\"url\":\"https://c.example.com\",\"ca_file\":\"%s/absent.pem\"}",
             f->dir);
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer c: ca_file: not readable"));
    assert_int_equal(check_one(doc, true, false, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT); /* the CLI too */
    /* a stored document's ca_file is read only by a fetch, not by the reload: not this write's business */
    assert_int_equal(check_one(doc, false, true, err, sizeof(err)), BROKER_OK);
    write_text(f->dir, "ca.pem", "x", p, sizeof(p));
    snprintf(doc, sizeof(doc), "{\"issuer\":\"c\",\"url\":\"https://c.example.com\",\"ca_file\":\"%s\"}", p);
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_OK);
}

static void test_bearer_token_file(void **state)
{
    struct fx *f = *state;
    char err[1024] = "", doc[PATH_MAX + 256], p[PATH_MAX], allow[PATH_MAX + 8];
    write_text(f->dir, "token", "t", p, sizeof(p));
    snprintf(doc, sizeof(doc), "{\"issuer\":\"b\",\"url\":\"https://b.example.com\",\"bearer_token_file\":\"%s\"}", p);
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
    /* in the broker: outside BROKER_BEARER_TOKEN_FILES (unset: nothing) */
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer b: bearer_token_file: not allowed by BROKER_BEARER_TOKEN_FILES"));
    /* the CLI does not run where the token is projected: not checked there */
    assert_int_equal(check_one(doc, true, false, err, sizeof(err)), BROKER_OK);
    snprintf(allow, sizeof(allow), "%s/", f->dir);
    assert_int_equal(bearer_allowlist_set(allow, err, sizeof(err)), BROKER_OK);
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_OK);
    snprintf(doc, sizeof(doc), "{\"issuer\":\"b\",\"url\":\"https://b.example.com\",\"bearer_token_file\":\"%s/gone\"}",
             f->dir);
    assert_int_equal(check_one(doc, true, true, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "issuer b: bearer_token_file: not readable"));
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
}

/* What policy_set_build refuses is still refused, with its message. */
static void test_set_errors(void **state)
{
    (void)state;
    char err[1024] = "";
    json_t *iss = parse("[{\"issuer\":\"a\",\"url\":\"https://a.example.com\"}]");
    json_t *ids = identities_for("nope");
    assert_int_equal(apply_check_set(NULL, iss, ids, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "no issuer document named \"nope\""));
    json_decref(ids);
    ids = identities_for("a");
    assert_int_equal(apply_check_set(NULL, iss, ids, err, sizeof(err)), BROKER_OK);
    json_decref(iss);
    json_decref(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline_jwks_without_usable_keys),
        cmocka_unit_test(test_inline_jwks_usable),
        cmocka_unit_test_setup_teardown(test_jwks_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer_token_file, setup, teardown),
        cmocka_unit_test(test_set_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
