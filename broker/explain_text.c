/* Text rendering of an explanation (explain.h): a decision line, the token, the checks on one
 * wrapped line, and per trust policy a table of its conditions. Everything the token controls is
 * escaped before it reaches a terminal. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "explain.h"

/* A string member, "" when absent or not a string. */
static const char *jget(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

#define TEXT_MAX (4u << 20) /* an explanation of EXPLAIN_MAX_POLICIES policies stays far below */
#define CELL_MAX_COLS 96    /* a longer value is cut in the middle ("…") */
#define LINE_COLS 100       /* the checks line wraps here */

struct sb {
    char *p;
    size_t len, cap;
    bool fail;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
    if (b->fail)
        return;
    if (n > TEXT_MAX - b->len) {
        b->fail = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->fail = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_fmt(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(struct sb *b, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        b->fail = true; /* only short fixed-format pieces go through here */
    else
        sb_add(b, buf, (size_t)n);
}

/* Token-controlled text reaches a terminal: control characters and bidirectional overrides
 * (U+202A..U+202E, U+2066..U+2069) are written as escapes. */
static void sb_safe(struct sb *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = 0;
    char esc[16];
    while (u[i]) {
        size_t skip = 0;
        if (u[i] < 0x20 || u[i] == 0x7F) {
            snprintf(esc, sizeof(esc), "\\x%02x", u[i]);
            skip = 1;
        } else if (u[i] == 0xE2 && u[i + 1] == 0x80 && u[i + 2] >= 0xAA && u[i + 2] <= 0xAE) {
            snprintf(esc, sizeof(esc), "\\u%04x", 0x2000 + (u[i + 2] - 0x80));
            skip = 3;
        } else if (u[i] == 0xE2 && u[i + 1] == 0x81 && u[i + 2] >= 0xA6 && u[i + 2] <= 0xA9) {
            snprintf(esc, sizeof(esc), "\\u%04x", 0x2040 + (u[i + 2] - 0x80));
            skip = 3;
        }
        if (skip == 0) {
            i++;
            continue;
        }
        sb_add(b, s + start, i - start);
        sb_str(b, esc);
        i += skip;
        start = i;
    }
    sb_add(b, s + start, i - start);
}

/* Display columns: one per code point (no wide characters in what we print). */
static size_t text_cols(const char *s)
{
    size_t n = 0;
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        n += (*u & 0xC0) != 0x80;
    return n;
}

/* A value as one table cell: JSON text ("(missing)" for an absent claim), made terminal-safe, cut. */
static char *cell_text(const json_t *v)
{
    struct sb b = {0};
    if (v == NULL || json_is_null(v)) {
        sb_str(&b, "(missing)");
    } else {
        char *j = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (j == NULL)
            return NULL;
        sb_safe(&b, j);
        free(j);
    }
    size_t cols = b.fail ? 0 : text_cols(b.p);
    if (cols > CELL_MAX_COLS) {
        /* cut in the middle: values usually differ at their ends (a branch, an id) */
        size_t keep = (CELL_MAX_COLS - 1) / 2, head = 0, tail = b.len, c = 0;
        while (c < keep) /* bytes of the first keep code points */
            if (((unsigned char)b.p[++head] & 0xC0) != 0x80)
                c++;
        for (c = 0; c < keep; c++) /* start of the last keep code points */
            while (((unsigned char)b.p[--tail] & 0xC0) == 0x80)
                ;
        struct sb cut = {0};
        sb_add(&cut, b.p, head);
        sb_str(&cut, "\xe2\x80\xa6");
        sb_add(&cut, b.p + tail, b.len - tail);
        free(b.p);
        b = cut;
    }
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static void sb_pad(struct sb *b, size_t n)
{
    static const char spaces[] = "                                                                ";
    while (n > 0) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        sb_add(b, spaces, k);
        n -= k;
    }
}

#define NCOLS 5

static void render_policy(struct sb *b, const json_t *p, const char *denied)
{
    const json_t *conds = json_object_get(p, "conditions");
    size_t n = json_array_size(conds) + 1, w[NCOLS] = {0};
    char **cells = calloc(n * NCOLS, sizeof(*cells));
    bool match = strcmp(jget(p, "result"), "match") == 0;

    sb_str(b, "identity ");
    sb_safe(b, jget(p, "identity"));
    sb_str(b, " / policy ");
    sb_safe(b, jget(p, "policy"));
    if (match && denied != NULL) {
        sb_fmt(b, ": MATCH (but denied: %s)\n", denied);
    } else if (match) {
        sb_str(b, ": MATCH\n");
    } else {
        sb_str(b, ": NO MATCH (first failed: ");
        sb_safe(b, jget(p, "first_failed"));
        sb_str(b, ")\n");
    }
    if (cells == NULL) {
        b->fail = true;
        return;
    }
    static const char *const head[NCOLS] = {"condition", "op", "expected", "actual", "result"};
    for (size_t c = 0; c < NCOLS; c++)
        cells[c] = strdup(head[c]);
    for (size_t r = 1; r < n; r++) {
        const json_t *cd = json_array_get(conds, r - 1);
        struct sb name = {0};
        sb_safe(&name, jget(cd, "condition"));
        cells[r * NCOLS + 0] = name.fail ? NULL : name.p;
        if (name.fail)
            free(name.p);
        cells[r * NCOLS + 1] = strdup(jget(cd, "op"));
        cells[r * NCOLS + 2] = cell_text(json_object_get(cd, "expected"));
        cells[r * NCOLS + 3] = cell_text(json_object_get(cd, "actual"));
        cells[r * NCOLS + 4] = strdup(json_is_true(json_object_get(cd, "result")) ? "ok" : "FAIL");
    }
    for (size_t i = 0; i < n * NCOLS; i++) {
        if (cells[i] == NULL) {
            b->fail = true;
            goto done;
        }
        size_t cw = text_cols(cells[i]);
        if (cw > w[i % NCOLS])
            w[i % NCOLS] = cw;
    }
    for (size_t r = 0; r < n; r++) {
        sb_str(b, "  ");
        for (size_t c = 0; c < NCOLS; c++) {
            sb_str(b, cells[r * NCOLS + c]);
            if (c + 1 < NCOLS)
                sb_pad(b, w[c] - text_cols(cells[r * NCOLS + c]) + 2);
        }
        sb_str(b, "\n");
    }
done:
    for (size_t i = 0; i < n * NCOLS; i++)
        free(cells[i]);
    free(cells);
}

static void render_checks(struct sb *b, const json_t *result)
{
    const json_t *checks = json_object_get(result, "checks"), *c;
    size_t i, col = 8;
    sb_str(b, "checks: ");
    json_array_foreach (checks, i, c) {
        struct sb item = {0};
        const char *name = jget(c, "check");
        bool ok = json_is_true(json_object_get(c, "result"));
        sb_str(&item, name);
        sb_str(&item, ok ? " ok" : " FAIL");
        if (ok && strcmp(name, "issuer") == 0 && json_is_string(json_object_get(result, "issuer"))) {
            sb_str(&item, " (");
            sb_safe(&item, jget(result, "issuer"));
            sb_str(&item, ")");
        } else if ((!ok || strcmp(name, "exp") == 0) && json_is_string(json_object_get(c, "detail"))) {
            sb_str(&item, " (");
            sb_safe(&item, jget(c, "detail"));
            sb_str(&item, ")");
        }
        if (item.fail) {
            b->fail = true;
            free(item.p);
            return;
        }
        size_t w = text_cols(item.p);
        if (i > 0 && col + 3 + w > LINE_COLS) {
            sb_str(b, "\n        ");
            col = 8;
        } else if (i > 0) {
            sb_str(b, " \xc2\xb7 ");
            col += 3;
        }
        sb_str(b, item.p);
        col += w;
        free(item.p);
    }
    sb_str(b, "\n");
}

/* "  label value" (one space instead after the line's label): strings as they are (escaped),
 * anything else, and strings that hold spaces (quoted=true), as JSON. */
static void render_value(struct sb *b, bool *first, const char *label, const json_t *v, bool quoted)
{
    if (v == NULL)
        return;
    sb_str(b, *first ? " " : "  ");
    *first = false;
    sb_str(b, label);
    sb_str(b, " ");
    if (json_is_string(v) && !(quoted && strchr(json_string_value(v), ' ') != NULL)) {
        sb_safe(b, json_string_value(v));
        return;
    }
    char *j = cell_text(v);
    if (j == NULL)
        b->fail = true;
    else
        sb_str(b, j);
    free(j);
}

char *explain_render_text(const json_t *r)
{
    struct sb b = {0};
    char at[32], ttl[48];
    const json_t *v, *tok = json_object_get(r, "token");
    bool issued = strcmp(jget(r, "decision"), "issued") == 0;
    size_t i;

    explain_format_time(json_integer_value(json_object_get(r, "at")), at, sizeof(at));
    if (issued) {
        bool first = false;
        sb_str(&b, "decision: ISSUED");
        render_value(&b, &first, "identity", json_object_get(r, "identity"), false);
        render_value(&b, &first, "policy", json_object_get(r, "policy"), false);
        render_value(&b, &first, "scope", json_object_get(r, "scope"), true);
        render_value(&b, &first, "audience", json_object_get(r, "audience"), false);
        explain_format_duration(json_integer_value(json_object_get(r, "ttl")), ttl, sizeof(ttl));
        sb_fmt(&b, "  ttl %s  at %s\n", ttl, at);
    } else {
        sb_fmt(&b, "decision: DENIED (%s)  at %s\n", jget(r, "reason"), at);
        if (json_is_string(json_object_get(r, "hint"))) {
            sb_str(&b, "hint: ");
            sb_str(&b, jget(r, "hint"));
            sb_str(&b, "\n");
        }
    }
    if (tok != NULL) {
        bool first = true;
        sb_str(&b, strcmp(jget(r, "mode"), "claims") == 0 ? "claims:" : "token:");
        render_value(&b, &first, "iss", json_object_get(tok, "iss"), true);
        render_value(&b, &first, "sub", json_object_get(tok, "sub"), true);
        render_value(&b, &first, "aud", json_object_get(tok, "aud"), true);
        const char *kid = json_string_value(json_object_get(tok, "kid"));
        if (kid != NULL && text_cols(kid) > 12) {
            char k[40];
            size_t n = 0, cols = 0;
            for (; kid[n] && cols < 8 && n + 4 < sizeof(k) - 4; n++)
                if (((unsigned char)kid[n + 1] & 0xC0) != 0x80)
                    cols++;
            memcpy(k, kid, n);
            memcpy(k + n, "\xe2\x80\xa6", 4);
            sb_str(&b, first ? " kid " : "  kid ");
            sb_safe(&b, k);
        } else if (kid != NULL) {
            sb_str(&b, first ? " kid " : "  kid ");
            sb_safe(&b, kid);
        }
        first = first && kid == NULL;
        render_value(&b, &first, "alg", json_object_get(tok, "alg"), false);
        sb_str(&b, "\n");
    }
    render_checks(&b, r);
    const char *denied = issued ? NULL : jget(r, "reason");
    json_array_foreach (json_object_get(r, "policies"), i, v)
        render_policy(&b, v, denied);
    if (json_is_integer(json_object_get(r, "policies_omitted")))
        sb_fmt(&b, "(%lld more trust policies not shown; name the identity to see them)\n",
               (long long)json_integer_value(json_object_get(r, "policies_omitted")));
    if (json_is_string(json_object_get(r, "note"))) {
        sb_str(&b, "note: ");
        sb_safe(&b, jget(r, "note"));
        sb_str(&b, "\n");
    }
    if (b.fail || b.p == NULL) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
