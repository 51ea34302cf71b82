/* HTTP front: one h2o event loop per thread sharing one listening socket (dup'ed per loop),
 * cleartext HTTP/1.1 + h2c prior knowledge on BROKER_LISTEN, TLS with ALPN h2/http/1.1 on
 * BROKER_TLS_LISTEN. Rate limits are applied here, before any handler does crypto. */
#include "http.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bounds.h"
#include "exchange.h"
#include "keys.h"
#include "verify.h"
#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"

struct http_loop {
    h2o_context_t ctx; /* first: a loop is found from req->conn->ctx */
    h2o_multithread_receiver_t rx;
    h2o_accept_ctx_t accept_plain, accept_tls;
    h2o_socket_t *lsock_plain, *lsock_tls;
    pthread_t tid;
    struct rl_table rl_conn, rl_addr;
    uint64_t rid_prefix, rid_seq;
    atomic_int inflight;
    int fd_plain, fd_tls;  /* this loop's dup of the listeners, -1 for none; owned by the loop once it runs */
    SSL_CTX *ssl;
    atomic_int ready;      /* the loop thread has built its context and listeners */
    h2o_linklist_t later;  /* http_later's messages, run by later_entry on ctx.zero_timeout */
    h2o_timeout_entry_t later_entry;
};

static h2o_globalconf_t globalconf;
static struct http_loop *loops;
static unsigned nloops;
static const struct http_route *routes;
static size_t nroutes;
static atomic_int draining, stopping;
static double rate_conn = BROKER_RATE_PER_CONN, rate_addr = BROKER_RATE_PER_ADDR;

uint64_t http_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool http_draining(void)
{
    return atomic_load(&draining) != 0;
}

void http_inflight_add(struct http_loop *loop, int delta)
{
    atomic_fetch_add(&loop->inflight, delta);
}

void http_post(struct http_loop *loop, struct loop_msg *m)
{
    h2o_multithread_send_message(&loop->rx, &m->super);
}

static void on_later(h2o_timeout_entry_t *entry)
{
    struct http_loop *loop = H2O_STRUCT_FROM_MEMBER(struct http_loop, later_entry, entry);
    audit_hold(); /* the batch's decisions reach the audit writer as one burst */
    while (!h2o_linklist_is_empty(&loop->later)) {
        struct loop_msg *m = H2O_STRUCT_FROM_MEMBER(struct loop_msg, super.link, loop->later.next);
        h2o_linklist_unlink(&m->super.link);
        m->cb(m); /* may free m; counts itself again first if it defers further */
        atomic_fetch_add(&loop->inflight, -1); /* after: a drain never sees a gap */
    }
    audit_release();
}

void http_later(struct http_loop *loop, struct loop_msg *m)
{
    h2o_linklist_insert(&loop->later, &m->super.link);
    atomic_fetch_add(&loop->inflight, 1); /* a drain waits for it like any deferred answer */
    if (!h2o_timeout_is_linked(&loop->later_entry))
        h2o_timeout_link(loop->ctx.loop, &loop->ctx.zero_timeout, &loop->later_entry);
}

static void on_messages(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    (void)rx;
    while (!h2o_linklist_is_empty(messages)) {
        struct loop_msg *m = H2O_STRUCT_FROM_MEMBER(struct loop_msg, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        m->cb(m);
    }
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 304: return "Not Modified";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

void http_add_header(struct http_request *r, const char *name, const char *value)
{
    h2o_req_t *req = r->req;
    size_t vlen = strlen(value);
    char *v = h2o_mem_alloc_pool(&req->pool, vlen + 1);
    memcpy(v, value, vlen + 1);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 1, NULL, v, vlen);
}

void http_respond(struct http_request *r, int status, const char *content_type, const char *body, size_t len)
{
    h2o_req_t *req = r->req;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (status != 204 && status != 304) /* those carry no body and no Content-Length */
        req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->request_id,
                          strlen(r->request_id));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    metrics_http_status(status);
    h2o_send_inline(req, body, len); /* copies body into req->pool */
}

void http_respond_json(struct http_request *r, int status, const char *json, size_t len)
{
    http_respond(r, status, "application/json", json, len);
}

void http_respond_error(struct http_request *r, int status, const char *error, const char *description)
{
    char buf[1024];
    /* error and description are constant strings of ours: no escaping needed */
    int n = snprintf(buf, sizeof(buf), "{\"error\":\"%s\",\"error_description\":\"%s\",\"request_id\":\"%s\"}", error,
                     description, r->request_id);
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = snprintf(buf, sizeof(buf), "{\"error\":\"%s\",\"request_id\":\"%s\"}", error, r->request_id);
    http_respond_json(r, status, buf, (size_t)n);
}

struct http_defer {
    struct http_request **slot;
};

