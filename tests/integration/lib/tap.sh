# shellcheck shell=bash
# Minimal test bookkeeping for the integration suite. Source it; call t_ok / t_fail / t_check;
# t_summary prints "integration: N passed, N failed" and returns non-zero on any failure.
T_PASS=0
T_FAIL=0
T_FAILED=()

t_ok() { T_PASS=$((T_PASS + 1)); echo "ok - $1"; }
t_fail() {
  T_FAIL=$((T_FAIL + 1)); T_FAILED+=("$1")
  echo "not ok - $1"
  shift
  [ $# -gt 0 ] && printf '#   %s\n' "$@"
  return 0
}
# t_check NAME CMD...: passes when CMD exits 0
t_check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then t_ok "$name"; else t_fail "$name" "$(echo "$out" | tail -5)"; fi
}
# t_eq NAME EXPECTED ACTUAL
t_eq() {
  if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "expected: $2" "actual:   $3"; fi
}
# t_match NAME REGEX ACTUAL
t_match() {
  if [[ $3 =~ $2 ]]; then t_ok "$1"; else t_fail "$1" "expected to match: $2" "actual: ${3:0:400}"; fi
}
t_summary() {
  local label=${1:-integration}
  if [ $T_FAIL -gt 0 ]; then printf 'failed: %s\n' "${T_FAILED[@]}"; fi
  echo "$label: $T_PASS passed, $T_FAIL failed"
  [ $T_FAIL -eq 0 ]
}
