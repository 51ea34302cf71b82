#!/usr/bin/env bash
# Admin API against a throwaway PostgreSQL, the local HTTPS issuer and two `broker serve`
# replicas: authentication on every route, 403 insufficient_scope for a Broker-minted token without
# broker:admin (and success with one that has it), PUT/GET/DELETE of identities and issuers with ETags
# and preconditions (also racing across replicas), whole-set validation, audit_changes rows,
# GET /v1/audit filters and cursor pagination, and exchanges that use a change at once.
# Usage: BROKER_BIN=build/broker tests/integration/test_admin.sh   (prints "admin: N passed, N failed")
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${BROKER_BIN:-$ROOT/build/broker}
case $BROKER_BIN in /*) ;; *) BROKER_BIN=$PWD/$BROKER_BIN ;; esac
WORK=$(mktemp -d /tmp/broker-admin.XXXXXX)
chmod 755 "$WORK"
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/tests/integration/lib/tap.sh"
# shellcheck source-path=SCRIPTDIR source=lib/env.sh
. "$ROOT/tests/integration/lib/env.sh"
PIDS=()
trap env_cleanup EXIT

# ---------------------------------------------------------------- environment
env_up || exit 1
cat >"$WORK/policies/deploy.identity.json" <<'JSON'
{"identity": "deploy", "scopes": ["secrets:read:demo"], "audiences": ["https://secrets.example.com"],
 "trust": [{"name": "main-branch", "issuer": "test", "subject": {"equals": "repo:acme/demo:ref:refs/heads/main"}}]}
JSON
"$BROKER_BIN" policy apply "$WORK/policies" >/dev/null || { echo "policy apply failed"; exit 1; }
ADMIN=$("$BROKER_BIN" admin-token create --name ops)
OTHER=$("$BROKER_BIN" admin-token create --name ops2)
REVOKED=$("$BROKER_BIN" admin-token create --name gone)
pg_psql "$WORK/pg" -qAtc "update admin_tokens set revoked_at = now() where name = 'gone'" >/dev/null

# both replicas mint for the same issuer, so one subject token audience fits both
export BROKER_ISSUER_OVERRIDE=https://broker.test
broker_start a || exit 1
PIDS+=("$BROKER_PID")
A=$BROKER_URL
broker_start b || exit 1
PIDS+=("$BROKER_PID")
B=$BROKER_URL
tok() { mint "$ISS" --preset github-actions --aud https://broker.test "$@"; }

# req METHOD URL [curl args...]: prints the status; body in $WORK/body, headers in $WORK/hdr
req() {
  local m=$1 u=$2; shift 2
  curl -sS -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code}' -X "$m" "$@" "$u"
}
hdr() { grep -i "^$1:" "$WORK/hdr" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
body() { cat "$WORK/body"; }
AUTH=(-H "authorization: Bearer $ADMIN")
JSONCT=(-H 'content-type: application/json')
put() { # URL JSON [curl args...]
  local u=$1 d=$2; shift 2
  req PUT "$u" "${AUTH[@]}" "${JSONCT[@]}" --data-binary "$d" "$@"
}
ident() { # NAME SUBJECT [SCOPE]: an identity document trusting one subject of issuer "test"
  printf '{"identity":"%s","scopes":["%s"],"audiences":["https://svc.example.com"],"trust":[{"name":"p","issuer":"test","subject":{"equals":"%s"}}]}' \
    "$1" "${3:-svc:read}" "$2"
}
gen() { pg_psql "$WORK/pg" -qAtc "select generation from policy_state"; }
changes() { pg_psql "$WORK/pg" -qAtc "select count(*) from audit_changes"; }
stored_set() { pg_psql "$WORK/pg" -qAtc "select string_agg(name || '=' || doc::text, ';' order by name) from (select name, doc from issuers union all select name, doc from identities) s"; }
exchange_at() { # URL TOKEN: prints "STATUS BODY"
  curl -sS -o "$WORK/xbody" -w '%{http_code}' --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
    --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode "subject_token=$2" "$1/v1/token"
  echo " $(cat "$WORK/xbody")"
}

# ---------------------------------------------------------------- authentication on every route
put "$A/v1/identities/victim" "$(ident victim repo:acme/victim:ref:refs/heads/main)" >/dev/null
put "$A/v1/issuers/spare" '{"issuer":"spare","url":"https://spare.example.com"}' >/dev/null
rid=$(exchange_at "$A" not.a.jwt >/dev/null; jq -r .request_id "$WORK/xbody")
DOC_DEPLOY=$(jq -c . "$WORK/policies/deploy.identity.json")
DOC_TEST=$(jq -c . "$WORK/policies/test.issuer.json")
# METHOD PATH EXPECTED-WITH-ADMIN [body]
ROUTES=(
  "GET /v1/identities 200"
  "GET /v1/identities/deploy 200"
  "PUT /v1/identities/deploy 200 deploy"
  "DELETE /v1/identities/victim 204"
  "GET /v1/issuers 200"
  "GET /v1/issuers/test 200"
  "PUT /v1/issuers/test 200 test"
  "DELETE /v1/issuers/spare 204"
  "GET /v1/audit 200"
  "GET /v1/audit/$rid 200"
)
for line in "${ROUTES[@]}"; do
  read -r m p want b <<<"$line"
  data=()
  case ${b:-} in deploy) data=("${JSONCT[@]}" --data-binary "$DOC_DEPLOY") ;; test) data=("${JSONCT[@]}" --data-binary "$DOC_TEST") ;; esac
  t_eq "$m $p without a token: 401" "401" "$(req "$m" "$A$p" "${data[@]}")"
  t_eq "$m $p without a token: WWW-Authenticate: Bearer" "Bearer" "$(hdr www-authenticate)"
  t_eq "$m $p with a bad admin token: 401 invalid_token" "401 invalid_token" \
    "$(req "$m" "$A$p" -H "authorization: Bearer brk_admin_${ADMIN: -43:20}xxxxxxxxxxxxxxxxxxxxxxx" "${data[@]}") $(jq -r .error "$WORK/body")"
  t_match "$m $p with a bad token: WWW-Authenticate names invalid_token" 'Bearer error="invalid_token"' "$(hdr www-authenticate)"
  t_eq "$m $p with a JWT that is no admin credential: 401" "401" "$(req "$m" "$A$p" -H "authorization: Bearer $(tok)" "${data[@]}")"
  t_eq "$m $p with a revoked admin token: 401" "401" "$(req "$m" "$A$p" -H "authorization: Bearer $REVOKED" "${data[@]}")"
  t_eq "$m $p with an admin token: $want" "$want" "$(req "$m" "$A$p" "${AUTH[@]}" "${data[@]}")"
done
t_eq "HTTP/2: GET /v1/identities/deploy with an admin token" "200" "$(req GET "$A/v1/identities/deploy" --http2-prior-knowledge "${AUTH[@]}")"
t_eq "POST on a document: 405 with Allow" "405 GET, PUT, DELETE" "$(req POST "$A/v1/identities/deploy" "${AUTH[@]}") $(hdr allow)"
t_eq "POST on a collection: 405" "405" "$(req POST "$A/v1/identities" "${AUTH[@]}")"
t_eq "a name outside [A-Za-z0-9._-]: 400" "400" "$(req GET "$A/v1/identities/a%20b" "${AUTH[@]}")"
t_eq "unknown document: 404" "404 not_found" "$(req GET "$A/v1/identities/nobody" "${AUTH[@]}") $(jq -r .error "$WORK/body")"

# ---------------------------------------------------------------- 403: valid credential, missing privilege
# Two Broker-minted access tokens for Broker itself (aud = BROKER_ISSUER): one from an identity
# without scope broker:admin (authenticated, not authorized), one from an identity with it.
bident() { # NAME SUBJECT SCOPE: an identity whose tokens are for Broker itself
  printf '{"identity":"%s","scopes":["%s"],"audiences":["https://broker.test"],"trust":[{"name":"p","issuer":"test","subject":{"equals":"%s"}}]}' \
    "$1" "$3" "$2"
}
t_eq "PUT an identity without broker:admin (ci-reader)" "201" "$(put "$A/v1/identities/ci-reader" "$(bident ci-reader repo:acme/reader:ref:refs/heads/main svc:read)")"
t_eq "PUT an identity with broker:admin (ci-admin)" "201" "$(put "$A/v1/identities/ci-admin" "$(bident ci-admin repo:acme/ciadm:ref:refs/heads/main broker:admin)")"
t_match "ci-reader exchanges its subject token" '^200 ' "$(exchange_at "$A" "$(tok --sub repo:acme/reader:ref:refs/heads/main)")"
READER=$(jq -r .access_token "$WORK/xbody")
t_match "ci-admin exchanges its subject token" '^200 ' "$(exchange_at "$A" "$(tok --sub repo:acme/ciadm:ref:refs/heads/main)")"
CIADM=$(jq -r .access_token "$WORK/xbody")
t_eq "the ci-reader token: our iss, Broker among its audiences, no broker:admin" "https://broker.test true svc:read" \
  "$(jwt_part "$READER" 2 | jq -r '"\(.iss) \([.aud] | flatten | index("https://broker.test") != null) \(.scope)"')"
t_eq "the ci-admin token: our iss, Broker among its audiences, broker:admin" "https://broker.test true broker:admin" \
  "$(jwt_part "$CIADM" 2 | jq -r '"\(.iss) \([.aud] | flatten | index("https://broker.test") != null) \(.scope)"')"
RAUTH=(-H "authorization: Bearer $READER")
CAUTH=(-H "authorization: Bearer $CIADM")
t_eq "PUT an identity to work on (scoped)" "201" "$(put "$A/v1/identities/scoped" "$(ident scoped repo:acme/scoped:ref:refs/heads/main)")"
D_SCOPED2=$(ident scoped repo:acme/scoped:ref:refs/heads/main svc:write)
POLICY_TEST_BODY=$(jq -cn --arg t "$(tok)" '{token: $t}')
before_gen=$(gen)
# METHOD PATH EXPECTED-WITH-BROKER:ADMIN [body]; the order matters (the PUT, then the DELETE)
ROUTES403=(
  "GET /v1/identities 200"
  "GET /v1/identities/scoped 200"
  "GET /v1/issuers/test 200"
  "GET /v1/audit 200"
  "POST /v1/policy/test 200 policytest"
  "PUT /v1/identities/scoped 200 scoped2"
  "DELETE /v1/identities/scoped 204"
)
for line in "${ROUTES403[@]}"; do
  read -r m p want b <<<"$line"
  data=()
  case ${b:-} in scoped2) data=("${JSONCT[@]}" --data-binary "$D_SCOPED2") ;; policytest) data=("${JSONCT[@]}" --data-binary "$POLICY_TEST_BODY") ;; esac
  before_set=$(stored_set) before_changes=$(changes)
  t_eq "$m $p with a Broker token without broker:admin: 403 insufficient_scope" "403 insufficient_scope" \
    "$(req "$m" "$A$p" "${RAUTH[@]}" "${data[@]}") $(jq -r .error "$WORK/body")"
  t_eq "…WWW-Authenticate names the error" 'Bearer error="insufficient_scope"' "$(hdr www-authenticate)"
  t_eq "…the body repeats the request id" "$(hdr x-request-id)" "$(jq -r .request_id "$WORK/body")"
  t_match "…and says why" 'privilege' "$(jq -r .error_description "$WORK/body")"
  if [ "$m" = PUT ] || [ "$m" = DELETE ]; then
    t_eq "…nothing was stored" "$before_set" "$(stored_set)"
    t_eq "…no audit_changes row" "$before_changes" "$(changes)"
  fi
  t_eq "$m $p, the same request with a broker:admin token: $want" "$want" "$(req "$m" "$A$p" "${CAUTH[@]}" "${data[@]}")"
done
if [ "$before_gen" != "$(gen)" ]; then t_ok "the broker:admin PUT and DELETE changed the set"; else t_fail "the broker:admin PUT and DELETE changed the set" "generation still $before_gen"; fi
t_eq "…the only changes to it after its creation, recorded as the Broker token's identity" \
  "broker-token:ci-admin updated broker-token:ci-admin deleted" \
  "$(pg_psql "$WORK/pg" -qAtc "select string_agg(who || ' ' || change, ' ' order by id) from audit_changes where what = 'identity/scoped' and change <> 'created'")"
t_eq "the other replica also answers a Broker token without broker:admin with 403" "403 insufficient_scope" \
  "$(req GET "$B/v1/identities/deploy" "${RAUTH[@]}") $(jq -r .error "$WORK/body")"
t_eq "…over HTTP/2 too" "403" "$(req GET "$A/v1/identities/deploy" --http2-prior-knowledge "${RAUTH[@]}")"

# ---------------------------------------------------------------- create, read, update, unchanged
D1=$(ident api-one repo:acme/one:ref:refs/heads/main)
t_eq "PUT creates: 201" "201" "$(put "$A/v1/identities/api-one" "$D1")"
t_eq "…with Location" "/v1/identities/api-one" "$(hdr location)"
t_eq "…change created, served by this replica" "created true api-one identity" "$(jq -r '"\(.change) \(.served) \(.name) \(.kind)"' "$WORK/body")"
E1=$(hdr etag)
t_match "…with a strong ETag" '^"[0-9a-f]{32}"$' "$E1"
t_eq "…body etag equals the header" "$E1" "\"$(jq -r .etag "$WORK/body")\""
t_eq "PUT the same document: 200 unchanged" "200 unchanged" "$(put "$A/v1/identities/api-one" "$D1") $(jq -r .change "$WORK/body")"
t_eq "…same ETag" "$E1" "$(hdr etag)"
t_eq "GET: 200" "200" "$(req GET "$A/v1/identities/api-one" "${AUTH[@]}")"
t_eq "GET returns the document" "$(jq -S . <<<"$D1")" "$(jq -S . "$WORK/body")"
t_eq "GET ETag equals PUT ETag" "$E1" "$(hdr etag)"
t_eq "GET with If-None-Match: the ETag: 304" "304" "$(req GET "$A/v1/identities/api-one" "${AUTH[@]}" -H "if-none-match: $E1")"
t_eq "GET with If-None-Match: another ETag: 200" "200" "$(req GET "$A/v1/identities/api-one" "${AUTH[@]}" -H 'if-none-match: "0000"')"
t_match "GET /v1/identities lists it with its ETag" "api-one $E1" \
  "$(req GET "$A/v1/identities" "${AUTH[@]}" >/dev/null; jq -r '.items[] | "\(.name) \"\(.etag)\""' "$WORK/body" | tr '\n' ' ')"
t_eq "GET /v1/identities items carry the document" "$(jq -S . <<<"$D1")" \
  "$(jq -S '.items[] | select(.name == "api-one") | .document' "$WORK/body")"
D1b=$(ident api-one repo:acme/one:ref:refs/heads/main svc:write)
t_eq "PUT a change: 200 updated" "200 updated" "$(put "$A/v1/identities/api-one" "$D1b") $(jq -r .change "$WORK/body")"
E2=$(hdr etag)
t_match "…new ETag" '^"[0-9a-f]{32}"$' "$E2"
if [ "$E1" != "$E2" ]; then t_ok "…differs from the old one"; else t_fail "…differs from the old one" "$E1 = $E2"; fi
t_eq "GET /v1/issuers/test returns the issuer" "test $ISSUER_URL" \
  "$(req GET "$A/v1/issuers/test" "${AUTH[@]}" >/dev/null; jq -r '"\(.issuer) \(.url)"' "$WORK/body")"

# ---------------------------------------------------------------- invalid documents change nothing
before_set=$(stored_set) before_gen=$(gen) before_changes=$(changes)
bad() { # NAME EXPECTED-STATUS URL BODY [curl args]
  local name=$1 want=$2 u=$3 d=$4; shift 4
  t_eq "$name: $want" "$want" "$(put "$u" "$d" "$@")"
}
bad "binds neither subject nor claims" 400 "$A/v1/identities/api-one" \
  '{"identity":"api-one","scopes":["s"],"audiences":["a"],"trust":[{"name":"p","issuer":"test"}]}'
t_match "…error_description carries the validation message" 'invalid document, nothing changed: .*(subject|claim)' "$(jq -r .error_description "$WORK/body")"
bad "trusts an unknown issuer" 400 "$A/v1/identities/api-one" "$(ident api-one x | sed 's/"issuer":"test"/"issuer":"nope"/')"
t_match "…names the issuer" 'nope' "$(jq -r .error_description "$WORK/body")"
bad "unknown field" 400 "$A/v1/identities/api-one" "$(ident api-one x | sed 's/^{/{"colour":"red",/')"
bad "name differs from the path" 400 "$A/v1/identities/api-two" "$D1"
bad "an issuer document under /v1/identities" 400 "$A/v1/identities/test" "$DOC_TEST"
bad "not JSON" 400 "$A/v1/identities/api-one" '{"identity": '
bad "duplicate keys" 400 "$A/v1/identities/api-one" '{"identity":"api-one","identity":"api-one"}'
bad "a JSON array" 400 "$A/v1/identities/api-one" '[1]'
bad "an empty body" 400 "$A/v1/identities/api-one" ''
bad "a bad name in the path" 400 "$A/v1/identities/a%2Fb" "$D1"
t_eq "text/plain: 415" "415" "$(req PUT "$A/v1/identities/api-one" "${AUTH[@]}" -H 'content-type: text/plain' --data-binary "$D1b")"
t_eq "no content type: 415" "415" "$(req PUT "$A/v1/identities/api-one" "${AUTH[@]}" -H 'content-type:' --data-binary "$D1b")"
head -c 70000 /dev/zero | tr '\0' ' ' >"$WORK/big.json"
t_eq "a body over 64 KiB: 413" "413" "$(req PUT "$A/v1/identities/api-one" "${AUTH[@]}" "${JSONCT[@]}" --data-binary @"$WORK/big.json")"
bad "an issuer with a relative jwks_file" 400 "$A/v1/issuers/rel" '{"issuer":"rel","url":"k8s/rel","jwks_file":"keys.json"}'
bad "an issuer whose url another issuer has" 400 "$A/v1/issuers/dup" "{\"issuer\":\"dup\",\"url\":\"$ISSUER_URL\"}"
bad "an issuer with HS256" 400 "$A/v1/issuers/hs" '{"issuer":"hs","url":"https://hs.example.com","algorithms":["HS256"]}'
# a key set no replica can load is refused here, not by every replica's reload afterwards
BOGUS_JWKS='{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}'
bad "an issuer whose inline jwks holds no usable key" 400 "$A/v1/issuers/bogus2" \
  "{\"issuer\":\"bogus2\",\"url\":\"kubernetes/y\",\"jwks\":$BOGUS_JWKS}"
t_match "…names the document and the problem" 'nothing changed: issuer bogus2: jwks: not a usable key set' \
  "$(jq -r .error_description "$WORK/body")"
echo '{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}' >"$WORK/nokeys.json"
bad "an issuer whose jwks_file holds no usable key" 400 "$A/v1/issuers/nokeys" \
  "{\"issuer\":\"nokeys\",\"url\":\"kubernetes/nokeys\",\"jwks_file\":\"$WORK/nokeys.json\"}"
t_match "…names the file's problem" 'issuer nokeys: jwks_file .*nokeys.json: not a usable key set' "$(jq -r .error_description "$WORK/body")"
bad "an issuer whose ca_file does not exist" 400 "$A/v1/issuers/noca" \
  "{\"issuer\":\"noca\",\"url\":\"https://noca.example.com\",\"ca_file\":\"$WORK/absent.pem\"}"
t_match "…not readable" 'issuer noca: ca_file: not readable' "$(jq -r .error_description "$WORK/body")"

# POST /v1/policy/apply and the CLI's policy apply: the same checks, nothing changed
apply_api() { # BODY: POST /v1/policy/apply through replica A
  req POST "$A/v1/policy/apply" "${AUTH[@]}" "${JSONCT[@]}" --data-binary "$1"
}
refused() { # NAME BODY REGEX: a 400 whose description matches
  t_eq "POST /v1/policy/apply, $1: 400 invalid_request" "400 invalid_request" "$(apply_api "$2") $(jq -r .error "$WORK/body")"
  t_match "…$1: says why" "$3" "$(jq -r .error_description "$WORK/body")"
}
refused "an inline jwks without a usable key" \
  "{\"issuers\":[{\"issuer\":\"bogus3\",\"url\":\"kubernetes/z\",\"jwks\":$BOGUS_JWKS}]}" \
  'refused, nothing changed: issuer bogus3: jwks: not a usable key set'
refused "the same as a dry run" \
  "{\"issuers\":[{\"issuer\":\"bogus3\",\"url\":\"kubernetes/z\",\"jwks\":$BOGUS_JWKS}],\"dry_run\":true}" \
  'issuer bogus3: jwks: not a usable key set'
refused "a jwks_file that does not exist" \
  "{\"issuers\":[{\"issuer\":\"nofile\",\"url\":\"kubernetes/nofile\",\"jwks_file\":\"$WORK/absent.json\"}]}" \
  'issuer nofile: jwks_file: not readable'
refused "a ca_file that does not exist" \
  "{\"issuers\":[{\"issuer\":\"noca\",\"url\":\"https://noca.example.com\",\"ca_file\":\"$WORK/absent.pem\"}]}" \
  'issuer noca: ca_file: not readable'
refused "a relative jwks_file" \
  '{"issuers":[{"issuer":"rel","url":"kubernetes/rel","jwks_file":"keys.json"}]}' 'issuer rel: jwks_file: must be an absolute path'
refused "a misspelt top-level key" "{\"identites\":[$(ident api-one x)],\"prune\":true}" 'unknown field "identites"'
refused "an unknown top-level key beside the four" '{"issuers":[],"identities":[],"prune":false,"dry_run":true,"force":1}' \
  'unknown field "force"'
mkdir -p "$WORK/cli-bad"
echo "{\"issuer\":\"bogus4\",\"url\":\"kubernetes/w\",\"jwks\":$BOGUS_JWKS}" >"$WORK/cli-bad/bogus4.issuer.json"
out=$("$BROKER_BIN" policy apply "$WORK/cli-bad" 2>&1); rc=$?
t_eq "CLI policy apply of an inline jwks without a usable key: fails" "1" "$([ $rc -ne 0 ] && echo 1 || echo 0)"
t_match "…refused, nothing changed, naming the document" 'refused, nothing changed: issuer bogus4: jwks: not a usable key set' "$out"
echo "{\"issuer\":\"noca2\",\"url\":\"https://noca2.example.com\",\"ca_file\":\"$WORK/absent.pem\"}" >"$WORK/cli-bad/bogus4.issuer.json"
out=$("$BROKER_BIN" policy apply "$WORK/cli-bad" 2>&1); rc=$?
t_eq "CLI policy apply of a ca_file that does not exist: fails" "1" "$([ $rc -ne 0 ] && echo 1 || echo 0)"
t_match "…saying so" 'issuer noca2: ca_file: not readable' "$out"
t_eq "invalid documents left the stored set unchanged" "$before_set" "$(stored_set)"
t_eq "…and the generation" "$before_gen" "$(gen)"
t_eq "…and wrote no audit_changes row" "$before_changes" "$(changes)"
t_eq "GET after the refusals returns the last good document" "$(jq -S . <<<"$D1b")" \
  "$(req GET "$A/v1/identities/api-one" "${AUTH[@]}" >/dev/null; jq -S . "$WORK/body")"
t_eq "no replica refused a set after the refusals" "0" "$(cat "$WORK/a.log" "$WORK/b.log" | grep -c policy_rejected)"
t_eq "…and the next change is served at once (policy is not frozen)" "201 true" \
  "$(put "$A/v1/identities/api-after" "$(ident api-after repo:acme/after:ref:refs/heads/main)") $(jq -r .served "$WORK/body")"
t_eq "a valid POST /v1/policy/apply still applies" "200 unchanged" \
  "$(apply_api "{\"identities\":[$(ident api-after repo:acme/after:ref:refs/heads/main)]}") $(jq -r '.changes[0].change' "$WORK/body")"

# policy apply racing a delete: the set is checked under the write's lock, as it is then, not as
# a snapshot taken before (here the snapshot still has the issuer another writer is deleting)
t_eq "PUT an issuer nobody trusts yet (racer)" "201" "$(put "$A/v1/issuers/racer" '{"issuer":"racer","url":"https://racer.example.com"}')"
pg_psql "$WORK/pg" -c "BEGIN; SELECT generation FROM policy_state WHERE id = 1 FOR UPDATE; DELETE FROM issuers WHERE name = 'racer';
  UPDATE policy_state SET generation = generation + 1; SELECT pg_sleep(1.5); COMMIT;" >/dev/null &
race_pid=$!
sleep 0.5
printf '{"identity":"racy","scopes":["s"],"audiences":["https://svc.example.com"],"trust":[{"name":"p","issuer":"racer","subject":{"equals":"x"}}]}' \
  >"$WORK/racy.identity.json"
out=$("$BROKER_BIN" policy apply "$WORK/racy.identity.json" 2>&1); rc=$?
wait "$race_pid"
t_eq "CLI policy apply of an identity trusting an issuer deleted meanwhile: fails" "1" "$([ $rc -ne 0 ] && echo 1 || echo 0)"
t_match "…naming the missing issuer" 'refused, nothing changed: .*no issuer document named "racer"' "$out"
t_eq "…the identity was not stored" "0" "$(pg_psql "$WORK/pg" -qAtc "select count(*) from identities where name = 'racy'")"
t_eq "…and no replica refused a set" "0" "$(cat "$WORK/a.log" "$WORK/b.log" | grep -c policy_rejected)"

# ---------------------------------------------------------------- preconditions
t_eq "If-Match: the current ETag: 200" "200" "$(put "$A/v1/identities/api-one" "$D1" -H "if-match: $E2")"
E3=$(hdr etag)
t_eq "If-Match: a stale ETag: 412" "412 precondition_failed" "$(put "$A/v1/identities/api-one" "$D1b" -H "if-match: $E2") $(jq -r .error "$WORK/body")"
t_eq "…the document kept its content" "$E3" "$(req GET "$A/v1/identities/api-one" "${AUTH[@]}" >/dev/null; hdr etag)"
t_eq "If-Match: a list holding the current ETag: 200" "200" "$(put "$A/v1/identities/api-one" "$D1" -H "if-match: \"abc\", $E3")"
t_eq "If-Match: the weak form of the ETag: 412 (strong comparison)" "412" "$(put "$A/v1/identities/api-one" "$D1b" -H "if-match: W/$E3")"
t_eq "If-Match: * on an existing document: 200" "200" "$(put "$A/v1/identities/api-one" "$D1" -H 'if-match: *')"
t_eq "If-Match: * on a missing document: 412" "412" "$(put "$A/v1/identities/api-ghost" "$(ident api-ghost g)" -H 'if-match: *')"
t_eq "If-Match: malformed: 400" "400" "$(put "$A/v1/identities/api-one" "$D1" -H 'if-match: abc')"
t_eq "If-None-Match: * on an existing document: 412" "412" "$(put "$A/v1/identities/api-one" "$D1b" -H 'if-none-match: *')"
t_eq "If-None-Match: * on a new document: 201" "201" "$(put "$A/v1/identities/api-two" "$(ident api-two repo:acme/two:ref:refs/heads/main)" -H 'if-none-match: *')"
t_eq "If-None-Match: * again: 412" "412" "$(put "$A/v1/identities/api-two" "$(ident api-two repo:acme/two:ref:refs/heads/main)" -H 'if-none-match: *')"

# two admins, two replicas, one ETag: exactly one update wins
race_ok=0
for round in 1 2 3; do
  req GET "$A/v1/identities/api-one" "${AUTH[@]}" >/dev/null
  E=$(hdr etag)
  curl -sS -o /dev/null -w '%{http_code}\n' -X PUT "${AUTH[@]}" "${JSONCT[@]}" -H "if-match: $E" \
    --data-binary "$(ident api-one repo:acme/one:ref:refs/heads/main "race:a$round")" "$A/v1/identities/api-one" >"$WORK/race1" &
  p1=$!
  curl -sS -o /dev/null -w '%{http_code}\n' -X PUT -H "authorization: Bearer $OTHER" "${JSONCT[@]}" -H "if-match: $E" \
    --data-binary "$(ident api-one repo:acme/one:ref:refs/heads/main "race:b$round")" "$B/v1/identities/api-one" >"$WORK/race2" &
  p2=$!
  wait $p1 $p2
  got=$(sort "$WORK/race1" "$WORK/race2" | tr '\n' ' ')
  if [ "$got" = "200 412 " ]; then race_ok=$((race_ok + 1)); else echo "# race round $round: $got"; fi
done
t_eq "concurrent If-Match updates through two replicas: one 200 and one 412, every round" "3" "$race_ok"
t_match "…the winner's document is stored" '"race:[ab]3"' "$(pg_psql "$WORK/pg" -qAtc "select doc->'scopes' from identities where name = 'api-one'")"

# ---------------------------------------------------------------- delete
req GET "$A/v1/identities/api-two" "${AUTH[@]}" >/dev/null
E=$(hdr etag)
t_eq "DELETE with a stale If-Match: 412" "412" "$(req DELETE "$A/v1/identities/api-two" "${AUTH[@]}" -H 'if-match: "00000000000000000000000000000000"')"
t_eq "…still there" "200" "$(req GET "$A/v1/identities/api-two" "${AUTH[@]}")"
t_eq "DELETE with the current If-Match: 204" "204" "$(req DELETE "$A/v1/identities/api-two" "${AUTH[@]}" -H "if-match: $E")"
t_eq "…gone" "404" "$(req GET "$A/v1/identities/api-two" "${AUTH[@]}")"
t_eq "DELETE with If-Match of a missing document: 412" "412" "$(req DELETE "$A/v1/identities/api-two" "${AUTH[@]}" -H "if-match: $E")"
put "$A/v1/identities/api-three" "$(ident api-three repo:acme/three:ref:refs/heads/main)" >/dev/null
t_eq "DELETE without If-Match: 204" "204" "$(req DELETE "$A/v1/identities/api-three" "${AUTH[@]}")"
t_eq "DELETE again: 404" "404" "$(req DELETE "$A/v1/identities/api-three" "${AUTH[@]}")"
t_eq "DELETE an issuer an identity trusts: 409" "409 conflict" "$(req DELETE "$A/v1/issuers/test" "${AUTH[@]}") $(jq -r .error "$WORK/body")"
t_match "…naming the identities" 'deploy' "$(jq -r .error_description "$WORK/body")"
t_eq "…the issuer is still there" "200" "$(req GET "$A/v1/issuers/test" "${AUTH[@]}")"
t_eq "PUT an unused issuer: 201" "201" "$(put "$A/v1/issuers/spare2" '{"issuer":"spare2","url":"https://spare2.example.com"}')"
t_eq "DELETE an unused issuer: 204" "204" "$(req DELETE "$A/v1/issuers/spare2" "${AUTH[@]}")"

# ---------------------------------------------------------------- audit_changes
rows=$(pg_psql "$WORK/pg" -qAtc "select change || ':' || who || ':' || (before is not null) || ':' || (after is not null) from audit_changes where what = 'identity/api-two' order by id")
t_eq "audit_changes: create and delete of api-two, by the admin token, with before/after" \
  "created:admin-token:ops:false:true deleted:admin-token:ops:true:false" "$(tr '\n' ' ' <<<"$rows" | sed 's/ $//')"
t_eq "audit_changes: an update keeps both documents" "t" \
  "$(pg_psql "$WORK/pg" -qAtc "select bool_and(before->'scopes' is distinct from after->'scopes') from audit_changes where what = 'identity/api-one' and change = 'updated'")"
t_eq "a change through the other replica by the other admin: 200" "200" \
  "$(req PUT "$B/v1/identities/api-one" -H "authorization: Bearer $OTHER" "${JSONCT[@]}" --data-binary "$D1")"
t_eq "audit_changes: …recorded as that admin" "admin-token:ops2 updated" \
  "$(pg_psql "$WORK/pg" -qAtc "select who || ' ' || change from audit_changes where what = 'identity/api-one' order by id desc limit 1")"
t_eq "audit_changes: an unchanged PUT writes no row" "0" \
  "$(pg_psql "$WORK/pg" -qAtc "select count(*) from audit_changes where change not in ('created', 'updated', 'deleted')")"
t_eq "audit_changes: the issuer deletion" "deleted" "$(pg_psql "$WORK/pg" -qAtc "select change from audit_changes where what = 'issuer/spare2' order by id desc limit 1")"

# ---------------------------------------------------------------- a change is used by the next exchange
sub=repo:acme/feature:ref:refs/heads/x
t_match "before: no identity trusts the subject" '^400 .*invalid_grant' "$(exchange_at "$A" "$(tok --sub $sub)")"
put "$A/v1/identities/feature" "$(ident feature $sub feat:read)" >/dev/null
t_match "right after the PUT this replica issues for it" '^200 .*"scope":"feat:read"' "$(exchange_at "$A" "$(tok --sub $sub)")"
ok=""
for _ in $(seq 1 10); do
  if [[ $(exchange_at "$B" "$(tok --sub $sub)") =~ ^200 ]]; then ok=yes; break; fi
  sleep 0.1
done
t_eq "the other replica issues for it within 1 s" "yes" "$ok"
put "$A/v1/identities/feature" "$(ident feature $sub feat:write)" >/dev/null
t_match "right after an update the new scope is granted" '^200 .*"scope":"feat:write"' "$(exchange_at "$A" "$(tok --sub $sub)")"
req DELETE "$A/v1/identities/feature" "${AUTH[@]}" >/dev/null
t_match "right after the DELETE it is refused" '^400 .*invalid_grant' "$(exchange_at "$A" "$(tok --sub $sub)")"

# ---------------------------------------------------------------- GET /v1/audit
since=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
sleep 0.01
: >"$WORK/rids"
for _ in $(seq 1 23); do
  exchange_at "$A" "junk.$RANDOM.token" >/dev/null
  jq -r .request_id "$WORK/xbody" >>"$WORK/rids"
done
t_eq "23 denied decisions were made" "23" "$(sort -u "$WORK/rids" | grep -cE '^[0-9a-f]{32}$')"
: >"$WORK/paged"
cursor="" pages=0 sizes=""
while :; do
  q="limit=5&result=denied&since=$since${cursor:+&cursor=$cursor}"
  st=$(req GET "$A/v1/audit?$q" "${AUTH[@]}")
  [ "$st" = 200 ] || { t_fail "GET /v1/audit?$q" "status $st $(body)"; break; }
  jq -r '.items[].request_id' "$WORK/body" >>"$WORK/paged"
  sizes="$sizes$(jq '.items | length' "$WORK/body") "
  pages=$((pages + 1))
  cursor=$(jq -r '.next_cursor // empty' "$WORK/body")
  [ -z "$cursor" ] || [ $pages -gt 10 ] && break
done
t_eq "pagination: 5 pages of at most 5" "5 5 5 5 3 " "$sizes"
t_eq "pagination: no duplicates" "23" "$(sort -u "$WORK/paged" | wc -l)"
t_eq "pagination: no gaps (exactly the decisions made)" "$(sort "$WORK/rids")" "$(sort "$WORK/paged")"
t_eq "pagination: newest first" "$(tail -1 "$WORK/rids")" "$(head -1 "$WORK/paged")"
one=$(sed -n 7p "$WORK/rids")
t_eq "filter request_id" "$one denied" \
  "$(req GET "$A/v1/audit?request_id=$one" "${AUTH[@]}" >/dev/null; jq -r '.items[] | "\(.request_id) \(.result)"' "$WORK/body")"
t_eq "…without the explanation (GET /v1/audit/{id} has it)" "false" "$(jq '.items[0] | has("explanation")' "$WORK/body")"
t_eq "…and next_cursor null" "null" "$(jq .next_cursor "$WORK/body")"
exchange_at "$A" "$(tok)" >/dev/null
t_eq "filter identity + result" "deploy issued" \
  "$(req GET "$A/v1/audit?identity=deploy&result=issued" "${AUTH[@]}" >/dev/null; jq -r '[.items[] | "\(.identity) \(.result)"] | unique | join(",")' "$WORK/body")"
t_eq "filter since (offset form, '+' encoded)" "0" \
  "$(req GET "$A/v1/audit?since=2999-01-01T00:00:00%2B01:00" "${AUTH[@]}" >/dev/null; jq '.items | length' "$WORK/body")"
t_eq "default limit is 100" "100" \
  "$(for _ in $(seq 1 80); do curl -sS -o /dev/null --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
      --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode subject_token=x.y.z "$A/v1/token"; done
     req GET "$A/v1/audit" "${AUTH[@]}" >/dev/null; jq '.items | length' "$WORK/body")"
for q in limit=0 limit=1001 limit=x result=maybe since=yesterday since=2024-02-30T00:00:00Z cursor=abc cursor=-1 \
  request_id=a.b colour=red 'limit=1&limit=2'; do
  t_eq "GET /v1/audit?$q: 400" "400" "$(req GET "$A/v1/audit?$q" "${AUTH[@]}")"
done
t_eq "GET /v1/audit/{request_id} still answers" "$one" "$(req GET "$A/v1/audit/$one" "${AUTH[@]}" >/dev/null; jq -r .request_id "$WORK/body")"

# a flood of well-formed wrong admin tokens: all refused, bounded, and the broker keeps serving
out=$(h2load -n 2000 -c 4 -m 32 -H "authorization: Bearer brk_admin_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$A/v1/audit" 2>&1)
t_match "flood of bad admin tokens: no 2xx" "status codes: 0 2xx" "$out"
echo "# $(grep -E '^status codes' <<<"$out")"
t_match "…every request answered (401, or 503 when the admin queue is full)" "2000 done, .* 0 errored, 0 timeout" "$out"
t_match "…all of them 4xx or 5xx" "status codes: 0 2xx, 0 3xx, [0-9]+ 4xx, [0-9]+ 5xx" "$out"
t_eq "…then an admin still gets through" "200" "$(req GET "$A/v1/audit?limit=1" "${AUTH[@]}")"
t_eq "replicas still healthy" "200 200" "$(curl -sS -o /dev/null -w '%{http_code}' "$A/healthz") $(curl -sS -o /dev/null -w '%{http_code}' "$B/healthz")"
t_summary admin
