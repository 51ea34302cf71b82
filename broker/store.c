/* PostgreSQL access: the only file that includes libpq. Every statement is parameterized
 * (PQexecParams / prepared), which also means one statement per call; the one exception is a
 * migration file, which is ours and runs with PQexec. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "bounds.h"

#define STORE_STATEMENT_TIMEOUT_MS "5000"
#define STORE_MIGRATE_LOCK "7236952796468326770"  /* pg_advisory_lock key: any fixed bigint */
#define STORE_MAX_MIGRATIONS 1000
#define STORE_MAX_MIGRATION_BYTES (1024 * 1024)
#define STORE_AUDIT_PARAMS 14

struct store {
    PGconn *conn;
    bool broken;          /* a failure left the session in an unknown state: reconnect */
    bool audit_prepared;  /* "audit_insert" exists on this connection */
    char err[512];
    char sqlstate[6];
};

/* Per-kind SQL, built at compile time from the table name. */
struct doc_kind {
    const char *kind;     /* "issuer" / "identity": also the name member of a document */
    const char *select;   /* $1 name, $2 doc -> (equal, old doc) */
    const char *insert;
    const char *update;
    const char *prune;    /* $1 JSON array of names to keep -> deleted (name, doc) */
    const char *delete_one;
};
#define DOC_KIND(kind, t)                                                                              \
    {kind, "SELECT doc = $2::jsonb, doc::text FROM " t " WHERE name = $1 FOR UPDATE",                  \
     "INSERT INTO " t " (name, doc, updated_at, version) VALUES ($1, $2::jsonb, now(), 1)",             \
     "UPDATE " t " SET doc = $2::jsonb, updated_at = now(), version = version + 1 WHERE name = $1",     \
     "WITH d AS (DELETE FROM " t " WHERE NOT (name = ANY (ARRAY(SELECT jsonb_array_elements_text("      \
     "$1::jsonb)))) RETURNING name, doc) SELECT name, doc::text FROM d ORDER BY name COLLATE \"C\"",    \
     "DELETE FROM " t " WHERE name = $1 RETURNING doc::text"}
static const struct doc_kind doc_kinds[2] = {DOC_KIND("issuer", "issuers"), DOC_KIND("identity", "identities")};

static const char audit_insert_sql[] =
    "INSERT INTO audit (request_id, at, result, reason, identity, policy, subject_iss, subject_sub, "
    "subject_jti, token_jti, scope, audience, client_addr, explanation) VALUES ($1, "
    "'epoch'::timestamptz + $2::bigint * interval '1 microsecond', $3, $4, $5, $6, $7, $8, $9, $10, $11, "
    "$12, $13, $14::jsonb)";

/* The same row, claiming the subject token's jti first (single_use). A conflict (an earlier
 * decision, committed or concurrent, took it) turns the row into a denial: reason "replay", no
 * minted jti. RETURNING tells the writer which happened. */
static const char audit_insert_once_sql[] =
    "WITH claim AS (INSERT INTO used_jti (issuer, jti, expires_at) VALUES ($7, $9, "
    "'epoch'::timestamptz + $15::bigint * interval '1 second') ON CONFLICT DO NOTHING RETURNING 1) "
    "INSERT INTO audit (request_id, at, result, reason, identity, policy, subject_iss, subject_sub, "
    "subject_jti, token_jti, scope, audience, client_addr, explanation) SELECT $1, "
    "'epoch'::timestamptz + $2::bigint * interval '1 microsecond', "
    "CASE WHEN EXISTS (SELECT 1 FROM claim) THEN $3 ELSE 'denied' END, "
    "CASE WHEN EXISTS (SELECT 1 FROM claim) THEN $4 ELSE 'replay' END, $5, $6, $7, $8, $9, "
    "CASE WHEN EXISTS (SELECT 1 FROM claim) THEN $10 END, $11, $12, $13, "
    "CASE WHEN EXISTS (SELECT 1 FROM claim) THEN $14::jsonb "
    "ELSE '{\"decision\":\"denied\",\"reason\":\"replay\",\"note\":\"this subject token jti was already used\"}'::jsonb END "
    "RETURNING result";

void audit_record_clear(struct audit_record *r)
{
    if (!r)
        return;
    free(r->identity);
    free(r->policy);
    free(r->subject_iss);
    free(r->subject_sub);
    free(r->subject_jti);
    free(r->token_jti);
    free(r->scope);
    free(r->audience);
    free(r->client_addr);
    free(r->explanation);
    memset(r, 0, sizeof(*r));
}

/* Record what failed: the libpq message of res, or of the connection when res is NULL. */
static void store_fail(struct store *st, const char *what, const PGresult *res)
{
    const char *msg = res ? PQresultErrorMessage(res) : (st->conn ? PQerrorMessage(st->conn) : "");
    const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!msg || !*msg)
        msg = "no message";
    snprintf(st->err, sizeof(st->err), "%s: %s", what, msg);
    /* one line: libpq's messages end with, and may contain, a newline (plus a tab) */
    size_t n = strlen(st->err), j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = st->err[i] == '\n' || st->err[i] == '\t' ? ' ' : st->err[i];
        if (c != ' ' || (j > 0 && st->err[j - 1] != ' '))
            st->err[j++] = c;
    }
    while (j > 0 && st->err[j - 1] == ' ')
        j--;
    st->err[j] = 0;
    snprintf(st->sqlstate, sizeof(st->sqlstate), "%s", code ? code : "");
    /* libpq's own errors (no SQLSTATE: a lost connection, a failed write) may leave PQstatus at
     * CONNECTION_OK for a while; so may a server shutting down (57P0x) or a connection exception. */
    if (!st->conn || PQstatus(st->conn) != CONNECTION_OK || !code || strncmp(code, "08", 2) == 0 ||
        strncmp(code, "57P0", 4) == 0)
        st->broken = true;
}

bool store_connected(const struct store *st)
{
    return st && st->conn && !st->broken && PQstatus(st->conn) == CONNECTION_OK;
}

static enum broker_err store_ready(struct store *st)
{
    if (store_connected(st))
        return BROKER_OK;
    if (st->conn && PQstatus(st->conn) == CONNECTION_OK)
        snprintf(st->err, sizeof(st->err), "connection in an unknown state; reconnect");
    else
        store_fail(st, "not connected", NULL);
    return BROKER_ERR_DB;
}

/* Run one parameterized statement; NULL (error recorded) unless its status is want. */
static PGresult *store_exec(struct store *st, const char *what, const char *sql, int n, const char *const *vals,
                            const int *lens, const int *fmts, ExecStatusType want)
{
    PGresult *res = PQexecParams(st->conn, sql, n, NULL, vals, lens, fmts, 0);
    if (res && PQresultStatus(res) == want)
        return res;
    store_fail(st, what, res);
    PQclear(res);
    return NULL;
}

static enum broker_err store_cmd(struct store *st, const char *what, const char *sql, int n, const char *const *vals)
{
    PGresult *res = store_exec(st, what, sql, n, vals, NULL, NULL, PGRES_COMMAND_OK);
    bool ok = res != NULL;
    PQclear(res);
    return ok ? BROKER_OK : BROKER_ERR_DB;
}

/* Best effort: leave no transaction open; a session we cannot clean is marked broken. */
static void store_rollback(struct store *st)
{
    if (!st->conn || PQstatus(st->conn) != CONNECTION_OK || PQtransactionStatus(st->conn) == PQTRANS_IDLE)
        return;
    PGresult *res = PQexecParams(st->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK || PQtransactionStatus(st->conn) != PQTRANS_IDLE)
        st->broken = true;
    PQclear(res);
}

/* COMMIT of a failed transaction answers "ROLLBACK" without an error: check the tag. */
static enum broker_err store_commit(struct store *st)
{
    PGresult *res = store_exec(st, "commit", "COMMIT", 0, NULL, NULL, NULL, PGRES_COMMAND_OK);
    if (!res)
        return BROKER_ERR_DB;
    bool ok = strcmp(PQcmdStatus(res), "COMMIT") == 0;
    PQclear(res);
    if (!ok)
        snprintf(st->err, sizeof(st->err), "commit: transaction was rolled back");
    return ok ? BROKER_OK : BROKER_ERR_DB;
}

