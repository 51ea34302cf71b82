/* Runtime configuration: environment variables, overridden by `broker serve` flags. */
#ifndef BROKER_CONFIG_H
#define BROKER_CONFIG_H
#include <stddef.h>
#include "err.h"

struct config {
    const char *database_url;   /* BROKER_DATABASE_URL, required */
    char listen_host[256];      /* BROKER_LISTEN */
    unsigned listen_port;
    char tls_host[256];         /* BROKER_TLS_LISTEN; empty: off */
    unsigned tls_port;
    const char *tls_cert;       /* BROKER_TLS_CERT */
    const char *tls_key;        /* BROKER_TLS_KEY */
    char issuer[512];           /* BROKER_ISSUER, default http://<listen> */
    const char *keys_dir;       /* BROKER_KEYS_DIR, default ./keys */
    unsigned threads;           /* BROKER_THREADS, default the CPUs this process may run on */
    const char *sql_dir;        /* BROKER_SQL_DIR, default ./sql */
};

/* Fill from the environment with defaults. */
enum broker_err config_from_env(struct config *c, char *err, size_t errlen) BROKER_WUR;
/* Apply `--name value` flags of `broker serve`; unknown flags are an error. */
enum broker_err config_from_args(struct config *c, int argc, char **argv, char *err, size_t errlen) BROKER_WUR;
/* Split "host:port" ("[::1]:8080" too). */
enum broker_err config_parse_hostport(const char *s, char *host, size_t host_cap, unsigned *port) BROKER_WUR;

#endif
