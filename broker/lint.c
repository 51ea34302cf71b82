/* Lint of trust-policy documents (rules in lint.h). Reads the raw JSON so that it can speak about
 * documents the validator refuses; the validator's verdict itself is one more finding. Glob and
 * regex patterns are reduced to a sequence of atoms (literal character, "open" = can match '/' or
 * ':', "closed" = variable but cannot), on which "where does the name end" and "what may vary
 * inside it" are answered the same way for both pattern kinds. Pure: no I/O, no clock. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lint_int.h"
#include "policy_cond.h"

/* ---- report ---- */

const char *lint_level_name(enum lint_level level)
{
    return level == LINT_ERROR ? "error" : "warning";
}

void lint_report_free(struct lint_report *r)
{
    if (!r)
        return;
    free(r->items);
    memset(r, 0, sizeof(*r));
}

size_t lint_report_count(const struct lint_report *r, enum lint_level level)
{
    size_t n = 0;
    for (size_t i = 0; r && i < r->n; i++)
        n += r->items[i].level == level;
    return n;
}

json_t *lint_finding_json(const struct lint_finding *f)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "level", lint_level_name(f->level), "rule", f->rule, "message",
                          f->message, "fix", f->fix);
    const char *keys[] = {"identity", "policy", "issuer"};
    const char *vals[] = {f->identity, f->policy, f->issuer};
    for (size_t i = 0; o && i < 3; i++) {
        if (vals[i][0] && json_object_set_new(o, keys[i], json_string(vals[i])) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

/* Copy text into a finding field, printable only (documents that fail validation may hold anything). */
static void lint_copy(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++)
        dst[i] = ((unsigned char)src[i] < 0x20 || src[i] == 0x7f) ? '?' : src[i];
    dst[i] = 0;
}

struct lint_finding *lint_new(struct lint_ctx *c, enum lint_level level, const char *rule)
{
    struct lint_report *r = c->out;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct lint_finding *p = realloc(r->items, cap * sizeof(*p));
        if (!p) {
            c->rc = BROKER_ERR_NOMEM;
            return NULL;
        }
        r->items = p;
        r->cap = cap;
    }
    struct lint_finding *f = &r->items[r->n++];
    memset(f, 0, sizeof(*f));
    f->level = level;
    f->doc_kind = c->kind;
    f->doc_index = c->index;
    lint_copy(f->rule, sizeof(f->rule), rule);
    lint_copy(f->identity, sizeof(f->identity), c->identity);
    lint_copy(f->policy, sizeof(f->policy), c->policy);
    lint_copy(f->issuer, sizeof(f->issuer), c->issuer);
    return f;
}

void lint_text(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    lint_copy(dst, cap, dst);
}

/* ---- small JSON helpers ---- */

static bool lint_has_string(const json_t *arr, const char *s)
{
    size_t i;
    const json_t *e;
    json_array_foreach (arr, i, e)
        if (json_is_string(e) && strcmp(json_string_value(e), s) == 0)
            return true;
    return false;
}

static const json_t *lint_find_issuer(const json_t *issuers, const char *name)
{
    size_t i;
    const json_t *d;
    json_array_foreach (issuers, i, d) {
        const char *n = json_string_value(json_object_get(d, "issuer"));
        if (name && n && strcmp(n, name) == 0)
            return d;
    }
    return NULL;
}

/* No subject and no claim condition (a malformed "claims" is the validator's finding, not this). */
static bool lint_unbound(const json_t *tp)
{
    const json_t *claims = json_object_get(tp, "claims");
    return !json_object_get(tp, "subject") && (!claims || (json_is_object(claims) && json_object_size(claims) == 0));
}

bool lint_in(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* ---- patterns as atoms ---- */

enum rx_kind { RX_LIT, RX_OPEN, RX_CLOSED };

struct rx_atom {
    enum rx_kind kind;
    char lit;
    bool quantified, unbounded;
    size_t at, len;       /* source text of the atom, quantifier included */
};

struct rx_seq {
    struct rx_atom *a;
    size_t n, cap;
    bool alt;             /* a top-level '|' was seen (group contents only) */
};

static bool rx_push(struct rx_seq *s, struct rx_atom atom)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        struct rx_atom *p = realloc(s->a, cap * sizeof(*p));
        if (!p)
            return false;
        s->a = p;
        s->cap = cap;
    }
    s->a[s->n++] = atom;
    return true;
}

