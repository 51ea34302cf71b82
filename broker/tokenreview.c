/* Kubernetes TokenReview: POST <api>/apis/authentication.k8s.io/v1/tokenreviews with the subject
 * token, authenticated by the issuer's bearer_token_file, over TLS verified against its ca_file.
 * Same transport rules as the key fetcher: https only, no redirects, bounded size and time.
 * A small queue feeds TOKENREVIEW_THREADS threads; answers (authenticated or not) are cached in
 * a bounded set-associative table keyed by SHA-256 of endpoint, audience and token. */
#include "tokenreview.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "bearer.h"
#include "curlx.h"
#include "bounds.h"
#include "clock.h"
#include "jwt.h"
#include "log.h"

#define TOKENREVIEW_THREADS 2
#define TOKENREVIEW_KEY_LEN 32
#define CACHE_WAYS 4
#define CACHE_SETS (BROKER_TOKEN_REVIEW_CACHE_MAX / CACHE_WAYS)

static const struct {
    const char *name;
    const char *text;
} results[TOKENREVIEW__COUNT] = {
    [TOKENREVIEW_AUTHENTICATED] = {"authenticated", "TokenReview: the Kubernetes API server authenticated this token"},
    [TOKENREVIEW_REJECTED] = {"rejected", "TokenReview: the Kubernetes API server says this token is not "
                                          "authenticated (pod or service account deleted?)"},
    [TOKENREVIEW_ERR_NETWORK] = {"network", "TokenReview unavailable: the Kubernetes API server could not be "
                                            "reached; nothing was issued (fail closed)"},
    [TOKENREVIEW_ERR_TLS] = {"tls", "TokenReview unavailable: TLS with the Kubernetes API server failed (check the "
                                    "issuer's ca_file); nothing was issued"},
    [TOKENREVIEW_ERR_TIMEOUT] = {"timeout", "TokenReview unavailable: the Kubernetes API server did not answer in "
                                            "time (or the review waited too long in the queue); nothing was issued "
                                            "(fail closed)"},
    [TOKENREVIEW_ERR_UNAUTHORIZED] = {"unauthorized", "TokenReview unavailable: the Kubernetes API server refused "
                                                      "the broker's bearer_token_file token (401/403: expired, or "
                                                      "missing the system:auth-delegator role); nothing was issued"},
    [TOKENREVIEW_ERR_HTTP_STATUS] = {"http_status", "TokenReview unavailable: the Kubernetes API server answered "
                                                    "with an unexpected HTTP status; nothing was issued"},
    [TOKENREVIEW_ERR_BAD_RESPONSE] = {"bad_response", "TokenReview unavailable: the answer was not a TokenReview "
                                                      "for the requested audience; nothing was issued"},
    [TOKENREVIEW_ERR_BEARER] = {"bearer_file", "TokenReview unavailable: the issuer's bearer_token_file is not "
                                               "allowed by BROKER_BEARER_TOKEN_FILES, cannot be read or holds no "
                                               "token; nothing was issued"},
    [TOKENREVIEW_ERR_OVERLOADED] = {"overloaded", "TokenReview unavailable: too many reviews are pending; nothing "
                                                  "was issued (fail closed)"},
    [TOKENREVIEW_ERR_INTERNAL] = {"internal", "TokenReview unavailable: internal error; nothing was issued"},
};

const char *tokenreview_result_name(enum tokenreview_result r)
{
    return (unsigned)r < TOKENREVIEW__COUNT ? results[r].name : "unknown";
}

