#!/usr/bin/env bash
# `make bench`: POST /v1/token under h2load on loopback, audit on (real PostgreSQL, fsync on).
# One line per scenario:
#   bench: scenario=NAME exchanges_per_s=N cpu_us_per_exchange=N floor_us=N ratio=N p50_ms=N p99_ms=N errors=N
# cpu_us_per_exchange: the broker process's user+system CPU / exchanges (from /proc/PID/stat).
# floor_us: one RSA-2048 verify + one P-256 sign, measured by `openssl speed` in this run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${1:-$ROOT/build/broker}
N=${BENCH_N:-30000}            # exchanges for h2c-reuse
NTLS=${BENCH_TLS_N:-2000}      # exchanges (= connections) for tls-new
WORK=$(mktemp -d /tmp/broker-bench.XXXXXX)
chmod 755 "$WORK"
. "$ROOT/tests/integration/lib/env.sh"
. "$ROOT/tests/bench/lib.sh"
trap 'bench_cleanup "${BPID:-}"' EXIT
bench_setup "$BROKER_BIN"
"$ROOT/tests/tools/mkcert.sh" "$WORK/tls" >/dev/null
TLS_PORT=$(free_port)
broker_start bench --tls-listen "127.0.0.1:$TLS_PORT" --tls-cert "$WORK/tls/tls.pem" --tls-key "$WORK/tls/tls.key"
BPID=$BROKER_PID
bench_body "$BROKER_URL"
# warm-up: keys fetched, connections to PostgreSQL open
h2load -n 200 -c 2 -m 4 -d "$WORK/body" -H 'content-type: application/x-www-form-urlencoded' "$BROKER_URL/v1/token" >/dev/null

