/* store.c and audit.c against a real PostgreSQL (started by test_store.sh with lib/pg.sh).
 * Env: BROKER_DATABASE_URL, BROKER_SQL_DIR (default "sql"), BROKER_TEST_PG_DIR and
 * BROKER_TEST_PG_LIB (to kill and restart the server), BROKER_AUDIT_BENCH=N (optional: time a
 * tight loop of N jobs from 2 threads). Assertions run on the main thread only. */
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <sched.h>
#include <semaphore.h>
#include <dirent.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>
#include <openssl/sha.h>

#include "test_util.h"
#include "store.h"
#include "audit.h"
#include "bounds.h"

static const char *db_url;
static const char *sql_dir;
static struct store *g_st;   /* the main database, migrated by the group setup */
static PGconn *g_pg;         /* plain libpq for checks */

/* ---- helpers ---- */

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *pg_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, on_notice, NULL);
    return c;
}

static long long pg_scalar(PGconn *c, const char *sql, const char *param)
{
    const char *v[1] = {param};
    PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, param ? v : NULL, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static void pg_cmd(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* BROKER_DATABASE_URL with another database name (a scratch database, recreated empty). */
static char *scratch_db(const char *name)
{
    static const char *const drop[] = {"DROP DATABASE IF EXISTS broker_t_mig1 WITH (FORCE)",
                                       "DROP DATABASE IF EXISTS broker_t_mig2 WITH (FORCE)",
                                       "DROP DATABASE IF EXISTS broker_t_mig3 WITH (FORCE)"};
    static const char *const create[] = {"CREATE DATABASE broker_t_mig1", "CREATE DATABASE broker_t_mig2",
                                         "CREATE DATABASE broker_t_mig3"};
    int i = name[strlen(name) - 1] - '1';
    assert_true(i >= 0 && i < 3);
    pg_cmd(g_pg, drop[i]);
    pg_cmd(g_pg, create[i]);

    PQconninfoOption *opts = PQconninfoParse(db_url, NULL);
    assert_non_null(opts);
    char *out = calloc(1, 4096);
    size_t len = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || strcmp(o->keyword, "dbname") == 0)
            continue;
        len += (size_t)snprintf(out + len, 4096 - len, "%s='", o->keyword);
        for (const char *p = o->val; *p && len < 4000; p++) {
            if (*p == '\'' || *p == '\\')
                out[len++] = '\\';
            out[len++] = *p;
        }
        len += (size_t)snprintf(out + len, 4096 - len, "' ");
    }
    snprintf(out + len, 4096 - len, "dbname=%s", name);
    PQconninfoFree(opts);
    return out;
}

static int count_migration_files(const char *dir)
{
    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{3}_[a-z0-9_]+\\.sql$", REG_EXTENDED | REG_NOSUB), 0);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += regexec(&re, e->d_name, 0, NULL, 0) == 0;
    closedir(d);
    regfree(&re);
    return n;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int pg_ctl(const char *fn)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "bash -c '. \"$BROKER_TEST_PG_LIB\" && %s \"$BROKER_TEST_PG_DIR\"'", fn);
    int rc = system(cmd);
    if (rc != 0)
        print_error("%s: system() = %d (exit %d, signal %d)\n", cmd, rc, WIFEXITED(rc) ? WEXITSTATUS(rc) : -1,
                    WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    db_url = getenv("BROKER_DATABASE_URL");
    sql_dir = getenv("BROKER_SQL_DIR") ? getenv("BROKER_SQL_DIR") : "sql";
    if (!db_url) {
        fprintf(stderr, "BROKER_DATABASE_URL is not set (run tests/integration/test_store.sh)\n");
        return -1;
    }
    int applied;
    if (store_open(db_url, &g_st) != BROKER_OK || store_migrate(g_st, sql_dir, &applied) != BROKER_OK) {
        fprintf(stderr, "setup: %s\n", store_last_error(g_st));
        return -1;
    }
    g_pg = pg_connect(db_url);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(g_st);
    PQfinish(g_pg);
    return 0;
}

/* ---- migrations ---- */

static void test_migrate_twice(void **state)
{
    (void)state;
    char *ci = scratch_db("broker_t_mig1");
    struct store *st;
    int applied = -1, nfiles = count_migration_files(sql_dir);
    assert_true(nfiles >= 1);
    assert_int_equal(store_open(ci, &st), BROKER_OK);
    assert_int_equal(store_migrate(st, sql_dir, &applied), BROKER_OK);
    assert_int_equal(applied, nfiles);
    assert_int_equal(store_migrate(st, sql_dir, &applied), BROKER_OK);
    assert_int_equal(applied, 0);
    int64_t gen = -1;
    assert_int_equal(store_policy_generation(st, &gen), BROKER_OK);
    assert_int_equal(gen, 0);
    store_close(st);
    free(ci);
}

struct mig_arg {
    const char *conninfo;
    pthread_barrier_t *barrier;
    enum broker_err rc;
    int applied;
    char err[256];
};

static void *mig_thread(void *p)
{
    struct mig_arg *a = p;
    struct store *st = NULL;
    a->rc = store_open(a->conninfo, &st);
    pthread_barrier_wait(a->barrier);
    if (a->rc == BROKER_OK)
        a->rc = store_migrate(st, sql_dir, &a->applied);
    snprintf(a->err, sizeof(a->err), "%s", store_last_error(st));
    store_close(st);
    return NULL;
}