/* Server notices (e.g. "terminating connection") would go to stderr; errors are reported
 * through store_last_error instead. */
static void store_on_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

enum broker_err store_open(const char *conninfo, struct store **out)
{
    enum broker_err rc = BROKER_ERR_DB;
    const char **kw = NULL, **val = NULL;
    char *errmsg = NULL, *options = NULL;
    PQconninfoOption *opts = NULL;
    struct store *st = calloc(1, sizeof(*st));

    *out = NULL;
    if (!st)
        return BROKER_ERR_NOMEM;
    *out = st;
    opts = PQconninfoParse(conninfo ? conninfo : "", &errmsg);
    if (!opts) {
        snprintf(st->err, sizeof(st->err), "connection string: %s", errmsg ? errmsg : "out of memory");
        rc = errmsg ? BROKER_ERR_CONFIG : BROKER_ERR_NOMEM;
        st->broken = true;
        goto cleanup;
    }
    /* The caller's settings win, except that statement_timeout is always added to options. */
    static const char *const defaults[][2] = {
        {"fallback_application_name", "broker"}, {"connect_timeout", "5"}, {"keepalives", "1"},
        {"keepalives_idle", "10"}, {"keepalives_interval", "5"}, {"keepalives_count", "3"},
        {"tcp_user_timeout", "15000"}};
    size_t nopts = 0, n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        nopts++;
    size_t cap = nopts + sizeof(defaults) / sizeof(defaults[0]) + 2;
    kw = calloc(cap, sizeof(*kw));
    val = calloc(cap, sizeof(*val));
    const char *user_options = "";
    if (!kw || !val) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            user_options = o->val;
            continue;
        }
        kw[n] = o->keyword;
        val[n++] = o->val;
    }
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        bool set = false;
        for (size_t j = 0; j < n; j++)
            set = set || strcmp(kw[j], defaults[i][0]) == 0;
        if (!set) {
            kw[n] = defaults[i][0];
            val[n++] = defaults[i][1];
        }
    }
    size_t olen = strlen(user_options) + 64;
    options = malloc(olen);
    if (!options) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    snprintf(options, olen, "%s%s-c statement_timeout=%s", user_options, *user_options ? " " : "",
             STORE_STATEMENT_TIMEOUT_MS);
    kw[n] = "options";
    val[n++] = options;
    kw[n] = NULL;
    val[n] = NULL;

    st->conn = PQconnectdbParams(kw, val, 0);
    if (st->conn)
        PQsetNoticeProcessor(st->conn, store_on_notice, NULL);
    if (!st->conn) {
        rc = BROKER_ERR_NOMEM;
        snprintf(st->err, sizeof(st->err), "connect: out of memory");
        st->broken = true;
        goto cleanup;
    }
    if (PQstatus(st->conn) != CONNECTION_OK) {
        store_fail(st, "connect", NULL);
        goto cleanup;
    }
    rc = BROKER_OK;
cleanup:
    if (rc == BROKER_ERR_NOMEM) {
        store_close(st);
        *out = NULL;
    }
    free(options);
    free(kw);
    free(val);
    PQfreemem(errmsg);
    PQconninfoFree(opts);
    return rc;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    if (st->conn)
        PQfinish(st->conn);
    free(st);
}

enum broker_err store_reconnect(struct store *st)
{
    if (store_connected(st))
        return BROKER_OK;
    if (!st->conn) {
        snprintf(st->err, sizeof(st->err), "reconnect: no connection parameters");
        return BROKER_ERR_DB;
    }
    PQreset(st->conn);
    st->audit_prepared = false;
    st->broken = false;
    st->sqlstate[0] = 0;
    if (PQstatus(st->conn) != CONNECTION_OK) {
        store_fail(st, "reconnect", NULL);
        return BROKER_ERR_DB;
    }
    return BROKER_OK;
}

enum broker_err store_ping(struct store *st)
{
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    PGresult *res = store_exec(st, "ping", "SELECT 1", 0, NULL, NULL, NULL, PGRES_TUPLES_OK);
    bool ok = res != NULL;
    PQclear(res);
    return ok ? BROKER_OK : BROKER_ERR_DB;
}

const char *store_last_error(const struct store *st)
{
    return st ? st->err : "no store";
}

const char *store_last_sqlstate(const struct store *st)
{
    return st ? st->sqlstate : "";
}

/* ---- migrations ---- */

/* ^[0-9]{3}_[a-z0-9_]+\.sql$ */
static bool migration_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 9 || strcmp(s + n - 4, ".sql") != 0 || s[3] != '_')
        return false;
    for (size_t i = 0; i < 3; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    for (size_t i = 4; i < n - 4; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum broker_err migration_list(struct store *st, const char *dir, char ***out, size_t *count)
{
    enum broker_err rc = BROKER_ERR_IO;
    char **names = NULL;
    size_t n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(st->err, sizeof(st->err), "migrations: cannot open %s: %s", dir, strerror(errno));
        return BROKER_ERR_IO;
    }
    names = calloc(STORE_MAX_MIGRATIONS, sizeof(*names));
    if (!names) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!migration_name_ok(e->d_name))
            continue;
        if (n == STORE_MAX_MIGRATIONS) {
            snprintf(st->err, sizeof(st->err), "migrations: more than %d files in %s", STORE_MAX_MIGRATIONS, dir);
            goto cleanup;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = BROKER_ERR_NOMEM;
            goto cleanup;
        }
        n++;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    rc = BROKER_OK;
cleanup:
    closedir(d);
    if (rc != BROKER_OK) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        names = NULL;
        n = 0;
    }
    *out = names;
    *count = n;
    return rc;
}

/* The whole file, NUL-terminated; a NUL inside it is refused (PQexec would stop there). */
static enum broker_err migration_read(struct store *st, const char *dir, const char *name, char **out)
{
    enum broker_err rc = BROKER_ERR_IO;
    char path[4096], *buf = NULL;
    struct stat sb;
    size_t got = 0;
    int fd = -1;

    *out = NULL;
    int pn = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (pn < 0 || (size_t)pn >= sizeof(path)) {
        snprintf(st->err, sizeof(st->err), "migrations: path too long");
        goto cleanup;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > STORE_MAX_MIGRATION_BYTES) {
        snprintf(st->err, sizeof(st->err), "migrations: cannot read %s (missing, not a file or over %d bytes)", name,
                 STORE_MAX_MIGRATION_BYTES);
        goto cleanup;
    }
    if (!(buf = malloc((size_t)sb.st_size + 1))) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(st->err, sizeof(st->err), "migrations: read %s failed", name);
            goto cleanup;
        }
        got += (size_t)r;
    }
    buf[got] = 0;
    if (memchr(buf, 0, got)) {
        snprintf(st->err, sizeof(st->err), "migrations: %s contains a NUL byte", name);
        goto cleanup;
    }
    *out = buf;
    buf = NULL;
    rc = BROKER_OK;
cleanup:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

static enum broker_err migration_apply(struct store *st, const char *dir, const char *name, bool *applied)
{
    enum broker_err rc;
    char version[256], *sql = NULL;
    PGresult *res = NULL;

