#!/bin/bash
# The command line: bad input gets one clear line and a non-zero status; the
# program's status, stdout and stderr are preserved; options do what they say.
set -u
. "$(dirname "$0")/lib/common.sh"
P=$WORK/behave
gcc -O1 -g -pthread -o "$P" "$ROOT/tests/progs/behave.c" || { echo "SUITE 0 1"; exit 0; }

one_error_line() { # WHAT STDERR_FILE
  n=$(wc -l <"$2")
  expect_eq "$1: lines on stderr" 1 "$n"
  expect_match "$1: message" '^heapscope: error: ' "$(cat "$2")"
}

begin "unknown option"
"$HS" run --no-such-option -- "$P" clean >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status" 2 "$rc"; one_error_line "unknown option" "$WORK/e"
end

begin "bad option value"
"$HS" run --leak-check=maybe -- "$P" clean >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status" 2 "$rc"; one_error_line "bad value" "$WORK/e"
end

begin "missing program"
"$HS" run -- /no/such/program >/dev/null 2>"$WORK/e"; rc=$?
[ "$rc" -ne 0 ] || fail "status 0"
one_error_line "missing program" "$WORK/e"
"$HS" run -- no-such-program-anywhere >/dev/null 2>"$WORK/e"; rc=$?
[ "$rc" -ne 0 ] || fail "status 0 (PATH lookup)"
one_error_line "missing program on PATH" "$WORK/e"
end

begin "no program"
"$HS" run --leak-check=full >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status" 2 "$rc"; one_error_line "no program" "$WORK/e"
end

begin "unreadable suppression file"
"$HS" run --suppressions=/no/such.supp -- "$P" clean >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status" 2 "$rc"; one_error_line "missing supp" "$WORK/e"
printf 'leak:ok\nbogus line\n' >"$WORK/bad.supp"
"$HS" run --suppressions="$WORK/bad.supp" -- "$P" clean >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status (malformed)" 2 "$rc"; one_error_line "malformed supp" "$WORK/e"
expect_match "names file and line" 'bad.supp:2' "$(cat "$WORK/e")"
end

begin "report path that cannot be written"
"$HS" run --report=/no/such/dir/r.json -- "$P" clean >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status" 2 "$rc"; one_error_line "bad report dir" "$WORK/e"
"$HS" run --report="$WORK" -- "$P" clean >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status (directory)" 2 "$rc"; one_error_line "report is a dir" "$WORK/e"
end

begin "unknown command and usage"
"$HS" frobnicate >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status" 2 "$rc"; one_error_line "unknown command" "$WORK/e"
"$HS" >/dev/null 2>&1; expect_eq "no arguments" 2 "$?"
"$HS" run --help | grep -q -- '--show-leak-kinds' || fail "run --help lacks options"
end

begin "program status, stdout and stderr preserved"
"$P" out >"$WORK/o.plain" 2>"$WORK/e.plain"; want=$?
"$HS" run -- "$P" out >"$WORK/o.hs" 2>"$WORK/e.hs"; rc=$?
expect_eq "status" "$want" "$rc"
cmp -s "$WORK/o.plain" "$WORK/o.hs" || fail "stdout differs"
expect_eq "program's stderr first, unchanged" "$(cat "$WORK/e.plain")" "$(head -2 "$WORK/e.hs")"
expect_match "report follows" 'definitely lost: 123 bytes in 1 blocks' "$(cat "$WORK/e.hs")"
end

# The report's stderr is a pipe whose reader has gone (prog 2>&1 | head -1):
# the report's write raised SIGPIPE and the program died of it (status 141)
# where alone it exits 0. Both the leak report and a warning are written.
begin "the report into a pipe nobody reads: the program's status is its own"
T=30 with_timeout "$HS" run -- /bin/sleep 0.3 2>&1 | true
expect_eq "status with the report" 0 "${PIPESTATUS[0]}"
HEAPSCOPE_OPTIONS=check_timing=1 T=30 with_timeout "$HS" run --leak-check=full -- /bin/sleep 0.3 2>&1 | true
expect_eq "status with warnings and the report" 0 "${PIPESTATUS[0]}"
end
begin "--error-exitcode"
"$HS" run --error-exitcode=9 -- "$P" out >/dev/null 2>&1; expect_eq "with leaks" 9 "$?"
"$HS" run --error-exitcode=9 -- "$P" clean >/dev/null 2>&1; expect_eq "without leaks" 0 "$?"
"$HS" run --error-exitcode=9 --show-leak-kinds=reachable -- "$P" out >/dev/null 2>&1
expect_eq "leaks of kinds not shown" 7 "$?"
end

