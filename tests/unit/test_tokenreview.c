/* TokenReview: the answer cache with a fixed clock, the request body, the response parser, the
 * bearer file reader, the API without threads, and "token_review" in issuer documents.
 * Includes the module under test to reach its static functions. */
#include "test_util.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "tokenreview.c"

#define AUD "https://broker.example.com"

static void key_of(uint8_t k[TOKENREVIEW_KEY_LEN], unsigned set, uint8_t tag)
{
    memset(k, tag, TOKENREVIEW_KEY_LEN);
    k[0] = (uint8_t)set, k[1] = (uint8_t)(set >> 8), k[2] = 0, k[3] = 0; /* cache_set() reads 4 bytes */
}

static void test_cache(void **state)
{
    (void)state;
    uint8_t a[TOKENREVIEW_KEY_LEN], b[TOKENREVIEW_KEY_LEN];
    enum tokenreview_result r = TOKENREVIEW_ERR_INTERNAL;
    memset(cache, 0, sizeof(cache));
    key_of(a, 7, 0xa1);
    key_of(b, 7, 0xb2);

    assert_false(cache_get(a, 1000, &r));
    cache_put(a, TOKENREVIEW_AUTHENTICATED, 1000, 6000);
    assert_true(cache_get(a, 1000, &r));
    assert_int_equal(r, TOKENREVIEW_AUTHENTICATED);
    assert_true(cache_get(a, 5999, &r));
    assert_false(cache_get(a, 6000, &r)); /* expired exactly at its expiry */
    assert_false(cache_get(b, 1000, &r)); /* same set, other key */

    /* negative answers are cached too, and a new answer replaces the old one */
    cache_put(a, TOKENREVIEW_REJECTED, 2000, 9000);
    assert_true(cache_get(a, 8000, &r));
    assert_int_equal(r, TOKENREVIEW_REJECTED);
    size_t used = 0;
    for (size_t i = 0; i < CACHE_WAYS; i++)
        used += cache[7][i].expires_ms != 0;
    assert_int_equal(used, 1);

    /* an answer that is already stale is not stored */
    cache_put(b, TOKENREVIEW_AUTHENTICATED, 5000, 5000);
    assert_false(cache_get(b, 4000, &r));
}

static void test_cache_eviction(void **state)
{
    (void)state;
    uint8_t k[CACHE_WAYS + 1][TOKENREVIEW_KEY_LEN];
    enum tokenreview_result r;
    memset(cache, 0, sizeof(cache));
    for (int i = 0; i <= CACHE_WAYS; i++)
        key_of(k[i], 42, (uint8_t)(0x10 + i));
    /* fill the set; key 1 expires first */
    for (int i = 0; i < CACHE_WAYS; i++)
        cache_put(k[i], TOKENREVIEW_AUTHENTICATED, 0, i == 1 ? 500 : 10000 + i);
    cache_put(k[CACHE_WAYS], TOKENREVIEW_REJECTED, 100, 20000);
    assert_false(cache_get(k[1], 100, &r)); /* evicted: the one that would expire soonest */
    for (int i = 0; i <= CACHE_WAYS; i++)
        if (i != 1)
            assert_true(cache_get(k[i], 100, &r));
    /* an expired way is reused before a live one */
    memset(cache, 0, sizeof(cache));
    for (int i = 0; i < CACHE_WAYS; i++)
        cache_put(k[i], TOKENREVIEW_AUTHENTICATED, 0, i == 2 ? 50 : 100 + i);
    cache_put(k[CACHE_WAYS], TOKENREVIEW_AUTHENTICATED, 60, 99999);
    assert_false(cache_get(k[2], 60, &r));
    assert_true(cache_get(k[0], 60, &r)); /* key 0 would expire soonest of the live ones: kept */
    assert_true(cache_get(k[CACHE_WAYS], 60, &r));
    /* other sets are untouched */
    key_of(k[0], 43, 0x10);
    assert_false(cache_get(k[0], 60, &r));
}