    *applied = false;
    snprintf(version, sizeof(version), "%.*s", (int)(strlen(name) - 4), name);
    const char *v[1] = {version};
    res = store_exec(st, "migrations", "SELECT 1 FROM schema_migrations WHERE version = $1", 1, v, NULL, NULL,
                     PGRES_TUPLES_OK);
    if (!res)
        return BROKER_ERR_DB;
    bool done = PQntuples(res) > 0;
    PQclear(res);
    res = NULL;
    if (done)
        return BROKER_OK;
    if ((rc = migration_read(st, dir, name, &sql)) != BROKER_OK)
        return rc;
    rc = BROKER_ERR_DB;
    if (store_cmd(st, "begin", "BEGIN", 0, NULL) != BROKER_OK)
        goto cleanup;
    res = PQexec(st->conn, sql);
    ExecStatusType s = PQresultStatus(res);
    if (!res || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)) {
        char what[300];
        snprintf(what, sizeof(what), "migration %s", name);
        store_fail(st, what, res);
        goto cleanup;
    }
    if (PQtransactionStatus(st->conn) != PQTRANS_INTRANS) {
        snprintf(st->err, sizeof(st->err), "migration %s: must not contain BEGIN/COMMIT/ROLLBACK", name);
        goto cleanup;
    }
    if (store_cmd(st, "migrations", "INSERT INTO schema_migrations (version) VALUES ($1)", 1, v) != BROKER_OK)
        goto cleanup;
    if ((rc = store_commit(st)) == BROKER_OK)
        *applied = true;
cleanup:
    PQclear(res);
    if (rc != BROKER_OK)
        store_rollback(st);
    free(sql);
    return rc;
}

enum broker_err store_migrate(struct store *st, const char *sql_dir, int *applied)
{
    enum broker_err rc;
    char **names = NULL;
    size_t count = 0;
    bool locked = false;
    const char *lock[1] = {STORE_MIGRATE_LOCK};
    PGresult *res = NULL;
    int n = 0;

    if (applied)
        *applied = 0;
    if ((rc = store_ready(st)) != BROKER_OK)
        return rc;
    if ((rc = migration_list(st, sql_dir, &names, &count)) != BROKER_OK)
        return rc;
    rc = BROKER_ERR_DB;
    /* Migrations may take long and wait for each other: no statement timeout here. */
    if (store_cmd(st, "migrations", "SET statement_timeout = 0", 0, NULL) != BROKER_OK)
        goto cleanup;
    res = store_exec(st, "migrations lock", "SELECT pg_advisory_lock($1::bigint)", 1, lock, NULL, NULL,
                               PGRES_TUPLES_OK);
    if (!res)
        goto cleanup;
    PQclear(res);
    locked = true;
    if (store_cmd(st, "migrations", "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                  "applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL) != BROKER_OK)
        goto cleanup;
    for (size_t i = 0; i < count; i++) {
        bool did;
        if ((rc = migration_apply(st, sql_dir, names[i], &did)) != BROKER_OK)
            goto cleanup;
        rc = BROKER_ERR_DB;
        n += did;
    }
    rc = BROKER_OK;
cleanup:
    if (locked && store_connected(st)) {
        res = store_exec(st, "migrations unlock", "SELECT pg_advisory_unlock($1::bigint)", 1, lock, NULL, NULL,
                         PGRES_TUPLES_OK);
        if (!res)
            st->broken = true;  /* a session still holding the lock must not be reused */
        PQclear(res);
    }
    if (store_connected(st) && store_cmd(st, "migrations", "RESET statement_timeout", 0, NULL) != BROKER_OK)
        st->broken = true;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    if (applied)
        *applied = n;
    return rc;
}

/* ---- policy documents ---- */

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

enum broker_err store_load_documents_gen(struct store *st, json_t **issuers, json_t **identities,
                                         int64_t *generation)
{
    enum broker_err rc = BROKER_ERR_DB;
    json_t *lists[2] = {json_array(), json_array()};
    bool have_gen = false;
    PGresult *res = NULL;

    *issuers = *identities = NULL;
    if (!lists[0] || !lists[1]) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    if (store_ready(st) != BROKER_OK)
        goto cleanup;
    /* One statement: one snapshot of documents and generation. */
    res = store_exec(st, "load documents",
                     "SELECT k, name, v FROM (SELECT 0 AS k, ''::text AS name, generation::text AS v FROM policy_state "
                     "WHERE id = 1 UNION ALL SELECT 1, name, doc::text FROM issuers UNION ALL SELECT 2, name, "
                     "doc::text FROM identities) s ORDER BY k, name COLLATE \"C\"",
                     0, NULL, NULL, NULL, PGRES_TUPLES_OK);
    if (!res)
        goto cleanup;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *k = PQgetvalue(res, i, 0), *v = PQgetvalue(res, i, 2);
        int64_t g;
        if (k[0] == '0') {
            if (!parse_i64(v, &g))
                goto bad;
            have_gen = true;
            if (generation)
                *generation = g;
            continue;
        }
        json_error_t jerr;
        json_t *doc = json_loadb(v, (size_t)PQgetlength(res, i, 2), JSON_REJECT_DUPLICATES, &jerr);
        if (!doc || json_array_append_new(lists[k[0] == '1' ? 0 : 1], doc) != 0)
            goto bad;
    }
    if (!have_gen) {
        snprintf(st->err, sizeof(st->err), "load documents: policy_state is empty (run broker migrate)");
        goto cleanup;
    }
    *issuers = lists[0];
    *identities = lists[1];
    lists[0] = lists[1] = NULL;
    rc = BROKER_OK;
    goto cleanup;
bad:
    snprintf(st->err, sizeof(st->err), "load documents: unreadable row");
cleanup:
    PQclear(res);
    json_decref(lists[0]);
    json_decref(lists[1]);
    return rc;
}

enum broker_err store_load_documents(struct store *st, json_t **issuers, json_t **identities)
{
    return store_load_documents_gen(st, issuers, identities, NULL);
}

enum broker_err store_policy_generation(struct store *st, int64_t *generation)
{
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    PGresult *res = store_exec(st, "policy generation", "SELECT generation::text FROM policy_state WHERE id = 1", 0,
                               NULL, NULL, NULL, PGRES_TUPLES_OK);
    bool ok = res && PQntuples(res) == 1 && parse_i64(PQgetvalue(res, 0, 0), generation);
    if (res && !ok)
        snprintf(st->err, sizeof(st->err), "policy generation: policy_state is empty (run broker migrate)");
    PQclear(res);
    return ok ? BROKER_OK : BROKER_ERR_DB;
}

enum broker_err store_replica_heartbeat(struct store *st, const char *id, unsigned *live)
{
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    /* the upsert is not visible to the count of the same statement: count the others, add one */
    static const char sql[] = "WITH up AS (INSERT INTO replicas (id, seen) VALUES ($1, now())"
                              "            ON CONFLICT (id) DO UPDATE SET seen = now()),"
                              "     gone AS (DELETE FROM replicas WHERE seen < now() - interval '10 minutes'),"
                              "     spent AS (DELETE FROM used_jti WHERE expires_at < now())"
                              " SELECT count(*)::text FROM replicas WHERE seen > now() - interval '5 seconds' AND id <> $1";
    const char *vals[1] = {id};
    PGresult *res = store_exec(st, "replica heartbeat", sql, 1, vals, NULL, NULL, PGRES_TUPLES_OK);
    int64_t others = 0;
    bool ok = res && PQntuples(res) == 1 && parse_i64(PQgetvalue(res, 0, 0), &others) && others >= 0;
    PQclear(res);
    if (!ok)
        return BROKER_ERR_DB;
    *live = (unsigned)(others + 1);
    return BROKER_OK;
}

enum broker_err store_listen(struct store *st)
{
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    return store_cmd(st, "listen", "LISTEN broker_policy", 0, NULL);
}

enum broker_err store_wait_notify(struct store *st, int timeout_ms, bool *notified)
{
    *notified = false;
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    PGnotify *n;
    /* notifications that arrived during earlier queries are already buffered */
    while ((n = PQnotifies(st->conn)) != NULL) {
        *notified = true;
        PQfreemem(n);
    }
    if (*notified)
        return BROKER_OK;
    struct pollfd pfd = {.fd = PQsocket(st->conn), .events = POLLIN};
    if (pfd.fd < 0)
        return BROKER_ERR_DB;
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno != EINTR)
        return BROKER_ERR_DB;
    if (r > 0 && PQconsumeInput(st->conn) != 1) {
        store_fail(st, "listen", NULL);
        st->broken = true;
        return BROKER_ERR_DB;
    }
    while ((n = PQnotifies(st->conn)) != NULL) {
        *notified = true;
        PQfreemem(n);
    }
    return BROKER_OK;
}