const char *tokenreview_result_text(enum tokenreview_result r)
{
    return (unsigned)r < TOKENREVIEW__COUNT ? results[r].text : "TokenReview: unknown result";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* compared with the token's exp */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A review that waited in the queue this long is answered "timeout" without asking the server:
 * its exchange has waited a whole review's time already, and must not outlive the shutdown
 * drain behind a slow API server. */
static bool review_stale(int64_t enqueued_ms, int64_t now)
{
    return now - enqueued_ms >= BROKER_TOKEN_REVIEW_TIMEOUT_MS;
}

/* ------------------------------------------------------------------ cache (under mu) */

struct cache_entry {
    uint8_t key[TOKENREVIEW_KEY_LEN];
    int64_t expires_ms; /* 0: free */
    enum tokenreview_result result;
};

static struct cache_entry cache[CACHE_SETS][CACHE_WAYS];

static struct cache_entry *cache_set(const uint8_t key[TOKENREVIEW_KEY_LEN])
{
    /* the key is a SHA-256 output: any four bytes are uniform */
    uint32_t h = (uint32_t)key[0] | (uint32_t)key[1] << 8 | (uint32_t)key[2] << 16 | (uint32_t)key[3] << 24;
    return cache[h % CACHE_SETS];
}

static bool cache_get(const uint8_t key[TOKENREVIEW_KEY_LEN], int64_t now, enum tokenreview_result *out)
{
    struct cache_entry *set = cache_set(key);
    for (size_t i = 0; i < CACHE_WAYS; i++) {
        if (set[i].expires_ms > now && CRYPTO_memcmp(set[i].key, key, TOKENREVIEW_KEY_LEN) == 0) {
            *out = set[i].result;
            return true;
        }
    }
    return false;
}

/* Replaces the same key, else a free or expired way, else the way that would expire soonest. */
static void cache_put(const uint8_t key[TOKENREVIEW_KEY_LEN], enum tokenreview_result r, int64_t now,
                      int64_t expires_ms)
{
    if (expires_ms <= now)
        return;
    struct cache_entry *set = cache_set(key), *victim = &set[0];
    for (size_t i = 0; i < CACHE_WAYS; i++) {
        if (memcmp(set[i].key, key, TOKENREVIEW_KEY_LEN) == 0 || set[i].expires_ms <= now) {
            victim = &set[i];
            break;
        }
        if (set[i].expires_ms < victim->expires_ms)
            victim = &set[i];
    }
    memcpy(victim->key, key, TOKENREVIEW_KEY_LEN);
    victim->expires_ms = expires_ms;
    victim->result = r;
}

/* When an answer stops being reused: cache_s from now, but never past the token's exp. */
static int64_t cache_expiry(int64_t now, int64_t cache_s, int64_t exp)
{
    int64_t until = now + cache_s * 1000;
    return exp * 1000 < until ? exp * 1000 : until;
}

static bool cache_key(const char *url, const char *audience, const char *token, size_t token_len,
                      uint8_t key[TOKENREVIEW_KEY_LEN])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(c, url, strlen(url) + 1) == 1 && EVP_DigestUpdate(c, audience, strlen(audience) + 1) == 1 &&
              EVP_DigestUpdate(c, token, token_len) == 1 && EVP_DigestFinal_ex(c, key, NULL) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

/* ------------------------------------------------------------------ one review over HTTPS */

/* {"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":T,"audiences":[A]}}.
 * The token is a compact JWS (verified): only base64url characters and dots, so it needs no escaping;
 * anything else is refused rather than escaped. The caller wipes and frees the result. */
static char *request_body(const char *token, size_t token_len, const char *audience, size_t *len)
{
    static const char head[] = "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\","
                               "\"spec\":{\"token\":\"";
    static const char mid[] = "\",\"audiences\":[";
    static const char tail[] = "]}}";
    for (size_t i = 0; i < token_len; i++) {
        char c = token[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return NULL;
    }
    json_t *a = json_string(audience);
    char *aud = a != NULL ? json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(a);
    if (aud == NULL)
        return NULL;
    size_t al = strlen(aud), n = 0;
    size_t cap = sizeof(head) + token_len + sizeof(mid) + al + sizeof(tail);
    char *b = malloc(cap);
    if (b != NULL) {
        memcpy(b, head, sizeof(head) - 1), n += sizeof(head) - 1;
        memcpy(b + n, token, token_len), n += token_len;
        memcpy(b + n, mid, sizeof(mid) - 1), n += sizeof(mid) - 1;
        memcpy(b + n, aud, al), n += al;
        memcpy(b + n, tail, sizeof(tail)), n += sizeof(tail) - 1;
        *len = n;
    }
    free(aud);
    return b;
}

/* The answer: status.authenticated (omitted when false, as Kubernetes omits empty fields), and when
 * true, status.audiences must name our audience — otherwise the server did not check it. */
static enum tokenreview_result parse_response(const uint8_t *p, size_t len, const char *audience)
{
    enum tokenreview_result r = TOKENREVIEW_ERR_BAD_RESPONSE;
    json_t *doc = jwt_json_load_strict(p, len, BROKER_MAX_JSON_DEPTH);
    const json_t *kind = json_object_get(doc, "kind"), *status = json_object_get(doc, "status");
    if (!json_is_object(doc) || !json_is_string(kind) || strcmp(json_string_value(kind), "TokenReview") != 0 ||
        !json_is_object(status))
        goto out;
    const json_t *auth = json_object_get(status, "authenticated");
    if (auth != NULL && !json_is_boolean(auth))
        goto out;
    if (!json_is_true(auth)) {
        r = TOKENREVIEW_REJECTED;
        goto out;
    }
    size_t i;
    const json_t *a;
    json_array_foreach (json_object_get(status, "audiences"), i, a) {
        if (json_is_string(a) && strcmp(json_string_value(a), audience) == 0 &&
            json_string_length(a) == strlen(audience)) {
            r = TOKENREVIEW_AUTHENTICATED;
            break;
        }
    }
out:
    json_decref(doc);
    return r;
}

struct body {
    uint8_t p[BROKER_TOKEN_REVIEW_MAX_RESPONSE];
    size_t len;
    bool too_large;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    if (n > sizeof(b->p) - b->len) {
        b->too_large = true;
        return 0;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return n;
}

static atomic_bool aborting;

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ud, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load_explicit(&aborting, memory_order_relaxed) ? 1 : 0;
}

static enum tokenreview_result classify(CURLcode c, const struct body *b)
{
    switch (curlx_classify(c)) {
    case CURLX_TIMEOUT:
        return TOKENREVIEW_ERR_TIMEOUT;
    case CURLX_TOO_LARGE:
        return TOKENREVIEW_ERR_BAD_RESPONSE;
    case CURLX_WRITE:
        return b->too_large ? TOKENREVIEW_ERR_BAD_RESPONSE : TOKENREVIEW_ERR_INTERNAL;
    case CURLX_TLS:
        return TOKENREVIEW_ERR_TLS;
    case CURLX_NOMEM:
        return TOKENREVIEW_ERR_INTERNAL;
    case CURLX_NETWORK:
    default:
        return TOKENREVIEW_ERR_NETWORK;
    }
}

/* ------------------------------------------------------------------ queue and threads */

struct waiter {
    struct waiter *next;
    void (*cb)(void *arg, enum tokenreview_result r);
    void *arg;
};

struct review {
    struct review *next;
    uint8_t key[TOKENREVIEW_KEY_LEN];
    char fp[9];             /* log fingerprint: SHA-256 of the token, 4 bytes hex */
    char *issuer, *url, *ca_file, *bearer_file, *audience;
    char *token;            /* wiped before free */
    size_t token_len;
    int64_t exp, cache_s;
    int64_t enqueued_ms;    /* clock_mono_ms() when queued: see review_stale */
    bool running;
    struct waiter *waiters;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool running, stopping;
static pthread_t threads[TOKENREVIEW_THREADS];
static size_t nthreads;
static struct review *pending; /* FIFO: queued and running reviews, oldest first */
static size_t npending;
static _Atomic uint64_t counts[TOKENREVIEW__COUNT], cache_hits;

static enum tokenreview_result review_perform(CURL *h, const struct review *rv, long *status)
{
    enum tokenreview_result r;
    char bearer[sizeof("Authorization: Bearer ") + BROKER_MAX_BEARER_FILE_BYTES + 1];
    const size_t pre = sizeof("Authorization: Bearer ") - 1;
    size_t blen = 0, body_len = 0;
    struct curl_slist *hdrs = NULL, *tmp;
    struct body *b = malloc(sizeof(*b));
    char *req = NULL;
    *status = 0;
    memcpy(bearer, "Authorization: Bearer ", pre);
    if (b == NULL) {
        r = TOKENREVIEW_ERR_INTERNAL;
        goto out;
    }
    b->len = 0;
    b->too_large = false;
    r = TOKENREVIEW_ERR_BEARER;
    if (bearer_file_read(rv->bearer_file, bearer + pre, BROKER_MAX_BEARER_FILE_BYTES + 1, &blen) != BEARER_OK)
        goto out; /* a refusal by BROKER_BEARER_TOKEN_FILES is logged by bearer.c */
    bearer[pre + blen] = '\0';
    r = TOKENREVIEW_ERR_INTERNAL;
    if ((req = request_body(rv->token, rv->token_len, rv->audience, &body_len)) == NULL)
        goto out;
    /* "Expect:" off: no 100-continue round trip before a small body */
    const char *const fixed[] = {"Content-Type: application/json", "Accept: application/json", "Expect:", bearer};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if ((tmp = curl_slist_append(hdrs, fixed[i])) == NULL)
            goto out;
        hdrs = tmp;
    }
    curl_easy_reset(h); /* keeps the connection cache: the next review reuses the TLS connection */
    /* any option libcurl refuses refuses the review: never a request with a weaker setting */
    if (curl_easy_setopt(h, CURLOPT_URL, rv->url) || curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") ||
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https") || curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) ||
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) || curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) ||
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) ||
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) ||
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)BROKER_TOKEN_REVIEW_TIMEOUT_MS) ||
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)BROKER_TOKEN_REVIEW_TIMEOUT_MS) ||
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)BROKER_TOKEN_REVIEW_MAX_RESPONSE) ||
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) || curl_easy_setopt(h, CURLOPT_POSTFIELDS, req) ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) ||
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write) || curl_easy_setopt(h, CURLOPT_WRITEDATA, b) ||
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L) || curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress) ||
        curl_easy_setopt(h, CURLOPT_USERAGENT, "broker") ||
        (rv->ca_file != NULL && curl_easy_setopt(h, CURLOPT_CAINFO, rv->ca_file)))
        goto out;
    CURLcode c = curl_easy_perform(h);
    if (c != CURLE_OK) {
        r = classify(c, b);
        goto out;
    }
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status) != CURLE_OK)
        goto out;
    if (*status == 401 || *status == 403)
        r = TOKENREVIEW_ERR_UNAUTHORIZED;
    else if (*status != 200 && *status != 201) /* create answers 201 */
        r = TOKENREVIEW_ERR_HTTP_STATUS;
    else
        r = parse_response(b->p, b->len, rv->audience);
