/* One issuer key fetch over HTTPS: every safety rule of the SPEC's "Issuer fetches" paragraph
 * lives here — verified TLS only, no redirects, bounded size and time, discovery "issuer" equal to
 * the registered url — plus the two inputs a fetch takes from the issuer's side: the bearer
 * token it presents and the Cache-Control lifetime it reports. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "bounds.h"
#include "clock.h"
#include "issuers_fetch.h"
#include "bearer.h"
#include "curlx.h"
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
    [ISSUERS_FETCH_CREDENTIALS] = "credentials",
};

const char *issuers_fetch_result_name(enum issuers_fetch_result r)
{
    return (unsigned)r < ISSUERS_FETCH__COUNT ? result_names[r] : "unknown";
}

struct body {
    uint8_t *p; /* BROKER_MAX_JWKS_BYTES */
    size_t len;
    bool too_large;
    size_t header_bytes;                           /* of this request's responses */
    char cc[BROKER_MAX_CACHE_CONTROL_LEN];        /* Cache-Control field lines joined with "," */
    size_t cc_len;
    bool cc_overflow;
};

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Header lines (libcurl caps one at 100 KiB; all of them are capped here). Only Cache-Control is
 * kept; a new status line (an interim 1xx response) starts over. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    if (n > BROKER_MAX_FETCH_HEADER_BYTES - b->header_bytes) {
        b->too_large = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    b->header_bytes += n;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        b->cc_len = 0;
        b->cc_overflow = false;
        return n;
    }
    static const char name[] = "cache-control:";
    if (n < sizeof(name) - 1 || strncasecmp(data, name, sizeof(name) - 1) != 0)
        return n;
    size_t i = sizeof(name) - 1, end = n;
    while (end > i && (data[end - 1] == '\r' || data[end - 1] == '\n' || ows(data[end - 1])))
        end--;
    while (i < end && ows(data[i]))
        i++;
    size_t sep = b->cc_len > 0 ? 1 : 0;
    if (end - i + sep > sizeof(b->cc) - b->cc_len) {
        b->cc_overflow = true;
        return n;
    }
    if (sep)
        b->cc[b->cc_len++] = ',';
    memcpy(b->cc + b->cc_len, data + i, end - i);
    b->cc_len += end - i;
    return n;
}

/* ------------------------------------------------------------------ Cache-Control */