/* One checked input document. */
struct doc_input {
    const char *name;
    char *text;           /* compact JSON */
};

struct doc_batch {
    struct doc_input *docs;
    size_t n;
};

static void doc_batch_clear(struct doc_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->docs[i].text);
    free(b->docs);
    b->docs = NULL;
    b->n = 0;
}

/* Shape checks before any SQL: objects with a bounded, unique name and size. */
static enum broker_err doc_batch_make(struct store *st, const struct doc_kind *k, const json_t *arr,
                                      struct doc_batch *b)
{
    enum broker_err rc = BROKER_ERR_INVALID_DOCUMENT;
    const char **sorted = NULL;
    size_t n = json_array_size(arr);

    b->docs = NULL;
    b->n = 0;
    if (!json_is_array(arr)) {
        snprintf(st->err, sizeof(st->err), "%s documents: not an array", k->kind);
        return rc;
    }
    b->docs = calloc(n ? n : 1, sizeof(*b->docs));
    sorted = calloc(n ? n : 1, sizeof(*sorted));
    if (!b->docs || !sorted) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *doc = json_array_get(arr, i);
        const char *name = json_string_value(json_object_get(doc, k->kind));
        if (!json_is_object(doc) || !name || !*name || strlen(name) > BROKER_MAX_NAME_LEN) {
            snprintf(st->err, sizeof(st->err), "%s document %zu: \"%s\" must be a name of 1..%d bytes", k->kind, i,
                     k->kind, BROKER_MAX_NAME_LEN);
            goto cleanup;
        }
        if (!(b->docs[i].text = json_dumps(doc, JSON_COMPACT))) {
            rc = BROKER_ERR_NOMEM;
            goto cleanup;
        }
        b->n = i + 1;
        b->docs[i].name = sorted[i] = name;
        if (strlen(b->docs[i].text) > BROKER_MAX_DOC_BYTES) {
            snprintf(st->err, sizeof(st->err), "%s %s: document over %d bytes", k->kind, name, BROKER_MAX_DOC_BYTES);
            goto cleanup;
        }
    }
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            snprintf(st->err, sizeof(st->err), "%s %s: given twice", k->kind, sorted[i]);
            goto cleanup;
        }
    }
    rc = BROKER_OK;
cleanup:
    free(sorted);
    if (rc != BROKER_OK)
        doc_batch_clear(b);
    return rc;
}

/* Record one change: a row in audit_changes (unless unchanged) and an entry in list. */
static enum broker_err doc_change(struct store *st, const char *actor, const struct doc_kind *k, const char *name,
                                  const char *change, const char *before, const char *after, json_t *list)
{
    if (strcmp(change, "unchanged") != 0) {
        size_t wlen = strlen(k->kind) + strlen(name) + 2;
        char *what = malloc(wlen);
        if (!what)
            return BROKER_ERR_NOMEM;
        snprintf(what, wlen, "%s/%s", k->kind, name);
        const char *v[5] = {actor, what, change, before, after};
        enum broker_err rc = store_cmd(st, "audit change", "INSERT INTO audit_changes (who, what, change, before, "
                                       "after) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)", 5, v);
        free(what);
        if (rc != BROKER_OK)
            return rc;
    }
    json_t *e = json_pack("{s:s, s:s, s:s}", "kind", k->kind, "name", name, "change", change);
    if (!e || json_array_append_new(list, e) != 0)
        return BROKER_ERR_NOMEM;
    return BROKER_OK;
}

static enum broker_err docs_put_kind(struct store *st, const char *actor, const struct doc_kind *k,
                                     const struct doc_batch *b, bool prune, json_t *list, size_t *nchanged)
{
    enum broker_err rc = BROKER_ERR_DB;
    PGresult *res = NULL;
    char *keep = NULL;
    json_t *names = NULL;

    for (size_t i = 0; i < b->n; i++) {
        const char *v[2] = {b->docs[i].name, b->docs[i].text};
        const char *change = "unchanged", *before = NULL;
        if (!(res = store_exec(st, "load document", k->select, 2, v, NULL, NULL, PGRES_TUPLES_OK)))
            goto cleanup;
        if (PQntuples(res) == 0) {
            change = "created";
            if (store_cmd(st, "insert document", k->insert, 2, v) != BROKER_OK)
                goto cleanup;
        } else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
            change = "updated";
            before = PQgetvalue(res, 0, 1);
            if (store_cmd(st, "update document", k->update, 2, v) != BROKER_OK)
                goto cleanup;
        }
        bool changed = strcmp(change, "unchanged") != 0;
        if ((rc = doc_change(st, actor, k, v[0], change, before, changed ? v[1] : NULL, list)) != BROKER_OK)
            goto cleanup;
        rc = BROKER_ERR_DB;
        *nchanged += changed;
        PQclear(res);
        res = NULL;
    }
    if (prune) {
        if (!(names = json_array())) {
            rc = BROKER_ERR_NOMEM;
            goto cleanup;
        }
        for (size_t i = 0; i < b->n; i++)
            if (json_array_append_new(names, json_string(b->docs[i].name)) != 0) {
                rc = BROKER_ERR_NOMEM;
                goto cleanup;
            }
        if (!(keep = json_dumps(names, JSON_COMPACT))) {
            rc = BROKER_ERR_NOMEM;
            goto cleanup;
        }
        const char *v[1] = {keep};
        if (!(res = store_exec(st, "prune documents", k->prune, 1, v, NULL, NULL, PGRES_TUPLES_OK)))
            goto cleanup;
        for (int i = 0; i < PQntuples(res); i++) {
            rc = doc_change(st, actor, k, PQgetvalue(res, i, 0), "deleted", PQgetvalue(res, i, 1), NULL, list);
            if (rc != BROKER_OK)
                goto cleanup;
            (*nchanged)++;
        }
    }
    rc = BROKER_OK;
cleanup:
    PQclear(res);
    free(keep);
    json_decref(names);
    return rc;
}

/* Serialize document writers on the policy_state row; bump / notify after a change. */
static enum broker_err policy_lock(struct store *st)
{
    PGresult *res = store_exec(st, "policy lock", "SELECT generation FROM policy_state WHERE id = 1 FOR UPDATE", 0,
                               NULL, NULL, NULL, PGRES_TUPLES_OK);
    bool ok = res && PQntuples(res) == 1;
    if (res && !ok)
        snprintf(st->err, sizeof(st->err), "policy_state is empty (run broker migrate)");
    PQclear(res);
    return ok ? BROKER_OK : BROKER_ERR_DB;
}

static enum broker_err policy_bump(struct store *st)
{
    PGresult *res = store_exec(st, "policy generation",
                               "UPDATE policy_state SET generation = generation + 1 WHERE id = 1 RETURNING generation::text",
                               0, NULL, NULL, NULL, PGRES_TUPLES_OK);
    if (!res)
        return BROKER_ERR_DB;
    const char *v[1] = {PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "0"};
    PGresult *n = store_exec(st, "notify", "SELECT pg_notify('broker_policy', $1)", 1, v, NULL, NULL, PGRES_TUPLES_OK);
    bool ok = n != NULL;
    PQclear(n);
    PQclear(res);
    return ok ? BROKER_OK : BROKER_ERR_DB;
}

