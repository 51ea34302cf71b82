/* h2o listeners, event-loop threads, TLS, routing, rate limits and response helpers.
 * No business logic: handlers live in exchange.c, admin.c and wellknown.c. */
#ifndef BROKER_HTTP_H
#define BROKER_HTTP_H
#include <stdbool.h>
#include <stdint.h>
#include <h2o.h>
#include "config.h"
#include "err.h"

struct http_loop;

/* Per-request context, allocated in req->pool by the dispatcher. */
struct http_route;

struct http_request {
    h2o_req_t *req;
    struct http_loop *loop;
    const struct http_route *route;  /* the matched route (its privilege column) */
    char request_id[33];
    uint64_t t0_us;             /* monotonic arrival time */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    char peer_text[64];         /* client address as text */
};

/* A message run on a loop thread (posted from any thread with http_post). */
struct loop_msg {
    h2o_multithread_message_t super;
    void (*cb)(struct loop_msg *m);
};

/* PRIV_ADMIN: an admin token, or a Broker token with scope broker:admin. PRIV_INTROSPECT
 * (POST /v1/introspect): the same, or a Broker token with scope broker:introspect. */
enum http_priv { PRIV_NONE = 0, PRIV_ADMIN, PRIV_INTROSPECT };

struct http_route {
    const char *method;         /* NULL: any method (the handler answers 405 itself) */
    const char *path;           /* exact, or a prefix when it ends with '/' */
    enum http_priv priv;        /* checked by the handler through admin_authorize */
    int (*handler)(struct http_request *r);
};

/* Run the server until SIGTERM/SIGINT, then drain in-flight requests. */
enum broker_err http_serve(const struct config *cfg, const struct http_route *routes, size_t nroutes) BROKER_WUR;

void http_post(struct http_loop *loop, struct loop_msg *m);
/* On the loop thread: run m at the end of this loop iteration, after every request read in it
 * has been handled, together with the others queued so (FIFO; a callback may queue again, and
 * that runs in the same pass). m counts as in flight until its callback returns, and the audit
 * writer's wake-up is held across the pass (audit_hold), so the pass's decisions are one batch.
 * Exchanges queue verification, then signing, this way: an iteration's RSA verifications run back
 * to back, then its P-256 signs, with their tables still in cache. */
void http_later(struct http_loop *loop, struct loop_msg *m);
bool http_draining(void);
uint64_t http_now_us(void);     /* monotonic */
/* Count a request whose answer is deferred (drain waits for these). */
void http_inflight_add(struct http_loop *loop, int delta);

/* Deferred answers. A job that answers later keeps r in *slot; h2o frees the request when the
 * client resets the stream or closes the connection, and then *slot becomes NULL (checked on
 * the loop thread before answering). A job freed calls http_defer_release with the same slot:
 * while *slot is set the request (and d, in its pool) is alive and stops pointing at the job;
 * once *slot is NULL, d is already gone with the request and is not touched. */
struct http_defer;
struct http_defer *http_defer(struct http_request *r, struct http_request **slot);
void http_defer_release(struct http_defer *d, struct http_request *const *slot);

/* Responses. Bodies are copied into req->pool. Every response has X-Request-Id. */
void http_respond(struct http_request *r, int status, const char *content_type, const char *body, size_t len);
void http_respond_json(struct http_request *r, int status, const char *json, size_t len);
/* RFC 6749 §5.2 error body {"error","error_description","request_id"}. */
void http_respond_error(struct http_request *r, int status, const char *error, const char *description);
/* Add a response header before http_respond*. */
void http_add_header(struct http_request *r, const char *name, const char *value);

/* true when the request's Content-Type media type equals mt (parameters ignored). */
bool http_content_type_is(const h2o_req_t *req, const char *mt);
/* Value of a request header, or NULL (len in *len). */
const char *http_header(const h2o_req_t *req, const char *name, size_t *len);

#endif
