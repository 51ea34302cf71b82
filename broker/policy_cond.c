/* Trust-policy conditions: strict parsing (with guards POSIX regcomp lacks), evaluation on the hot
 * path, and their description for explanations. Scalars compare by canonical text. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "glob.h"
#include "policy_cond.h"

#define COND_MAX_NOT_DEPTH 4     /* {"not": {"not": ...}} nesting */


void policy_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* No control characters, so names stay safe in logs and error messages. */
static bool cond_text_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static char *cond_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ---- scalars and claims ---- */

bool policy_scalar_text(const json_t *v, char buf[POLICY_SCALAR_BUF], const char **text, size_t *len)
{
    int n;
    switch (json_typeof(v)) {
    case JSON_STRING:
        *text = json_string_value(v);
        *len = json_string_length(v);
        return true;
    case JSON_INTEGER:
        n = snprintf(buf, POLICY_SCALAR_BUF, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL: {
        /* shortest text that reads back as the same double, so 1.5 is "1.5", not "1.5000000000000000" */
        double d = json_real_value(v);
        n = 0;
        for (int prec = 1; prec <= 17; prec++) {
            n = snprintf(buf, POLICY_SCALAR_BUF, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        break;
    }
    case JSON_TRUE:
        n = snprintf(buf, POLICY_SCALAR_BUF, "true");
        break;
    case JSON_FALSE:
        n = snprintf(buf, POLICY_SCALAR_BUF, "false");
        break;
    default:
        return false;
    }
    if (n <= 0 || n >= POLICY_SCALAR_BUF)
        return false;
    *text = buf;
    *len = (size_t)n;
    return true;
}

const json_t *policy_claim_get(const json_t *claims, const char *name)
{
    char tok[BROKER_MAX_CLAIM_NAME_LEN];
    const json_t *cur = claims;

    if (!json_is_object(claims) || !name)
        return NULL;
    if (name[0] != '/')
        return json_object_get(claims, name);
    /* RFC 6901: each "/token" descends one level; ~1 is '/', ~0 is '~' */
    while (*name == '/') {
        size_t n = 0;
        name++;
        while (*name && *name != '/') {
            char c = *name++;
            if (c == '~') {
                if (*name == '0')
                    c = '~';
                else if (*name == '1')
                    c = '/';
                else
                    return NULL;
                name++;
            }
            if (n >= sizeof(tok))
                return NULL;
            tok[n++] = c;
        }
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, n);
        } else if (json_is_array(cur)) {
            size_t idx = 0;
            if (n == 0 || n > 9 || (n > 1 && tok[0] == '0'))
                return NULL;
            for (size_t i = 0; i < n; i++) {
                if (tok[i] < '0' || tok[i] > '9')
                    return NULL;
                idx = idx * 10 + (size_t)(tok[i] - '0');
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
    }
    return cur;
}

/* ---- conditions ---- */

static bool cond_eval_leaf(const struct cond *c, const json_t *v)
{
    char buf[POLICY_SCALAR_BUF];
    const char *t;
    size_t len;

    if (!policy_scalar_text(v, buf, &t, &len))
        return false; /* null, objects and nested arrays never match */
    switch (c->op) {
    case COND_EQUALS:
        return len == c->value_len && memcmp(t, c->value, len) == 0;
    case COND_IN:
        for (size_t i = 0; i < c->nlist; i++)
            if (len == c->list_len[i] && memcmp(t, c->list[i], len) == 0)
                return true;
        return false;
    case COND_GLOB:
        return glob_match(c->value, c->value_len, t, len);
    case COND_REGEX:
        /* regexec stops at NUL: a value with an embedded NUL could otherwise match on its prefix */
        if (memchr(t, 0, len))
            return false;
        return regexec(&c->re, t, 0, NULL, 0) == 0;
    default:
        return false;
    }
}

/* A missing (or null, or object) claim never matches, at any depth of "not". An array matches when
 * any element does; "not" negates that whole test, so {"not": {"in": ["x"]}} means "no element is x". */
bool policy_cond_eval(const struct cond *c, const json_t *v)
{
    if (!v || json_is_null(v) || json_is_object(v))
        return false;
    if (c->op == COND_NOT)
        return !policy_cond_eval(c->inner, v);
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach (v, i, e)
            if (cond_eval_leaf(c, e))
                return true;
        return false;
    }
    return cond_eval_leaf(c, v);
}

const char *policy_cond_op_name(enum cond_op op)
{
    switch (op) {
    case COND_EQUALS: return "equals";
    case COND_IN: return "in";
    case COND_GLOB: return "glob";
    case COND_REGEX: return "regex";
    case COND_NOT: return "not";
    }
    return "?";
}

json_t *policy_cond_expected(const struct cond *c)
{
    json_t *r = NULL;
    switch (c->op) {
    case COND_EQUALS:
    case COND_GLOB:
    case COND_REGEX:
        return json_stringn(c->value, c->value_len);
    case COND_IN:
        r = json_array();
        for (size_t i = 0; r && i < c->nlist; i++) {
            if (json_array_append_new(r, json_stringn(c->list[i], c->list_len[i])) != 0) {
                json_decref(r);
                r = NULL;
            }
        }
        return r;
    case COND_NOT:
        r = json_object();
        if (r && json_object_set_new(r, policy_cond_op_name(c->inner->op), policy_cond_expected(c->inner)) != 0) {
            json_decref(r);
            r = NULL;
        }
        return r;
    }
    return NULL;
}

void policy_cond_clear(struct cond *c)
{
    if (!c)
        return;
    free(c->value);
    for (size_t i = 0; i < c->nlist; i++)
        free(c->list[i]);
    free(c->list);
    free(c->list_len);
    if (c->op == COND_REGEX)
        regfree(&c->re);
    if (c->inner) {
        policy_cond_clear(c->inner);
        free(c->inner);
    }
    memset(c, 0, sizeof(*c));
}

static enum broker_err cond_scalar(const json_t *v, const char *path, char **out, size_t *out_len, char *err,
                                  size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    char buf[POLICY_SCALAR_BUF];
    const char *text;
    size_t len;
    if (!policy_scalar_text(v, buf, &text, &len))
        DOC_FAIL("%s: must be a string, number or boolean", path);
    if (memchr(text, 0, len))
        DOC_FAIL("%s: contains a NUL byte", path);
    if (len > BROKER_MAX_CLAIM_LEN)
        DOC_FAIL("%s: longer than %d bytes", path, BROKER_MAX_CLAIM_LEN);
    *out = cond_strndup(text, len);
    if (!*out)
        rc = BROKER_ERR_NOMEM;
    *out_len = len;
done:
    return rc;
}

/* Rejects what POSIX regcomp would accept but we must not: unbalanced ')' (which would escape the
 * "^(" ")$" anchoring), back-references (exponential matching in glibc), and repetition that expands
 * into a huge automaton ("((a{255}){255}){255}"). The cost estimate is the pattern size with each
 * bounded repetition expanded, an over-approximation of what glibc builds. */
static const char *cond_regex_guard(const char *p, size_t n)
{
    enum { MAX_GROUPS = 32 };
    uint64_t total[MAX_GROUPS + 1] = {0};
    uint64_t last = 0;   /* size of the atom a following {m,n} or + would repeat */
    unsigned d = 0;

    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '(') {
            if (++d > MAX_GROUPS)
                return "groups nested too deeply";
            total[d] = 0;
            last = 0;
        } else if (c == ')') {
            if (d == 0)
                return "unbalanced ')'";
            last = total[d--];
            total[d] += last;
        } else if (c == '|') {
            last = 0;
        } else if (c == '[') {
            size_t j = i + 1;
            if (j < n && p[j] == '^')
                j++;
            if (j < n && p[j] == ']')
                j++;
            while (j < n && p[j] != ']') {
                if (p[j] == '[' && j + 1 < n && (p[j + 1] == ':' || p[j + 1] == '.' || p[j + 1] == '=')) {
                    char close = p[j + 1];
                    j += 2;
                    while (j + 1 < n && !(p[j] == close && p[j + 1] == ']'))
                        j++;
                    j += 2;
                } else {
                    j++;
                }
            }
            if (j >= n)
                return "unterminated bracket expression";
            i = j;
            last = 1;
            total[d] += 1;
        } else if (c == '\\') {
            if (i + 1 >= n)
                return "trailing backslash";
            if (p[i + 1] >= '1' && p[i + 1] <= '9')
                return "back-references are not supported";
            i++;
            last = 1;
            total[d] += 1;
        } else if (c == '{' && last > 0) {
            uint64_t lo = 0, hi = 0;
            bool comma = false, have_hi = false;
            size_t j = i + 1, digits = 0;
            for (; j < n && p[j] >= '0' && p[j] <= '9' && digits < 4; j++, digits++)
                lo = lo * 10 + (uint64_t)(p[j] - '0');
            if (j < n && p[j] == ',') {
                comma = true;
                for (j++, digits = 0; j < n && p[j] >= '0' && p[j] <= '9' && digits < 4; j++, digits++) {
                    hi = hi * 10 + (uint64_t)(p[j] - '0');
                    have_hi = true;
                }
            }
            if (j >= n || p[j] != '}')
                return "malformed repetition {m,n}";
            uint64_t bound = have_hi ? hi : (comma ? lo + 1 : lo);
            if (lo > 255 || hi > 255)
                return "repetition count above 255";
            if (bound > 1)
                total[d] += last * (bound - 1);
            last *= bound ? bound : 1;
            i = j;
        } else if (c == '+') {
            total[d] += last; /* glibc expands a+ into aa* */
            last *= 2;
        } else if (c == '*' || c == '?' || c == '^' || c == '$') {
            /* no growth */
        } else {
            last = 1;
            total[d] += 1;
        }
        if (total[d] > BROKER_MAX_REGEX_COST || last > BROKER_MAX_REGEX_COST)
            return "too complex (repetitions expand beyond the limit)";
    }
    if (d != 0)
        return "unbalanced '('";
    return NULL;
}

