# Shared by bench.sh and ab.sh (sourced after tests/integration/lib/env.sh, with WORK set):
# a throwaway PostgreSQL, a signing key, the local HTTPS issuer and the bench's two documents.
# Rate limits are switched off (one client address sends everything).
bench_cleanup() { # BROKER_PID...: stop them, the issuer and PostgreSQL; remove WORK
  local p
  for p in "$@"; do [ -n "$p" ] && broker_stop "$p"; done
  issuer_stop "$WORK/issuer"
  pg_stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

bench_setup() { # BROKER_BIN
  local bin=$1
  pg_start "$WORK/pg" >/dev/null
  export BROKER_SQL_DIR="$ROOT/sql" BROKER_KEYS_DIR="$WORK/keys" BROKER_RATE_PER_CONN=0 BROKER_RATE_PER_ADDR=0
  "$bin" migrate >/dev/null
  "$bin" keys generate >/dev/null
  issuer_start "$WORK/issuer" >/dev/null
  mkdir -p "$WORK/p"
  cat >"$WORK/p/i.json" <<JSON
{"issuer": "bench", "url": "$ISSUER_URL", "ca_file": "$WORK/issuer/ca.pem"}
JSON
  cat >"$WORK/p/d.json" <<'JSON'
{"identity": "deploy", "scopes": ["secrets:read:demo"], "audiences": ["https://secrets.example.com"],
 "trust": [{"name": "main", "issuer": "bench", "subject": {"equals": "repo:acme/demo:ref:refs/heads/main"},
            "claims": {"repository_id": {"equals": "123456789"}, "event_name": {"in": ["push"]}},
            "claim_mappings": {"repository": "repo"}}]}
JSON
  "$bin" policy apply "$WORK/p" >/dev/null
}

bench_body() { # AUDIENCE: a GitHub-Actions-shaped subject token as a token-exchange form, in $WORK/body
  local token
  token=$(mint "$WORK/issuer" --preset github-actions --aud "$1" --ttl 3600)
  printf 'grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Atoken-exchange&subject_token_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Atoken-type%%3Ajwt&subject_token=%s' "$token" >"$WORK/body"
}
