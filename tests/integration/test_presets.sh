#!/usr/bin/env bash
# Every issuer preset against its platform's real layout: tests/tools/platform_issuer.py serves the
# discovery documents and JWKS of GitHub Actions (github.com, enterprise, GHES), GitLab (gitlab.com,
# self-managed), Google, EKS, AWS outbound identity federation and Kubernetes under their real host
# names (one HTTPS server, virtual hosts; `broker serve` reaches it through BROKER_FETCH_CONNECT_TO and
# still verifies TLS against those names). The example documents of trust-policies/examples/ are
# applied as they are (issuer documents get "ca_file"); for each platform a token with the platform's
# exact claim set is exchanged (200), then each immutable id the example binds is changed alone
# (400 invalid_grant, and the audit record names the failed condition with its expected and actual
# value). Also: keys of another platform, algorithms outside a preset, Kubernetes' bearer token.
# Usage: tests/integration/test_presets.sh [BROKER_BIN]      (prints "presets: N passed, N failed")
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${1:-${BROKER_BIN:-$ROOT/build/broker}}
case $BROKER_BIN in /*) ;; *) BROKER_BIN=$PWD/$BROKER_BIN ;; esac
WORK=$(mktemp -d /tmp/broker-presets.XXXXXX)
chmod 755 "$WORK"
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/tests/integration/lib/tap.sh"
# shellcheck source-path=SCRIPTDIR source=lib/env.sh
. "$ROOT/tests/integration/lib/env.sh"
EX="$ROOT/trust-policies/examples"
PI=("$PY" "$ROOT/tests/tools/platform_issuer.py")
PID_DIR="$WORK/platforms"
PIDS=()
trap env_cleanup EXIT
[ -x "$BROKER_BIN" ] || { echo "not an executable: $BROKER_BIN"; exit 1; }

# ---------------------------------------------------------------- environment
pg_start "$WORK/pg" >/dev/null || { echo "cannot start PostgreSQL"; exit 1; }
export BROKER_SQL_DIR="$ROOT/sql" BROKER_KEYS_DIR="$WORK/keys" BROKER_THREADS=2
"$BROKER_BIN" migrate >/dev/null || { echo "migrate failed"; exit 1; }
"$BROKER_BIN" keys generate >/dev/null || { echo "keys generate failed"; exit 1; }
"${PI[@]}" init "$PID_DIR" >/dev/null || { echo "platform_issuer.py init failed"; exit 1; }
# the service-account token Broker presents to the API server (bearer_token_file)
cp "$PID_DIR/k8s-bearer.token" "$WORK/k8s-sa.token"
"${PI[@]}" serve "$PID_DIR" --k8s-bearer "$WORK/k8s-sa.token" >>"$WORK/platforms.out" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 100; i++)); do [ -s "$PID_DIR/port" ] && break; sleep 0.05; done
PORT=$(cat "$PID_DIR/port") || { echo "platform_issuer.py did not start"; exit 1; }
CTL="https://127.0.0.1:$PORT/_control"
ctl() { curl -fsS --cacert "$PID_DIR/ca.pem" "$@"; }
BROKER_FETCH_CONNECT_TO=$("${PI[@]}" hosts | sed "s/\$/:443:127.0.0.1:$PORT/" | paste -sd, -)
export BROKER_FETCH_CONNECT_TO
# the one bearer token file the broker may read (deploy/ sets a directory of projected tokens)
export BROKER_BEARER_TOKEN_FILES="$WORK/k8s-sa.token"

# ---------------------------------------------------------------- documents
P="$WORK/policies"
mkdir -p "$P"
CA="$PID_DIR/ca.pem"
for f in "$EX"/*.issuer.json; do
  case $(basename "$f") in minikube*) continue ;; esac # static keys, not a preset
  jq --arg ca "$CA" --arg bt "$WORK/k8s-sa.token" \
    '.ca_file = $ca | if has("bearer_token_file") then .bearer_token_file = $bt else . end' "$f" >"$P/$(basename "$f")"
done
for f in "$EX"/*.identity.json; do
  case $(basename "$f") in minikube*) continue ;; esac
  cp "$f" "$P/"
done
# github.com through the preset's default url, and a self-managed GitLab: the examples' conditions,
# another issuer (as the examples' descriptions and trust-policies/README.md say)
jq -n --arg ca "$CA" '{issuer: "github-com", preset: "github-actions", ca_file: $ca}' >"$P/github-com.issuer.json"
jq '.identity = "example-github-com-deploy" | .trust[0].issuer = "github-com"' \
  "$EX/github-actions.identity.json" >"$P/github-com.identity.json"
jq -n --arg ca "$CA" '{issuer: "gitlab-acme", preset: "gitlab", url: "https://gitlab.acme.example", ca_file: $ca}' \
  >"$P/gitlab-acme.issuer.json"
jq '.identity = "example-gitlab-sm-deploy" | .trust[0].issuer = "gitlab-acme"' "$EX/gitlab.identity.json" \
  >"$P/gitlab-acme.identity.json"
out=$("$BROKER_BIN" policy apply "$P" 2>&1)
t_check "the example documents apply (with ca_file; bearer_token_file of this test)" test $? -eq 0
[ $T_FAIL -eq 0 ] || { echo "# $out"; exit 1; }
ADMIN=$("$BROKER_BIN" admin-token create --name presets)
broker_start presets || exit 1
PIDS+=("$BROKER_PID")
# the first key fetches run in the background after start: wait until every issuer has its keys
ISSUER_DOCS=("$P"/*.issuer.json)
NISS=${#ISSUER_DOCS[@]}
for ((i = 0; i < 100; i++)); do
  m=$(curl -sS "$BROKER_URL/metrics" | grep '^broker_jwks_keys{')
  [ "$(grep -c ' [1-9][0-9]*$' <<<"$m")" = "$NISS" ] && break
  sleep 0.1
done
t_eq "every issuer's keys are fetched through BROKER_FETCH_CONNECT_TO" "$NISS" "$(grep -c ' [1-9][0-9]*$' <<<"$m")"

# ---------------------------------------------------------------- helpers
# MINT PROFILE [--alg A] [--key NAME] [--kid KID] [--iss URL] [--claims JSON]: a token for Broker,
# minted by the running platform_issuer.py (same as its `mint` command, without loading keys each time)
MINT() {
  local q body=""
  q="profile=$1&aud=$(jq -rn --arg v "$BROKER_URL" '$v|@uri')"
  shift
  while [ $# -ge 2 ]; do
    case $1 in
      --claims) body=$2 ;;
      *) q+="&${1#--}=$(jq -rn --arg v "$2" '$v|@uri')" ;;
    esac
    shift 2
  done
  ctl -X POST -H 'content-type: application/json' --data-binary "$body" "$CTL/mint?$q"
}
# xchg TOKEN [identity]: POST /v1/token over HTTP/1.1; sets CODE and BODY
xchg() {
  local extra=()
  [ -n "${2:-}" ] && extra=(--data-urlencode "identity=$2")
  BODY=$(curl -sS --http1.1 -o - -w '\n%{http_code}' \
    --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
    --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
    --data-urlencode "subject_token=$1" "${extra[@]}" "$BROKER_URL/v1/token")
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
# audit REQUEST_ID: the record (denials are written asynchronously: poll briefly)
audit() {
  local i rec
  for ((i = 0; i < 30; i++)); do
    rec=$(curl -sS -H "authorization: Bearer $ADMIN" "$BROKER_URL/v1/audit/$1")
    [ "$(jq -r '.result // empty' <<<"$rec" 2>/dev/null)" != "" ] && { echo "$rec"; return; }
    sleep 0.1
  done
  echo "$rec"
}
# ok NAME TOKEN IDENTITY ISS EXT: 200, and the access token is the identity's (sub, scope, aud), names
# the subject token's issuer (src.iss) and carries EXT (JSON) among the mapped claims (ext)
ok() {
  local name=$1 tok=$2 id=$3 iss=$4 ext=$5 claims
  xchg "$tok"
  if [ "$CODE" != 200 ]; then
    t_fail "$name: exchange succeeds" "HTTP $CODE $BODY" \
      "audit: $(audit "$(jq -r .request_id <<<"$BODY")" | jq -c '{reason, explanation}' | cut -c1-800)"
    return
  fi
  claims=$(jwt_part "$(jq -r .access_token <<<"$BODY")" 2)
  t_eq "$name: exchange succeeds, access token for $id" \
    "$id $(id_doc "$id" | jq -r '"\(.scopes | join(" ")) \(.audiences[0])"') $iss $(jq -c . <<<"$ext")" \
    "$(jq -r --argjson want "$ext" '"\(.sub) \(.scope) \(.aud | if type == "array" then join(",") else . end) \(.src.iss) " +
        ((.ext // {}) as $e | $want | with_entries(.value = $e[.key]) | tojson)' <<<"$claims")"
}
id_doc() { jq -s --arg id "$1" '.[] | select(.identity == $id)' "$P"/*.identity.json; }
# deny NAME TOKEN IDENTITY FAILED EXPECTED ACTUAL [MORE]: 400 invalid_grant, and the audit record explains
# it: in the identity's trust policy exactly one condition failed, FAILED, wanting EXPECTED, given ACTUAL
# (MORE: "; CONDITION EXPECTED => ACTUAL" of further failed conditions, when a test changes two claims)
deny() {
  local name=$1 tok=$2 id=$3 failed=$4 expected=$5 actual=$6 more=${7:-} rec
  xchg "$tok" "$id"
  t_eq "$name: refused (400 invalid_grant)" "400 invalid_grant" "$CODE $(jq -r .error <<<"$BODY")"
  LAST_RID=$(jq -r .request_id <<<"$BODY")
  rec=$(audit "$LAST_RID")
  t_eq "$name: the audit record explains it" "denied no_matching_policy $id $failed: $failed $expected => $actual$more" \
    "$(jq -r --arg id "$id" 'def s: if type == "string" then . else tojson end;
        "\(.result) \(.reason) " + ([.explanation.policies[] | select(.identity == $id) | "\(.identity) \(.first_failed): " +
        ([.conditions[] | select(.result == false) | "\(.condition) \(.expected | s) => \(.actual | s)"] | join("; "))] |
        first // "no policy of \($id) explained")' <<<"$rec")"
}
# other_issuer NAME TOKEN IDENTITY ISSUER: verified as ISSUER's token, but IDENTITY trusts another issuer
other_issuer() {
  local name=$1 tok=$2 id=$3 iss=$4
  xchg "$tok" "$id"
  t_eq "$name" "400 invalid_grant no_matching_policy identity $id has no trust policy for issuer $iss" \
    "$CODE $(jq -r .error <<<"$BODY") $(audit "$(jq -r .request_id <<<"$BODY")" | jq -r '"\(.reason) \(.explanation.note)"')"
}
# refused NAME TOKEN REASON: 400 invalid_grant with the audit reason (verification failures)
refused() {
  local name=$1 tok=$2 reason=$3
  xchg "$tok"
  t_eq "$name" "400 invalid_grant denied $reason" \
    "$CODE $(jq -r .error <<<"$BODY") $(audit "$(jq -r .request_id <<<"$BODY")" | jq -r '"\(.result) \(.reason)"')"
}
# seen NAME HOST PATH [HOST PATH...]: the platform server answered each path at least once
seen() {
  local name=$1 st miss=()
  shift
  st=$(ctl "$CTL/stats")
  while [ $# -ge 2 ]; do
    jq -e --arg k "$1 $2" '(.requests[$k] // 0) > 0' <<<"$st" >/dev/null || miss+=("$1$2")
    shift 2
  done
  if [ ${#miss[@]} -eq 0 ]; then
    t_ok "$name"
  else
    t_fail "$name" "never requested: ${miss[*]}" "requested: $(jq -c .requests <<<"$st")"
  fi
}
# the issuer URLs (iss) of the platforms
read -r K8S GHES GHE GHC GL GLS GO EKS AWS < <("${PI[@]}" url kubernetes github-server github-enterprise \
  github-actions gitlab gitlab-self-managed google aws-eks aws-outbound | paste -sd' ' -)

# ---------------------------------------------------------------- Kubernetes
ok "Kubernetes RS256 (keys at /openid/v1/jwks, ca_file, bearer_token_file)" "$(MINT kubernetes --alg RS256)" \
  example-k8s-batch "$K8S" '{"pod":"report-runner-29384756-abcde"}'
ok "Kubernetes ES256" "$(MINT kubernetes --alg ES256)" example-k8s-batch "$K8S" '{}'
deny "Kubernetes: service account uid" \
  "$(MINT kubernetes --claims '{"kubernetes.io":{"serviceaccount":{"uid":"9a0e4c1d-0000-4f3e-8c5a-6d1b0e2f4a87"}}}')" \
  example-k8s-batch "claims./kubernetes.io/serviceaccount/uid" 9a0e4c1d-2b7f-4f3e-8c5a-6d1b0e2f4a87 \
  9a0e4c1d-0000-4f3e-8c5a-6d1b0e2f4a87
deny "Kubernetes: same uid in another namespace" \
  "$(MINT kubernetes --claims '{"sub":"system:serviceaccount:batch2:report-runner","kubernetes.io":{"namespace":"batch2"}}')" \
  example-k8s-batch subject system:serviceaccount:batch:report-runner system:serviceaccount:batch2:report-runner \
  "; claims./kubernetes.io/namespace batch => batch2"
seen "Kubernetes: keys from /openid/v1/jwks (no discovery)" kubernetes.default.svc.cluster.local /openid/v1/jwks
t_eq "Kubernetes: every key fetch carried bearer_token_file's token (none without, none wrong)" "true 0 0" \
  "$(ctl "$CTL/stats" | jq -r '"\(.auth.ok > 0) \(.auth.missing) \(.auth.wrong)"')"
# the API server rotates its signing key and no longer accepts Broker's service-account token: the
# refetch gets 401, so the new key stays unknown (fail closed). Then the token file is rotated (as the
# kubelet does): the next refetch reads the new token and finds the key (at the end, after the cool-down)
ctl -X POST --data 'a-token-the-api-server-no-longer-accepts' "$CTL/k8s-bearer" >/dev/null
ctl -X POST "$CTL/publish?platform=kubernetes&keys=k8s-rs256,k8s-es256,k8s-next" >/dev/null
refused "Kubernetes: a rotated key while the API server refuses Broker's bearer token is refused" \
  "$(MINT kubernetes --key k8s-next)" unknown_kid
t_eq "Kubernetes: that refetch was answered 401 (wrong bearer)" "true" "$(ctl "$CTL/stats" | jq '.auth.wrong > 0')"
head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$WORK/k8s-sa.token.new"
mv "$WORK/k8s-sa.token.new" "$WORK/k8s-sa.token"
ctl -X POST --data-binary "@$WORK/k8s-sa.token" "$CTL/k8s-bearer" >/dev/null
ROTATE_AT=$(date +%s) # the other platforms run while the refetch cool-down passes

# ---------------------------------------------------------------- GitHub Actions
ok "GHES (ghes_host)" "$(MINT github-server)" example-github-deploy "$GHES" '{"repo":"acme/app","run":"14144996512"}'
deny "GHES: repository_id of another repository" "$(MINT github-server --claims '{"repository_id":"123456780"}')" \
  example-github-deploy claims.repository_id 123456789 123456780
deny "GHES: repository_owner_id of another owner (renamed organization)" \
  "$(MINT github-server --claims '{"repository_owner_id":"987655"}')" \
  example-github-deploy claims.repository_owner_id 987654 987655
seen "GHES: discovery and JWKS under /_services/token on the GHES host" \
  github.acme.example /_services/token/.well-known/openid-configuration github.acme.example /_services/token/.well-known/jwks

ok "GitHub enterprise issuer (enterprise)" "$(MINT github-enterprise)" example-github-enterprise-deploy "$GHE" '{}'
deny "enterprise: repository_id" "$(MINT github-enterprise --claims '{"repository_id":"223344557"}')" \
  example-github-enterprise-deploy claims.repository_id 223344556 223344557
deny "enterprise: repository_owner_id" "$(MINT github-enterprise --claims '{"repository_owner_id":"7654322"}')" \
  example-github-enterprise-deploy claims.repository_owner_id 7654321 7654322
# same keys, same claims, but the github.com iss: the enterprise's trust policy never matches
other_issuer "enterprise: the same token issued by github.com (not the enterprise issuer) is refused" \
  "$(MINT github-enterprise --iss "$GHC")" example-github-enterprise-deploy github-com
seen "enterprise: discovery and JWKS under /acme-corp" token.actions.githubusercontent.com \
  /acme-corp/.well-known/openid-configuration token.actions.githubusercontent.com /acme-corp/.well-known/jwks

ok "github.com (preset default url)" "$(MINT github-actions)" example-github-com-deploy "$GHC" \
  '{"repo":"acme/app","run":"14144996512"}'
deny "github.com: repository_id" "$(MINT github-actions --claims '{"repository_id":"999999999"}')" \
  example-github-com-deploy claims.repository_id 123456789 999999999
deny "github.com: repository_owner_id" "$(MINT github-actions --claims '{"repository_owner_id":"1"}')" \
  example-github-com-deploy claims.repository_owner_id 987654 1

# ---------------------------------------------------------------- GitLab
ok "gitlab.com" "$(MINT gitlab)" example-gitlab-deploy "$GL" '{"project":"acme/app","pipeline":"1520000001"}'
deny "gitlab.com: project_id (a transferred or recreated project)" "$(MINT gitlab --claims '{"project_id":"42424243"}')" \
  example-gitlab-deploy claims.project_id 42424242 42424243
deny "gitlab.com: namespace_id" "$(MINT gitlab --claims '{"namespace_id":"7654321"}')" \
  example-gitlab-deploy claims.namespace_id 1234567 7654321
deny "gitlab.com: an unprotected main" "$(MINT gitlab --claims '{"ref_protected":"false"}')" \
  example-gitlab-deploy claims.ref_protected true false
seen "gitlab.com: discovery, JWKS at /oauth/discovery/keys" gitlab.com /.well-known/openid-configuration \
  gitlab.com /oauth/discovery/keys
seen "self-managed: discovery, JWKS at /oauth/discovery/keys" gitlab.acme.example /.well-known/openid-configuration \
  gitlab.acme.example /oauth/discovery/keys
ok "GitLab self-managed (url)" "$(MINT gitlab-self-managed)" example-gitlab-sm-deploy "$GLS" '{"project":"acme/app"}'
deny "self-managed: project_id" "$(MINT gitlab-self-managed --claims '{"project_id":"1"}')" \
  example-gitlab-sm-deploy claims.project_id 42424242 1
deny "self-managed: namespace_id" "$(MINT gitlab-self-managed --claims '{"namespace_id":"2"}')" \
  example-gitlab-sm-deploy claims.namespace_id 1234567 2
other_issuer "self-managed: a gitlab.com token with the same claims is refused" "$(MINT gitlab)" \
  example-gitlab-sm-deploy gitlab-com

# ---------------------------------------------------------------- Google
ok "Google (format=full ID token; email_verified is a JSON true)" "$(MINT google)" example-gcp-worker "$GO" '{}'
deny "Google: another numeric sub (service account deleted and recreated, same email)" \
  "$(MINT google --claims '{"sub":"104776112345678909999","azp":"104776112345678909999"}')" \
  example-gcp-worker subject 104776112345678901234 104776112345678909999
deny "Google: email_verified false" "$(MINT google --claims '{"email_verified":false}')" \
  example-gcp-worker claims.email_verified true false
seen "Google: jwks_uri on another host (www.googleapis.com/oauth2/v3/certs)" \
  accounts.google.com /.well-known/openid-configuration www.googleapis.com /oauth2/v3/certs

# ---------------------------------------------------------------- AWS EKS
ok "EKS (url)" "$(MINT aws-eks)" example-eks-payments "$EKS" '{"pod":"payments-api-7c9d8f6b5-x2kqz"}'
deny "EKS: service account uid (account recreated under the same name)" \
  "$(MINT aws-eks --claims '{"kubernetes.io":{"serviceaccount":{"uid":"00000000-8d4b-4e0a-9b6c-5f2d1e0a7b93"}}}')" \
  example-eks-payments "claims./kubernetes.io/serviceaccount/uid" 3c1f2a7e-8d4b-4e0a-9b6c-5f2d1e0a7b93 \
  00000000-8d4b-4e0a-9b6c-5f2d1e0a7b93
EKS_PATH=${EKS#https://oidc.eks.eu-west-1.amazonaws.com}
seen "EKS: discovery and JWKS at /id/<ID>/keys" \
  oidc.eks.eu-west-1.amazonaws.com "$EKS_PATH/.well-known/openid-configuration" \
  oidc.eks.eu-west-1.amazonaws.com "$EKS_PATH/keys"

# ---------------------------------------------------------------- AWS outbound identity federation
AWSNS='"https://sts.amazonaws.com/"'
ok "AWS outbound RS256" "$(MINT aws-outbound --alg RS256)" example-aws-lambda "$AWS" '{"region":"eu-west-1"}'
ok "AWS outbound ES384" "$(MINT aws-outbound --alg ES384)" example-aws-lambda "$AWS" '{"region":"eu-west-1"}'
for alg in RS256 ES384; do
  deny "AWS outbound $alg: aws_account (a look-alike role in another account)" \
    "$(MINT aws-outbound --alg $alg --claims "{$AWSNS:{\"aws_account\":\"210987654321\"}}")" \
    example-aws-lambda "claims./https:~1~1sts.amazonaws.com~1/aws_account" 123456789012 210987654321
done
show=$("$BROKER_BIN" audit show "$LAST_RID" 2>&1)
NL=$'\n'
t_match "broker audit show: the nested aws_account condition, expected and actual" \
  "denied \(no_matching_policy\).*/https:~1~1sts.amazonaws.com~1/aws_account[^$NL]*123456789012[^$NL]*210987654321" "$show"
