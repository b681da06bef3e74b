#!/bin/bash
# Unit tests (cmocka), built with ASan/UBSan except the agent's allocator
# hooks, which must not sit under ASan's own malloc.
set -u
. "$(dirname "$0")/lib/common.sh"
bin=$WORK/test_units
begin "unit tests build"
gcc -std=gnu11 -O1 -g -Wall -Wextra -Werror -pthread -I/usr/include/x86_64-linux-gnu -DHS_UNIT_TEST -fsanitize=undefined \
  -fno-sanitize-recover=undefined -o "$bin" "$ROOT/tests/unit/test_units.c" \
  $(ls "$ROOT"/src/agent/*.c | grep -v agent/agent.c) "$ROOT/src/report/suppress.c" "$ROOT/src/report/buf.c" \
  -lcmocka -lunwind -ldl -lm || fail "does not build"
end
out=$(T=120 with_timeout "$bin" 2>&1)
echo "$out"
p=$(printf '%s\n' "$out" | grep -c '^\[       OK \]')
f=$(printf '%s\n' "$out" | grep -c '^\[  FAILED  \]')
r=$(printf '%s\n' "$out" | grep -c '^\[ RUN      \]')
PASS=$((PASS + p))
FAIL=$((FAIL + f + r - p - f))
echo "SUITE $PASS $FAIL"
