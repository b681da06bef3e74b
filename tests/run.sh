#!/bin/bash
# The whole suite: unit tests (cmocka), then the end-to-end suites. Ends with
# the line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
. tests/lib/common.sh
export WORK PASS FAIL
total_pass=0
total_fail=0
for suite in tests/unit.sh tests/corpus.sh tests/cli.sh tests/programs.sh tests/profiles.sh tests/threads.sh tests/fuzz.sh; do
  echo "== $suite"
  out=$(mktemp)
  PASS=0 FAIL=0 bash "$suite" | tee "$out"
  p=$(sed -n 's/^SUITE \([0-9]*\) \([0-9]*\)$/\1/p' "$out" | tail -1)
  f=$(sed -n 's/^SUITE \([0-9]*\) \([0-9]*\)$/\2/p' "$out" | tail -1)
  if [ -z "$p" ]; then
    echo "FAIL: $suite did not finish"
    p=0
    f=1
  fi
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  rm -f "$out"
done
if [ -s "$WORK/hangs.log" ]; then
  echo "== runs that reached their timeout (tests/lib/common.sh, with_timeout):"
  cat "$WORK/hangs.log"
fi
rm -rf "$WORK"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