enum broker_err store_put_documents_as(struct store *st, const char *actor, const json_t *issuers,
                                       const json_t *identities, bool prune, bool dry_run, json_t *changes)
{
    enum broker_err rc;
    struct doc_batch b[2] = {{0}, {0}};
    const json_t *arrs[2] = {issuers, identities};
    json_t *list = NULL;
    size_t nchanged = 0;

    if (!actor || !*actor) {
        snprintf(st->err, sizeof(st->err), "put documents: no actor");
        return BROKER_ERR_INTERNAL;
    }
    for (size_t i = 0; i < 2; i++)
        if (arrs[i] && (rc = doc_batch_make(st, &doc_kinds[i], arrs[i], &b[i])) != BROKER_OK)
            goto cleanup;
    rc = BROKER_ERR_NOMEM;
    if (!(list = json_array()))
        goto cleanup;
    if ((rc = store_ready(st)) != BROKER_OK || (rc = store_cmd(st, "begin", "BEGIN", 0, NULL)) != BROKER_OK ||
        (rc = policy_lock(st)) != BROKER_OK)
        goto cleanup;
    for (size_t i = 0; i < 2; i++)
        if (arrs[i] && (rc = docs_put_kind(st, actor, &doc_kinds[i], &b[i], prune, list, &nchanged)) != BROKER_OK)
            goto cleanup;
    if (nchanged && (rc = policy_bump(st)) != BROKER_OK)
        goto cleanup;
    if (dry_run)
        store_rollback(st);
    else if ((rc = store_commit(st)) != BROKER_OK)
        goto cleanup;
    rc = changes && json_array_extend(changes, list) != 0 ? BROKER_ERR_NOMEM : BROKER_OK;
cleanup:
    if (rc != BROKER_OK)
        store_rollback(st);
    doc_batch_clear(&b[0]);
    doc_batch_clear(&b[1]);
    json_decref(list);
    return rc;
}

enum broker_err store_put_documents(struct store *st, const json_t *issuers, const json_t *identities, bool prune,
                                    bool dry_run, json_t *changes)
{
    return store_put_documents_as(st, "cli", issuers, identities, prune, dry_run, changes);
}

enum broker_err store_delete_document(struct store *st, const char *actor, const char *kind, const char *name,
                                      json_t *changes)
{
    enum broker_err rc;
    const struct doc_kind *k = NULL;
    PGresult *res = NULL;
    json_t *list = NULL;

    for (size_t i = 0; i < 2; i++)
        if (kind && strcmp(kind, doc_kinds[i].kind) == 0)
            k = &doc_kinds[i];
    if (!k || !name || !actor) {
        snprintf(st->err, sizeof(st->err), "delete document: bad arguments");
        return BROKER_ERR_BAD_REQUEST;
    }
    if (!(list = json_array()))
        return BROKER_ERR_NOMEM;
    if ((rc = store_ready(st)) != BROKER_OK || (rc = store_cmd(st, "begin", "BEGIN", 0, NULL)) != BROKER_OK ||
        (rc = policy_lock(st)) != BROKER_OK)
        goto cleanup;
    rc = BROKER_ERR_DB;
    const char *v[1] = {name};
    if (!(res = store_exec(st, "delete document", k->delete_one, 1, v, NULL, NULL, PGRES_TUPLES_OK)))
        goto cleanup;
    if (PQntuples(res) == 0) {
        snprintf(st->err, sizeof(st->err), "%s %s: not found", k->kind, name);
        rc = BROKER_ERR_NOT_FOUND;
        goto cleanup;
    }
    if ((rc = doc_change(st, actor, k, name, "deleted", PQgetvalue(res, 0, 0), NULL, list)) != BROKER_OK ||
        (rc = policy_bump(st)) != BROKER_OK || (rc = store_commit(st)) != BROKER_OK)
        goto cleanup;
    rc = changes && json_array_extend(changes, list) != 0 ? BROKER_ERR_NOMEM : BROKER_OK;
cleanup:
    if (rc != BROKER_OK)
        store_rollback(st);
    PQclear(res);
    json_decref(list);
    return rc;
}

/* ---- audit ---- */

/* PostgreSQL refuses a whole statement over one invalid UTF-8 byte, so a hostile claim could
 * fail a batch: replace such bytes with '?', then cut at max bytes on a character boundary. */
static void audit_text_clean(char *s, size_t max)
{
    unsigned char *p = (unsigned char *)s;
    size_t i = 0;
    if (!s)
        return;
    while (p[i]) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        bool ok = len > 0;
        for (size_t j = 1; ok && j < len; j++)  /* stops at the NUL: it is no continuation byte */
            ok = (p[i + j] & 0xC0) == 0x80;
        if (ok && len >= 3)  /* overlong forms, surrogates, above U+10FFFF */
            ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] > 0x9F) &&
                 !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] > 0x8F);
        if (!ok) {
            p[i++] = '?';
            continue;
        }
        i += len;
    }
    if (i > max) {
        size_t cut = max;
        while (cut > 0 && (p[cut] & 0xC0) == 0x80)
            cut--;
        p[cut] = 0;
    }
}

/* Everything that could make PostgreSQL refuse a row, checked before the pipeline starts. */
static bool audit_record_clean(struct audit_record *r)
{
    if (!memchr(r->request_id, 0, sizeof(r->request_id)))
        return false;
    audit_text_clean(r->request_id, sizeof(r->request_id) - 1);
    char *fields[] = {r->identity, r->policy, r->subject_iss, r->subject_sub, r->subject_jti,
                      r->token_jti, r->scope, r->audience, r->client_addr};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        audit_text_clean(fields[i], BROKER_MAX_CLAIM_LEN);
    /* Bytes >= 0x80 occur only inside JSON strings, so cleaning keeps the JSON valid. */
    if (r->explanation && strlen(r->explanation) <= BROKER_AUDIT_EXPLAIN_MAX)
        audit_text_clean(r->explanation, BROKER_AUDIT_EXPLAIN_MAX);
    return true;
}

/* A record that claims its jti: single_use, and something to claim. */
static bool audit_claims(const struct audit_record *r)
{
    return r->replay_exp > 0 && r->issued && r->subject_iss != NULL && r->subject_jti != NULL;
}

static int audit_send(PGconn *conn, const struct audit_record *r)
{
    char at[24], marker[64];
    const char *expl = r->explanation;
    snprintf(at, sizeof(at), "%" PRId64, r->at_us);
    if (expl && strlen(expl) > BROKER_AUDIT_EXPLAIN_MAX) {
        snprintf(marker, sizeof(marker), "[{\"truncated\":true,\"bytes\":%zu}]", strlen(expl));
        expl = marker;
    }
    char exp[24];
    snprintf(exp, sizeof(exp), "%" PRId64, r->replay_exp);
    const char *v[STORE_AUDIT_PARAMS + 1] = {
        r->request_id, at, r->issued ? "issued" : "denied", r->reason ? r->reason : "unknown", r->identity,
        r->policy, r->subject_iss, r->subject_sub, r->subject_jti, r->token_jti, r->scope, r->audience,
        r->client_addr, expl, exp};
    if (audit_claims(r))
        return PQsendQueryPrepared(conn, "audit_insert_once", STORE_AUDIT_PARAMS + 1, v, NULL, NULL, 0);
    return PQsendQueryPrepared(conn, "audit_insert", STORE_AUDIT_PARAMS, v, NULL, NULL, 0);
}

/* Read BEGIN, n INSERTs, COMMIT and the sync point. After the first error the server skips the
 * rest up to the sync (PGRES_PIPELINE_ABORTED), so nothing of the batch is committed. */
static enum broker_err audit_collect(struct store *st, struct audit_record *const *recs, size_t n)
{
    enum broker_err rc = BROKER_OK;
    PGresult *res;
    for (size_t q = 0; q < n + 2; q++) {
        if (!(res = PQgetResult(st->conn))) {
            store_fail(st, "audit: missing result", NULL);
            st->broken = true;
            return BROKER_ERR_DB;
        }
        ExecStatusType s = PQresultStatus(res);
        bool claims = q > 0 && q <= n && audit_claims(recs[q - 1]);
        bool ok = s == (claims ? PGRES_TUPLES_OK : PGRES_COMMAND_OK);
        if (ok && claims) {
            ok = PQntuples(res) == 1;
            recs[q - 1]->replayed = ok && strcmp(PQgetvalue(res, 0, 0), "denied") == 0;
        } else if (ok && q > 0 && q <= n)
            ok = strcmp(PQcmdTuples(res), "1") == 0;
        if (ok && q == n + 1)
            ok = strcmp(PQcmdStatus(res), "COMMIT") == 0;
        if (!ok && rc == BROKER_OK) {
            if (s == PGRES_COMMAND_OK || s == PGRES_PIPELINE_ABORTED)
                snprintf(st->err, sizeof(st->err), "audit: statement %zu of the batch did not complete", q);
            else
                store_fail(st, "audit", res);
            rc = BROKER_ERR_DB;
        }
        PQclear(res);
        if (PQstatus(st->conn) != CONNECTION_OK) {
            st->broken = true;
            return BROKER_ERR_DB;
        }
        if ((res = PQgetResult(st->conn)) != NULL) {  /* each statement's results end with NULL */
            PQclear(res);
            snprintf(st->err, sizeof(st->err), "audit: unexpected extra result");
            st->broken = true;
            return BROKER_ERR_DB;
        }
    }
    res = PQgetResult(st->conn);
    if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
        if (rc == BROKER_OK)
            store_fail(st, "audit: no sync point", res);
        st->broken = true;
        rc = BROKER_ERR_DB;
    }
    PQclear(res);
    return rc;
}

