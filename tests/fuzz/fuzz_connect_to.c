// SOURCES: broker/curlx.c broker/bearer.c broker/log.c broker/jwks.c broker/jwt.c broker/b64.c broker/err.c broker/json.c
// LIBS: -lcurl
/* libFuzzer target: issuers_fetch_connect_to, the BROKER_FETCH_CONNECT_TO parser. The module is
 * included (as the unit tests do with theirs) to see the list it installs. The input, cut at its
 * first NUL, is the spec. Checks against an independent reading of the documented grammar
 * ("" or up to ISSUERS_FETCH_MAX_CONNECT_TO comma-separated HOST:PORT:CONNECT_HOST:CONNECT_PORT,
 * hosts of letters, digits, '.' and '-', at most 253; ports 1..65535 in at most 5 digits): accepted
 * exactly when the grammar allows it, then the installed list is the entries in order; refused
 * with a message and the previous list untouched (no partial success). Clearing with NULL frees
 * the list (LeakSanitizer checks). */
#include "issuers_fetch.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *spec)
{
    fprintf(stderr, "fuzz_connect_to: %s (spec \"%s\")\n", what, spec);
    abort();
}

static bool ref_host(const char *p, size_t n)
{
    if (n < 1 || n > 253)
        return false;
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-";
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\0' || strchr(ok, p[i]) == NULL)
            return false;
    return true;
}

static bool ref_port(const char *p, size_t n)
{
    if (n < 1 || n > 5 || strspn(p, "0123456789") < n)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned long)(p[i] - '0');
    return v >= 1 && v <= 65535;
}

/* One entry p[0..n): exactly three ':' separating host, port, host, port. */
static bool ref_entry(const char *p, size_t n)
{
    size_t cut[3], k = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == ':') {
            if (k == 3)
                return false;
            cut[k++] = i;
        }
    return k == 3 && ref_host(p, cut[0]) && ref_port(p + cut[0] + 1, cut[1] - cut[0] - 1) &&
           ref_host(p + cut[1] + 1, cut[2] - cut[1] - 1) && ref_port(p + cut[2] + 1, n - cut[2] - 1);
}

/* Every comma separates two entries; "" is the one spec with none. */
static bool ref_ok(const char *spec, size_t *count)
{
    *count = 0;
    if (spec[0] == '\0')
        return true;
    for (const char *p = spec;;) {
        size_t n = strcspn(p, ",");
        if (!ref_entry(p, n) || ++*count > ISSUERS_FETCH_MAX_CONNECT_TO)
            return false;
        if (p[n] == '\0')
            return true;
        p += n + 1;
    }
}

/* The installed list holds the spec's entries, in order. */
static bool list_is(const struct curl_slist *l, const char *spec, size_t count)
{
    const char *p = spec;
    for (size_t i = 0; i < count; i++, l = l->next) {
        size_t n = strcspn(p, ",");
        if (l == NULL || strlen(l->data) != n || memcmp(l->data, p, n) != 0)
            return false;
        p += n + (p[n] != '\0');
    }
    return l == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char before[] = "issuer.example:443:127.0.0.1:8443";
    char err[256] = "", *spec = malloc(size + 1);
    size_t count;

    if (spec == NULL)
        abort();
    memcpy(spec, data, size);
    spec[size] = '\0';
    if (issuers_fetch_connect_to(before, err, sizeof(err)) != BROKER_OK)
        fail("the reference list was refused", before);
    const struct curl_slist *prev = fetch_connect_to;

    bool want = ref_ok(spec, &count);
    enum broker_err e = issuers_fetch_connect_to(spec, err, sizeof(err));
    if (e == BROKER_OK) {
        if (!want)
            fail("accepted what the grammar refuses", spec);
        if (!list_is(fetch_connect_to, spec, count))
            fail("installed list differs from the spec", spec);
    } else {
        if (want)
            fail("refused what the grammar allows", spec);
        if (e != BROKER_ERR_CONFIG || err[0] == '\0' || strnlen(err, sizeof(err)) == sizeof(err))
            fail("refused without BROKER_ERR_CONFIG and a message", spec);
        if (fetch_connect_to != prev || !list_is(prev, before, 1))
            fail("a refused spec changed the installed list", spec);
    }
    if (issuers_fetch_connect_to(NULL, err, sizeof(err)) != BROKER_OK || fetch_connect_to != NULL)
        fail("NULL did not clear the list", spec);
    free(spec);
    return 0;
}
