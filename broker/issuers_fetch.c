/* One issuer key fetch over HTTPS: every safety rule of the SPEC's "Issuer fetches" paragraph
 * lives here — verified TLS only, no redirects, bounded size and time, discovery "issuer" equal to
 * the registered url. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include "issuers_fetch.h"
#include "jwt.h"

#define ISSUERS_FETCH_CONNECT_TIMEOUT_MS 2000
#define ISSUERS_FETCH_MAX_CONNECT_TO 16

/* BROKER_FETCH_CONNECT_TO, as libcurl's CURLOPT_CONNECT_TO list; set before the fetchers start. */
static struct curl_slist *fetch_connect_to;

static const char *const result_names[ISSUERS_FETCH__COUNT] = {
    [ISSUERS_FETCH_OK] = "ok",
    [ISSUERS_FETCH_NETWORK] = "network",
    [ISSUERS_FETCH_TLS] = "tls",
    [ISSUERS_FETCH_TIMEOUT] = "timeout",
    [ISSUERS_FETCH_HTTP_STATUS] = "http_status",
    [ISSUERS_FETCH_TOO_LARGE] = "too_large",
    [ISSUERS_FETCH_BAD_DISCOVERY] = "bad_discovery",
    [ISSUERS_FETCH_ISSUER_MISMATCH] = "issuer_mismatch",
    [ISSUERS_FETCH_BAD_JWKS] = "bad_jwks",
    [ISSUERS_FETCH_INTERNAL] = "internal",
};

const char *issuers_fetch_result_name(enum issuers_fetch_result r)
{
    return (unsigned)r < ISSUERS_FETCH__COUNT ? result_names[r] : "unknown";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct body {
    uint8_t *p; /* BROKER_MAX_JWKS_BYTES */
    size_t len;
    bool too_large;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb; /* libcurl documents size as always 1 */
    if (n > BROKER_MAX_JWKS_BYTES - b->len) {
        b->too_large = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const atomic_bool *cancel = ud;
    return cancel != NULL && atomic_load_explicit(cancel, memory_order_relaxed) ? 1 : 0;
}

static bool is_port(const char *p, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

static bool is_host(const char *p, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') ||
              p[i] == '.' || p[i] == '-'))
            return false;
    return true;
}

/* One "HOST:PORT:CONNECT_HOST:CONNECT_PORT" entry: four non-empty fields, names and ports only. */
static bool connect_to_entry_ok(const char *e, size_t n)
{
    const char *f[4];
    size_t fl[4], k = 0, start = 0;
    for (size_t i = 0; i <= n && k < 4; i++)
        if (i == n || e[i] == ':') {
            f[k] = e + start, fl[k] = i - start, k++;
            start = i + 1;
            if (i == n)
                break;
        }
    return k == 4 && start == n + 1 && is_host(f[0], fl[0]) && is_port(f[1], fl[1]) && is_host(f[2], fl[2]) &&
           is_port(f[3], fl[3]);
}

enum broker_err issuers_fetch_connect_to(const char *spec, char *err, size_t errlen)
{
    struct curl_slist *list = NULL;
    size_t count = 0;
    for (const char *p = spec; p != NULL && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char entry[600];
        if (n >= sizeof(entry) || !connect_to_entry_ok(p, n) || ++count > ISSUERS_FETCH_MAX_CONNECT_TO) {
            snprintf(err, errlen,
                     "BROKER_FETCH_CONNECT_TO: expected up to %d comma-separated HOST:PORT:CONNECT_HOST:CONNECT_PORT "
                     "entries",
                     ISSUERS_FETCH_MAX_CONNECT_TO);
            curl_slist_free_all(list);
            return BROKER_ERR_CONFIG;
        }
        memcpy(entry, p, n);
        entry[n] = '\0';
        struct curl_slist *l = curl_slist_append(list, entry);
        if (l == NULL) {
            snprintf(err, errlen, "BROKER_FETCH_CONNECT_TO: out of memory");
            curl_slist_free_all(list);
            return BROKER_ERR_NOMEM;
        }
        list = l;
        p = end ? end + 1 : p + n;
    }
    curl_slist_free_all(fetch_connect_to);
    fetch_connect_to = list;
    return BROKER_OK;
}

/* One handle per fetch: discovery and JWKS on the same host reuse the connection. */
static CURL *easy_new(const char *ca_file, struct body *b, const atomic_bool *cancel)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    /* Each setopt returns CURLE_OK (0) or an error: any failure refuses the handle, so a libcurl
     * that does not know an option can never fetch with a weaker setting. */
    if (curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") ||
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https") ||
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) || /* a 3xx is a failure, never followed */
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) ||
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) ||
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) ||
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) || /* threads: no SIGALRM for DNS timeouts */
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)BROKER_MAX_JWKS_BYTES) ||
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write) ||
        curl_easy_setopt(h, CURLOPT_WRITEDATA, b) ||
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L) ||
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress) ||
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, cancel) ||
        curl_easy_setopt(h, CURLOPT_USERAGENT, "broker") ||
        (ca_file != NULL && curl_easy_setopt(h, CURLOPT_CAINFO, ca_file)) ||
        (fetch_connect_to != NULL && curl_easy_setopt(h, CURLOPT_CONNECT_TO, fetch_connect_to))) {
        curl_easy_cleanup(h);
        return NULL;
    }
    return h;
}