static bool tchar(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool name_is(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && strncasecmp((const char *)p, lit, n) == 0;
}

int64_t issuers_fetch_cache_control(const uint8_t *p, size_t len)
{
    int64_t max_age = -1;
    bool uncached = false, max_age_bad = false;
    size_t i = 0;
    for (;;) {
        while (i < len && (ows((char)p[i]) || p[i] == ','))
            i++;
        if (i == len)
            break;
        size_t ns = i;
        while (i < len && tchar(p[i]))
            i++;
        if (i == ns)
            return uncached ? 0 : -1; /* not a directive name: the rest is malformed */
        const uint8_t *name = p + ns;
        size_t nlen = i - ns;
        const uint8_t *val = NULL;
        size_t vlen = 0;
        bool has_val = false;
        while (i < len && ows((char)p[i]))
            i++;
        if (i < len && p[i] == '=') {
            has_val = true;
            i++;
            while (i < len && ows((char)p[i]))
                i++;
            if (i < len && p[i] == '"') { /* quoted-string; recipients accept it (§5.2) */
                size_t vs = ++i;
                while (i < len && p[i] != '"') {
                    if (p[i] == '\\' && ++i == len)
                        return uncached ? 0 : -1;
                    i++;
                }
                if (i == len)
                    return uncached ? 0 : -1; /* unterminated */
                val = p + vs, vlen = i - vs;
                i++;
            } else {
                size_t vs = i;
                while (i < len && tchar(p[i]))
                    i++;
                val = p + vs, vlen = i - vs;
            }
        }
        while (i < len && ows((char)p[i]))
            i++;
        if (i < len && p[i] != ',')
            return uncached ? 0 : -1; /* junk after a directive */
        if ((name_is(name, nlen, "no-store") || name_is(name, nlen, "no-cache")) && !has_val) {
            /* no-cache="field" only restricts those fields: not about the keys */
            uncached = true;
        } else if (name_is(name, nlen, "max-age") && max_age < 0 && !max_age_bad) {
            /* the first occurrence decides (RFC 9111 §4.2.1); a bad one means no usable max-age */
            int64_t v = 0;
            if (vlen == 0)
                max_age_bad = true;
            for (size_t k = 0; k < vlen && !max_age_bad; k++) {
                if (val[k] < '0' || val[k] > '9')
                    max_age_bad = true;
                else if (v < ((int64_t)1 << 31))
                    v = v * 10 + (val[k] - '0');
            }
            if (!max_age_bad)
                max_age = v > ((int64_t)1 << 31) ? ((int64_t)1 << 31) : v;
        }
    }
    return uncached ? 0 : max_age;
}

int64_t issuers_fetch_refresh_s(int64_t max_age_s)
{
    if (max_age_s < 0)
        return BROKER_JWKS_REFRESH_S;
    if (max_age_s < BROKER_JWKS_MIN_REFRESH_S)
        return BROKER_JWKS_MIN_REFRESH_S;
    return max_age_s > BROKER_JWKS_MAX_REFRESH_S ? BROKER_JWKS_MAX_REFRESH_S : max_age_s;
}

/* ------------------------------------------------------------------ bearer token */

#define AUTH_PREFIX "Authorization: Bearer "

/* Reads bearer_token_file into a ready header line; trailing whitespace is dropped (files end
 * with a newline), anything but visible ASCII refused (no header injection, no surprises). */
static enum issuers_fetch_result bearer_header(const char *path, char **line)
{
    size_t pre = sizeof(AUTH_PREFIX) - 1, cap = pre + BROKER_MAX_BEARER_FILE_BYTES + 1, n = 0;
    char *buf = malloc(cap + 1);
    *line = NULL;
    if (buf == NULL)
        return ISSUERS_FETCH_INTERNAL;
    /* not allowed or unreadable alike: the fetch reports "credentials" (bearer.c logs a refusal) */
    if (bearer_file_read(path, buf + pre, BROKER_MAX_BEARER_FILE_BYTES + 1, &n) != BEARER_OK) {
        OPENSSL_cleanse(buf, cap + 1);
        free(buf);
        return ISSUERS_FETCH_CREDENTIALS;
    }
    memcpy(buf, AUTH_PREFIX, pre);
    buf[pre + n] = '\0';
    *line = buf;
    return ISSUERS_FETCH_OK;
}

static void bearer_free(char *line)
{
    if (line != NULL) {
        OPENSSL_cleanse(line, strlen(line));
        free(line);
    }
}

/* "https://AUTHORITY/..." -> AUTHORITY without a default ":443"; false for anything else or
 * userinfo, which never counts as the same origin. */
static bool https_authority(const char *u, const char **a, size_t *alen)
{
    if (strncasecmp(u, "https://", 8) != 0)
        return false;
    const char *s = u + 8;
    size_t n = strcspn(s, "/?#");
    if (n == 0 || memchr(s, '@', n) != NULL)
        return false;
    if (n > 4 && memcmp(s + n - 4, ":443", 4) == 0)
        n -= 4;
    *a = s, *alen = n;
    return true;
}

/* A jwks_uri gets the credential only on the issuer's own origin: neither a discovery document
 * nor an issuer document's jwks_uri may send it elsewhere. */
static bool same_origin(const char *x, const char *y)
{
    const char *a, *b;
    size_t an, bn;
    return https_authority(x, &a, &an) && https_authority(y, &b, &bn) && an == bn && strncasecmp(a, b, an) == 0;
}

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
        if (n >= sizeof(entry) || !connect_to_entry_ok(p, n) || ++count > ISSUERS_FETCH_MAX_CONNECT_TO ||
            (end != NULL && end[1] == '\0')) { /* a trailing comma is a typo, not an empty entry */
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
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) ||
        curl_easy_setopt(h, CURLOPT_HEADERDATA, b) ||
        curl_easy_setopt(h, CURLOPT_HEADEROPT, (long)CURLHEADER_SEPARATE) || /* never to a proxy */
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
    switch (curlx_classify(c)) {
    case CURLX_TIMEOUT:
        return ISSUERS_FETCH_TIMEOUT;
    case CURLX_TOO_LARGE:
        return ISSUERS_FETCH_TOO_LARGE;
    case CURLX_WRITE:
        return b->too_large ? ISSUERS_FETCH_TOO_LARGE : ISSUERS_FETCH_INTERNAL;
    case CURLX_TLS:
        return ISSUERS_FETCH_TLS;
    case CURLX_NOMEM:
        return ISSUERS_FETCH_INTERNAL;
    case CURLX_NETWORK:
    default:
        return ISSUERS_FETCH_NETWORK;
    }
}