/* A glob: '*' is open and unbounded, '?' open, everything else literal. */
static bool rx_from_glob(const char *p, size_t n, struct rx_seq *s)
{
    for (size_t i = 0; i < n; i++) {
        struct rx_atom a = {p[i] == '*' || p[i] == '?' ? RX_OPEN : RX_LIT, p[i], p[i] == '*', p[i] == '*', i, 1};
        if (!rx_push(s, a))
            return false;
    }
    return true;
}

/* Bracket expression at p[i] == '['; returns the index of its ']' and whether it admits '/' or ':'. */
static size_t rx_bracket(const char *p, size_t n, size_t i, bool *open)
{
    size_t j = i + 1;
    bool neg = false, slash = false, colon = false, first = true;
    if (j < n && p[j] == '^') {
        neg = true;
        j++;
    }
    while (j < n && (first || p[j] != ']')) {
        first = false;
        if (p[j] == '[' && j + 1 < n && (p[j + 1] == ':' || p[j + 1] == '.' || p[j + 1] == '=')) {
            char close = p[j + 1];
            size_t k = j + 2;
            while (k + 1 < n && !(p[k] == close && p[k + 1] == ']'))
                k++;
            if (close == ':') {
                static const char *const wide[] = {"punct", "graph", "print", NULL};
                char name[8] = "";
                if (k - (j + 2) < sizeof(name)) {
                    memcpy(name, p + j + 2, k - (j + 2));
                    name[k - (j + 2)] = 0;
                }
                if (lint_in(name, wide))
                    slash = colon = true;
            } else {
                for (size_t m = j + 2; m < k; m++) {
                    slash |= p[m] == '/';
                    colon |= p[m] == ':';
                }
            }
            j = k + 2;
            continue;
        }
        unsigned char lo = (unsigned char)p[j++], hi = lo;
        if (j + 1 < n && p[j] == '-' && p[j + 1] != ']') {
            hi = (unsigned char)p[j + 1];
            j += 2;
        }
        slash |= lo <= '/' && '/' <= hi;
        colon |= lo <= ':' && ':' <= hi;
    }
    *open = neg ? (!slash || !colon) : (slash || colon);
    return j < n ? j : n - 1;
}

/* Quantifiers after an atom ending at j; returns the index after them. */
static size_t rx_quant(const char *p, size_t n, size_t j, bool *quantified, bool *unbounded)
{
    for (;;) {
        if (j < n && (p[j] == '*' || p[j] == '+')) {
            *quantified = *unbounded = true;
            j++;
        } else if (j < n && p[j] == '?') {
            *quantified = true;
            j++;
        } else if (j < n && p[j] == '{') {
            size_t k = j + 1;
            bool comma = false, hi = false;
            while (k < n && isdigit((unsigned char)p[k]))
                k++;
            if (k < n && p[k] == ',') {
                comma = true;
                for (k++; k < n && isdigit((unsigned char)p[k]); k++)
                    hi = true;
            }
            if (k >= n || p[k] != '}')
                return j;
            *quantified = true;
            *unbounded |= comma && !hi;
            j = k + 1;
        } else {
            return j;
        }
    }
}

/* Index of the ')' closing the group opened at p[i], or n (the validator guarantees balance). */
static size_t rx_group_end(const char *p, size_t n, size_t i)
{
    unsigned d = 0;
    for (size_t j = i; j < n; j++) {
        bool open;
        if (p[j] == '\\')
            j++;
        else if (p[j] == '[')
            j = rx_bracket(p, n, j, &open);
        else if (p[j] == '(')
            d++;
        else if (p[j] == ')' && --d == 0)
            return j;
    }
    return n;
}

/* POSIX ERE (with GNU escapes) into atoms; anchors produce none. A group is one atom, unless it is
 * an unquantified run of literals, which is inlined. */
