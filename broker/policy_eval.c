/* The policy set (validated, indexed, immutable, refcounted) and the pure evaluator. Default deny:
 * a token is granted only when every condition of one trust policy holds. The fast path
 * (explain == NULL) short-circuits and allocates nothing; the explain path evaluates every condition
 * of every considered policy so an admin sees the whole picture. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "policy.h"
#include "policy_cond.h"

/* One trust policy of the set; ordinals (index into policy_set.refs) sort by identity, then by
 * position in the identity document, which is the order in which "first match" is decided. */
struct pol_ref {
    uint32_t ident;
    uint32_t pol;
    uint32_t issuer;
};

/* Policies of one issuer whose subject condition is `equals` or `in` with this value. */
struct subj_bucket {
    uint32_t issuer;
    uint32_t hash;
    const char *key;
    size_t klen;
    uint32_t first, n; /* range in ords */
};

struct issuer_lists {
    uint32_t all_first, nall;     /* every policy trusting this issuer */
    uint32_t other_first, nother; /* policies not reachable through a subject bucket */
};

struct policy_set {
    atomic_uint refcount;
    struct issuer_cfg *issuers;
    size_t nissuers;
    struct identity *idents;
    size_t nidents;
    struct pol_ref *refs;
    size_t nrefs;
    uint32_t *ident_first;        /* ordinal of each identity's trust[0] */
    struct issuer_lists *ilists;
    struct subj_bucket *buckets;
    size_t nbuckets;
    uint32_t *ords;               /* bucket ranges, then per-issuer all/other ranges */
    uint32_t *ident_tab, *issuer_name_tab, *issuer_url_tab, *bucket_tab; /* open addressing: index + 1 */
    size_t ident_mask, issuer_mask, bucket_mask;
};

/* Per-decision state: the claims every policy reads are looked up once, and the audience check is
 * remembered for the last audience string (an issuer's policies usually share one). */
struct eval_ctx {
    const struct policy_input *in;
    const json_t *aud;
    const json_t *sub;
    const char *memo_want;
    bool memo_ok;
};

static bool eval_aud(struct eval_ctx *cx, const char *want)
{
    const json_t *aud = cx->aud;
    bool ok = false;
    if (!want || !aud)
        return false;
    if (cx->memo_want && (cx->memo_want == want || strcmp(cx->memo_want, want) == 0))
        return cx->memo_ok;
    size_t wlen = strlen(want);
    if (json_is_string(aud)) {
        ok = json_string_length(aud) == wlen && memcmp(json_string_value(aud), want, wlen) == 0;
    } else if (json_is_array(aud)) {
        size_t i;
        const json_t *e;
        json_array_foreach (aud, i, e) {
            if (json_is_string(e) && json_string_length(e) == wlen && memcmp(json_string_value(e), want, wlen) == 0) {
                ok = true;
                break;
            }
        }
    }
    cx->memo_want = want;
    cx->memo_ok = ok;
    return ok;
}

static bool eval_cidrs(const struct trust_policy *tp, const struct sockaddr *peer)
{
    for (size_t i = 0; i < tp->ncidrs; i++)
        if (cidr_contains(&tp->cidrs[i], peer))
            return true;
    return false;
}

enum pol_fail { PF_NONE, PF_AUDIENCE, PF_OTHER };

static const char *policy_audience(const struct trust_policy *tp, const struct policy_input *in)
{
    return tp->audience ? tp->audience : in->default_audience;
}

/* The hot path: conditions in the documented order, stopping at the first failure. */
static enum pol_fail eval_fast(struct eval_ctx *cx, const struct trust_policy *tp)
{
    const struct policy_input *in = cx->in;
    if (!eval_aud(cx, policy_audience(tp, in)))
        return PF_AUDIENCE;
    if (tp->subject && !policy_cond_eval(tp->subject, cx->sub))
        return PF_OTHER;
    for (size_t i = 0; i < tp->nclaims; i++)
        if (!policy_cond_eval(&tp->claims[i].cond, policy_claim_get(in->claims, tp->claims[i].claim)))
            return PF_OTHER;
    if (tp->ncidrs && !eval_cidrs(tp, in->peer))
        return PF_OTHER;
    return PF_NONE;
}

/* ---- explanation ---- */