/* headers: the Authorization line for this request, or NULL. */
static enum issuers_fetch_result http_get(CURL *h, const char *url, struct curl_slist *headers, int64_t deadline_ms,
                                          struct body *b, long *status)
{
    int64_t left = deadline_ms - clock_mono_ms();
    *status = 0;
    if (left <= 0)
        return ISSUERS_FETCH_TIMEOUT;
    b->len = 0;
    b->too_large = false;
    b->header_bytes = 0;
    b->cc_len = 0;
    b->cc_overflow = false;
    long connect = left < ISSUERS_FETCH_CONNECT_TIMEOUT_MS ? (long)left : ISSUERS_FETCH_CONNECT_TIMEOUT_MS;
    if (curl_easy_setopt(h, CURLOPT_URL, url) || curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left) ||
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect) || curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers))
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

enum issuers_fetch_result issuers_fetch_from(const struct issuers_fetch_src *src, const atomic_bool *cancel,
                                             struct issuers_fetch_out *out)
{
    enum issuers_fetch_result r = ISSUERS_FETCH_INTERNAL;
    int64_t deadline = clock_mono_ms() + BROKER_JWKS_FETCH_TIMEOUT_MS; /* discovery and JWKS together */
    struct body *b = calloc(1, sizeof(*b));
    char *disc = NULL, *found = NULL, *auth = NULL;
    struct curl_slist auth_list = {0}; /* on the stack: the token is wiped by bearer_free alone */
    struct jwks *set = NULL;
    CURL *h = NULL;
    memset(out, 0, sizeof(*out));
    out->stage = "setup";
    out->max_age_s = -1;
    if (b == NULL || (b->p = malloc(BROKER_MAX_JWKS_BYTES)) == NULL || (h = easy_new(src->ca_file, b, cancel)) == NULL)
        goto out;
    if (src->bearer_token_file != NULL) {
        if ((r = bearer_header(src->bearer_token_file, &auth)) != ISSUERS_FETCH_OK)
            goto out;
        auth_list.data = auth;
    }
    struct curl_slist *headers = auth != NULL ? &auth_list : NULL;
    const char *uri = src->jwks_uri;
    if (uri == NULL) {
        out->stage = "discovery";
        if ((disc = discovery_url(src->url)) == NULL) {
            r = ISSUERS_FETCH_INTERNAL;
            goto out;
        }
        if ((r = http_get(h, disc, headers, deadline, b, &out->status)) != ISSUERS_FETCH_OK)
            goto out;
        if ((r = parse_discovery(b, src->url, &found)) != ISSUERS_FETCH_OK)
            goto out;
        uri = found;
    }
    /* the token is the cluster's credential: only the issuer's own origin gets it, whether the
     * jwks_uri was discovered or configured (an admin could name any host) */
    if (!same_origin(src->url, uri))
        headers = NULL;
    out->stage = "jwks";
    if ((r = http_get(h, uri, headers, deadline, b, &out->status)) != ISSUERS_FETCH_OK)
        goto out;
    if (jwks_parse(b->p, b->len, 0, &set) != BROKER_OK) {
        r = ISSUERS_FETCH_BAD_JWKS;
        goto out;
    }
    if (EVP_Digest(b->p, b->len, out->digest, NULL, EVP_sha256(), NULL) != 1) {
        r = ISSUERS_FETCH_INTERNAL;
        goto out;
    }
    out->max_age_s = b->cc_overflow ? -1 : issuers_fetch_cache_control((const uint8_t *)b->cc, b->cc_len);
    out->jwks = set;
    set = NULL;
    r = ISSUERS_FETCH_OK;
out:
    jwks_free(set);
    if (h != NULL)
        curl_easy_cleanup(h);
    bearer_free(auth);
    if (b != NULL)
        free(b->p);
    free(b);
    free(disc);
    free(found);
    return r;
}

enum issuers_fetch_result issuers_fetch(const char *url, const char *jwks_uri, const char *ca_file,
                                        const atomic_bool *cancel, struct issuers_fetch_out *out)
{
    const struct issuers_fetch_src src = {.url = url, .jwks_uri = jwks_uri, .ca_file = ca_file};
    return issuers_fetch_from(&src, cancel, out);
}
