/* Audit records in PostgreSQL (part of the store module, see store_int.h): the pipelined batch
 * write, with the single_use jti claim (used_jti) in the same transaction, and reading records back
 * one at a time or as a filtered list. */
#include "store_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "dec.h"


/* The rows of a batch that claim nothing, in one statement: each column's values as one array,
 * unnested in queue order. One Bind and one executor start-up per batch instead of per row:
 * with a statement per row, PostgreSQL took a third of this machine's CPU under `make bench`. */
static const char audit_insert_many_sql[] =
    "INSERT INTO audit (request_id, at, result, reason, identity, policy, subject_iss, subject_sub, "
    "subject_jti, token_jti, scope, audience, client_addr, explanation) SELECT r, "
    "'epoch'::timestamptz + a * interval '1 microsecond', res, rea, i, p, si, ss, sj, tj, sc, au, ca, ex::jsonb "
    "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], "
    "$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[]) WITH ORDINALITY "
    "AS t(r, a, res, rea, i, p, si, ss, sj, tj, sc, au, ca, ex, n) ORDER BY n";

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

/* A record's column values as text, in the order of the statements' parameters ($15: when its
 * claim expires). The buffers hold the numbers and the marker that replaces a huge explanation. */
struct audit_text {
    char at[DEC_I64_MAX], exp[DEC_I64_MAX], marker[64];
};

static void audit_values(const struct audit_record *r, struct audit_text *t, const char *v[STORE_AUDIT_PARAMS + 1])
{
    const char *expl = r->explanation;
    dec_i64(r->at_us, t->at);
    dec_i64(r->replay_exp, t->exp);
    if (expl && strlen(expl) > BROKER_AUDIT_EXPLAIN_MAX) {
        snprintf(t->marker, sizeof(t->marker), "[{\"truncated\":true,\"bytes\":%zu}]", strlen(expl));
        expl = t->marker;
    }
    const char *vals[STORE_AUDIT_PARAMS + 1] = {
        r->request_id, t->at, r->issued ? "issued" : "denied", r->reason ? r->reason : "unknown", r->identity,
        r->policy, r->subject_iss, r->subject_sub, r->subject_jti, r->token_jti, r->scope, r->audience,
        r->client_addr, expl, t->exp};
    memcpy(v, vals, sizeof(vals));
}

static int audit_send_once(PGconn *conn, const struct audit_record *r)
{
    struct audit_text t;
    const char *v[STORE_AUDIT_PARAMS + 1];
    audit_values(r, &t, v);
    return PQsendQueryPrepared(conn, "audit_insert_once", STORE_AUDIT_PARAMS + 1, v, NULL, NULL, 0);
}

/* ---- one column's values as a PostgreSQL array literal: {"a","b\"c",NULL} ---- */

#define AUDIT_MANY_BYTES (4u << 20) /* array text per statement; a batch above it takes several */

#define AUDIT_ARR_KEEP (64u << 10) /* a column buffer above this is not kept after its batch */

static bool audit_arr_put(struct store_arr *a, const char *s, size_t n)
{
    if (n == 0)
        return true;
    if (n > a->cap - a->len) {
        size_t cap = a->cap ? a->cap : 1024;
        while (cap - a->len < n + 1) {
            if (cap > SIZE_MAX / 2)
                return false;
            cap *= 2;
        }
        char *p = realloc(a->p, cap);
        if (!p)
            return false;
        a->p = p;
        a->cap = cap;
    }
    memcpy(a->p + a->len, s, n);
    a->len += n;
    return true;
}

/* One element: NULL, or the text in double quotes with '"' and '\' escaped (the only bytes that
 * are special inside quotes). The text is already clean UTF-8 without NUL (audit_record_clean). */
static bool audit_arr_elem(struct store_arr *a, const char *s)
{
    if (a->len > 1 && !audit_arr_put(a, ",", 1)) /* not the first: more than "{" is written */
        return false;
    if (!s)
        return audit_arr_put(a, "NULL", 4);
    if (!audit_arr_put(a, "\"", 1))
        return false;
    for (;;) {
        size_t run = strcspn(s, "\"\\");
        if (!audit_arr_put(a, s, run))
            return false;
        s += run;
        if (!*s)
            break;
        char esc[2] = {'\\', *s++};
        if (!audit_arr_put(a, esc, 2))
            return false;
    }
    return audit_arr_put(a, "\"", 1);
}

/* The plain (non-claiming) records recs[from..to) as one INSERT; *next is where the next
 * statement starts (a statement stops once its arrays pass AUDIT_MANY_BYTES). 1 when sent. */