/* Blocking pipeline on a blocking connection cannot deadlock here: the server answers each row
 * with a few dozen bytes, far below a socket buffer, so it never waits for us to read while we
 * are still writing. */
enum broker_err store_audit_write(struct store *st, struct audit_record *const *recs, size_t n)
{
    enum broker_err rc = BROKER_ERR_DB;
    bool piped = false;

    if (n == 0)
        return BROKER_OK;
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    st->sqlstate[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i] != NULL)
            recs[i]->replayed = false;
        if (!recs[i] || !audit_record_clean(recs[i])) {
            snprintf(st->err, sizeof(st->err), "audit: record %zu is malformed", i);
            memcpy(st->sqlstate, "22000", 6);  /* a data error, as the server would say */
            return BROKER_ERR_DB;
        }
    }
    if (!st->audit_prepared) {
        PGresult *res = PQprepare(st->conn, "audit_insert", audit_insert_sql, STORE_AUDIT_PARAMS, NULL);
        st->audit_prepared = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        if (st->audit_prepared) {
            PQclear(res);
            res = PQprepare(st->conn, "audit_insert_once", audit_insert_once_sql, STORE_AUDIT_PARAMS + 1, NULL);
            st->audit_prepared = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        }
        if (!st->audit_prepared)
            store_fail(st, "audit prepare", res);
        PQclear(res);
        if (!st->audit_prepared)
            return BROKER_ERR_DB;
    }
    if (PQenterPipelineMode(st->conn) != 1) {
        store_fail(st, "audit: pipeline mode", NULL);
        goto cleanup;
    }
    piped = true;
    bool sent = PQsendQueryParams(st->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
    for (size_t i = 0; sent && i < n; i++)
        sent = audit_send(st->conn, recs[i]) == 1;
    sent = sent && PQsendQueryParams(st->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
    sent = sent && PQpipelineSync(st->conn) == 1;
    if (!sent) {
        store_fail(st, "audit: send", NULL);
        st->broken = true;  /* a half-sent pipeline: only a new session is clean */
        goto cleanup;
    }
    rc = audit_collect(st, recs, n);
cleanup:
    if (piped && PQexitPipelineMode(st->conn) != 1)
        st->broken = true;
    if (rc != BROKER_OK && !st->broken)
        store_rollback(st);
    return rc;
}

enum broker_err store_audit_get(struct store *st, const char *request_id, json_t **out)
{
    enum broker_err rc = BROKER_ERR_DB;
    const char *v[1] = {request_id};
    PGresult *res = NULL;

    *out = NULL;
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    res = store_exec(st, "audit get",
                     "SELECT json_build_object('request_id', request_id, 'at', to_char(at AT TIME ZONE 'UTC', "
                     "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'result', result, 'reason', reason, 'identity', identity, "
                     "'policy', policy, 'subject_iss', subject_iss, 'subject_sub', subject_sub, 'subject_jti', "
                     "subject_jti, 'token_jti', token_jti, 'scope', scope, 'audience', audience, 'client_addr', "
                     "client_addr, 'explanation', explanation)::text FROM audit WHERE request_id = $1",
                     1, v, NULL, NULL, PGRES_TUPLES_OK);
    if (!res)
        goto cleanup;
    if (PQntuples(res) == 0) {
        rc = BROKER_ERR_NOT_FOUND;
        goto cleanup;
    }
    json_error_t jerr;
    if (!(*out = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, &jerr))) {
        snprintf(st->err, sizeof(st->err), "audit get: unreadable row");
        goto cleanup;
    }
    rc = BROKER_OK;
cleanup:
    PQclear(res);
    return rc;
}

/* ---- admin tokens ---- */

enum broker_err store_admin_token_add(struct store *st, const char *name, const uint8_t hash[32])
{
    const char *v[2] = {name, (const char *)hash};
    const int lens[2] = {0, 32}, fmts[2] = {0, 1};
    if (!name || !*name || strlen(name) > BROKER_MAX_NAME_LEN) {
        snprintf(st->err, sizeof(st->err), "admin token: name must be 1..%d bytes", BROKER_MAX_NAME_LEN);
        return BROKER_ERR_BAD_REQUEST;
    }
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    PGresult *res = store_exec(st, "admin token add", "INSERT INTO admin_tokens (name, hash) VALUES ($1, $2)", 2, v,
                               lens, fmts, PGRES_COMMAND_OK);
    bool ok = res != NULL;
    PQclear(res);
    if (ok)
        return BROKER_OK;
    return strcmp(st->sqlstate, "23505") == 0 ? BROKER_ERR_BAD_REQUEST : BROKER_ERR_DB;
}

enum broker_err store_admin_token_check(struct store *st, const uint8_t hash[32], char *name, size_t name_cap)
{
    enum broker_err rc = BROKER_ERR_DB;
    const char *v[1] = {(const char *)hash};
    const int lens[1] = {32}, fmts[1] = {1};

    if (name_cap)
        name[0] = 0;
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    PGresult *res = store_exec(st, "admin token check",
                               "SELECT name FROM admin_tokens WHERE hash = $1 AND revoked_at IS NULL", 1, v, lens,
                               fmts, PGRES_TUPLES_OK);
    if (!res)
        return BROKER_ERR_DB;
    if (PQntuples(res) != 1) {
        rc = BROKER_ERR_UNAUTHORIZED;
    } else if ((size_t)PQgetlength(res, 0, 0) >= name_cap) {
        snprintf(st->err, sizeof(st->err), "admin token check: name buffer too small");
        rc = BROKER_ERR_INTERNAL;
    } else {
        memcpy(name, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0) + 1);
        rc = BROKER_OK;
    }
    PQclear(res);
    return rc;
}

enum broker_err store_admin_token_revoke(struct store *st, const char *name)
{
    const char *v[1] = {name};
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    PGresult *res = store_exec(st, "admin token revoke",
                               "UPDATE admin_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", 1, v,
                               NULL, NULL, PGRES_COMMAND_OK);
    if (!res)
        return BROKER_ERR_DB;
    bool found = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return found ? BROKER_OK : BROKER_ERR_NOT_FOUND;
}

/* ---- admin API: one document at a time, with ETags ---- */

#define DOC_ETAG "substr(encode(sha256(convert_to(doc::text, 'UTF8')), 'hex'), 1, 32)"
#define DOC_RETURNING " RETURNING doc::text, " DOC_ETAG ", version::text"

/* Columns of get/insert/update: doc text, etag, version; of lock: doc text, etag, equal, version. */
struct doc_admin_sql {
    const char *get;      /* $1 name */
    const char *lock;     /* $1 name, $2 doc: the row locked, and whether it equals $2 */
    const char *insert;   /* $1 name, $2 doc */
    const char *update;
    const char *remove;   /* $1 name */
    const char *list;     /* one row: a JSON array */
};
#define DOC_ADMIN_SQL(t)                                                                                       \
    {"SELECT doc::text, " DOC_ETAG ", version::text FROM " t " WHERE name = $1",                               \
     "SELECT doc::text, " DOC_ETAG ", doc = $2::jsonb, version::text FROM " t " WHERE name = $1 FOR UPDATE",    \
     "INSERT INTO " t " (name, doc, updated_at, version) VALUES ($1, $2::jsonb, now(), 1)" DOC_RETURNING,      \
     "UPDATE " t " SET doc = $2::jsonb, updated_at = now(), version = version + 1 WHERE name = $1" DOC_RETURNING, \
     "DELETE FROM " t " WHERE name = $1",                                                                      \
     "SELECT coalesce(json_agg(json_build_object('name', name, 'etag', " DOC_ETAG ", 'version', version, "      \
     "'updated_at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'document', "  \
     "doc) ORDER BY name COLLATE \"C\"), '[]')::text FROM " t}