deny "AWS outbound: org_id" "$(MINT aws-outbound --claims "{$AWSNS:{\"org_id\":\"o-zzz9999999\"}}")" \
  example-aws-lambda "claims./https:~1~1sts.amazonaws.com~1/org_id" o-abc1234567 o-zzz9999999
seen "AWS outbound: discovery and JWKS at /.well-known/jwks.json" "${AWS#https://}" /.well-known/openid-configuration \
  "${AWS#https://}" /.well-known/jwks.json

# ---------------------------------------------------------------- one platform's token, another's key
refused "a GitLab token signed with Google's key (Google's kid) is refused" "$(MINT gitlab --key google)" unknown_kid
refused "a GitLab token signed with Google's key under GitLab's kid is refused" \
  "$(MINT gitlab --key google --kid "$(jq -r .gitlab "$PID_DIR/kids.json")")" bad_signature
refused "an EKS token signed by another cluster's key (Kubernetes) is refused" "$(MINT aws-eks --key k8s-rs256)" unknown_kid
refused "a GitHub token signed with the GHES key is refused" "$(MINT github-actions --key ghes)" unknown_kid
refused "an AWS outbound token signed ES256 (not an AWS algorithm) is refused" \
  "$(MINT aws-outbound --key k8s-es256 --alg ES256)" alg_not_allowed
refused "an EKS token signed ES256 (preset: RS256 only) is refused" "$(MINT aws-eks --key k8s-es256 --alg ES256)" \
  alg_not_allowed
refused "a Google token signed with the GitLab key under Google's kid is refused" \
  "$(MINT google --key gitlab --kid "$(jq -r .google "$PID_DIR/kids.json")")" bad_signature

# ---------------------------------------------------------------- Kubernetes rotation, continued
left=$((ROTATE_AT + 11 - $(date +%s)))
[ $left -gt 0 ] && sleep $left # BROKER_JWKS_REFETCH_COOLDOWN_S
ok "Kubernetes: after the cool-down the new key is fetched with the rotated bearer_token_file" \
  "$(MINT kubernetes --key k8s-next)" example-k8s-batch "$K8S" '{}'

broker_stop "$BROKER_PID"
rc=$?
t_eq "broker serve exits 0 on SIGTERM, no sanitizer report in its log" "0 0" \
  "$rc $(grep -c -E 'Sanitizer|runtime error' "$WORK/presets.log")"

t_summary presets
