#!/usr/bin/env bash
# Runs the store/audit integration test binary against a throwaway PostgreSQL.
# Usage: tests/integration/test_store.sh BINARY   (from anywhere; runs in the repo root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:?usage: test_store.sh BINARY}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
# shellcheck source-path=SCRIPTDIR source=lib/pg.sh
. "$here/lib/pg.sh"

tmp=$(mktemp -d /tmp/broker-store-test.XXXXXX)
pgdir=$tmp/pg
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  pg_stop "$pgdir" || pg_kill "$pgdir" || true
  rm -rf "$tmp"
}
trap cleanup EXIT

pg_start "$pgdir"
export BROKER_SQL_DIR=$root/sql BROKER_TEST_PG_DIR=$pgdir BROKER_TEST_PG_LIB=$here/lib/pg.sh
cd "$root"
rc=0
CMOCKA_MESSAGE_OUTPUT=${CMOCKA_MESSAGE_OUTPUT:-TAP} "$bin" || rc=$?
if [ $rc -ne 0 ]; then
  echo "test_store: FAILED (exit $rc); last PostgreSQL log lines:" >&2
  tail -n 20 "$pgdir/postgres.log" >&2 || true
fi
exit $rc
