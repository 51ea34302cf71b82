#!/usr/bin/env bash
# Integration suite: a throwaway PostgreSQL, a local HTTPS OIDC issuer, the real `broker`
# binary, real HTTP/2 clients (curl, nghttp, h2load). Prints "integration: N passed, N failed".
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${BROKER_BIN:-$ROOT/build/broker}
WORK=$(mktemp -d /tmp/broker-it.XXXXXX)
chmod 755 "$WORK"
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}
export BROKER_FIXTURES=${BROKER_FIXTURES:-$ROOT/../shared/fixtures/real-oidc}
. "$ROOT/tests/integration/lib/tap.sh"
. "$ROOT/tests/integration/lib/env.sh"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  issuer_stop "$WORK/issuer"
  wait 2>/dev/null
  pg_stop "$WORK/pg" >/dev/null 2>&1
  if [ "${KEEP_WORK:-0}" = 1 ] || [ $T_FAIL -gt 0 ]; then echo "# work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- environment
pg_start "$WORK/pg" >/dev/null || { echo "cannot start PostgreSQL"; exit 1; }
export BROKER_SQL_DIR="$ROOT/sql" BROKER_KEYS_DIR="$WORK/keys" BROKER_THREADS=2
t_check "migrate applies the schema" "$BROKER_BIN" migrate
t_match "migrate is idempotent" "applied: 0" "$("$BROKER_BIN" migrate 2>&1)"
t_check "keys generate" "$BROKER_BIN" keys generate
t_match "keys generate --activate-in without a duration is a usage error" "usage: .* rc=2$" \
  "$("$BROKER_BIN" keys generate --activate-in 2>&1; echo " rc=$?")"
issuer_start "$WORK/issuer" || { echo "cannot start the test issuer"; exit 1; }
ISS="$WORK/issuer"

mkdir -p "$WORK/policies"
cat >"$WORK/policies/test.issuer.json" <<JSON
{"issuer": "test", "url": "$ISSUER_URL", "ca_file": "$ISS/ca.pem", "algorithms": ["RS256"], "leeway": "30s"}
JSON
cat >"$WORK/policies/k8s.issuer.json" <<JSON
{"issuer": "minikube", "url": "kubernetes/serviceaccount",
 "jwks_file": "$BROKER_FIXTURES/kubernetes/minikube_v1.18.10_sa.jwks.derived.json"}
JSON
cat >"$WORK/policies/deploy.identity.json" <<'JSON'
{"identity": "deploy", "description": "deploys the demo service",
 "scopes": ["secrets:read:demo", "secrets:write:demo"],
 "audiences": ["https://secrets.example.com", "https://other.example.com"],
 "ttl": "15m", "max_ttl": "1h",
 "trust": [{"name": "main-branch", "issuer": "test",
            "subject": {"equals": "repo:acme/demo:ref:refs/heads/main"},
            "claims": {"repository_id": {"equals": "123456789"},
                       "event_name": {"in": ["push", "workflow_dispatch"]}},
            "claim_mappings": {"repository": "repo", "run_id": "run"}}]}
JSON
cat >"$WORK/policies/vault.identity.json" <<'JSON'
{"identity": "k8s-vault", "scopes": ["secrets:read:vault"], "audiences": ["https://vault.example.com"],
 "trust": [{"name": "default-sa", "issuer": "minikube", "audience": "kubernetes.default.svc",
            "subject": {"equals": "system:serviceaccount:default:default"},
            "claims": {"/kubernetes.io/namespace": {"equals": "default"},
                       "/kubernetes.io/serviceaccount/uid": {"equals": "77c81ad7-1bea-4d94-9ca5-f5d7f3632331"}}}]}
JSON
cat >"$WORK/policies/once.identity.json" <<'JSON'
{"identity": "once", "scopes": ["s:o"], "audiences": ["https://o.example.com"],
 "trust": [{"name": "main", "issuer": "test", "single_use": true,
            "subject": {"equals": "repo:acme/once:ref:refs/heads/main"}}]}
JSON
cat >"$WORK/policies/limited.identity.json" <<'JSON'
{"identity": "limited", "scopes": ["s:l"], "audiences": ["https://l.example.com"],
 "rate_limit": {"per_minute": 6, "burst": 2},
 "trust": [{"name": "main", "issuer": "test", "subject": {"equals": "repo:acme/limited:ref:refs/heads/main"}}]}
JSON
cat >"$WORK/policies/mapped.identity.json" <<'JSON'
{"identity": "mapped", "scopes": ["s:m"], "audiences": ["https://m.example.com"],
 "trust": [{"name": "by-id", "issuer": "test", "claims": {"repository_id": {"equals": "555"}},
            "claim_mappings": {"blob": "blob", "blob2": "blob2"}}]}
JSON
for n in a b; do cat >"$WORK/policies/shared-$n.identity.json" <<JSON
{"identity": "shared-$n", "scopes": ["s:$n"], "audiences": ["https://$n.example.com"],
 "trust": [{"name": "shared", "issuer": "test", "subject": {"equals": "repo:acme/shared:ref:refs/heads/main"}}]}
JSON
done
t_check "policy apply stores the documents" "$BROKER_BIN" policy apply "$WORK/policies"
t_match "policy apply again changes nothing" "^(unchanged [a-z]+ [a-z0-9-]+\s*)+$" "$("$BROKER_BIN" policy apply "$WORK/policies")"
t_eq "policy apply again: no finding calls a stored issuer a duplicate of itself" 0 \
  "$("$BROKER_BIN" policy apply "$WORK/policies" 2>&1 >/dev/null | grep -c 'already used')"