static int audit_send_many(struct store *st, struct audit_record *const *recs, size_t from, size_t to, size_t *next,
                           size_t *rows)
{
    struct store_arr *cols = st->audit_cols;
    const char *params[STORE_AUDIT_PARAMS];
    size_t total = 0, i = from;
    int sent = 0;
    bool ok = true;

    *rows = 0;
    for (size_t c = 0; c < STORE_AUDIT_PARAMS && ok; c++) {
        cols[c].len = 0;
        ok = audit_arr_put(&cols[c], "{", 1);
    }
    for (; ok && i < to && total <= AUDIT_MANY_BYTES; i++) {
        if (audit_claims(recs[i]))
            continue;
        struct audit_text t;
        const char *v[STORE_AUDIT_PARAMS + 1];
        audit_values(recs[i], &t, v);
        total = 0;
        for (size_t c = 0; c < STORE_AUDIT_PARAMS && ok; c++) {
            ok = audit_arr_elem(&cols[c], v[c]);
            total += cols[c].len;
        }
        (*rows)++;
    }
    *next = i;
    for (size_t c = 0; c < STORE_AUDIT_PARAMS && ok; c++) {
        ok = audit_arr_put(&cols[c], "}", 2); /* with a NUL: libpq takes C strings */
        params[c] = cols[c].p;
    }
    if (ok)
        sent = PQsendQueryPrepared(st->conn, "audit_insert_many", STORE_AUDIT_PARAMS, params, NULL, NULL, 0);
    for (size_t c = 0; c < STORE_AUDIT_PARAMS; c++) { /* libpq has copied them */
        if (cols[c].cap > AUDIT_ARR_KEEP) {
            free(cols[c].p);
            cols[c] = (struct store_arr){0};
        }
    }
    return sent;
}

/* What was sent, in order, so the results can be read against it. */
struct audit_stmt {
    size_t rows; /* statement "many": rows in it */
    size_t rec;  /* statement "once": the record */
    bool once;
};

/* Read BEGIN, the statements, COMMIT and the sync point. After the first error the server skips
 * the rest up to the sync (PGRES_PIPELINE_ABORTED), so nothing of the batch is committed. */
static enum broker_err audit_collect(struct store *st, struct audit_record *const *recs, const struct audit_stmt *stmts,
                                     size_t nstmts)
{
    enum broker_err rc = BROKER_OK;
    PGresult *res;
    for (size_t q = 0; q < nstmts + 2; q++) {
        if (!(res = PQgetResult(st->conn))) {
            store_fail(st, "audit: missing result", NULL);
            st->broken = true;
            return BROKER_ERR_DB;
        }
        ExecStatusType s = PQresultStatus(res);
        const struct audit_stmt *m = q > 0 && q <= nstmts ? &stmts[q - 1] : NULL;
        bool ok = s == (m && m->once ? PGRES_TUPLES_OK : PGRES_COMMAND_OK);
        if (ok && m && m->once) {
            ok = PQntuples(res) == 1;
            recs[m->rec]->replayed = ok && strcmp(PQgetvalue(res, 0, 0), "denied") == 0;
        } else if (ok && m) {
            char want[DEC_I64_MAX];
            dec_i64((int64_t)m->rows, want);
            ok = strcmp(PQcmdTuples(res), want) == 0;
        }
        if (ok && q == nstmts + 1)
            ok = strcmp(PQcmdStatus(res), "COMMIT") == 0;
        if (!ok && rc == BROKER_OK) {
            if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_PIPELINE_ABORTED)
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

/* Blocking pipeline on a blocking connection cannot deadlock here: the server answers each
 * statement with a few dozen bytes, far below a socket buffer, so it never waits for us to read
 * while we are still writing. */
enum broker_err store_audit_write(struct store *st, struct audit_record *const *recs, size_t n)
{
    enum broker_err rc = BROKER_ERR_DB;
    bool piped = false;
    struct audit_stmt stmts[BROKER_AUDIT_BATCH_MAX * 2];
    size_t nstmts = 0;

    if (n == 0)
        return BROKER_OK;
    if (n > BROKER_AUDIT_BATCH_MAX) {
        snprintf(st->err, sizeof(st->err), "audit: batch of %zu records", n);
        return BROKER_ERR_INTERNAL;
    }
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
        PGresult *res = PQprepare(st->conn, "audit_insert_many", audit_insert_many_sql, STORE_AUDIT_PARAMS, NULL);
        st->audit_prepared = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        if (st->audit_prepared) {
            PQclear(res);
            res = PQprepare(st->conn, "audit_insert_once", audit_insert_once_sql, STORE_AUDIT_PARAMS + 1, NULL);
            st->audit_prepared = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        }
        if (!st->audit_prepared) {
            store_fail(st, "audit prepare", res);
            st->broken = true; /* one of the two may exist now: start over on a new session */
        }
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
    size_t plain = 0;
    for (size_t i = 0; i < n; i++)
        plain += !audit_claims(recs[i]);
    for (size_t i = 0, next = 0; sent && plain > 0; i = next) { /* each call takes >= 1 plain record */
        size_t rows = 0;
        sent = audit_send_many(st, recs, i, n, &next, &rows) == 1 && rows > 0;
        stmts[nstmts++] = (struct audit_stmt){.rows = rows};
        plain -= rows < plain ? rows : plain;
    }
    for (size_t i = 0; sent && i < n; i++) {
        if (audit_claims(recs[i])) {
            sent = audit_send_once(st->conn, recs[i]) == 1;
            stmts[nstmts++] = (struct audit_stmt){.rec = i, .once = true};
        }
    }
    sent = sent && PQsendQueryParams(st->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
    sent = sent && PQpipelineSync(st->conn) == 1;
    if (!sent) {
        store_fail(st, "audit: send", NULL);
        st->broken = true;  /* a half-sent pipeline: only a new session is clean */
        goto cleanup;
    }
    rc = audit_collect(st, recs, stmts, nstmts);
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
    if (rows > f->limit && !store_parse_i64(PQgetvalue(res, n - 1, 0), next_cursor)) {
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
