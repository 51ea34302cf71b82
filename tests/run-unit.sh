#!/usr/bin/env bash
# Runs each cmocka unit-test binary (TAP output) and prints one summary line.
set -u
pass=0; fail=0; failed_bins=()
for bin in "$@"; do
  out=$(CMOCKA_MESSAGE_OUTPUT=TAP "$bin" 2>&1); rc=$?
  p=$(grep -c '^ok ' <<<"$out"); f=$(grep -c '^not ok ' <<<"$out")
  pass=$((pass + p)); fail=$((fail + f))
  if [ $rc -ne 0 ] || [ "$f" -gt 0 ] || [ "$p" -eq 0 ]; then
    [ "$f" -eq 0 ] && fail=$((fail + 1))
    failed_bins+=("$bin"); echo "$out" | grep -v '^ok ' | head -40
  fi
  echo "unit: $(basename "$bin"): $p passed, $f failed"
done
echo "unit: $pass passed, $fail failed"
[ $fail -eq 0 ]