static const struct doc_admin_sql doc_admin_sql[2] = {DOC_ADMIN_SQL("issuers"), DOC_ADMIN_SQL("identities")};

/* Identities whose trust policies name issuer $1 (at most 10, for the message). */
static const char doc_issuer_refs_sql[] =
    "SELECT string_agg(name, ', ' ORDER BY name COLLATE \"C\") FROM (SELECT name FROM identities WHERE EXISTS "
    "(SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(doc->'trust') WHEN 'array' THEN doc->'trust' ELSE "
    "'[]'::jsonb END) AS t(p) WHERE p->>'issuer' = $1) ORDER BY name COLLATE \"C\" LIMIT 10) s";

void store_doc_clear(struct store_doc *d)
{
    if (!d)
        return;
    free(d->text);
    memset(d, 0, sizeof(*d));
}

static int doc_kind_index(const char *kind)
{
    for (int i = 0; i < 2; i++)
        if (kind && strcmp(kind, doc_kinds[i].kind) == 0)
            return i;
    return -1;
}

/* Row 0 of res: text in column 0, etag in 1, version in vcol. */
static enum broker_err doc_from_row(struct store *st, const PGresult *res, int vcol, struct store_doc *d)
{
    store_doc_clear(d);
    const char *etag = PQgetvalue(res, 0, 1);
    if (strlen(etag) != STORE_ETAG_HEX || !parse_i64(PQgetvalue(res, 0, vcol), &d->version)) {
        snprintf(st->err, sizeof(st->err), "document: unreadable row");
        return BROKER_ERR_DB;
    }
    memcpy(d->etag, etag, STORE_ETAG_HEX + 1);
    if (!(d->text = strdup(PQgetvalue(res, 0, 0))))
        return BROKER_ERR_NOMEM;
    return BROKER_OK;
}

enum broker_err store_doc_get(struct store *st, const char *kind, const char *name, struct store_doc *out)
{
    enum broker_err rc = BROKER_ERR_DB;
    int ki = doc_kind_index(kind);
    const char *v[1] = {name};
    PGresult *res = NULL;

    memset(out, 0, sizeof(*out));
    if (ki < 0 || !name) {
        snprintf(st->err, sizeof(st->err), "document get: bad arguments");
        return BROKER_ERR_INTERNAL;
    }
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    if (!(res = store_exec(st, "document get", doc_admin_sql[ki].get, 1, v, NULL, NULL, PGRES_TUPLES_OK)))
        goto cleanup;
    rc = PQntuples(res) == 1 ? doc_from_row(st, res, 2, out) : BROKER_ERR_NOT_FOUND;
cleanup:
    PQclear(res);
    return rc;
}

enum broker_err store_doc_list(struct store *st, const char *kind, json_t **out)
{
    enum broker_err rc = BROKER_ERR_DB;
    int ki = doc_kind_index(kind);
    PGresult *res = NULL;

    *out = NULL;
    if (ki < 0) {
        snprintf(st->err, sizeof(st->err), "document list: bad arguments");
        return BROKER_ERR_INTERNAL;
    }
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    if (!(res = store_exec(st, "document list", doc_admin_sql[ki].list, 0, NULL, NULL, NULL, PGRES_TUPLES_OK)))
        goto cleanup;
    json_error_t jerr;
    if (PQntuples(res) != 1 ||
        !(*out = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), JSON_REJECT_DUPLICATES, &jerr))) {
        snprintf(st->err, sizeof(st->err), "document list: unreadable result");
        goto cleanup;
    }
    rc = BROKER_OK;
cleanup:
    PQclear(res);
    return rc;
}

static bool tag_listed(const char *etag, const char *const *tags, size_t n)
{
    for (size_t i = 0; i < n && i < STORE_PRECOND_MAX_TAGS; i++)
        if (tags[i] && strcmp(tags[i], etag) == 0)
            return true;
    return false;
}

/* etag: the current document's, NULL when it does not exist. */
static enum broker_err precond_eval(const struct store_precond *p, const char *etag, char *err, size_t errlen)
{
    if (!p)
        return BROKER_OK;
    if (p->if_match && !etag) {
        snprintf(err, errlen, "If-Match: the document does not exist");
        return BROKER_ERR_PRECONDITION_FAILED;
    }
    if (p->if_match && !p->match_any && !tag_listed(etag, p->match, p->nmatch)) {
        snprintf(err, errlen, "If-Match: the document has changed (its ETag is now \"%s\")", etag);
        return BROKER_ERR_PRECONDITION_FAILED;
    }
    if (p->if_none_match && etag && (p->none_any || tag_listed(etag, p->none, p->nnone))) {
        snprintf(err, errlen, "If-None-Match: the document exists");
        return BROKER_ERR_PRECONDITION_FAILED;
    }
    return BROKER_OK;
}

/* Run check on the documents as this transaction now sees them, i.e. exactly what a replica
 * would load after the COMMIT. */
static enum broker_err doc_check_set(struct store *st, const struct store_doc_check *check, char *err, size_t errlen)
{
    json_t *iss = NULL, *ids = NULL;
    if (!check || !check->fn)
        return BROKER_OK;
    enum broker_err rc = store_load_documents(st, &iss, &ids);
    if (rc == BROKER_OK && (rc = check->fn(check->arg, iss, ids, err, errlen)) != BROKER_OK && rc != BROKER_ERR_NOMEM)
        rc = BROKER_ERR_INVALID_DOCUMENT;
    json_decref(iss);
    json_decref(ids);
    return rc;
}

enum broker_err store_doc_put(struct store *st, const char *actor, const char *kind, const json_t *doc,
                              const struct store_precond *pre, const struct store_doc_check *check,
                              struct store_doc_result *out)
{
    enum broker_err rc = BROKER_ERR_INVALID_DOCUMENT;
    int ki = doc_kind_index(kind);
    const char *name = ki >= 0 ? json_string_value(json_object_get(doc, kind)) : NULL;
    char *text = NULL, *before = NULL;
    PGresult *res = NULL;
    json_t *list = NULL;