static void on_defer_dispose(void *p)
{
    struct http_defer *d = p;
    if (d->slot != NULL)
        *d->slot = NULL;
}

struct http_defer *http_defer(struct http_request *r, struct http_request **slot)
{
    struct http_defer *d = h2o_mem_alloc_shared(&r->req->pool, sizeof(*d), on_defer_dispose);
    d->slot = slot;
    *slot = r;
    return d;
}

void http_defer_release(struct http_defer *d, struct http_request *const *slot)
{
    if (d != NULL && *slot != NULL) /* *slot NULL: the request's pool, d with it, is freed */
        d->slot = NULL;
}

const char *http_header(const h2o_req_t *req, const char *name, size_t *len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    *len = req->headers.entries[i].value.len;
    return req->headers.entries[i].value.base;
}

bool http_content_type_is(const h2o_req_t *req, const char *mt)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return false;
    const h2o_iovec_t v = req->headers.entries[i].value;
    size_t n = 0;
    while (n < v.len && v.base[n] != ';' && v.base[n] != ' ' && v.base[n] != '\t')
        n++;
    return n == strlen(mt) && h2o_lcstris(v.base, n, mt, n);
}

static void make_request_id(struct http_loop *loop, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = loop->rid_prefix, b = ++loop->rid_seq;
    for (int i = 0; i < 16; i++)
        out[i] = hex[(a >> (60 - 4 * i)) & 15];
    for (int i = 0; i < 16; i++)
        out[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    out[32] = '\0';
}

static void peer_info(struct http_request *r)
{
    h2o_conn_t *conn = r->req->conn;
    r->peer_len = conn->callbacks->get_peername(conn, (struct sockaddr *)&r->peer);
    r->peer_text[0] = '\0';
    if (r->peer.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&r->peer)->sin_addr, r->peer_text, sizeof(r->peer_text));
    else if (r->peer.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&r->peer)->sin6_addr, r->peer_text, sizeof(r->peer_text));
    else
        snprintf(r->peer_text, sizeof(r->peer_text), "unix");
}

static uint64_t peer_key(const struct http_request *r)
{
    if (r->peer.ss_family == AF_INET)
        return rl_key(&((const struct sockaddr_in *)&r->peer)->sin_addr, 4);
    if (r->peer.ss_family == AF_INET6) /* a /64 is one client: v6 hosts own whole prefixes */
        return rl_key(&((const struct sockaddr_in6 *)&r->peer)->sin6_addr, 8);
    return 0;
}

static bool path_matches(const struct http_route *rt, h2o_iovec_t path)
{
    size_t n = strlen(rt->path);
    /* the query string is not part of route matching */
    size_t plen = 0;
    while (plen < path.len && path.base[plen] != '?')
        plen++;
    if (rt->path[n - 1] == '/' && n > 1)
        return plen > n && memcmp(path.base, rt->path, n) == 0;
    return plen == n && memcmp(path.base, rt->path, n) == 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    struct http_loop *loop = (struct http_loop *)req->conn->ctx;
    struct http_request *r = h2o_mem_alloc_pool(&req->pool, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->loop = loop;
    r->t0_us = http_now_us();
    make_request_id(loop, r->request_id);
    peer_info(r);

    unsigned retry = 1;
    if (!rl_take(&loop->rl_conn, req->conn->id, r->t0_us, &retry) ||
        !rl_take(&loop->rl_addr, peer_key(r), r->t0_us, &retry)) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", retry);
        http_add_header(r, "retry-after", ra);
        metrics_rate_limited();
        http_respond_error(r, 429, "rate_limited", "too many requests; retry later");
        return 0;
    }
    for (size_t i = 0; i < nroutes; i++) {
        if (!path_matches(&routes[i], req->path_normalized))
            continue;
        if (routes[i].method != NULL && !h2o_memis(req->method.base, req->method.len, routes[i].method,
                                                   strlen(routes[i].method))) {
            /* another route may have the same path with another method */
            bool other = false;
            for (size_t j = i + 1; j < nroutes; j++)
                if (path_matches(&routes[j], req->path_normalized) &&
                    (routes[j].method == NULL ||
                     h2o_memis(req->method.base, req->method.len, routes[j].method, strlen(routes[j].method))))
                    other = true;
            if (other)
                continue;
            http_add_header(r, "allow", routes[i].method);
            http_respond_error(r, 405, "invalid_request", "method not allowed");
            return 0;
        }
        r->route = &routes[i];
        return routes[i].handler(r);
    }
    http_respond_error(r, 404, "not_found", "no such endpoint");
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_accept_ctx_t *actx = listener->data;
    h2o_socket_t *sock;
    /* accept a few per wake-up; the shared fd is level-triggered across loops */
    for (int i = 0; i < 16 && (sock = h2o_evloop_socket_accept(listener)) != NULL; i++)
        h2o_accept(actx, sock);
}