static void test_cache_expiry(void **state)
{
    (void)state;
    assert_int_equal(cache_expiry(1000000, 5, 2000), 1005000);
    assert_int_equal(cache_expiry(1000000, 5, 1003), 1003000); /* never past the token's exp */
    assert_int_equal(cache_expiry(1000000, 60, 999), 999000);
}

static void test_cache_key(void **state)
{
    (void)state;
    uint8_t a[32], b[32], c[32], d[32];
    assert_true(cache_key("https://k/x", AUD, "t.o.k", 5, a));
    assert_true(cache_key("https://k/x", AUD, "t.o.k", 5, b));
    assert_memory_equal(a, b, 32);
    assert_true(cache_key("https://k/y", AUD, "t.o.k", 5, c)); /* another cluster */
    assert_memory_not_equal(a, c, 32);
    assert_true(cache_key("https://k/x", "https://other", "t.o.k", 5, d)); /* another audience */
    assert_memory_not_equal(a, d, 32);
    assert_true(cache_key("https://k/x", AUD, "t.o.kk", 5, d)); /* length counts, not NUL */
    assert_memory_equal(a, d, 32);
    assert_true(cache_key("https://k/x", AUD, "t.o.kk", 6, d));
    assert_memory_not_equal(a, d, 32);
}

static void test_request_body(void **state)
{
    (void)state;
    size_t len = 0;
    char *b = request_body("eyJh.eyJi.c2ln-_", 16, "https://a.example/\"q\"", &len);
    assert_non_null(b);
    assert_int_equal(len, strlen(b));
    json_error_t je;
    json_t *o = json_loadb(b, len, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "apiVersion")), "authentication.k8s.io/v1");
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "TokenReview");
    const json_t *spec = json_object_get(o, "spec");
    assert_string_equal(json_string_value(json_object_get(spec, "token")), "eyJh.eyJi.c2ln-_");
    assert_int_equal(json_array_size(json_object_get(spec, "audiences")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(spec, "audiences"), 0)),
                        "https://a.example/\"q\"");
    json_decref(o);
    free(b);
    /* only compact-JWS characters are sent unescaped; anything else is refused */
    assert_null(request_body("a\"b", 3, AUD, &len));
    assert_null(request_body("a b", 3, AUD, &len));
    assert_null(request_body("a\\b", 3, AUD, &len));
}

static enum tokenreview_result parse(const char *s)
{
    return parse_response((const uint8_t *)s, strlen(s), AUD);
}

static void test_parse_response(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"audiences\":[\"x\",\"" AUD
                           "\"],\"user\":{\"username\":\"system:serviceaccount:ns:a\"}}}"),
                     TOKENREVIEW_AUTHENTICATED);
    /* Kubernetes omits false fields */
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{}}"), TOKENREVIEW_REJECTED);
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":false,\"audiences\":[\"" AUD
                           "\"]}}"),
                     TOKENREVIEW_REJECTED);
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"error\":\"[invalid bearer token]\"}}"),
                     TOKENREVIEW_REJECTED);
    /* authenticated without our audience: the server did not check it */
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true}}"),
                     TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"audiences\":[\"other\"]}}"),
                     TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"audiences\":\"" AUD
                           "\"}}"),
                     TOKENREVIEW_ERR_BAD_RESPONSE);
    /* not a TokenReview answer */
    assert_int_equal(parse("{\"kind\":\"Status\",\"status\":{\"authenticated\":true}}"), TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse("{\"status\":{\"authenticated\":true,\"audiences\":[\"" AUD "\"]}}"),
                     TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse("{\"kind\":\"TokenReview\"}"), TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":\"true\"}}"),
                     TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse("[]"), TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse(""), TOKENREVIEW_ERR_BAD_RESPONSE);
    assert_int_equal(parse("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"audiences\":[\"" AUD
                           "\"]}"),
                     TOKENREVIEW_ERR_BAD_RESPONSE); /* truncated */
}

