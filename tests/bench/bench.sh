#!/usr/bin/env bash
# `make bench`: POST /v1/token under h2load on loopback, audit on (real PostgreSQL, fsync on).
# One line per scenario:
#   bench: scenario=NAME exchanges_per_s=N cpu_us_per_exchange=N floor_us=N ratio=N p50_ms=N p99_ms=N errors=N
# cpu_us_per_exchange: the broker process's user+system CPU / exchanges (from /proc/PID/stat).
# floor_us: one RSA-2048 verify + one P-256 sign, measured by `openssl speed` in this run, around
# the scenario's slices (see floor_sample below).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=${1:-$ROOT/build/broker}
N=${BENCH_N:-30000}            # exchanges for h2c-reuse, in BENCH_SLICES (4) slices
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
# drifts by ±10-20 % from minute to minute, and the broker's CPU per exchange drifts with it, so
# the scenarios run in slices with a floor sample before and after each one: F S F S F ... F.
# A scenario's floor is the mean of the samples around its slices; its CPU, exchanges and
# latencies are summed over its slices.
floor_once() { # prints "verify_us sign_us"
  local speed
  speed=$(openssl speed -seconds 1 rsa2048 ecdsap256 2>/dev/null)
  awk '/^rsa 2048 bits/{v=$7} /256 bits ecdsa \(nistp256\)/{s=$7} END{printf "%.3f %.3f\n", 1e6 / v, 1e6 / s}' <<<"$speed"
}
FLOOR_V=() FLOOR_S=()
floor_sample() { local v s; read -r v s < <(floor_once); FLOOR_V+=("$v"); FLOOR_S+=("$s"); }
floor_mean() { # FIRST LAST (sample indexes): prints "verify_us sign_us" over FLOOR_V/FLOOR_S[FIRST..LAST]
  local i v=0 s=0
  for ((i = $1; i <= $2; i++)); do v="$v + ${FLOOR_V[i]}"; s="$s + ${FLOOR_S[i]}"; done
  awk -v n=$(($2 - $1 + 1)) "BEGIN{printf \"%.3f %.3f\\n\", ($v) / n, ($s) / n}"
}

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

# slice NAME EXCHANGES h2load-args...: one h2load run; appends "ticks ok n seconds loop audit other"
# to $WORK/NAME.acc and its per-request log to $WORK/NAME.log
slice() {
  local name=$1 n=$2; shift 2
  local t0 t1 out rps ok
  rm -f "$WORK/h2load.log"
  t0=$(cpu_ticks)
  read -r l0 a0 o0 < <(thread_ticks)
  out=$(h2load "$@" --log-file="$WORK/h2load.log" -d "$WORK/body" -H 'content-type: application/x-www-form-urlencoded' 2>&1)
  t1=$(cpu_ticks)
  read -r l1 a1 o1 < <(thread_ticks)
  rps=$(awk '/^finished in/{gsub(",","",$4); print $4}' <<<"$out")
  ok=$(awk '$2==200' "$WORK/h2load.log" | wc -l)
  cat "$WORK/h2load.log" >>"$WORK/$name.log"
  echo "$((t1 - t0)) $ok $n $(awk -v n="$n" -v r="$rps" 'BEGIN{print (r > 0) ? n / r : 0}') $((l1 - l0)) $((a1 - a0)) $((o1 - o0))" >>"$WORK/$name.acc"
}

# report NAME FLOOR_FIRST FLOOR_LAST: the scenario's line
report() {
  local name=$1 fv fs p50 p99
  read -r fv fs < <(floor_mean "$2" "$3")
  # per-request latency (µs) is the 3rd column of h2load's log
  read -r p50 p99 < <(awk '{print $3}' "$WORK/$name.log" | sort -n | awk '{a[NR]=$1} END{printf "%.2f %.2f\n", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}')
  awk -v name="$name" -v hz="$HZ" -v floor="$(awk -v a="$fv" -v b="$fs" 'BEGIN{print a + b}')" -v p50="$p50" -v p99="$p99" '
    { t += $1; ok += $2; n += $3; sec += $4 }
    END { cpu = ok ? t * 1e6 / hz / ok : 0
      printf "bench: scenario=%s exchanges_per_s=%d cpu_us_per_exchange=%.1f floor_us=%.1f ratio=%.2f p50_ms=%s p99_ms=%s errors=%d\n",
        name, sec ? ok / sec : 0, cpu, floor, cpu / floor, p50, p99, n - ok }' "$WORK/$name.acc"
}
shares() { # NAME: where the scenario's broker CPU went, by thread
  awk -v name="$1" '{ l += $5; a += $6; o += $7 } END { t = l + a + o; if (t > 0)
    printf "bench: cpu_by_thread scenario=%s loops=%.0f%% audit_writer=%.0f%% other=%.0f%%\n", name, 100*l/t, 100*a/t, 100*o/t }' "$WORK/$1.acc"
}