static bool rx_from_regex(const char *p, size_t n, unsigned depth, struct rx_seq *s)
{
    for (size_t i = 0; i < n;) {
        struct rx_atom a = {RX_LIT, p[i], false, false, i, 1};
        size_t j = i + 1;
        struct rx_seq inner = {0};
        bool group = false;
        switch (p[i]) {
        case '^':
        case '$':
            i++;
            continue;
        case '|':
            s->alt = true;
            i++;
            continue;
        case '.':
            a.kind = RX_OPEN;
            break;
        case '[': {
            bool open;
            j = rx_bracket(p, n, i, &open) + 1;
            a.kind = open ? RX_OPEN : RX_CLOSED;
            break;
        }
        case '\\':
            if (i + 1 < n && p[i + 1] && strchr("bB<>`'", p[i + 1])) {
                i += 2;
                continue;
            }
            j = i + 2 <= n ? i + 2 : n;
            a.lit = i + 1 < n ? p[i + 1] : '\\';
            if (a.lit == 'W' || a.lit == 'S')
                a.kind = RX_OPEN;
            else if (a.lit == 'w' || a.lit == 's')
                a.kind = RX_CLOSED;
            break;
        case '(': {
            size_t close = rx_group_end(p, n, i);
            j = close < n ? close + 1 : n;
            if (depth > 40 || !rx_from_regex(p + i + 1, close - i - 1, depth + 1, &inner)) {
                free(inner.a);
                return false;
            }
            group = true;
            break;
        }
        default:
            break;
        }
        size_t q = rx_quant(p, n, j, &a.quantified, &a.unbounded);
        bool ok = true;
        if (group) {
            bool literal = !inner.alt;
            for (size_t k = 0; k < inner.n; k++) {
                literal &= inner.a[k].kind == RX_LIT && !inner.a[k].quantified;
                a.unbounded |= inner.a[k].unbounded;
                if (inner.a[k].kind == RX_OPEN)
                    a.kind = RX_OPEN;
                else if (a.kind != RX_OPEN && (inner.a[k].kind != RX_LIT || inner.a[k].quantified))
                    a.kind = RX_CLOSED;
            }
            if (literal && !a.quantified) {
                for (size_t k = 0; ok && k < inner.n; k++) {
                    inner.a[k].at += i + 1;
                    ok = rx_push(s, inner.a[k]);
                }
            } else {
                if (a.kind == RX_LIT)
                    a.kind = RX_CLOSED;
                a.len = q - i;
                ok = rx_push(s, a);
            }
            free(inner.a);
        } else {
            a.len = q - i;
            ok = rx_push(s, a);
        }
        if (!ok)
            return false;
        i = q;
    }
    return true;
}

/* Start of the next top-level alternative after p[i..), or n. */
static size_t rx_branch_end(const char *p, size_t n, size_t i)
{
    for (; i < n; i++) {
        bool open;
        if (p[i] == '\\')
            i++;
        else if (p[i] == '[')
            i = rx_bracket(p, n, i, &open);
        else if (p[i] == '(')
            i = rx_group_end(p, n, i);
        else if (p[i] == '|')
            return i;
    }
    return n;
}

static bool rx_is_lit(const struct rx_atom *a, char c)
{
    return a->kind == RX_LIT && !a->quantified && (c == 0 || a->lit == c);
}

/* The sequence starts with these literal characters. */
static bool rx_has_prefix(const struct rx_seq *s, const char *prefix)
{
    size_t len = strlen(prefix), m = 0;
    while (m < len && m < s->n && rx_is_lit(&s->a[m], prefix[m]))
        m++;
    return m == len;
}

