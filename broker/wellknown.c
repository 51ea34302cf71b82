#include "wellknown.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "audit.h"
#include "issuers.h"
#include "metrics.h"
#include "revoked.h"
#include "state.h"

static char *discovery;
static size_t discovery_len;

enum broker_err wellknown_init(const char *issuer)
{
    char url[4][600];
    snprintf(url[0], sizeof(url[0]), "%s/v1/token", issuer);
    snprintf(url[1], sizeof(url[1]), "%s/.well-known/jwks.json", issuer);
    snprintf(url[2], sizeof(url[2]), "%s/v1/introspect", issuer);
    snprintf(url[3], sizeof(url[3]), "%s/v1/revoke", issuer);
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s,s], s:[s], s:[s], s:[s], s:[s], s:[s]}", "issuer", issuer,
                          "token_endpoint", url[0], "jwks_uri", url[1], "introspection_endpoint", url[2],
                          "revocation_endpoint", url[3], "grant_types_supported",
                          "urn:ietf:params:oauth:grant-type:token-exchange",
                          "urn:ietf:params:oauth:grant-type:jwt-bearer", "token_endpoint_auth_methods_supported", "none",
                          "response_types_supported", "token", "subject_types_supported", "public",
                          "id_token_signing_alg_values_supported", "ES256", "access_token_signing_alg_values_supported",
                          "ES256");
    if (d == NULL)
        return BROKER_ERR_NOMEM;
    discovery = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    if (discovery == NULL)
        return BROKER_ERR_NOMEM;
    discovery_len = strlen(discovery);
    return BROKER_OK;
}

int wellknown_discovery(struct http_request *r)
{
    http_respond_json(r, 200, discovery, discovery_len);
    return 0;
}

int wellknown_jwks(struct http_request *r)
{
    struct keyring_ref *k = state_keys_get();
    if (k == NULL) {
        http_respond_error(r, 503, "temporarily_unavailable", "no signing keys loaded");
        return 0;
    }
    const struct keyring *ring = state_keys_ring(k);
    http_respond(r, 200, "application/jwk-set+json", ring->jwks_json, ring->jwks_len);
    state_keys_put(k);
    return 0;
}

int wellknown_healthz(struct http_request *r)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    http_respond_json(r, 200, ok, sizeof(ok) - 1);
    return 0;
}

/* Ready: able to serve every endpoint. Revocations count too (a replica whose set is stale answers
 * Broker-token credentials and introspection with 503); token exchange does not consult them, and
 * a PostgreSQL outage already made this 503 through the state check before staleness existed. */
int wellknown_readyz(struct http_request *r)
{
    char body[288];
    bool policies = state_ready(), revocations = revoked_loaded(), audit = audit_db_up(), draining = http_draining();
    bool ready = policies && revocations && audit && !draining;
    int n = snprintf(body, sizeof(body),
                     "{\"ready\":%s,\"policies_and_keys\":%s,\"revocations\":%s,\"audit_store\":%s,"
                     "\"issuer_keys\":%s,\"draining\":%s}",
                     ready ? "true" : "false", policies ? "true" : "false", revocations ? "true" : "false",
                     audit ? "true" : "false", issuers_ready() ? "true" : "false", draining ? "true" : "false");
    http_respond_json(r, ready ? 200 : 503, body, (size_t)n);
    return 0;
}

int wellknown_metrics(struct http_request *r)
{
    size_t cap = 1 << 16;
    char *buf = h2o_mem_alloc_pool(&r->req->pool, cap);
    size_t n = metrics_render(buf, cap);
    http_respond(r, 200, "text/plain; version=0.0.4", buf, n);
    return 0;
}
