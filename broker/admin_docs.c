/* Admin routes for identity and issuer documents: GET (list, one, with ETag and If-None-Match),
 * PUT and DELETE with If-Match / If-None-Match preconditions, each change validated against the
 * whole resulting set and then waited for until this replica serves it. The worker-side halves
 * run after admin_authorize (admin.c) let the caller through. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "admin.h"
#include "admin_int.h"
#include "apply.h"
#include "bounds.h"
#include "jwt.h"
#include "log.h"
#include "policy.h"
#include "state.h"
#include "store.h"

/* "*" or a list of entity-tags (RFC 9110 §8.8.3), parsed in place. Strong tags go to tags[];
 * weak ones too when weak_ok (If-None-Match compares weakly), else they are dropped (If-Match
 * compares strongly: a weak tag never matches). false when malformed or too many. */
static bool etag_list_parse(char *s, bool weak_ok, bool *any, const char **tags, size_t *n)
{
    size_t seen = 0;
    char *p = s;
    *any = false;
    *n = 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (p[0] == '*') {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        *any = true;
        return *p == '\0';
    }
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        bool weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        if (*p != '"')
            return false;
        char *start = ++p;
        while (*p != '\0' && *p != '"') {
            if ((unsigned char)*p < 0x21 || *p == 0x7f)
                return false;
            p++;
        }
        if (*p != '"')
            return false;
        *p++ = '\0';
        seen++;
        if (!weak || weak_ok) {
            if (*n == STORE_PRECOND_MAX_TAGS)
                return false;
            tags[(*n)++] = start;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0' && *p != ',')
            return false;
    }
    return seen > 0;
}

static bool precond_parse(struct admin_job *j, struct store_precond *pre)
{
    memset(pre, 0, sizeof(*pre));
    if (j->bad_header) {
        admin_job_fail(j, 400, "invalid_request", "If-Match / If-None-Match is too long");
        return false;
    }
    if (j->if_match != NULL) {
        pre->if_match = true;
        if (!etag_list_parse(j->if_match, false, &pre->match_any, pre->match, &pre->nmatch)) {
            admin_job_fail(j, 400, "invalid_request", "If-Match must be * or a list of quoted ETags");
            return false;
        }
    }
    if (j->if_none_match != NULL) {
        pre->if_none_match = true;
        if (!etag_list_parse(j->if_none_match, true, &pre->none_any, pre->none, &pre->nnone)) {
            admin_job_fail(j, 400, "invalid_request", "If-None-Match must be * or a list of quoted ETags");
            return false;
        }
    }
    return true;
}

/* ---- documents ---- */

static const char *kind_path(const char *kind)
{
    return strcmp(kind, "identity") == 0 ? "/v1/identities/" : "/v1/issuers/";
}

/* The serving set's copy of a document, NULL when it has none. */
static const json_t *served_doc(const struct policy_set *s, const char *kind, const char *name)
{
    if (strcmp(kind, "identity") == 0) {
        const struct identity *id = policy_set_identity_by_name(s, name);
        return id ? id->doc : NULL;
    }
    const struct issuer_cfg *c = policy_set_issuer_by_name(s, name);
    return c ? c->doc : NULL;
}

/* After a committed change: reload this replica now and wait (bounded) until it serves the
 * change, so the caller's next exchange here uses it; other replicas follow within a second.
 * text: the stored document, NULL after a delete. false when it is not served in time (e.g. the
 * reload refused the set: the broker log says why). */