static const char *write_tmp(const char *content, size_t len)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/test_tokenreview.%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    fclose(f);
    return path;
}

static void test_bearer_file_read(void **state)
{
    (void)state;
    char buf[BROKER_MAX_BEARER_FILE_BYTES + 1], err[256];
    size_t len = 0;
    assert_int_equal(bearer_allowlist_set("/tmp/", err, sizeof(err)), BROKER_OK);
    const char *p = write_tmp("abc.def-ghi\n", 12);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_OK);
    assert_int_equal(len, 11);
    assert_memory_equal(buf, "abc.def-ghi", 11);
    p = write_tmp("tok \r\n\t", 7);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_OK);
    assert_int_equal(len, 3);
    p = write_tmp("\n\n", 2);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_UNREADABLE); /* empty */
    p = write_tmp("a\nb", 3);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_UNREADABLE); /* a header injection */
    p = write_tmp("a b", 3);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_UNREADABLE);
    char *big = malloc(BROKER_MAX_BEARER_FILE_BYTES + 1);
    assert_non_null(big);
    memset(big, 'x', BROKER_MAX_BEARER_FILE_BYTES + 1);
    p = write_tmp(big, BROKER_MAX_BEARER_FILE_BYTES);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_OK);
    assert_int_equal(len, BROKER_MAX_BEARER_FILE_BYTES);
    p = write_tmp(big, BROKER_MAX_BEARER_FILE_BYTES + 1);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_UNREADABLE); /* too large */
    free(big);
    unlink(p);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_UNREADABLE); /* missing */
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_UNREADABLE); /* not a file */
    assert_int_equal(rmdir(p), 0);
    assert_int_equal(mkfifo(p, 0600), 0);
    /* a FIFO without a writer: refused, not a hang */
    assert_int_equal(bearer_file_read(p, buf, sizeof(buf), &len), BEARER_UNREADABLE);
    unlink(p);
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
}

