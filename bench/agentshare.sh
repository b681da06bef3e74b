#!/bin/bash
# A/B of agent builds on one program, by where the time goes rather than how
# long a run takes: perf's samples in the agent divided by the samples in the
# program's own executable, per run. This VM's speed drifts 10-20% between
# runs, and the ratio cancels that (both parts slow down together), so it
# separates builds whose agent time differs by 2-3%, where wall or CPU time
# needs dozens of rounds. Builds alternate, round after round.
# usage: bench/agentshare.sh ROUNDS 'HEAPSCOPE_OPTIONS' AGENT.so... -- PROGRAM [ARGS...]
# e.g.   bench/agentshare.sh 4 leak_check=no /tmp/a/libheapscope.so /tmp/b/libheapscope.so -- \
#          "$(gcc -print-prog-name=cc1)" -quiet -O1 build/bench/big.c -o /dev/null
# A program whose code is in a library (sqlite3's is in libsqlite3.so) names
# that file in PROGRAM_DSO, as perf shows it (e.g. libsqlite3.so.0.8.6).
# Every run reads /dev/null as stdin: give sqlite3 its script with ".read F".
set -u
rounds=$1 opts=$2
shift 2
agents=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do agents+=("$1"); shift; done
shift
comm=$(basename "$1" | cut -c1-15)
exe=${PROGRAM_DSO:-$(basename "$(readlink -f "$(command -v "$1")")")}
tmp=$(mktemp -d)
for r in $(seq "$rounds"); do
  for a in "${agents[@]}"; do
    HEAPSCOPE_OPTIONS=$opts perf record -q -F 4000 -o "$tmp/p" -- env LD_PRELOAD="$a" "$@" </dev/null >/dev/null 2>&1
    perf report -i "$tmp/p" --comm "$comm" --sort dso -q -F sample,dso 2>/dev/null |
      awk -v a="$a" -v exe="$exe" '$2 == "libheapscope.so" {h = $1} $2 == exe {c = $1}
        END {printf "%s\t%.4f\n", a, c ? h / c : 0}'
  done
done | tee "$tmp/r" >&2
echo "median agent/program samples:"
for a in "${agents[@]}"; do
  awk -F'\t' -v a="$a" '$1 == a {print $2}' "$tmp/r" | sort -n |
    awk -v a="$a" '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "  %.4f  %s\n", m, a}'
done
rm -rf "$tmp"