static bool await_served(const char *kind, const char *name, const char *text)
{
    json_error_t jerr;
    json_t *want = text ? json_loads(text, 0, &jerr) : NULL;
    bool served = false;
    if (text != NULL && want == NULL)
        return false;
    state_kick();
    for (int waited = 0; !served && waited <= ADMIN_SERVE_WAIT_MS; waited += 5) {
        struct policy_set *s = state_policy_get();
        if (s != NULL) {
            const json_t *have = served_doc(s, kind, name);
            served = want ? have != NULL && json_equal(have, want) : have == NULL;
            policy_set_unref(s);
        }
        if (!served) {
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    json_decref(want);
    return served;
}

void admin_docs_run_list(struct store *st, struct admin_job *j)
{
    json_t *items = NULL;
    enum broker_err e = store_doc_list(st, j->kind, &items);
    if (e != BROKER_OK) {
        admin_job_store_fail(j, st, e);
        return;
    }
    admin_job_json(j, 200, json_pack("{s:o}", "items", items));
}

void admin_docs_run_get(struct store *st, struct admin_job *j)
{
    struct store_doc d;
    struct store_precond pre;
    if (!precond_parse(j, &pre))
        return;
    enum broker_err e = store_doc_get(st, j->kind, j->arg, &d);
    if (e == BROKER_ERR_NOT_FOUND) {
        admin_job_fail(j, 404, "not_found", "no %s named %s", j->kind, j->arg);
        return;
    }
    if (e != BROKER_OK) {
        admin_job_store_fail(j, st, e);
        return;
    }
    snprintf(j->etag, sizeof(j->etag), "\"%s\"", d.etag);
    bool listed = false;
    for (size_t i = 0; i < pre.nnone; i++)
        listed = listed || strcmp(pre.none[i], d.etag) == 0;
    if (pre.if_none_match && (pre.none_any || listed)) {
        j->status = 304;
    } else {
        j->resp = d.text; /* the stored text itself: the bytes the ETag names */
        d.text = NULL;
        j->status = 200;
    }
    store_doc_clear(&d);
}

void admin_docs_run_put(struct store *st, struct admin_job *j)
{
    struct store_precond pre;
    struct store_doc_result res;
    /* the whole resulting set, inside the write transaction, as every replica's reload will check it */
    struct apply_check ac = {NULL, true};
    struct store_doc_check check = {apply_check_set, &ac};
    json_t *doc = NULL, *incoming = NULL;

    memset(&res, 0, sizeof(res));
    if (!j->json_body) {
        admin_job_fail(j, 415, "invalid_request", "Content-Type must be application/json");
        goto out;
    }
    doc = j->body_len ? jwt_json_load_strict((const uint8_t *)j->body, j->body_len, BROKER_MAX_JSON_DEPTH) : NULL;
    if (!json_is_object(doc)) {
        admin_job_fail(j, 400, "invalid_request",
                       "the body must be one JSON object (no duplicate keys, nesting at most %d)",
                       BROKER_MAX_JSON_DEPTH);
        goto out;
    }
    const char *kind = policy_doc_kind(doc);
    if (kind == NULL || strcmp(kind, j->kind) != 0) {
        admin_job_fail(j, 400, "invalid_request", "the body is not an %s document (it needs \"%s\" and not \"%s\")",
                       j->kind, j->kind, strcmp(j->kind, "identity") == 0 ? "issuer" : "identity");
        goto out;
    }
    const char *name = json_string_value(json_object_get(doc, j->kind));
    if (name == NULL || strcmp(name, j->arg) != 0) {
        admin_job_fail(j, 400, "invalid_request", "the document's \"%s\" must equal the name in the path (%s)", j->kind,
                       j->arg);
        goto out;
    }
    if (!precond_parse(j, &pre))
        goto out;
    if (strcmp(j->kind, "issuer") == 0) {
        if ((incoming = json_pack("[O]", doc)) == NULL) {
            admin_job_fail(j, 500, "server_error", "out of memory");
            goto out;
        }
        ac.incoming = incoming;
    }
    enum broker_err e = store_doc_put(st, j->who, j->kind, doc, &pre, &check, &res);
    switch (e) {
    case BROKER_OK:
        break;
    case BROKER_ERR_PRECONDITION_FAILED:
        admin_job_fail(j, 412, "precondition_failed", "%s", res.err);
        goto out;
    case BROKER_ERR_INVALID_DOCUMENT:
        admin_job_fail(j, 400, "invalid_request", "invalid document, nothing changed: %s", res.err);
        goto out;
    default:
        admin_job_store_fail(j, st, e);
        goto out;
    }
    j->change = res.change;
    bool created = strcmp(res.change, "created") == 0;
    bool served = await_served(j->kind, j->arg, res.doc.text);
    if (!served)
        log_msg(LOG_WARN, "admin_change_not_served", "kind=%s name=%s", j->kind, j->arg);
    json_error_t jerr;
    json_t *stored = json_loads(res.doc.text, 0, &jerr);
    snprintf(j->etag, sizeof(j->etag), "\"%s\"", res.doc.etag);
    if (created)
        snprintf(j->location, sizeof(j->location), "%s%s", kind_path(j->kind), j->arg);
    admin_job_json(j, created ? 201 : 200,
                   stored ? json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "kind", j->kind, "name", j->arg, "change",
                                      res.change, "etag", res.doc.etag, "served", served, "document", stored)
                          : NULL);
out:
    store_doc_clear(&res.doc);
    json_decref(incoming);
    json_decref(doc);
}

void admin_docs_run_delete(struct store *st, struct admin_job *j)
{
    struct store_precond pre;
    struct store_doc_result res;
    struct store_doc_check check = {apply_check_set, NULL};

    memset(&res, 0, sizeof(res));
    if (!precond_parse(j, &pre))
        return;
    enum broker_err e = store_doc_delete(st, j->who, j->kind, j->arg, &pre, &check, &res);
    switch (e) {
    case BROKER_OK:
        j->change = res.change;
        j->status = 204;
        if (!await_served(j->kind, j->arg, NULL))
            log_msg(LOG_WARN, "admin_change_not_served", "kind=%s name=%s", j->kind, j->arg);
        break;
    case BROKER_ERR_NOT_FOUND:
        admin_job_fail(j, 404, "not_found", "no %s named %s", j->kind, j->arg);
        break;
    case BROKER_ERR_PRECONDITION_FAILED:
        admin_job_fail(j, 412, "precondition_failed", "%s", res.err);
        break;
    case BROKER_ERR_CONFLICT:
        admin_job_fail(j, 409, "conflict", "%s", res.err);
        break;
    default:
        admin_job_store_fail(j, st, e);
    }
    store_doc_clear(&res.doc);
}

/* Document routes serve /v1/identities[/...] and /v1/issuers[/...]. */
static const char *path_kind(const struct http_request *r, const char **prefix)
{
    h2o_iovec_t p = r->req->path_normalized;
    bool ids = p.len >= 14 && memcmp(p.base, "/v1/identities", 14) == 0;
    *prefix = ids ? "/v1/identities/" : "/v1/issuers/";
    return ids ? "identity" : "issuer";
}

int admin_docs_list(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_LIST, kind, NULL);
}

int admin_doc_get(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_GET, kind, prefix);
}

int admin_doc_put(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_PUT, kind, prefix);
}

int admin_doc_delete(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_DELETE, kind, prefix);
}

int admin_doc_method(struct http_request *r)
{
    http_add_header(r, "allow", "GET, PUT, DELETE");
    http_respond_error(r, 405, "invalid_request", "method not allowed");
    return 0;
}