out:
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    for (tmp = hdrs; tmp != NULL; tmp = tmp->next)
        OPENSSL_cleanse(tmp->data, strlen(tmp->data));
    curl_slist_free_all(hdrs);
    OPENSSL_cleanse(bearer, sizeof(bearer));
    if (req != NULL)
        OPENSSL_cleanse(req, body_len);
    free(req);
    free(b);
    return r;
}

static void review_free(struct review *rv)
{
    if (rv == NULL)
        return;
    free(rv->issuer);
    free(rv->url);
    free(rv->ca_file);
    free(rv->bearer_file);
    free(rv->audience);
    if (rv->token != NULL)
        OPENSSL_cleanse(rv->token, rv->token_len);
    free(rv->token);
    free(rv);
}

static void waiters_deliver(struct waiter *w, enum tokenreview_result r)
{
    while (w != NULL) {
        struct waiter *next = w->next;
        w->cb(w->arg, r);
        free(w);
        w = next;
    }
}

static void pending_remove_locked(struct review *rv)
{
    for (struct review **pp = &pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rv) {
            *pp = rv->next;
            npending--;
            return;
        }
    }
}

static void *worker_main(void *unused)
{
    (void)unused;
    pthread_setname_np(pthread_self(), "broker-review");
    CURL *h = curl_easy_init();
    pthread_mutex_lock(&mu);
    while (!stopping) {
        struct review *rv = pending;
        while (rv != NULL && rv->running)
            rv = rv->next;
        if (rv == NULL) {
            pthread_cond_wait(&cv, &mu);
            continue;
        }
        rv->running = true;
        pthread_mutex_unlock(&mu);

        long status = 0;
        int64_t t0 = now_ms();
        /* joined waiters share the review's age: they wait behind the same queue */
        bool stale = review_stale(rv->enqueued_ms, clock_mono_ms());
        enum tokenreview_result r = stale       ? TOKENREVIEW_ERR_TIMEOUT
                                    : h != NULL ? review_perform(h, rv, &status)
                                                : TOKENREVIEW_ERR_INTERNAL;
        int64_t t1 = now_ms();
        atomic_fetch_add_explicit(&counts[r], 1, memory_order_relaxed);
        log_msg(r <= TOKENREVIEW_REJECTED ? LOG_INFO : LOG_WARN, "token_review",
                "issuer=%s result=%s status=%ld token_sha256=%s ms=%lld%s", rv->issuer, tokenreview_result_name(r),
                status, rv->fp, (long long)(t1 - t0), stale ? " queued_too_long=true" : "");

        pthread_mutex_lock(&mu);
        /* only answers are cached: an outage must not outlive itself */
        if ((r == TOKENREVIEW_AUTHENTICATED || r == TOKENREVIEW_REJECTED) && rv->cache_s > 0)
            cache_put(rv->key, r, t1, cache_expiry(t1, rv->cache_s, rv->exp));
        pending_remove_locked(rv);
        struct waiter *w = rv->waiters;
        rv->waiters = NULL;
        pthread_mutex_unlock(&mu);
        waiters_deliver(w, r);
        review_free(rv);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    if (h != NULL)
        curl_easy_cleanup(h);
    return NULL;
}

static void stop_threads(void)
{
    pthread_mutex_lock(&mu);
    stopping = true;
    atomic_store(&aborting, true);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    nthreads = 0;
}

enum broker_err tokenreview_start(void)
{
    pthread_mutex_lock(&mu);
    bool already = running;
    if (!already) {
        stopping = false;
        atomic_store(&aborting, false);
        running = true;
    }
    pthread_mutex_unlock(&mu);
    if (already)
        return BROKER_OK;
    for (size_t i = 0; i < TOKENREVIEW_THREADS; i++) {
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0) {
            tokenreview_stop();
            return BROKER_ERR_INTERNAL;
        }
        nthreads = i + 1;
    }
    return BROKER_OK;
}

