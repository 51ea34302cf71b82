/* Policy documents in PostgreSQL (part of the store module, see store_int.h): loading the whole
 * set, applying a batch of documents (CLI / apply), and the admin API's one-document-at-a-time
 * reads and writes with ETags and preconditions. Every change is recorded in audit_changes, bumps
 * policy_state.generation and NOTIFYs broker_policy, all in the change's transaction. */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"

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

/* ---- policy documents ---- */

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
            if (!store_parse_i64(v, &g))
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
    qsort(sorted, n, sizeof(*sorted), store_cmp_str);
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

enum broker_err store_put_documents_checked(struct store *st, const char *actor, const json_t *issuers,
                                            const json_t *identities, bool prune, bool dry_run,
                                            const struct store_doc_check *check, json_t *changes, char *err,
                                            size_t errlen)
{
    enum broker_err rc;
    struct doc_batch b[2] = {{0}, {0}};
    const json_t *arrs[2] = {issuers, identities};
    json_t *list = NULL;
    size_t nchanged = 0;

    if (err && errlen)
        err[0] = '\0';
    if (!actor || !*actor) {
        snprintf(st->err, sizeof(st->err), "put documents: no actor");
        return BROKER_ERR_INTERNAL;
    }
    for (size_t i = 0; i < 2; i++)
        if (arrs[i] && (rc = doc_batch_make(st, &doc_kinds[i], arrs[i], &b[i])) != BROKER_OK) {
            if (rc == BROKER_ERR_INVALID_DOCUMENT && err && errlen)
                snprintf(err, errlen, "%s", st->err);
            goto cleanup;
        }
    rc = BROKER_ERR_NOMEM;
    if (!(list = json_array()))
        goto cleanup;
    if ((rc = store_ready(st)) != BROKER_OK || (rc = store_cmd(st, "begin", "BEGIN", 0, NULL)) != BROKER_OK ||
        (rc = policy_lock(st)) != BROKER_OK)
        goto cleanup;
    for (size_t i = 0; i < 2; i++)
        if (arrs[i] && (rc = docs_put_kind(st, actor, &doc_kinds[i], &b[i], prune, list, &nchanged)) != BROKER_OK)
            goto cleanup;
    /* checked under the policy_state lock, on the set as this transaction sees it: what every
     * replica will load after the COMMIT (a snapshot taken before the lock could be stale) */
    if ((rc = doc_check_set(st, check, err, errlen)) != BROKER_OK)
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

enum broker_err store_put_documents_as(struct store *st, const char *actor, const json_t *issuers,
                                       const json_t *identities, bool prune, bool dry_run, json_t *changes)
{
    return store_put_documents_checked(st, actor, issuers, identities, prune, dry_run, NULL, changes, NULL, 0);
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
    if (strlen(etag) != STORE_ETAG_HEX || !store_parse_i64(PQgetvalue(res, 0, vcol), &d->version)) {
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
