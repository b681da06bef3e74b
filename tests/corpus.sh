#!/bin/bash
# The corpus against valgrind: for every program, at -O0 and -O2, heapscope's
# bytes and blocks of definitely, indirectly and possibly lost must equal
# valgrind memcheck's on the same binary (blocks heapscope suppresses by
# default, such as glibc's thread DTV, are counted back in), and every line
# marked LEAK(kind) in the source must appear in a record of that kind.
set -u
. "$(dirname "$0")/lib/common.sh"
CORPUS=$ROOT/tests/corpus

vg_summary() { # FILE KIND -> "bytes blocks"
  sed -n "s/.*$2: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 \2/p" "$1" | tr -d , | tail -1
}
# Bytes and blocks of valgrind's loss records of KIND whose stack passes
# through glibc's _dl_allocate_tls (the thread DTV heapscope suppresses).
vg_dtv() { # FILE KIND -> "bytes blocks"
  tr -d , <"$1" | awk -v kind="$2" '
    / blocks are / { inrec = (index($0, "are " kind " in loss record") > 0);
                     n = split($0, w, " "); b = w[2]; for (i = 1; i <= n; i++) if (w[i] == "blocks") k = w[i-1];
                     if (w[3] ~ /^\(/) b = substr(w[3], 2)
                     dtv = 0; next }
    inrec && /_dl_allocate_tls/ && !dtv { bytes += b; blocks += k; dtv = 1 }
    END { print bytes + 0, blocks + 0 }'
}

check_program() { # SRC OPT
  src=$1
  opt=$2
  name=$(basename "$src")
  base=${name%.*}
  bin=$WORK/$base.$opt
  case "$src" in
    *.cc) g++ -$opt -g -pthread -o "$bin" "$src" ;;
    *) gcc -$opt -g -pthread -o "$bin" "$src" ;;
  esac || { begin "corpus $name -$opt"; fail "does not compile"; end; return; }

  begin "corpus $name -$opt: valgrind parity"
  if grep -q NOVALGRIND "$src"; then
    # valgrind cannot run it (it aborts on pvalloc): the expected numbers are in the source.
    T=120 with_timeout "$HS" run --report="$WORK/$base.$opt.json" -- "$bin" >/dev/null 2>&1
    j=$WORK/$base.$opt.json
    grep 'EXPECT(' "$src" | sed -n 's/.*EXPECT(\([a-z_]*\) \([0-9]*\) \([0-9]*\)).*/\1 \2 \3/p' | while read -r k b n; do
      echo "$k $b $n" >>"$WORK/$base.$opt.want"
      echo "$k $(jq -r ".summary.$k.bytes, .summary.$k.blocks" "$j" | tr '\n' ' ' | sed 's/ $//')" >>"$WORK/$base.$opt.got"
    done
    expect_eq "summary vs EXPECT lines" "$(cat "$WORK/$base.$opt.want")" "$(cat "$WORK/$base.$opt.got")"
    end
  else
  T=300 with_timeout valgrind --leak-check=full --show-leak-kinds=all --log-file="$WORK/$base.$opt.vg.%p" "$bin" >/dev/null 2>&1
  vgroot=$(ls "$WORK/$base.$opt.vg."* | sort -t. -k4 -n | head -1)
  T=120 with_timeout "$HS" run --report="$WORK/$base.$opt.json" -- "$bin" >"$WORK/$base.$opt.out" 2>"$WORK/$base.$opt.err"
  rc=$?
  expect_eq "exit status" 0 "$rc"
  j=$WORK/$base.$opt.json
  if [ ! -s "$j" ]; then
    fail "no JSON report"
  else
    for kind in definitely_lost:definitely indirectly_lost:indirectly possibly_lost:possibly; do
      k=${kind%%:*}
      vk=${kind##*:}
      set -- $(vg_summary "$vgroot" "$vk lost") $(vg_dtv "$vgroot" "$vk lost")
      # The DTV's size depends on how many modules use TLS, and the agent is
      # one more: compare its block count only.
      vg="$(($1 - $3)) $(($2 - $4))"
      hs=$(jq -r ".summary.$k.bytes, .summary.$k.blocks" "$j" | tr '\n' ' ' | sed 's/ $//')
      expect_eq "$k (bytes blocks) vs valgrind, DTV aside" "$vg" "$hs"
      expect_eq "$k DTV blocks suppressed vs valgrind" "$4" "$(jq -r ".summary.suppressed.$k.blocks" "$j")"
    done
  fi
  end
  fi

  begin "corpus $name -$opt: records name function, file and line"
  grep -n 'LEAK(' "$src" | while IFS=: read -r line rest; do
    kind=$(printf '%s' "$rest" | sed -n 's/.*LEAK(\([a-z_]*\)).*/\1/p')
    n=$(jq --arg k "$kind" --arg f "$name" --argjson l "$line" \
      '[.leaks[] | select(.kind == $k) | .stack[] | select((.file // "" | split("/") | last) == $f and .line == $l and .function != null)] | length' "$j" 2>/dev/null)
    [ "${n:-0}" -gt 0 ] || echo "missing $kind record at $name:$line"
  done >"$WORK/$base.$opt.missing"
  [ -s "$WORK/$base.$opt.missing" ] && fail "$(cat "$WORK/$base.$opt.missing" | tr '\n' ';')"
  end
}

