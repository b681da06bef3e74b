#!/bin/bash
# The parsers of untrusted input under libFuzzer (with ASan and UBSan), a
# short run each: suppression files and patterns, HEAPSCOPE_OPTIONS.
set -u
. "$(dirname "$0")/lib/common.sh"
F="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 -I/usr/include/x86_64-linux-gnu"
run_fuzz() { # NAME SOURCES...
  name=$1
  shift
  begin "fuzz $name"
  if ! clang $F -o "$WORK/$name" "$@" 2>"$WORK/$name.build"; then
    fail "does not build: $(head -3 "$WORK/$name.build")"
  else
    mkdir -p "$WORK/$name.corpus"
    T=120 with_timeout "$WORK/$name" -runs=30000 -max_len=512 "$WORK/$name.corpus" >"$WORK/$name.log" 2>&1 ||
      fail "crashed or failed: $(grep -E 'ERROR|SUMMARY' "$WORK/$name.log" | head -3)"
  fi
  end
}
printf 'leak:foo\nthread:worker\n# c\nleak:^a*b$\n' >"$WORK/seed.supp"
mkdir -p "$WORK/fuzz_supp.corpus" && cp "$WORK/seed.supp" "$WORK/fuzz_supp.corpus/"
run_fuzz fuzz_supp "$ROOT/tests/fuzz/fuzz_supp.c" "$ROOT/src/report/suppress.c" "$ROOT/src/report/buf.c"
mkdir -p "$WORK/fuzz_options.corpus" && printf 'max_frames=12,report=/tmp/x%%p,show_leak_kinds=all' >"$WORK/fuzz_options.corpus/seed"
run_fuzz fuzz_options "$ROOT/tests/fuzz/fuzz_options.c" "$ROOT/src/agent/options.c" "$ROOT/src/agent/log.c" \
  "$ROOT/src/agent/arena.c"
echo "SUITE $PASS $FAIL"
