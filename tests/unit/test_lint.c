/* Lint: the table of good and bad policies in lint_cases.json, the shipped trust-policies/, finding
 * contents, and the `broker policy lint` command (output, --json, exit status). */
#include "test_util.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli_lint.h"
#include "lint.h"

static const char *cases_path(void)
{
    const char *p = getenv("BROKER_LINT_CASES");
    return p ? p : "tests/unit/lint_cases.json";
}

static json_t *load_json_file(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!j)
        fprintf(stderr, "%s:%d: %s\n", path, e.line, e.text);
    return j;
}

static bool has_finding(const struct lint_report *r, const char *rule, enum lint_level level)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->items[i].rule, rule) == 0 && r->items[i].level == level)
            return true;
    return false;
}

static void dump(const char *name, const struct lint_report *r)
{
    fprintf(stderr, "case \"%s\" produced %zu finding(s):\n", name, r->n);
    for (size_t i = 0; i < r->n; i++) {
        fputs("  ", stderr);
        cli_lint_print(stderr, NULL, &r->items[i]);
    }
}

/* The exact multiset of (rule, level) — and identity/policy/issuer for expect_full. */
static bool matches(const struct lint_report *r, const json_t *expect, bool full)
{
    bool used[64] = {false};
    size_t i;
    const json_t *e;
    if (json_array_size(expect) != r->n || r->n > 64)
        return false;
    json_array_foreach (expect, i, e) {
        const char *rule = json_string_value(json_object_get(e, "rule"));
        const char *level = json_string_value(json_object_get(e, "level"));
        size_t k;
        for (k = 0; k < r->n; k++) {
            const struct lint_finding *f = &r->items[k];
            if (used[k] || strcmp(f->rule, rule) != 0 || strcmp(lint_level_name(f->level), level) != 0)
                continue;
            if (full && (strcmp(f->identity, json_string_value(json_object_get(e, "identity"))) != 0 ||
                         strcmp(f->policy, json_string_value(json_object_get(e, "policy"))) != 0 ||
                         strcmp(f->issuer, json_string_value(json_object_get(e, "issuer"))) != 0))
                continue;
            break;
        }
        if (k == r->n)
            return false;
        used[k] = true;
    }
    return true;
}

/* Every finding names its rule in kebab-case, says what is wrong and how to fix it; policy findings
 * name the identity too. */
static bool well_formed(const struct lint_finding *f)
{
    for (const char *p = f->rule; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '-'))
            return false;
    if (!f->rule[0] || strlen(f->message) < 20 || strlen(f->fix) < 20)
        return false;
    if (f->policy[0] && (!f->identity[0] || f->doc_kind != LINT_DOC_IDENTITY))
        return false;
    return f->level == LINT_ERROR || f->level == LINT_WARNING;
}

static void test_table(void **state)
{
    (void)state;
    json_t *t = load_json_file(cases_path());
    assert_non_null(t);
    const json_t *cases = json_object_get(t, "cases"), *c;
    size_t i, good = 0, failures = 0;
    assert_true(json_array_size(cases) >= 40);
    json_array_foreach (cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *issuers = json_deep_copy(json_object_get(t, "issuers"));
        json_t *ids = json_deep_copy(json_object_get(c, "identities"));
        const json_t *full = json_object_get(c, "expect_full");
        const json_t *expect = full ? full : json_object_get(c, "expect");
        struct lint_report r = {0};
        json_array_extend(issuers, json_object_get(c, "extra_issuers"));
        if (!ids) {
            json_t *id = json_deep_copy(json_object_get(t, "base"));
            json_object_update(id, json_object_get(c, "with"));
            json_object_set_new(id, "trust", json_pack("[O]", json_object_get(c, "policy")));
            ids = json_pack("[o]", id);
        }
        assert_int_equal(lint_documents(issuers, ids, &r), BROKER_OK);
        bool ok = matches(&r, expect, full != NULL);
        for (size_t k = 0; k < r.n; k++)
            ok &= well_formed(&r.items[k]);
        if (!ok || getenv("LINT_VERBOSE")) /* LINT_VERBOSE=1 shows every case's findings */
            dump(name, &r);
        if (!ok) {
            failures++;
        }
        good += json_array_size(expect) == 0 && !full;
        lint_report_free(&r);
        json_decref(issuers);
        json_decref(ids);
    }
    json_decref(t);
    assert_true(good >= 8);
    assert_int_equal(failures, 0);
}