void tokenreview_stop(void)
{
    stop_threads();
    pthread_mutex_lock(&mu);
    struct review *list = pending;
    pending = NULL;
    npending = 0;
    running = false;
    memset(cache, 0, sizeof(cache));
    pthread_mutex_unlock(&mu);
    /* the threads have exited: nothing is running, these were never started */
    while (list != NULL) {
        struct review *next = list->next;
        waiters_deliver(list->waiters, TOKENREVIEW_ERR_OVERLOADED);
        review_free(list);
        list = next;
    }
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* A review job owning copies of everything the thread needs (the policy set may be replaced). */
static struct review *review_new(const struct tokenreview_request *rq, const uint8_t key[TOKENREVIEW_KEY_LEN])
{
    const struct issuer_cfg *iss = rq->issuer;
    uint8_t fp[32];
    struct review *rv = calloc(1, sizeof(*rv));
    if (rv == NULL)
        return NULL;
    memcpy(rv->key, key, TOKENREVIEW_KEY_LEN);
    rv->issuer = strdup(iss->name);
    rv->url = strdup(iss->token_review_url);
    rv->ca_file = dup_or_null(iss->ca_file);
    rv->bearer_file = dup_or_null(iss->bearer_token_file);
    rv->audience = strdup(rq->audience);
    rv->token = malloc(rq->token_len + 1);
    rv->token_len = rq->token_len;
    rv->exp = rq->exp;
    rv->cache_s = iss->token_review_cache_s;
    if (rv->issuer == NULL || rv->url == NULL || (iss->ca_file != NULL && rv->ca_file == NULL) ||
        rv->bearer_file == NULL || rv->audience == NULL || rv->token == NULL ||
        EVP_Digest(rq->token, rq->token_len, fp, NULL, EVP_sha256(), NULL) != 1) {
        review_free(rv);
        return NULL;
    }
    memcpy(rv->token, rq->token, rq->token_len);
    rv->token[rq->token_len] = '\0';
    snprintf(rv->fp, sizeof(rv->fp), "%02x%02x%02x%02x", fp[0], fp[1], fp[2], fp[3]);
    return rv;
}

bool tokenreview_check(const struct tokenreview_request *rq, enum tokenreview_result *result,
                       void (*cb)(void *arg, enum tokenreview_result r), void *arg)
{
    uint8_t key[TOKENREVIEW_KEY_LEN];
    const struct issuer_cfg *iss = rq->issuer;
    struct waiter *w = NULL;
    struct review *rv = NULL;
    bool async = false;

    *result = TOKENREVIEW_ERR_INTERNAL;
    if (iss == NULL || iss->token_review_url == NULL || iss->bearer_token_file == NULL || rq->audience == NULL ||
        rq->token == NULL || !cache_key(iss->token_review_url, rq->audience, rq->token, rq->token_len, key))
        goto out;
    if ((w = malloc(sizeof(*w))) == NULL)
        goto out;
    w->cb = cb;
    w->arg = arg;
    w->next = NULL;

    pthread_mutex_lock(&mu);
    if (cache_get(key, now_ms(), result)) {
        pthread_mutex_unlock(&mu);
        atomic_fetch_add_explicit(&cache_hits, 1, memory_order_relaxed);
        goto out;
    }
    *result = TOKENREVIEW_ERR_OVERLOADED; /* unless queued below */
    for (struct review *p = running && !stopping ? pending : NULL; p != NULL; p = p->next) {
        if (memcmp(p->key, key, TOKENREVIEW_KEY_LEN) == 0) { /* the same question is being asked: join it */
            w->next = p->waiters;
            p->waiters = w;
            w = NULL;
            async = true;
            break;
        }
    }
    if (!async && running && !stopping && npending < BROKER_TOKEN_REVIEW_QUEUE_MAX &&
        (rv = review_new(rq, key)) != NULL) {
        rv->waiters = w;
        rv->enqueued_ms = clock_mono_ms();
        w = NULL;
        struct review **pp = &pending;
        while (*pp != NULL)
            pp = &(*pp)->next;
        *pp = rv;
        npending++;
        pthread_cond_signal(&cv);
        async = true;
    }
    pthread_mutex_unlock(&mu);
    if (!async)
        atomic_fetch_add_explicit(&counts[TOKENREVIEW_ERR_OVERLOADED], 1, memory_order_relaxed);
out:
    free(w);
    return async;
}

size_t tokenreview_metrics(char *out, size_t cap)
{
    size_t n = 0;
    char line[160];
    if (cap == 0)
        return 0;
    out[0] = '\0';
    for (int r = 0; r <= TOKENREVIEW__COUNT; r++) {
        int k = r < TOKENREVIEW__COUNT
                    ? snprintf(line, sizeof(line), "broker_token_review_total{result=\"%s\"} %llu\n",
                               tokenreview_result_name((enum tokenreview_result)r),
                               (unsigned long long)atomic_load_explicit(&counts[r], memory_order_relaxed))
                    : snprintf(line, sizeof(line), "broker_token_review_cache_hits_total %llu\n",
                               (unsigned long long)atomic_load_explicit(&cache_hits, memory_order_relaxed));
        if (k < 0 || (size_t)k >= cap - n)
            break;
        memcpy(out + n, line, (size_t)k + 1);
        n += (size_t)k;
    }
    return n;
}