SLICES=${BENCH_SLICES:-4}
# BENCH_PERF=FILE records a CPU profile of the broker during h2c-reuse (perf record -g)
[ -n "${BENCH_PERF:-}" ] && { perf record ${BENCH_PERF_ARGS:--g} -o "$BENCH_PERF" -p "$BPID" >/dev/null 2>&1 & PERFPID=$!; sleep 0.5; }
sigs() { curl -fsS "$BROKER_URL/metrics" | awk '/^broker_signatures_total\{mode="batch"\}/{b=$2} /^broker_signatures_total\{mode="alone"\}/{a=$2} /^broker_signature_batches_total/{n=$2} END{print b + 0, a + 0, n + 0}'; }
read -r sb0 sa0 sn0 < <(sigs)
floor_sample
for ((k = 0; k < SLICES; k++)); do
  slice h2c-reuse "$((N / SLICES))" -n "$((N / SLICES))" -c 8 -m 16 "$BROKER_URL/v1/token"
  floor_sample
done
[ -n "${BENCH_PERF:-}" ] && { kill -INT "$PERFPID"; wait "$PERFPID" 2>/dev/null || true; }
read -r sb1 sa1 sn1 < <(sigs)
[ -n "${BENCH_PERF_TLS:-}" ] && { perf record -g -o "$BENCH_PERF_TLS" -p "$BPID" >/dev/null 2>&1 & PERFPID=$!; sleep 0.5; }
slice tls-new "$NTLS" -n "$NTLS" -c "$NTLS" -m 1 "https://127.0.0.1:$TLS_PORT/v1/token"
[ -n "${BENCH_PERF_TLS:-}" ] && { kill -INT "$PERFPID"; wait "$PERFPID" 2>/dev/null || true; }
floor_sample
report h2c-reuse 0 "$SLICES"
report tls-new "$SLICES" "$((SLICES + 1))"
shares h2c-reuse
shares tls-new
# how the h2c-reuse tokens were signed: together with their loop iteration's others, or alone
awk -v b=$((sb1 - sb0)) -v a=$((sa1 - sa0)) -v n=$((sn1 - sn0)) 'BEGIN { if (a + b > 0)
  printf "bench: signatures scenario=h2c-reuse in_batches=%d/%d mean_batch=%.1f\n", b, a + b, n ? b / n : 0 }'
# the floor samples themselves, in order: how much the machine drifted during this run
awk -v v="${FLOOR_V[*]}" -v s="${FLOOR_S[*]}" 'BEGIN { n = split(v, a, " "); split(s, b, " "); lo = hi = a[1] + b[1]
  for (i = 1; i <= n; i++) { f = a[i] + b[i]; lst = lst sprintf("%s%.1f", i > 1 ? "," : "", f); if (f < lo) lo = f; if (f > hi) hi = f }
  printf "bench: floor_samples_us=%s spread=%.0f%%\n", lst, 100 * (hi - lo) / lo }'
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
read -r all_v all_s < <(floor_mean 0 $((${#FLOOR_V[@]} - 1)))
awk -v fv="$all_v" -v fs="$all_s" -v a="$p0" -v b="$p1" 'BEGIN {
  n = split(a, x, "\n"); for (i = 1; i <= n; i++) { split(x[i], f, " "); v0[f[1]] = f[2] }
  n = split(b, x, "\n"); for (i = 1; i <= n; i++) { split(x[i], f, " "); v1[f[1]] = f[2] }
  vs = v1["broker_crypto_cpu_seconds_total{op=\"verify\"}"] - v0["broker_crypto_cpu_seconds_total{op=\"verify\"}"]
  vn = v1["broker_crypto_ops_total{op=\"verify\"}"] - v0["broker_crypto_ops_total{op=\"verify\"}"]
  ss = v1["broker_crypto_cpu_seconds_total{op=\"sign\"}"] - v0["broker_crypto_cpu_seconds_total{op=\"sign\"}"]
  sn = v1["broker_crypto_ops_total{op=\"sign\"}"] - v0["broker_crypto_ops_total{op=\"sign\"}"]
  if (vn == 0 || sn == 0) { print "bench: crypto_in_process unavailable"; exit }
  iv = vs * 1e6 / vn; is = ss * 1e6 / sn
  printf "bench: crypto_in_process verify_us=%.1f sign_us=%.1f floor_verify_us=%.1f floor_sign_us=%.1f in_process_over_floor=%.2f\n", iv, is, fv, fs, (iv + is) / (fv + fs)
}'