/* Atom index where the name part ends (see lint.h). */
static size_t rx_name_end(const struct rx_seq *s, enum lint_role role)
{
    static const char *const prefixes[] = {"repo:", "project_path:", "system:serviceaccount:", NULL};
    size_t from = 0, seen = 0;
    if (role == ROLE_WHOLE || role == ROLE_ID || (role == ROLE_SUBJECT && rx_has_prefix(s, "arn:")))
        return s->n; /* an ARN subject (AWS) is a name from end to end */
    if (role == ROLE_SUBJECT) {
        for (size_t k = 0; prefixes[k]; k++)
            if (rx_has_prefix(s, prefixes[k]))
                from = strlen(prefixes[k]);
    }
    for (size_t k = from; k < s->n; k++) {
        if (role == ROLE_SUBJECT && rx_is_lit(&s->a[k], ':'))
            return k;
        if (role == ROLE_WORKFLOW && rx_is_lit(&s->a[k], '/') && ++seen == 2)
            return k;
    }
    return s->n;
}

/* ---- condition rules ---- */

/* "repo:acme/app*" also matches "repo:acme/app-evil": the first wildcard becomes "-evil" (or
 * "evil" after a separator), the others "x". */
static void lint_glob_example(const char *pat, size_t w, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; pat[i] && o + 6 < cap; i++) {
        if (i == w) {
            bool seg = i == 0 || strchr("/:-_.", pat[i - 1]);
            const char *ins = pat[i] == '?' ? "X" : seg ? "evil" : "-evil";
            memcpy(buf + o, ins, strlen(ins));
            o += strlen(ins);
        } else {
            buf[o++] = (pat[i] == '*' || pat[i] == '?') ? 'x' : pat[i];
        }
    }
    buf[o] = 0;
}

static void lint_glob(struct lint_ctx *c, const char *what, const char *pat, enum lint_role role)
{
    struct rx_seq s = {0};
    if (!rx_from_glob(pat, strlen(pat), &s)) {
        c->rc = BROKER_ERR_NOMEM;
        goto done;
    }
    size_t end = rx_name_end(&s, role), w;
    for (w = 0; w < end && s.a[w].kind == RX_LIT; w++)
        ;
    if (w == end)
        goto done;
    char example[256];
    lint_glob_example(pat, w, example, sizeof(example));
    struct lint_finding *f = lint_new(c, LINT_ERROR, "glob-extends-name");
    if (!f)
        goto done;
    lint_text(f->message, sizeof(f->message),
              "glob \"%s\" on %s: '%c' at offset %zu is inside the %s, so it also matches \"%s\"", pat, what,
              pat[w], w, lint_role_noun(role), example);
    /* a single trailing '*' right after a name: say where the name should have ended */
    bool tail = w + 1 == s.n && end == s.n && w > 0 && pat[w] == '*' && pat[w - 1] != '/' && pat[w - 1] != ':';
    lint_platform_glob_fix(f->fix, sizeof(f->fix), pat, w, tail, end == s.n, role);
done:
    free(s.a);
}

/* Regex findings: rule, level, what the atom does, how to fix it. */
enum rx_msg { RX_LEADING, RX_TRAILING, RX_CROSSES, RX_DOT, RX_GLUED, RX_SEGMENT, RX_NMSG };
static const struct {
    const char *rule;
    enum lint_level level;
    const char *does, *fix;
} rx_msgs[RX_NMSG] = {
    {"regex-unanchored-effect", LINT_ERROR, "accepts any prefix, so anchoring the pattern has no effect",
     "start with the literal name (\"repo:OWNER/REPO:...\"), or list the values with {\"in\": [...]}"},
    {"regex-unanchored-effect", LINT_ERROR,
     "ends the pattern inside the name, so any longer name matches and anchoring has no effect",
     "spell the name out and let only what follows it vary (e.g. \"repo:OWNER/REPO:.*\"), or list the names with "
     "{\"in\": [...]}"},
    {"regex-crosses-separator", LINT_ERROR,
     "is inside the name and can match '/' and ':', so it accepts other names (a longer one, another owner's)",
     "spell the name out or list the names with {\"in\": [...]}; never use \".*\", \".+\" or [^...] inside a name"},
    {"regex-crosses-separator", LINT_WARNING, "is inside the name and matches any character, '/' and ':' included",
     "escape a literal dot as \"\\\\.\" (or \"[.]\"), or spell the name out"},
    {"regex-extends-name", LINT_ERROR, "repeats inside the name, so longer names match too (\"app\" and \"app-evil\")",
     "spell the name out, or list the names with {\"in\": [...]}"},
    {"regex-extends-name", LINT_WARNING,
     "accepts every name in that position (e.g. every repository of the owner, including ones created later)",
     "list the names with {\"in\": [...]}; if every name is really meant, pin the owner by id "
     "(repository_owner_id / namespace_id)"},
};

