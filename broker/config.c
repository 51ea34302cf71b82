#include "config.h"
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum broker_err config_parse_hostport(const char *s, char *host, size_t host_cap, unsigned *port)
{
    const char *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return BROKER_ERR_CONFIG;
        hlen = (size_t)(end - s - 1);
        s++;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return BROKER_ERR_CONFIG;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= host_cap)
        return BROKER_ERR_CONFIG;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || p < 0 || p > 65535)
        return BROKER_ERR_CONFIG;
    *port = (unsigned)p;
    return BROKER_OK;
}

static enum broker_err set_listen(struct config *c, const char *v, char *err, size_t errlen)
{
    if (config_parse_hostport(v, c->listen_host, sizeof(c->listen_host), &c->listen_port) != BROKER_OK) {
        snprintf(err, errlen, "BROKER_LISTEN: expected host:port, got \"%s\"", v);
        return BROKER_ERR_CONFIG;
    }
    return BROKER_OK;
}

static enum broker_err set_tls_listen(struct config *c, const char *v, char *err, size_t errlen)
{
    if (config_parse_hostport(v, c->tls_host, sizeof(c->tls_host), &c->tls_port) != BROKER_OK) {
        snprintf(err, errlen, "BROKER_TLS_LISTEN: expected host:port, got \"%s\"", v);
        return BROKER_ERR_CONFIG;
    }
    return BROKER_OK;
}

static enum broker_err set_threads(struct config *c, const char *v, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < 1 || n > 256) {
        snprintf(err, errlen, "BROKER_THREADS: expected 1..256, got \"%s\"", v);
        return BROKER_ERR_CONFIG;
    }
    c->threads = (unsigned)n;
    return BROKER_OK;
}

static enum broker_err set_issuer(struct config *c, const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v), scheme = strncmp(v, "https://", 8) == 0 ? 8 : strncmp(v, "http://", 7) == 0 ? 7 : 0;
    /* RFC 8414 §2: a URL with a host and no query or fragment; it goes verbatim into every token */
    bool ok = scheme > 0 && n < sizeof(c->issuer) && n > scheme && v[scheme] != '/' && v[scheme] != ':';
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)v[i] > 0x20 && (unsigned char)v[i] < 0x7f && v[i] != '?' && v[i] != '#';
    for (size_t i = scheme; ok && i < n && v[i] != '/'; i++)
        ok = v[i] != '@'; /* a host, no user information */
    if (!ok) {
        snprintf(err, errlen, "BROKER_ISSUER: expected an http(s) URL with a host, no query or fragment, at most %zu bytes",
                 sizeof(c->issuer) - 1);
        return BROKER_ERR_CONFIG;
    }
    while (n > 1 && v[n - 1] == '/') /* the issuer identifier has no trailing slash */
        n--;
    memcpy(c->issuer, v, n);
    c->issuer[n] = '\0';
    return BROKER_OK;
}

static void default_issuer(struct config *c)
{
    if (strchr(c->listen_host, ':') != NULL)
        snprintf(c->issuer, sizeof(c->issuer), "http://[%s]:%u", c->listen_host, c->listen_port);
    else
        snprintf(c->issuer, sizeof(c->issuer), "http://%s:%u", c->listen_host, c->listen_port);
}

enum broker_err config_from_env(struct config *c, char *err, size_t errlen)
{
    const char *v;
    memset(c, 0, sizeof(*c));
    c->database_url = getenv("BROKER_DATABASE_URL");
    if (set_listen(c, (v = getenv("BROKER_LISTEN")) ? v : "127.0.0.1:8080", err, errlen) != BROKER_OK)
        return BROKER_ERR_CONFIG;
    if ((v = getenv("BROKER_TLS_LISTEN")) != NULL && *v && set_tls_listen(c, v, err, errlen) != BROKER_OK)
        return BROKER_ERR_CONFIG;
    c->tls_cert = getenv("BROKER_TLS_CERT");
    c->tls_key = getenv("BROKER_TLS_KEY");
    c->keys_dir = (v = getenv("BROKER_KEYS_DIR")) && *v ? v : "./keys";
    c->sql_dir = (v = getenv("BROKER_SQL_DIR")) && *v ? v : "./sql";
    /* the CPUs this process may run on (taskset, a container's cpuset), not all the machine has */
    cpu_set_t cpus;
    long ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = ncpu > 0 ? (unsigned)(ncpu <= 256 ? ncpu : 256) : 1;
    if ((v = getenv("BROKER_THREADS")) != NULL && *v && set_threads(c, v, err, errlen) != BROKER_OK)
        return BROKER_ERR_CONFIG;
    if ((v = getenv("BROKER_ISSUER")) != NULL && *v) {
        if (set_issuer(c, v, err, errlen) != BROKER_OK)
            return BROKER_ERR_CONFIG;
    } else {
        default_issuer(c);
    }
    return BROKER_OK;
}

enum broker_err config_from_args(struct config *c, int argc, char **argv, char *err, size_t errlen)
{
    int issuer_set = getenv("BROKER_ISSUER") != NULL && *getenv("BROKER_ISSUER");
    for (int i = 0; i < argc; i += 2) { /* --name value pairs */
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            snprintf(err, errlen, "%s: missing value", k);
            return BROKER_ERR_CONFIG;
        }
        enum broker_err e = BROKER_OK;
        if (strcmp(k, "--database-url") == 0)
            c->database_url = v;
        else if (strcmp(k, "--listen") == 0)
            e = set_listen(c, v, err, errlen);
        else if (strcmp(k, "--tls-listen") == 0)
            e = set_tls_listen(c, v, err, errlen);
        else if (strcmp(k, "--tls-cert") == 0)
            c->tls_cert = v;
        else if (strcmp(k, "--tls-key") == 0)
            c->tls_key = v;
        else if (strcmp(k, "--issuer") == 0) {
            e = set_issuer(c, v, err, errlen);
            issuer_set = 1;
        } else if (strcmp(k, "--keys-dir") == 0)
            c->keys_dir = v;
        else if (strcmp(k, "--threads") == 0)
            e = set_threads(c, v, err, errlen);
        else if (strcmp(k, "--sql-dir") == 0)
            c->sql_dir = v;
        else {
            snprintf(err, errlen, "unknown flag %s", k);
            return BROKER_ERR_CONFIG;
        }
        if (e != BROKER_OK)
            return e;
    }
    if (!issuer_set)
        default_issuer(c);
    if (c->tls_port != 0 && (c->tls_cert == NULL || c->tls_key == NULL)) {
        snprintf(err, errlen, "BROKER_TLS_LISTEN needs BROKER_TLS_CERT and BROKER_TLS_KEY");
        return BROKER_ERR_CONFIG;
    }
    return BROKER_OK;
}
