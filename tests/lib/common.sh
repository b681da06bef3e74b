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
# A run that reaches its timeout has hung: shortly before, a watchdog writes
# what every process under it is doing (each thread's state, kernel wait and
# stack) to $WORK/hangs.log, which tests/run.sh prints at the end. A hang
# too rare to reproduce by hand is then explained by the run that had it.
with_timeout() {
  local t=${T:-120} me=$BASHPID wd rc
  (
    trap 'kill "$s" 2>/dev/null; wait "$s"; exit 0' TERM
    sleep "$((t > 4 ? t - 2 : t))" &
    s=$!
    wait "$s" && hang_dump "$me" "$BASHPID" "$*" >>"$WORK/hangs.log" 2>&1
  ) </dev/null >/dev/null 2>&1 &
  wd=$!
  timeout -k 5 "$t" "$@"
  rc=$?
  kill "$wd" 2>/dev/null
  return $rc
}
# hang_dump PID WATCHDOG WHAT: the processes under PID but outside the
# watchdog's own subshell, thread by thread.
hang_dump() {
  local p t
  echo "== hang: $CUR: $3"
  for p in $(descendants "$1" "$2"); do
    echo "-- pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | head -c 300)"
    for t in /proc/"$p"/task/*; do
      echo "   task ${t##*/}: $(cut -d' ' -f2,3 "$t/stat" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null) syscall=$(cut -d' ' -f1 "$t/syscall" 2>/dev/null)"
    done
    if command -v gdb >/dev/null; then
      timeout 30 gdb -p "$p" -batch -nx -ex 'thread apply all bt' 2>&1 | grep -E '^(Thread|#)' | head -200
    elif command -v eu-stack >/dev/null; then
      timeout 30 eu-stack -p "$p" 2>&1 | head -200
    fi
  done
}
descendants() { # PID EXCEPT
  local c
  for c in $(pgrep -P "$1"); do
    [ "$c" = "$2" ] && continue
    echo "$c"
    descendants "$c" "$2"
  done
}