static enum issuers_fetch_result classify(CURLcode c, const struct body *b)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
        return ISSUERS_FETCH_TIMEOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return ISSUERS_FETCH_TOO_LARGE;
    case CURLE_WRITE_ERROR:
        return b->too_large ? ISSUERS_FETCH_TOO_LARGE : ISSUERS_FETCH_INTERNAL;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return ISSUERS_FETCH_TLS;
    case CURLE_OUT_OF_MEMORY:
        return ISSUERS_FETCH_INTERNAL;
    default:
        return ISSUERS_FETCH_NETWORK;
    }
}

static enum issuers_fetch_result http_get(CURL *h, const char *url, int64_t deadline_ms, struct body *b,
                                          long *status)
{
    int64_t left = deadline_ms - now_ms();
    *status = 0;
    if (left <= 0)
        return ISSUERS_FETCH_TIMEOUT;
    b->len = 0;
    b->too_large = false;
    long connect = left < ISSUERS_FETCH_CONNECT_TIMEOUT_MS ? (long)left : ISSUERS_FETCH_CONNECT_TIMEOUT_MS;
    if (curl_easy_setopt(h, CURLOPT_URL, url) || curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left) ||
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect))
        return ISSUERS_FETCH_INTERNAL;
    CURLcode c = curl_easy_perform(h);
    if (c != CURLE_OK)
        return classify(c, b);
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status) != CURLE_OK)
        return ISSUERS_FETCH_INTERNAL;
    return *status == 200 ? ISSUERS_FETCH_OK : ISSUERS_FETCH_HTTP_STATUS;
}

/* OIDC Discovery 1.0 §4: the issuer with any trailing '/' removed, then the well-known path. */
static char *discovery_url(const char *iss)
{
    static const char wk[] = "/.well-known/openid-configuration";
    size_t n = strlen(iss);
    while (n > 0 && iss[n - 1] == '/')
        n--;
    char *u = malloc(n + sizeof(wk));
    if (u == NULL)
        return NULL;
    memcpy(u, iss, n);
    memcpy(u + n, wk, sizeof(wk));
    return u;
}

static enum issuers_fetch_result parse_discovery(const struct body *b, const char *iss, char **jwks_uri)
{
    enum issuers_fetch_result r = ISSUERS_FETCH_BAD_DISCOVERY;
    json_t *doc = jwt_json_load_strict(b->p, b->len, BROKER_MAX_JSON_DEPTH);
    if (doc == NULL || !json_is_object(doc))
        goto out;
    const json_t *i = json_object_get(doc, "issuer"), *u = json_object_get(doc, "jwks_uri");
    if (!json_is_string(i) || !json_is_string(u))
        goto out;
    size_t ilen = json_string_length(i), ulen = json_string_length(u);
    /* exact equality (OIDC Discovery §4.3): otherwise one issuer's document could vouch for keys
     * that then verify tokens carrying another iss */
    if (ilen != strlen(iss) || memcmp(json_string_value(i), iss, ilen) != 0) {
        r = ISSUERS_FETCH_ISSUER_MISMATCH;
        goto out;
    }
    /* another host is fine (Google's keys live on www.googleapis.com); another scheme is not */
    const char *us = json_string_value(u);
    if (ulen <= 8 || ulen != strlen(us) || strncmp(us, "https://", 8) != 0)
        goto out;
    *jwks_uri = strdup(us);
    r = *jwks_uri != NULL ? ISSUERS_FETCH_OK : ISSUERS_FETCH_INTERNAL;
out:
    json_decref(doc);
    return r;
}

enum issuers_fetch_result issuers_fetch(const char *url, const char *jwks_uri, const char *ca_file,
                                        const atomic_bool *cancel, struct issuers_fetch_out *out)
{
    enum issuers_fetch_result r = ISSUERS_FETCH_INTERNAL;
    int64_t deadline = now_ms() + BROKER_JWKS_FETCH_TIMEOUT_MS; /* discovery and JWKS together */
    struct body b = {.p = malloc(BROKER_MAX_JWKS_BYTES)};
    char *disc = NULL, *found = NULL;
    struct jwks *set = NULL;
    CURL *h = NULL;
    memset(out, 0, sizeof(*out));
    out->stage = "setup";
    if (b.p == NULL || (h = easy_new(ca_file, &b, cancel)) == NULL)
        goto out;
    const char *uri = jwks_uri;
    if (uri == NULL) {
        out->stage = "discovery";
        if ((disc = discovery_url(url)) == NULL)
            goto out;
        if ((r = http_get(h, disc, deadline, &b, &out->status)) != ISSUERS_FETCH_OK)
            goto out;
        if ((r = parse_discovery(&b, url, &found)) != ISSUERS_FETCH_OK)
            goto out;
        uri = found;
    }
    out->stage = "jwks";
    if ((r = http_get(h, uri, deadline, &b, &out->status)) != ISSUERS_FETCH_OK)
        goto out;
    if (jwks_parse(b.p, b.len, 0, &set) != BROKER_OK) {
        r = ISSUERS_FETCH_BAD_JWKS;
        goto out;
    }
    if (EVP_Digest(b.p, b.len, out->digest, NULL, EVP_sha256(), NULL) != 1) {
        r = ISSUERS_FETCH_INTERNAL;
        goto out;
    }
    out->jwks = set;
    set = NULL;
    r = ISSUERS_FETCH_OK;
out:
    jwks_free(set);
    if (h != NULL)
        curl_easy_cleanup(h);
    free(b.p);
    free(disc);
    free(found);
    return r;
}