/* The *.json documents of one directory into issuer and identity arrays. */
static void load_dir(const char *dir, json_t *issuers, json_t *ids)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        char path[512];
        size_t l = strlen(ents[i]->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
        json_t *d = l > 5 && strcmp(ents[i]->d_name + l - 5, ".json") == 0 ? load_json_file(path) : NULL;
        if (d)
            json_array_append_new(json_object_get(d, "issuer") ? issuers : ids, d);
        free(ents[i]);
    }
    free(ents);
}

/* The shipped documents lint clean. The minikube example is flagged: its audience is what the real
 * minikube fixture token carries (kubernetes.default.svc), exactly the shared-default-audience case;
 * without that audience it is clean too. */
static void test_trust_policies(void **state)
{
    (void)state;
    json_t *issuers = json_array(), *ids = json_array();
    struct lint_report r = {0};
    load_dir("trust-policies", issuers, ids);
    assert_true(json_array_size(issuers) >= 2 && json_array_size(ids) >= 2);
    assert_int_equal(lint_documents(issuers, ids, &r), BROKER_OK);
    if (r.n)
        dump("trust-policies", &r);
    assert_int_equal(r.n, 0);
    json_decref(issuers);
    json_decref(ids);

    issuers = json_array();
    ids = json_array();
    load_dir("trust-policies/examples", issuers, ids);
    assert_int_equal(lint_documents(issuers, ids, &r), BROKER_OK);
    if (r.n != 1)
        dump("trust-policies/examples", &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.items[0].rule, "shared-default-audience");
    assert_string_equal(r.items[0].identity, "minikube-vault");
    assert_string_equal(r.items[0].policy, "default-sa");
    assert_int_equal(r.items[0].doc_kind, LINT_DOC_IDENTITY);
    json_t *doc = json_array_get(ids, r.items[0].doc_index);
    assert_string_equal(json_string_value(json_object_get(doc, "identity")), "minikube-vault");
    json_object_del(json_array_get(json_object_get(doc, "trust"), 0), "audience");
    lint_report_free(&r);
    assert_int_equal(lint_documents(issuers, ids, &r), BROKER_OK);
    assert_int_equal(r.n, 0);
    lint_report_free(&r);
    json_decref(issuers);
    json_decref(ids);
}

/* Each platform example binds the immutable id its platform's rule asks for: without it (or without
 * email_verified) exactly that rule fires, naming the identity, policy and issuer. */