static void test_bearer_allowlist_parse(void **state)
{
    (void)state;
    char err[512];
    static const char *const bad[] = {
        "relative/token", "/a//b", "/a/./b", "/a/../b", "/a/..", "/a/.", "//a", "/", ",/a", "/a,",
        "/a,,/b", "/a/b,c", "/a\n/b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(bearer_allowlist_set("/ok/", err, sizeof(err)), BROKER_OK);
        if (bearer_allowlist_set(bad[i], err, sizeof(err)) != BROKER_ERR_CONFIG)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err, "BROKER_BEARER_TOKEN_FILES"));
        assert_false(bearer_path_allowed("/ok/x")); /* a refused list leaves nothing allowed */
    }
    char many[BROKER_MAX_BEARER_ALLOW_ENTRIES * 4 + 8] = "";
    size_t n = 0;
    for (int i = 0; i <= BROKER_MAX_BEARER_ALLOW_ENTRIES; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s/%c", i ? "," : "", 'a' + i % 26);
    assert_int_equal(bearer_allowlist_set(many, err, sizeof(err)), BROKER_ERR_CONFIG);
    char *huge = malloc(BROKER_MAX_BEARER_ALLOW_BYTES + 1);
    assert_non_null(huge);
    memset(huge, 'a', BROKER_MAX_BEARER_ALLOW_BYTES);
    huge[0] = '/';
    huge[BROKER_MAX_BEARER_ALLOW_BYTES] = '\0';
    assert_int_equal(bearer_allowlist_set(huge, err, sizeof(err)), BROKER_ERR_CONFIG);
    free(huge);

    /* unset or empty: nothing at all is allowed (the secure default) */
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
    assert_false(bearer_path_allowed("/var/run/secrets/kubernetes.io/serviceaccount/token"));
    assert_int_equal(bearer_allowlist_set("", err, sizeof(err)), BROKER_OK);
    assert_false(bearer_path_allowed("/var/run/secrets/kubernetes.io/serviceaccount/token"));

    assert_int_equal(bearer_allowlist_set("/var/run/secrets/tokens/,/etc/broker/k8s-token", err, sizeof(err)),
                     BROKER_OK);
    static const struct {
        const char *path;
        bool ok;
    } cases[] = {
        {"/var/run/secrets/tokens/broker", true},
        {"/var/run/secrets/tokens/..data/broker", true}, /* below, any depth; "..data" is a name */
        {"/etc/broker/k8s-token", true},
        {"/var/run/secrets/tokens/", false}, /* the directory itself */
        {"/var/run/secrets/tokens", false},
        {"/var/run/secrets/tokensX/broker", false},
        {"/var/run/secrets/tokens/../../../etc/shadow", false},
        {"/var/run/secrets/tokens/./broker", false},
        {"/var/run/secrets/tokens//broker", false},
        {"/var/run/secrets/tokens/a/..", false},
        {"/etc/broker/k8s-token2", false},
        {"/etc/broker/k8s-token/", false},
        {"/etc/broker/", false},
        {"/var/run/secrets/kubernetes.io/serviceaccount/token", false},
        {"var/run/secrets/tokens/broker", false},
        {"", false},
        {NULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (bearer_path_allowed(cases[i].path) != cases[i].ok)
            fail_msg("%s: expected %s", cases[i].path ? cases[i].path : "(null)", cases[i].ok ? "allowed" : "refused");
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
}

/* Refusals happen before the file is opened (a missing and an existing file get the same answer),
 * and after: the file actually opened must be inside an entry too, so a symlink in an allowed
 * directory cannot lead elsewhere, while Kubernetes' own ..data symlinks within it still work. */
static void test_bearer_allowlist_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_bearer.XXXXXX", path[256], path2[256], spec[600], err[256], buf[64];
    size_t len = 0;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/secret", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("the-secret\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/ok", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/ok/..2026_11_29", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/ok/..2026_11_29/token", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("sa-token\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/ok/..data", dir);
    assert_int_equal(symlink("..2026_11_29", path), 0);
    snprintf(path, sizeof(path), "%s/ok/token", dir);
    assert_int_equal(symlink("..data/token", path), 0);
    snprintf(path, sizeof(path), "%s/ok/escape", dir);
    assert_int_equal(symlink("../secret", path), 0);

    /* nothing allowed: refused, even an existing file */
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
    snprintf(path, sizeof(path), "%s/ok/token", dir);
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_NOT_ALLOWED);

    snprintf(spec, sizeof(spec), "%s/ok/", dir);
    assert_int_equal(bearer_allowlist_set(spec, err, sizeof(err)), BROKER_OK);
    /* the projected-token layout: token -> ..data/token -> ..2026_11_29/token, all inside */
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(buf, "sa-token", 8);
    /* a symlink inside the allowed directory that points out of it */
    snprintf(path, sizeof(path), "%s/ok/escape", dir);
    assert_true(bearer_path_allowed(path)); /* as written it is allowed... */
    memset(buf, 0, sizeof(buf));
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_NOT_ALLOWED); /* ...not as opened */
    assert_null(memmem(buf, sizeof(buf), "the-secret", 10));
    /* outside the list: the same answer whether the file exists or not */
    snprintf(path, sizeof(path), "%s/secret", dir);
    snprintf(path2, sizeof(path2), "%s/missing", dir);
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_NOT_ALLOWED);
    assert_int_equal(bearer_file_read(path2, buf, sizeof(buf), &len), BEARER_NOT_ALLOWED);
    snprintf(path, sizeof(path), "%s/ok/../secret", dir);
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_NOT_ALLOWED);
    /* an allowed file entry; the same file through an allowed directory that is a symlink to it */
    snprintf(spec, sizeof(spec), "%s/secret,%s/link/", dir, dir);
    snprintf(path, sizeof(path), "%s/link", dir);
    assert_int_equal(symlink("ok", path), 0);
    assert_int_equal(bearer_allowlist_set(spec, err, sizeof(err)), BROKER_OK);
    snprintf(path, sizeof(path), "%s/secret", dir);
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_OK);
    assert_int_equal(len, 10);
    snprintf(path, sizeof(path), "%s/link/token", dir);
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_OK); /* entries are resolved too */
    snprintf(path, sizeof(path), "%s/ok/token", dir); /* but the path as written must be listed */
    assert_int_equal(bearer_file_read(path, buf, sizeof(buf), &len), BEARER_NOT_ALLOWED);

    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
    static const char *const rm[] = {"link", "ok/escape", "ok/token", "ok/..data", "ok/..2026_11_29/token", "secret"};
    for (size_t i = 0; i < sizeof(rm) / sizeof(rm[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, rm[i]);
        assert_int_equal(unlink(path), 0);
    }
    snprintf(path, sizeof(path), "%s/ok/..2026_11_29", dir);
    assert_int_equal(rmdir(path), 0);
    snprintf(path, sizeof(path), "%s/ok", dir);
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void on_cb(void *arg, enum tokenreview_result r)
{
    *(int *)arg = (int)r + 1;
}

static void test_check_without_threads(void **state)
{
    (void)state;
    struct issuer_cfg iss = {.name = "k8s", .token_review_url = "https://k8s.example/apis/x",
                             .bearer_token_file = "/nonexistent", .token_review_cache_s = 5};
    struct tokenreview_request rq = {.issuer = &iss, .audience = AUD, .token = "a.b.c", .token_len = 5,
                                     .exp = 4102444800};
    enum tokenreview_result r = TOKENREVIEW_AUTHENTICATED;
    int called = 0;
    memset(cache, 0, sizeof(cache));
    /* not started: refused at once, no callback */
    assert_false(tokenreview_check(&rq, &r, on_cb, &called));
    assert_int_equal(r, TOKENREVIEW_ERR_OVERLOADED);
    /* a cached answer is returned at once even so */
    uint8_t k[TOKENREVIEW_KEY_LEN];
    assert_true(cache_key(iss.token_review_url, AUD, "a.b.c", 5, k));
    cache_put(k, TOKENREVIEW_REJECTED, now_ms(), now_ms() + 60000);
    assert_false(tokenreview_check(&rq, &r, on_cb, &called));
    assert_int_equal(r, TOKENREVIEW_REJECTED);
    /* an issuer without token_review is a caller error */
    iss.token_review_url = NULL;
    assert_false(tokenreview_check(&rq, &r, on_cb, &called));
    assert_int_equal(r, TOKENREVIEW_ERR_INTERNAL);
    assert_int_equal(called, 0);

    char m[2048];
    size_t n = tokenreview_metrics(m, sizeof(m));
    assert_int_equal(n, strlen(m));
    assert_non_null(strstr(m, "broker_token_review_total{result=\"overloaded\"} 1\n"));
    assert_non_null(strstr(m, "broker_token_review_cache_hits_total 1\n"));
    assert_int_equal(tokenreview_metrics(m, 10), 0); /* whole lines only */
    assert_string_equal(m, "");
}

/* Started and stopped with a review queued that can never run (the API server does not exist):
 * the callback still comes exactly once, and nothing leaks. */
static void test_start_stop(void **state)
{
    (void)state;
    char bearer[64];
    snprintf(bearer, sizeof(bearer), "%s", write_tmp("sa-token\n", 9));
    struct issuer_cfg iss = {.name = "k8s", .token_review_url = "https://127.0.0.1:1/apis/x",
                             .bearer_token_file = bearer, .token_review_cache_s = 5};
    struct tokenreview_request rq = {.issuer = &iss, .audience = AUD, .token = "x.y.z", .token_len = 5,
                                     .exp = 4102444800};
    enum tokenreview_result r;
    int called = 0, joined = 0;
    char err[128];
    assert_int_equal(bearer_allowlist_set("/tmp/", err, sizeof(err)), BROKER_OK);
    memset(cache, 0, sizeof(cache));
    assert_int_equal(tokenreview_start(), BROKER_OK);
    assert_int_equal(tokenreview_start(), BROKER_OK); /* idempotent */
    assert_true(tokenreview_check(&rq, &r, on_cb, &called));
    assert_true(tokenreview_check(&rq, &r, on_cb, &joined)); /* joins, or a review of its own */
    for (int i = 0; i < 300 && (called == 0 || joined == 0); i++)
        usleep(10000);
    /* connection refused: no answer, so nothing is cached */
    assert_int_equal(called, TOKENREVIEW_ERR_NETWORK + 1);
    assert_int_equal(joined, TOKENREVIEW_ERR_NETWORK + 1);
    uint8_t k[TOKENREVIEW_KEY_LEN];
    assert_true(cache_key(iss.token_review_url, AUD, "x.y.z", 5, k));
    assert_false(cache_get(k, now_ms(), &r));
    tokenreview_stop();
    called = 0;
    assert_false(tokenreview_check(&rq, &r, on_cb, &called)); /* stopped: refused at once */
    assert_int_equal(r, TOKENREVIEW_ERR_OVERLOADED);
    assert_int_equal(called, 0);
    unlink(bearer);
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
}

/* An API server that accepts connections and never answers: both threads hang in a review, a third
 * review waits in the queue. Stop aborts the two (no answer) and calls the third back as well. */
static void test_stop_aborts(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_true(ls >= 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 16), 0); /* the kernel completes handshakes; nobody reads */
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
    char url[64], bearer[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/apis/x", (unsigned)ntohs(sa.sin_port));
    snprintf(bearer, sizeof(bearer), "%s", write_tmp("sa-token\n", 9));
    struct issuer_cfg iss = {.name = "k8s", .token_review_url = url, .bearer_token_file = bearer,
                             .token_review_cache_s = 5};
    const char *toks[3] = {"a.a.a", "b.b.b", "c.c.c"};
    int got[3] = {0, 0, 0};
    enum tokenreview_result r;
    char err[128];
    assert_int_equal(bearer_allowlist_set("/tmp/", err, sizeof(err)), BROKER_OK);
    assert_int_equal(tokenreview_start(), BROKER_OK);
    for (int i = 0; i < 3; i++) {
        struct tokenreview_request rq = {.issuer = &iss, .audience = AUD, .token = toks[i], .token_len = 5,
                                         .exp = 4102444800};
        assert_true(tokenreview_check(&rq, &r, on_cb, &got[i]));
        usleep(100000); /* the first two are taken by the two threads, in order */
    }
    int64_t t0 = now_ms();
    tokenreview_stop();
    assert_true(now_ms() - t0 < BROKER_TOKEN_REVIEW_TIMEOUT_MS); /* aborted, not timed out */
    assert_int_equal(got[0], TOKENREVIEW_ERR_NETWORK + 1);
    assert_int_equal(got[1], TOKENREVIEW_ERR_NETWORK + 1);
    assert_int_equal(got[2], TOKENREVIEW_ERR_OVERLOADED + 1);
    close(ls);
    unlink(bearer);
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
}

static void test_review_stale(void **state)
{
    (void)state;
    assert_false(review_stale(1000, 1000));
    assert_false(review_stale(1000, 1000 + BROKER_TOKEN_REVIEW_TIMEOUT_MS - 1));
    assert_true(review_stale(1000, 1000 + BROKER_TOKEN_REVIEW_TIMEOUT_MS));
}

/* Accepted connections waiting on the listening socket: each is a review that reached the server. */
static int count_accepted(int ls)
{
    int n = 0, c;
    while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        close(c);
        n++;
    }
    return n;
}