static int open_listener(const char *host, unsigned port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (getaddrinfo(host, ports, &hints, &res) != 0 || res == NULL) {
        snprintf(err, errlen, "listen address %s:%u is not a numeric address", host, port);
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static SSL_CTX *make_tls_ctx(const struct config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
    if (ssl == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ssl, cfg->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ssl, cfg->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ssl) != 1)
        goto fail;
    /* session resumption: stateless tickets (OpenSSL default) and a server-side cache */
    SSL_CTX_set_session_id_context(ssl, (const unsigned char *)"broker", 6);
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ssl, 20000);
    SSL_CTX_set_num_tickets(ssl, 1); /* one resumption ticket per handshake is enough for a client */
    h2o_ssl_register_alpn_protocols(ssl, h2o_alpn_protocols);
    return ssl;
fail:
    snprintf(err, errlen, "TLS setup failed for cert %s / key %s: %s", cfg->tls_cert ? cfg->tls_cert : "-",
             cfg->tls_key ? cfg->tls_key : "-", ERR_reason_error_string(ERR_peek_last_error()));
    SSL_CTX_free(ssl);
    return NULL;
}

struct loop_cmd {
    struct loop_msg msg;
    struct http_loop *loop;
};

static void on_drain(struct loop_msg *m)
{
    struct loop_cmd *c = (struct loop_cmd *)m;
    struct http_loop *loop = c->loop;
    if (loop->lsock_plain != NULL) {
        h2o_socket_read_stop(loop->lsock_plain);
        h2o_socket_close(loop->lsock_plain);
        loop->lsock_plain = NULL;
    }
    if (loop->lsock_tls != NULL) {
        h2o_socket_read_stop(loop->lsock_tls);
        h2o_socket_close(loop->lsock_tls);
        loop->lsock_tls = NULL;
    }
    h2o_context_request_shutdown(&loop->ctx); /* GOAWAY on HTTP/2, close idle HTTP/1 */
    free(c);
}

static void on_wake(struct loop_msg *m)
{
    free(m);
}

/* The context, its message queue and the listening sockets are built on the loop's own thread:
 * h2o 2.2.5 gives every socket it creates the creating thread's (thread-local) buffer recycler,
 * so sockets made on the main thread and read on two loop threads would share one unlocked
 * free list — a heap corruption that showed as use-after-free at shutdown under ASan. */
static void loop_init(struct http_loop *l)
{
    h2o_context_init(&l->ctx, h2o_evloop_create(), &globalconf);
    h2o_multithread_register_receiver(l->ctx.queue, &l->rx, on_messages);
    h2o_linklist_init_anchor(&l->later);
    l->later_entry = (h2o_timeout_entry_t){.cb = on_later};
    l->accept_plain.ctx = &l->ctx;
    l->accept_plain.hosts = globalconf.hosts;
    l->lsock_plain = h2o_evloop_socket_create(l->ctx.loop, l->fd_plain, H2O_SOCKET_FLAG_DONT_READ);
    l->lsock_plain->data = &l->accept_plain;
    h2o_socket_read_start(l->lsock_plain, on_accept);
    if (l->fd_tls >= 0) {
        l->accept_tls.ctx = &l->ctx;
        l->accept_tls.hosts = globalconf.hosts;
        l->accept_tls.ssl_ctx = l->ssl;
        l->lsock_tls = h2o_evloop_socket_create(l->ctx.loop, l->fd_tls, H2O_SOCKET_FLAG_DONT_READ);
        l->lsock_tls->data = &l->accept_tls;
        h2o_socket_read_start(l->lsock_tls, on_accept);
    }
}

static void *loop_main(void *arg)
{
    struct http_loop *loop = arg;
    char name[16];
    snprintf(name, sizeof(name), "broker-loop%u", (unsigned)(loop - loops) % 100u);
    pthread_setname_np(pthread_self(), name); /* top -H, /proc/PID/task/N/comm */
    sigset_t set;
    sigfillset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    loop_init(loop);
    atomic_store(&loop->ready, 1);
    while (!atomic_load(&stopping))
        h2o_evloop_run(loop->ctx.loop, 200);
    /* per-thread crypto contexts of the handlers that ran here */
    verify_thread_cleanup();
    keys_thread_cleanup();
    exchange_thread_cleanup();
    return NULL;
}

static double env_rate(const char *name, double dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end;
    double d = strtod(v, &end);
    return *end == '\0' && d >= 0 ? d : dflt;
}