for src in "$CORPUS"/*.c "$CORPUS"/*.cc; do
  for opt in O0 O2; do
    check_program "$src" "$opt"
  done
done

# Blocks allocated by a library's constructor, which the dynamic linker runs
# before the agent's: every category, still reachable too, equals valgrind's.
begin "corpus: a library constructor's blocks are tracked (valgrind parity)"
lib=$WORK/ctorlib
mkdir -p "$lib"
gcc -O2 -g -shared -fPIC -o "$lib/libctorlib.so" "$CORPUS/lib/ctorlib.c" &&
  gcc -O2 -g -o "$lib/ctormain" "$CORPUS/lib/ctormain.c" -Wl,--no-as-needed -L"$lib" -lctorlib -Wl,-rpath,"$lib" ||
  fail "does not build"
T=120 with_timeout valgrind --leak-check=full --log-file="$lib/vg" "$lib/ctormain" >/dev/null 2>&1
T=120 with_timeout "$HS" run --report="$lib/r.json" -- "$lib/ctormain" >/dev/null 2>&1
for kind in definitely_lost:definitely indirectly_lost:indirectly possibly_lost:possibly still_reachable:still; do
  k=${kind%%:*}
  vk=${kind##*:}
  [ "$vk" = still ] && vk="still reachable" || vk="$vk lost"
  expect_eq "$k (bytes blocks) vs valgrind" "$(vg_summary "$lib/vg" "$vk")" \
    "$(jq -r ".summary.$k.bytes, .summary.$k.blocks" "$lib/r.json" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')"
done
end

# fork: the child writes its own report with a .<pid> suffix, the parent
# exactly the --report path.
begin "fork: parent and child each write a report"
bin=$WORK/fork.O2
rm -f "$WORK"/forkrep.json*
"$HS" run --report="$WORK/forkrep.json" -- "$bin" >/dev/null 2>&1
expect_eq "parent definitely lost" "111" "$(jq .summary.definitely_lost.bytes "$WORK/forkrep.json" 2>/dev/null)"
child=$(ls "$WORK"/forkrep.json.* 2>/dev/null | head -1)
if [ -z "$child" ]; then fail "no child report"; else
  expect_eq "child definitely lost" "333" "$(jq .summary.definitely_lost.bytes "$child")"
fi
rm -f "$WORK"/forkrep.json*
"$HS" run --follow-children=no --report="$WORK/forkrep.json" -- "$bin" >/dev/null 2>&1
expect_eq "no child report with --follow-children=no" "" "$(ls "$WORK"/forkrep.json.* 2>/dev/null)"
end

echo "SUITE $PASS $FAIL"