/* Appends {"condition","op","expected","actual","result"}; steals expected and actual. */
static enum broker_err explain_cond(json_t *conds, const char *label, const char *op, json_t *expected,
                                    json_t *actual, bool result)
{
    json_t *o = json_object();
    enum broker_err rc = BROKER_ERR_NOMEM;
    if (!o || !expected || !actual)
        goto done;
    if (json_object_set_new(o, "condition", json_string(label)) != 0 ||
        json_object_set_new(o, "op", json_string(op)) != 0 || json_object_set(o, "expected", expected) != 0 ||
        json_object_set(o, "actual", actual) != 0 || json_object_set_new(o, "result", json_boolean(result)) != 0 ||
        json_array_append(conds, o) != 0)
        goto done;
    rc = BROKER_OK;
done:
    json_decref(o);
    json_decref(expected);
    json_decref(actual);
    return rc;
}

static json_t *explain_actual(const json_t *v)
{
    return v ? json_deep_copy(v) : json_null();
}

/* Evaluates every condition (no short-circuit) and appends the entry for this policy. */
static enum broker_err eval_explain(struct eval_ctx *cx, const struct identity *id, const struct trust_policy *tp,
                                    json_t *explain, enum pol_fail *fail)
{
    const struct policy_input *in = cx->in;
    enum broker_err rc = BROKER_ERR_NOMEM;
    json_t *entry = json_object(), *conds = json_array();
    char first[BROKER_MAX_CLAIM_NAME_LEN + 16] = "";
    char label[BROKER_MAX_CLAIM_NAME_LEN + 16];
    bool r;

    *fail = PF_NONE;
    if (!entry || !conds)
        goto done;

    const char *aud = policy_audience(tp, in);
    r = eval_aud(cx, aud);
    if (explain_cond(conds, "audience", "contains", aud ? json_string(aud) : json_null(), explain_actual(cx->aud),
                     r) != BROKER_OK)
        goto done;
    if (!r) {
        *fail = PF_AUDIENCE;
        snprintf(first, sizeof(first), "audience");
    }

    if (tp->subject) {
        const json_t *sub = cx->sub;
        r = policy_cond_eval(tp->subject, sub);
        if (explain_cond(conds, "subject", policy_cond_op_name(tp->subject->op), policy_cond_expected(tp->subject),
                         explain_actual(sub), r) != BROKER_OK)
            goto done;
        if (!r && *fail == PF_NONE) {
            *fail = PF_OTHER;
            snprintf(first, sizeof(first), "subject");
        }
    }
    for (size_t i = 0; i < tp->nclaims; i++) {
        const struct claim_cond *cc = &tp->claims[i];
        const json_t *v = policy_claim_get(in->claims, cc->claim);
        r = policy_cond_eval(&cc->cond, v);
        snprintf(label, sizeof(label), "claims.%s", cc->claim);
        if (explain_cond(conds, label, policy_cond_op_name(cc->cond.op), policy_cond_expected(&cc->cond),
                         explain_actual(v), r) != BROKER_OK)
            goto done;
        if (!r && *fail == PF_NONE) {
            *fail = PF_OTHER;
            snprintf(first, sizeof(first), "%s", label);
        }
    }
    if (tp->ncidrs) {
        char text[CIDR_TEXT_MAX];
        json_t *expected = json_array();
        for (size_t i = 0; expected && i < tp->ncidrs; i++) {
            if (!cidr_format(&tp->cidrs[i], text, sizeof(text)) ||
                json_array_append_new(expected, json_string(text)) != 0) {
                json_decref(expected);
                expected = NULL;
            }
        }
        r = eval_cidrs(tp, in->peer);
        json_t *actual = cidr_format_peer(in->peer, text, sizeof(text)) ? json_string(text) : json_null();
        if (explain_cond(conds, "source_cidrs", "cidr", expected, actual, r) != BROKER_OK)
            goto done;
        if (!r && *fail == PF_NONE) {
            *fail = PF_OTHER;
            snprintf(first, sizeof(first), "source_cidrs");
        }
    }

    if (json_object_set_new(entry, "identity", json_string(id->name)) != 0 ||
        json_object_set_new(entry, "policy", json_string(tp->name)) != 0 ||
        json_object_set_new(entry, "result", json_string(*fail == PF_NONE ? "match" : "no_match")) != 0 ||
        json_object_set_new(entry, "first_failed", first[0] ? json_string(first) : json_null()) != 0 ||
        json_object_set(entry, "conditions", conds) != 0 || json_array_append(explain, entry) != 0)
        goto done;
    rc = BROKER_OK;
done:
    json_decref(entry);
    json_decref(conds);
    return rc;
}

