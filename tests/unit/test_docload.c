/* docload: relative file paths in issuer documents become absolute against the document's
 * directory; a bearer token file keeps its own name (a symlink Kubernetes moves on every rotation),
 * static files are stored resolved. */
#include "test_util.h"
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "docload.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_relative_paths(void **state)
{
    (void)state;
    char dir[] = "/tmp/broker-docload.XXXXXX", p[PATH_MAX], real[PATH_MAX], want[PATH_MAX * 2];
    assert_non_null(mkdtemp(dir));
    assert_non_null(realpath(dir, real));
    snprintf(p, sizeof(p), "%s/tok", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/tok/..2026_11_29", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/tok/..2026_11_29/token", dir);
    write_text(p, "t\n");
    snprintf(p, sizeof(p), "%s/tok/..data", dir);
    assert_int_equal(symlink("..2026_11_29", p), 0);
    snprintf(p, sizeof(p), "%s/tok/token", dir);
    assert_int_equal(symlink("..data/token", p), 0);
    snprintf(p, sizeof(p), "%s/ca.pem", dir);
    write_text(p, "x");
    snprintf(p, sizeof(p), "%s/link-ca.pem", dir);
    assert_int_equal(symlink("ca.pem", p), 0);
    snprintf(p, sizeof(p), "%s/k.issuer.json", dir);
    write_text(p, "{\"issuer\": \"k\", \"url\": \"https://k.example\", \"jwks_uri\": \"https://k.example/jwks\","
                  " \"bearer_token_file\": \"./tok/token\", \"ca_file\": \"link-ca.pem\"}");

    struct docset d;
    assert_int_equal(docset_init(&d), 0);
    assert_int_equal(docset_load_path(&d, p, false, stderr), 0);
    assert_int_equal(json_array_size(d.issuers), 1);
    const json_t *doc = json_array_get(d.issuers, 0);
    snprintf(want, sizeof(want), "%s/tok/token", real);
    assert_string_equal(json_string_value(json_object_get(doc, "bearer_token_file")), want);
    snprintf(want, sizeof(want), "%s/ca.pem", real);
    assert_string_equal(json_string_value(json_object_get(doc, "ca_file")), want);
    docset_clear(&d);

    /* a missing relative file is an error naming it */
    write_text(p, "{\"issuer\": \"k\", \"url\": \"https://k.example\", \"bearer_token_file\": \"nope\"}");
    assert_int_equal(docset_init(&d), 0);
    assert_int_not_equal(docset_load_path(&d, p, false, stderr), 0);
    docset_clear(&d);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_relative_paths)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