/* The first atom of each message kind inside the name part (SIZE_MAX: none). */
static void lint_regex_branch(const struct rx_seq *s, enum lint_role role, size_t hits[RX_NMSG])
{
    size_t end = rx_name_end(s, role);
    for (size_t k = 0; k < end; k++) {
        const struct rx_atom *a = &s->a[k];
        enum rx_msg m;
        if (a->kind == RX_OPEN && a->unbounded)
            m = k == 0 ? RX_LEADING : (k + 1 == s->n && end == s->n) ? RX_TRAILING : RX_CROSSES;
        else if (a->kind == RX_OPEN)
            m = RX_DOT;
        else if (!a->unbounded)
            continue;
        else if ((k > 0 && rx_is_lit(&s->a[k - 1], 0) && s->a[k - 1].lit != '/' && s->a[k - 1].lit != ':') ||
                 (k + 1 < end && rx_is_lit(&s->a[k + 1], 0) && s->a[k + 1].lit != '/'))
            m = RX_GLUED; /* "app[a-z-]*": the repetition continues a name */
        else
            m = RX_SEGMENT;
        if (hits[m] == SIZE_MAX)
            hits[m] = k;
    }
}

/* One finding per rule and condition: the worse level wins, then the first atom. */
static void lint_regex(struct lint_ctx *c, const char *what, const char *pat, enum lint_role role)
{
    size_t n = strlen(pat);
    for (size_t b = 0; b < n;) {
        size_t e = rx_branch_end(pat, n, b), hits[RX_NMSG];
        struct rx_seq s = {0};
        for (size_t m = 0; m < RX_NMSG; m++)
            hits[m] = SIZE_MAX;
        if (!rx_from_regex(pat + b, e - b, 0, &s)) {
            free(s.a);
            c->rc = BROKER_ERR_NOMEM;
            return;
        }
        lint_regex_branch(&s, role, hits);
        for (size_t m = 0; m < RX_NMSG; m++) {
            bool dup = false;
            for (size_t o = 0; o < RX_NMSG; o++) /* same rule, worse level or earlier kind */
                dup |= o != m && hits[o] != SIZE_MAX && strcmp(rx_msgs[o].rule, rx_msgs[m].rule) == 0 &&
                       (rx_msgs[o].level > rx_msgs[m].level || (rx_msgs[o].level == rx_msgs[m].level && o < m));
            struct lint_finding *f = hits[m] == SIZE_MAX || dup ? NULL : lint_new(c, rx_msgs[m].level, rx_msgs[m].rule);
            if (!f)
                continue;
            const struct rx_atom *a = &s.a[hits[m]];
            lint_text(f->message, sizeof(f->message), "regex \"%s\" on %s: \"%.*s\" at offset %zu %s", pat, what,
                      (int)a->len, pat + b + a->at, b + a->at, rx_msgs[m].does);
            lint_text(f->fix, sizeof(f->fix), "%s", rx_msgs[m].fix);
        }
        free(s.a);
        if (c->rc != BROKER_OK)
            return;
        b = e + 1;
    }
}

/* Name-extension rules for one positive condition ("not" only narrows). */
static void lint_name_cond(struct lint_ctx *c, const char *what, const struct cond *cd, enum lint_role role)
{
    if (role == ROLE_NONE)
        return;
    if (cd->op == COND_GLOB)
        lint_glob(c, what, cd->value, role);
    else if (cd->op == COND_REGEX)
        lint_regex(c, what, cd->value, role);
}

/* Does the name after prefix end at a ':' with nothing variable before it, in every value (equals,
 * in) or alternative (glob, regex)? E.g. the namespace of "system:serviceaccount:NS:NAME". */