/* Both threads hang on an API server that never answers; a third review waits in the queue. Once
 * it has waited longer than a review may take, it is answered "timeout" when a thread is free,
 * without asking the server, and so is the request that joined it: an exchange never waits for
 * a whole queue of slow reviews. The queued review is backdated rather than waited for, so the
 * outcome does not depend on how the threads were scheduled. */
static void test_queue_deadline(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_true(ls >= 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 16), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
    char url[64], bearer[64], err[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/apis/x", (unsigned)ntohs(sa.sin_port));
    snprintf(bearer, sizeof(bearer), "%s", write_tmp("sa-token\n", 9));
    assert_int_equal(bearer_allowlist_set("/tmp/", err, sizeof(err)), BROKER_OK);
    struct issuer_cfg iss = {.name = "k8s", .token_review_url = url, .bearer_token_file = bearer,
                             .token_review_cache_s = 5};
    const char *toks[3] = {"a.a.a", "b.b.b", "c.c.c"};
    int got[4] = {0, 0, 0, 0};
    enum tokenreview_result r;
    memset(cache, 0, sizeof(cache));
    assert_int_equal(tokenreview_start(), BROKER_OK);
    int64_t t0 = now_ms();
    for (int i = 0; i < 3; i++) {
        struct tokenreview_request rq = {.issuer = &iss, .audience = AUD, .token = toks[i], .token_len = 5,
                                         .exp = 4102444800};
        assert_true(tokenreview_check(&rq, &r, on_cb, &got[i]));
        if (i == 2) /* the same token again: joins the queued review */
            assert_true(tokenreview_check(&rq, &r, on_cb, &got[3]));
        usleep(100000); /* the first two are taken by the two threads, in order */
    }
    pthread_mutex_lock(&mu);
    struct review *q = pending;
    while (q != NULL && q->running)
        q = q->next;
    assert_non_null(q);
    assert_non_null(q->waiters);
    assert_non_null(q->waiters->next); /* two waiters: the first request and the one that joined */
    q->enqueued_ms -= BROKER_TOKEN_REVIEW_TIMEOUT_MS;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 600 && (got[0] == 0 || got[1] == 0 || got[2] == 0 || got[3] == 0); i++)
        usleep(10000);
    int64_t waited = now_ms() - t0;
    /* the two hung reviews time out after BROKER_TOKEN_REVIEW_TIMEOUT_MS; the queued one is answered
     * then, not after a review of its own */
    assert_int_equal(got[0], TOKENREVIEW_ERR_TIMEOUT + 1);
    assert_int_equal(got[1], TOKENREVIEW_ERR_TIMEOUT + 1);
    assert_int_equal(got[2], TOKENREVIEW_ERR_TIMEOUT + 1);
    assert_int_equal(got[3], TOKENREVIEW_ERR_TIMEOUT + 1);
    assert_true(waited < 2 * BROKER_TOKEN_REVIEW_TIMEOUT_MS - 500);
    assert_int_equal(count_accepted(ls), 2); /* the server saw two reviews, not three */
    /* a timeout is not an answer: nothing cached */
    uint8_t k[TOKENREVIEW_KEY_LEN];
    assert_true(cache_key(url, AUD, "c.c.c", 5, k));
    assert_false(cache_get(k, now_ms(), &r));
    tokenreview_stop();
    close(ls);
    unlink(bearer);
    assert_int_equal(bearer_allowlist_set(NULL, err, sizeof(err)), BROKER_OK);
}

