/* Internal to the store module: what store.c (the connection, statements, transactions,
 * migrations) shares with store_docs.c, store_audit.c and store_admin.c. It includes libpq, so only
 * store*.c may include it; other modules use store.h. */
#ifndef BROKER_STORE_INT_H
#define BROKER_STORE_INT_H
#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>
#include "store.h"

/* One column's values as a PostgreSQL array literal, kept by the session between audit batches
 * (store_audit.c). */
struct store_arr {
    char *p;
    size_t len, cap;
};
#define STORE_AUDIT_PARAMS 14

struct store {
    PGconn *conn;
    bool broken;          /* a failure left the session in an unknown state: reconnect */
    bool audit_prepared;  /* "audit_insert_many" and "audit_insert_once" exist on this connection */
    char err[512];
    char sqlstate[6];
    struct store_arr audit_cols[STORE_AUDIT_PARAMS];
};

/* Record what failed (libpq's message of res, or of the connection when res is NULL) and mark
 * the session broken when it may be. */
void store_fail(struct store *st, const char *what, const PGresult *res);
/* BROKER_OK when the connection is usable, else BROKER_ERR_DB with the reason recorded. */
enum broker_err store_ready(struct store *st);
/* Run one parameterized statement; NULL (error recorded) unless its status is want. */
PGresult *store_exec(struct store *st, const char *what, const char *sql, int n, const char *const *vals,
                     const int *lens, const int *fmts, ExecStatusType want);
/* store_exec of a statement that returns no rows. */
enum broker_err store_cmd(struct store *st, const char *what, const char *sql, int n, const char *const *vals);
/* Best effort: leave no transaction open; a session we cannot clean is marked broken. */
void store_rollback(struct store *st);
/* COMMIT, checking that it did not answer ROLLBACK. */
enum broker_err store_commit(struct store *st);
/* A whole decimal integer (a ::text column); false when s is anything else. */
bool store_parse_i64(const char *s, int64_t *out);
/* qsort comparator for an array of C strings. */
int store_cmp_str(const void *a, const void *b);

#endif
