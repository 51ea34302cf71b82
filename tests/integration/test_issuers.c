/* Integration tests of broker/issuers.c against the local HTTPS issuer (tests/tools/issuer.py),
 * run by test_issuers.sh with ISSUER_DIR, ISSUER_PORT and OTHER_CA (a CA the issuer does not use)
 * in the environment. Each test syncs the complete issuer set it needs (a sync replaces the
 * previous one) and uses its own issuer path (https://127.0.0.1:P/t/NAME), so per-path request
 * counts from /_control/stats belong to one test. */
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>
#include "test_util.h"
#include "bearer.h"
#include "issuers.h"
#include "issuers_fetch.h"
#include "jwks.h"
#include "policy.h"

#define K8S_KID "pJcxkJ4q0O1tOt0Z37VB6-x6Mw8xFZSxM9roPtMQq0A"

static char g_dir[512], g_base[128], g_other_ca[512], g_ca[600];

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- talking to the issuer's control endpoints ---- */

struct resp {
    char buf[65536];
    size_t len;
};

static size_t on_resp(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t k = size * n;
    if (k > sizeof(r->buf) - 1 - r->len)
        return 0;
    memcpy(r->buf + r->len, p, k);
    r->len += k;
    r->buf[r->len] = 0;
    return k;
}

/* POST (post != 0) or GET base + path; returns the parsed JSON body (asserting 200). */
static json_t *issuer_call(const char *path, int post)
{
    char url[512];
    static struct resp r;
    r.len = 0;
    r.buf[0] = 0;
    snprintf(url, sizeof(url), "%s%s", g_base, path);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, g_ca);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_resp);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    if (post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    assert_int_equal(status, 200);
    json_t *j = json_loads(r.buf, 0, NULL);
    assert_non_null(j);
    return j;
}

static void ctl(const char *path)
{
    json_decref(issuer_call(path, 1));
}

/* Requests the issuer has received for this exact path. */
static long served(const char *path)
{
    json_t *s = issuer_call("/_control/stats", 0);
    long n = (long)json_integer_value(json_object_get(json_object_get(s, "paths"), path));
    json_decref(s);
    return n;
}

/* ... of which carried an Authorization header. */
static long authorized(const char *path)
{
    json_t *s = issuer_call("/_control/stats", 0);
    long n = (long)json_integer_value(json_object_get(json_object_get(s, "authorized"), path));
    json_decref(s);
    return n;
}

/* POST /_control/override?tenant=T&<query> (query already URL-encoded; NULL clears). */
static void override(const char *tenant, const char *query)
{
    char path[1024];
    snprintf(path, sizeof(path), "/_control/override?tenant=%s%s%s", tenant, query ? "&" : "", query ? query : "");
    ctl(path);
}

/* Replaces path atomically (as the kubelet swaps a projected token) with len bytes of data. */
static void write_file(const char *path, const char *data, size_t len)
{
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void metrics_has(const char *line)
{
    static char m[65536];
    issuers_metrics(m, sizeof(m));
    if (strstr(m, line) == NULL)
        fail_msg("metrics lack \"%s\":\n%s", line, m);
}

/* ---- building policy sets ---- */

static enum broker_err sync_docs(json_t *issuers, char *err, size_t errlen)
{
    json_t *ids = json_array();
    struct policy_set *set = NULL;
    char perr[512];
    enum broker_err e = policy_set_build(issuers, ids, &set, perr, sizeof(perr));
    if (e != BROKER_OK)
        fail_msg("policy_set_build: %s", perr);
    e = issuers_sync(set, err, errlen);
    policy_set_unref(set); /* issuers keep their own copies */
    json_decref(ids);
    json_decref(issuers);
    return e;
}

static void sync_ok(json_t *issuers)
{
    char err[512];
    enum broker_err e = sync_docs(issuers, err, sizeof(err));
    if (e != BROKER_OK)
        fail_msg("issuers_sync: %s (%s)", broker_strerror(e), err);
}

/* {"issuer": name, "url": base/t/tenant, "ca_file": ca} */
static json_t *fetched_doc(const char *name, const char *tenant, const char *ca)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/t/%s", g_base, tenant);
    json_t *d = json_pack("{s:s, s:s}", "issuer", name, "url", url);
    if (ca != NULL)
        json_object_set_new(d, "ca_file", json_string(ca));
    return d;
}

static const char *url_of(const char *tenant)
{
    static char url[4][256];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(url[slot], sizeof(url[slot]), "%s/t/%s", g_base, tenant);
    return url[slot];
}

static bool has_kid(const char *url, const char *kid)
{
    struct issuer_keys *k = issuers_keys_get(url);
    bool found = k != NULL && jwks_find(issuer_keys_jwks(k), kid, JWT_ALG_RS256) != NULL;
    issuer_keys_unref(k);
    return found;
}

static bool has_keys(const char *url)
{
    struct issuer_keys *k = issuers_keys_get(url);
    issuer_keys_unref(k);
    return k != NULL;
}

static void wait_keys(const char *url)
{
    for (int64_t end = mono_ms() + 8000; mono_ms() < end; usleep(10000))
        if (has_keys(url))
            return;
    fail_msg("no keys for %s", url);
}

static struct issuer_status wait_failures(const char *url, uint64_t n, int64_t ms)
{
    struct issuer_status st;
    for (int64_t end = mono_ms() + ms; mono_ms() < end; usleep(10000)) {
        assert_true(issuers_status(url, &st));
        if (st.fetch_failed >= n)
            return st;
    }
    fail_msg("%s: fewer than %llu failed fetches", url, (unsigned long long)n);
    return st;
}

/* ---- refetch callbacks ---- */

struct cbstate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, changed;
    pthread_t thread;
    bool same_thread; /* every call came from one thread (a fetcher) */
};

static void cb_init(struct cbstate *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->same_thread = true;
}

static void on_refetched(void *arg, bool changed)
{
    struct cbstate *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->calls == 0)
        s->thread = pthread_self();
    else if (!pthread_equal(s->thread, pthread_self()))
        s->same_thread = false;
    s->calls++;
    s->changed += changed;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void cb_wait(struct cbstate *s, int calls, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->mu);
    while (s->calls < calls && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
        ;
    int got = s->calls;
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(got, calls);
    assert_false(pthread_equal(s->thread, pthread_self())); /* never on the caller's thread */
}