static enum broker_err parse_issuer(const char *text, struct issuer_cfg *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *d = json_loads(text, 0, &je);
    assert_non_null(d);
    enum broker_err e = policy_issuer_parse(d, c, err, errlen);
    json_decref(d);
    return e;
}

static void test_document(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        const char *url;   /* expected token_review_url, or NULL */
        int64_t cache_s;
        const char *error; /* expected error prefix, or NULL */
    } cases[] = {
        {"{\"issuer\":\"k\",\"preset\":\"kubernetes\",\"url\":\"https://kubernetes.default.svc.cluster.local\","
         "\"bearer_token_file\":\"/t\",\"token_review\":{}}",
         "https://kubernetes.default.svc.cluster.local/apis/authentication.k8s.io/v1/tokenreviews", 5, NULL},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"url\":\"https://api.k.example:6443//\",\"cache_seconds\":0}}",
         "https://api.k.example:6443/apis/authentication.k8s.io/v1/tokenreviews", 0, NULL},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"url\":\"https://proxy.example/cluster-1\",\"cache_seconds\":60}}",
         "https://proxy.example/cluster-1/apis/authentication.k8s.io/v1/tokenreviews", 60, NULL},
        /* static keys: bearer_token_file is allowed for the review */
        {"{\"issuer\":\"k\",\"preset\":\"kubernetes\",\"url\":\"kubernetes/serviceaccount\",\"jwks_file\":\"/k.jwks\","
         "\"bearer_token_file\":\"/t\",\"token_review\":{\"url\":\"https://kubernetes.default.svc\"}}",
         "https://kubernetes.default.svc/apis/authentication.k8s.io/v1/tokenreviews", 5, NULL},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\"}", NULL, 0, NULL},
        {"{\"issuer\":\"k\",\"url\":\"kubernetes/serviceaccount\",\"jwks_file\":\"/k.jwks\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{}}",
         NULL, 0, "token_review.url: required when"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"token_review\":{}}", NULL, 0,
         "token_review: needs bearer_token_file"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\",\"token_review\":true}", NULL, 0,
         "token_review: must be an object"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"url\":\"http://k.example\"}}",
         NULL, 0, "token_review.url: must be an https:// URL"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"url\":\"https://k.example/?a=b\"}}",
         NULL, 0, "token_review.url: must be an https:// URL"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"cache_seconds\":61}}",
         NULL, 0, "token_review.cache_seconds: an integer from 0 to 60"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"cache_seconds\":-1}}",
         NULL, 0, "token_review.cache_seconds"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"cache_seconds\":\"5s\"}}",
         NULL, 0, "token_review.cache_seconds"},
        {"{\"issuer\":\"k\",\"url\":\"https://k.example\",\"bearer_token_file\":\"/t\","
         "\"token_review\":{\"audiences\":[\"x\"]}}",
         NULL, 0, "token_review: unknown field \"audiences\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct issuer_cfg c;
        char err[256];
        enum broker_err e = parse_issuer(cases[i].doc, &c, err, sizeof(err));
        if (cases[i].error != NULL) {
            if (e == BROKER_OK || strncmp(err, cases[i].error, strlen(cases[i].error)) != 0)
                fail_msg("case %zu: expected \"%s\", got %d \"%s\"", i, cases[i].error, (int)e, err);
            continue;
        }
        if (e != BROKER_OK)
            fail_msg("case %zu: %s", i, err);
        if (cases[i].url == NULL) {
            assert_null(c.token_review_url);
        } else {
            assert_string_equal(c.token_review_url, cases[i].url);
            assert_int_equal(c.token_review_cache_s, cases[i].cache_s);
        }
        policy_issuer_clear(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_cache_expiry),
        cmocka_unit_test(test_cache_key),
        cmocka_unit_test(test_request_body),
        cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_bearer_file_read),
        cmocka_unit_test(test_bearer_allowlist_parse),
        cmocka_unit_test(test_bearer_allowlist_read),
        cmocka_unit_test(test_check_without_threads),
        cmocka_unit_test(test_start_stop),
        cmocka_unit_test(test_stop_aborts),
        cmocka_unit_test(test_review_stale),
        cmocka_unit_test(test_queue_deadline),
        cmocka_unit_test(test_document),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