enum broker_err http_serve(const struct config *cfg, const struct http_route *r, size_t n)
{
    char err[512];
    enum broker_err rc = BROKER_ERR_CONFIG;
    SSL_CTX *ssl = NULL;
    int fd_plain = -1, fd_tls = -1;
    routes = r;
    nroutes = n;
    rate_conn = env_rate("BROKER_RATE_PER_CONN", BROKER_RATE_PER_CONN);
    rate_addr = env_rate("BROKER_RATE_PER_ADDR", BROKER_RATE_PER_ADDR);

    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    h2o_config_init(&globalconf);
    globalconf.server_name = h2o_iovec_init(H2O_STRLIT("broker"));
    globalconf.max_request_entity_size = BROKER_MAX_BODY_BUFFER;
    globalconf.http2.max_concurrent_requests_per_connection = BROKER_MAX_HTTP2_STREAMS;
    h2o_hostconf_t *host = h2o_config_register_host(&globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = on_req;

    if ((fd_plain = open_listener(cfg->listen_host, cfg->listen_port, err, sizeof(err))) < 0)
        goto out;
    if (cfg->tls_port != 0) {
        if ((ssl = make_tls_ctx(cfg, err, sizeof(err))) == NULL)
            goto out;
        if ((fd_tls = open_listener(cfg->tls_host, cfg->tls_port, err, sizeof(err))) < 0)
            goto out;
    }

    nloops = cfg->threads;
    loops = calloc(nloops, sizeof(*loops));
    if (loops == NULL) {
        rc = BROKER_ERR_NOMEM;
        snprintf(err, sizeof(err), "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < nloops; i++) {
        struct http_loop *l = &loops[i];
        uint64_t seed;
        if (RAND_bytes((unsigned char *)&l->rid_prefix, sizeof(l->rid_prefix)) != 1 ||
            RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1) {
            rc = BROKER_ERR_INTERNAL;
            snprintf(err, sizeof(err), "RAND_bytes failed");
            goto out;
        }
        rl_init(&l->rl_conn, rate_conn, rate_conn, seed);
        rl_init(&l->rl_addr, rate_addr, rate_addr, seed ^ 0x9e3779b97f4a7c15ULL);
        l->ssl = ssl;
        l->fd_plain = dup(fd_plain);
        l->fd_tls = fd_tls >= 0 ? dup(fd_tls) : -1;
        if (l->fd_plain < 0 || (fd_tls >= 0 && l->fd_tls < 0)) {
            snprintf(err, sizeof(err), "dup: %s", strerror(errno));
            goto out;
        }
    }
    close(fd_plain);
    fd_plain = -1;
    if (fd_tls >= 0) {
        close(fd_tls);
        fd_tls = -1;
    }
    for (unsigned i = 0; i < nloops; i++)
        pthread_create(&loops[i].tid, NULL, loop_main, &loops[i]);
    for (unsigned i = 0; i < nloops; i++) /* nothing may post to a loop before its queue exists */
        while (!atomic_load(&loops[i].ready))
            usleep(1000);
    log_msg(LOG_INFO, "listening", "listen=%s:%u tls=%s%s%u threads=%u issuer=%s", cfg->listen_host, cfg->listen_port,
            cfg->tls_port ? cfg->tls_host : "off", cfg->tls_port ? ":" : "", cfg->tls_port, nloops, cfg->issuer);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_msg(LOG_INFO, "draining", "signal=%d", sig);
    atomic_store(&draining, 1);
    for (unsigned i = 0; i < nloops; i++) {
        struct loop_cmd *c = calloc(1, sizeof(*c));
        if (c == NULL)
            continue;
        c->msg.cb = on_drain;
        c->loop = &loops[i];
        http_post(&loops[i], &c->msg);
    }
    /* wait for deferred answers (audit commits, key fetches) to go out; bounded */
    uint64_t deadline = http_now_us() + 30u * 1000000u;
    for (;;) {
        int busy = 0;
        for (unsigned i = 0; i < nloops; i++)
            busy += atomic_load(&loops[i].inflight);
        if (busy == 0 || http_now_us() > deadline)
            break;
        usleep(20000);
    }
    usleep(100000); /* let final frames flush */
    atomic_store(&stopping, 1);
    for (unsigned i = 0; i < nloops; i++) {
        struct loop_msg *m = calloc(1, sizeof(*m));
        if (m != NULL) {
            m->cb = on_wake;
            http_post(&loops[i], m);
        }
        pthread_join(loops[i].tid, NULL);
    }
    log_msg(LOG_INFO, "stopped", "%s", "");
    return BROKER_OK;
out:
    log_msg(LOG_ERROR, "serve_failed", "reason=\"%s\"", err);
    if (fd_plain >= 0)
        close(fd_plain);
    if (fd_tls >= 0)
        close(fd_tls);
    SSL_CTX_free(ssl);
    return rc;
}
