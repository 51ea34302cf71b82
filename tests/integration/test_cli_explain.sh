#!/usr/bin/env bash
# `broker policy test` end to end: the real GitHub Actions tokens against tests/data/explain/ (text,
# --json, stdin, exit status), and a token of a live local HTTPS issuer whose keys the command fetches
# itself (discovery + JWKS through issuers_fetch), then the same with the issuer down.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/broker-explain.XXXXXX)
BROKER_BIN=${BROKER_BIN:-$ROOT/build/broker}
export BROKER_FIXTURES=${BROKER_FIXTURES:-$ROOT/../shared/fixtures/real-oidc}
cd "$ROOT" || exit 1
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/tests/integration/lib/tap.sh"
# shellcheck source-path=SCRIPTDIR source=lib/env.sh
. "$ROOT/tests/integration/lib/env.sh"

cleanup() {
  issuer_stop "$WORK/iss"
  if [ "${KEEP_WORK:-}" = 1 ] || [ $T_FAIL -gt 0 ]; then echo "# work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -x "$BROKER_BIN" ] || { echo "BROKER_BIN=$BROKER_BIN is not an executable"; exit 1; }
CMD=("$BROKER_BIN" policy test)

GHA="$BROKER_FIXTURES/github-actions"
TOK="$GHA/gha_2025-03-29_rgl_github-actions-validate-jwt.jwt"
DOCS=(tests/data/explain/issuers/github-actions-2025.issuer.json tests/data/explain/gha-2025)
if [ "$BROKER_FIXTURES" != "$ROOT/../shared/fixtures/real-oidc" ]; then
  # the checked-in issuer documents point at the default fixtures location: write one for this one
  printf '{"issuer":"github-actions","url":"https://token.actions.githubusercontent.com","jwks_file":"%s"}\n' \
    "$GHA/jwks_2024-25_token.actions.githubusercontent.com.json" >"$WORK/gh.issuer.json"
  DOCS=("$WORK/gh.issuer.json" tests/data/explain/gha-2025)
fi

# ---------------------------------------------------------------- real tokens
out=$("${CMD[@]}" --token "$TOK" --at 2025-03-29T11:03:47Z "${DOCS[@]}" 2>&1); rc=$?
t_eq "real token at its iat: exit 0" 0 "$rc"
t_match "real token at its iat: issued" "decision: ISSUED  identity validate-jwt  policy main-push" "$out"
t_match "the other policies are listed" "identity wrong-branch / policy release-push: NO MATCH \(first failed: subject\)" "$out"

out=$("${CMD[@]}" --token "$TOK" --at 1743271427 --identity validate-jwt "${DOCS[@]}" 2>&1); rc=$?
t_eq "an hour after exp: exit 1" 1 "$rc"
t_match "an hour after exp: expired" "decision: DENIED \(expired\)  at 2025-03-29T18:03:47Z" "$out"
t_match "an hour after exp: the policy still shown" "policy main-push: MATCH \(but denied: expired\)" "$out"

out=$("${CMD[@]}" --json --token - --at 1743246227 --identity missing-claim "${DOCS[@]}" <"$TOK" 2>&1); rc=$?
t_eq "--json, token on stdin: exit 1" 1 "$rc"
t_eq "--json: reason" no_matching_policy "$(jq -r .reason <<<"$out")"
t_eq "--json: first failed condition" claims.environment "$(jq -r '.policies[0].first_failed' <<<"$out")"

if [ "${DOCS[0]}" != "$WORK/gh.issuer.json" ]; then
  for t in "$GHA"/gha_2022-*.jwt "$GHA"/gha_2023-*.jwt; do
    iat=$(python3 -c 'import sys,json,base64;p=open(sys.argv[1]).read().split(".")[1];print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))["iat"])' "$t")
    "${CMD[@]}" --token "$t" --at "$iat" tests/data/explain/issuers/github-actions-2022.issuer.json \
      tests/data/explain/gha-2022 >/dev/null 2>&1
    t_eq "$(basename "$t") verifies and matches at its iat" 0 "$?"
  done
fi

out=$("${CMD[@]}" --token "$TOK" --at noon "${DOCS[@]}" 2>&1); rc=$?
t_eq "a bad --at: exit 2" 2 "$rc"

# ---------------------------------------------------------------- fetched keys
if issuer_start "$WORK/iss"; then
  cat >"$WORK/live.issuer.json" <<JSON
{"issuer": "live", "url": "$ISSUER_URL", "ca_file": "$WORK/iss/ca.pem", "algorithms": ["RS256"]}
JSON
  cat >"$WORK/live.identity.json" <<'JSON'
{"identity": "live-deploy", "scopes": ["s"], "audiences": ["https://aud.example.com"],
 "trust": [{"name": "main", "issuer": "live", "audience": "https://broker.example.com",
            "subject": {"equals": "repo:acme/demo:ref:refs/heads/main"}}]}
JSON
  tok=$(mint "$WORK/iss" --aud https://broker.example.com --sub repo:acme/demo:ref:refs/heads/main)
  printf '%s\n' "$tok" >"$WORK/live.jwt"
  out=$("${CMD[@]}" --token "$WORK/live.jwt" --issuer-url https://unused.example.com "$WORK/live.issuer.json" \
        "$WORK/live.identity.json" 2>&1); rc=$?
  t_eq "keys fetched from a live issuer: exit 0" 0 "$rc"
  t_match "keys fetched from a live issuer: issued" "decision: ISSUED  identity live-deploy" "$out"
  issuer_stop "$WORK/iss"
  sleep 0.2
  out=$("${CMD[@]}" --token "$WORK/live.jwt" "$WORK/live.issuer.json" "$WORK/live.identity.json" 2>&1); rc=$?
  t_eq "issuer down: exit 1" 1 "$rc"
  t_match "issuer down: keys unavailable" "DENIED \(issuer_keys_unavailable\)" "$out"
  t_match "issuer down: the fetch failure is named" "issuer live: key fetch failed at discovery" "$out"
else
  t_fail "the local issuer starts"
fi

t_summary "cli explain"