begin "run execs the program in its own place: same pid, no parent left"
"$HS" run --leak-check=no -- /bin/sh -c 'echo $$; echo $PPID' >"$WORK/pid" 2>/dev/null &
p=$!
wait $p
expect_eq "the program's pid is run's" "$p" "$(sed -n 1p "$WORK/pid")"
expect_eq "its parent is run's parent (this shell)" "$$" "$(sed -n 2p "$WORK/pid")"
end

begin "the report goes to the stderr the program started with"
# coreutils close stdout and stderr in an atexit handler, which runs before
# the agent's report: the report must still come out, as under valgrind.
"$HS" run -- "$P" closeerr >"$WORK/o" 2>"$WORK/e"; rc=$?
expect_eq "status (closeerr)" 0 "$rc"
expect_eq "stdout (closeerr)" closeerr "$(cat "$WORK/o")"
expect_match "report after stderr was closed" 'definitely lost: 31 bytes in 1 blocks' "$(cat "$WORK/e")"
expect_match "its stack" 'leak_here \(behave.c:' "$(cat "$WORK/e")"
"$HS" run -- "$P" nullerr >/dev/null 2>"$WORK/e"
expect_match "report when stderr points at /dev/null" 'definitely lost: 32 bytes in 1 blocks' "$(cat "$WORK/e")"
expect_eq "the program's own stderr line went to /dev/null" 0 "$(grep -c 'to /dev/null' "$WORK/e")"
"$HS" run -- "$P" closeall >/dev/null 2>"$WORK/e"
expect_match "report when the copy was closed (fd 2 still open)" 'definitely lost: 33 bytes in 1 blocks' "$(cat "$WORK/e")"
# neither fd 2 nor the copy is the first stderr: fd 2 is the program's own
# file now, and the report must not go into it
"$HS" run -- "$P" dataerr "$WORK/data" >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status (dataerr)" 0 "$rc"
expect_eq "the program's file holds its data only" data "$(cat "$WORK/data")"
"$HS" run -- ls / >/dev/null 2>"$WORK/e"
expect_match "ls (coreutils) reports" 'HEAP SUMMARY' "$(cat "$WORK/e")"
# close-on-exec: a program it execs does not inherit the copy
"$HS" run --follow-children=no -- sh -c 'ls /proc/self/fd; true' >"$WORK/o" 2>/dev/null
expect_eq "no copy inherited across exec" "" "$(awk '$1 >= 900' "$WORK/o")"
end

begin "_exit and death by signal"
"$HS" run --report="$WORK/x.json" -- "$P" _exit >"$WORK/o" 2>/dev/null; rc=$?
expect_eq "status" 4 "$rc"
expect_eq "leak seen at _exit" 77 "$(jq .summary.definitely_lost.bytes "$WORK/x.json")"
expect_eq "stdout as without heapscope" "" "$(cat "$WORK/o")"
"$HS" run -- "$P" signal >/dev/null 2>&1; rc=$?
expect_eq "killed by SIGTERM" 143 "$rc"
end

