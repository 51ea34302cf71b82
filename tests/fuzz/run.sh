#!/usr/bin/env bash
# Builds and runs libFuzzer targets: tests/fuzz/run.sh tests/fuzz/fuzz_*.c
# Each target names the broker sources it needs on a "// SOURCES:" line at its top, and may add
# libraries for the link line on a "// LIBS:" line (e.g. "// LIBS: -lcurl"). Targets are
# built with clang -fsanitize=fuzzer,address,undefined into build-fuzz/ and run for
# ${FUZZ_SECONDS:-20} s each on a scratch copy of tests/fuzz/corpus/NAME (seeds are read only).
# Any crash, sanitizer report, leak, timeout or out-of-memory fails that target.
set -u
cd "$(dirname "$0")/../.." || exit 2
secs=${FUZZ_SECONDS:-20}
out=build-fuzz
CC=${FUZZ_CC:-clang}
mkdir -p "$out"
pass=0; fail=0
# shellcheck disable=SC2207
pkg=($(pkg-config --cflags --libs openssl jansson))
for src in "$@"; do
  base=$(basename "$src" .c)
  name=${base#fuzz_}
  sources=$(sed -n '1,5s|^// SOURCES:||p' "$src" | head -n1)
  if [ -z "$sources" ]; then
    echo "fuzz: $name FAILED (no // SOURCES: line in $src)"; fail=$((fail + 1)); continue
  fi
  libs=$(sed -n '1,5s|^// LIBS:||p' "$src" | head -n1)
  bin=$out/$base
  # shellcheck disable=SC2086
  if ! "$CC" -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -fno-omit-frame-pointer \
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -iquote broker \
       -o "$bin" "$src" $sources "${pkg[@]}" $libs >"$out/$base.build.log" 2>&1; then
    echo "fuzz: $name FAILED (build, see $out/$base.build.log)"; cat "$out/$base.build.log" | head -20
    fail=$((fail + 1)); continue
  fi
  work=$out/corpus-$name
  mkdir -p "$work"
  seeds=tests/fuzz/corpus/$name
  [ -d "$seeds" ] || seeds=
  log=$out/$base.log
  # shellcheck disable=SC2086
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" -max_total_time="$secs" -max_len=20000 -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
           -artifact_prefix="$out/$base-" "$work" $seeds >"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    echo "fuzz: $name ok"
    echo "  ($name: ${runs:-?} inputs in ${secs}s, corpus $(ls "$work" | wc -l) files)"
  else
    echo "fuzz: $name FAILED (rc $rc, see $log)"
    grep -E 'ERROR|runtime error|SUMMARY|artifact' "$log" | head -20
    fail=$((fail + 1))
    continue
  fi
  pass=$((pass + 1))
done
echo "fuzz: $pass passed, $fail failed"
[ $fail -eq 0 ]