echo '{"identity": "bad", "scopes": [], "audiences": ["x"], "trust": [{"name": "p", "issuer": "test"}]}' >"$WORK/bad.json"
t_check "policy apply refuses a policy binding neither subject nor claims" bash -c "! '$BROKER_BIN' policy apply '$WORK/bad.json' 2>/dev/null"
ADMIN=$("$BROKER_BIN" admin-token create --name ci)
t_match "admin-token create prints a token once" "^brk_admin_[A-Za-z0-9_-]{43}$" "$ADMIN"
t_match "admin-token create refuses a name that could forge a log line" "must be 1-128 characters.* rc=2$" \
  "$("$BROKER_BIN" admin-token create --name $'evil\nts=x level=error event=fake' 2>&1; echo " rc=$?")"
t_match "admin-token create refuses an empty name, saying so" "must be 1-128 characters.* rc=2$" \
  "$("$BROKER_BIN" admin-token create --name '' 2>&1; echo " rc=$?")"
t_match "admin-token create of a taken name says it is taken" "a token with that name exists.* rc=1$" \
  "$("$BROKER_BIN" admin-token create --name ci 2>&1; echo " rc=$?")"

broker_start main || exit 1
PIDS+=("$BROKER_PID")
MAIN_PID=$BROKER_PID
GOOD() { mint "$ISS" --preset github-actions --aud "$BROKER_URL" "$@"; }

# ---------------------------------------------------------------- operations endpoints
t_match "healthz" '"status":"ok"' "$(curl -sS "$BROKER_URL/healthz")"
t_match "readyz" '"ready":true' "$(curl -sS "$BROKER_URL/readyz")"
disc=$(curl -sS --http2-prior-knowledge "$BROKER_URL/.well-known/openid-configuration")
t_eq "discovery issuer" "$BROKER_URL" "$(jq -r .issuer <<<"$disc")"
t_eq "discovery token endpoint" "$BROKER_URL/v1/token" "$(jq -r .token_endpoint <<<"$disc")"
t_eq "RFC 8414 document equals discovery" "$disc" "$(curl -sS "$BROKER_URL/.well-known/oauth-authorization-server")"
curl -sS "$BROKER_URL/.well-known/jwks.json" >"$WORK/jwks.json"
t_eq "jwks publishes the active ES256 key" "EC P-256 ES256" "$(jq -r '.keys[0] | "\(.kty) \(.crv) \(.alg)"' "$WORK/jwks.json")"
t_match "every response has X-Request-Id" "x-request-id: [0-9a-f]{32}" "$(curl -sSi "$BROKER_URL/healthz" | tr -d '\r')"

# ---------------------------------------------------------------- the exchange
tok=$(GOOD)
res=$(exchange "$tok")
t_match "h2c exchange succeeds" "^200 " "$res"
at=$(jq -r .access_token <<<"${res#* }")
t_eq "response shape" "Bearer urn:ietf:params:oauth:token-type:access_token 900 secrets:read:demo secrets:write:demo" \
  "$(jq -r '"\(.token_type) \(.issued_token_type) \(.expires_in) \(.scope)"' <<<"${res#* }")"
claims=$("$PY" "$ROOT/tests/tools/jwtverify.py" "$WORK/jwks.json" "$at")
t_match "minted token verifies independently (python cryptography, RFC 9068 header)" '"iss"' "$claims"
t_eq "minted claims" "$BROKER_URL deploy deploy https://secrets.example.com 900 acme/demo main-branch" \
  "$(jq -r '"\(.iss) \(.sub) \(.client_id) \(.aud) \(.exp - .iat) \(.ext.repo) \(.src.policy)"' <<<"$claims")"
t_eq "src carries the subject token's iss and sub" "$ISSUER_URL repo:acme/demo:ref:refs/heads/main" \
  "$(jq -r '"\(.src.iss) \(.src.sub)"' <<<"$claims")"
t_match "jti has >= 128 bits" '^[A-Za-z0-9_-]{22,}$' "$(jq -r .jti <<<"$claims")"
t_eq "iat == nbf" "$(jq -r .iat <<<"$claims")" "$(jq -r .nbf <<<"$claims")"
t_match "Cache-Control: no-store on tokens" "cache-control: no-store" \
  "$(curl -sSi --http2-prior-knowledge --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
     --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode "subject_token=$(GOOD)" \
     "$BROKER_URL/v1/token" | tr -d '\r')"

res=$(exchange "$(GOOD)" --http1.1)
t_match "HTTP/1.1 exchange succeeds" "^200 " "$res"
res=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code} %{http_version}' -H 'content-type: application/json' \
  --data "{\"grant_type\":\"urn:ietf:params:oauth:grant-type:token-exchange\",\"subject_token_type\":\"urn:ietf:params:oauth:token-type:id_token\",\"subject_token\":\"$(GOOD)\"}" \
  "$BROKER_URL/v1/token")
t_eq "JSON body exchange over HTTP/2" "200 2" "$res"
res=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code}' \
  --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer --data-urlencode "assertion=$(GOOD)" "$BROKER_URL/v1/token")
