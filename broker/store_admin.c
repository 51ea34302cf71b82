/* Admin tokens in PostgreSQL (part of the store module, see store_int.h): only SHA-256 hashes
 * are stored; revoking one sets its revoked_at. */
#include "store_int.h"

#include <stdio.h>
#include <string.h>

#include "bounds.h"

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