static void test_migrate_concurrent(void **state)
{
    (void)state;
    char *ci = scratch_db("broker_t_mig2");
    pthread_barrier_t barrier;
    pthread_t th[3];
    struct mig_arg args[3];
    pthread_barrier_init(&barrier, NULL, 3);
    for (int i = 0; i < 3; i++) {
        args[i] = (struct mig_arg){.conninfo = ci, .barrier = &barrier, .applied = -1};
        assert_int_equal(pthread_create(&th[i], NULL, mig_thread, &args[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        if (args[i].rc != BROKER_OK)
            fail_msg("migration %d: %s", i, args[i].err);
        total += args[i].applied;
    }
    pthread_barrier_destroy(&barrier);
    int nfiles = count_migration_files(sql_dir);
    assert_int_equal(total, nfiles);  /* each file applied exactly once overall */
    PGconn *c = pg_connect(ci);
    assert_int_equal(pg_scalar(c, "SELECT count(*) FROM schema_migrations", NULL), nfiles);
    assert_int_equal(pg_scalar(c, "SELECT count(*) FROM policy_state", NULL), 1);
    PQfinish(c);
    free(ci);
}

static void test_migrate_failure(void **state)
{
    (void)state;
    char *ci = scratch_db("broker_t_mig3");
    char dir[] = "/tmp/broker-mig-XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/001_ok.sql", dir);
    write_file(path, "CREATE TABLE t_ok (x int);\nINSERT INTO t_ok VALUES (1);\n");
    snprintf(path, sizeof(path), "%s/002_bad.sql", dir);
    write_file(path, "CREATE TABLE t_bad (x int);\nSELEC 1;\n");
    snprintf(path, sizeof(path), "%s/003_Upper.sql", dir);  /* ignored: name pattern */
    write_file(path, "SELECT 1/0;");
    snprintf(path, sizeof(path), "%s/04_short.sql", dir);
    write_file(path, "SELECT 1/0;");

    struct store *st;
    int applied = -1;
    assert_int_equal(store_open(ci, &st), BROKER_OK);
    assert_int_equal(store_migrate(st, dir, &applied), BROKER_ERR_DB);
    assert_int_equal(applied, 1);
    assert_non_null(strstr(store_last_error(st), "002_bad.sql"));
    PGconn *c = pg_connect(ci);
    assert_int_equal(pg_scalar(c, "SELECT count(*) FROM schema_migrations", NULL), 1);
    assert_int_equal(pg_scalar(c, "SELECT count(*) FROM pg_tables WHERE tablename = 't_bad'", NULL), 0);
    /* the advisory lock was released: another session migrates at once */
    assert_int_equal(pg_scalar(c, "SELECT pg_try_advisory_lock(7236952796468326770)::int", NULL), 1);
    assert_int_equal(pg_scalar(c, "SELECT pg_advisory_unlock(7236952796468326770)::int", NULL), 1);

    snprintf(path, sizeof(path), "%s/002_bad.sql", dir);
    write_file(path, "CREATE TABLE t_two (x int);\nCOMMIT;\n");
    assert_int_equal(store_migrate(st, dir, &applied), BROKER_ERR_DB);
    assert_non_null(strstr(store_last_error(st), "BEGIN/COMMIT"));
    assert_int_equal(pg_scalar(c, "SELECT count(*) FROM pg_tables WHERE tablename = 't_two'", NULL), 1);
    pg_cmd(c, "DROP TABLE t_two");  /* the COMMIT inside the file escaped our transaction */
    write_file(path, "CREATE TABLE t_two (x int);\n");
    assert_int_equal(store_migrate(st, dir, &applied), BROKER_OK);
    assert_int_equal(applied, 1);
    assert_int_equal(pg_scalar(c, "SELECT count(*) FROM schema_migrations", NULL), 2);
    assert_int_equal(store_migrate(st, "/nonexistent-dir", &applied), BROKER_ERR_IO);
    PQfinish(c);
    store_close(st);
    free(ci);
    const char *names[] = {"001_ok.sql", "002_bad.sql", "003_Upper.sql", "04_short.sql"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- documents ---- */

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

/* changes must be exactly the expected list (JSON text). */
static void assert_changes(json_t *changes, const char *expected)
{
    json_t *want = J(expected);
    if (!json_equal(changes, want)) {
        char *got = json_dumps(changes, JSON_COMPACT);
        fail_msg("changes: got %s, want %s", got, expected);
    }
    json_decref(want);
    json_array_clear(changes);
}

static int64_t generation(void)
{
    int64_t g = -1;
    assert_int_equal(store_policy_generation(g_st, &g), BROKER_OK);
    return g;
}

static void test_documents(void **state)
{
    (void)state;
    json_t *ch = json_array(), *none = json_array(), *iss, *ids, *l_iss = NULL, *l_ids = NULL;
    assert_int_equal(store_put_documents(g_st, none, none, true, false, ch), BROKER_OK);  /* start empty */
    json_array_clear(ch);
    PGconn *listener = pg_connect(db_url);
    pg_cmd(listener, "LISTEN broker_policy");
    int64_t g0 = generation();
    char base[32];
    snprintf(base, sizeof(base), "%lld", pg_scalar(g_pg, "SELECT coalesce(max(id), 0) FROM audit_changes", NULL));

    iss = J("[{\"issuer\":\"gh\",\"url\":\"https://token.actions.githubusercontent.com\"}]");
    ids = J("[{\"identity\":\"x\",\"scopes\":[\"a\"]},{\"identity\":\"b\",\"scopes\":[\"b\"]}]");
    assert_int_equal(store_put_documents(g_st, iss, ids, false, false, ch), BROKER_OK);
    assert_changes(ch, "[{\"kind\":\"issuer\",\"name\":\"gh\",\"change\":\"created\"},"
                       "{\"kind\":\"identity\",\"name\":\"x\",\"change\":\"created\"},"
                       "{\"kind\":\"identity\",\"name\":\"b\",\"change\":\"created\"}]");
    assert_int_equal(generation(), g0 + 1);
    /* the NOTIFY carries the new generation */
    PGnotify *nt = NULL;
    for (int i = 0; i < 100 && !nt; i++) {
        PQconsumeInput(listener);
        if (!(nt = PQnotifies(listener)))
            sleep_ms(10);
    }
    assert_non_null(nt);
    assert_string_equal(nt->relname, "broker_policy");
    assert_int_equal(strtoll(nt->extra, NULL, 10), g0 + 1);
    PQfreemem(nt);
    PQfinish(listener);

    int64_t lg = -1;
    assert_int_equal(store_load_documents_gen(g_st, &l_iss, &l_ids, &lg), BROKER_OK);
    assert_int_equal(lg, g0 + 1);
    assert_true(json_equal(l_iss, iss));
    assert_int_equal(json_array_size(l_ids), 2);  /* sorted by name: b, x */
    assert_true(json_equal(json_array_get(l_ids, 0), json_array_get(ids, 1)));
    assert_true(json_equal(json_array_get(l_ids, 1), json_array_get(ids, 0)));
    json_decref(l_iss);
    json_decref(l_ids);

    /* same documents, one with its keys reordered: unchanged, no new generation */
    json_decref(ids);
    ids = J("[{\"scopes\":[\"a\"],\"identity\":\"x\"},{\"identity\":\"b\",\"scopes\":[\"b\"]}]");
    assert_int_equal(store_put_documents(g_st, iss, ids, false, false, ch), BROKER_OK);
    assert_changes(ch, "[{\"kind\":\"issuer\",\"name\":\"gh\",\"change\":\"unchanged\"},"
                       "{\"kind\":\"identity\",\"name\":\"x\",\"change\":\"unchanged\"},"
                       "{\"kind\":\"identity\",\"name\":\"b\",\"change\":\"unchanged\"}]");
    assert_int_equal(generation(), g0 + 1);

    /* an update; the issuers are left alone (NULL) */
    json_t *upd = J("[{\"identity\":\"x\",\"scopes\":[\"a\",\"c\"]}]");
    assert_int_equal(store_put_documents(g_st, NULL, upd, false, false, ch), BROKER_OK);
    assert_changes(ch, "[{\"kind\":\"identity\",\"name\":\"x\",\"change\":\"updated\"}]");
    assert_int_equal(generation(), g0 + 2);
    assert_int_equal(pg_scalar(g_pg, "SELECT version FROM identities WHERE name = $1", "x"), 2);

    /* dry run: reported, not written */
    json_t *z = J("[{\"identity\":\"z\"}]");
    assert_int_equal(store_put_documents(g_st, NULL, z, true, true, ch), BROKER_OK);
    assert_changes(ch, "[{\"kind\":\"identity\",\"name\":\"z\",\"change\":\"created\"},"
                       "{\"kind\":\"identity\",\"name\":\"b\",\"change\":\"deleted\"},"
                       "{\"kind\":\"identity\",\"name\":\"x\",\"change\":\"deleted\"}]");
    assert_int_equal(generation(), g0 + 2);
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM identities", NULL), 2);

    /* prune identities only */
    assert_int_equal(store_put_documents(g_st, NULL, upd, true, false, ch), BROKER_OK);
    assert_changes(ch, "[{\"kind\":\"identity\",\"name\":\"x\",\"change\":\"unchanged\"},"
                       "{\"kind\":\"identity\",\"name\":\"b\",\"change\":\"deleted\"}]");
    assert_int_equal(generation(), g0 + 3);
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM issuers", NULL), 1);

    /* bad input: nothing written, changes untouched */
    json_t *dup = J("[{\"identity\":\"q\"},{\"identity\":\"q\"}]"), *noname = J("[{\"identty\":\"q\"}]");
    json_t *notobj = J("[\"q\"]"), *notarr = J("{\"identity\":\"q\"}");
    assert_int_equal(json_array_append_new(ch, json_string("keep")), 0);
    assert_int_equal(store_put_documents(g_st, NULL, dup, false, false, ch), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(store_last_error(g_st), "given twice"));
    assert_int_equal(store_put_documents(g_st, NULL, noname, false, false, ch), BROKER_ERR_INVALID_DOCUMENT);
    assert_int_equal(store_put_documents(g_st, notobj, NULL, false, false, ch), BROKER_ERR_INVALID_DOCUMENT);
    assert_int_equal(store_put_documents(g_st, NULL, notarr, false, false, ch), BROKER_ERR_INVALID_DOCUMENT);
    assert_int_equal(json_array_size(ch), 1);
    json_array_clear(ch);
    assert_int_equal(generation(), g0 + 3);

    /* delete one, as an admin */
    assert_int_equal(store_delete_document(g_st, "admin-alice", "identity", "x", ch), BROKER_OK);
    assert_changes(ch, "[{\"kind\":\"identity\",\"name\":\"x\",\"change\":\"deleted\"}]");
    assert_int_equal(store_delete_document(g_st, "admin-alice", "identity", "x", ch), BROKER_ERR_NOT_FOUND);
    assert_int_equal(store_delete_document(g_st, "admin-alice", "policy", "x", ch), BROKER_ERR_BAD_REQUEST);
    assert_int_equal(json_array_size(ch), 0);
    assert_int_equal(generation(), g0 + 4);
    /* every change is in audit_changes with who, before and after */
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit_changes WHERE what = 'identity/x' AND id > $1",
                               base), 3);  /* created, updated, deleted */
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit_changes WHERE id > $1", base), 6);
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit_changes WHERE who = $1 AND what = 'identity/x' "
                                     "AND before->'scopes' = '[\"a\",\"c\"]' AND after IS NULL", "admin-alice"), 1);
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit_changes WHERE who = 'cli' AND what = $1 AND "
                                     "change = 'updated' AND before->'scopes' = '[\"a\"]' AND after->'scopes' = "
                                     "'[\"a\",\"c\"]'", "identity/x"), 1);
    json_decref(iss);
    json_decref(ids);
    json_decref(upd);
    json_decref(z);
    json_decref(dup);
    json_decref(noname);
    json_decref(notobj);
    json_decref(notarr);
    json_decref(none);
    json_decref(ch);
}