    out->change = NULL;
    out->err[0] = '\0';
    store_doc_clear(&out->doc);
    if (ki < 0 || !actor || !*actor) {
        snprintf(out->err, sizeof(out->err), "put document: bad arguments");
        return BROKER_ERR_INTERNAL;
    }
    if (!json_is_object(doc) || !name || !*name || strlen(name) > BROKER_MAX_NAME_LEN) {
        snprintf(out->err, sizeof(out->err), "\"%s\" must be a name of 1..%d bytes", kind, BROKER_MAX_NAME_LEN);
        return BROKER_ERR_INVALID_DOCUMENT;
    }
    if (!(text = json_dumps(doc, JSON_COMPACT)))
        return BROKER_ERR_NOMEM;
    if (strlen(text) > BROKER_MAX_DOC_BYTES) {
        snprintf(out->err, sizeof(out->err), "document over %d bytes", BROKER_MAX_DOC_BYTES);
        goto cleanup;
    }
    rc = BROKER_ERR_NOMEM;
    if (!(list = json_array()))
        goto cleanup;
    if ((rc = store_ready(st)) != BROKER_OK || (rc = store_cmd(st, "begin", "BEGIN", 0, NULL)) != BROKER_OK ||
        (rc = policy_lock(st)) != BROKER_OK)
        goto cleanup;
    rc = BROKER_ERR_DB;
    const char *v[2] = {name, text};
    if (!(res = store_exec(st, "lock document", doc_admin_sql[ki].lock, 2, v, NULL, NULL, PGRES_TUPLES_OK)))
        goto cleanup;
    bool exists = PQntuples(res) == 1;
    if ((rc = precond_eval(pre, exists ? PQgetvalue(res, 0, 1) : NULL, out->err, sizeof(out->err))) != BROKER_OK)
        goto cleanup;
    if (exists && strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
        /* idempotent: nothing to write, audit or announce */
        if ((rc = doc_from_row(st, res, 3, &out->doc)) != BROKER_OK)
            goto cleanup;
        out->change = "unchanged";
        store_rollback(st);
        goto cleanup;
    }
    if (exists && !(before = strdup(PQgetvalue(res, 0, 0)))) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    PQclear(res);
    out->change = exists ? "updated" : "created";
    res = store_exec(st, "write document", exists ? doc_admin_sql[ki].update : doc_admin_sql[ki].insert, 2, v, NULL,
                     NULL, PGRES_TUPLES_OK);
    if (!res || PQntuples(res) != 1) {
        rc = BROKER_ERR_DB;
        goto cleanup;
    }
    if ((rc = doc_from_row(st, res, 2, &out->doc)) != BROKER_OK ||
        (rc = doc_check_set(st, check, out->err, sizeof(out->err))) != BROKER_OK ||
        (rc = doc_change(st, actor, &doc_kinds[ki], name, out->change, before, out->doc.text, list)) != BROKER_OK ||
        (rc = policy_bump(st)) != BROKER_OK || (rc = store_commit(st)) != BROKER_OK)
        goto cleanup;
cleanup:
    if (rc != BROKER_OK) {
        store_rollback(st);
        store_doc_clear(&out->doc);
        out->change = NULL;
    }
    PQclear(res);
    free(text);
    free(before);
    json_decref(list);
    return rc;
}

enum broker_err store_doc_delete(struct store *st, const char *actor, const char *kind, const char *name,
                                 const struct store_precond *pre, const struct store_doc_check *check,
                                 struct store_doc_result *out)
{
    enum broker_err rc = BROKER_ERR_NOMEM;
    int ki = doc_kind_index(kind);
    PGresult *res = NULL;
    json_t *list = NULL;

    out->change = NULL;
    out->err[0] = '\0';
    store_doc_clear(&out->doc);
    if (ki < 0 || !actor || !*actor || !name) {
        snprintf(out->err, sizeof(out->err), "delete document: bad arguments");
        return BROKER_ERR_INTERNAL;
    }
    if (!(list = json_array()))
        goto cleanup;
    if ((rc = store_ready(st)) != BROKER_OK || (rc = store_cmd(st, "begin", "BEGIN", 0, NULL)) != BROKER_OK ||
        (rc = policy_lock(st)) != BROKER_OK)
        goto cleanup;
    rc = BROKER_ERR_DB;
    const char *v[2] = {name, "null"};
    if (!(res = store_exec(st, "lock document", doc_admin_sql[ki].lock, 2, v, NULL, NULL, PGRES_TUPLES_OK)))
        goto cleanup;
    if (PQntuples(res) == 0) {
        rc = precond_eval(pre, NULL, out->err, sizeof(out->err));
        if (rc == BROKER_OK) {
            snprintf(out->err, sizeof(out->err), "no %s named %s", kind, name);
            rc = BROKER_ERR_NOT_FOUND;
        }
        goto cleanup;
    }
    if ((rc = precond_eval(pre, PQgetvalue(res, 0, 1), out->err, sizeof(out->err))) != BROKER_OK ||
        (rc = doc_from_row(st, res, 3, &out->doc)) != BROKER_OK)
        goto cleanup;
    PQclear(res);
    res = NULL;
    if (ki == 0) {
        rc = BROKER_ERR_DB;
        if (!(res = store_exec(st, "issuer references", doc_issuer_refs_sql, 1, v, NULL, NULL, PGRES_TUPLES_OK)))
            goto cleanup;
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            snprintf(out->err, sizeof(out->err), "issuer %s is still trusted by identity %s", name,
                     PQgetvalue(res, 0, 0));
            rc = BROKER_ERR_CONFLICT;
            goto cleanup;
        }
    }
    out->change = "deleted";
    if ((rc = store_cmd(st, "delete document", doc_admin_sql[ki].remove, 1, v)) != BROKER_OK)
        goto cleanup;
    if ((rc = doc_check_set(st, check, out->err, sizeof(out->err))) != BROKER_OK) {
        if (rc == BROKER_ERR_INVALID_DOCUMENT)
            rc = BROKER_ERR_CONFLICT;
        goto cleanup;
    }
    if ((rc = doc_change(st, actor, &doc_kinds[ki], name, "deleted", out->doc.text, NULL, list)) != BROKER_OK ||
        (rc = policy_bump(st)) != BROKER_OK || (rc = store_commit(st)) != BROKER_OK)
        goto cleanup;
cleanup:
    if (rc != BROKER_OK) {
        store_rollback(st);
        store_doc_clear(&out->doc);
        out->change = NULL;
    }
    PQclear(res);
    json_decref(list);
    return rc;
}

/* ---- audit listing ---- */

enum broker_err store_audit_list(struct store *st, const struct store_audit_filter *f, json_t **items,
                                 int64_t *next_cursor)
{
    enum broker_err rc = BROKER_ERR_DB;
    char lim[16], before[24];
    PGresult *res = NULL;
    json_t *arr = NULL;

    *items = NULL;
    *next_cursor = 0;
    if (!f || f->limit < 1 || f->limit > STORE_AUDIT_LIST_MAX || f->before_id < 0) {
        snprintf(st->err, sizeof(st->err), "audit list: bad arguments");
        return BROKER_ERR_INTERNAL;
    }
    if (!(arr = json_array()))
        return BROKER_ERR_NOMEM;
    if (store_ready(st) != BROKER_OK)
        goto cleanup;
    /* one row more than asked: whether another page follows */
    snprintf(lim, sizeof(lim), "%d", f->limit + 1);
    snprintf(before, sizeof(before), "%" PRId64, f->before_id);
    const char *v[6] = {f->identity, f->result, f->since, f->request_id, f->before_id > 0 ? before : NULL, lim};
    res = store_exec(st, "audit list",
                     "SELECT id::text, json_build_object('request_id', request_id, 'at', to_char(at AT TIME ZONE 'UTC', "
                     "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'result', result, 'reason', reason, 'identity', identity, "
                     "'policy', policy, 'subject_iss', subject_iss, 'subject_sub', subject_sub, 'subject_jti', "
                     "subject_jti, 'token_jti', token_jti, 'scope', scope, 'audience', audience, 'client_addr', "
                     "client_addr)::text FROM audit WHERE ($1::text IS NULL OR identity = $1::text) AND ($2::text IS "
                     "NULL OR result = $2::text) AND ($3::timestamptz IS NULL OR at >= $3::timestamptz) AND ($4::text "
                     "IS NULL OR request_id = $4::text) AND ($5::bigint IS NULL OR id < $5::bigint) ORDER BY audit.id DESC "
                     "LIMIT $6::int",
                     6, v, NULL, NULL, PGRES_TUPLES_OK);
    if (!res)
        goto cleanup;
    int rows = PQntuples(res), n = rows > f->limit ? f->limit : rows;
    for (int i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *rec = json_loadb(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1), 0, &jerr);
        if (!rec || json_array_append_new(arr, rec) != 0) {
            snprintf(st->err, sizeof(st->err), "audit list: unreadable row");
            goto cleanup;
        }
    }
    if (rows > f->limit && !parse_i64(PQgetvalue(res, n - 1, 0), next_cursor)) {
        snprintf(st->err, sizeof(st->err), "audit list: unreadable id");
        goto cleanup;
    }
    *items = arr;
    arr = NULL;
    rc = BROKER_OK;
cleanup:
    if (rc != BROKER_OK)
        *next_cursor = 0;
    PQclear(res);
    json_decref(arr);
    return rc;
}
