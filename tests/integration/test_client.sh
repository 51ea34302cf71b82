#!/usr/bin/env bash
# shellcheck disable=SC2016  # single-quoted scripts run in the child, with its own environment
# Client side: `broker exchange` and `broker run` against a throwaway PostgreSQL, the local HTTPS
# issuer, `broker serve` and tests/tools/fake_metadata.py (GitHub Actions token request URL, GCP
# metadata server, a flaky and an oversized token endpoint). Every ambient-token source, the
# output formats, denials, retries, and `broker run` (environment, exit status, signals, refresh file).
# Usage: BROKER_BIN=build/broker tests/integration/test_client.sh   (prints "client: N passed, N failed")
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${BROKER_BIN:-$ROOT/build/broker}
case $BROKER_BIN in /*) ;; *) BROKER_BIN=$PWD/$BROKER_BIN ;; esac
WORK=$(mktemp -d /tmp/broker-client.XXXXXX)
chmod 755 "$WORK"
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/tests/integration/lib/tap.sh"
# shellcheck source-path=SCRIPTDIR source=lib/env.sh
. "$ROOT/tests/integration/lib/env.sh"
# never let the runner's own ambient credentials leak into the tests
unset ACTIONS_ID_TOKEN_REQUEST_URL ACTIONS_ID_TOKEN_REQUEST_TOKEN AWS_WEB_IDENTITY_TOKEN_FILE \
  BROKER_K8S_TOKEN_FILE GCE_METADATA_HOST BROKER_GCP_METADATA
PIDS=()
trap env_cleanup EXIT

# ---------------------------------------------------------------- environment
env_up || exit 1
cat >"$WORK/policies/deploy.identity.json" <<'JSON'
{"identity": "deploy", "scopes": ["secrets:read:demo"], "audiences": ["https://secrets.example.com"],
 "ttl": "15m",
 "trust": [{"name": "main", "issuer": "test", "subject": {"equals": "repo:acme/demo:ref:refs/heads/main"},
            "claims": {"repository_id": {"equals": "123456789"}}}]}
JSON
cat >"$WORK/policies/short.identity.json" <<'JSON'
{"identity": "short", "scopes": ["s:short"], "audiences": ["https://short.example.com"],
 "ttl": "3s", "max_ttl": "3s",
 "trust": [{"name": "main", "issuer": "test", "subject": {"equals": "repo:acme/demo:ref:refs/heads/main"}}]}
JSON
"$BROKER_BIN" policy apply "$WORK/policies" >/dev/null || { echo "policy apply failed"; exit 1; }
broker_start client || exit 1
PIDS+=("$BROKER_PID")
GOOD() { mint "$ISS" --preset github-actions --aud "$BROKER_URL"; }

META_LOG="$WORK/meta.log"
$PY "$ROOT/tests/tools/fake_metadata.py" "$ISS" --iss "$ISSUER_URL" --port-file "$WORK/meta.port" \
  --gh-bearer gh-request-secret --broker "$BROKER_URL" --log "$META_LOG" >>"$WORK/meta.out" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 100; i++)); do [ -s "$WORK/meta.port" ] && break; sleep 0.05; done
META_HOST="127.0.0.1:$(cat "$WORK/meta.port")"
META="http://$META_HOST"

X() { "$BROKER_BIN" exchange --server "$BROKER_URL" --identity deploy "$@"; }
# claims of a minted access token: "sub aud scope"
SAS() { jq -r '"\(.sub) \(.aud) \(.scope)"' <<<"$(jwt_part "$1" 2)"; }

# ---------------------------------------------------------------- token sources
GOOD >"$WORK/subject.jwt"
at=$(X --token-file "$WORK/subject.jwt" 2>"$WORK/err")
t_eq "--token-file: prints the access token" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$at")"
t_check "the subject token never reaches stderr" bash -c "! grep -qF '$(cut -d. -f3 "$WORK/subject.jwt")' '$WORK/err'"

at=$(BROKER_ID_TOKEN=$(GOOD) X --token-env BROKER_ID_TOKEN)
t_eq "GitLab --token-env" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$at")"
t_check "--token-env with the variable unset fails" bash -c "! '$BROKER_BIN' exchange --server '$BROKER_URL' --token-env NOPE_NOT_SET 2>/dev/null"

at=$(ACTIONS_ID_TOKEN_REQUEST_URL="$META/gh/token?api-version=2.0" ACTIONS_ID_TOKEN_REQUEST_TOKEN=gh-request-secret X)
t_eq "GitHub Actions request URL" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$at")"
aud_q=$($PY -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$BROKER_URL")
t_check "GitHub: audience defaults to the server URL, appended with &" grep -qF "GET /gh/token?api-version=2.0&audience=$aud_q" "$META_LOG"
out=$(ACTIONS_ID_TOKEN_REQUEST_URL="$META/gh/token?api-version=2.0" ACTIONS_ID_TOKEN_REQUEST_TOKEN=wrong X 2>&1)
t_check "GitHub: a rejected request token fails" test $? -ne 0
t_match "GitHub: the failure is explained" "GitHub Actions token request: HTTP 401" "$out"
ACTIONS_ID_TOKEN_REQUEST_URL="$META/gh/token" ACTIONS_ID_TOKEN_REQUEST_TOKEN=gh-request-secret \
  X --oidc-audience https://custom.example >/dev/null 2>&1
t_check "GitHub: --oidc-audience is sent (and a URL without a query gets ?)" grep -qF "GET /gh/token?audience=https%3A%2F%2Fcustom.example" "$META_LOG"

GOOD >"$WORK/aws.jwt"
at=$(AWS_WEB_IDENTITY_TOKEN_FILE="$WORK/aws.jwt" X)
t_eq "AWS_WEB_IDENTITY_TOKEN_FILE" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$at")"
GOOD >"$WORK/k8s.jwt"
at=$(BROKER_K8S_TOKEN_FILE="$WORK/k8s.jwt" X)
t_eq "Kubernetes projected token file (BROKER_K8S_TOKEN_FILE)" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$at")"

at=$(GCE_METADATA_HOST="$META_HOST" X)
t_eq "GCP metadata server" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$at")"
t_check "GCP: audience and format=full requested" grep -qF "identity?audience=$aud_q&format=full" "$META_LOG"
out=$(X 2>&1)
t_check "no ambient token: non-zero exit" test $? -ne 0
t_match "no ambient token: says so" "no OIDC token found" "$out"
# the wrong-audience files would be refused: success shows which source was used
mint "$ISS" --preset github-actions --aud https://wrong.example >"$WORK/wrongaud.jwt"
t_check "GitHub wins over AWS and Kubernetes files (documented order)" bash -c \
  "AWS_WEB_IDENTITY_TOKEN_FILE='$WORK/wrongaud.jwt' BROKER_K8S_TOKEN_FILE='$WORK/wrongaud.jwt' ACTIONS_ID_TOKEN_REQUEST_URL='$META/gh/token?x=1' ACTIONS_ID_TOKEN_REQUEST_TOKEN=gh-request-secret '$BROKER_BIN' exchange --server '$BROKER_URL' --identity deploy >/dev/null"
t_check "AWS wins over Kubernetes" bash -c \
  "AWS_WEB_IDENTITY_TOKEN_FILE='$WORK/aws.jwt' BROKER_K8S_TOKEN_FILE='$WORK/wrongaud.jwt' '$BROKER_BIN' exchange --server '$BROKER_URL' --identity deploy >/dev/null"
t_check "--token-file wins over everything" bash -c \
  "AWS_WEB_IDENTITY_TOKEN_FILE='$WORK/wrongaud.jwt' ACTIONS_ID_TOKEN_REQUEST_URL='$META/gh/token' ACTIONS_ID_TOKEN_REQUEST_TOKEN=wrong '$BROKER_BIN' exchange --server '$BROKER_URL' --identity deploy --token-file '$WORK/subject.jwt' >/dev/null"

# ---------------------------------------------------------------- formats and options
js=$(X --token-file "$WORK/subject.jwt" --format json)
t_eq "--format json is the token response" "Bearer 900 secrets:read:demo" "$(jq -r '"\(.token_type) \(.expires_in) \(.scope)"' <<<"$js")"
before=$(date +%s)
envout=$(X --token-file "$WORK/subject.jwt" --format env)
t_match "--format env" $'^BROKER_TOKEN=[A-Za-z0-9_.-]+\nBROKER_TOKEN_EXPIRES_AT=[0-9]+$' "$envout"
exp=$(sed -n 's/^BROKER_TOKEN_EXPIRES_AT=//p' <<<"$envout")
t_check "BROKER_TOKEN_EXPIRES_AT is about now + 900" test $((exp - before)) -ge 899 -a $((exp - before)) -le 905
at=$(X --token-file "$WORK/subject.jwt" --scope secrets:read:demo --audience https://secrets.example.com)
t_eq "--scope and --audience are sent" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$at")"
t_check "unknown --format is a usage error (2)" bash -c "'$BROKER_BIN' exchange --server x --format yaml 2>/dev/null; test \$? -eq 2"
t_check "--server is required" bash -c "'$BROKER_BIN' exchange --token-file x 2>/dev/null; test \$? -eq 2"

# ---------------------------------------------------------------- denials, retries, bounds
out=$(X --token-file "$WORK/wrongaud.jwt" 2>&1 >/dev/null)
rc=$?
t_check "denial exits non-zero" test $rc -ne 0
t_match "denial prints the server's error on stderr" "refused \(HTTP 4[0-9][0-9]\): [a-z_]+" "$out"
t_check "a denial is not retried" bash -c "! grep -q retrying <<<'$out'"
out=$(X --identity no-such-identity --token-file "$WORK/subject.jwt" 2>&1 >/dev/null)
t_match "denial for an unknown identity" "refused \(HTTP 4" "$out"

start=$(date +%s%N)
at=$("$BROKER_BIN" exchange --server "$META/flaky" --identity deploy --token-file "$WORK/subject.jwt" 2>"$WORK/flaky.err")
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
t_eq "503, 503, 429 then success" "0 deploy" "$rc $(jq -r .sub <<<"$(jwt_part "$at" 2)")"
t_eq "three retries logged" "3" "$(grep -c retrying "$WORK/flaky.err")"
t_check "backoff 200+400 ms then Retry-After 1 s (took ${ms} ms)" test "$ms" -ge 1500
t_check "Retry-After is honoured" grep -q "retrying in 1000 ms" "$WORK/flaky.err"
# the flaky endpoint now forwards every request: make a fresh server fail past --retries
t_check "--retries 0: a connection error fails at once" bash -c \
  "! '$BROKER_BIN' exchange --server http://127.0.0.1:$(free_port) --retries 0 --token-file '$WORK/subject.jwt' 2>/dev/null"
late=$(free_port)
( sleep 0.5; exec $PY -m http.server --bind 127.0.0.1 "$late" >/dev/null 2>&1 ) &
LATE_PID=$!
PIDS+=("$LATE_PID")
out=$("$BROKER_BIN" exchange --server "http://127.0.0.1:$late" --token-file "$WORK/subject.jwt" 2>&1)
t_match "connection refused is retried until the port answers (then its 501 is retried too)" "retrying.*(501|HTTP 5)" "$(tr '\n' ' ' <<<"$out")"
kill "$LATE_PID" 2>/dev/null
out=$("$BROKER_BIN" exchange --server "$META/huge" --token-file "$WORK/subject.jwt" 2>&1)
t_check "a response over 64 KiB is refused" test $? -ne 0
t_match "... and says why" "larger than 65536" "$out"

# ---------------------------------------------------------------- broker run
R() { "$BROKER_BIN" run --server "$BROKER_URL" --token-file "$WORK/subject.jwt" "$@"; }
out=$(R --identity deploy -- sh -c 'echo "$BROKER_TOKEN"')
t_eq "run passes BROKER_TOKEN" "deploy https://secrets.example.com secrets:read:demo" "$(SAS "$out")"
out=$(R --identity deploy -- sh -c 'echo "$BROKER_TOKEN_EXPIRES_AT"')
t_check "run passes BROKER_TOKEN_EXPIRES_AT" test "$((out - $(date +%s)))" -ge 890
R --identity deploy -- sh -c 'exit 7'
t_eq "run exits with the child's status" "7" "$?"
R --identity deploy -- sh -c 'kill -KILL $$'
t_eq "run exits 128+signal when the child is killed" "137" "$?"
R --identity deploy -- /nonexistent/cmd 2>/dev/null
t_eq "run: command not found is 127" "127" "$?"
out=$(R --identity deploy -- sh -c 'f=$BROKER_TOKEN_FILE; echo "$f"; stat -c %a "$f"; stat -c %a "$(dirname "$f")"; [ "$(cat "$f")" = "$BROKER_TOKEN" ] && echo same')
f=$(sed -n 1p <<<"$out")
t_eq "BROKER_TOKEN_FILE is private (0600 in a 0700 dir) and holds the token" "600 700 same" "$(sed -n 2,4p <<<"$out" | tr '\n' ' ' | sed 's/ $//')"
t_check "BROKER_TOKEN_FILE is removed at exit" test ! -e "$f" -a ! -e "$(dirname "$f")"
"$BROKER_BIN" run --server "$BROKER_URL" --token-file "$WORK/wrongaud.jwt" -- sh -c 'echo ran' >"$WORK/norun" 2>/dev/null
rc=$?
t_check "run does not start the command when the exchange is refused" test $rc -ne 0 -a ! -s "$WORK/norun"

( exec "$BROKER_BIN" run --server "$BROKER_URL" --token-file "$WORK/subject.jwt" --identity deploy -- sh -c 'trap "exit 3" TERM; sleep 30 & wait' ) &
RUN_PID=$!
sleep 1
kill -TERM "$RUN_PID"
wait "$RUN_PID"
t_eq "run forwards SIGTERM to the child" "3" "$?"
( exec "$BROKER_BIN" run --server "$BROKER_URL" --token-file "$WORK/subject.jwt" --identity deploy -- sh -c 'trap "exit 4" INT; sleep 30 & wait' ) &
RUN_PID=$!
sleep 1
kill -INT "$RUN_PID"
wait "$RUN_PID"
t_eq "run forwards SIGINT to the child" "4" "$?"

# a 3 s token: refreshed into the file at ~80% of its lifetime, more than once in 6 s
out=$(R --identity short -- sh -c 'a=$(cat "$BROKER_TOKEN_FILE"); [ "$a" = "$BROKER_TOKEN" ] && echo first-ok; sleep 3.2; b=$(cat "$BROKER_TOKEN_FILE"); sleep 2.5; c=$(cat "$BROKER_TOKEN_FILE"); [ "$a" != "$b" ] && echo rewritten; [ "$b" != "$c" ] && echo again; printf "%s\n" "$c"; stat -c %a "$BROKER_TOKEN_FILE"')
t_eq "short-lived token: the file is rewritten before expiry, repeatedly, staying 0600" "first-ok rewritten again 600" \
  "$(sed -n '1,3p;5p' <<<"$out" | tr '\n' ' ' | sed 's/ $//')"
c=$(sed -n 4p <<<"$out")
t_eq "the refreshed token is a valid short token" "short https://short.example.com s:short" "$(SAS "$c")"
t_check "the refreshed token is not yet expired when read" test "$(jq -r .exp <<<"$(jwt_part "$c" 2)")" -ge "$(($(date +%s) - 1))"

t_summary client
