/* Admin routes for audit records: GET /v1/audit (filters, cursor pagination) and
 * GET /v1/audit/{request_id}. The worker-side halves run after admin_authorize (admin.c). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "admin.h"
#include "admin_int.h"
#include "b64.h"
#include "bounds.h"
#include "form.h"
#include "names.h"
#include "store.h"

#define ADMIN_DEFAULT_LIMIT 100

static bool request_id_ok(const char *s, size_t n)
{
    return b64url_alphabet_ok(s, n, 64);
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* RFC 3339 date-time: 2024-05-01T12:00:00Z, optional fraction, Z or ±hh:mm. */
static bool rfc3339_ok(const char *s, size_t n)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, oh, om;
    if (n < 20 || n > 40 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) || s[13] != ':' ||
        !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
        mi > 59 || sec > 60)
        return false;
    size_t i = 19;
    if (s[i] == '.') {
        size_t f = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f || i - f > 9)
            return false;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z'))
        return i + 1 == n;
    return i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
           digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59;
}

/* Decimal in [lo, hi], digits only. */
static bool int_param(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v = 0;
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* ---- audit ---- */

void admin_audit_run_list(struct store *st, struct admin_job *j)
{
    struct store_audit_filter f = {.limit = ADMIN_DEFAULT_LIMIT};
    struct form q;
    char *scratch = NULL;
    json_t *items = NULL;
    int64_t next = 0, v;

    q.n = 0;
    if (j->query_len > ADMIN_MAX_QUERY) {
        admin_job_fail(j, 400, "invalid_request", "query string too long");
        goto out;
    }
    if (j->query != NULL) {
        if ((scratch = malloc(j->query_len + 1)) == NULL) {
            admin_job_fail(j, 500, "server_error", "out of memory");
            goto out;
        }
        if (form_parse((const uint8_t *)j->query, j->query_len, &q, scratch, j->query_len + 1) != BROKER_OK) {
            admin_job_fail(j, 400, "invalid_request", "malformed or repeated query parameter");
            goto out;
        }
    }
    for (size_t i = 0; i < q.n; i++) {
        const char *n = q.f[i].name, *val = q.f[i].value;
        size_t len = q.f[i].len;
        if (strcmp(n, "identity") == 0 && broker_name_ok(val, len)) {
            f.identity = val;
        } else if (strcmp(n, "result") == 0 && (strcmp(val, "issued") == 0 || strcmp(val, "denied") == 0)) {
            f.result = val;
        } else if (strcmp(n, "since") == 0 && rfc3339_ok(val, len)) {
            f.since = val;
        } else if (strcmp(n, "request_id") == 0 && request_id_ok(val, len)) {
            f.request_id = val;
        } else if (strcmp(n, "limit") == 0 && int_param(val, len, 1, STORE_AUDIT_LIST_MAX, &v)) {
            f.limit = (int)v;
        } else if (strcmp(n, "cursor") == 0 && int_param(val, len, 1, INT64_MAX, &v)) {
            f.before_id = v;
        } else {
            bool known = strcmp(n, "identity") == 0 || strcmp(n, "result") == 0 || strcmp(n, "since") == 0 ||
                         strcmp(n, "request_id") == 0 || strcmp(n, "limit") == 0 || strcmp(n, "cursor") == 0;
            if (known)
                admin_job_fail(j, 400, "invalid_request",
                               "bad %s (identity: a name; result: issued or denied; since: RFC 3339 time; request_id: "
                               "[A-Za-z0-9_-]{1,64}; limit: 1..%d; cursor: a next_cursor value)",
                               n, STORE_AUDIT_LIST_MAX);
            else
                admin_job_fail(j, 400, "invalid_request",
                               "unknown query parameter (use identity, result, since, request_id, limit, cursor)");
            goto out;
        }
    }
    enum broker_err e = store_audit_list(st, &f, &items, &next);
    if (e != BROKER_OK) {
        admin_job_store_fail(j, st, e);
        goto out;
    }
    char cur[24];
    snprintf(cur, sizeof(cur), "%lld", (long long)next);
    admin_job_json(j, 200,
                   json_pack("{s:o, s:o}", "items", items, "next_cursor", next > 0 ? json_string(cur) : json_null()));
out:
    free(scratch);
}

void admin_audit_run_get(struct store *st, struct admin_job *j)
{
    json_t *rec = NULL;
    if (j->arg == NULL || !request_id_ok(j->arg, strlen(j->arg))) {
        admin_job_fail(j, 400, "invalid_request", "request_id must be 1-64 characters of [A-Za-z0-9_-]");
        return;
    }
    enum broker_err e = store_audit_get(st, j->arg, &rec);
    if (e == BROKER_ERR_NOT_FOUND)
        admin_job_fail(j, 404, "not_found", "no audit record has that request_id");
    else if (e != BROKER_OK)
        admin_job_store_fail(j, st, e);
    else
        admin_job_json(j, 200, rec);
}

int admin_audit_list(struct http_request *r)
{
    return admin_submit(r, OP_AUDIT_LIST, NULL, NULL);
}

int admin_audit_get(struct http_request *r)
{
    return admin_submit(r, OP_AUDIT_GET, NULL, "/v1/audit/");
}