/* ---- lookups ---- */

static uint32_t set_hash(uint32_t seed, const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

enum set_tab { TAB_IDENT, TAB_ISSUER_NAME, TAB_ISSUER_URL };

static const char *set_key(const struct policy_set *s, enum set_tab t, size_t i)
{
    switch (t) {
    case TAB_IDENT: return s->idents[i].name;
    case TAB_ISSUER_NAME: return s->issuers[i].name;
    case TAB_ISSUER_URL: return s->issuers[i].url;
    }
    return NULL;
}

/* Index of the entry named key, or SIZE_MAX. */
static size_t set_find(const struct policy_set *s, enum set_tab t, const char *key)
{
    const uint32_t *tab = t == TAB_IDENT ? s->ident_tab : t == TAB_ISSUER_NAME ? s->issuer_name_tab : s->issuer_url_tab;
    size_t mask = t == TAB_IDENT ? s->ident_mask : s->issuer_mask;
    if (!s || !key || !tab)
        return SIZE_MAX;
    size_t len = strlen(key);
    for (size_t i = set_hash(0, key, len) & mask;; i = (i + 1) & mask) {
        if (tab[i] == 0)
            return SIZE_MAX;
        if (strcmp(set_key(s, t, tab[i] - 1), key) == 0)
            return tab[i] - 1;
    }
}

static const struct subj_bucket *set_find_bucket(const struct policy_set *s, uint32_t issuer, const char *key,
                                                 size_t len)
{
    if (!s->bucket_tab)
        return NULL;
    uint32_t h = set_hash(issuer, key, len);
    for (size_t i = h & s->bucket_mask;; i = (i + 1) & s->bucket_mask) {
        if (s->bucket_tab[i] == 0)
            return NULL;
        const struct subj_bucket *b = &s->buckets[s->bucket_tab[i] - 1];
        if (b->hash == h && b->issuer == issuer && b->klen == len && memcmp(b->key, key, len) == 0)
            return b;
    }
}

const struct issuer_cfg *policy_set_issuer_by_url(const struct policy_set *s, const char *iss)
{
    size_t i = s ? set_find(s, TAB_ISSUER_URL, iss) : SIZE_MAX;
    return i == SIZE_MAX ? NULL : &s->issuers[i];
}

const struct issuer_cfg *policy_set_issuer_by_name(const struct policy_set *s, const char *name)
{
    size_t i = s ? set_find(s, TAB_ISSUER_NAME, name) : SIZE_MAX;
    return i == SIZE_MAX ? NULL : &s->issuers[i];
}

const struct identity *policy_set_identity_by_name(const struct policy_set *s, const char *name)
{
    size_t i = s ? set_find(s, TAB_IDENT, name) : SIZE_MAX;
    return i == SIZE_MAX ? NULL : &s->idents[i];
}

size_t policy_set_issuer_count(const struct policy_set *s) { return s ? s->nissuers : 0; }
size_t policy_set_identity_count(const struct policy_set *s) { return s ? s->nidents : 0; }

const struct issuer_cfg *policy_set_issuer_at(const struct policy_set *s, size_t i)
{
    return s && i < s->nissuers ? &s->issuers[i] : NULL;
}

const struct identity *policy_set_identity_at(const struct policy_set *s, size_t i)
{
    return s && i < s->nidents ? &s->idents[i] : NULL;
}

/* ---- evaluation ---- */

/* Candidate ordinals in ascending order: a contiguous range (one identity's policies), or the merge
 * of two sorted lists (a subject bucket and the issuer's non-indexed policies). */
struct cand_iter {
    const uint32_t *a, *b;
    size_t na, nb;
    uint32_t next, end;
};

static bool cand_next(struct cand_iter *it, uint32_t *ord)
{
    if (it->next < it->end) {
        *ord = it->next++;
        return true;
    }
    if (it->na && (!it->nb || it->a[0] < it->b[0])) {
        *ord = *it->a++;
        it->na--;
        return true;
    }
    if (it->nb) {
        *ord = *it->b++;
        it->nb--;
        return true;
    }
    return false;
}

static enum broker_err eval_grant(const struct identity *id, const struct trust_policy *tp,
                                  const struct policy_input *in, struct policy_result *out)
{
    char *const *granted = tp->scopes ? tp->scopes : id->scopes;
    size_t ngranted = tp->scopes ? tp->nscopes : id->nscopes;
    bool want[BROKER_MAX_LIST];
    bool any_requested = false;
    size_t pos = 0;

    /* scope: each requested token must be granted; the result lists them in declared order */
    memset(want, 0, sizeof(want));
    for (const char *p = in->scope ? in->scope : ""; *p;) {
        while (*p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ' ')
            p++;
        size_t len = (size_t)(p - start), j;
        if (len == 0)
            break;
        for (j = 0; j < ngranted; j++)
            if (strlen(granted[j]) == len && memcmp(granted[j], start, len) == 0)
                break;
        if (j == ngranted)
            return BROKER_ERR_INVALID_SCOPE;
        want[j] = true;
        any_requested = true;
    }
    for (size_t j = 0; j < ngranted; j++) {
        if (any_requested && !want[j])
            continue;
        size_t len = strlen(granted[j]);
        if (pos + (pos ? 1 : 0) + len >= sizeof(out->scope))
            return BROKER_ERR_INTERNAL; /* the validator bounds the joined scopes */
        if (pos)
            out->scope[pos++] = ' ';
        memcpy(out->scope + pos, granted[j], len);
        pos += len;
    }
    out->scope[pos] = 0;

    if (in->audience && in->audience[0]) {
        size_t j;
        for (j = 0; j < id->naudiences; j++)
            if (strcmp(id->audiences[j], in->audience) == 0)
                break;
        if (j == id->naudiences)
            return BROKER_ERR_INVALID_TARGET;
        out->audience = id->audiences[j];
    } else {
        out->audience = id->audiences[0];
    }

    out->ttl_s = tp->ttl_s ? tp->ttl_s : id->ttl_s;
    if (out->ttl_s > id->max_ttl_s)
        out->ttl_s = id->max_ttl_s;
    return BROKER_OK;
}

enum broker_err policy_eval(const struct policy_set *s, const struct policy_input *in, struct policy_result *out,
                            json_t *explain)
{
    struct cand_iter it = {0};
    const struct identity *match_id = NULL;
    const struct trust_policy *match_tp = NULL;
    uint32_t last_ident = UINT32_MAX, ord;
    size_t considered = 0;
    bool all_audience = true, ambiguous = false;
    enum broker_err rc = BROKER_OK;

    if (!out)
        return BROKER_ERR_INTERNAL;
    /* not memset: scope is 2 KiB and this is the hot path */
    out->identity = NULL;
    out->policy = NULL;
    out->scope[0] = 0;
    out->audience = NULL;
    out->ttl_s = 0;
    if (!s || !in || !in->issuer || !in->issuer->name || !json_is_object(in->claims))
        return BROKER_ERR_INTERNAL;
    size_t iss = set_find(s, TAB_ISSUER_NAME, in->issuer->name);
    if (iss == SIZE_MAX)
        return BROKER_ERR_UNKNOWN_ISSUER;
    struct eval_ctx cx = {
        .in = in,
        .aud = json_object_get(in->claims, "aud"),
        .sub = json_object_get(in->claims, "sub"),
    };

    if (in->identity) {
        size_t idx = set_find(s, TAB_IDENT, in->identity);
        if (idx == SIZE_MAX)
            return BROKER_ERR_UNKNOWN_IDENTITY;
        it.next = s->ident_first[idx];
        it.end = it.next + (uint32_t)s->idents[idx].ntrust;
    } else {
        /* The index: only policies whose subject condition could accept this sub, plus the issuer's
         * policies without an equals/in subject. Unrelated identities cost nothing. */
        const struct issuer_lists *l = &s->ilists[iss];
        const json_t *sub = cx.sub;
        char buf[POLICY_SCALAR_BUF];
        const char *text;
        size_t len;
        if (json_is_array(sub)) {
            it.a = s->ords + l->all_first;
            it.na = l->nall;
        } else {
            it.a = s->ords + l->other_first;
            it.na = l->nother;
            const struct subj_bucket *b =
                sub && policy_scalar_text(sub, buf, &text, &len) ? set_find_bucket(s, (uint32_t)iss, text, len) : NULL;
            if (b) {
                it.b = s->ords + b->first;
                it.nb = b->n;
            }
        }
    }

    while (cand_next(&it, &ord)) {
        const struct pol_ref *r = &s->refs[ord];
        enum pol_fail fail;
        if (r->issuer != iss)
            continue;
        if (!explain && r->ident == last_ident)
            continue; /* the first matching policy of an identity is the one used */
        const struct identity *id = &s->idents[r->ident];
        const struct trust_policy *tp = &id->trust[r->pol];
        considered++;
        if (explain) {
            rc = eval_explain(&cx, id, tp, explain, &fail);
            if (rc != BROKER_OK)
                goto done;
        } else {
            fail = eval_fast(&cx, tp);
        }
        if (fail != PF_AUDIENCE)
            all_audience = false;
        if (fail != PF_NONE || r->ident == last_ident)
            continue;
        last_ident = r->ident;
        if (!match_id) {
            match_id = id;
            match_tp = tp;
        } else {
            ambiguous = true;
            if (!explain)
                break;
        }
    }

    if (ambiguous) {
        rc = BROKER_ERR_AMBIGUOUS_IDENTITY;
    } else if (!match_id) {
        rc = considered && all_audience ? BROKER_ERR_WRONG_AUDIENCE : BROKER_ERR_NO_MATCH;
    } else {
        out->identity = match_id;
        out->policy = match_tp;
        rc = eval_grant(match_id, match_tp, in, out);
    }
done:
    return rc;
}

/* ---- building and lifetime ---- */

static void set_free(struct policy_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nissuers; i++)
        policy_issuer_clear(&s->issuers[i]);
    for (size_t i = 0; i < s->nidents; i++)
        policy_identity_clear(&s->idents[i]);
    free(s->issuers);
    free(s->idents);
    free(s->refs);
    free(s->ident_first);
    free(s->ilists);
    free(s->buckets);
    free(s->ords);
    free(s->ident_tab);
    free(s->issuer_name_tab);
    free(s->issuer_url_tab);
    free(s->bucket_tab);
    free(s);
}

