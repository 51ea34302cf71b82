/* PostgreSQL access: the connection, statement and transaction helpers (store_int.h), migrations,
 * the policy generation, replica heartbeats and LISTEN. store.c, store_docs.c, store_audit.c and
 * store_admin.c are the only files that include libpq. Every statement is parameterized
 * (PQexecParams / prepared), which also means one statement per call; the one exception is a
 * migration file, which is ours and runs with PQexec. */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_STATEMENT_TIMEOUT_MS "5000"
/* added to every session's options, after the caller's (see store_open) */
#define STORE_OPTIONS "-c statement_timeout=" STORE_STATEMENT_TIMEOUT_MS " -c array_nulls=on"
#define STORE_MIGRATE_LOCK "7236952796468326770"  /* pg_advisory_lock key: any fixed bigint */
#define STORE_MAX_MIGRATIONS 1000
#define STORE_MAX_MIGRATION_BYTES (1024 * 1024)

/* Record what failed: the libpq message of res, or of the connection when res is NULL. */
void store_fail(struct store *st, const char *what, const PGresult *res)
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

enum broker_err store_ready(struct store *st)
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
PGresult *store_exec(struct store *st, const char *what, const char *sql, int n, const char *const *vals,
                     const int *lens, const int *fmts, ExecStatusType want)
{
    PGresult *res = PQexecParams(st->conn, sql, n, NULL, vals, lens, fmts, 0);
    if (res && PQresultStatus(res) == want)
        return res;
    store_fail(st, what, res);
    PQclear(res);
    return NULL;
}

enum broker_err store_cmd(struct store *st, const char *what, const char *sql, int n, const char *const *vals)
{
    PGresult *res = store_exec(st, what, sql, n, vals, NULL, NULL, PGRES_COMMAND_OK);
    bool ok = res != NULL;
    PQclear(res);
    return ok ? BROKER_OK : BROKER_ERR_DB;
}

/* Best effort: leave no transaction open; a session we cannot clean is marked broken. */
void store_rollback(struct store *st)
{
    if (!st->conn || PQstatus(st->conn) != CONNECTION_OK || PQtransactionStatus(st->conn) == PQTRANS_IDLE)
        return;
    PGresult *res = PQexecParams(st->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK || PQtransactionStatus(st->conn) != PQTRANS_IDLE)
        st->broken = true;
    PQclear(res);
}

/* COMMIT of a failed transaction answers "ROLLBACK" without an error: check the tag. */
enum broker_err store_commit(struct store *st)
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

/* The session must speak UTF-8 (see store_open); otherwise it is unusable until a reconnect. */
static bool store_utf8(struct store *st, const char *what)
{
    if (PQclientEncoding(st->conn) == pg_char_to_encoding("UTF8"))
        return true;
    snprintf(st->err, sizeof(st->err), "%s: the session's client_encoding is %s, not UTF8", what,
             pg_encoding_to_char(PQclientEncoding(st->conn)));
    st->broken = true;
    return false;
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
    /* The caller's settings win, except that statement_timeout and array_nulls are always added
     * to options (after the caller's, so they win) and client_encoding is pinned. */
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
        if (strcmp(o->keyword, "client_encoding") == 0)
            continue; /* always UTF8: see below */
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
    size_t olen = strlen(user_options) + 1 + sizeof(STORE_OPTIONS);
    options = malloc(olen);
    if (!options) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    /* array_nulls=on: the audit batch writes a NULL element as NULL; off would store "NULL" */
    snprintf(options, olen, "%s%s" STORE_OPTIONS, user_options, *user_options ? " " : "");
    kw[n] = "options";
    val[n++] = options;
    /* Every text we send is UTF-8, and the audit batch's array literals are only safe if the
     * server reads exactly the bytes we escaped: under SJIS, BIG5, GBK and the like a UTF-8 byte
     * followed by our escaping backslash is one character, and a hostile claim could break out of
     * its element. Pinned here (the startup packet outranks role and database settings) and checked
     * once connected. */
    kw[n] = "client_encoding";
    val[n++] = "UTF8";
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
    if (!store_utf8(st, "connect"))
        goto cleanup;
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
    for (size_t i = 0; i < STORE_AUDIT_PARAMS; i++)
        free(st->audit_cols[i].p);
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
    return store_utf8(st, "reconnect") ? BROKER_OK : BROKER_ERR_DB;
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

int store_cmp_str(const void *a, const void *b)
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
    qsort(names, n, sizeof(*names), store_cmp_str);
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

/* ---- policy generation, replicas, notifications ---- */

bool store_parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

enum broker_err store_policy_generation(struct store *st, int64_t *generation)
{
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    PGresult *res = store_exec(st, "policy generation", "SELECT generation::text FROM policy_state WHERE id = 1", 0,
                               NULL, NULL, NULL, PGRES_TUPLES_OK);
    bool ok = res && PQntuples(res) == 1 && store_parse_i64(PQgetvalue(res, 0, 0), generation);
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
                              "     spent AS (DELETE FROM used_jti WHERE expires_at < now()),"
                              /* revocations outlive exp by a minute: replicas' clocks may differ */
                              "     unrevoked AS (DELETE FROM revoked_tokens WHERE exp < now() - interval '60 seconds')"
                              " SELECT count(*)::text FROM replicas WHERE seen > now() - interval '5 seconds' AND id <> $1";
    const char *vals[1] = {id};
    PGresult *res = store_exec(st, "replica heartbeat", sql, 1, vals, NULL, NULL, PGRES_TUPLES_OK);
    int64_t others = 0;
    bool ok = res && PQntuples(res) == 1 && store_parse_i64(PQgetvalue(res, 0, 0), &others) && others >= 0;
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
    if (pfd.fd < 0) {
        store_fail(st, "listen: no socket", NULL);
        st->broken = true;
        return BROKER_ERR_DB;
    }
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno != EINTR) {
        snprintf(st->err, sizeof(st->err), "listen: poll: %s", strerror(errno));
        return BROKER_ERR_DB;
    }
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