/* ---- admin tokens ---- */

static void test_admin_tokens(void **state)
{
    (void)state;
    uint8_t h1[32], h2[32];
    char name[64], small[3];
    SHA256((const unsigned char *)"token-one", 9, h1);
    SHA256((const unsigned char *)"token-two", 9, h2);
    assert_int_equal(store_admin_token_add(g_st, "ci-admin", h1), BROKER_OK);
    assert_int_equal(store_admin_token_add(g_st, "ci-admin", h2), BROKER_ERR_BAD_REQUEST);
    assert_int_equal(store_admin_token_add(g_st, "other", h1), BROKER_ERR_BAD_REQUEST);
    assert_int_equal(store_admin_token_check(g_st, h1, name, sizeof(name)), BROKER_OK);
    assert_string_equal(name, "ci-admin");
    assert_int_equal(store_admin_token_check(g_st, h2, name, sizeof(name)), BROKER_ERR_UNAUTHORIZED);
    assert_string_equal(name, "");
    assert_int_equal(store_admin_token_check(g_st, h1, small, sizeof(small)), BROKER_ERR_INTERNAL);
    assert_int_equal(store_admin_token_revoke(g_st, "ci-admin"), BROKER_OK);
    assert_int_equal(store_admin_token_check(g_st, h1, name, sizeof(name)), BROKER_ERR_UNAUTHORIZED);
    assert_int_equal(store_admin_token_revoke(g_st, "ci-admin"), BROKER_ERR_NOT_FOUND);
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM admin_tokens WHERE name = $1 AND revoked_at IS NOT NULL",
                               "ci-admin"), 1);
}

/* ---- audit: store level ---- */

static void rec_fill(struct audit_record *r, const char *id, bool issued)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "%s", id);
    r->at_us = 1700000000123456;
    r->issued = issued;
    r->reason = issued ? "ok" : "no_matching_policy";
    r->identity = strdup("payments-deploy");
    r->policy = issued ? strdup("github-main") : NULL;
    r->subject_iss = strdup("https://token.actions.githubusercontent.com");
    r->subject_sub = strdup("repo:acme/payments:ref:refs/heads/main");
    r->subject_jti = strdup("sj-1");
    r->token_jti = issued ? strdup("tj-1") : NULL;
    r->scope = strdup("secrets:read:payments/prod");
    r->audience = strdup("https://secrets.example.com");
    r->client_addr = strdup("10.1.2.3");
    r->explanation = strdup("[{\"identity\":\"payments-deploy\",\"policy\":\"github-main\",\"result\":\"match\"}]");
}