static void cb_destroy(struct cbstate *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

/* ---- tests ---- */

static void test_static_sets_load_synchronously(void **state)
{
    (void)state;
    char json_path[1024], pem_path[1024];
    snprintf(json_path, sizeof(json_path), "%s/kubernetes/minikube_v1.18.10_sa.jwks.derived.json", test_fixtures_dir());
    snprintf(pem_path, sizeof(pem_path), "%s/kubernetes/minikube_v1.18.10_sa.pub.pem", test_fixtures_dir());
    char *jwks_text = test_read_file("kubernetes/minikube_v1.18.10_sa.jwks.derived.json", 1, NULL);
    assert_non_null(jwks_text);
    json_t *inline_jwks = json_loads(jwks_text, 0, NULL);
    free(jwks_text);
    assert_non_null(inline_jwks);

    json_t *docs = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:o}]",
                             "issuer", "k8s-json", "url", "https://kubernetes.default.svc.cluster.local",
                             "jwks_file", json_path,
                             "issuer", "k8s-pem", "url", "kubernetes/serviceaccount", "jwks_file", pem_path,
                             "issuer", "k8s-inline", "url", "https://inline.example", "jwks", inline_jwks);
    assert_non_null(docs);
    sync_ok(docs);
    /* no waiting: static sets are usable when issuers_sync returns */
    assert_true(has_kid("https://kubernetes.default.svc.cluster.local", K8S_KID));
    assert_true(has_kid("kubernetes/serviceaccount", K8S_KID)); /* kid derived from the PEM as kube-apiserver does */
    assert_true(has_kid("https://inline.example", K8S_KID));
    assert_false(has_kid("https://inline.example", "k1"));
    assert_true(issuers_ready());
    assert_false(has_keys("https://unregistered.example"));

    struct issuer_status st;
    assert_true(issuers_status("kubernetes/serviceaccount", &st));
    assert_true(st.is_static);
    assert_int_equal(st.nkeys, 1);
    assert_true(st.fetched_at > 0);
    assert_false(issuers_status("https://unregistered.example", &st));

    /* static issuers never refetch; unknown issuers neither */
    struct cbstate cb;
    cb_init(&cb);
    assert_false(issuers_refetch("kubernetes/serviceaccount", on_refetched, &cb));
    assert_false(issuers_refetch("https://unregistered.example", on_refetched, &cb));
    usleep(50000);
    assert_int_equal(cb.calls, 0);
    cb_destroy(&cb);

    char m[8192];
    size_t n = issuers_metrics(m, sizeof(m));
    assert_int_equal(n, strlen(m));
    assert_non_null(strstr(m, "broker_jwks_keys{issuer=\"k8s-pem\"} 1\n"));
    assert_non_null(strstr(m, "broker_jwks_age_seconds{issuer=\"k8s-json\"} "));
    assert_null(strstr(m, "broker_jwks_fetch_total{issuer=\"k8s-pem\"")); /* nothing is fetched */
    /* a small buffer gets whole lines only */
    char small[100];
    n = issuers_metrics(small, sizeof(small));
    assert_int_equal(n, strlen(small));
    assert_true(n == 0 || small[n - 1] == '\n');
}

static void test_static_failure_changes_nothing(void **state)
{
    (void)state;
    char pem_path[1024], err[512];
    snprintf(pem_path, sizeof(pem_path), "%s/kubernetes/minikube_v1.18.10_sa.pub.pem", test_fixtures_dir());
    sync_ok(json_pack("[{s:s, s:s, s:s}]", "issuer", "k8s", "url", "kubernetes/serviceaccount", "jwks_file", pem_path));
    assert_true(has_kid("kubernetes/serviceaccount", K8S_KID));

    /* a missing file */
    enum broker_err e = sync_docs(json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "issuer", "k8s2", "url", "k8s-2",
                                            "jwks_file", pem_path, "issuer", "gone", "url", "k8s-gone", "jwks_file",
                                            "/nonexistent/sa.pub"),
                                  err, sizeof(err));
    assert_int_not_equal(e, BROKER_OK);
    assert_non_null(strstr(err, "gone"));
    /* a set with only a symmetric key (never acceptable for an issuer) */
    e = sync_docs(json_pack("[{s:s, s:s, s:{s:[{s:s, s:s, s:s}]}}]", "issuer", "hmac", "url", "hmac-issuer", "jwks",
                            "keys", "kty", "oct", "kid", "h", "k", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"),
                  err, sizeof(err));
    assert_int_not_equal(e, BROKER_OK);
    assert_non_null(strstr(err, "hmac"));
    /* nothing changed: the old issuer keeps its keys, the new ones do not exist */
    assert_true(has_kid("kubernetes/serviceaccount", K8S_KID));
    assert_false(has_keys("k8s-2"));
    assert_false(has_keys("hmac-issuer"));

    /* removing the issuer drops its keys */
    sync_ok(json_array());
    assert_false(has_keys("kubernetes/serviceaccount"));
    assert_true(issuers_ready()); /* nothing registered, nothing missing */
}

static void test_fetch_via_discovery_over_verified_tls(void **state)
{
    (void)state;
    const char *url = url_of("main");
    ctl("/_control/delay?ms=300");
    sync_ok(json_pack("[o]", fetched_doc("main", "main", g_ca)));
    assert_false(issuers_ready()); /* the fetch takes >= 600 ms: not ready yet */
    wait_keys(url);
    ctl("/_control/delay?ms=0");
    assert_true(issuers_ready());
    struct issuer_status st;
    assert_true(issuers_status(url, &st));
    assert_false(st.is_static);
    assert_int_equal(st.fetch_ok, 1);
    assert_int_equal(st.fetch_failed, 0);
    assert_string_equal(st.last_result, "ok");
    assert_true(st.nkeys >= 1);
    assert_true(llabs((long long)(st.fetched_at - time(NULL))) < 30);
    assert_int_equal(served("/t/main/.well-known/openid-configuration"), 1);
    assert_int_equal(served("/t/main/jwks"), 1);

    char m[8192];
    issuers_metrics(m, sizeof(m));
    assert_non_null(strstr(m, "broker_jwks_fetch_total{issuer=\"main\",result=\"ok\"} 1\n"));
    assert_non_null(strstr(m, "broker_jwks_fetch_total{issuer=\"main\",result=\"tls\"} 0\n"));

    /* a later sync that keeps the issuer unchanged keeps its keys and does not refetch */
    sync_ok(json_pack("[o]", fetched_doc("main", "main", g_ca)));
    assert_true(has_keys(url));
    usleep(200000);
    assert_int_equal(served("/t/main/jwks"), 1);

    /* a changed source (another ca_file) drops the keys until they are fetched from it */
    char ca_copy[700];
    snprintf(ca_copy, sizeof(ca_copy), "%s/ca-copy.pem", g_dir);
    char cmd[1600];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", g_ca, ca_copy);
    assert_int_equal(system(cmd), 0);
    ctl("/_control/delay?ms=300");
    sync_ok(json_pack("[o]", fetched_doc("main", "main", ca_copy)));
    assert_false(has_keys(url));
    wait_keys(url);
    ctl("/_control/delay?ms=0");
    assert_int_equal(served("/t/main/jwks"), 2);
}