struct policy_set *policy_set_ref(struct policy_set *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refcount, 1, memory_order_relaxed);
    return s;
}

void policy_set_unref(struct policy_set *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refcount, 1, memory_order_acq_rel) == 1)
        set_free(s);
}

static uint32_t *set_table(size_t n, size_t *mask)
{
    size_t cap = 8;
    while (cap < n * 2)
        cap *= 2;
    *mask = cap - 1;
    return calloc(cap, sizeof(uint32_t));
}

/* Inserts entry i, or returns the index of an existing entry with the same key. */
static size_t set_insert(struct policy_set *s, enum set_tab t, size_t i)
{
    uint32_t *tab = t == TAB_IDENT ? s->ident_tab : t == TAB_ISSUER_NAME ? s->issuer_name_tab : s->issuer_url_tab;
    size_t mask = t == TAB_IDENT ? s->ident_mask : s->issuer_mask;
    const char *key = set_key(s, t, i);
    for (size_t k = set_hash(0, key, strlen(key)) & mask;; k = (k + 1) & mask) {
        if (tab[k] == 0) {
            tab[k] = (uint32_t)i + 1;
            return SIZE_MAX;
        }
        if (strcmp(set_key(s, t, tab[k] - 1), key) == 0)
            return tab[k] - 1;
    }
}