static void test_audit_write_get(void **state)
{
    (void)state;
    char id1[40], id2[40];
    snprintf(id1, sizeof(id1), "wg-%d-1", (int)getpid());
    snprintf(id2, sizeof(id2), "wg-%d-2", (int)getpid());
    struct audit_record a, b;
    rec_fill(&a, id1, true);
    rec_fill(&b, id2, false);
    free(b.identity);
    b.identity = NULL;
    free(b.explanation);
    b.explanation = NULL;
    struct audit_record *recs[2] = {&a, &b};
    assert_int_equal(store_audit_write(g_st, recs, 2), BROKER_OK);
    assert_int_equal(store_audit_write(g_st, recs, 0), BROKER_OK);

    json_t *o = NULL;
    assert_int_equal(store_audit_get(g_st, id1, &o), BROKER_OK);
    json_t *want = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s}]}",
                             "request_id", id1, "at", "2023-11-14T22:13:20.123456Z", "result", "issued", "reason", "ok",
                             "identity", "payments-deploy", "policy", "github-main", "subject_iss",
                             "https://token.actions.githubusercontent.com", "subject_sub",
                             "repo:acme/payments:ref:refs/heads/main", "subject_jti", "sj-1", "token_jti", "tj-1",
                             "scope", "secrets:read:payments/prod", "audience", "https://secrets.example.com",
                             "client_addr", "10.1.2.3", "explanation", "identity", "payments-deploy", "policy",
                             "github-main", "result", "match");
    assert_non_null(want);
    if (!json_equal(o, want))
        fail_msg("audit get: %s", json_dumps(o, JSON_COMPACT));
    json_decref(want);
    json_decref(o);
    assert_int_equal(store_audit_get(g_st, id2, &o), BROKER_OK);
    assert_string_equal(json_string_value(json_object_get(o, "result")), "denied");
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "no_matching_policy");
    assert_true(json_is_null(json_object_get(o, "identity")));
    assert_true(json_is_null(json_object_get(o, "token_jti")));
    assert_true(json_is_null(json_object_get(o, "explanation")));
    json_decref(o);
    assert_int_equal(store_audit_get(g_st, "no-such-request", &o), BROKER_ERR_NOT_FOUND);
    assert_null(o);

    /* the same request_id again: the batch fails as a whole, the session stays usable */
    char id3[40];
    snprintf(id3, sizeof(id3), "wg-%d-3", (int)getpid());
    struct audit_record c;
    rec_fill(&c, id3, true);
    struct audit_record *dup[2] = {&c, &a};
    assert_int_equal(store_audit_write(g_st, dup, 2), BROKER_ERR_DB);
    assert_string_equal(store_last_sqlstate(g_st), "23505");
    assert_true(store_connected(g_st));
    assert_int_equal(store_audit_get(g_st, id3, &o), BROKER_ERR_NOT_FOUND);

    /* an explanation that is not JSON fails the batch it is in: nothing of it is written */
    struct audit_record d;
    char id4[40];
    snprintf(id4, sizeof(id4), "wg-%d-4", (int)getpid());
    rec_fill(&d, id4, true);
    free(d.explanation);
    d.explanation = strdup("[{");
    struct audit_record *bad[2] = {&c, &d};
    assert_int_equal(store_audit_write(g_st, bad, 2), BROKER_ERR_DB);
    assert_string_equal(store_last_sqlstate(g_st), "22P02");
    assert_int_equal(store_audit_get(g_st, id3, &o), BROKER_ERR_NOT_FOUND);
    struct audit_record *one[1] = {&c};
    assert_int_equal(store_audit_write(g_st, one, 1), BROKER_OK);
    assert_int_equal(store_audit_get(g_st, id3, &o), BROKER_OK);
    json_decref(o);

    /* hostile text: invalid UTF-8 is replaced, long values cut, huge explanations marked */
    struct audit_record e;
    char id5[40];
    snprintf(id5, sizeof(id5), "wg-%d-5", (int)getpid());
    rec_fill(&e, id5, false);
    free(e.subject_sub);
    e.subject_sub = strdup("a\xff" "b\xc3\xa9" "c\xed\xa0\x80" "d\xe2\x82");
    free(e.scope);
    e.scope = malloc(BROKER_MAX_CLAIM_LEN + 100);
    memset(e.scope, 's', BROKER_MAX_CLAIM_LEN + 99);
    memcpy(e.scope + BROKER_MAX_CLAIM_LEN - 1, "\xc3\xa9", 2);  /* a 2-byte character across the cut */
    e.scope[BROKER_MAX_CLAIM_LEN + 99] = 0;
    free(e.explanation);
    e.explanation = malloc(BROKER_AUDIT_EXPLAIN_MAX + 10);
    memset(e.explanation, ' ', BROKER_AUDIT_EXPLAIN_MAX + 9);
    e.explanation[0] = '[';
    e.explanation[BROKER_AUDIT_EXPLAIN_MAX + 8] = ']';
    e.explanation[BROKER_AUDIT_EXPLAIN_MAX + 9] = 0;
    struct audit_record *hostile[1] = {&e};
    assert_int_equal(store_audit_write(g_st, hostile, 1), BROKER_OK);
    assert_int_equal(store_audit_get(g_st, id5, &o), BROKER_OK);
    assert_string_equal(json_string_value(json_object_get(o, "subject_sub")), "a?b\xc3\xa9" "c???d??");
    const char *scope = json_string_value(json_object_get(o, "scope"));
    assert_int_equal(strlen(scope), BROKER_MAX_CLAIM_LEN - 1);
    json_t *ex = json_array_get(json_object_get(o, "explanation"), 0);
    assert_true(json_is_true(json_object_get(ex, "truncated")));
    assert_int_equal(json_integer_value(json_object_get(ex, "bytes")), BROKER_AUDIT_EXPLAIN_MAX + 9);
    json_decref(o);

    audit_record_clear(&a);
    audit_record_clear(&b);
    audit_record_clear(&c);
    audit_record_clear(&d);
    audit_record_clear(&e);
    assert_null(a.identity);
}

/* A batch's plain rows travel as array literals (one INSERT ... unnest): text that means something
 * inside {"...",...} must come back byte for byte, NULL must stay NULL (and the text "NULL" stay
 * text), rows keep their queue order, and claiming rows in the same batch still claim. */