static void test_wrong_ca_never_ready(void **state)
{
    (void)state;
    const char *bad = url_of("badca"), *sys = url_of("sysca");
    sync_ok(json_pack("[o, o]", fetched_doc("badca", "badca", g_other_ca), fetched_doc("sysca", "sysca", NULL)));
    /* the first failure, then a retry after the 1 s back-off: still no keys */
    struct issuer_status st = wait_failures(bad, 2, 6000);
    assert_string_equal(st.last_result, "tls");
    assert_false(st.has_keys);
    st = wait_failures(sys, 1, 6000); /* the system store does not know the test CA */
    assert_string_equal(st.last_result, "tls");
    assert_false(has_keys(bad));
    assert_false(has_keys(sys));
    assert_false(issuers_ready());
    assert_int_equal(served("/t/badca/.well-known/openid-configuration"), 0); /* refused at the handshake */
}

static void test_hostile_discovery_refused(void **state)
{
    (void)state;
    char mm_url[256], direct_uri[256], http_uri[256], evil_ov[600];
    /* registered as localhost, the document says 127.0.0.1: not the same issuer string */
    snprintf(mm_url, sizeof(mm_url), "https://localhost:%s/t/mm", getenv("ISSUER_PORT"));
    snprintf(direct_uri, sizeof(direct_uri), "%s/t/direct/jwks", g_base);
    snprintf(http_uri, sizeof(http_uri), "http://127.0.0.1:%s/t/httpjwks/jwks", getenv("ISSUER_PORT"));
    snprintf(evil_ov, sizeof(evil_ov), "/_control/override?tenant=httpjwks&jwks_uri=%s", http_uri);
    ctl("/_control/override?tenant=evil&issuer=https://evil.example");
    ctl(evil_ov);
    ctl("/_control/override?tenant=big&jwks_pad=70000");
    ctl("/_control/override?tenant=redir&redirect=1");
    ctl("/_control/override?tenant=err&status=500");
    json_t *docs = json_pack("[{s:s, s:s, s:s}, o, o, o, o, o, {s:s, s:s, s:s, s:s}]",
                             "issuer", "mm", "url", mm_url, "ca_file", g_ca,
                             fetched_doc("evil", "evil", g_ca), fetched_doc("httpjwks", "httpjwks", g_ca),
                             fetched_doc("big", "big", g_ca), fetched_doc("redir", "redir", g_ca),
                             fetched_doc("err", "err", g_ca),
                             "issuer", "direct", "url", "https://direct.example", "jwks_uri", direct_uri,
                             "ca_file", g_ca);
    sync_ok(docs);
    static const struct {
        const char *tenant, *result;
    } cases[] = {{"evil", "issuer_mismatch"}, {"httpjwks", "bad_discovery"}, {"big", "too_large"},
                 {"redir", "http_status"},    {"err", "http_status"}};
    struct issuer_status st = wait_failures(mm_url, 1, 6000);
    assert_string_equal(st.last_result, "issuer_mismatch");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        st = wait_failures(url_of(cases[i].tenant), 1, 6000);
        assert_string_equal(st.last_result, cases[i].result);
        assert_false(has_keys(url_of(cases[i].tenant)));
    }
    assert_false(has_keys(mm_url));
    /* a refused discovery document is never followed to its JWKS */
    assert_int_equal(served("/t/mm/jwks"), 0);
    assert_int_equal(served("/t/evil/jwks"), 0);
    assert_int_equal(served("/t/httpjwks/jwks"), 0);
    assert_int_equal(served("/t/redirected/.well-known/openid-configuration"), 0); /* no redirect followed */
    /* a configured jwks_uri skips discovery */
    wait_keys("https://direct.example");
    assert_int_equal(served("/t/direct/.well-known/openid-configuration"), 0);
    assert_int_equal(served("/t/direct/jwks"), 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char clear[128];
        snprintf(clear, sizeof(clear), "/_control/override?tenant=%s", cases[i].tenant);
        ctl(clear);
    }
}

static void test_rotation_refetch_then_cooldown(void **state)
{
    (void)state;
    const char *url = url_of("rot");
    sync_ok(json_pack("[o]", fetched_doc("rot", "rot", g_ca)));
    wait_keys(url);
    json_t *st = issuer_call("/_control/rotate", 1);
    char kid[64];
    snprintf(kid, sizeof(kid), "%s", json_string_value(json_object_get(st, "active")));
    json_decref(st);
    assert_false(has_kid(url, kid)); /* tokens signed with the new key: unknown kid */
    long before = served("/t/rot/jwks");

    struct cbstate cb;
    cb_init(&cb);
    assert_true(issuers_refetch(url, on_refetched, &cb));
    cb_wait(&cb, 1, 8000);
    assert_int_equal(cb.changed, 1);
    assert_true(has_kid(url, kid));
    assert_int_equal(served("/t/rot/jwks"), before + 1);

    /* a second unknown kid right after: inside the cool-down, no fetch, no callback */
    struct cbstate cb2;
    cb_init(&cb2);
    assert_false(issuers_refetch(url, on_refetched, &cb2));
    usleep(100000);
    assert_int_equal(cb2.calls, 0);
    assert_int_equal(served("/t/rot/jwks"), before + 1);
    cb_destroy(&cb);
    cb_destroy(&cb2);
}

struct sf_arg {
    pthread_barrier_t *barrier;
    const char *url;
    struct cbstate *cb;
    bool queued;
};

static void *sf_thread(void *p)
{
    struct sf_arg *a = p;
    pthread_barrier_wait(a->barrier);
    a->queued = issuers_refetch(a->url, on_refetched, a->cb);
    return NULL;
}

