#!/bin/bash
# The command line: bad input gets one clear line and a non-zero status; the
# program's status, stdout and stderr are preserved; options do what they say.
set -u
. "$(dirname "$0")/lib/common.sh"
P=$WORK/behave
gcc -O1 -g -pthread -o "$P" "$ROOT/tests/progs/behave.c" || { echo "SUITE 0 1"; exit 0; }
begin "death by a signal: a report as valgrind gives one, and the same death"
F=$WORK/fatal
gcc -O0 -g -pthread -o "$F" "$ROOT/tests/progs/fatal.c"
# valgrind's numbers for the same death (it reports on a fatal signal too)
end
begin "a stack overflow, in main or a thread: a report, as valgrind gives one, from the agent's alternate stack"
# The kernel cannot put a handler's frame on a stack that just overflowed:
# without an alternate stack the process died with no report. ownalt: the
# program's own alternate stack (16 KiB) is too small for the report, which
# moves to the agent's; ownalt-segv: the same for an ordinary fault;
# thread-overflow: a thread of 256 KiB runs into its guard page.
recline=$(grep -n 'return recurse(n + 1)' "$ROOT/tests/progs/fatal.c" | cut -d: -f1)
{ (ulimit -c 0; exec valgrind --leak-check=full "$F" overflow >/dev/null 2>"$WORK/vg"); } 2>/dev/null
vdef=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$WORK/vg" | tr -d ,)
vreach=$(sed -n 's/.*still reachable: \([0-9,]*\) bytes.*/\1/p' "$WORK/vg" | tr -d ,)
expect_eq "valgrind: a stack overflow" 1 "$(grep -c -m1 'Stack overflow in thread' "$WORK/vg")"
expect_eq "valgrind's still reachable (with the block main's frame holds)" 120 "$vreach"
for mode in overflow ownalt ownalt-segv thread-overflow; do
  { (ulimit -c 0; exec "$HS" run --report="$WORK/so.json" -- "$F" $mode >"$WORK/o" 2>"$WORK/e"); } 2>/dev/null
  rc=$?
  expect_eq "$mode: status" 139 "$rc"
  expect_match "$mode: what it died of" "Process terminating with default action of signal 11 \\(SIGSEGV\\)" "$(cat "$WORK/e")"
  expect_eq "$mode: definitely lost, as valgrind" "$vdef" "$(jq .summary.definitely_lost.bytes "$WORK/so.json")"
  if [ $mode = ownalt-segv ]; then
    expect_eq "$mode: not an overflow" "null main" "$(jq -r '"\(.stack_overflow) \(.signal_stack[0].function)"' "$WORK/so.json")"
    grep -q "Stack overflow" "$WORK/e" && fail "$mode: called a stack overflow"
    continue
  fi
  expect_eq "$mode: still reachable, as valgrind (the overflowed stack is scanned)" "$vreach" "$(jq .summary.still_reachable.bytes "$WORK/so.json")"
  where=" \\(main\\)"; [ $mode = thread-overflow ] && where=""
  expect_match "$mode: the overflow" "^==[0-9]+== Stack overflow in thread [0-9]+$where: can't grow stack to 0x" "$(cat "$WORK/e")"
  expect_eq "$mode: in the JSON report" "true 11 recurse $recline" \
    "$(jq -r '"\(.stack_overflow) \(.signal) \(.signal_stack[1].function) \(.signal_stack[1].line)"' "$WORK/so.json")"
  expect_match "$mode: the recursion, once and counted" "^==[0-9]+==    \\.\\.\\. [0-9]+ more calls from the same place$" "$(cat "$WORK/e")"
  expect_eq "$mode: stdout as without heapscope" "recursing" "$(cat "$WORK/o")"
done
end
begin "signal dispositions: the program sees its own, a signal ignored at start stays ignored"
"$F" view >"$WORK/alone" 2>/dev/null; arc=$?
"$HS" run --report="$WORK/v.json" -- "$F" view >"$WORK/o" 2>"$WORK/e"; rc=$?
expect_eq "status, its own handler's exit(3)" "$arc" "$rc"
expect_eq "stdout as without heapscope" "$(cat "$WORK/alone")" "$(cat "$WORK/o")"
expect_eq "what it saw" "alternate stack: none|start DFL flags 0|signal returned DFL|now noop|back returned noop|default kept its mask 1 and flags 1|SIGTERM was DFL|own SIGTERM handler ran" "$(paste -sd'|' "$WORK/o")"
expect_eq "its exit reported the leak" 100 "$(jq .summary.definitely_lost.bytes "$WORK/v.json")"
grep -q "Process terminating" "$WORK/e" && fail "a handled signal is not a death"
# a vfork child that dies of a signal before it execs shares the parent's
# memory: the parent's own report stays an ordinary exit's
"$HS" run --report="$WORK/vf.json" -- "$F" vfork >"$WORK/o" 2>"$WORK/e"; rc=$?
expect_eq "vfork: status" 0 "$rc"
expect_eq "vfork: stdout" "child: signal 15" "$(cat "$WORK/o")"
expect_eq "vfork: the parent's report has no signal" "0 null 100" \
  "$(jq -r '"\(.exit_status) \(.signal) \(.summary.definitely_lost.bytes)"' "$WORK/vf.json")"
# a background job of a shell without job control starts with SIGINT ignored
"$HS" run -- "$F" ignored >"$WORK/o" 2>"$WORK/e" &
wait $!; rc=$?
expect_eq "ignored: status" 0 "$rc"
expect_eq "ignored: what it saw" "SIGINT at start: IGN|still running" "$(paste -sd'|' "$WORK/o")"
end
echo "SUITE $PASS $FAIL"