static bool lint_spelled_seq(const struct rx_seq *s, const char *prefix)
{
    size_t from = strlen(prefix), end = rx_name_end(s, ROLE_SUBJECT);
    if (!rx_has_prefix(s, prefix) || end <= from || end >= s->n)
        return false;
    for (size_t k = from; k < end; k++)
        if (!rx_is_lit(&s->a[k], 0))
            return false;
    return true;
}

bool lint_name_spelled(struct lint_ctx *c, const struct cond *cd, const char *prefix)
{
    bool ok = cd->op == COND_GLOB || cd->op == COND_REGEX || (cd->op == COND_IN && cd->nlist > 0);
    size_t n = cd->op == COND_IN ? cd->nlist : 1;
    if (cd->op == COND_EQUALS)
        ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        const char *v = cd->op == COND_IN ? cd->list[i] : cd->value;
        size_t len = strlen(v);
        for (size_t b = 0; ok && b <= len;) {
            size_t e = cd->op == COND_REGEX ? rx_branch_end(v, len, b) : len;
            struct rx_seq s = {0};
            /* equals/in values are literal: as a glob without wildcards they are the same atoms */
            bool built = cd->op == COND_REGEX ? rx_from_regex(v + b, e - b, 0, &s)
                         : cd->op == COND_GLOB ? rx_from_glob(v, len, &s)
                                               : rx_from_glob(v, strcspn(v, "*?"), &s);
            if (!built)
                c->rc = BROKER_ERR_NOMEM;
            ok = built && lint_spelled_seq(&s, prefix);
            free(s.a);
            b = e + 1;
        }
    }
    return ok;
}

/* ---- one trust policy ---- */

static void lint_condition(struct lint_ctx *c, const json_t *v, const char *claim, const json_t *scopes,
                           enum lint_iss iss, struct lint_binds *b)
{
    struct cond cd;
    char err[256], what[BROKER_MAX_CLAIM_NAME_LEN + 16];
    bool is_sub = claim == NULL;
    enum broker_err rc = policy_cond_parse(v, "condition", &cd, err, sizeof(err));
    if (rc == BROKER_ERR_NOMEM)
        c->rc = rc;
    if (rc != BROKER_OK)
        return; /* the validator reports it (invalid-document) */
    snprintf(what, sizeof(what), "%s%s", is_sub ? "" : "claim ", is_sub ? "subject (sub)" : claim);

    enum lint_role role = lint_platform_role(iss, claim);
    lint_name_cond(c, what, &cd, role);
    lint_platform_cond(c, iss, claim, &cd, scopes, b);
    policy_cond_clear(&cd);
}