static void test_platform_examples(void **state)
{
    (void)state;
    static const struct {
        const char *identity, *drop, *rule;
        enum lint_level level;
        const char *in_fix;
    } cases[] = {
        {"example-gcp-worker", "subject", "mutable-name-without-id", LINT_WARNING, "uniqueId"},
        {"example-gcp-worker", "email_verified", "email-not-verified", LINT_WARNING, "email_verified"},
        {"example-k8s-batch", "/kubernetes.io/serviceaccount/uid", "mutable-name-without-id", LINT_WARNING,
         "/kubernetes.io/serviceaccount/uid"},
        {"example-eks-payments", "/kubernetes.io/serviceaccount/uid", "mutable-name-without-id", LINT_WARNING,
         "kubectl get serviceaccount"},
        {"example-aws-lambda", "subject", "unpinned-principal", LINT_WARNING, "arn:aws:iam::ACCOUNT:role/NAME"},
        {"example-github-deploy", "repository_id", NULL, 0, NULL}, /* repository_owner_id still pins */
        {"example-gitlab-deploy", "project_id", NULL, 0, NULL},    /* namespace_id still pins */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        json_t *issuers = json_array(), *ids = json_array(), *doc = NULL;
        struct lint_report r = {0};
        size_t i;
        json_t *d;
        load_dir("trust-policies/examples", issuers, ids);
        json_array_foreach (ids, i, d)
            if (strcmp(json_string_value(json_object_get(d, "identity")), cases[k].identity) == 0)
                doc = d;
        assert_non_null(doc);
        json_t *tp = json_array_get(json_object_get(doc, "trust"), 0);
        const char *issuer = json_string_value(json_object_get(tp, "issuer"));
        /* the condition is either "subject" or one of "claims" */
        assert_int_equal(json_object_del(strcmp(cases[k].drop, "subject") == 0 ? tp : json_object_get(tp, "claims"),
                                         cases[k].drop), 0);
        assert_int_equal(lint_documents(issuers, ids, &r), BROKER_OK);
        /* the minikube example's deliberate finding stays; nothing else but the expected one */
        size_t expected = 1 + (cases[k].rule != NULL), found = 0;
        if (r.n != expected)
            dump(cases[k].identity, &r);
        assert_int_equal(r.n, expected);
        for (i = 0; i < r.n && cases[k].rule; i++) {
            const struct lint_finding *f = &r.items[i];
            if (strcmp(f->identity, cases[k].identity) != 0)
                continue;
            found++;
            assert_string_equal(f->rule, cases[k].rule);
            assert_int_equal(f->level, cases[k].level);
            assert_string_equal(f->policy, json_string_value(json_object_get(tp, "name")));
            assert_string_equal(f->issuer, issuer);
            assert_non_null(strstr(f->message, issuer));
            assert_non_null(strstr(f->fix, cases[k].in_fix));
        }
        assert_int_equal(found, cases[k].rule != NULL);
        lint_report_free(&r);
        json_decref(issuers);
        json_decref(ids);
    }
}

static void test_contents(void **state)
{
    (void)state;
    json_t *issuers = json_pack("[{s:s, s:s}]", "issuer", "gh", "url", "https://token.actions.githubusercontent.com");
    json_t *ids = json_loads("[{\"identity\": \"app\", \"scopes\": [\"s\"], \"audiences\": [\"a\"], \"trust\": ["
                             "{\"name\": \"main\", \"issuer\": \"gh\", \"subject\": {\"glob\": \"repo:acme/app*\"},"
                             " \"claims\": {\"repository_id\": {\"equals\": \"1\"}}}]}]",
                             0, NULL);
    struct lint_report r = {0};
    assert_int_equal(lint_documents(issuers, ids, &r), BROKER_OK);
    assert_int_equal(r.n, 1);
    const struct lint_finding *f = &r.items[0];
    assert_int_equal(f->level, LINT_ERROR);
    assert_string_equal(f->rule, "glob-extends-name");
    assert_string_equal(f->identity, "app");
    assert_string_equal(f->policy, "main");
    assert_string_equal(f->issuer, "gh");
    assert_non_null(strstr(f->message, "\"repo:acme/app-evil\""));
    assert_non_null(strstr(f->fix, "\"repo:acme/app:*\""));
    json_t *j = lint_finding_json(f);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(j, "policy")), "main");
    assert_string_equal(json_string_value(json_object_get(j, "fix")), f->fix);
    json_decref(j);
    assert_int_equal(lint_report_count(&r, LINT_ERROR), 1);
    assert_int_equal(lint_report_count(&r, LINT_WARNING), 0);
    /* findings append: a second run doubles the report */
    assert_int_equal(lint_documents(issuers, ids, &r), BROKER_OK);
    assert_int_equal(r.n, 2);
    lint_report_free(&r);
    assert_int_equal(r.n, 0);
    /* not arrays */
    assert_int_equal(lint_documents(json_array_get(ids, 0), ids, &r), BROKER_ERR_INTERNAL);
    assert_int_equal(r.n, 0);
    json_decref(issuers);
    json_decref(ids);
}