static void test_audit_batch_text(void **state)
{
    (void)state;
    static const char *texts[] = {"", "NULL", "null", "\"", "\\", "\\\"", "{}", "{\"a\",\"b\"}", ",", " x ",
                                  "a,b", "line\nbreak\ttab", "\xc3\xa9\xe6\x97\xa5\xe6\x9c\xac", "}{", "'quote'",
                                  "back\\slash\\\\", "ends with \\", "\"\"\"", "(1,2)", "ARRAY[1]"};
    const size_t nt = sizeof(texts) / sizeof(texts[0]);
    enum { N = 48 };
    struct audit_record recs[N];
    struct audit_record *ptrs[N];
    char ident[48], jti[48];
    snprintf(ident, sizeof(ident), "batch-%d", (int)getpid());
    snprintf(jti, sizeof(jti), "batch-jti-%d", (int)getpid());
    for (size_t i = 0; i < N; i++) {
        char id[40];
        snprintf(id, sizeof(id), "bt-%d-%02zu", (int)getpid(), i);
        rec_fill(&recs[i], id, i % 3 != 1);
        free(recs[i].identity);
        recs[i].identity = strdup(ident);
        recs[i].at_us = 1700000000000000 + (int64_t)i;
        free(recs[i].subject_sub);
        recs[i].subject_sub = strdup(texts[i % nt]);
        free(recs[i].scope);
        recs[i].scope = i % 5 == 0 ? NULL : strdup(texts[(i + 7) % nt]);
        free(recs[i].explanation);
        char ex[160];
        snprintf(ex, sizeof(ex), "[{\"n\":%zu,\"s\":\"q\\\"b\\\\ \\u00e9\"}]", i);
        recs[i].explanation = i % 4 == 3 ? NULL : strdup(ex);
        if (i == 10 || i == 20) { /* the same subject jti claimed twice in one batch */
            recs[i].issued = true;
            recs[i].reason = "ok";
            free(recs[i].subject_jti);
            recs[i].subject_jti = strdup(jti);
            recs[i].replay_exp = 1700003600;
        }
        ptrs[i] = &recs[i];
    }
    assert_int_equal(store_audit_write(g_st, ptrs, N), BROKER_OK);
    assert_false(recs[10].replayed);
    assert_true(recs[20].replayed); /* the second claim of one jti is stored as a replay */

    for (size_t i = 0; i < N; i++) {
        json_t *o = NULL;
        assert_int_equal(store_audit_get(g_st, recs[i].request_id, &o), BROKER_OK);
        assert_string_equal(json_string_value(json_object_get(o, "subject_sub")), texts[i % nt]);
        if (i % 5 == 0)
            assert_true(json_is_null(json_object_get(o, "scope")));
        else
            assert_string_equal(json_string_value(json_object_get(o, "scope")), texts[(i + 7) % nt]);
        json_t *ex = json_object_get(o, "explanation");
        if (i == 20) {
            assert_string_equal(json_string_value(json_object_get(o, "reason")), "replay");
        } else if (i % 4 == 3) {
            assert_true(json_is_null(ex));
        } else {
            assert_int_equal(json_integer_value(json_object_get(json_array_get(ex, 0), "n")), (json_int_t)i);
            assert_string_equal(json_string_value(json_object_get(json_array_get(ex, 0), "s")), "q\"b\\ \xc3\xa9");
        }
        char at[40];
        snprintf(at, sizeof(at), "2023-11-14T22:13:20.0000%02zuZ", i);
        assert_string_equal(json_string_value(json_object_get(o, "at")), at);
        assert_string_equal(json_string_value(json_object_get(o, "result")),
                            i == 20 ? "denied" : recs[i].issued ? "issued" : "denied");
        json_decref(o);
    }
    /* plain rows are numbered in queue order (the listing is newest first) */
    struct store_audit_filter f = {.identity = ident, .limit = 100};
    json_t *items = NULL;
    int64_t cursor = 0;
    assert_int_equal(store_audit_list(g_st, &f, &items, &cursor), BROKER_OK);
    assert_int_equal(json_array_size(items), N);
    size_t prev = N, seen = 0;
    for (size_t k = 0; k < json_array_size(items); k++) {
        const char *rid = json_string_value(json_object_get(json_array_get(items, k), "request_id"));
        size_t i = (size_t)strtoul(strrchr(rid, '-') + 1, NULL, 10);
        if (i == 10 || i == 20)
            continue;
        assert_true(i < prev);
        prev = i;
        seen++;
    }
    assert_int_equal(seen, N - 2);
    json_decref(items);
    for (size_t i = 0; i < N; i++)
        audit_record_clear(&recs[i]);
}

/* The session is always UTF8, whatever the connection string, PGCLIENTENCODING or the role's
 * defaults say: under SJIS the byte 0x81 followed by the array literal's escaping backslash is one
 * character, so this claim would break out of its element and shift the batch's columns. */
static void test_client_encoding_pinned(void **state)
{
    (void)state;
    char url[1024];
    snprintf(url, sizeof(url), "%s%cclient_encoding=SJIS", db_url, strchr(db_url, '?') ? '&' : '?');
    pg_cmd(g_pg, "ALTER ROLE CURRENT_USER SET client_encoding = 'SJIS'");
    assert_int_equal(setenv("PGCLIENTENCODING", "SJIS", 1), 0);
    struct store *st = NULL;
    enum broker_err rc = store_open(url, &st);
    unsetenv("PGCLIENTENCODING");
    pg_cmd(g_pg, "ALTER ROLE CURRENT_USER RESET client_encoding");
    assert_int_equal(rc, BROKER_OK);

    static const char breakout[] = "\xc4\x81\",forged,tail\xc4\x81\\";
    struct audit_record a, b;
    char id1[40], id2[40];
    snprintf(id1, sizeof(id1), "enc-%d-1", (int)getpid());
    snprintf(id2, sizeof(id2), "enc-%d-2", (int)getpid());
    rec_fill(&a, id1, true);
    rec_fill(&b, id2, false);
    free(a.subject_sub);
    a.subject_sub = strdup(breakout);
    struct audit_record *recs[2] = {&a, &b};
    assert_int_equal(store_audit_write(st, recs, 2), BROKER_OK);
    json_t *o = NULL;
    assert_int_equal(store_audit_get(st, id1, &o), BROKER_OK);
    assert_string_equal(json_string_value(json_object_get(o, "subject_sub")), breakout);
    json_decref(o);
    assert_int_equal(store_audit_get(st, id2, &o), BROKER_OK);
    assert_string_equal(json_string_value(json_object_get(o, "subject_sub")), "repo:acme/payments:ref:refs/heads/main");
    json_decref(o);
    audit_record_clear(&a);
    audit_record_clear(&b);
    store_close(st);
}

/* A NULL column is a NULL array element in the audit batch, which reads back as SQL NULL only
 * under array_nulls=on: the session pins it, whatever the role or the connection string say. */
static void test_array_nulls_pinned(void **state)
{
    (void)state;
    char url[1024];
    snprintf(url, sizeof(url), "%s%coptions=-c%%20array_nulls%%3Doff", db_url, strchr(db_url, '?') ? '&' : '?');
    pg_cmd(g_pg, "ALTER ROLE CURRENT_USER SET array_nulls = off");
    struct store *st = NULL;
    enum broker_err rc = store_open(url, &st);
    pg_cmd(g_pg, "ALTER ROLE CURRENT_USER RESET array_nulls");
    assert_int_equal(rc, BROKER_OK);

    struct audit_record a, b;
    char id1[40], id2[40];
    snprintf(id1, sizeof(id1), "nul-%d-1", (int)getpid());
    snprintf(id2, sizeof(id2), "nul-%d-2", (int)getpid());
    rec_fill(&a, id1, false); /* policy and token_jti are NULL */
    rec_fill(&b, id2, false);
    free(b.explanation); /* a NULL explanation: 'NULL'::jsonb would fail the whole batch */
    b.explanation = NULL;
    struct audit_record *recs[2] = {&a, &b};
    assert_int_equal(store_audit_write(st, recs, 2), BROKER_OK);
    json_t *o = NULL;
    assert_int_equal(store_audit_get(st, id1, &o), BROKER_OK);
    assert_true(json_is_null(json_object_get(o, "token_jti")));
    assert_true(json_is_null(json_object_get(o, "policy")));
    assert_string_equal(json_string_value(json_object_get(o, "identity")), "payments-deploy");
    json_decref(o);
    assert_int_equal(store_audit_get(st, id2, &o), BROKER_OK);
    assert_true(json_is_null(json_object_get(o, "explanation")));
    json_decref(o);
    audit_record_clear(&a);
    audit_record_clear(&b);
    store_close(st);
}

/* ---- audit writer ---- */

struct tjob {
    struct audit_job job;     /* first: done() casts back */
    atomic_int calls;
    int64_t submitted_ns;
    bool accepted;
    char id[40];
};