static void test_single_flight(void **state)
{
    (void)state;
    enum { N = 50 };
    const char *url = url_of("sf");
    sync_ok(json_pack("[o]", fetched_doc("sf", "sf", g_ca)));
    wait_keys(url);
    long disc = served("/t/sf/.well-known/openid-configuration"), jw = served("/t/sf/jwks");
    ctl("/_control/delay?ms=400"); /* the fetch outlasts the burst of callers */

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N);
    struct cbstate cb;
    cb_init(&cb);
    pthread_t th[N];
    struct sf_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct sf_arg){.barrier = &barrier, .url = url, .cb = &cb};
        assert_int_equal(pthread_create(&th[i], NULL, sf_thread, &args[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        assert_true(args[i].queued);
    cb_wait(&cb, N, 10000);
    ctl("/_control/delay?ms=0");
    assert_int_equal(cb.changed, 0); /* same keys served again */
    assert_true(cb.same_thread);
    assert_int_equal(served("/t/sf/jwks"), jw + 1);
    assert_int_equal(served("/t/sf/.well-known/openid-configuration"), disc + 1);
    pthread_barrier_destroy(&barrier);
    cb_destroy(&cb);
}

/* An unknown kid that comes while a fetch it did not ask for runs (here the first fetch after
 * sync; in service, a periodic refresh that began before the issuer rotated) does not take that
 * fetch's answer, which may predate the rotation: it gets the fetch after it, one for all such
 * callers. A caller during its own refetch still joins that one (test_single_flight). */
static void test_refetch_during_unrelated_fetch(void **state)
{
    (void)state;
    const char *url = url_of("late");
    long jw = served("/t/late/jwks");
    ctl("/_control/delay?ms=300");
    sync_ok(json_pack("[o]", fetched_doc("late", "late", g_ca)));
    struct issuer_status st = {0};
    for (int64_t end = mono_ms() + 5000; mono_ms() < end && !st.fetching; usleep(2000))
        assert_true(issuers_status(url, &st));
    assert_true(st.fetching); /* in flight: nobody waits for it yet */

    struct cbstate cb, cb2;
    cb_init(&cb);
    cb_init(&cb2);
    assert_true(issuers_refetch(url, on_refetched, &cb));
    assert_true(issuers_refetch(url, on_refetched, &cb2));
    cb_wait(&cb, 1, 10000);
    cb_wait(&cb2, 1, 10000);
    ctl("/_control/delay?ms=0");
    assert_int_equal(served("/t/late/jwks"), jw + 2); /* the first fetch, then one more for both */
    assert_true(has_keys(url));
    cb_destroy(&cb);
    cb_destroy(&cb2);
}

static void test_outage_keeps_last_good_set(void **state)
{
    (void)state;
    const char *url = url_of("out");
    sync_ok(json_pack("[o]", fetched_doc("out", "out", g_ca)));
    wait_keys(url);
    struct issuer_keys *before = issuers_keys_get(url);
    assert_non_null(before);
    ctl("/_control/outage?on=1");
    struct cbstate cb;
    cb_init(&cb);
    assert_true(issuers_refetch(url, on_refetched, &cb));
    cb_wait(&cb, 1, 8000);
    ctl("/_control/outage?on=0");
    assert_int_equal(cb.changed, 0);
    struct issuer_keys *after = issuers_keys_get(url);
    assert_ptr_equal(after, before); /* the same set keeps serving */
    struct issuer_status st;
    assert_true(issuers_status(url, &st));
    assert_string_equal(st.last_result, "http_status");
    assert_int_equal(st.fetch_failed, 1);
    assert_true(issuers_ready());
    issuer_keys_unref(before);
    issuer_keys_unref(after);
    cb_destroy(&cb);

    /* back online: the back-off retry (1 s) picks the issuer up again by itself */
    for (int64_t end = mono_ms() + 6000; mono_ms() < end; usleep(20000)) {
        assert_true(issuers_status(url, &st));
        if (st.fetch_ok >= 2)
            break;
    }
    assert_int_equal(st.fetch_ok, 2);
    assert_string_equal(st.last_result, "ok");
}

static void test_slow_issuer_times_out_within_bound(void **state)
{
    (void)state;
    const char *url = url_of("slow");
    sync_ok(json_pack("[o]", fetched_doc("slow", "slow", g_ca)));
    wait_keys(url);
    ctl("/_control/delay?ms=8000");
    struct cbstate cb;
    cb_init(&cb);
    int64_t t0 = mono_ms();
    assert_true(issuers_refetch(url, on_refetched, &cb));
    cb_wait(&cb, 1, 12000);
    int64_t took = mono_ms() - t0;
    ctl("/_control/delay?ms=0");
    assert_true(took >= BROKER_JWKS_FETCH_TIMEOUT_MS - 100);
    assert_true(took < BROKER_JWKS_FETCH_TIMEOUT_MS + 1500);
    assert_int_equal(cb.changed, 0);
    assert_true(has_keys(url));
    struct issuer_status st;
    assert_true(issuers_status(url, &st));
    assert_string_equal(st.last_result, "timeout");
    cb_destroy(&cb);
}

static void test_removed_while_fetching(void **state)
{
    (void)state;
    const char *url = url_of("rm");
    ctl("/_control/delay?ms=700");
    sync_ok(json_pack("[o]", fetched_doc("rm", "rm", g_ca)));
    usleep(200000); /* the first fetch is running */
    struct cbstate cb;
    cb_init(&cb);
    assert_true(issuers_refetch(url, on_refetched, &cb)); /* joins it */
    sync_ok(json_array());                                 /* the issuer goes away meanwhile */
    assert_false(has_keys(url));
    assert_false(issuers_refetch(url, on_refetched, &cb));
    cb_wait(&cb, 1, 5000); /* still answered, exactly once, by a fetcher */
    ctl("/_control/delay?ms=0");
    assert_int_equal(cb.changed, 0);
    assert_false(has_keys(url)); /* its result was discarded */
    usleep(100000);
    assert_int_equal(cb.calls, 1);
    cb_destroy(&cb);
}

static void test_stop_answers_pending_callbacks(void **state)
{
    (void)state;
    const char *url = url_of("stop");
    sync_ok(json_pack("[o]", fetched_doc("stop", "stop", g_ca)));
    wait_keys(url);
    ctl("/_control/delay?ms=6000");
    struct cbstate cb;
    cb_init(&cb);
    assert_true(issuers_refetch(url, on_refetched, &cb));
    usleep(100000);
    int64_t t0 = mono_ms();
    issuers_stop(); /* aborts the transfer instead of waiting out the delay */
    assert_true(mono_ms() - t0 < 3000);
    assert_int_equal(cb.calls, 1);
    assert_int_equal(cb.changed, 0);
    assert_false(has_keys(url));
    assert_false(issuers_refetch(url, on_refetched, &cb));
    ctl("/_control/delay?ms=0");
    assert_int_equal(issuers_start(), BROKER_OK);
    cb_destroy(&cb);
}

/* fetched_doc with a bearer_token_file. */
static json_t *bearer_doc(const char *tenant, const char *file)
{
    json_t *d = fetched_doc(tenant, tenant, g_ca);
    json_object_set_new(d, "bearer_token_file", json_string(file));
    return d;
}

static void test_bearer_token_file(void **state)
{
    (void)state;
    char tok[700], big[700], ctrl[700], missing[700], path[256], other_jwks[256], q[512], cfg_jwks[256];
    snprintf(tok, sizeof(tok), "%s/tokens/bear.token", g_dir); /* tokens/ is BROKER_BEARER_TOKEN_FILES */
    snprintf(big, sizeof(big), "%s/tokens/bear-big.token", g_dir);
    snprintf(ctrl, sizeof(ctrl), "%s/tokens/bear-ctrl.token", g_dir);
    snprintf(missing, sizeof(missing), "%s/tokens/bear-missing.token", g_dir);
    write_file(tok, "tokA\n", 5); /* files end with a newline; the header does not */
    char *pad = malloc(BROKER_MAX_BEARER_FILE_BYTES + 2);
    assert_non_null(pad);
    memset(pad, 'a', BROKER_MAX_BEARER_FILE_BYTES + 1);
    write_file(big, pad, BROKER_MAX_BEARER_FILE_BYTES + 1);
    free(pad);
    write_file(ctrl, "tok\x01A\n", 6); /* a control character inside */
    unlink(missing);
    for (const char *const *t = (const char *const[]){"bear", "bearnone", "bearbig", "bearctl", "bearmiss", "bearx",
                                                       "bearcfg", "bearsame", NULL};
         *t != NULL; t++)
        override(*t, "require_bearer=tokA");
    /* a discovery document pointing the JWKS at another origin (localhost vs 127.0.0.1) */
    snprintf(other_jwks, sizeof(other_jwks), "https://localhost:%s/t/bearx/jwks", getenv("ISSUER_PORT"));
    snprintf(q, sizeof(q), "require_bearer=tokA&jwks_uri=%s", other_jwks);
    override("bearx", q);
    /* a configured jwks_uri on another origin than url does not get the token either (an admin
     * could name any host); one on url's origin does */
    snprintf(cfg_jwks, sizeof(cfg_jwks), "%s/t/bearcfg/jwks", g_base);
    char same_jwks[256], same_url[256];
    snprintf(same_jwks, sizeof(same_jwks), "%s/t/bearsame/jwks", g_base);
    snprintf(same_url, sizeof(same_url), "%s", url_of("bearsame"));
    json_t *same = json_pack("{s:s, s:s, s:s, s:s, s:s}", "issuer", "bearsame", "url", same_url, "jwks_uri",
                             same_jwks, "ca_file", g_ca, "bearer_token_file", tok);
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:s, s:s}", "issuer", "bearcfg", "url", "https://bearcfg.example",
                            "jwks_uri", cfg_jwks, "ca_file", g_ca, "bearer_token_file", tok);
    sync_ok(json_pack("[o, o, o, o, o, o, o, o]", bearer_doc("bear", tok), fetched_doc("bearnone", "bearnone", g_ca),
                      bearer_doc("bearbig", big), bearer_doc("bearctl", ctrl), bearer_doc("bearmiss", missing),
                      bearer_doc("bearx", tok), cfg, same));

    char url[256];
    snprintf(url, sizeof(url), "%s", url_of("bear")); /* url_of's buffers are reused */
    wait_keys(url);
    assert_int_equal(authorized("/t/bear/.well-known/openid-configuration"), 1);
    assert_int_equal(authorized("/t/bear/jwks"), 1);
    wait_keys(same_url);
    assert_int_equal(authorized("/t/bearsame/jwks"), 1);
    struct issuer_status st = wait_failures("https://bearcfg.example", 1, 6000);
    assert_string_equal(st.last_result, "http_status"); /* the issuer's 401: asked without the token */
    assert_int_equal(served("/t/bearcfg/jwks"), 1);
    assert_int_equal(authorized("/t/bearcfg/jwks"), 0);

    st = wait_failures(url_of("bearnone"), 1, 6000);
    assert_string_equal(st.last_result, "http_status"); /* the issuer's 401 */
    assert_int_equal(authorized("/t/bearnone/.well-known/openid-configuration"), 0);
    static const char *const cred[] = {"bearbig", "bearctl", "bearmiss"};
    for (size_t i = 0; i < 3; i++) {
        st = wait_failures(url_of(cred[i]), 1, 6000);
        assert_string_equal(st.last_result, "credentials");
        assert_false(st.has_keys);
        snprintf(path, sizeof(path), "/t/%s/.well-known/openid-configuration", cred[i]);
        assert_int_equal(served(path), 0); /* refused before any request */
    }
    metrics_has("broker_jwks_fetch_total{issuer=\"bearmiss\",result=\"credentials\"} ");
    /* the discovered JWKS on another origin is fetched without the token (and so refused here) */
    st = wait_failures(url_of("bearx"), 1, 6000);
    assert_string_equal(st.last_result, "http_status");
    assert_int_equal(authorized("/t/bearx/.well-known/openid-configuration"), 1);
    assert_int_equal(served("/t/bearx/jwks"), 1);
    assert_int_equal(authorized("/t/bearx/jwks"), 0);

    /* the file disappears: a credentials failure, the last good set keeps serving */
    struct issuer_keys *before = issuers_keys_get(url);
    long disc = served("/t/bear/.well-known/openid-configuration");
    assert_int_equal(unlink(tok), 0);
    struct cbstate cb;
    cb_init(&cb);
    assert_true(issuers_refetch(url, on_refetched, &cb));
    cb_wait(&cb, 1, 8000);
    assert_int_equal(cb.changed, 0);
    assert_true(issuers_status(url, &st));
    assert_string_equal(st.last_result, "credentials");
    struct issuer_keys *after = issuers_keys_get(url);
    assert_ptr_equal(after, before);
    issuer_keys_unref(after);
    issuer_keys_unref(before);
    assert_int_equal(served("/t/bear/.well-known/openid-configuration"), disc);

    /* rotated: the issuer now wants tokB and the file has it; the back-off retry reads it */
    override("bear", "require_bearer=tokB");
    write_file(tok, "tokB \r\n", 7);
    for (int64_t end = mono_ms() + 8000; mono_ms() < end; usleep(20000)) {
        assert_true(issuers_status(url, &st));
        if (st.fetch_ok >= 2)
            break;
    }
    assert_int_equal(st.fetch_ok, 2);
    assert_string_equal(st.last_result, "ok");
    assert_int_equal(authorized("/t/bear/jwks"), 2);
    cb_destroy(&cb);
    for (const char *const *t = (const char *const[]){"bear", "bearnone", "bearbig", "bearctl", "bearmiss", "bearx",
                                                       "bearcfg", "bearsame", NULL};
         *t != NULL; t++)
        override(*t, NULL);
}

