# shellcheck shell=bash
# A whole Broker environment on loopback for tests and the demo: a throwaway PostgreSQL, a
# local HTTPS OIDC issuer (tests/tools/issuer.py), signing keys, and `broker serve`.
# Source it after setting ROOT (repo root), WORK (an absolute scratch dir) and BROKER_BIN.

# shellcheck source=pg.sh
. "$ROOT/tests/integration/lib/pg.sh"
PY=/usr/bin/python3
ISSUER_PY="$ROOT/tests/tools/issuer.py"

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # URL [tries]: until it answers 200
  local i
  for ((i = 0; i < ${2:-100}; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

issuer_start() { # DIR: init once, serve on a free port; sets ISSUER_URL
  local dir=$1
  [ -f "$dir/ca.pem" ] || $PY "$ISSUER_PY" init "$dir" >/dev/null || return 1
  rm -f "$dir/issuer.port"
  $PY "$ISSUER_PY" serve "$dir" --port 0 >>"$dir/issuer.out" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do [ -s "$dir/issuer.port" ] && break; sleep 0.05; done
  ISSUER_PORT=$(cat "$dir/issuer.port") || return 1
  ISSUER_URL="https://127.0.0.1:$ISSUER_PORT"
  curl -fsS --cacert "$dir/ca.pem" -o /dev/null "$ISSUER_URL/.well-known/openid-configuration"
}

issuer_stop() { # DIR
  [ -f "$1/issuer.pid" ] && kill "$(cat "$1/issuer.pid")" 2>/dev/null
  rm -f "$1/issuer.pid"
  return 0
}

issuer_ctl() { # DIR PATH(with query): POST a control endpoint
  curl -fsS --cacert "$1/ca.pem" -X POST "$ISSUER_URL$2" >/dev/null
}

mint() { # DIR [issuer.py mint args...]
  local dir=$1; shift
  $PY "$ISSUER_PY" mint "$dir" --iss "$ISSUER_URL" "$@"
}

# broker_start NAME [serve flags...]: start `broker serve` in the background with the current
# BROKER_* environment; sets BROKER_URL, BROKER_PID; waits for /readyz.
broker_start() {
  local name=$1; shift
  BROKER_PORT=$(free_port)
  BROKER_URL="http://127.0.0.1:$BROKER_PORT"
  BROKER_ISSUER=${BROKER_ISSUER_OVERRIDE:-$BROKER_URL} \
    "$BROKER_BIN" serve --listen "127.0.0.1:$BROKER_PORT" "$@" >>"$WORK/$name.log" 2>&1 &
  BROKER_PID=$!
  if ! wait_http "$BROKER_URL/readyz" 150; then
    echo "broker $name did not become ready; log:" >&2
    tail -20 "$WORK/$name.log" >&2
    return 1
  fi
}

broker_stop() { # PID: SIGTERM and wait (drain)
  kill -TERM "$1" 2>/dev/null || return 0
  wait "$1" 2>/dev/null
}

# exchange TOKEN [extra curl args...]: POST /v1/token over h2c; prints "STATUS BODY"
exchange() {
  local tok=$1; shift
  curl -sS --http2-prior-knowledge -o "$WORK/resp.json" -w '%{http_code}' \
    --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
    --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
    --data-urlencode "subject_token=$tok" "$@" "$BROKER_URL/v1/token"
  echo " $(cat "$WORK/resp.json")"
}

# jwt_part TOKEN INDEX: one decoded part of a compact JWS (2: the claims JSON), no verification
jwt_part() { # TOKEN INDEX
  local p
  p=$(cut -d. -f"$2" <<<"$1" | tr '_-' '/+')
  while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
  base64 -d <<<"$p" 2>/dev/null
}

# The common set-up of a self-contained suite: PostgreSQL, the schema, a signing key, the test
# issuer ($ISS, $ISSUER_URL) and its issuer document "test" in $WORK/policies. 0 or 1 (printed).
env_up() {
  pg_start "$WORK/pg" >/dev/null || { echo "cannot start PostgreSQL"; return 1; }
  export BROKER_SQL_DIR="$ROOT/sql" BROKER_KEYS_DIR="$WORK/keys" BROKER_THREADS=2
  "$BROKER_BIN" migrate >/dev/null || { echo "migrate failed"; return 1; }
  "$BROKER_BIN" keys generate >/dev/null || { echo "keys generate failed"; return 1; }
  issuer_start "$WORK/issuer" || { echo "cannot start the test issuer"; return 1; }
  ISS="$WORK/issuer"
  mkdir -p "$WORK/policies"
  cat >"$WORK/policies/test.issuer.json" <<JSON
{"issuer": "test", "url": "$ISSUER_URL", "ca_file": "$ISS/ca.pem", "algorithms": ["RS256"], "leeway": "30s"}
JSON
}

# Its tear-down (an EXIT trap): the processes in PIDS, the issuer, PostgreSQL; WORK is kept when a
# test failed (or KEEP_WORK=1).
env_cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  issuer_stop "$WORK/issuer"
  wait 2>/dev/null
  pg_stop "$WORK/pg" >/dev/null 2>&1
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "${T_FAIL:-0}" -gt 0 ]; then echo "# work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
