#!/usr/bin/env bash
# Issuer key cache (broker/issuers.c) against a real local HTTPS issuer: builds
# tests/integration/test_issuers.c, starts tests/tools/issuer.py on a free port, runs the cmocka
# binary (TAP), stops the issuer. SANITIZE=address,undefined builds with clang sanitizers.
# TEST_ISSUERS_BIN=path runs a binary built elsewhere instead of building one here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/broker-issuers.XXXXXX)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/env.sh
. "$ROOT/tests/integration/lib/env.sh"

cleanup() {
  issuer_stop "$WORK/iss"
  if [ "${KEEP_WORK:-}" = 1 ]; then echo "# work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

bin=${TEST_ISSUERS_BIN:-}
if [ -z "$bin" ]; then
  bin="$WORK/test_issuers"
  srcs="broker/issuers.c broker/issuers_fetch.c broker/curlx.c broker/bearer.c broker/jwks.c broker/jwt.c broker/b64.c broker/err.c broker/log.c
        broker/policy_doc.c broker/policy_preset.c broker/policy_eval.c broker/policy_cond.c broker/glob.c broker/cidr.c
        broker/json.c"
  flags="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
         -Wformat=2 -Wvla -g -pthread -iquote broker -iquote tests/unit"
  cc=${CC:-cc}
  if [ -n "${SANITIZE:-}" ]; then
    cc=clang
    flags="$flags -O1 -fsanitize=$SANITIZE -fno-omit-frame-pointer -fno-sanitize-recover=all"
  else
    flags="$flags -O2"
  fi
  # shellcheck disable=SC2086,SC2046
  $cc $flags $srcs tests/integration/test_issuers.c -o "$bin" \
    $(pkg-config --cflags --libs libcurl openssl jansson) -lcmocka -lm
fi

PY=/usr/bin/python3
$PY "$ROOT/tests/tools/issuer.py" init "$WORK/other" >/dev/null # a CA the issuer does not use
issuer_start "$WORK/iss"

# No proxy may sit between the broker and a loopback issuer in this test.
env -u https_proxy -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
  ISSUER_DIR="$WORK/iss" ISSUER_PORT="$ISSUER_PORT" OTHER_CA="$WORK/other/ca.pem" \
  CMOCKA_MESSAGE_OUTPUT=TAP "$bin"