/* BROKER_BEARER_TOKEN_FILES (here ISSUER_DIR/tokens/): a file outside it is never read nor sent, even
 * one holding exactly the token the issuer wants, and neither is one reached through a symlink
 * inside the allowed directory; the fetch fails with "credentials" before any request. */
static void test_bearer_allowlist(void **state)
{
    (void)state;
    char out[700], esc[700], in[700];
    snprintf(out, sizeof(out), "%s/outside.token", g_dir);
    snprintf(esc, sizeof(esc), "%s/tokens/escape.token", g_dir);
    snprintf(in, sizeof(in), "%s/tokens/in.token", g_dir);
    write_file(out, "tokS\n", 5);
    write_file(in, "tokS\n", 5);
    unlink(esc);
    assert_int_equal(symlink("../outside.token", esc), 0);
    static const char *const tenants[] = {"balout", "balesc", "baldot", "balin"};
    for (size_t i = 0; i < 4; i++)
        override(tenants[i], "require_bearer=tokS");
    char dotted[800];
    snprintf(dotted, sizeof(dotted), "%s/tokens/../outside.token", g_dir);
    sync_ok(json_pack("[o, o, o, o]", bearer_doc("balout", out), bearer_doc("balesc", esc),
                      bearer_doc("baldot", dotted), bearer_doc("balin", in)));
    wait_keys(url_of("balin"));
    assert_int_equal(authorized("/t/balin/.well-known/openid-configuration"), 1);
    char path[256];
    for (size_t i = 0; i < 3; i++) {
        struct issuer_status st = wait_failures(url_of(tenants[i]), 1, 6000);
        assert_string_equal(st.last_result, "credentials");
        assert_false(st.has_keys);
        snprintf(path, sizeof(path), "/t/%s/.well-known/openid-configuration", tenants[i]);
        assert_int_equal(served(path), 0); /* nothing was sent anywhere */
        assert_int_equal(authorized(path), 0);
    }
    /* the direct call (as broker policy test makes it) follows the same rule */
    struct issuers_fetch_out fo;
    char u[256];
    snprintf(u, sizeof(u), "%s", url_of("balout"));
    const struct issuers_fetch_src src = {.url = u, .ca_file = g_ca, .bearer_token_file = out};
    assert_int_equal(issuers_fetch_from(&src, NULL, &fo), ISSUERS_FETCH_CREDENTIALS);
    assert_null(fo.jwks);
    assert_int_equal(served("/t/balout/.well-known/openid-configuration"), 0);
    const struct issuers_fetch_src ok_src = {.url = url_of("balin"), .ca_file = g_ca, .bearer_token_file = in};
    assert_int_equal(issuers_fetch_from(&ok_src, NULL, &fo), ISSUERS_FETCH_OK);
    jwks_free(fo.jwks);
    for (size_t i = 0; i < 4; i++)
        override(tenants[i], NULL);
    sync_ok(json_array());
    unlink(esc);
    unlink(out);
    unlink(in);
}

