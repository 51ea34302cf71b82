#!/usr/bin/env bash
# `make demo`: Broker's main job on an embedded default. A throwaway PostgreSQL under .demo/,
# demo signing keys, a demo OIDC issuer on https://127.0.0.1:9443, the documents in
# trust-policies/, `broker serve`, one real exchange over HTTP/2 — then everything is stopped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${1:-$ROOT/build/broker}
WORK=$ROOT/.demo
. "$ROOT/tests/integration/lib/env.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  issuer_stop "$WORK/issuer"
  wait 2>/dev/null || true
  pg_stop "$WORK/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT

mkdir -p "$WORK"
chmod 755 "$WORK"
rm -rf "$WORK/keys" "$WORK"/*.log
say "PostgreSQL (throwaway cluster in .demo/pg)"
pg_start "$WORK/pg" >/dev/null
export BROKER_SQL_DIR="$ROOT/sql" BROKER_KEYS_DIR="$WORK/keys" BROKER_LISTEN=127.0.0.1:8080
export BROKER_ISSUER=http://127.0.0.1:8080
"$BROKER_BIN" migrate

say "Signing keys (.demo/keys)"
"$BROKER_BIN" keys generate
"$BROKER_BIN" keys list

say "Demo OIDC issuer (GitHub-Actions-shaped) on https://127.0.0.1:9443"
[ -f "$WORK/issuer/ca.pem" ] || $PY "$ISSUER_PY" init "$WORK/issuer" >/dev/null
$PY "$ISSUER_PY" serve "$WORK/issuer" --port 9443 >>"$WORK/issuer.out" 2>&1 &
ISSUER_URL=https://127.0.0.1:9443
wait_http "$ISSUER_URL/.well-known/openid-configuration" 100 ||
  curl -fsS --cacert "$WORK/issuer/ca.pem" -o /dev/null "$ISSUER_URL/.well-known/openid-configuration"

say "Trust policies (trust-policies/*.json)"
"$BROKER_BIN" policy apply "$ROOT/trust-policies"

say "broker serve on $BROKER_LISTEN (h2c + HTTP/1.1)"
"$BROKER_BIN" serve >"$WORK/broker.log" 2>&1 &
PIDS+=($!)
wait_http "http://$BROKER_LISTEN/readyz" 150 || { tail -20 "$WORK/broker.log"; exit 1; }
curl -sS "http://$BROKER_LISTEN/readyz"; echo

say "A workload token from the demo issuer (what a GitHub Actions job holds)"
TOKEN=$($PY "$ISSUER_PY" mint "$WORK/issuer" --preset github-actions --iss "$ISSUER_URL" --aud "$BROKER_ISSUER")
jwt_part "$TOKEN" 2 | jq -C '{iss, sub, aud, repository, repository_id, event_name, ref, exp}'

say "POST /v1/token over HTTP/2 (RFC 8693 token exchange)"
echo "curl --http2-prior-knowledge $BROKER_ISSUER/v1/token -d grant_type=...token-exchange -d subject_token=..."
RESP=$(curl -sS --http2-prior-knowledge -D "$WORK/headers.txt" "http://$BROKER_LISTEN/v1/token" \
  --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
  --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
  --data-urlencode "subject_token=$TOKEN")
head -1 "$WORK/headers.txt"
jq -C '.access_token |= (.[0:32] + "...")' <<<"$RESP"
AT=$(jq -r .access_token <<<"$RESP")
[ "$AT" != null ] || { echo "exchange failed"; tail -20 "$WORK/broker.log"; exit 1; }

say "The access token, decoded (RFC 9068; verify it offline with /.well-known/jwks.json)"
jwt_part "$AT" 1 | jq -C .
jwt_part "$AT" 2 | jq -C .

say "The audit record of this decision (GET /v1/audit/{request_id})"
RID=$(tr -d '\r' <"$WORK/headers.txt" | awk 'tolower($1)=="x-request-id:"{print $2}')
ADMIN=$("$BROKER_BIN" admin-token create --name "demo-$(date +%s)")
curl -sS -H "authorization: Bearer $ADMIN" "http://$BROKER_LISTEN/v1/audit/$RID" | jq -C .

say "A denied exchange: same repository name, different repository_id (deleted and re-created by someone else)"
echo "The client learns the kind of failure; the audit record says which condition failed and why."
BAD=$($PY "$ISSUER_PY" mint "$WORK/issuer" --preset github-actions --iss "$ISSUER_URL" --aud "$BROKER_ISSUER" \
  --claims '{"repository_id": "987654321"}')
DENY=$(curl -sS --http2-prior-knowledge "http://$BROKER_LISTEN/v1/token" \
  --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
  --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" --data-urlencode "subject_token=$BAD")
jq -C . <<<"$DENY"
curl -sS -H "authorization: Bearer $ADMIN" "http://$BROKER_LISTEN/v1/audit/$(jq -r .request_id <<<"$DENY")" |
  jq -C '{result, reason, identity: .explanation.policies[0].identity, policy: .explanation.policies[0].policy,
          first_failed: .explanation.policies[0].first_failed,
          failed: [.explanation.policies[0].conditions[] | select(.result == false)]}'

say "The same denial for a human: broker audit show $(jq -r .request_id <<<"$DENY")"
"$BROKER_BIN" audit show "$(jq -r .request_id <<<"$DENY")"

say "Stopping (SIGTERM drains in-flight requests)"
