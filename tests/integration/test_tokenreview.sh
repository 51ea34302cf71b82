#!/usr/bin/env bash
# Kubernetes TokenReview ("token_review" in an issuer document) against a throwaway PostgreSQL, the
# local HTTPS issuer, `broker serve` and tests/tools/fake_k8s.py (a stand-in API server): reviewed
# exchanges, the answer cache, a deleted pod's token refused and audited, fail-closed outages
# (unreachable, 503, timeout, wrong bearer token, not audience-aware), bearer file rotation, one
# review for concurrent identical exchanges, issuers without token_review never calling it,
# BROKER_BEARER_TOKEN_FILES (a file outside it is never read nor sent; the admin API refuses it with
# no existence oracle), and document validation.
# Usage: BROKER_BIN=build/broker tests/integration/test_tokenreview.sh   (prints "tokenreview: N passed, N failed")
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${BROKER_BIN:-$ROOT/build/broker}
case $BROKER_BIN in /*) ;; *) BROKER_BIN=$PWD/$BROKER_BIN ;; esac
WORK=$(mktemp -d /tmp/broker-tokenreview.XXXXXX)
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
# the only bearer token files the broker may read: $WORK/tokens/ (a projected-token volume)
mkdir -p "$WORK/tokens"
export BROKER_BEARER_TOKEN_FILES="$WORK/tokens/"
printf 'broker-sa-token-1\n' >"$WORK/tokens/sa-token" # what the broker sends (its projected token)
printf 'broker-sa-token-1\n' >"$WORK/k8s-expects"    # what the API server accepts
printf 'not-the-right-one\n' >"$WORK/tokens/wrong-token"
# the right token, outside the allowed directory: it must never be read, let alone sent
printf 'broker-sa-token-1\n' >"$WORK/outside-token"
ln -s ../outside-token "$WORK/tokens/escape"
$PY "$ROOT/tests/tools/fake_k8s.py" "$ISS" --bearer-file "$WORK/k8s-expects" --port-file "$WORK/k8s.port" \
  --log "$WORK/k8s.log" >>"$WORK/k8s.out" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 100; i++)); do [ -s "$WORK/k8s.port" ] && break; sleep 0.05; done
K8S="https://127.0.0.1:$(cat "$WORK/k8s.port")"
DEAD="https://127.0.0.1:$(free_port)"   # nothing listens there
k8s_ctl() { curl -fsS --cacert "$ISS/ca.pem" -X POST "$K8S$1" >/dev/null; }
k8s_stat() { curl -fsS --cacert "$ISS/ca.pem" "$K8S/_control/stats" | jq -r "$1"; }

# issuer documents: each is a tenant of the local issuer (same keys, its own iss)
issuer_doc() { # NAME BEARER_FILE TOKEN_REVIEW_JSON (the tenant is the name)
  cat >"$WORK/policies/$1.issuer.json" <<JSON
{"issuer": "$1", "preset": "kubernetes", "url": "$ISSUER_URL/t/$1", "jwks_uri": "$ISSUER_URL/t/$1/jwks",
 "ca_file": "$ISS/ca.pem", "bearer_token_file": "$2", "token_review": $3}
JSON
}
issuer_doc k8s "$WORK/tokens/sa-token" "{\"url\": \"$K8S\", \"cache_seconds\": 2}"
issuer_doc k8s-nocache "$WORK/tokens/sa-token" "{\"url\": \"$K8S/\", \"cache_seconds\": 0}"
issuer_doc k8s-wrongbearer "$WORK/tokens/wrong-token" "{\"url\": \"$K8S\"}"
issuer_doc k8s-down "$WORK/tokens/sa-token" "{\"url\": \"$DEAD\"}"
issuer_doc k8s-outside "$WORK/outside-token" "{\"url\": \"$K8S\"}" # key fetch and review: refused
curl -fsS --cacert "$ISS/ca.pem" -o /dev/null "$ISSUER_URL/t/k8s/jwks" || { echo "issuer tenant jwks path differs"; exit 1; }
# static keys, so only the review reads bearer_token_file: written straight into PostgreSQL (policy
# apply without --server checks no files), refused where the file is read
static_doc() { # NAME BEARER_FILE
  curl -fsS --cacert "$ISS/ca.pem" "$ISSUER_URL/t/$1/jwks" |
    jq --arg n "$1" --arg u "$ISSUER_URL/t/$1" --arg b "$2" --arg k "$K8S" \
      '{issuer: $n, url: $u, jwks: ., bearer_token_file: $b, token_review: {url: $k, cache_seconds: 0}}' \
      >"$WORK/policies/$1.issuer.json"
}
static_doc k8s-static-outside "$WORK/outside-token"
static_doc k8s-static-escape "$WORK/tokens/escape"
trust() { printf '{"name": "%s", "issuer": "%s", "subject": {"glob": "system:serviceaccount:ns:*"}}' "$1" "$1"; }
cat >"$WORK/policies/pod.identity.json" <<JSON
{"identity": "pod", "scopes": ["s:pod"], "audiences": ["https://secrets.example.com"],
 "trust": [$(trust k8s), $(trust k8s-nocache), $(trust k8s-wrongbearer), $(trust k8s-down), $(trust test),
           $(trust k8s-outside), $(trust k8s-static-outside), $(trust k8s-static-escape)]}
JSON
"$BROKER_BIN" policy apply "$WORK/policies" >/dev/null 2>"$WORK/apply.err" || { echo "policy apply failed"; cat "$WORK/apply.err"; exit 1; }
ADMIN=$("$BROKER_BIN" admin-token create --name ops)
broker_start tokenreview || exit 1
PIDS+=("$BROKER_PID")

# TOK ISSUER SUB: a service-account token for the broker from that issuer document
TOK() { mint "$ISS" --iss "$ISSUER_URL/t/$1" --sub "system:serviceaccount:ns:$2" --aud "$BROKER_URL"; }
X() { exchange "$1" --data-urlencode identity=pod; }               # "STATUS BODY"
CODE() { X "$1" | cut -d' ' -f1; }
RID() { jq -r .request_id "$WORK/resp.json"; }
AUDIT() { curl -fsS -H "Authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$1"; }
REVIEWS() { k8s_stat .reviews; }

# ---------------------------------------------------------------- reviewed exchanges and the cache
t1=$(TOK k8s app)
n0=$(REVIEWS)
out=$(X "$t1")
t_match "a token the API server authenticates is exchanged" '^200 .*"access_token"' "$out"
t_eq "…after exactly one TokenReview" "$((n0 + 1))" "$(REVIEWS)"
t_eq "…which asked about the audience the trust policy accepted (the broker's issuer)" "[\"$BROKER_URL\"]" \
  "$(k8s_stat '.last.audiences | tostring')"
t_eq "a second exchange within cache_seconds does not call the API server" "200 $((n0 + 1))" "$(CODE "$t1") $(REVIEWS)"
t2=$(TOK k8s app)
t_eq "another token of the same pod is reviewed on its own" "200 $((n0 + 2))" "$(CODE "$t2") $(REVIEWS)"
sleep 2.3
t_eq "after cache_seconds the token is reviewed again" "200 $((n0 + 3))" "$(CODE "$t1") $(REVIEWS)"
metrics=$(curl -fsS "$BROKER_URL/metrics")
t_match "/metrics counts the reviews by result" 'broker_token_review_total\{result="authenticated"\} [1-9]' "$metrics"
t_match "/metrics counts the answers served from the cache" 'broker_token_review_cache_hits_total [1-9]' "$metrics"

# ---------------------------------------------------------------- a deleted pod
gone=$(TOK k8s gone)
t_eq "the pod's token works while the pod exists" "200" "$(CODE "$gone")"
k8s_ctl "/_control/delete?sub=system:serviceaccount:ns:gone"
sleep 2.3
out=$(X "$gone")
rid=$(RID)
t_match "after the pod is deleted (and cache_seconds passed) its token is refused" \
  '^400 .*"invalid_grant".*TokenReview' "$out"
rec=$(AUDIT "$rid")
t_eq "the denial is audited: reason, identity, policy" "denied token_review_denied pod k8s" \
  "$(jq -r '"\(.result) \(.reason) \(.identity) \(.policy)"' <<<"$rec")"
t_match "the audit explanation tells the admin what happened" \
  'TokenReview: the Kubernetes API server says this token is not authenticated \(pod or service account deleted\?\)' \
  "$(jq -r .explanation.note <<<"$rec")"
show=$("$BROKER_BIN" audit show "$rid" 2>&1)
t_match "broker audit show names TokenReview" 'token_review_denied.*TokenReview' "$(tr '\n' ' ' <<<"$show")"
n=$(REVIEWS)
t_eq "the refusal is cached too: a retry is refused without a review" "400 $n" "$(CODE "$gone") $(REVIEWS)"
t_check "the subject token is never logged" bash -c "! grep -qF '$(cut -d. -f3 <<<"$gone")' '$WORK/tokenreview.log'"
t_match "the broker logs the review with a fingerprint" 'token_review.*issuer=k8s.*result=rejected.*token_sha256=[0-9a-f]{8}' \
  "$(grep token_review "$WORK/tokenreview.log" | tail -3)"
k8s_ctl /_control/restore

# ---------------------------------------------------------------- fail closed
t3=$(TOK k8s-down app)
start=$(date +%s%N)
out=$(X "$t3")
rid=$(RID)
t_match "API server unreachable: refused with 503 temporarily_unavailable" '^503 .*"temporarily_unavailable".*TokenReview' "$out"
t_eq "…audited as token_review_unavailable (network)" "token_review_unavailable network" \
  "$(AUDIT "$rid" | jq -r '"\(.reason) \(.explanation.token_review)"')"
t_check "…answered within the review timeout" test $((($(date +%s%N) - start) / 1000000)) -lt 4000
t_eq "…and the broker stays healthy" "200" "$(curl -s -o /dev/null -w '%{http_code}' "$BROKER_URL/healthz")"
t_eq "…and keeps serving reviewed exchanges" "200" "$(CODE "$(TOK k8s app)")"

n=$(k8s_stat .unauthorized)
out=$(X "$(TOK k8s-wrongbearer app)")
rid=$(RID)
t_match "a bearer token the API server refuses: 503, nothing issued" '^503 .*"temporarily_unavailable"' "$out"
t_eq "…the API server saw the wrong bearer (401)" "$((n + 1))" "$(k8s_stat .unauthorized)"
t_match "…the audit names the bearer problem" 'bearer_token_file.*401/403' "$(AUDIT "$rid" | jq -r .explanation.note)"

t4=$(TOK k8s-nocache app)
k8s_ctl "/_control/outage?on=1"
t_eq "API server answering 503: refused with 503" "503" "$(CODE "$t4")"
k8s_ctl "/_control/outage?on=0"
t_eq "an outage is not cached: the same token works once the API server is back" "200" "$(CODE "$t4")"
n=$(REVIEWS)
t_eq "cache_seconds 0: every exchange is reviewed" "200 $((n + 1))" "$(CODE "$t4") $(REVIEWS)"

k8s_ctl "/_control/unaware?on=1"
out=$(X "$(TOK k8s-nocache app)")
rid=$(RID)
t_match "an API server that does not confirm the audience: refused" '^503 ' "$out"
t_eq "…audited as bad_response" "bad_response" "$(AUDIT "$rid" | jq -r .explanation.token_review)"
k8s_ctl "/_control/unaware?on=0"

k8s_ctl "/_control/delay?ms=3600"
start=$(date +%s%N)
out=$(X "$(TOK k8s-nocache app)")
rid=$(RID)
ms=$((($(date +%s%N) - start) / 1000000))
k8s_ctl "/_control/delay?ms=0"
t_match "an API server slower than 3 s: refused with 503" '^503 ' "$out"
t_eq "…audited as timeout" "timeout" "$(AUDIT "$rid" | jq -r .explanation.token_review)"
t_check "…after about 3 s ($ms ms)" test "$ms" -ge 2900 -a "$ms" -lt 4500

# ---------------------------------------------------------------- bearer file rotation
printf 'broker-sa-token-2\n' >"$WORK/k8s-expects"
t_eq "the API server rotated its expectation: the old bearer token is refused" "503" "$(CODE "$(TOK k8s-nocache app)")"
printf 'broker-sa-token-2' >"$WORK/tokens/sa-token.new" && mv "$WORK/tokens/sa-token.new" "$WORK/tokens/sa-token"
t_eq "bearer_token_file is re-read for each review: the rotated token works at once" "200" \
  "$(CODE "$(TOK k8s-nocache app)")"

# ---------------------------------------------------------------- concurrency
t5=$(TOK k8s-nocache app)
k8s_ctl "/_control/delay?ms=400"
n=$(REVIEWS)
par=()
for i in 1 2 3 4 5 6 7 8; do
  curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code}\n' \
    --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
    --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
    --data-urlencode "subject_token=$t5" --data-urlencode identity=pod "$BROKER_URL/v1/token" >"$WORK/par.$i" &
  par+=("$!")
done
wait "${par[@]}"
k8s_ctl "/_control/delay?ms=0"
t_eq "8 concurrent exchanges of one token: all issued" "200 200 200 200 200 200 200 200" "$(cat "$WORK"/par.* | tr '\n' ' ' | sed 's/ $//')"
t_eq "…sharing one TokenReview" "$((n + 1))" "$(REVIEWS)"

# ---------------------------------------------------------------- issuers without token_review
n=$(REVIEWS)
t_eq "an issuer without token_review exchanges without calling the API server" "200 $n" \
  "$(CODE "$(mint "$ISS" --sub system:serviceaccount:ns:app --aud "$BROKER_URL")") $(REVIEWS)"

# ---------------------------------------------------------------- BROKER_BEARER_TOKEN_FILES
# a file outside the allowed directory holds exactly the token the API server accepts: never read,
# never sent, neither to the issuer (key fetch) nor to the API server (review)
ISTAT() { curl -fsS --cacert "$ISS/ca.pem" "$ISSUER_URL/_control/stats" | jq -r "$1"; }
t_match "a key fetch with a bearer_token_file outside the list fails as \"credentials\"" \
  'broker_jwks_fetch_total\{issuer="k8s-outside",result="credentials"\} [1-9]' "$(curl -fsS "$BROKER_URL/metrics")"
t_eq "…before any request: the issuer never saw one, with or without Authorization" "0 0" \
  "$(ISTAT '"\(.paths["/t/k8s-outside/jwks"] // 0) \(.authorized["/t/k8s-outside/jwks"] // 0)"')"
t_match "…and the broker logs why (the path, not the contents)" \
  "bearer_file_refused path=\"$WORK/outside-token\" reason=\"not allowed by BROKER_BEARER_TOKEN_FILES\"" \
  "$(grep bearer_file_refused "$WORK/tokenreview.log" | head -1)"
n=$(REVIEWS)
for name in k8s-static-outside k8s-static-escape; do
  out=$(X "$(TOK "$name" app)")
  rid=$(RID)
  t_match "$name: TokenReview with a bearer_token_file not allowed: 503, nothing issued" '^503 .*"temporarily_unavailable"' "$out"
  t_eq "…audited as bearer_file, naming the list" "bearer_file true" \
    "$(AUDIT "$rid" | jq -r '"\(.explanation.token_review) \(.explanation.note | contains("BROKER_BEARER_TOKEN_FILES"))"')"
done
t_eq "…the API server was never called" "$n" "$(REVIEWS)"
t_match "…a symlink in the allowed directory that leads out of it is refused and logged" \
  "bearer_file_refused path=\"$WORK/tokens/escape\" reason=\"not allowed by BROKER_BEARER_TOKEN_FILES\"" \
  "$(grep bearer_file_refused "$WORK/tokenreview.log")"
t_check "…and the file's contents are never logged" bash -c "! grep -q 'broker-sa-token' '$WORK/tokenreview.log'"

# the admin API: the review's attack (send the service-account token to another host) is a 400, and
# the answer is the same whether the disallowed file exists or not (no oracle on the hosts' files)
aput() { # NAME BEARER_FILE: "STATUS BODY-WITHOUT-request_id"
  local code
  code=$(curl -sS -o "$WORK/aput.json" -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' --data-binary \
    "{\"issuer\": \"$1\", \"url\": \"https://evil.example\", \"bearer_token_file\": \"$2\"}" \
    "$BROKER_URL/v1/issuers/$1")
  echo "$code $(jq -c 'del(.request_id)' "$WORK/aput.json")"
}
exists=$(aput evil "$WORK/outside-token")
t_match "PUT an issuer whose bearer_token_file is outside the list: 400 naming BROKER_BEARER_TOKEN_FILES" \
  '^400 .*bearer_token_file: not allowed by BROKER_BEARER_TOKEN_FILES' "$exists"
t_eq "…the same answer for a missing file" "$exists" "$(aput evil "$WORK/no-such-file")"
t_eq "…for a path that only looks allowed (..)" "$exists" "$(aput evil "$WORK/tokens/../outside-token")"
t_eq "…and for the service-account token path" "$exists" "$(aput evil /var/run/secrets/kubernetes.io/serviceaccount/token)"
t_match "an allowed but missing file is still \"not readable\"" '^400 .*not readable by the broker' \
  "$(aput evil "$WORK/tokens/no-such-file")"
t_eq "nothing was stored" "404" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$BROKER_URL/v1/issuers/evil")"

# ---------------------------------------------------------------- document validation
bad() { # NAME JSON EXPECTED-ERROR-REGEX
  mkdir -p "$WORK/bad-$1"
  printf '%s\n' "$2" >"$WORK/bad-$1/x.issuer.json"
  local err
  err=$("$BROKER_BIN" policy apply "$WORK/bad-$1" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] && [[ $err =~ $3 ]]; then t_ok "refused: $1"; else t_fail "refused: $1" "rc=$rc" "$err"; fi
}
B="\"bearer_token_file\": \"$WORK/tokens/sa-token\""
bad "http url" "{\"issuer\": \"x\", \"url\": \"https://k.example\", $B, \"token_review\": {\"url\": \"http://k.example\"}}" \
  'token_review\.url: must be an https:// URL'
bad "cache_seconds over 60" "{\"issuer\": \"x\", \"url\": \"https://k.example\", $B, \"token_review\": {\"cache_seconds\": 61}}" \
  'token_review\.cache_seconds: an integer from 0 to 60'
bad "no bearer_token_file" '{"issuer": "x", "url": "https://k.example", "token_review": {}}' \
  'token_review: needs bearer_token_file'
bad "non-https iss without url" \
  "{\"issuer\": \"x\", \"url\": \"kubernetes/serviceaccount\", \"jwks\": {\"keys\": [{\"kty\": \"EC\"}]}, $B, \"token_review\": {}}" \
  'token_review\.url: required when'
bad "unknown field" "{\"issuer\": \"x\", \"url\": \"https://k.example\", $B, \"token_review\": {\"ttl\": 5}}" \
  'token_review: unknown field "ttl"'

# ---------------------------------------------------------------- shutdown with a review in flight
k8s_ctl "/_control/delay?ms=1500"
inflight_tok=$(TOK k8s-nocache app) # minted first: under load python alone can take longer than a sleep
n=$(REVIEWS)
X "$inflight_tok" >"$WORK/inflight.out" &
xpid=$!
# SIGTERM only once the API server has the review (it answers 1.5 s later)
for ((i = 0; i < 100; i++)); do [ "$(REVIEWS)" -gt "$n" ] && break; sleep 0.05; done
broker_stop "$BROKER_PID"
wait "$xpid"
k8s_ctl "/_control/delay?ms=0"
t_match "SIGTERM while a review is in flight: the client still gets its answer" '^200 ' "$(cat "$WORK/inflight.out")"
t_check "the broker exits cleanly (no sanitizer or leak report)" bash -c "! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' '$WORK/tokenreview.log'"

t_summary tokenreview