# floor: openssl speed (single core), µs per RSA-2048 verify + P-256 sign. This machine's speed
# drifts by ±10 % from minute to minute, so the floor is measured before and after the scenarios
# and averaged (the ratios are printed after the second measurement).
floor_once() {
  local speed
  speed=$(openssl speed -seconds 2 rsa2048 ecdsap256 2>/dev/null)
  awk '/^rsa 2048 bits/{v=$7} /256 bits ecdsa \(nistp256\)/{s=$7} END{print v, s}' <<<"$speed"
}
read -r rsa_v ec_s < <(floor_once)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$BPID/stat"; }
# CPU ticks per kind of thread (names set by the broker: broker-loopN, broker-audit, others)
thread_ticks() {
  local t loop=0 audit=0 other=0 c n
  for t in /proc/"$BPID"/task/*; do
    n=$(cat "$t/comm" 2>/dev/null) || continue
    c=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null) || continue
    case $n in broker-loop*) loop=$((loop + c)) ;; broker-audit) audit=$((audit + c)) ;; *) other=$((other + c)) ;; esac
  done
  echo "$loop $audit $other"
}
HZ=$(getconf CLK_TCK)

run() { # NAME EXCHANGES h2load-args...
  local name=$1 n=$2; shift 2
  local t0 t1 out
  rm -f "$WORK/h2load.log"
  t0=$(cpu_ticks)
  read -r l0 a0 o0 < <(thread_ticks)
  out=$(h2load "$@" --log-file="$WORK/h2load.log" -d "$WORK/body" -H 'content-type: application/x-www-form-urlencoded' 2>&1)
  t1=$(cpu_ticks)
  read -r l1 a1 o1 < <(thread_ticks)
  SHARES+=("$name $((l1 - l0)) $((a1 - a0)) $((o1 - o0))")
  local rps ok errs
  rps=$(awk '/^finished in/{gsub(",","",$4); print $4}' <<<"$out")
  ok=$(awk '$2==200' "$WORK/h2load.log" | wc -l)
  errs=$((n - ok))
  # per-request latency (µs) is the 3rd column of h2load's log
  read -r p50 p99 < <(awk '{print $3}' "$WORK/h2load.log" | sort -n | awk '{a[NR]=$1} END{printf "%.2f %.2f\n", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}')
  local cpu
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$ok" 'BEGIN{ if (n == 0) print 0; else printf "%.1f", d * 1e6 / hz / n }')
  RESULTS+=("$name ${rps%.*} $cpu $p50 $p99 $errs")
}
RESULTS=() SHARES=()

# BENCH_PERF=FILE records a CPU profile of the broker during h2c-reuse (perf record -g)
[ -n "${BENCH_PERF:-}" ] && { perf record ${BENCH_PERF_ARGS:--g} -o "$BENCH_PERF" -p "$BPID" >/dev/null 2>&1 & PERFPID=$!; sleep 0.5; }
run h2c-reuse "$N" -n "$N" -c 8 -m 16 "$BROKER_URL/v1/token"
[ -n "${BENCH_PERF:-}" ] && { kill -INT "$PERFPID"; wait "$PERFPID" 2>/dev/null || true; }
[ -n "${BENCH_PERF_TLS:-}" ] && { perf record -g -o "$BENCH_PERF_TLS" -p "$BPID" >/dev/null 2>&1 & PERFPID=$!; sleep 0.5; }
run tls-new "$NTLS" -n "$NTLS" -c "$NTLS" -m 1 "https://127.0.0.1:$TLS_PORT/v1/token"
[ -n "${BENCH_PERF_TLS:-}" ] && { kill -INT "$PERFPID"; wait "$PERFPID" 2>/dev/null || true; }
read -r rsa_v2 ec_s2 < <(floor_once)
rsa_v=$(awk -v a="$rsa_v" -v b="$rsa_v2" 'BEGIN{print (a + b) / 2}')
ec_s=$(awk -v a="$ec_s" -v b="$ec_s2" 'BEGIN{print (a + b) / 2}')
FLOOR=$(awk -v a="$rsa_v" -v b="$ec_s" 'BEGIN{printf "%.1f", 1e6/a + 1e6/b}')
for r in "${RESULTS[@]}"; do
  read -r name rps cpu p50 p99 errs <<<"$r"
  ratio=$(awk -v c="$cpu" -v f="$FLOOR" 'BEGIN{printf "%.2f", c / f}')
  echo "bench: scenario=$name exchanges_per_s=$rps cpu_us_per_exchange=$cpu floor_us=$FLOOR ratio=$ratio p50_ms=$p50 p99_ms=$p99 errors=$errs"
done
for r in "${SHARES[@]}"; do  # where the broker's CPU went, by thread
  read -r name l a o <<<"$r"
  awk -v n="$name" -v l="$l" -v a="$a" -v o="$o" 'BEGIN { t = l + a + o; if (t > 0)
    printf "bench: cpu_by_thread scenario=%s loops=%.0f%% audit_writer=%.0f%% other=%.0f%%\n", n, 100*l/t, 100*a/t, 100*o/t }'
done
resumed=$(
  sleep 1 | openssl s_client -connect "127.0.0.1:$TLS_PORT" -CAfile "$WORK/tls/ca.pem" -sess_out "$WORK/sess" >/dev/null 2>&1
  openssl s_client -connect "127.0.0.1:$TLS_PORT" -CAfile "$WORK/tls/ca.pem" -sess_in "$WORK/sess" </dev/null 2>/dev/null | grep -c '^Reused')
echo "bench: tls_session_resumption=$([ "$resumed" -ge 1 ] && echo supported || echo no)"

# Where the floor stands inside the broker: a second broker with BROKER_PROFILE_CRYPTO=1 (thread
# CPU time around EVP_PKEY_verify and EVP_PKEY_sign, exported on /metrics) serves the same load;
# its figures are not part of the scenarios above (the profiling itself costs system calls).
broker_stop "$BPID"
BPID=
BROKER_ISSUER_OVERRIDE=$BROKER_URL BROKER_PROFILE_CRYPTO=1 broker_start bench-prof # the token's audience
BPID=$BROKER_PID
h2load -n 200 -c 2 -m 4 -d "$WORK/body" -H 'content-type: application/x-www-form-urlencoded' "$BROKER_URL/v1/token" >/dev/null
prof() { curl -fsS "$BROKER_URL/metrics" | awk '/^broker_crypto_(cpu_seconds|ops)_total/{print $1, $2}'; }
p0=$(prof)
h2load -n "$((N / 3))" -c 8 -m 16 -d "$WORK/body" -H 'content-type: application/x-www-form-urlencoded' "$BROKER_URL/v1/token" >/dev/null
p1=$(prof)
awk -v rsa="$rsa_v" -v ec="$ec_s" -v a="$p0" -v b="$p1" 'BEGIN {
  n = split(a, x, "\n"); for (i = 1; i <= n; i++) { split(x[i], f, " "); v0[f[1]] = f[2] }
  n = split(b, x, "\n"); for (i = 1; i <= n; i++) { split(x[i], f, " "); v1[f[1]] = f[2] }
  vs = v1["broker_crypto_cpu_seconds_total{op=\"verify\"}"] - v0["broker_crypto_cpu_seconds_total{op=\"verify\"}"]
  vn = v1["broker_crypto_ops_total{op=\"verify\"}"] - v0["broker_crypto_ops_total{op=\"verify\"}"]
  ss = v1["broker_crypto_cpu_seconds_total{op=\"sign\"}"] - v0["broker_crypto_cpu_seconds_total{op=\"sign\"}"]
  sn = v1["broker_crypto_ops_total{op=\"sign\"}"] - v0["broker_crypto_ops_total{op=\"sign\"}"]
  if (vn == 0 || sn == 0) { print "bench: crypto_in_process unavailable"; exit }
  iv = vs * 1e6 / vn; is = ss * 1e6 / sn; fv = 1e6 / rsa; fs = 1e6 / ec
  printf "bench: crypto_in_process verify_us=%.1f sign_us=%.1f floor_verify_us=%.1f floor_sign_us=%.1f in_process_over_floor=%.2f\n", iv, is, fv, fs, (iv + is) / (fv + fs)
}'