/* A policy reload that names another bearer_token_file fetches at once instead of waiting out
 * the back-off (the operator just fixed the credential). */
static void test_bearer_file_change_fetches_now(void **state)
{
    (void)state;
    char gone[700], good[700];
    snprintf(gone, sizeof(gone), "%s/tokens/bchg-missing.token", g_dir);
    snprintf(good, sizeof(good), "%s/tokens/bchg.token", g_dir);
    unlink(gone);
    write_file(good, "tokC\n", 5);
    override("bchg", "require_bearer=tokC");
    const char *url = url_of("bchg");
    sync_ok(json_pack("[o]", bearer_doc("bchg", gone)));
    struct issuer_status st = wait_failures(url, 2, 6000); /* 1 s back-off, the next is 2 s away */
    assert_string_equal(st.last_result, "credentials");
    int64_t t0 = mono_ms();
    sync_ok(json_pack("[o]", bearer_doc("bchg", good)));
    wait_keys(url);
    assert_true(mono_ms() - t0 < 1500);
    assert_true(issuers_status(url, &st));
    assert_int_equal(st.fetch_ok, 1);
    assert_int_equal(st.fetch_failed, 2);
    override("bchg", NULL);
}

static void test_cache_control_parser(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int64_t want;
    } cases[] = {
        {"max-age=120", 120},
        {"public, max-age=19724, must-revalidate, no-transform", 19724}, /* Google's shape */
        {"MAX-AGE=60", 60},
        {"max-age = 75", 75},
        {"max-age=\"300\"", 300},
        {"private,max-age=0", 0},
        {"no-store", 0},
        {"No-Cache", 0},
        {"max-age=600, no-cache", 0},
        {"no-cache=\"set-cookie\", max-age=600", 600}, /* a qualified no-cache is about fields */
        {"s-maxage=100", -1},                           /* for shared caches, not Broker */
        {"s-maxage=100, max-age=200", 200},
        {"max-age=120, max-age=5", 120},                /* the first occurrence */
        {"max-age=abc", -1},
        {"max-age=abc, max-age=120", -1},
        {"max-age=", -1},
        {"max-age", -1},
        {"max-age=-5", -1},
        {"max-age=12.5", -1},
        {"max-age=99999999999999999999999999", (int64_t)1 << 31},
        {"", -1},
        {",, ,", -1},
        {"max-age=1 junk", -1},
        {"=5", -1},
        {"max-age=\"12", -1},
        {"max-age=\"1\\", -1},
        {"\"max-age=5\"", -1},
        {"max-age=5;", -1},
        {"garbage\x01\xff", -1},
        {"no-store, max-age=1 junk", 0}, /* a malformed rest never overrides an uncached directive */
        {"no-cache, =5", 0},
        {"max-age=1 junk, no-store", -1}, /* parsing stops at the junk */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = issuers_fetch_cache_control((const uint8_t *)cases[i].v, strlen(cases[i].v));
        if (got != cases[i].want)
            fail_msg("Cache-Control \"%s\": %lld, want %lld", cases[i].v, (long long)got, (long long)cases[i].want);
    }
    /* never past len, no NUL needed; a NUL byte inside is junk */
    assert_int_equal(issuers_fetch_cache_control((const uint8_t *)"max-age=1234", 10), 12);
    assert_int_equal(issuers_fetch_cache_control((const uint8_t *)"max-age=1\0", 10), -1);
    assert_int_equal(issuers_fetch_cache_control(NULL, 0), -1);

    assert_int_equal(issuers_fetch_refresh_s(-1), BROKER_JWKS_REFRESH_S);
    assert_int_equal(issuers_fetch_refresh_s(0), BROKER_JWKS_MIN_REFRESH_S);
    assert_int_equal(issuers_fetch_refresh_s(5), BROKER_JWKS_MIN_REFRESH_S);
    assert_int_equal(issuers_fetch_refresh_s(120), 120);
    assert_int_equal(issuers_fetch_refresh_s(BROKER_JWKS_MAX_REFRESH_S), BROKER_JWKS_MAX_REFRESH_S);
    assert_int_equal(issuers_fetch_refresh_s((int64_t)1 << 31), BROKER_JWKS_MAX_REFRESH_S);
    assert_true(BROKER_JWKS_MIN_REFRESH_S <= BROKER_JWKS_REFRESH_S && BROKER_JWKS_REFRESH_S <= BROKER_JWKS_MAX_REFRESH_S);
}

