#!/usr/bin/env bash
# A/B of two broker builds under the same h2c-reuse load: `tests/bench/ab.sh OLD_BIN NEW_BIN`.
# Both brokers run at once (same database, keys and token); h2load drives them in alternating
# slices, so the drift of this shared machine's speed (±10 % over minutes) falls on both alike.
# Prints each build's CPU µs per exchange over all slices, new/old, and PostgreSQL's CPU per
# exchange during each side's slices (the audit writes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
A=${1:?old broker binary}; B=${2:?new broker binary}
ROUNDS=${AB_ROUNDS:-8}; N=${AB_N:-6000}
# One event loop each unless told otherwise: whether h2load's 8 connections land on one loop or
# split over two is chance, and it moves the CPU per exchange by several % on two cores.
export BROKER_THREADS=${BROKER_THREADS:-1}
WORK=$(mktemp -d /tmp/broker-ab.XXXXXX)
chmod 755 "$WORK"
. "$ROOT/tests/integration/lib/env.sh"
. "$ROOT/tests/bench/lib.sh"
trap 'bench_cleanup "${PA:-}" "${PB:-}"' EXIT
bench_setup "$A"
export BROKER_ISSUER_OVERRIDE=https://broker.ab.invalid  # one audience for both brokers
BROKER_BIN=$A broker_start a; PA=$BROKER_PID; UA=$BROKER_URL
BROKER_BIN=$B broker_start b; PB=$BROKER_PID; UB=$BROKER_URL
bench_body "$BROKER_ISSUER_OVERRIDE"
load() { # URL N: prints the 200 count
  h2load -n "$2" -c 8 -m 16 -d "$WORK/body" -H 'content-type: application/x-www-form-urlencoded' "$1/v1/token" |
    awk '/^status codes:/{print $3}'
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() { # all PostgreSQL processes: the audit writes of whichever broker is being driven
  local t=0 p
  for p in $(pgrep -x postgres); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
load "$UA" 400 >/dev/null; load "$UB" 400 >/dev/null  # warm-up
ca=0; cb=0; na=0; nb=0; pa=0; pb=0
for ((r = 1; r <= ROUNDS; r++)); do
  for side in a b; do
    if [ $side = a ]; then pid=$PA url=$UA; else pid=$PB url=$UB; fi
    [ $((r % 2)) -eq 0 ] && { [ $side = a ] && pid=$PB url=$UB || pid=$PA url=$UA; }  # alternate who goes first
    t0=$(ticks "$pid"); g0=$(pg_ticks); ok=$(load "$url" "$N"); t1=$(ticks "$pid"); g1=$(pg_ticks)
    if [ "$pid" = "$PA" ]; then ca=$((ca + t1 - t0)); na=$((na + ok)); pa=$((pa + g1 - g0))
    else cb=$((cb + t1 - t0)); nb=$((nb + ok)); pb=$((pb + g1 - g0)); fi
  done
done
HZ=$(getconf CLK_TCK)
batch() { curl -fsS "$1/metrics" | awk '/^broker_audit_batches_total/{b=$2} /^broker_audit_rows_total/{r=$2} END{printf "%.1f", b ? r / b : 0}'; }
echo "ab: audit_rows_per_batch old=$(batch "$UA") new=$(batch "$UB")"
awk -v ca="$ca" -v cb="$cb" -v na="$na" -v nb="$nb" -v pa="$pa" -v pb="$pb" -v hz="$HZ" 'BEGIN {
  a = ca * 1e6 / hz / na; b = cb * 1e6 / hz / nb
  printf "ab: old_cpu_us=%.1f new_cpu_us=%.1f new_over_old=%.3f exchanges=%d/%d\n", a, b, b / a, na, nb
  printf "ab: postgres_cpu_us old=%.1f new=%.1f (all PostgreSQL processes during each side'"'"'s slices)\n",
    pa * 1e6 / hz / na, pb * 1e6 / hz / nb }'