struct subj_entry {
    uint32_t issuer, ord;
    const char *key;
    size_t klen;
};

static int subj_entry_cmp(const void *pa, const void *pb)
{
    const struct subj_entry *a = pa, *b = pb;
    if (a->issuer != b->issuer)
        return a->issuer < b->issuer ? -1 : 1;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    if (c)
        return c;
    if (a->klen != b->klen)
        return a->klen < b->klen ? -1 : 1;
    return a->ord < b->ord ? -1 : a->ord > b->ord;
}

static bool subj_indexed(const struct cond *c)
{
    return c && (c->op == COND_EQUALS || c->op == COND_IN);
}

/* Subject buckets, per-issuer lists and the ordinal array they point into. */
static enum broker_err set_index(struct policy_set *s)
{
    enum broker_err rc = BROKER_ERR_NOMEM;
    struct subj_entry *e = NULL;
    size_t ne = 0, nother = 0;

    for (size_t o = 0; o < s->nrefs; o++) {
        const struct cond *c = s->idents[s->refs[o].ident].trust[s->refs[o].pol].subject;
        if (subj_indexed(c))
            ne += c->op == COND_EQUALS ? 1 : c->nlist;
        else
            nother++;
    }
    e = calloc(ne ? ne : 1, sizeof(*e));
    s->ords = calloc(ne + s->nrefs + nother + 1, sizeof(*s->ords));
    s->buckets = calloc(ne ? ne : 1, sizeof(*s->buckets));
    s->ilists = calloc(s->nissuers ? s->nissuers : 1, sizeof(*s->ilists));
    if (!e || !s->ords || !s->buckets || !s->ilists)
        goto done;
    ne = 0;
    for (size_t o = 0; o < s->nrefs; o++) {
        const struct cond *c = s->idents[s->refs[o].ident].trust[s->refs[o].pol].subject;
        if (!subj_indexed(c))
            continue;
        size_t n = c->op == COND_EQUALS ? 1 : c->nlist;
        for (size_t k = 0; k < n; k++)
            e[ne++] = (struct subj_entry){
                .issuer = s->refs[o].issuer,
                .ord = (uint32_t)o,
                .key = c->op == COND_EQUALS ? c->value : c->list[k],
                .klen = c->op == COND_EQUALS ? c->value_len : c->list_len[k],
            };
    }
    qsort(e, ne, sizeof(*e), subj_entry_cmp);

