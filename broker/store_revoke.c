/* Revoked tokens in PostgreSQL (part of the store module, see store_int.h): one row per revoked
 * jti, a seq for incremental reading, NOTIFY broker_revoke in the inserting statement (sent at its
 * commit). The replica heartbeat (store.c) prunes rows once their token has expired. */
#include "store_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum broker_err store_revoke_add(struct store *st, const char *jti, int64_t exp, const char *by, bool *added)
{
    char expbuf[24];
    *added = false;
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    snprintf(expbuf, sizeof(expbuf), "%" PRId64, exp);
    const char *v[3] = {jti, expbuf, by};
    /* one statement, so one implicit transaction: the row and the notification commit together */
    PGresult *res = store_exec(st, "revoke",
                               "WITH ins AS (INSERT INTO revoked_tokens (jti, exp, revoked_by)"
                               "             VALUES ($1, to_timestamp($2::bigint), $3)"
                               "             ON CONFLICT (jti) DO NOTHING RETURNING seq)"
                               " SELECT pg_notify('broker_revoke', seq::text) FROM ins",
                               3, v, NULL, NULL, PGRES_TUPLES_OK);
    if (res == NULL)
        return BROKER_ERR_DB;
    *added = PQntuples(res) == 1;
    PQclear(res);
    return BROKER_OK;
}

/* Pass each row (seq, jti, exp) of res to fn. */
static enum broker_err each_row(struct store *st, PGresult *res,
                                enum broker_err (*fn)(void *arg, const char *jti, size_t len, int64_t exp), void *arg,
                                int64_t *last_seq, int *rows)
{
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        int64_t seq, exp;
        if (!store_parse_i64(PQgetvalue(res, i, 0), &seq) || !store_parse_i64(PQgetvalue(res, i, 2), &exp)) {
            snprintf(st->err, sizeof(st->err), "revocations: a row is not (seq, jti, exp)");
            return BROKER_ERR_DB;
        }
        enum broker_err rc = fn(arg, PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1), exp);
        if (rc != BROKER_OK)
            return rc;
        if (last_seq != NULL)
            *last_seq = seq;
        (*rows)++;
    }
    return BROKER_OK;
}

enum broker_err store_revoke_list(struct store *st, int64_t after_seq, int limit,
                                  enum broker_err (*fn)(void *arg, const char *jti, size_t len, int64_t exp),
                                  void *arg, int64_t *last_seq, int *rows)
{
    char after[24], lim[16];
    *rows = 0;
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    snprintf(after, sizeof(after), "%" PRId64, after_seq);
    snprintf(lim, sizeof(lim), "%d", limit > 0 ? limit : 1);
    const char *v[2] = {after, lim};
    PGresult *res = store_exec(st, "revocations",
                               "SELECT seq::text, jti, floor(extract(epoch FROM exp))::bigint::text FROM revoked_tokens"
                               " WHERE seq > $1::bigint ORDER BY seq LIMIT $2::int",
                               2, v, NULL, NULL, PGRES_TUPLES_OK);
    if (res == NULL)
        return BROKER_ERR_DB;
    enum broker_err rc = each_row(st, res, fn, arg, last_seq, rows);
    PQclear(res);
    return rc;
}

enum broker_err store_revoke_recent(struct store *st, int seconds,
                                    enum broker_err (*fn)(void *arg, const char *jti, size_t len, int64_t exp),
                                    void *arg, int *rows)
{
    char secs[16];
    *rows = 0;
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    snprintf(secs, sizeof(secs), "%d", seconds);
    const char *v[1] = {secs};
    PGresult *res = store_exec(st, "recent revocations",
                               "SELECT seq::text, jti, floor(extract(epoch FROM exp))::bigint::text FROM revoked_tokens"
                               " WHERE revoked_at > now() - make_interval(secs => $1::int) ORDER BY seq",
                               1, v, NULL, NULL, PGRES_TUPLES_OK);
    if (res == NULL)
        return BROKER_ERR_DB;
    enum broker_err rc = each_row(st, res, fn, arg, NULL, rows);
    PQclear(res);
    return rc;
}

enum broker_err store_revoke_listen(struct store *st)
{
    if (store_ready(st) != BROKER_OK)
        return BROKER_ERR_DB;
    return store_cmd(st, "listen", "LISTEN broker_revoke", 0, NULL);
}
