// SOURCES: broker/json.c broker/jwt.c broker/b64.c broker/err.c
/* Differential libFuzzer target. For any input:
 *  - json_parse_strict at depth limits 0, 1, 2 and BROKER_MAX_JSON_DEPTH agrees with jansson's
 *    json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) plus the same depth limit;
 *  - jwt_json_load_strict (now on json_parse_strict) agrees with the implementation it replaced:
 *    a lexical depth scan, then json_loadb(JSON_REJECT_DUPLICATES), at depth 1 (form.c) and 16.
 * Agree means both reject, or both accept and json_equal holds (so integer vs real, string bytes
 * and object keys must match too).
 *
 * One deliberate difference, excluded below and nowhere else: jansson skips a raw NUL byte that
 * directly follows a number or true/false/null (its stream_unget of a 0 byte makes the next read
 * fetch a fresh byte), so it accepts "[1\0]" as [1]. RFC 8259 allows no NUL outside strings and
 * we reject every raw NUL. For inputs with a NUL we therefore check that ours rejects, and that
 * whenever jansson accepted, ours accepts the same input with its NUL bytes removed and builds
 * an equal value (if jansson accepted, each NUL was one it skipped). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bounds.h"
#include "json.h"
#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The depth check jwt_json_load_strict ran before jansson, copied from the replaced code. */
static bool old_depth_ok(const uint8_t *p, size_t len, size_t max_depth)
{
    size_t depth = 0;
    bool in_str = false;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return false;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return true;
}

/* Arrays and objects on the deepest path of a parsed value ("[]" is 1, a scalar 0). */
static size_t tree_depth(json_t *j)
{
    size_t d = 0, c, i;
    const char *k;
    json_t *v;

    if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            if ((c = tree_depth(v)) > d)
                d = c;
        return d + 1;
    }
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
            if ((c = tree_depth(v)) > d)
                d = c;
        return d + 1;
    }
    return 0;
}

static json_t *parse(bool via_jwt, const uint8_t *p, size_t len, size_t max_depth)
{
    return via_jwt ? jwt_json_load_strict(p, len, max_depth) : json_parse_strict(p, len, max_depth);
}

static void fail(const char *what, bool via_jwt, size_t max_depth, json_t *want, json_t *got)
{
    char *w = want ? json_dumps(want, JSON_ENCODE_ANY) : NULL, *g = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL;
    fprintf(stderr, "fuzz_json: %s (%s, max_depth %zu)\n  jansson: %s\n  ours:    %s\n", what,
            via_jwt ? "jwt_json_load_strict" : "json_parse_strict", max_depth, w ? w : "(rejected)",
            g ? g : "(rejected)");
    abort();
}

/* want: what the jansson path returned for this depth limit (borrowed, NULL = rejected). */
static void check(const uint8_t *data, size_t size, bool via_jwt, size_t max_depth, json_t *want)
{
    json_t *got = parse(via_jwt, data, size, max_depth);

    if (memchr(data, 0, size) != NULL) {
        /* The one deliberate difference (see the top of this file). */
        uint8_t *stripped;
        size_t n = 0;
        if (got != NULL)
            fail("accepted a raw NUL byte", via_jwt, max_depth, want, got);
        if (want == NULL)
            return;
        if ((stripped = malloc(size)) == NULL)
            abort();
        for (size_t i = 0; i < size; i++)
            if (data[i] != 0)
                stripped[n++] = data[i];
        got = parse(via_jwt, stripped, n, max_depth);
        free(stripped);
    }
    if (want == NULL && got != NULL)
        fail("accepted what jansson rejects", via_jwt, max_depth, want, got);
    if (want != NULL && got == NULL)
        fail("rejected what jansson accepts", via_jwt, max_depth, want, got);
    if (want != NULL && !json_equal(want, got))
        fail("values differ", via_jwt, max_depth, want, got);
    json_decref(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t depths[] = {0, 1, 2, BROKER_MAX_JSON_DEPTH};
    json_t *any = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    json_t *old = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    size_t depth = any ? tree_depth(any) : 0;

    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++)
        check(data, size, false, depths[i], depth <= depths[i] ? any : NULL);
    check(data, size, true, 1, old_depth_ok(data, size, 1) ? old : NULL);
    check(data, size, true, BROKER_MAX_JSON_DEPTH, old_depth_ok(data, size, BROKER_MAX_JSON_DEPTH) ? old : NULL);
    json_decref(any);
    json_decref(old);
    return 0;
}