    size_t pos = 0;
    for (size_t k = 0; k < ne; k++) {
        bool same_key = k > 0 && e[k].issuer == e[k - 1].issuer && e[k].klen == e[k - 1].klen &&
                        memcmp(e[k].key, e[k - 1].key, e[k].klen) == 0;
        if (!same_key) {
            struct subj_bucket *b = &s->buckets[s->nbuckets++];
            b->issuer = e[k].issuer;
            b->key = e[k].key;
            b->klen = e[k].klen;
            b->hash = set_hash(b->issuer, b->key, b->klen);
            b->first = (uint32_t)pos;
        } else if (e[k].ord == e[k - 1].ord) {
            continue; /* "in": ["a", "a"] */
        }
        s->ords[pos++] = e[k].ord;
        s->buckets[s->nbuckets - 1].n++;
    }
    s->bucket_tab = set_table(s->nbuckets, &s->bucket_mask);
    if (!s->bucket_tab)
        goto done;
    for (size_t k = 0; k < s->nbuckets; k++) {
        size_t slot = s->buckets[k].hash & s->bucket_mask;
        while (s->bucket_tab[slot])
            slot = (slot + 1) & s->bucket_mask;
        s->bucket_tab[slot] = (uint32_t)k + 1;
    }

    /* per issuer: all policies, then those not reachable through a bucket, each in ordinal order */
    for (size_t o = 0; o < s->nrefs; o++) {
        struct issuer_lists *l = &s->ilists[s->refs[o].issuer];
        l->nall++;
        if (!subj_indexed(s->idents[s->refs[o].ident].trust[s->refs[o].pol].subject))
            l->nother++;
    }
    for (size_t i = 0; i < s->nissuers; i++) {
        struct issuer_lists *l = &s->ilists[i];
        l->all_first = (uint32_t)pos;
        pos += l->nall;
        l->other_first = (uint32_t)pos;
        pos += l->nother;
        l->nall = l->nother = 0;
    }
    for (size_t o = 0; o < s->nrefs; o++) {
        struct issuer_lists *l = &s->ilists[s->refs[o].issuer];
        s->ords[l->all_first + l->nall++] = (uint32_t)o;
        if (!subj_indexed(s->idents[s->refs[o].ident].trust[s->refs[o].pol].subject))
            s->ords[l->other_first + l->nother++] = (uint32_t)o;
    }
    rc = BROKER_OK;
done:
    free(e);
    return rc;
}

/* "identity payments-deploy: trust[0].subject: ..." — the document's name when it has a usable one. */
static void set_doc_label(const json_t *doc, const char *kind, size_t idx, char *buf, size_t cap)
{
    const json_t *n = json_object_get(doc, kind);
    if (json_is_string(n) && json_string_length(n) > 0 && json_string_length(n) <= BROKER_MAX_NAME_LEN &&
        strlen(json_string_value(n)) == json_string_length(n))
        snprintf(buf, cap, "%s %s", kind, json_string_value(n));
    else
        snprintf(buf, cap, "%s #%zu", kind, idx);
}

#define SET_FAIL(...)                           \
    do {                                        \
        if (err && errlen)                      \
            snprintf(err, errlen, __VA_ARGS__); \
        rc = BROKER_ERR_INVALID_DOCUMENT;       \
        goto done;                              \
    } while (0)