static void lint_policy(struct lint_ctx *c, const json_t *id, const json_t *tp, size_t idx)
{
    char pname[BROKER_MAX_NAME_LEN + 16];
    const char *name = json_string_value(json_object_get(tp, "name"));
    const char *iname = json_string_value(json_object_get(tp, "issuer"));
    const json_t *idoc = lint_find_issuer(c->issuers, iname);
    const json_t *pscopes = json_object_get(tp, "scopes"), *idscopes = json_object_get(id, "scopes");
    const json_t *claims = json_object_get(tp, "claims"), *subject = json_object_get(tp, "subject"), *v;
    enum lint_iss iss = idoc ? lint_issuer_kind(idoc) : ISS_UNKNOWN;
    struct lint_binds binds = {0};
    struct lint_finding *f;

    if (!json_is_object(tp))
        return;
    snprintf(pname, sizeof(pname), "trust[%zu]", idx);
    c->policy = name ? name : pname;
    c->issuer = iname ? iname : "";

    if (iname && !idoc && (f = lint_new(c, LINT_ERROR, "invalid-document"))) {
        lint_text(f->message, sizeof(f->message), "trust[%zu].issuer: no issuer document named \"%s\"", idx, iname);
        lint_text(f->fix, sizeof(f->fix),
                  "lint the issuer documents together with the identities (broker policy lint DIR), or correct the "
                  "issuer name");
    }
    if (lint_unbound(tp) && (f = lint_new(c, LINT_ERROR, "unbound-policy"))) {
        lint_text(f->message, sizeof(f->message),
                  "binds neither \"subject\" nor any claim: every token of issuer \"%s\" with the right audience "
                  "would be accepted (apply refuses it)", iname ? iname : "?");
        lint_text(f->fix, sizeof(f->fix),
                  "bind the workload: \"subject\": {\"equals\": \"repo:OWNER/REPO:ref:refs/heads/main\"} and "
                  "\"claims\": {\"repository_id\": {\"equals\": \"ID\"}} (or the issuer's equivalents)");
    }
    size_t i;
    json_array_foreach (json_is_array(pscopes) ? pscopes : NULL, i, v) {
        if (!json_is_string(v) || (json_is_array(idscopes) && lint_has_string(idscopes, json_string_value(v))))
            continue;
        if ((f = lint_new(c, LINT_ERROR, "undeclared-scope"))) {
            lint_text(f->message, sizeof(f->message),
                      "scope \"%s\" is not among the identity's \"scopes\" (apply refuses it)", json_string_value(v));
            lint_text(f->fix, sizeof(f->fix), "add \"%s\" to the identity's \"scopes\", or remove it from %s.scopes",
                      json_string_value(v), pname);
        }
    }
    v = json_object_get(tp, "audience");
    if (json_is_string(v))
        lint_platform_audience(c, iss, json_string_value(v));

    const json_t *granted = json_is_array(pscopes) ? pscopes : idscopes;
    if (subject)
        lint_condition(c, subject, NULL, granted, iss, &binds);
    const char *key;
    json_object_foreach ((json_t *)(json_is_object(claims) ? claims : NULL), key, v)
        lint_condition(c, v, key, granted, iss, &binds);

    if (!lint_unbound(tp))
        lint_platform_policy(c, iss, iname, &binds);
    c->policy = c->issuer = ""; /* pname is about to go out of scope */
}

/* ---- documents ---- */

static void lint_identity(struct lint_ctx *c, const json_t *doc)
{
    const char *mt = json_string_value(json_object_get(doc, "max_ttl"));
    const json_t *trust = json_object_get(doc, "trust"), *tp;
    int64_t ttl;
    size_t i;

    c->policy = c->issuer = "";
    if (mt && policy_parse_duration(mt, &ttl) == BROKER_OK && ttl > LINT_LONG_TTL_S) {
        bool over = ttl > BROKER_MAX_TTL_S;
        struct lint_finding *f = lint_new(c, over ? LINT_ERROR : LINT_WARNING, "long-ttl");
        if (f) {
            lint_text(f->message, sizeof(f->message), "max_ttl \"%s\" (%llds) is above %ds%s", mt, (long long)ttl,
                      over ? BROKER_MAX_TTL_S : LINT_LONG_TTL_S,
                      over ? ", the broker's limit (apply refuses it)" : ": a leaked token stays usable for hours");
            lint_text(f->fix, sizeof(f->fix),
                      "lower max_ttl to what one job needs (\"1h\" or less); clients can exchange again for a "
                      "fresh token");
        }
    }
    json_array_foreach (json_is_array(trust) ? trust : NULL, i, tp)
        lint_policy(c, doc, tp, i);
}

/* A copy of an identity document without the defects lint reports under its own rules
 * (unbound-policy, undeclared-scope, long-ttl above the cap), so that the validator's verdict on
 * the copy is about the remaining problems only. NULL on ENOMEM. */
static json_t *lint_repaired(const json_t *doc)
{
    json_t *copy = json_deep_copy(doc), *tp;
    const json_t *ids = json_object_get(copy, "scopes");
    const char *mt = json_string_value(json_object_get(copy, "max_ttl"));
    int64_t ttl;
    size_t i;
    int bad = !copy;

    if (mt && policy_parse_duration(mt, &ttl) == BROKER_OK && ttl > BROKER_MAX_TTL_S) {
        char cap[32];
        snprintf(cap, sizeof(cap), "%ds", BROKER_MAX_TTL_S);
        bad |= json_object_set_new(copy, "max_ttl", json_string(cap));
    }
    json_array_foreach (json_object_get(copy, "trust"), i, tp) {
        json_t *sc = json_object_get(tp, "scopes");
        if (json_is_object(tp) && lint_unbound(tp))
            bad |= json_object_set_new(tp, "subject", json_pack("{s:s}", "equals", "-"));
        if (!json_is_array(sc) || !json_is_array(ids) || json_array_size(sc) == 0)
            continue;
        for (size_t k = json_array_size(sc); k-- > 0;) {
            const json_t *s = json_array_get(sc, k);
            if (json_is_string(s) && !lint_has_string(ids, json_string_value(s)))
                bad |= json_array_remove(sc, k);
        }
        if (json_array_size(sc) == 0)
            bad |= json_object_del(tp, "scopes");
    }
    if (bad) {
        json_decref(copy);
        return NULL;
    }
    return copy;
}

