#include "cli_audit.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "explain.h"
#include "store.h"

#define AUDIT_USAGE "usage: broker audit show REQUEST_ID [--json]   (BROKER_DATABASE_URL)\n"

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : dflt;
}

static int show(const char *request_id, bool as_json)
{
    const char *dburl = getenv("BROKER_DATABASE_URL");
    struct store *st = NULL;
    json_t *rec = NULL;
    int rc = 2;
    if (dburl == NULL) {
        fprintf(stderr, "audit show: BROKER_DATABASE_URL is not set\n");
        return 2;
    }
    if (store_open(dburl, &st) != BROKER_OK) {
        fprintf(stderr, "audit show: database: %s\n", st ? store_last_error(st) : "out of memory");
        goto out;
    }
    enum broker_err e = store_audit_get(st, request_id, &rec);
    if (e == BROKER_ERR_NOT_FOUND) {
        fprintf(stderr, "audit show: no decision has request_id %s\n", request_id);
        rc = 1;
        goto out;
    }
    if (e != BROKER_OK) {
        fprintf(stderr, "audit show: database: %s\n", store_last_error(st));
        goto out;
    }
    if (as_json) {
        char *s = json_dumps(rec, JSON_INDENT(2));
        if (s != NULL)
            puts(s);
        free(s);
        rc = s != NULL ? 0 : 2;
        goto out;
    }
    printf("request %s at %s from %s\n", request_id, str_or(rec, "at", "?"), str_or(rec, "client_addr", "?"));
    printf("result: %s (%s)  identity: %s  policy: %s\n", str_or(rec, "result", "?"), str_or(rec, "reason", "?"),
           str_or(rec, "identity", "-"), str_or(rec, "policy", "-"));
    if (json_string_value(json_object_get(rec, "token_jti")) != NULL)
        printf("issued: jti %s  scope \"%s\"  audience %s\n", str_or(rec, "token_jti", ""), str_or(rec, "scope", ""),
               str_or(rec, "audience", ""));
    const json_t *x = json_object_get(rec, "explanation");
    if (json_object_get(x, "checks") != NULL) { /* a denial's full explanation */
        char *text = explain_render_text(x);
        if (text != NULL)
            fputs(text, stdout);
        free(text);
    } else if (x != NULL && !json_is_null(x)) {
        char *s = json_dumps(x, JSON_INDENT(2));
        if (s != NULL)
            printf("explanation: %s\n", s);
        free(s);
    }
    rc = 0;
out:
    json_decref(rec);
    store_close(st);
    return rc;
}

int cli_audit(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[0], "show") == 0) {
        bool as_json = argc >= 3 && strcmp(argv[2], "--json") == 0;
        if (argc > 3 || (argc == 3 && !as_json)) {
            fputs(AUDIT_USAGE, stderr);
            return 2;
        }
        return show(argv[1], as_json);
    }
    fputs(AUDIT_USAGE, stderr);
    return 2;
}