static enum broker_err cond_regex(const char *src, size_t len, const char *path, struct cond *out, char *err,
                                 size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    char *anchored = NULL;
    const char *why = cond_regex_guard(src, len);
    if (why)
        DOC_FAIL("%s: regex %s", path, why);
    anchored = malloc(len + 5);
    if (!anchored) {
        rc = BROKER_ERR_NOMEM;
        goto done;
    }
    memcpy(anchored, "^(", 2);
    memcpy(anchored + 2, src, len);
    memcpy(anchored + 2 + len, ")$", 3);
    int r = regcomp(&out->re, anchored, REG_EXTENDED | REG_NOSUB);
    if (r != 0) {
        char msg[128];
        regerror(r, &out->re, msg, sizeof(msg));
        DOC_FAIL("%s: regex does not compile: %s", path, msg);
    }
    out->op = COND_REGEX; /* only now does policy_cond_clear owe a regfree */
done:
    free(anchored);
    return rc;
}

static enum broker_err cond_parse(const json_t *v, const char *path, unsigned depth, struct cond *out, char *err,
                                size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    char sub[192];

    memset(out, 0, sizeof(*out));
    if (!json_is_object(v) || json_object_size(v) != 1)
        DOC_FAIL("%s: a condition is an object with exactly one of equals, in, glob, regex, not", path);
    const char *op = json_object_iter_key(json_object_iter((json_t *)v));
    const json_t *arg = json_object_iter_value(json_object_iter((json_t *)v));

    if (strcmp(op, "equals") == 0) {
        snprintf(sub, sizeof(sub), "%s.equals", path);
        DOC_TRY(cond_scalar(arg, sub, &out->value, &out->value_len, err, errlen));
        out->op = COND_EQUALS;
    } else if (strcmp(op, "in") == 0) {
        size_t n = json_array_size(arg);
        if (!json_is_array(arg) || n == 0)
            DOC_FAIL("%s.in: must be a non-empty array", path);
        if (n > BROKER_MAX_LIST)
            DOC_FAIL("%s.in: more than %d values", path, BROKER_MAX_LIST);
        out->op = COND_IN;
        out->list = calloc(n, sizeof(*out->list));
        out->list_len = calloc(n, sizeof(*out->list_len));
        if (!out->list || !out->list_len) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            snprintf(sub, sizeof(sub), "%s.in[%zu]", path, i);
            DOC_TRY(cond_scalar(json_array_get(arg, i), sub, &out->list[i], &out->list_len[i], err, errlen));
            out->nlist = i + 1;
        }
    } else if (strcmp(op, "glob") == 0 || strcmp(op, "regex") == 0) {
        bool is_glob = op[0] == 'g';
        if (!json_is_string(arg))
            DOC_FAIL("%s.%s: pattern must be a string", path, op);
        const char *pat = json_string_value(arg);
        size_t len = json_string_length(arg);
        if (len == 0)
            DOC_FAIL("%s: %s pattern empty", path, op);
        if (memchr(pat, 0, len))
            DOC_FAIL("%s: %s pattern contains a NUL byte", path, op);
        if (len > BROKER_MAX_PATTERN_LEN)
            DOC_FAIL("%s: %s pattern longer than %d bytes", path, op, BROKER_MAX_PATTERN_LEN);
        out->value = cond_strndup(pat, len);
        if (!out->value) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
        out->value_len = len;
        if (is_glob)
            out->op = COND_GLOB;
        else
            DOC_TRY(cond_regex(pat, len, path, out, err, errlen));
    } else if (strcmp(op, "not") == 0) {
        if (depth >= COND_MAX_NOT_DEPTH)
            DOC_FAIL("%s: \"not\" nested more than %d deep", path, COND_MAX_NOT_DEPTH);
        out->op = COND_NOT;
        out->inner = calloc(1, sizeof(*out->inner));
        if (!out->inner) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
        snprintf(sub, sizeof(sub), "%s.not", path);
        DOC_TRY(cond_parse(arg, sub, depth + 1, out->inner, err, errlen));
    } else {
        char shown[40];
        snprintf(shown, sizeof(shown), "%s", op);
        DOC_FAIL("%s: unknown condition operator \"%s\" (use equals, in, glob, regex, not)", path, shown);
    }
done:
    if (rc != BROKER_OK)
        policy_cond_clear(out);
    return rc;
}

/* A claim name as written in a policy: a plain name, or a JSON Pointer (RFC 6901) when it starts
 * with '/'; pointers must use only the ~0 and ~1 escapes. */
bool policy_cond_claim_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > BROKER_MAX_CLAIM_NAME_LEN || memchr(s, 0, len) || !cond_text_ok(s, len))
        return false;
    if (s[0] != '/')
        return true;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '~' && (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1')))
            return false;
    return true;
}

enum broker_err policy_cond_parse(const json_t *v, const char *path, struct cond *out, char *err, size_t errlen)
{
    return cond_parse(v, path, 0, out, err, errlen);
}