static atomic_long g_done;

static void on_done(struct audit_job *j)
{
    struct tjob *t = (struct tjob *)j;
    atomic_fetch_add(&t->calls, 1);
    audit_record_clear(&j->rec);
    atomic_fetch_add(&g_done, 1);
}

static void tjob_init(struct tjob *t, const char *prefix, long i)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s-%d-%ld", prefix, (int)getpid(), i);
    rec_fill(&t->job.rec, t->id, i % 3 != 0);
    t->job.done = on_done;
}

/* n jobs named PREFIX-PID-I; the caller frees the array */
static struct tjob *tjobs_new(const char *prefix, long n)
{
    struct tjob *jobs = calloc((size_t)n, sizeof(*jobs));
    assert_non_null(jobs);
    for (long i = 0; i < n; i++)
        tjob_init(&jobs[i], prefix, i);
    return jobs;
}

static bool wait_done(long target, int timeout_ms)
{
    int64_t end = now_ns() + (int64_t)timeout_ms * 1000000;
    while (atomic_load(&g_done) < target && now_ns() < end)
        sleep_ms(1);
    return atomic_load(&g_done) >= target;
}

static bool wait_up(bool up, int timeout_ms)
{
    int64_t end = now_ns() + (int64_t)timeout_ms * 1000000;
    while (audit_db_up() != up && now_ns() < end)
        sleep_ms(5);
    return audit_db_up() == up;
}

/* How many of the jobs that reported OK have their row. */
static long long rows_of_ok_jobs(struct tjob *jobs, long n, long *nok)
{
    json_t *ids = json_array();
    *nok = 0;
    for (long i = 0; i < n; i++) {
        if (jobs[i].accepted && jobs[i].job.result == BROKER_OK) {
            json_array_append_new(ids, json_string(jobs[i].id));
            (*nok)++;
        }
    }
    char *text = json_dumps(ids, JSON_COMPACT);
    long long rows = pg_scalar(g_pg, "SELECT count(*) FROM audit WHERE request_id IN (SELECT jsonb_array_elements_text($1::jsonb))", text);
    free(text);
    json_decref(ids);
    return rows;
}

struct producer {
    struct tjob *jobs;
    long from, to;
    int retry_ms;             /* retry a refused job for this long (queue full), 0: never */
    long refused;
    long long cpu_ns;
};

static void *producer_main(void *p)
{
    struct producer *a = p;
    for (long i = a->from; i < a->to; i++) {
        int64_t deadline = now_ns() + (int64_t)a->retry_ms * 1000000;
        for (;;) {
            a->jobs[i].submitted_ns = now_ns();
            enum broker_err rc = audit_submit(&a->jobs[i].job);
            if (rc == BROKER_OK) {
                a->jobs[i].accepted = true;
                break;
            }
            a->refused++;
            if (now_ns() > deadline)
                break;
            sched_yield();
        }
    }
    return NULL;
}

static void test_audit_writer_many(void **state)
{
    (void)state;
    enum { N = 10000, T = 4 };
    struct tjob *jobs = tjobs_new("many", N);
    struct producer prod[T];
    pthread_t th[T];
    atomic_store(&g_done, 0);
    uint64_t rows0 = audit_rows(), batches0 = audit_batches();
    assert_int_equal(audit_start(db_url), BROKER_OK);
    assert_int_equal(audit_start(db_url), BROKER_ERR_INTERNAL);  /* one writer */
    assert_true(wait_up(true, 5000));
    for (int t = 0; t < T; t++) {
        prod[t] = (struct producer){.jobs = jobs, .from = t * (N / T), .to = (t + 1) * (N / T), .retry_ms = 10000};
        assert_int_equal(pthread_create(&th[t], NULL, producer_main, &prod[t]), 0);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    assert_true(wait_done(N, 30000));
    audit_stop();
    for (long i = 0; i < N; i++) {
        assert_true(jobs[i].accepted);
        assert_int_equal(atomic_load(&jobs[i].calls), 1);
        assert_int_equal(jobs[i].job.result, BROKER_OK);
    }
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit WHERE request_id LIKE $1", "many-%"), N);
    long nok;
    assert_int_equal(rows_of_ok_jobs(jobs, N, &nok), N);
    uint64_t rows = audit_rows() - rows0, batches = audit_batches() - batches0;
    assert_int_equal(rows, N);
    assert_true(batches < N / 4);  /* group commit: batches formed while a COMMIT was in flight */
    print_message("audit writer: %d rows in %llu batches\n", N, (unsigned long long)batches);
    assert_int_equal(audit_submit(&jobs[0].job), BROKER_ERR_AUDIT_UNAVAILABLE);  /* stopped */
    assert_int_equal(audit_submit(NULL), BROKER_ERR_INTERNAL);
    free(jobs);
}

/* audit_hold: jobs submitted under a hold do not wake an idle writer; audit_release wakes it
 * once, and the whole burst is one transaction. */
static void test_audit_writer_hold(void **state)
{
    (void)state;
    enum { N = 40 };
    struct tjob *jobs = tjobs_new("hold", N);
    atomic_store(&g_done, 0);
    assert_int_equal(audit_start(db_url), BROKER_OK);
    assert_true(wait_up(true, 5000));
    sleep_ms(50); /* the writer is idle, waiting for work */
    uint64_t batches0 = audit_batches();
    audit_hold();
    for (long i = 0; i < N; i++) {
        assert_int_equal(audit_submit(&jobs[i].job), BROKER_OK);
        if (i == 0)
            sleep_ms(100); /* without the hold the writer would take this one alone */
    }
    sleep_ms(100);
    assert_int_equal(atomic_load(&g_done), 0); /* nothing woke the writer */
    audit_release();
    assert_true(wait_done(N, 10000));
    assert_int_equal(audit_batches() - batches0, 1);
    audit_release(); /* nothing owed: a no-op */
    audit_stop();
    for (long i = 0; i < N; i++)
        assert_int_equal(jobs[i].job.result, BROKER_OK);
    free(jobs);
}

static sem_t g_entered, g_release;

static void on_done_block(struct audit_job *j)
{
    sem_post(&g_entered);
    while (sem_wait(&g_release) != 0 && errno == EINTR) {}
    on_done(j);
}

/* A full queue refuses at once; the writer is held inside a done() meanwhile. */
static void test_audit_writer_queue_full(void **state)
{
    (void)state;
    enum { N = BROKER_AUDIT_QUEUE_MAX + 2 };
    struct tjob *jobs = tjobs_new("full", N);
    jobs[0].job.done = on_done_block;
    sem_init(&g_entered, 0, 0);
    sem_init(&g_release, 0, 0);
    atomic_store(&g_done, 0);
    assert_int_equal(audit_start(db_url), BROKER_OK);
    assert_true(wait_up(true, 5000));
    assert_int_equal(audit_submit(&jobs[0].job), BROKER_OK);
    while (sem_wait(&g_entered) != 0 && errno == EINTR) {}
    for (long i = 1; i <= BROKER_AUDIT_QUEUE_MAX; i++)
        assert_int_equal(audit_submit(&jobs[i].job), BROKER_OK);
    assert_int_equal(audit_queue_depth(), BROKER_AUDIT_QUEUE_MAX);
    uint64_t f0 = audit_failures();
    assert_int_equal(audit_submit(&jobs[N - 1].job), BROKER_ERR_AUDIT_UNAVAILABLE);
    assert_int_equal(audit_failures(), f0 + 1);
    sem_post(&g_release);
    assert_true(wait_done(N - 1, 30000));
    audit_stop();
    assert_int_equal(atomic_load(&jobs[N - 1].calls), 0);
    for (long i = 0; i < N - 1; i++) {
        assert_int_equal(atomic_load(&jobs[i].calls), 1);
        assert_int_equal(jobs[i].job.result, BROKER_OK);
    }
    assert_int_equal(audit_queue_depth(), 0);
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit WHERE request_id LIKE $1", "full-%"), N - 1);
    audit_record_clear(&jobs[N - 1].job.rec);
    sem_destroy(&g_entered);
    sem_destroy(&g_release);
    free(jobs);
}

/* One bad record fails alone; the rest of its batch commits and the database stays up. */
static void test_audit_writer_bad_row(void **state)
{
    (void)state;
    enum { N = 64 };
    struct tjob *jobs = tjobs_new("badrow", N);
    free(jobs[N / 2].job.rec.explanation);
    jobs[N / 2].job.rec.explanation = strdup("not json");
    atomic_store(&g_done, 0);
    assert_int_equal(audit_start(db_url), BROKER_OK);
    assert_true(wait_up(true, 5000));
    sem_init(&g_entered, 0, 0);
    sem_init(&g_release, 0, 0);
    jobs[0].job.done = on_done_block;  /* hold the writer so the rest forms one batch */
    assert_int_equal(audit_submit(&jobs[0].job), BROKER_OK);
    while (sem_wait(&g_entered) != 0 && errno == EINTR) {}
    for (long i = 1; i < N; i++)
        assert_int_equal(audit_submit(&jobs[i].job), BROKER_OK);
    sem_post(&g_release);
    assert_true(wait_done(N, 10000));
    assert_true(audit_db_up());
    audit_stop();
    for (long i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&jobs[i].calls), 1);
        assert_int_equal(jobs[i].job.result, i == N / 2 ? BROKER_ERR_AUDIT_UNAVAILABLE : BROKER_OK);
    }
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit WHERE request_id LIKE $1", "badrow-%"), N - 1);
    sem_destroy(&g_entered);
    sem_destroy(&g_release);
    free(jobs);
}

