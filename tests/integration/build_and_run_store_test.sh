#!/usr/bin/env bash
# Builds tests/integration/test_store.c with store.c/audit.c/err.c and runs it via test_store.sh.
# SANITIZE=address,undefined builds with clang and the sanitizers. Until the Makefile has a target.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${BUILD:-build}/tests
mkdir -p "$out"
flags=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
       -Werror -g -pthread -Ibroker -Itests/unit)
cc=${CC:-gcc}
if [ -n "${SANITIZE:-}" ]; then
  cc=clang; flags+=(-O1 -fsanitize="$SANITIZE" -fno-omit-frame-pointer -fno-sanitize-recover=all)
  out=${BUILD:-build-san}/tests; mkdir -p "$out"
else
  flags+=(-O2)
fi
# shellcheck disable=SC2046
"$cc" "${flags[@]}" tests/integration/test_store.c broker/store.c broker/audit.c broker/err.c broker/log.c \
  -o "$out/test_store" $(pkg-config --cflags --libs libpq jansson openssl) -lcmocka
exec tests/integration/test_store.sh "$out/test_store"