t_eq "RFC 7523 jwt-bearer grant" "200" "$res"
res=$(exchange "$(GOOD)" --data-urlencode scope=secrets:read:demo --data-urlencode audience=https://other.example.com)
t_eq "scope and audience narrowing" "secrets:read:demo https://other.example.com" \
  "$(jq -r .access_token <<<"${res#* }" | { read -r t; jwt_part "$t" 2; } | jq -r '"\(.scope) \(.aud)"')"
printf 'grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Atoken-exchange&subject_token_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Atoken-type%%3Ajwt&subject_token=%s' "$(GOOD)" >"$WORK/body.txt"
out=$(nghttp -n -s -d "$WORK/body.txt" -H 'content-type: application/x-www-form-urlencoded' "$BROKER_URL/v1/token" 2>&1)
t_match "nghttp (HTTP/2) exchange" "200" "$(nghttp -v -d "$WORK/body.txt" -H 'content-type: application/x-www-form-urlencoded' "$BROKER_URL/v1/token" 2>&1 | grep ':status')"
out=$(h2load -n 200 -c 4 -m 8 -d "$WORK/body.txt" -H 'content-type: application/x-www-form-urlencoded' "$BROKER_URL/v1/token" 2>&1)
t_match "h2load: 200 exchanges, all 2xx" "status codes: 200 2xx" "$out"

# real Kubernetes token, live (issuer kubernetes/serviceaccount, jwks_file)
k8s=$(cat "$BROKER_FIXTURES/kubernetes/k8s_minikube_projected_2020-10-30_exp2030.jwt")
res=$(exchange "$k8s")
t_match "real minikube projected token is exchanged" "^200 " "$res"
t_eq "…for the k8s-vault identity" "k8s-vault" "$(jq -r .access_token <<<"${res#* }" | { read -r t; jwt_part "$t" 2; } | jq -r .sub)"
res=$(exchange "$(cat "$BROKER_FIXTURES/kubernetes/k8s_minikube_projected_2020-10-30_expired.jwt")")
t_match "real expired minikube token is refused" '^400 .*"invalid_grant".*expired' "$res"

# ---------------------------------------------------------------- issuer key rotation and outage
issuer_ctl "$ISS" /_control/rotate
res=$(exchange "$(GOOD)")
t_match "issuer key rotation: the new kid is fetched once and accepted" '^200 ' "$res"
t_match "JWKS fetch metrics" 'broker_jwks_fetch_total\{issuer="test",result="ok"\} [2-9]' "$(curl -sS "$BROKER_URL/metrics")"
issuer_ctl "$ISS" "/_control/outage?on=1"
t_match "issuer outage: cached keys keep serving" '^200 ' "$(exchange "$(GOOD)")"
issuer_ctl "$ISS" "/_control/outage?on=0"

"$PY" -c 'from cryptography.hazmat.primitives.asymmetric import rsa; from cryptography.hazmat.primitives import serialization as s; print(rsa.generate_private_key(65537,2048).private_bytes(s.Encoding.PEM,s.PrivateFormat.PKCS8,s.NoEncryption()).decode())' >"$WORK/attacker.pem"
# ---------------------------------------------------------------- every error of the spec
code() { curl -sS --http2-prior-knowledge -o "$WORK/err.json" -w '%{http_code}' "$@"; echo " $(jq -r '.error' "$WORK/err.json" 2>/dev/null)"; }
t_eq "405 on GET /v1/token" "405 invalid_request" "$(code "$BROKER_URL/v1/token")"
head -c 70000 /dev/zero | tr '\0' 'a' >"$WORK/big.txt"
t_eq "413 on HTTP/2" "413 invalid_request" "$(code -H 'content-type: application/x-www-form-urlencoded' --data-binary @"$WORK/big.txt" "$BROKER_URL/v1/token")"
t_eq "413 on HTTP/1.1" "413" "$(curl -sS --http1.1 -o /dev/null -w '%{http_code}' -H 'content-type: application/x-www-form-urlencoded' --data-binary @"$WORK/big.txt" "$BROKER_URL/v1/token")"
t_eq "415 on text/plain" "415 invalid_request" "$(code -H 'content-type: text/plain' --data 'x=1' "$BROKER_URL/v1/token")"
t_eq "400 invalid_request without grant_type" "400 invalid_request" "$(code --data 'subject_token=x' "$BROKER_URL/v1/token")"
t_eq "400 unsupported_grant_type" "400 unsupported_grant_type" "$(code --data 'grant_type=password' "$BROKER_URL/v1/token")"
t_eq "400 invalid_request on a repeated parameter" "400 invalid_request" "$(code --data 'grant_type=a&grant_type=b' "$BROKER_URL/v1/token")"
t_eq "400 invalid_request on a bad subject_token_type" "400 invalid_request" \
  "$(code --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange --data-urlencode subject_token_type=urn:x --data-urlencode "subject_token=$(GOOD)" "$BROKER_URL/v1/token")"
deny() { # NAME REGEX TOKEN [curl args]
  local name=$1 re=$2 t=$3; shift 3
  t_match "$name" "$re" "$(exchange "$t" "$@")"
}
deny "invalid_grant: malformed token" '^400 .*invalid_grant.*well-formed' "not.a.jwt"
deny "invalid_grant: expired" '^400 .*invalid_grant.*expired' "$(GOOD --now $(($(date +%s) - 4000)) --ttl 300)"
deny "invalid_grant: not yet valid" '^400 .*invalid_grant.*not valid yet' "$(GOOD --claims "{\"nbf\": $(($(date +%s) + 600))}")"
deny "invalid_grant: missing exp" '^400 .*invalid_grant.*exp' "$(GOOD --drop exp)"
deny "invalid_grant: wrong audience" '^400 .*invalid_grant.*audience' "$(mint "$ISS" --preset github-actions --aud https://someone-else.example.com)"
deny "invalid_grant: untrusted issuer" '^400 .*invalid_grant.*issuer is not trusted' "$(mint "$ISS" --preset github-actions --aud "$BROKER_URL" --iss https://evil.example.com)"
t2=$(GOOD); sig=${t2##*.}; first=${sig:0:1}; [ "$first" = A ] && rep=B || rep=A
deny "invalid_grant: bad signature" '^400 .*invalid_grant.*signature' "${t2%.*}.${rep}${sig:1}"
deny "invalid_grant: unknown kid (after one refetch)" '^400 .*invalid_grant.*signing key' "$(GOOD --key "$WORK/attacker.pem" --kid not-published)"
deny "invalid_grant: no matching policy" '^400 .*invalid_grant.*no trust policy' "$(GOOD --sub repo:acme/demo:ref:refs/heads/feature)"
deny "invalid_grant: immutable id differs" '^400 .*invalid_grant.*no trust policy' "$(GOOD --claims '{"repository_id": "999"}')"
deny "invalid_grant: unknown identity looks like no match" '^400 .*invalid_grant.*no trust policy' "$(GOOD)" --data-urlencode identity=nobody
deny "invalid_scope" '^400 .*"invalid_scope"' "$(GOOD)" --data-urlencode "scope=secrets:admin"
deny "invalid_target" '^400 .*"invalid_target"' "$(GOOD)" --data-urlencode "audience=https://nope.example.com"
deny "invalid_request: several identities match" '^400 .*invalid_request.*identity' "$(GOOD --sub repo:acme/shared:ref:refs/heads/main)"
t_match "identity picks one of several" '^200 ' "$(exchange "$(GOOD --sub repo:acme/shared:ref:refs/heads/main)" --data-urlencode identity=shared-b)"

lim=$(for i in 1 2 3; do exchange "$(GOOD --sub repo:acme/limited:ref:refs/heads/main)" | cut -c1-3; done | tr '\n' ' ')
t_eq "identity rate limit: burst 2, then 429" "200 200 429 " "$lim"
t_match "identity rate limit: Retry-After" "retry-after: [0-9]+" "$(curl -sSi --http2-prior-knowledge \
  --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt \
  --data-urlencode "subject_token=$(GOOD --sub repo:acme/limited:ref:refs/heads/main)" "$BROKER_URL/v1/token" | tr -d '\r')"

# single_use: each subject token jti is accepted once (claimed in the audit transaction)
once=$(GOOD --sub repo:acme/once:ref:refs/heads/main)
t_match "single_use: the first exchange succeeds" '^200 ' "$(exchange "$once")"
res=$(exchange "$once")
t_match "single_use: the same token again is refused" '^400 .*invalid_grant.*already been used' "$res"
rec=$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$(jq -r .request_id <<<"${res#* }")")
t_eq "single_use: the replay is audited as a denial without a minted jti" "denied replay null" \
  "$(jq -r '"\(.result) \(.reason) \(.token_jti)"' <<<"$rec")"
once=$(GOOD --sub repo:acme/once:ref:refs/heads/main)
opids=()
for i in $(seq 1 8); do (exchange "$once" | cut -c1-3 >"$WORK/once.$i") & opids+=($!); done
wait "${opids[@]}"
cat "$WORK"/once.[1-8] >"$WORK/once.txt"
t_eq "single_use: 8 concurrent exchanges of one token, exactly one succeeds" "1 7" \
  "$(grep -c '^200' "$WORK/once.txt") $(grep -c '^400' "$WORK/once.txt")"
t_match "single_use: a token without jti is refused" '^400 .*invalid_grant' "$(exchange "$(GOOD --sub repo:acme/once:ref:refs/heads/main --drop jti)")"

# a subject token's sub is not always a string, and mapped claims come from the token
for sub in '12345' 'none'; do
  if [ "$sub" = none ]; then t=$(GOOD --claims '{"repository_id": "555"}' --drop sub); want=null
  else t=$(GOOD --claims "{\"repository_id\": \"555\", \"sub\": $sub}"); want='"12345"'; fi
  res=$(exchange "$t")
  t_match "a matching token whose sub is $sub is issued" '^200 ' "$res"
  t_eq "its access token's src.sub is $want" "$want" "$(jwt_part "$(jq -r .access_token <<<"${res#* }")" 2 | jq -c .src.sub)"
done
rec=$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit?identity=mapped&limit=2")
t_eq "the audit keeps a numeric sub as its JSON text" "12345" "$(jq -r '[.items[] | .subject_sub // empty][0]' <<<"$rec")"
big=$(head -c 5000 /dev/zero | tr '\0' x)
res=$(exchange "$(GOOD --claims "{\"repository_id\": \"555\", \"blob\": \"$big\"}")")
t_match "a mapped claim over 4096 bytes: 400 invalid_grant, not a server error" '^400 .*invalid_grant.*too long to copy' "$res"
rec=$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$(jq -r .request_id <<<"${res#* }")")
t_eq "its audit record names the reason and the claim" "denied claim_too_long blob" \
  "$(jq -r '"\(.result) \(.reason) \(.explanation.claim)"' <<<"$rec")"
quotes=$(printf '\\"%.0s' $(seq 2100)) # 2,100 characters, 4,202 bytes of JSON text
res=$(exchange "$(GOOD --claims "{\"repository_id\": \"555\", \"blob\": \"$quotes\"}")")
t_match "a mapped claim is measured by its JSON text: 2,100 quote marks are too long" '^400 .*too long to copy' "$res"
t_eq "... and its audit record names it" "denied claim_too_long blob" \
  "$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$(jq -r .request_id <<<"${res#* }")" |
     jq -r '"\(.result) \(.reason) \(.explanation.claim)"')"
res=$(exchange "$(GOOD --claims "{\"repository_id\": \"555\", \"sub\": \"$big\"}")")
t_match "a sub of 5,000 bytes (copied into src.sub): 400 invalid_grant, not a server error" '^400 .*invalid_grant.*too long to copy' "$res"
t_eq "its audit record names sub" "claim_too_long sub" \
  "$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$(jq -r .request_id <<<"${res#* }")" | jq -r '"\(.reason) \(.explanation.claim)"')"
half=$(head -c 3500 /dev/zero | tr '\0' y)
res=$(exchange "$(GOOD --claims "{\"repository_id\": \"555\", \"blob\": \"$half\", \"blob2\": \"$half\"}")")
t_match "mapped claims too long together: 400 invalid_grant" '^400 .*invalid_grant.*too long to copy' "$res"
res=$(exchange "$(GOOD --claims "{\"repository_id\": \"555\", \"blob\": \"$half\"}")")
t_match "one mapped claim of 3500 bytes is copied" '^200 ' "$res"
t_eq "... into ext" 3500 "$(jwt_part "$(jq -r .access_token <<<"${res#* }")" 2 | jq -r '.ext.blob | length')"

# ---------------------------------------------------------------- audit
res=$(exchange "$(GOOD --claims '{"repository_id": "31337"}')")
rid=$(jq -r .request_id <<<"${res#* }")
t_match "error bodies carry request_id" '^[0-9a-f]{32}$' "$rid"
t_eq "GET /v1/audit/{id} without a token is 401" "401" "$(curl -sS -o /dev/null -w '%{http_code}' "$BROKER_URL/v1/audit/$rid")"
t_eq "GET /v1/audit/{id} with a bad token is 401" "401" "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer brk_admin_nope" "$BROKER_URL/v1/audit/$rid")"
rec=$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$rid")
t_eq "audit record of a denial" "denied no_matching_policy $ISSUER_URL repo:acme/demo:ref:refs/heads/main" \
  "$(jq -r '"\(.result) \(.reason) \(.subject_iss) \(.subject_sub)"' <<<"$rec")"
t_eq "audit explanation names the failed condition, expected and actual" "deploy main-branch claims.repository_id 123456789 31337" \
  "$(jq -r '.explanation.policies[0] | "\(.identity) \(.policy) \(.first_failed) \(.conditions[] | select(.result == false) | "\(.expected) \(.actual)")"' <<<"$rec")"
show=$("$BROKER_BIN" audit show "$rid" 2>&1)
t_match "broker audit show: the denial and its failing condition" "denied \(no_matching_policy\)" "$show"
t_match "broker audit show: expected and actual of the failed condition" "claims\.repository_id[^\n]*123456789[^\n]*31337" "$show"
t_eq "GET /v1/audit?identity= with bytes that are no name is a 400, not a database error" "400" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit?identity=%FF")"
ptest() { curl -sS -H "authorization: Bearer $1" -H 'content-type: application/json' --data "$2" "$BROKER_URL/v1/policy/test"; }
pt=$(ptest "$ADMIN" "{\"token\": \"$(GOOD --claims '{"repository_id": "31337"}')\"}")
t_eq "POST /v1/policy/test explains a denial" "denied no_matching_policy claims.repository_id" \
  "$(jq -r '"\(.decision) \(.reason) \(.policies[0].first_failed)"' <<<"$pt")"
t_eq "POST /v1/policy/test of a good token" "issued deploy main-branch" \
  "$(ptest "$ADMIN" "{\"token\": \"$(GOOD)\"}" | jq -r '"\(.decision) \(.identity) \(.policy)"')"
t_eq "POST /v1/policy/test needs an admin token" "401" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data '{}' "$BROKER_URL/v1/policy/test")"
res=$(exchange "$(GOOD)")
rid=$(curl -sS -D - -o /dev/null --http2-prior-knowledge --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode "subject_token=$(GOOD)" \
  "$BROKER_URL/v1/token" | tr -d '\r' | awk 'tolower($1)=="x-request-id:"{print $2}')
rec=$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$rid")
t_eq "audit record of an issue" "issued deploy main-branch secrets:read:demo secrets:write:demo https://secrets.example.com 127.0.0.1" \
  "$(jq -r '"\(.result) \(.identity) \(.policy) \(.scope) \(.audience) \(.client_addr)"' <<<"$rec")"
t_match "audit keeps the minted jti" '^[A-Za-z0-9_-]{22,}$' "$(jq -r .token_jti <<<"$rec")"

REVOKE=$("$BROKER_BIN" admin-token create --name to-revoke)
t_eq "a second admin token works" "200" "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $REVOKE" "$BROKER_URL/v1/identities")"
t_match "admin-token revoke" "revoked to-revoke" "$("$BROKER_BIN" admin-token revoke --name to-revoke)"
t_eq "a revoked admin token stops working at once" "401" "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $REVOKE" "$BROKER_URL/v1/identities")"

# ---------------------------------------------------------------- GitOps: dry run, prune, through the API
mkdir -p "$WORK/gitops"
jq '.description = "deploys the demo service (edited)" | .ttl = "10m"' "$WORK/policies/deploy.identity.json" >"$WORK/gitops/deploy.identity.json"
out=$("$BROKER_BIN" policy apply --dry-run "$WORK/gitops" 2>&1)
t_match "apply --dry-run names the change" "\(dry run\) updated identity deploy" "$out"
t_match "apply --dry-run shows the diff" '-[^\n]*"ttl": "15m"[^$]*\+[^\n]*"ttl": "10m"' "$out"
t_eq "apply --dry-run changes nothing" '"15m"' "$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/identities/deploy" | jq -c '.document.ttl // .ttl')"
echo '{"identity": "tmp-x", "scopes": ["s"], "audiences": ["https://x"], "trust": [{"name": "p", "issuer": "test", "subject": {"equals": "x"}}]}' >"$WORK/gitops/tmp.identity.json"
t_match "apply through the admin API (--server --token)" "created identity tmp-x" \
  "$("$BROKER_BIN" policy apply --server "$BROKER_URL" --token "$ADMIN" "$WORK/gitops/tmp.identity.json" 2>&1)"
t_match "apply --server without a valid token is refused" "refused \(401" \
  "$("$BROKER_BIN" policy apply --server "$BROKER_URL" --token brk_admin_nope "$WORK/gitops/tmp.identity.json" 2>&1)"
t_match "apply --prune deletes documents absent from PATH" "deleted identity tmp-x" \
  "$("$BROKER_BIN" policy apply --prune "$WORK/policies" 2>&1)"
echo '{"identity": "bad2", "scopes": [], "audiences": ["x"], "trust": [{"name": "p", "issuer": "nope", "subject": {"equals": "x"}}]}' >"$WORK/gitops/bad.identity.json"
t_match "an invalid document in a batch changes nothing (API)" "refused \(400" \
  "$("$BROKER_BIN" policy apply --server "$BROKER_URL" --token "$ADMIN" "$WORK/gitops" 2>&1)"
t_eq "…and the batch's valid documents were not written" '"15m"' "$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/identities/deploy" | jq -c '.document.ttl // .ttl')"

# ---------------------------------------------------------------- Broker-minted broker:admin tokens
ops=$(jq -n --arg aud "$BROKER_URL" '{identity: "ops", scopes: ["broker:admin", "broker:introspect"], audiences: [$aud],
  trust: [{name: "ops-main", issuer: "test", subject: {equals: "repo:acme/ops:ref:refs/heads/main"}}]}')
t_eq "PUT an identity through the admin API" "201" "$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' --data "$ops" "$BROKER_URL/v1/identities/ops")"
res=$(exchange "$(GOOD --sub repo:acme/ops:ref:refs/heads/main)")
OPS_TOKEN=$(jq -r .access_token <<<"${res#* }")
t_eq "a Broker-minted broker:admin token is an admin credential" "200" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $OPS_TOKEN" "$BROKER_URL/v1/identities")"
t_match "policy apply --server with a Broker-minted broker:admin token" "unchanged identity deploy" \
  "$("$BROKER_BIN" policy apply --server "$BROKER_URL" --token "$OPS_TOKEN" "$WORK/policies/deploy.identity.json" 2>&1)"
RO_TOKEN=$(exchange "$(GOOD --sub repo:acme/ops:ref:refs/heads/main)" --data-urlencode scope=broker:introspect | cut -d' ' -f2- | jq -r .access_token)
t_eq "a valid Broker token without broker:admin gets 403" "403" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $RO_TOKEN" "$BROKER_URL/v1/identities")"
DEPLOY_TOKEN=$(exchange "$(GOOD)" | cut -d' ' -f2- | jq -r .access_token)
t_eq "a Broker token minted for another audience is not an admin credential (401)" "401" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $DEPLOY_TOKEN" "$BROKER_URL/v1/identities")"
[ "${OPS_TOKEN: -1}" = A ] && last=B || last=A
t_eq "a tampered Broker token gets 401" "401" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer ${OPS_TOKEN%?}$last" "$BROKER_URL/v1/identities")"

# A burst on one connection reaches one loop iteration, whose tokens are signed together
# (keys_sign_batch): all 24 are issued, all are valid admin credentials (the broker checks each
# signature), and /metrics counts at least 6 of them as signed in a batch (24 requests arrive in
# at most a few reads, so at least one read carries 6 or more).
printf 'grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Atoken-exchange&subject_token_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Atoken-type%%3Ajwt&subject_token=%s' \
  "$(GOOD --sub repo:acme/ops:ref:refs/heads/main)" >"$WORK/ops_body.txt"
batched() { curl -sS "$BROKER_URL/metrics" | awk '/^broker_signatures_total\{mode="batch"\}/{print $2}'; }
b0=$(batched)
burst=$(nghttp -m 24 -d "$WORK/ops_body.txt" -H 'content-type: application/x-www-form-urlencoded' "$BROKER_URL/v1/token" 2>&1 |
  grep -o '"access_token":"[^"]*"' | cut -d'"' -f4 | sort -u)
t_eq "a burst of 24 exchanges on one connection: 24 distinct tokens" "24" "$(grep -c . <<<"$burst")"
codes=$(while read -r t; do curl -sS -o /dev/null -w '%{http_code} ' -H "authorization: Bearer $t" "$BROKER_URL/v1/identities"; done <<<"$burst")
t_eq "…every one of them verifies (a valid admin credential)" "$(printf '200 %.0s' $(seq 24))" "$codes"
t_eq "…at least 6 were signed in a batch (/metrics)" "yes" "$(awk -v a="$b0" -v b="$(batched)" 'BEGIN{print (b - a >= 6) ? "yes" : "no: " a " -> " b}')"

# ---------------------------------------------------------------- hostile input
hostile() { # NAME TOKEN
  t_match "hostile: $1" '^400 .*"invalid_grant"' "$(exchange "$2")"
}
hostile "alg none" "$(GOOD --alg none)"
for a in None NONE nOnE; do
  hostile "alg $a" "$(GOOD --raw-header "{\"alg\":\"$a\",\"typ\":\"JWT\",\"kid\":\"k1\"}" --alg none)"
done
hostile "HS256 keyed with the issuer's public key" "$(GOOD --sign-with-hmac-of-pubkey)"
hostile "jku header pointing at an attacker JWKS" "$(GOOD --key "$WORK/attacker.pem" --raw-header "{\"alg\":\"RS256\",\"kid\":\"k1\",\"jku\":\"$ISSUER_URL/attacker-jwks\"}")"
hostile "x5u header" "$(GOOD --key "$WORK/attacker.pem" --raw-header "{\"alg\":\"RS256\",\"kid\":\"k1\",\"x5u\":\"$ISSUER_URL/attacker-cert\"}")"
hostile "embedded jwk header" "$(GOOD --key "$WORK/attacker.pem" --raw-header '{"alg":"RS256","kid":"k1","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}')"
t_eq "jku/x5u were never fetched" "0" "$(grep -c 'attacker' "$ISS/issuer.log" 2>/dev/null || true)"
hostile "crit header" "$(GOOD --raw-header '{"alg":"RS256","kid":"k1","crit":["exp"]}')"
hostile "duplicate claims" "$(GOOD --raw-claims "{\"iss\":\"$ISSUER_URL\",\"sub\":\"repo:acme/demo:ref:refs/heads/main\",\"sub\":\"x\",\"aud\":\"$BROKER_URL\",\"exp\":$(($(date +%s) + 300))}")"
hostile "duplicate alg header" "$(GOOD --raw-header '{"alg":"RS256","alg":"none","kid":"k1"}')"
t3=$(GOOD)
hostile "two segments" "${t3%.*}"
hostile "four segments" "$t3.AAAA"
hostile "base64 padding" "${t3}=="
hostile "base64 with + and /" "$(tr '_-' '/+' <<<"$t3")"
deep=$(printf '[%.0s' $(seq 1 200))1$(printf ']%.0s' $(seq 1 200))
hostile "deeply nested claims" "$(GOOD --raw-claims "{\"iss\":\"$ISSUER_URL\",\"aud\":\"$BROKER_URL\",\"exp\":$(($(date +%s) + 300)),\"x\":$deep}")"
bigc=$(head -c 20000 /dev/zero | tr '\0' 'x')
t_match "hostile: oversize token" '^400 .*"invalid_(request|grant)"' "$(exchange "$(GOOD --claims "{\"pad\":\"$bigc\"}")")"
t_match "hostile: empty token" '^400 .*"invalid_request"' "$(exchange "")"
t_match "healthy after hostile input" '^200 ' "$(exchange "$(GOOD)")"
# Requests cancelled in the very packet that carries them: their memory is gone before their turn
# in the loop's end-of-iteration batch (and, 2 ms later, while they wait for their audit row).
printf 'grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Atoken-exchange&subject_token_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Atoken-type%%3Ajwt&subject_token=%s' "$(GOOD)" >"$WORK/reset-body"
reset_out=$($PY "$ROOT/tests/tools/h2_reset.py" 127.0.0.1 "$BROKER_PORT" "$WORK/reset-body" 50 4 2>&1)
t_match "HTTP/2 requests reset at once: the broker answers the rest and stays up" 'SETTINGS=' "$reset_out"
t_check "broker alive after the resets" kill -0 "$MAIN_PID"
t_match "healthy after the resets" '^200 ' "$(exchange "$(GOOD)")"

# ---------------------------------------------------------------- TLS listener
"$ROOT/tests/tools/mkcert.sh" "$WORK/tls" >/dev/null
TLS_PORT=$(free_port)
SAVE_URL=$BROKER_URL SAVE_PID=$BROKER_PID
CERT=$WORK/tls/tls.pem KEY=$WORK/tls/tls.key CA=$WORK/tls/ca.pem
broker_start tls --tls-listen "127.0.0.1:$TLS_PORT" --tls-cert "$CERT" --tls-key "$KEY" || true
PIDS+=("$BROKER_PID")
TLS_URL="https://127.0.0.1:$TLS_PORT"
tok=$(mint "$ISS" --preset github-actions --aud "$BROKER_URL")
out=$(curl -sS --cacert "$CA" --http2 -o /dev/null -w '%{http_code} %{http_version}' \
  --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode "subject_token=$tok" "$TLS_URL/v1/token")
t_eq "TLS + ALPN h2 exchange" "200 2" "$out"
t_eq "TLS + HTTP/1.1 fallback" "200 1.1" "$(curl -sS --cacert "$CA" --http1.1 -o /dev/null -w '%{http_code} %{http_version}' "$TLS_URL/healthz")"
# keep the first connection open a moment: TLS 1.3 tickets arrive after the handshake
sleep 1 | openssl s_client -connect "127.0.0.1:$TLS_PORT" -sess_out "$WORK/sess.pem" -CAfile "$CA" >/dev/null 2>&1
t_match "TLS session resumption" "Reused" "$(openssl s_client -connect "127.0.0.1:$TLS_PORT" -sess_in "$WORK/sess.pem" -CAfile "$CA" </dev/null 2>/dev/null | grep -E '^(New|Reused)')"
broker_stop "$BROKER_PID"
BROKER_URL=$SAVE_URL BROKER_PID=$SAVE_PID

# ---------------------------------------------------------------- rate limits
SAVE_URL=$BROKER_URL SAVE_PID=$BROKER_PID
BROKER_RATE_PER_CONN=5 broker_start ratelimited || true
PIDS+=("$BROKER_PID")
out=$(h2load -n 40 -c 1 -m 1 "$BROKER_URL/healthz" 2>&1)
t_match "per-connection rate limit answers 429" "[1-9][0-9]* 4xx" "$(grep 'status codes' <<<"$out")"
# one HTTP/1.1 keep-alive connection (Debian's curl 7.88 cannot reuse an h2c prior-knowledge connection: curl#10634)
hdr=$(for i in 1 2 3 4 5 6 7 8; do echo "url = \"$BROKER_URL/healthz\""; done >"$WORK/curlcfg"; curl -sS -i --http1.1 -K "$WORK/curlcfg" 2>&1 | tr -d '\r')
t_match "429 carries Retry-After" "retry-after: [0-9]+" "$hdr"
broker_stop "$BROKER_PID"
BROKER_URL=$SAVE_URL BROKER_PID=$SAVE_PID

# ---------------------------------------------------------------- replicas share identity rate limits
SAVE_URL=$BROKER_URL SAVE_PID=$BROKER_PID
broker_start replica2 || true
PIDS+=("$BROKER_PID")
ok=0
for i in $(seq 1 30); do grep -q 'event=replicas live=2' "$WORK/replica2.log" && { ok=1; break; }; sleep 0.2; done
t_eq "replicas see each other (heartbeat)" "1" "$ok"
lim=$(for i in 1 2; do exchange "$(GOOD --sub repo:acme/limited:ref:refs/heads/main)" | cut -c1-3; done | tr '\n' ' ')
t_eq "two replicas: each enforces half of the identity's burst" "200 429 " "$lim"
broker_stop "$BROKER_PID"
BROKER_URL=$SAVE_URL BROKER_PID=$SAVE_PID

# ---------------------------------------------------------------- PostgreSQL down: fail closed, recover
pg_stop "$WORK/pg" >/dev/null
res=$(exchange "$(GOOD)")
t_match "PostgreSQL down: 503 and no token" '^503 .*temporarily_unavailable' "$res"
t_eq "…and no access_token in the body" "null" "$(jq -r .access_token <<<"${res#* }")"
t_match "readyz reports the audit store down" '"audit_store":false' "$(curl -sS "$BROKER_URL/readyz")"
pg_start "$WORK/pg" >/dev/null
ok=0
for i in $(seq 1 50); do
  [[ $(exchange "$(GOOD)") == 200* ]] && { ok=1; break; }
  sleep 0.2
done
t_eq "recovers by itself when PostgreSQL returns" "1" "$ok"

# under load: every 200 must have its committed audit row
for i in $(seq 1 300); do GOOD; done >"$WORK/tokens.txt"
(
  while read -r t; do
    curl -sS --http2-prior-knowledge -D - -o "$WORK/lb.$RANDOM.json" \
      --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
      --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode "subject_token=$t" \
      "$BROKER_URL/v1/token" 2>/dev/null | tr -d '\r' | awk '/^HTTP/{s=$2} tolower($1)=="x-request-id:"{print s, $2}'
  done <"$WORK/tokens.txt" >"$WORK/load.txt"
) &
LOADPID=$!
sleep 0.5
pg_kill "$WORK/pg" >/dev/null
sleep 1
pg_start "$WORK/pg" >/dev/null
wait $LOADPID
n200=$(grep -c '^200 ' "$WORK/load.txt")
n503=$(grep -c '^503 ' "$WORK/load.txt")
ids=$(awk '$1=="200"{printf "%s\x27%s\x27", (n++?",":""), $2}' "$WORK/load.txt")
rows=0
[ -n "$ids" ] && rows=$(pg_psql "$WORK/pg" -Atc "select count(*) from audit where result='issued' and request_id in ($ids)")
t_match "load across a PostgreSQL crash: some 200s and some 503s" "^[1-9][0-9]* [1-9][0-9]*$" "$n200 $n503"
t_eq "every issued token has a committed audit row" "$n200" "$rows"

# ---------------------------------------------------------------- graceful drain
for i in $(seq 1 40); do GOOD; done >"$WORK/drain-tokens.txt"
(
  while read -r t; do
    curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code}\n' \
      --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
      --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode "subject_token=$t" \
      "$BROKER_URL/v1/token" 2>/dev/null &
  done <"$WORK/drain-tokens.txt"
  wait
) >"$WORK/drain.txt" &
DRAINPID=$!
sleep 0.3
kill -TERM "$MAIN_PID"
wait "$MAIN_PID"
rc=$?
wait $DRAINPID
t_eq "SIGTERM: broker exits 0 after draining" "0" "$rc"
t_eq "SIGTERM: no request was cut off (only 200, 503 or refused)" "" "$(grep -vE '^(200|503|000)$' "$WORK/drain.txt" | sort -u | tr '\n' ' ')"

# ---------------------------------------------------------------- other suites
ITEST_DIR=${ITEST_DIR:-$ROOT/build/itests}
suite() { # NAME CMD...: a whole sub-suite counts as one result here; its own lines are in the log
  local name=$1 out; shift
  if out=$("$@" 2>&1); then t_ok "$name ($(grep -cE '^ok ' <<<"$out") cases)"; else t_fail "$name" "$(echo "$out" | grep -E '^not ok|rror|FAIL' | head -15)" "$(echo "$out" | tail -8)"; fi
}
suite "store and audit writer against PostgreSQL" "$ROOT/tests/integration/test_store.sh" "$ITEST_DIR/test_store"
suite "issuer key cache against a live HTTPS issuer" env TEST_ISSUERS_BIN="$ITEST_DIR/test_issuers" "$ROOT/tests/integration/test_issuers.sh"
suite "admin API (identities, issuers, ETags, audit listing, replicas)" env BROKER_BIN="$BROKER_BIN" "$ROOT/tests/integration/test_admin.sh"
suite "three replicas: propagation within 1 s, revocation everywhere, restart mid-change" env BROKER_BIN="$BROKER_BIN" "$ROOT/tests/integration/test_replicas.sh"
suite "broker exchange / broker run against fake CI and cloud metadata endpoints" env BROKER_BIN="$BROKER_BIN" "$ROOT/tests/integration/test_client.sh"
suite "broker policy test (explain) with the real GitHub tokens" env BROKER_BIN="$BROKER_BIN" "$ROOT/tests/integration/test_cli_explain.sh"
suite "Kubernetes TokenReview against a fake API server (cache, deleted pod, fail closed)" env BROKER_BIN="$BROKER_BIN" "$ROOT/tests/integration/test_tokenreview.sh"
suite "every issuer preset against its platform's layout and the example documents" "$ROOT/tests/integration/test_presets.sh" "$BROKER_BIN"
suite "token lifecycle: introspection, revocation on two replicas within 1 s, restart, pruning" env BROKER_BIN="$BROKER_BIN" "$ROOT/tests/integration/test_lifecycle.sh"

t_summary integration