/* Kill PostgreSQL under load, then bring it back. */
static void test_audit_writer_pg_kill(void **state)
{
    (void)state;
    if (!getenv("BROKER_TEST_PG_DIR") || !getenv("BROKER_TEST_PG_LIB"))
        fail_msg("BROKER_TEST_PG_DIR / BROKER_TEST_PG_LIB not set (run test_store.sh)");
    enum { N = 20000 };
    struct tjob *jobs = tjobs_new("kill", N);
    atomic_store(&g_done, 0);
    assert_int_equal(audit_start(db_url), BROKER_OK);
    assert_true(wait_up(true, 5000));

    /* a steady stream, paced so it spans the kill and the restart */
    long next = 0, accepted = 0;
    int64_t killed_ns = 0, restarted_ns = 0, up_ns = 0;
    int phase = 0;
    while (next < N) {
        int64_t t = now_ns();
        jobs[next].submitted_ns = t;
        if (audit_submit(&jobs[next].job) == BROKER_OK) {
            jobs[next].accepted = true;
            accepted++;
        }
        next++;
        sleep_ms(1);
        if (phase == 0 && next == 200) {
            assert_int_equal(pg_ctl("pg_kill"), 0);
            killed_ns = now_ns();
            phase = 1;
        } else if (phase == 1 && now_ns() - killed_ns > 1000000000LL) {
            assert_false(audit_db_up());
            struct audit_record r;
            rec_fill(&r, "kill-direct", true);
            struct audit_record *one[1] = {&r};
            assert_int_equal(store_audit_write(g_st, one, 1), BROKER_ERR_DB);
            if (store_connected(g_st))
                fail_msg("still connected after: %s", store_last_error(g_st));
            audit_record_clear(&r);
            assert_int_equal(pg_ctl("pg_start"), 0);
            restarted_ns = now_ns();
            phase = 2;
        } else if (phase == 2 && audit_db_up()) {
            up_ns = now_ns();
            phase = 3;
        } else if (phase == 3 && now_ns() - up_ns > 300000000LL) {
            break;
        } else if (phase == 2 && now_ns() - restarted_ns > 10000000000LL) {
            break;
        }
    }
    assert_int_equal(phase, 3);
    assert_true(wait_done(accepted, 30000));
    audit_stop();
    print_message("writer back %.0f ms after PostgreSQL was up again\n", (up_ns - restarted_ns) / 1e6);
    assert_true(up_ns - restarted_ns < 5000000000LL);

    long ok_before = 0, ok_after = 0, fail_between = 0;
    for (long i = 0; i < next; i++) {
        struct tjob *j = &jobs[i];
        assert_int_equal(atomic_load(&j->calls), j->accepted ? 1 : 0);
        if (!j->accepted || j->job.result != BROKER_OK) {
            fail_between += j->submitted_ns > killed_ns && j->submitted_ns < restarted_ns;
            continue;
        }
        /* nothing submitted while the server was down can have committed */
        assert_false(j->submitted_ns > killed_ns && j->submitted_ns < restarted_ns);
        ok_before += j->submitted_ns < killed_ns;
        ok_after += j->submitted_ns > up_ns;
    }
    /* paced at ~1 ms per job: ~200 before the kill, hundreds while down, ~300 ms after */
    assert_true(ok_before > 0);
    assert_true(ok_after > 10);
    assert_true(fail_between > 50);
    for (long i = 0; i < N; i++)
        if (!jobs[i].accepted)
            audit_record_clear(&jobs[i].job.rec);
    assert_int_equal(store_reconnect(g_st), BROKER_OK);
    PQreset(g_pg);
    long nok;
    long long rows = rows_of_ok_jobs(jobs, next, &nok);
    print_message("kill test: %ld submitted, %ld accepted, %ld reported OK, %lld rows of them\n", next, accepted, nok,
                  rows);
    assert_int_equal(rows, nok);  /* every OK has its row */
    free(jobs);
}

/* A server restart while the writer is idle is noticed by its idle check (every 5 s), so the
 * next job commits instead of failing on the dead session. */