/* Control characters in a document that fails validation never reach the output. */
static void test_hostile_names(void **state)
{
    (void)state;
    json_t *ids = json_loads("[{\"identity\": \"a\\u001b[2Jb\", \"scopes\": [\"s\"], \"audiences\": [\"a\"],"
                             " \"trust\": [{\"name\": \"p\\n\", \"issuer\": \"none\"}, 5, {\"subject\": []}]},"
                             " 7, {\"identity\": 3}]",
                             0, NULL);
    assert_non_null(ids);
    struct lint_report r = {0};
    assert_int_equal(lint_documents(NULL, ids, &r), BROKER_OK);
    assert_true(r.n >= 3);
    for (size_t i = 0; i < r.n; i++) {
        const struct lint_finding *f = &r.items[i];
        const char *fields[] = {f->rule, f->identity, f->policy, f->issuer, f->message, f->fix};
        for (size_t k = 0; k < 6; k++)
            for (const char *p = fields[k]; *p; p++)
                assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
    assert_true(has_finding(&r, "unbound-policy", LINT_ERROR));
    assert_true(has_finding(&r, "invalid-document", LINT_ERROR));
    lint_report_free(&r);
    json_decref(ids);
}

/* ---- the command ---- */

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs the command with stdout captured into *out (malloc'd). */
static int run(char **out, int argc, char **argv)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/stdout.txt", tmpdir);
    fflush(stdout);
    int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    int rc = cli_policy_lint(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    *out = test_read_file(path, 0, NULL);
    unlink(path);
    assert_non_null(*out);
    return rc;
}

static const char gh_issuer[] = "{\"issuer\": \"gh\", \"url\": \"https://token.actions.githubusercontent.com\"}";
static const char good_identity[] =
    "{\"identity\": \"app\", \"scopes\": [\"s\"], \"audiences\": [\"a\"], \"trust\": [{\"name\": \"main\","
    " \"issuer\": \"gh\", \"subject\": {\"equals\": \"repo:acme/app:ref:refs/heads/main\"},"
    " \"claims\": {\"repository_id\": {\"equals\": \"1\"}}}]}";
static const char warn_identity[] =
    "{\"identity\": \"slow\", \"scopes\": [\"s\"], \"audiences\": [\"a\"], \"max_ttl\": \"6h\", \"trust\": ["
    "{\"name\": \"main\", \"issuer\": \"gh\", \"subject\": {\"equals\": \"repo:acme/slow:ref:refs/heads/main\"},"
    " \"claims\": {\"repository_id\": {\"equals\": \"2\"}}}]}";
static const char bad_identity[] =
    "{\"identity\": \"evil\", \"scopes\": [\"s\"], \"audiences\": [\"a\"], \"trust\": [{\"name\": \"wide\","
    " \"issuer\": \"gh\", \"subject\": {\"glob\": \"repo:acme/app*\"}}]}";

static void test_cli(void **state)
{
    (void)state;
    char *out = NULL;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_lint.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    write_file("gh.issuer.json", gh_issuer);
    write_file("app.identity.json", good_identity);
    write_file("notes.txt", "not json, and not *.json either");

    /* a clean directory: exit 0 and a summary */
    char *a1[] = {tmpdir};
    assert_int_equal(run(&out, 1, a1), 0);
    assert_non_null(strstr(out, "2 files: no findings"));
    free(out);

    /* warnings only: exit 0, the finding names the file, identity and rule */
    write_file("slow.identity.json", warn_identity);
    assert_int_equal(run(&out, 1, a1), 0);
    assert_non_null(strstr(out, "/slow.identity.json: identity slow: warning[long-ttl]: max_ttl \"6h\""));
    assert_non_null(strstr(out, "\n    fix: lower max_ttl"));
    assert_non_null(strstr(out, "3 files: 0 errors, 1 warning"));
    free(out);

    /* an error: exit 1, one line per finding with file, identity, policy, rule; then the fix */
    write_file("evil.identity.json", bad_identity);
    assert_int_equal(run(&out, 1, a1), 1);
    assert_non_null(strstr(out, "/evil.identity.json: identity evil policy wide: error[glob-extends-name]: "));
    assert_non_null(strstr(out, "/evil.identity.json: identity evil policy wide: error[mutable-name-without-id]: "));
    assert_non_null(strstr(out, "4 files: 2 errors, 1 warning"));
    free(out);

    /* --json: an array with the file of each finding */
    char *a2[] = {"--json", tmpdir};
    assert_int_equal(run(&out, 2, a2), 1);
    json_t *arr = json_loads(out, 0, NULL);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 3);
    size_t i;
    json_t *e;
    json_array_foreach (arr, i, e) {
        assert_non_null(strstr(json_string_value(json_object_get(e, "file")), ".identity.json"));
        assert_non_null(json_string_value(json_object_get(e, "rule")));
        assert_non_null(json_string_value(json_object_get(e, "fix")));
    }
    json_decref(arr);
    free(out);

    /* a single file naming an issuer that is not given: invalid-document, exit 1 */
    char path[128];
    snprintf(path, sizeof(path), "%s/app.identity.json", tmpdir);
    char *a3[] = {path};
    assert_int_equal(run(&out, 1, a3), 1);
    assert_non_null(strstr(out, "identity app policy main: error[invalid-document]: trust[0].issuer: no issuer"));
    free(out);

    /* a *.json file that is no document is an error finding, not an I/O failure */
    write_file("broken.json", "{\"identity\": ");
    write_file("other.json", "{\"neither\": 1}");
    assert_int_equal(run(&out, 1, a1), 1);
    assert_non_null(strstr(out, "/broken.json: error[invalid-document]: not a JSON object"));
    assert_non_null(strstr(out, "/other.json: error[invalid-document]: neither an issuer document"));
    free(out);

    /* usage and I/O errors: 2 */
    char *a4[] = {"--bogus", tmpdir};
    assert_int_equal(run(&out, 2, a4), 2);
    free(out);
    assert_int_equal(run(&out, 0, NULL), 2);
    free(out);
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing.json", tmpdir);
    char *a5[] = {missing};
    assert_int_equal(run(&out, 1, a5), 2);
    free(out);

    const char *names[] = {"gh.issuer.json", "app.identity.json", "notes.txt", "slow.identity.json",
                           "evil.identity.json", "broken.json", "other.json"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[k]);
        unlink(path);
    }
    rmdir(tmpdir);
}

/* The printer without a file, as apply uses it. */
static void test_print(void **state)
{
    (void)state;
    struct lint_finding f = {.level = LINT_WARNING, .rule = "long-ttl", .identity = "x", .doc_kind = LINT_DOC_IDENTITY,
                             .message = "m", .fix = "f"};
    char buf[256] = "";
    FILE *mem = fmemopen(buf, sizeof(buf), "w");
    cli_lint_print(mem, NULL, &f);
    f.doc_kind = LINT_DOC_SET;
    f.identity[0] = 0;
    f.level = LINT_ERROR;
    cli_lint_print(mem, NULL, &f);
    fclose(mem);
    assert_string_equal(buf, "identity x: warning[long-ttl]: m\n    fix: f\nerror[long-ttl]: m\n    fix: f\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),         cmocka_unit_test(test_trust_policies),
        cmocka_unit_test(test_platform_examples),
        cmocka_unit_test(test_contents),      cmocka_unit_test(test_hostile_names),
        cmocka_unit_test(test_cli),           cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