static void test_cache_control_sets_refresh(void **state)
{
    (void)state;
    static const struct {
        const char *tenant, *query;
        int64_t refresh;
    } cases[] = {
        {"cc120", "cache_control=public,%20max-age=120", 120},
        {"cc5", "cache_control=max-age=5", BROKER_JWKS_MIN_REFRESH_S},
        {"cchuge", "cache_control=max-age=1000000000", BROKER_JWKS_MAX_REFRESH_S},
        {"ccnone", "cache_control=none", BROKER_JWKS_REFRESH_S},
        {"ccbad", "cache_control=max-age=banana,%20%22%3D", BROKER_JWKS_REFRESH_S},
        {"ccstore", NULL, BROKER_JWKS_MIN_REFRESH_S}, /* issuer.py's default: no-store */
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    json_t *docs = json_array();
    for (size_t i = 0; i < N; i++) {
        override(cases[i].tenant, cases[i].query);
        json_array_append_new(docs, fetched_doc(cases[i].tenant, cases[i].tenant, g_ca));
    }
    sync_ok(docs);
    for (size_t i = 0; i < N; i++) {
        const char *url = url_of(cases[i].tenant);
        wait_keys(url);
        struct issuer_status st;
        assert_true(issuers_status(url, &st));
        if (st.refresh_s != cases[i].refresh)
            fail_msg("%s: refresh %lld, want %lld", cases[i].tenant, (long long)st.refresh_s,
                     (long long)cases[i].refresh);
        int64_t left = st.next_fetch_at - (int64_t)time(NULL);
        assert_true(left > cases[i].refresh - 10 && left <= cases[i].refresh);
    }
    char m[65536];
    issuers_metrics(m, sizeof(m));
    const char *p = strstr(m, "broker_jwks_next_refresh_seconds{issuer=\"cc120\"} ");
    assert_non_null(p);
    long long left = strtoll(strchr(p, '}') + 2, NULL, 10);
    assert_true(left > 110 && left <= 120);
    assert_non_null(strstr(m, "broker_jwks_next_refresh_seconds{issuer=\"cchuge\"} 21"));
    for (size_t i = 0; i < N; i++)
        override(cases[i].tenant, NULL);
}

static void test_too_many_keys(void **state)
{
    (void)state;
    char q[64];
    snprintf(q, sizeof(q), "jwks_keys=%d", BROKER_MAX_JWKS_KEYS);
    override("keysmax", q);
    snprintf(q, sizeof(q), "jwks_keys=%d", BROKER_MAX_JWKS_KEYS + 1);
    override("keysover", q);
    sync_ok(json_pack("[o, o]", fetched_doc("keysmax", "keysmax", g_ca), fetched_doc("keysover", "keysover", g_ca)));
    wait_keys(url_of("keysmax"));
    struct issuer_status st;
    assert_true(issuers_status(url_of("keysmax"), &st));
    assert_int_equal(st.nkeys, BROKER_MAX_JWKS_KEYS);
    st = wait_failures(url_of("keysover"), 1, 6000);
    assert_string_equal(st.last_result, "bad_jwks");
    assert_false(st.has_keys);
    metrics_has("broker_jwks_keys{issuer=\"keysmax\"} 32\n");
    metrics_has("broker_jwks_keys{issuer=\"keysover\"} 0\n");
    override("keysmax", NULL);
    override("keysover", NULL);
}

/* An issuer that turns hostile after a good fetch: every refusal keeps the last good set,
 * is counted under its result, and the issuer recovers by itself once it behaves again. */
static void test_hostile_refetch_keeps_last_good_set(void **state)
{
    (void)state;
    char http_q[300], loc_q[300], keys_q[64];
    snprintf(http_q, sizeof(http_q), "jwks_uri=http://127.0.0.1:%s/t/lghttp/jwks", getenv("ISSUER_PORT"));
    snprintf(loc_q, sizeof(loc_q), "location=https://localhost:%s/t/lgtarget/jwks", getenv("ISSUER_PORT"));
    snprintf(keys_q, sizeof(keys_q), "jwks_keys=%d", BROKER_MAX_JWKS_KEYS + 1);
    const struct {
        const char *tenant, *query, *result;
    } cases[] = {
        {"lgmm", "issuer=https://evil.example", "issuer_mismatch"},
        {"lghttp", http_q, "bad_discovery"},
        {"lgbig", "jwks_pad=70000", "too_large"},
        {"lgkeys", keys_q, "bad_jwks"},
        {"lgloc", loc_q, "http_status"}, /* a redirect to another host is not followed */
        {"lghdr", "header_pad=70000", "too_large"},
        {"lgauth", "require_bearer=zzz", "http_status"},
        {"lgdown", "status=503", "http_status"},
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    json_t *docs = json_array();
    for (size_t i = 0; i < N; i++)
        json_array_append_new(docs, fetched_doc(cases[i].tenant, cases[i].tenant, g_ca));
    sync_ok(docs);
    struct issuer_keys *before[N];
    struct cbstate cb[N];
    for (size_t i = 0; i < N; i++) {
        wait_keys(url_of(cases[i].tenant));
        before[i] = issuers_keys_get(url_of(cases[i].tenant));
        override(cases[i].tenant, cases[i].query);
    }
    for (size_t i = 0; i < N; i++) {
        cb_init(&cb[i]);
        assert_true(issuers_refetch(url_of(cases[i].tenant), on_refetched, &cb[i]));
    }
    for (size_t i = 0; i < N; i++) {
        char line[256];
        cb_wait(&cb[i], 1, 8000);
        assert_int_equal(cb[i].changed, 0);
        struct issuer_status st;
        assert_true(issuers_status(url_of(cases[i].tenant), &st));
        if (strcmp(st.last_result, cases[i].result) != 0)
            fail_msg("%s: %s, want %s", cases[i].tenant, st.last_result, cases[i].result);
        assert_int_equal(st.fetch_ok, 1);
        struct issuer_keys *now = issuers_keys_get(url_of(cases[i].tenant));
        assert_ptr_equal(now, before[i]); /* the last good set keeps serving */
        issuer_keys_unref(now);
        snprintf(line, sizeof(line), "broker_jwks_fetch_total{issuer=\"%s\",result=\"%s\"} ", cases[i].tenant,
                 cases[i].result);
        metrics_has(line);
    }
    assert_int_equal(served("/t/lghttp/jwks"), 1);           /* only the good fetch */
    assert_int_equal(served("/t/lgtarget/jwks"), 0);         /* the redirect target was never asked */
    assert_true(issuers_ready());
    /* it behaves again: the back-off retry (1 s, then 2 s) recovers every one */
    for (size_t i = 0; i < N; i++)
        override(cases[i].tenant, NULL);
    for (size_t i = 0; i < N; i++) {
        struct issuer_status st;
        for (int64_t end = mono_ms() + 8000; mono_ms() < end; usleep(20000)) {
            assert_true(issuers_status(url_of(cases[i].tenant), &st));
            if (st.fetch_ok >= 2)
                break;
        }
        assert_int_equal(st.fetch_ok, 2);
        assert_string_equal(st.last_result, "ok");
        issuer_keys_unref(before[i]);
        cb_destroy(&cb[i]);
    }
}

/* Below the policy layer (which already refuses http:// jwks_uri): the fetcher itself refuses a
 * non-https URL without connecting, and answers a redirect to another host with http_status. */
static void test_fetch_refuses_http_and_cross_host_redirect(void **state)
{
    (void)state;
    char http_uri[256], loc_q[300];
    snprintf(http_uri, sizeof(http_uri), "http://127.0.0.1:%s/t/plain/jwks", getenv("ISSUER_PORT"));
    struct issuers_fetch_out out;
    struct issuers_fetch_src src = {.url = "https://plain.example", .jwks_uri = http_uri, .ca_file = g_ca};
    assert_int_equal(issuers_fetch_from(&src, NULL, &out), ISSUERS_FETCH_NETWORK);
    assert_null(out.jwks);
    assert_string_equal(out.stage, "jwks");
    assert_int_equal(served("/t/plain/jwks"), 0);

    snprintf(loc_q, sizeof(loc_q), "location=https://localhost:%s/t/xtarget/.well-known/openid-configuration",
             getenv("ISSUER_PORT"));
    override("xredir", loc_q);
    src = (struct issuers_fetch_src){.url = url_of("xredir"), .ca_file = g_ca};
    assert_int_equal(issuers_fetch_from(&src, NULL, &out), ISSUERS_FETCH_HTTP_STATUS);
    assert_int_equal(out.status, 302);
    assert_string_equal(out.stage, "discovery");
    assert_int_equal(served("/t/xredir/.well-known/openid-configuration"), 1);
    assert_int_equal(served("/t/xtarget/.well-known/openid-configuration"), 0);
    override("xredir", NULL);

    /* the good path through the same entry point, with its Cache-Control */
    override("direct2", "cache_control=max-age=777");
    src = (struct issuers_fetch_src){.url = url_of("direct2"), .ca_file = g_ca};
    assert_int_equal(issuers_fetch_from(&src, NULL, &out), ISSUERS_FETCH_OK);
    assert_int_equal(out.max_age_s, 777);
    assert_true(out.jwks->n >= 1);
    jwks_free(out.jwks);
    override("direct2", NULL);
}

static void test_connect_to(void **state)
{
    (void)state;
    char err[256], spec[300];
    const char *port = getenv("ISSUER_PORT");
    static const char *const bad[] = {
        "localhost:1:127.0.0.1",     "localhost:0:127.0.0.1:443", "localhost:70000:127.0.0.1:443",
        "ho st:1:127.0.0.1:443",     "[::1]:1:127.0.0.1:443",     "a:1:b:2:",
        "a:1:b:2,",                  ",",                         "a:1:b:x",
        ":1:b:2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (issuers_fetch_connect_to(bad[i], err, sizeof(err)) != BROKER_ERR_CONFIG)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(err, "BROKER_FETCH_CONNECT_TO"));
    }
    char many[1024] = "";
    for (int i = 0; i < 17; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh%d:1:127.0.0.1:2", i ? "," : "", i);
    assert_int_equal(issuers_fetch_connect_to(many, err, sizeof(err)), BROKER_ERR_CONFIG);
    assert_int_equal(issuers_fetch_connect_to("a.example:443:b.example:8443,c:1:d:2", err, sizeof(err)), BROKER_OK);
    assert_int_equal(issuers_fetch_connect_to("", err, sizeof(err)), BROKER_OK);
    assert_int_equal(issuers_fetch_connect_to(NULL, err, sizeof(err)), BROKER_OK);

    /* live: https://localhost:1 (nothing listens there) reaches the issuer through the mapping and
     * verifies its certificate as "localhost"; wrong.test maps to the same server, whose
     * certificate does not name it: refused at the handshake */
    char ct_iss[128], ct_q[400];
    snprintf(ct_iss, sizeof(ct_iss), "https://localhost:1/t/ct");
    snprintf(ct_q, sizeof(ct_q), "issuer=%s&jwks_uri=%s/jwks", ct_iss, ct_iss);
    override("ct", ct_q);
    snprintf(spec, sizeof(spec), "localhost:1:127.0.0.1:%s,wrong.test:443:127.0.0.1:%s", port, port);
    issuers_stop();
    assert_int_equal(issuers_fetch_connect_to(spec, err, sizeof(err)), BROKER_OK);
    assert_int_equal(issuers_start(), BROKER_OK);
    json_t *docs = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "issuer", "ct", "url", ct_iss, "ca_file", g_ca,
                             "issuer", "ctbad", "url", "https://wrong.test/t/ctbad", "ca_file", g_ca);
    sync_ok(docs);
    wait_keys(ct_iss);
    assert_int_equal(served("/t/ct/.well-known/openid-configuration"), 1);
    assert_int_equal(served("/t/ct/jwks"), 1);
    struct issuer_status st = wait_failures("https://wrong.test/t/ctbad", 1, 6000);
    assert_string_equal(st.last_result, "tls");
    assert_int_equal(served("/t/ctbad/.well-known/openid-configuration"), 0);

    /* without the mapping the same issuer is unreachable */
    issuers_stop();
    assert_int_equal(issuers_fetch_connect_to(NULL, err, sizeof(err)), BROKER_OK);
    assert_int_equal(issuers_start(), BROKER_OK);
    sync_ok(json_pack("[{s:s, s:s, s:s}]", "issuer", "ct", "url", ct_iss, "ca_file", g_ca));
    st = wait_failures(ct_iss, 1, 6000);
    assert_string_equal(st.last_result, "network");
    assert_false(st.has_keys);
    override("ct", NULL);
    sync_ok(json_array());
}

static int group_setup(void **state)
{
    (void)state;
    const char *d = getenv("ISSUER_DIR"), *p = getenv("ISSUER_PORT"), *o = getenv("OTHER_CA");
    if (d == NULL || p == NULL || o == NULL) {
        fprintf(stderr, "run through tests/integration/test_issuers.sh (needs ISSUER_DIR, ISSUER_PORT, OTHER_CA)\n");
        return -1;
    }
    snprintf(g_dir, sizeof(g_dir), "%s", d);
    snprintf(g_base, sizeof(g_base), "https://127.0.0.1:%s", p);
    snprintf(g_other_ca, sizeof(g_other_ca), "%s", o);
    snprintf(g_ca, sizeof(g_ca), "%s/ca.pem", g_dir);
    /* bearer token files live in ISSUER_DIR/tokens/, the only place BROKER_BEARER_TOKEN_FILES allows */
    char tokens[600], err[256];
    snprintf(tokens, sizeof(tokens), "%s/tokens/", g_dir);
    if ((mkdir(tokens, 0700) != 0 && errno != EEXIST) || bearer_allowlist_set(tokens, err, sizeof(err)) != BROKER_OK) {
        fprintf(stderr, "cannot set up %s\n", tokens);
        return -1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return issuers_start() == BROKER_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    issuers_stop();
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_sets_load_synchronously),
        cmocka_unit_test(test_static_failure_changes_nothing),
        cmocka_unit_test(test_fetch_via_discovery_over_verified_tls),
        cmocka_unit_test(test_wrong_ca_never_ready),
        cmocka_unit_test(test_hostile_discovery_refused),
        cmocka_unit_test(test_rotation_refetch_then_cooldown),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_refetch_during_unrelated_fetch),
        cmocka_unit_test(test_outage_keeps_last_good_set),
        cmocka_unit_test(test_slow_issuer_times_out_within_bound),
        cmocka_unit_test(test_removed_while_fetching),
        cmocka_unit_test(test_stop_answers_pending_callbacks),
        cmocka_unit_test(test_bearer_token_file),
        cmocka_unit_test(test_bearer_file_change_fetches_now),
        cmocka_unit_test(test_bearer_allowlist),
        cmocka_unit_test(test_cache_control_parser),
        cmocka_unit_test(test_cache_control_sets_refresh),
        cmocka_unit_test(test_too_many_keys),
        cmocka_unit_test(test_hostile_refetch_keeps_last_good_set),
        cmocka_unit_test(test_fetch_refuses_http_and_cross_host_redirect),
        cmocka_unit_test(test_connect_to),
    };
    return cmocka_run_group_tests_name("issuers", tests, group_setup, group_teardown);
}