static void lint_invalid(struct lint_ctx *c, const char *what, const char *err)
{
    struct lint_finding *f = lint_new(c, LINT_ERROR, "invalid-document");
    if (f) {
        lint_text(f->message, sizeof(f->message), "%s: %s", what, err);
        lint_text(f->fix, sizeof(f->fix), "correct the field named in the message; apply refuses the whole set "
                                          "until every document validates");
    }
}

enum broker_err lint_documents(const json_t *issuer_docs, const json_t *identity_docs, struct lint_report *out)
{
    struct lint_ctx c = {out, issuer_docs, LINT_DOC_SET, 0, "", "", "", BROKER_OK};
    json_t *repaired = json_array();
    struct policy_set *set = NULL;
    char err[768];
    size_t i, before;
    const json_t *doc;

    if (!out || (issuer_docs && !json_is_array(issuer_docs)) || (identity_docs && !json_is_array(identity_docs))) {
        json_decref(repaired);
        return BROKER_ERR_INTERNAL;
    }
    if (!repaired)
        return BROKER_ERR_NOMEM;
    before = out->n;
    json_array_foreach (issuer_docs, i, doc) {
        struct issuer_cfg cfg;
        const char *name = json_string_value(json_object_get(doc, "issuer"));
        c.kind = LINT_DOC_ISSUER;
        c.index = i;
        c.identity = c.policy = "";
        c.issuer = name ? name : "";
        enum broker_err rc = policy_issuer_parse(doc, &cfg, err, sizeof(err));
        if (rc == BROKER_OK)
            policy_issuer_clear(&cfg);
        else if (rc == BROKER_ERR_NOMEM)
            c.rc = rc;
        else
            lint_invalid(&c, "issuer document", err);
    }
    json_array_foreach (identity_docs, i, doc) {
        struct identity id;
        const char *name = json_string_value(json_object_get(doc, "identity"));
        json_t *fixed = lint_repaired(doc);
        c.kind = LINT_DOC_IDENTITY;
        c.index = i;
        c.identity = name ? name : "";
        c.policy = c.issuer = "";
        if (!fixed || json_array_append_new(repaired, fixed) != 0) {
            c.rc = BROKER_ERR_NOMEM;
            break;
        }
        enum broker_err rc = policy_identity_parse(fixed, &id, err, sizeof(err));
        if (rc == BROKER_OK)
            policy_identity_clear(&id);
        else if (rc == BROKER_ERR_NOMEM)
            c.rc = rc;
        else
            lint_invalid(&c, "identity document", err);
        lint_identity(&c, doc);
    }
    /* Cross references (duplicate names or urls) are the set's; only worth asking when every
     * document stood on its own, else the build would repeat the first finding. */
    bool invalid = false;
    for (size_t k = before; k < out->n; k++)
        invalid |= strcmp(out->items[k].rule, "invalid-document") == 0;
    if (c.rc == BROKER_OK && !invalid) {
        enum broker_err rc = policy_set_build(issuer_docs, repaired, &set, err, sizeof(err));
        c.kind = LINT_DOC_SET;
        c.index = 0;
        c.identity = c.policy = c.issuer = "";
        if (rc == BROKER_ERR_NOMEM)
            c.rc = rc;
        else if (rc != BROKER_OK)
            lint_invalid(&c, "documents", err);
        if (set)
            policy_set_unref(set);
    }
    json_decref(repaired);
    return c.rc;
}
