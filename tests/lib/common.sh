# Shared helpers for the shell test suites: counters, assertions that print
# both values, and a per-test timeout. Sourced by tests/*.sh.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
HS=${HS:-$BUILD/asan/heapscope}   # the CLI runs under ASan/UBSan in tests
[ -x "$HS" ] || HS=$BUILD/heapscope
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
WORK=${WORK:-$(mktemp -d /tmp/heapscope-test.XXXXXX)}
PASS=${PASS:-0}
FAIL=${FAIL:-0}
CUR=""

begin() { CUR="$1"; CUR_FAILED=0; }
fail() {
  echo "FAIL: $CUR: $*"
  CUR_FAILED=1
}
end() {
  if [ "$CUR_FAILED" = 0 ]; then
    PASS=$((PASS + 1))
    echo "ok: $CUR"
  else
    FAIL=$((FAIL + 1))
  fi
}
# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}
expect_match() { # WHAT REGEX TEXT
  printf '%s' "$3" | grep -Eq -- "$2" || fail "$1: '$2' not found in: $(printf '%s' "$3" | head -c 600)"
}
# runs a command with a timeout; T seconds (default 120)
with_timeout() {
  t=${T:-120}
  timeout -k 5 "$t" "$@"
}
