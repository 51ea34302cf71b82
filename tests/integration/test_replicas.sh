#!/usr/bin/env bash
# Three `broker serve` replicas on one PostgreSQL: a change made through one replica is used by the
# others within 1 s (LISTEN/NOTIFY, with a periodic generation check behind it), a revoked admin
# token stops working on every replica, and a replica restarted while changes are made converges.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/broker-replicas.XXXXXX)
chmod 755 "$WORK"
BROKER_BIN=${BROKER_BIN:-$ROOT/build/broker}
cd "$ROOT" || exit 1
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/tests/integration/lib/tap.sh"
# shellcheck source-path=SCRIPTDIR source=lib/env.sh
. "$ROOT/tests/integration/lib/env.sh"
PIDS=()
trap env_cleanup EXIT
env_up || exit 1

identity() { # SUBJECT: the deploy identity trusting one branch
  jq -n --arg sub "$1" '{identity: "deploy", scopes: ["s"], audiences: ["https://secrets.example.com"],
    trust: [{name: "branch", issuer: "test", subject: {equals: $sub}}]}'
}
identity "repo:acme/demo:ref:refs/heads/main" >"$WORK/policies/deploy.identity.json"
"$BROKER_BIN" policy apply "$WORK/policies" >/dev/null || { echo "policy apply failed"; exit 1; }
ADMIN=$("$BROKER_BIN" admin-token create --name ops)

# every replica shares one issuer URL, as behind a load balancer
export BROKER_ISSUER_OVERRIDE=http://broker.test
URLS=()
for n in 1 2 3; do
  broker_start "r$n" || exit 1
  PIDS+=("$BROKER_PID")
  URLS+=("$BROKER_URL")
done
R3_PID=$BROKER_PID

status_on() { # URL BRANCH: status of an exchange of a token for that branch
  local tok
  tok=$(mint "$ISS" --preset github-actions --aud http://broker.test --sub "repo:acme/demo:ref:refs/heads/$2")
  curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code}' \
    --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
    --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt \
    --data-urlencode "subject_token=$tok" "$1/v1/token"
}
put_identity() { # URL TOKEN SUBJECT
  curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "authorization: Bearer $2" -H 'content-type: application/json' \
    --data "$(identity "$3")" "$1/v1/identities/deploy"
}
now_ms() { date +%s%3N; }

t_eq "all replicas serve the initial policy" "200 200 200" \
  "$(status_on "${URLS[0]}" main) $(status_on "${URLS[1]}" main) $(status_on "${URLS[2]}" main)"

# a change through replica 1: replicas 2 and 3 use it within 1 s
t_eq "PUT through replica 1" "200" "$(put_identity "${URLS[0]}" "$ADMIN" "repo:acme/demo:ref:refs/heads/release")"
t0=$(now_ms)
seen=""
for r in 1 2; do
  while :; do
    if [ "$(status_on "${URLS[$r]}" release)" = 200 ]; then seen+="$(( $(now_ms) - t0 )) "; break; fi
    [ $(( $(now_ms) - t0 )) -gt 3000 ] && { seen+="never "; break; }
    sleep 0.05
  done
done
echo "# replicas 2 and 3 used the change after: ${seen}ms (including the time to mint and exchange)"
ok=1
for v in $seen; do { [ "$v" = never ] || [ "$v" -gt 1000 ]; } && ok=0; done
t_eq "replicas 2 and 3 use the change within 1 s" "1" "$ok"
t_eq "the old branch is refused everywhere" "400 400 400" \
  "$(status_on "${URLS[0]}" main) $(status_on "${URLS[1]}" main) $(status_on "${URLS[2]}" main)"

# a revoked admin token stops working on every replica
REV=$("$BROKER_BIN" admin-token create --name temp)
code_on() { curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $2" "$1/v1/identities"; }
t_eq "a new admin token works on every replica" "200 200 200" \
  "$(code_on "${URLS[0]}" "$REV") $(code_on "${URLS[1]}" "$REV") $(code_on "${URLS[2]}" "$REV")"
"$BROKER_BIN" admin-token revoke --name temp >/dev/null
t_eq "revoked, it stops working on every replica at once" "401 401 401" \
  "$(code_on "${URLS[0]}" "$REV") $(code_on "${URLS[1]}" "$REV") $(code_on "${URLS[2]}" "$REV")"

# replica 3 is restarted while changes are made through replica 1
kill -TERM "$R3_PID"
put_identity "${URLS[0]}" "$ADMIN" "repo:acme/demo:ref:refs/heads/hotfix" >/dev/null
wait "$R3_PID" 2>/dev/null
put_identity "${URLS[1]}" "$ADMIN" "repo:acme/demo:ref:refs/heads/v2" >/dev/null
broker_start r3b || exit 1
PIDS+=("$BROKER_PID")
t_eq "the restarted replica serves the latest change" "200 400" \
  "$(status_on "$BROKER_URL" v2) $(status_on "$BROKER_URL" hotfix)"
t_eq "and so do the others" "200 200" "$(status_on "${URLS[0]}" v2) $(status_on "${URLS[1]}" v2)"

# a write whose key set no replica could load is refused before it is committed: otherwise every
# replica keeps its old set, and a replica started afterwards never becomes ready
BOGUS='{"issuer":"bogus","url":"kubernetes/y","jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}}'
t_eq "PUT of an issuer whose key set no replica can load: 400" "400" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    --data "$BOGUS" "${URLS[0]}/v1/issuers/bogus")"
t_eq "POST /v1/policy/apply of it: 400" "400" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    --data "{\"issuers\":[$BOGUS]}" "${URLS[1]}/v1/policy/apply")"
if broker_start r4; then t_ok "a replica started after the refused writes becomes ready"; else t_fail "a replica started after the refused writes becomes ready"; fi
PIDS+=("$BROKER_PID")
t_eq "…and serves the latest change" "200" "$(status_on "$BROKER_URL" v2)"
t_eq "a change after the refused writes reaches every replica" "200" \
  "$(put_identity "${URLS[0]}" "$ADMIN" "repo:acme/demo:ref:refs/heads/v3")"
sleep 1
t_eq "…used by all of them within 1 s" "200 200 200" \
  "$(status_on "${URLS[0]}" v3) $(status_on "${URLS[1]}" v3) $(status_on "$BROKER_URL" v3)"

t_summary replicas