static void test_audit_writer_idle_restart(void **state)
{
    (void)state;
    struct tjob j[2];
    tjob_init(&j[0], "idle", 0);
    tjob_init(&j[1], "idle", 1);
    atomic_store(&g_done, 0);
    assert_int_equal(audit_start(db_url), BROKER_OK);
    assert_true(wait_up(true, 5000));
    assert_int_equal(audit_submit(&j[0].job), BROKER_OK);
    assert_true(wait_done(1, 5000));
    assert_int_equal(j[0].job.result, BROKER_OK);
    assert_int_equal(pg_ctl("pg_restart"), 0);
    sleep_ms(6500);
    assert_true(audit_db_up());
    assert_int_equal(audit_submit(&j[1].job), BROKER_OK);
    assert_true(wait_done(2, 5000));
    assert_int_equal(j[1].job.result, BROKER_OK);
    audit_stop();
    assert_int_equal(store_reconnect(g_st), BROKER_OK);
    PQreset(g_pg);
}

/* ---- optional benchmark (registered only when BROKER_AUDIT_BENCH=N is set) ----
 * N jobs from 2 producer threads as fast as they can, with at most BROKER_AUDIT_QUEUE_MAX in
 * flight (a server has bounded concurrency; spinning on a full queue would only measure the
 * spinning). Records are built before the clock starts. */
static sem_t g_inflight;
static atomic_llong g_writer_cpu_ns;  /* CPU time of the writer thread, read inside done() */

static int64_t thread_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void on_done_bench(struct audit_job *j)
{
    on_done(j);
    atomic_store(&g_writer_cpu_ns, thread_cpu_ns());
    sem_post(&g_inflight);
}

static void *bench_producer(void *p)
{
    struct producer *a = p;
    for (long i = a->from; i < a->to; i++) {
        while (sem_wait(&g_inflight) != 0 && errno == EINTR) {}
        if (audit_submit(&a->jobs[i].job) == BROKER_OK) {
            a->jobs[i].accepted = true;
        } else {
            a->refused++;
            sem_post(&g_inflight);
        }
    }
    return NULL;
}

/* utime + stime of every process named postgres (the server side of the cost), in µs. */
static double postgres_cpu_us(void)
{
    double ticks = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char path[300], buf[1024];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')');
        if (!strstr(buf, "(postgres)") || !rp)
            continue;
        /* after ") ": state(3) ... utime is field 14, stime 15 */
        char *p = rp + 2;
        for (int field = 3; field < 14 && p; field++) {
            p = strchr(p, ' ');
            p = p ? p + 1 : NULL;
        }
        if (!p)
            continue;
        char *end;
        double ut = (double)strtoull(p, &end, 10);
        double stt = (double)strtoull(end, NULL, 10);
        ticks += ut + stt;
    }
    if (d)
        closedir(d);
    return ticks * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static double rusage_us(const struct rusage *a, const struct rusage *b)
{
    return (double)(b->ru_utime.tv_sec - a->ru_utime.tv_sec + b->ru_stime.tv_sec - a->ru_stime.tv_sec) * 1e6 +
           (double)(b->ru_utime.tv_usec - a->ru_utime.tv_usec + b->ru_stime.tv_usec - a->ru_stime.tv_usec);
}

static void test_audit_bench(void **state)
{
    (void)state;
    const char *env = getenv("BROKER_AUDIT_BENCH");
    assert_non_null(env);
    long n = strtol(env, NULL, 10);
    assert_true(n >= 2 && n <= 10000000);
    struct tjob *jobs = calloc((size_t)n + 1, sizeof(*jobs));
    for (long i = 0; i <= n; i++) {
        tjob_init(&jobs[i], "bench", i);
        jobs[i].job.done = on_done_bench;
    }
    sem_init(&g_inflight, 0, BROKER_AUDIT_QUEUE_MAX);
    atomic_store(&g_done, 0);
    assert_int_equal(audit_start(db_url), BROKER_OK);
    assert_true(wait_up(true, 5000));
    /* a warm-up job: prepares the statement and gives the writer's starting CPU time */
    while (sem_wait(&g_inflight) != 0 && errno == EINTR) {}
    assert_int_equal(audit_submit(&jobs[n].job), BROKER_OK);
    assert_true(wait_done(1, 5000));
    atomic_store(&g_done, 0);
    int64_t w0 = atomic_load(&g_writer_cpu_ns);
    uint64_t b0 = audit_batches();
    struct rusage ru0, ru1;
    double pg0 = postgres_cpu_us();
    getrusage(RUSAGE_SELF, &ru0);
    int64_t t0 = now_ns();
    struct producer prod[2];
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        prod[t] = (struct producer){.jobs = jobs, .from = t * (n / 2), .to = t == 1 ? n : n / 2};
        assert_int_equal(pthread_create(&th[t], NULL, bench_producer, &prod[t]), 0);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    assert_true(wait_done(n, 300000));
    int64_t t1 = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    double pg1 = postgres_cpu_us();
    double writer_us = (double)(atomic_load(&g_writer_cpu_ns) - w0) / 1e3;
    uint64_t batches = audit_batches() - b0;
    audit_stop();
    double secs = (double)(t1 - t0) / 1e9;
    print_message("bench: %ld rows in %.2f s = %.0f rows/s; %llu batches (%.1f rows each); CPU per row: %.2f us "
                  "writer thread (incl. freeing records in done), %.2f us whole client process (incl. %ld-way "
                  "producers and the main thread polling), %.2f us PostgreSQL; refused %ld\n",
                  n, secs, (double)n / secs, (unsigned long long)batches, (double)n / (double)batches,
                  writer_us / (double)n, rusage_us(&ru0, &ru1) / (double)n, 2L, (pg1 - pg0) / (double)n,
                  prod[0].refused + prod[1].refused);
    for (long i = 0; i < n; i++)
        assert_int_equal(jobs[i].job.result, BROKER_OK);
    assert_int_equal(prod[0].refused + prod[1].refused, 0);
    assert_int_equal(pg_scalar(g_pg, "SELECT count(*) FROM audit WHERE request_id LIKE $1", "bench-%"), n + 1);
    sem_destroy(&g_inflight);
    free(jobs);
}

/* A failed assertion leaves a writer test early: stop its writer so the next test starts clean. */
static int writer_teardown(void **state)
{
    (void)state;
    audit_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_twice),
        cmocka_unit_test(test_migrate_concurrent),
        cmocka_unit_test(test_migrate_failure),
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_admin_tokens),
        cmocka_unit_test(test_audit_write_get),
        cmocka_unit_test(test_audit_batch_text),
        cmocka_unit_test(test_client_encoding_pinned),
        cmocka_unit_test(test_array_nulls_pinned),
        cmocka_unit_test_teardown(test_audit_writer_many, writer_teardown),
        cmocka_unit_test_teardown(test_audit_writer_hold, writer_teardown),
        cmocka_unit_test_teardown(test_audit_writer_queue_full, writer_teardown),
        cmocka_unit_test_teardown(test_audit_writer_bad_row, writer_teardown),
        cmocka_unit_test_teardown(test_audit_writer_pg_kill, writer_teardown),
        cmocka_unit_test_teardown(test_audit_writer_idle_restart, writer_teardown),
        cmocka_unit_test_teardown(test_audit_bench, writer_teardown),
    };
    size_t n = sizeof(tests) / sizeof(tests[0]) - (getenv("BROKER_AUDIT_BENCH") ? 0 : 1);
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return _cmocka_run_group_tests("store", tests, n, setup, teardown);
}