enum broker_err policy_set_build(const json_t *issuer_docs, const json_t *identity_docs, struct policy_set **out,
                                 char *err, size_t errlen)
{
    enum broker_err rc = BROKER_ERR_NOMEM;
    struct policy_set *s = NULL;
    char label[BROKER_MAX_NAME_LEN + 16], msg[512];
    size_t nis = json_array_size(issuer_docs), nid = json_array_size(identity_docs);

    if (out)
        *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!out || (issuer_docs && !json_is_array(issuer_docs)) || (identity_docs && !json_is_array(identity_docs)))
        SET_FAIL("documents: issuers and identities must be arrays");
    if (nid > UINT32_MAX / BROKER_MAX_POLICIES_PER_IDENTITY)
        SET_FAIL("documents: too many identities");
    s = calloc(1, sizeof(*s));
    if (!s)
        goto done;
    atomic_init(&s->refcount, 1);
    s->issuers = calloc(nis ? nis : 1, sizeof(*s->issuers));
    s->idents = calloc(nid ? nid : 1, sizeof(*s->idents));
    s->ident_first = calloc(nid ? nid : 1, sizeof(*s->ident_first));
    s->issuer_name_tab = set_table(nis, &s->issuer_mask);
    s->issuer_url_tab = set_table(nis, &s->issuer_mask);
    s->ident_tab = set_table(nid, &s->ident_mask);
    if (!s->issuers || !s->idents || !s->ident_first || !s->issuer_name_tab || !s->issuer_url_tab || !s->ident_tab)
        goto done;

    for (size_t i = 0; i < nis; i++) {
        const json_t *doc = json_array_get(issuer_docs, i);
        set_doc_label(doc, "issuer", i, label, sizeof(label));
        rc = policy_issuer_parse(doc, &s->issuers[i], msg, sizeof(msg));
        if (rc != BROKER_OK)
            SET_FAIL("%s: %s", label, msg);
        s->nissuers = i + 1;
        size_t dup = set_insert(s, TAB_ISSUER_NAME, i);
        if (dup != SIZE_MAX)
            SET_FAIL("%s: issuer: name already used by issuer document #%zu", label, dup);
        dup = set_insert(s, TAB_ISSUER_URL, i);
        if (dup != SIZE_MAX)
            SET_FAIL("%s: url: \"%s\" is already registered as issuer %s", label, s->issuers[i].url,
                     s->issuers[dup].name);
    }
    for (size_t i = 0; i < nid; i++) {
        const json_t *doc = json_array_get(identity_docs, i);
        set_doc_label(doc, "identity", i, label, sizeof(label));
        rc = policy_identity_parse(doc, &s->idents[i], msg, sizeof(msg));
        if (rc != BROKER_OK)
            SET_FAIL("%s: %s", label, msg);
        s->nidents = i + 1;
        size_t dup = set_insert(s, TAB_IDENT, i);
        if (dup != SIZE_MAX)
            SET_FAIL("%s: identity: name already used by identity document #%zu", label, dup);
        for (size_t k = 0; k < s->idents[i].ntrust; k++)
            if (set_find(s, TAB_ISSUER_NAME, s->idents[i].trust[k].issuer) == SIZE_MAX)
                SET_FAIL("%s: trust[%zu].issuer: no issuer document named \"%s\"", label, k,
                         s->idents[i].trust[k].issuer);
        s->ident_first[i] = (uint32_t)s->nrefs;
        s->nrefs += s->idents[i].ntrust;
    }

    rc = BROKER_ERR_NOMEM;
    s->refs = calloc(s->nrefs ? s->nrefs : 1, sizeof(*s->refs));
    if (!s->refs)
        goto done;
    for (size_t i = 0, o = 0; i < s->nidents; i++)
        for (size_t k = 0; k < s->idents[i].ntrust; k++, o++)
            s->refs[o] = (struct pol_ref){(uint32_t)i, (uint32_t)k,
                                          (uint32_t)set_find(s, TAB_ISSUER_NAME, s->idents[i].trust[k].issuer)};
    rc = set_index(s);
    if (rc != BROKER_OK)
        goto done;
    *out = s;
    s = NULL;
done:
    if (rc == BROKER_ERR_NOMEM && err && errlen)
        snprintf(err, errlen, "out of memory");
    set_free(s);
    return rc;
}