begin "death by a signal: a report as valgrind gives one, and the same death"
F=$WORK/fatal
gcc -O0 -g -pthread -o "$F" "$ROOT/tests/progs/fatal.c"
# valgrind's numbers for the same death (it reports on a fatal signal too)
{ (ulimit -c 0; exec valgrind --leak-check=full "$F" term >/dev/null 2>"$WORK/vg"); } 2>/dev/null
vdef=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$WORK/vg" | tr -d ,)
expect_eq "valgrind's definitely lost" 100 "$vdef"
line=$(grep -n 'malloc(100)' "$ROOT/tests/progs/fatal.c" | cut -d: -f1)
segvline=$(grep -n 'strcmp(mode, "segv")' "$ROOT/tests/progs/fatal.c" | cut -d: -f1)
for m in term:143:15 segv:139:11 abort:134:6 dfree:134:6 reraise:139:11 inhandler:139:11 altreraise:139:11; do
  mode=${m%%:*} rest=${m#*:}
  st=${rest%%:*} sig=${rest#*:}
  { (ulimit -c 0; exec "$HS" run --error-exitcode=9 --report="$WORK/f.json" -- "$F" $mode >"$WORK/o" 2>"$WORK/e"); } 2>/dev/null
  rc=$?
  expect_eq "$mode: status (not --error-exitcode's)" "$st" "$rc"
  expect_match "$mode: what it died of" "Process terminating with default action of signal $sig \\(SIG" "$(cat "$WORK/e")"
  expect_eq "$mode: definitely lost, as valgrind" "$vdef" "$(jq .summary.definitely_lost.bytes "$WORK/f.json")"
  expect_eq "$mode: still reachable" 50 "$(jq .summary.still_reachable.bytes "$WORK/f.json")"
  expect_eq "$mode: signal in the JSON report" "$sig" "$(jq .signal "$WORK/f.json")"
  expect_eq "$mode: exit_status in the JSON report" "$st" "$(jq .exit_status "$WORK/f.json")"
  expect_match "$mode: the record names the leak" "(at|by) 0x[0-9A-F]+: leak_some \\(fatal.c:$line\\)" "$(cat "$WORK/e")"
  expect_eq "$mode: main is on the stack where the signal found it" true "$(jq '[.signal_stack[].function] | index("main") != null' "$WORK/f.json")"
  if [ "$mode" = segv ]; then
    expect_match "segv: the address" "Access not within mapped region at address 0x2$" "$(cat "$WORK/e")"
    expect_match "segv: the faulting line, under it" "^==[0-9]+==    at 0x[0-9A-F]+: main \\(fatal.c:$segvline\\)$" \
      "$(grep -A1 'Access not within' "$WORK/e" | tail -1)"
    expect_eq "segv: the faulting line in the JSON report" "main $segvline" "$(jq -r '.signal_stack[0] | "\(.function) \(.line)"' "$WORK/f.json")"
  fi
  # a fault inside the program's own handler: the walk goes on through the signal frame
  [ $mode != inhandler ] || expect_eq "inhandler: the handler, then what it interrupted" "usr1_faults raise main" \
    "$(jq -r '[.signal_stack[].function | select(. == "usr1_faults" or . == "raise" or . == "main")] | join(" ")' "$WORK/f.json")"

  [ $mode != reraise ] || expect_eq "reraise: the program's crash handler ran first" "crash handler ran" "$(cat "$WORK/o")"
  # its handler ran on its alternate stack: the walk goes on from there
  # through the signal frame to the fault, on the thread's stack
  if [ $mode = altreraise ]; then
    expect_eq "altreraise: the program's crash handler ran first" "crash handler ran" "$(cat "$WORK/o")"
    expect_eq "altreraise: the handler's raise, then the fault" "raise crash_site main" \
      "$(jq -r '[.signal_stack[].function | select(. == "raise" or . == "crash_site" or . == "main")] | join(" ")' "$WORK/f.json")"
  fi
done
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
  rm -f "$WORK/so.json"
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

begin "death by a signal sent from outside, with a thread blocked: report, same death"
"$HS" run --report="$WORK/w.json" -- "$F" wait >"$WORK/o" 2>"$WORK/e" &
pid=$!
for _ in $(seq 100); do grep -q ready "$WORK/o" && break; sleep 0.1; done
kill -TERM "$pid"
wait "$pid"; rc=$?
expect_eq "status" 143 "$rc"
expect_eq "definitely lost" 100 "$(jq .summary.definitely_lost.bytes "$WORK/w.json")"
expect_eq "the blocked thread is in the report" "reader blocked read" "$(jq -r '.threads[] | "\(.start_routine) \(.state) \(.wait.syscall)"' "$WORK/w.json")"
end

begin "SIGTERM and SIGHUP while four threads allocate: a report every time, no hang"
for r in 1 2 3 4 5 6; do
  mode=full; [ $r -gt 4 ] && mode=sample
  sig=TERM st=143; [ $((r % 2)) = 0 ] && sig=HUP st=129
  T=60 with_timeout "$HS" run --mode=$mode -- "$F" busy >"$WORK/o" 2>"$WORK/e" &
  pid=$!
  for _ in $(seq 200); do grep -q ready "$WORK/o" && break; sleep 0.05; done
  sleep 0.$((r * 3 % 5))
  pkill -$sig -f "^$F busy"
  { wait "$pid"; } 2>/dev/null; rc=$?
  expect_eq "$mode $sig: status" "$st" "$rc"
  [ $mode = sample ] || expect_match "$mode $sig: the report" "LEAK SUMMARY" "$(cat "$WORK/e")"
done
end

begin "a signal every thread of the program blocks stays pending: the agent's threads do not take it"
PORT=$((20000 + RANDOM % 20000))
"$HS" run --http=127.0.0.1:$PORT -- "$F" blocked >"$WORK/o" 2>"$WORK/e" &
pid=$!
for _ in $(seq 100); do grep -q ready "$WORK/o" && grep -q "serving pprof" "$WORK/e" && break; sleep 0.1; done
kill -TERM "$pid"
wait "$pid"; rc=$?
expect_eq "status" 0 "$rc"
expect_eq "stdout" "ready|pending" "$(paste -sd'|' "$WORK/o")"
end

begin "signal dispositions: the program sees its own, a signal ignored at start stays ignored"
"$F" view >"$WORK/alone" 2>/dev/null; arc=$?
"$HS" run --report="$WORK/v.json" -- "$F" view >"$WORK/o" 2>"$WORK/e"; rc=$?
expect_eq "status, its own handler's exit(3)" "$arc" "$rc"
expect_eq "stdout as without heapscope" "$(cat "$WORK/alone")" "$(cat "$WORK/o")"
expect_eq "what it saw" "alternate stack: none|a thread's alternate stack: none|start DFL flags 0|signal returned DFL|now noop|back returned noop|default kept its mask 1 and flags 1|SIGTERM was DFL|own SIGTERM handler ran" "$(paste -sd'|' "$WORK/o")"
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

begin "threads still running at exit do not hang the agent"
T=30 with_timeout "$HS" run --report="$WORK/s.json" -- "$P" spin >/dev/null 2>"$WORK/e"; rc=$?
expect_eq "status" 0 "$rc"
expect_eq "leak found" 5 "$(jq .summary.definitely_lost.bytes "$WORK/s.json")"
end

begin "suppressions match function, file and module"
for pat in leak_here 'behave.c' '*/behave' '^leak_h*$'; do
  printf '# comment\n\nleak:%s\n' "$pat" >"$WORK/s.supp"
  "$HS" run --suppressions="$WORK/s.supp" --report="$WORK/r.json" -- "$P" out >/dev/null 2>&1
  expect_eq "$pat: definitely lost" 0 "$(jq .summary.definitely_lost.bytes "$WORK/r.json")"
  expect_eq "$pat: suppressed" 123 "$(jq .summary.suppressed.definitely_lost.bytes "$WORK/r.json")"
done
printf 'leak:^eak_here\n' >"$WORK/s.supp"
"$HS" run --suppressions="$WORK/s.supp" --report="$WORK/r.json" -- "$P" out >/dev/null 2>&1
expect_eq "anchored non-match" 123 "$(jq .summary.definitely_lost.bytes "$WORK/r.json")"
end

# A stripped program: no function names, but every frame names its module.
# libdw names a module's file only once it has opened it, which the first
# lookup in the module does: the first frame looked up had no module.
begin "a stripped C program: every frame names its module, and the report loads no C++ runtime"
printf '#include <stdlib.h>\nvoid *volatile g;\n__attribute__((noinline)) void f(void) { g = calloc(1, 192); g = 0; }\nint main(void) { f(); return 0; }\n' >"$WORK/strip.c"
gcc -O1 -o "$WORK/stripped" "$WORK/strip.c" && strip "$WORK/stripped"
"$HS" run --report="$WORK/strip.json" -- "$WORK/stripped" 2>"$WORK/strip.err"
expect_eq "the leak" 192 "$(jq .summary.definitely_lost.bytes "$WORK/strip.json")"
expect_eq "frames without a module" 0 "$(jq '[.leaks[0].stack[] | select(.module == null)] | length' "$WORK/strip.json")"
expect_match "the first frame in the text" "at 0x[0-9A-F]+: \?\?\? \(in $WORK/stripped\)" "$(cat "$WORK/strip.err")"
# The report of a C program loads no C++ runtime (libstdc++ took 1 of the
# 1.5 ms the report library cost at every leaky exit); C++ names are still
# demangled (tests/corpus.sh).
expect_eq "no libstdc++ loaded for a C program's report" 0 \
  "$(LD_DEBUG=files "$HS" run -- "$WORK/stripped" 2>&1 | grep -c 'file=libstdc++.*libheapscope')"
printf 'leak:*/stripped\n' >"$WORK/strip.supp"
"$HS" run --suppressions="$WORK/strip.supp" --report="$WORK/strip2.json" -- "$WORK/stripped" 2>/dev/null
expect_eq "suppressed by module" 192 "$(jq .summary.suppressed.definitely_lost.bytes "$WORK/strip2.json")"
end

begin "--show-leak-kinds and --leak-check"
"$HS" run --show-leak-kinds=all -- "$P" out 2>&1 >/dev/null | grep -q 'still reachable in loss record' || fail "reachable not shown with all"
"$HS" run --leak-check=summary -- "$P" out 2>&1 >/dev/null | grep -q 'loss record' && fail "records shown with summary"
"$HS" run --leak-check=summary -- "$P" out 2>&1 >/dev/null | grep -q 'LEAK SUMMARY' || fail "no summary with summary"
"$HS" run --leak-check=no -- "$P" out 2>&1 >/dev/null | grep -q 'LEAK SUMMARY' && fail "summary with --leak-check=no"
"$HS" run --show-leak-kinds=definite --report="$WORK/k.json" -- "$P" out >/dev/null 2>&1
expect_eq "only definite records" "definitely_lost" "$(jq -r '[.leaks[].kind] | unique | join(",")' "$WORK/k.json")"
end

begin "HEAPSCOPE_OPTIONS without the CLI, and %p"
HEAPSCOPE_OPTIONS="report=$WORK/env.%p.json,show_leak_kinds=definite+possible" LD_PRELOAD="$BUILD/libheapscope.so" "$P" out >/dev/null 2>"$WORK/e"
f=$(ls "$WORK"/env.*.json 2>/dev/null | head -1)
[ -n "$f" ] || fail "no report from HEAPSCOPE_OPTIONS"
[ -n "$f" ] && expect_eq "leak" 123 "$(jq .summary.definitely_lost.bytes "$f")"
HEAPSCOPE_OPTIONS="no_such_key=1" LD_PRELOAD="$BUILD/libheapscope.so" "$P" clean >"$WORK/o" 2>"$WORK/e"; rc=$?
expect_eq "bad HEAPSCOPE_OPTIONS: program still runs" "0 clean" "$rc $(cat "$WORK/o")"
expect_match "bad HEAPSCOPE_OPTIONS: one line" '^heapscope: error: .*no_such_key' "$(cat "$WORK/e")"
end

begin "--max-frames and deep stacks"
"$HS" run --report="$WORK/d.json" -- "$P" deep >/dev/null 2>&1
expect_eq "20 deep frames of deep()" 21 "$(jq '[.leaks[0].stack[] | select(.function == "deep")] | length' "$WORK/d.json")"
"$HS" run --max-frames=3 --report="$WORK/d3.json" -- "$P" deep >/dev/null 2>&1
expect_eq "3 addresses" 3 "$(jq '[.leaks[0].stack[].address] | unique | length' "$WORK/d3.json")"
end

begin "a shell script: every process reports, the started one at the exact path"
rm -f "$WORK"/sh.json*
"$HS" run --report="$WORK/sh.json" -- /bin/sh -c "$P out >/dev/null; $P out >/dev/null; exit 3" 2>/dev/null; rc=$?
expect_eq "status of the script" 3 "$rc"
[ -s "$WORK/sh.json" ] || fail "no report for the shell itself"
expect_eq "children's reports" 2 "$(ls "$WORK"/sh.json.* 2>/dev/null | wc -l)"
for f in "$WORK"/sh.json.*; do
  expect_eq "child leak in $f" 123 "$(jq .summary.definitely_lost.bytes "$f")"
done
end

begin "a child whose stderr its parent reads gets no report in it; its JSON report is written"
# gdb runs `iconv -l` with stderr into the pipe it parses: the child's report
# became 135 "charset names" (and 135 more leaked blocks than under valgrind)
expect_eq "alone" "read 17 bytes: child's own line" "$("$P" pipechild 2>/dev/null)"
rm -f "$WORK"/pc.json*
"$HS" run --report="$WORK/pc.json" -- "$P" pipechild >"$WORK/o" 2>"$WORK/e"; rc=$?
expect_eq "status" 0 "$rc"
expect_eq "what the parent read" "read 17 bytes: child's own line" "$(cat "$WORK/o")"
expect_match "the parent's own report" 'HEAP SUMMARY' "$(cat "$WORK/e")"
expect_eq "one report on run's stderr" 1 "$(grep -c 'LEAK SUMMARY' "$WORK/e")"
expect_eq "the child's JSON report" 35 "$(jq .summary.definitely_lost.bytes "$WORK"/pc.json.* 2>&1)"
# a child on run's own stderr still reports there
"$HS" run -- /bin/sh -c "$P leakerr" 2>"$WORK/e"
expect_match "a child on run's stderr reports" 'definitely lost: 35 bytes in 1 blocks' "$(cat "$WORK/e")"
# started without a stderr: the descriptor 2 it opens is its own file
"$HS" run -- "$P" opendata "$WORK/data" >/dev/null 2>&-; rc=$?
expect_eq "status (opendata)" 0 "$rc"
expect_eq "the program's file holds its data only" data "$(cat "$WORK/data")"
end

begin "make install PREFIX=...: the installed tool finds its agent"
make -s -C "$ROOT" install PREFIX="$WORK/inst" BUILD="$BUILD" >/dev/null 2>&1 || fail "make install failed"
"$WORK/inst/bin/heapscope" run --report="$WORK/inst.json" -- "$P" out >/dev/null 2>&1
expect_eq "installed run works" 123 "$(jq .summary.definitely_lost.bytes "$WORK/inst.json" 2>/dev/null)"
[ -f "$WORK/inst/include/heapscope.h" ] || fail "header not installed"
end

begin "in-program API with and without the agent"
gcc -O1 -g -I"$ROOT/include" -o "$WORK/api" "$ROOT/tests/progs/api.c" || fail "api.c does not build"
expect_eq "without the agent" "active=0 ignore=-1 ignore_bad=-1 check=-1" "$("$WORK/api" | tr '\n' ' ' | sed 's/ $//')"
out=$("$HS" run --report="$WORK/api.json" -- "$WORK/api" 2>"$WORK/api.err")
expect_eq "under the agent" "active=1 ignore=0 ignore_bad=-1 check=1234" "$(echo "$out" | tr '\n' ' ' | sed 's/ $//')"
expect_match "check on demand printed" 'in use at this check' "$(cat "$WORK/api.err")"
expect_eq "ignored block not reported at exit" 1234 "$(jq .summary.definitely_lost.bytes "$WORK/api.json")"
end

# exit() or _exit() in a signal handler that interrupted the agent with a
# lock held, or glibc's allocator (tests/progs/sigexit.c): the report must
# come, with the program's status. 1 run in 6 hung before the exiting
# thread could take its own lock over; 1 in 100 aborted in glibc ("corrupted
# double-linked list") before the report allocated from its own pages.
begin "exit() and _exit() from a signal handler that interrupted malloc: report, no hang"
gcc -O1 -g -o "$WORK/sigexit" "$ROOT/tests/progs/sigexit.c" || fail "sigexit.c does not build"
for i in $(seq 60); do
  how=exit
  [ $((i % 2)) = 0 ] && how=_exit
  T=10 with_timeout "$HS" run -- "$WORK/sigexit" $((5000 + RANDOM % 30000)) $how >/dev/null 2>"$WORK/se.err"
  rc=$?
  if [ "$rc" != 3 ] || ! grep -q "definitely lost: 4,242 bytes in 1 blocks" "$WORK/se.err"; then
    fail "run $i ($how): status $rc (124: hung), $(grep -c 'LEAK SUMMARY' "$WORK/se.err") summaries"
    break
  fi
done
# The signal sent to one of two allocating threads, in both modes: sample
# mode's report waited forever for the arena lock of glibc's that the
# interrupted free held (14 runs in 30 hung), until a report in a signal
# handler allocated from the agent's own pages in every mode.
for i in $(seq 30); do
  how=exit mode=full
  [ $((i % 2)) = 0 ] && how=_exit
  [ $((i % 4)) -ge 2 ] && mode=sample
  T=10 with_timeout "$HS" run --mode=$mode -- "$WORK/sigexit" $((5000 + RANDOM % 30000)) $how threads >/dev/null 2>"$WORK/se.err"
  rc=$?
  if [ "$rc" != 3 ] || { [ $mode = full ] && ! grep -q "definitely lost: 4,242 bytes in 1 blocks" "$WORK/se.err"; }; then
    fail "threads, run $i ($mode, $how): status $rc (124: hung)"
    break
  fi
done
end

# The kernel's signal frame is not a root: its unwritten words (reserved
# fields, padding) kept a copy of a pointer the program had dropped, and the
# block was "still reachable" (tests/progs/sigframe.c smears it there). The
# registers and stack of the code it interrupted are roots. On an alternate
# signal stack, the report also overflowed that stack (SIGSEGV, status 139).
begin "exit() from a signal handler: the signal frame is not a root, the interrupted context is"
gcc -O1 -g -o "$WORK/sigframe" "$ROOT/tests/progs/sigframe.c" || fail "sigframe.c does not build"
for alt in "" altstack; do
  T=30 with_timeout "$HS" run --show-leak-kinds=all -- "$WORK/sigframe" $alt >/dev/null 2>"$WORK/sf.err"
  expect_eq "status ($alt)" 3 "$?"
  expect_match "dropped block lost ($alt)" "definitely lost: 4,242 bytes in 1 blocks" "$(cat "$WORK/sf.err")"
  expect_match "register and frame of the interrupted code are roots ($alt)" "still reachable: 3,333 bytes in 2 blocks" "$(cat "$WORK/sf.err")"
  expect_match "symbolized ($alt)" "at 0x[0-9A-F]+: main \\(sigframe.c:" "$(cat "$WORK/sf.err")"
done
end

begin "exit() and _exit() on a thread with a 64 KiB stack: the report does not overflow it"
gcc -O1 -g -pthread -o "$WORK/smallexit" "$ROOT/tests/progs/smallexit.c" || fail "smallexit.c does not build"
for how in exit _exit; do
  T=30 with_timeout "$HS" run -- "$WORK/smallexit" $how >/dev/null 2>"$WORK/sx.err"
  expect_eq "status ($how)" 4 "$?"
  expect_match "leak found ($how)" "definitely lost: 77 bytes in 1 blocks" "$(cat "$WORK/sx.err")"
  expect_match "symbolized ($how)" "at 0x[0-9A-F]+: run \\(smallexit.c:" "$(cat "$WORK/sx.err")"
done
end

# A program LD_PRELOAD cannot reach runs as it is, with a warning that says
# why there will be no report (before, nothing at all was printed).
begin "fork() in a signal handler that interrupted the agent: no hang, in either mode"
gcc -O1 -g -o "$WORK/forksig" "$ROOT/tests/progs/forksig.c"
for mode in "" "--mode=sample"; do
  bad=0
  for i in 1 2 3 4 5; do
    out=$(T=30 with_timeout "$HS" run $mode -- "$WORK/forksig" 2>/dev/null); rc=$?
    [ "$rc" = 0 ] && printf '%s' "$out" | grep -Eq '^forks (2[0-9][0-9]) reaped \1$' || bad=$((bad + 1))
  done
  expect_eq "runs hung or wrong with '$mode'" 0 "$bad"
done
end

begin "malloc and free in a signal handler that interrupted the agent: no hang"
gcc -O1 -g -o "$WORK/sigmalloc" "$ROOT/tests/progs/sigmalloc.c"
bad=0
for i in 1 2 3 4 5 6 7 8; do
  out=$(T=60 with_timeout "$HS" run --leak-check=no -- "$WORK/sigmalloc" 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && [ "$out" = "done 1" ] || bad=$((bad + 1))
done
expect_eq "full mode: runs hung or failed" 0 "$bad"
# (Full mode also serves a handler that interrupted the agent's own call into
# glibc's allocator from the agent's pages: re-entering glibc aborted about 1
# run in 10.) Sample mode: no hang. (About 1 run in 30 aborts in glibc
# itself, whose malloc the handler re-entered: sample mode's fast paths
# cannot mark their calls into glibc; the program's own undefined behaviour,
# made likelier by the agent's allocations in a sampled capture.)
hung=0
for i in 1 2 3 4 5; do
  T=60 with_timeout "$HS" run --mode=sample -- "$WORK/sigmalloc" >/dev/null 2>&1
  [ $? = 124 ] && hung=$((hung + 1))
done
expect_eq "sample mode: runs hung" 0 "$hung"
end

begin "a statically linked program: a warning, the program runs"
printf 'int main(void) { return 5; }\n' >"$WORK/st.c"
gcc -static -o "$WORK/st" "$WORK/st.c" || fail "cannot build a static program"
"$HS" run -- "$WORK/st" >/dev/null 2>"$WORK/st.err"
expect_eq "status" 5 "$?"
expect_match "warning" 'warning: .*/st runs without heapscope: it is statically linked' "$(cat "$WORK/st.err")"
"$HS" run -- /bin/true 2>"$WORK/st.err"
expect_eq "no warning for a dynamic one" "" "$(grep warning "$WORK/st.err")"
end

# errno is the program's: an allocation that succeeds leaves it as it was,
# the first one of the process and of each thread included (they start the
# agent's tracking and the thread's unwinder state).
begin "errno is kept across allocator calls that succeed, both modes"
gcc -O1 -g -pthread -o "$WORK/errno_kept" "$ROOT/tests/progs/errno_kept.c" -ldl
expect_eq "alone" "errno changes: 0" "$("$WORK/errno_kept" 2>&1)"
for mode in "" "--mode=sample --sample-rate=1k"; do
  expect_eq "under heapscope $mode" "errno changes: 0" "$(T=60 with_timeout "$HS" run --leak-check=no $mode -- "$WORK/errno_kept" 2>&1 | grep -v '^==')"
done
end

# Another allocator under the agent (jemalloc or tcmalloc preloaded or
# linked by the user; here an empty interposer): its free memory looks like
# program data to the check, and the user is told so. (The CLI built without
# ASan: its runtime must come first in LD_PRELOAD.)
begin "a malloc that is not glibc's gets a warning, not a silent report"
gcc -O2 -fPIC -shared -o "$WORK/nop.so" "$ROOT/bench/nop.c"
e=$(LD_PRELOAD="$WORK/nop.so" "$BUILD/heapscope" run -- "$P" clean 2>&1 >/dev/null)
expect_match "warning" "malloc is nop.so's, not glibc's" "$e"
expect_eq "no warning with glibc's" "" "$("$HS" run -- "$P" clean 2>&1 >/dev/null | grep "not glibc's")"
expect_eq "none in sample mode (no leak check)" "" "$(LD_PRELOAD="$WORK/nop.so" "$BUILD/heapscope" run --mode=sample -- "$P" clean 2>&1 >/dev/null | grep "not glibc's")"
end

# Blocks 8 bytes apart from another allocator (tests/progs/packed_malloc.c):
# two start in one 32-byte unit of the table's shadow map, or are not
# 16-byte aligned, and go to its overflow; two threads allocate at once.
# Every block is counted once, in its category.
begin "an allocator that packs blocks 8 bytes apart: every block tracked"
gcc -O2 -fPIC -shared -o "$WORK/packed_malloc.so" "$ROOT/tests/progs/packed_malloc.c"
gcc -O1 -g -pthread -o "$WORK/packed" "$ROOT/tests/progs/packed.c"
for i in 1 2 3; do
  rm -f "$WORK/pk.json"
  LD_PRELOAD="$WORK/packed_malloc.so" T=60 with_timeout "$BUILD/heapscope" run --report="$WORK/pk.json" -- "$WORK/packed" 2>/dev/null
  expect_eq "run $i: definitely lost, still reachable (blocks, bytes)" "400 4900 400 4872" \
    "$(jq -r '[.summary.definitely_lost.blocks, .summary.definitely_lost.bytes, .summary.still_reachable.blocks, .summary.still_reachable.bytes] | map(tostring) | join(" ")' "$WORK/pk.json" 2>&1)"
done
end

# Two threads calling exit at once (tests/progs/dblexit.c): the report is
# written whole every time, by one of them. Then four, then eight at once.
begin "two, four and eight threads exit at once: the report is never lost"
gcc -O1 -g -pthread -o "$WORK/dblexit" "$ROOT/tests/progs/dblexit.c"
lost=0
for i in $(seq 15); do
  n=$((i % 3 == 0 ? 8 : i % 3 == 1 ? 2 : 4))
  rm -f "$WORK/dx.json"
  T=60 with_timeout "$HS" run --report="$WORK/dx.json" -- "$WORK/dblexit" $n >/dev/null 2>"$WORK/dx.err"
  rc=$?
  [ "$rc" = 4 ] && grep -q "LEAK SUMMARY" "$WORK/dx.err" &&
    [ "$(jq -r '.summary.definitely_lost.blocks + .summary.indirectly_lost.blocks' "$WORK/dx.json" 2>/dev/null)" = 1000 ] ||
    lost=$((lost + 1))
done
expect_eq "runs without the whole report" 0 "$lost"
end

echo "SUITE $PASS $FAIL"
