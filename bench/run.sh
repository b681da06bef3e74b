#!/bin/bash
# make bench: heapscope beside the program alone, heaptrack and valgrind
# memcheck, in one run (interleaved rounds; hyperfine for memcheck), on a malloc/free microbenchmark and on
# real programs. Prints a markdown table and writes bench/results.md.
# Timings on a shared 2-core machine are noisy: compare within one run.
set -eu
cd "$(dirname "$0")/.."
B=build/bench
mkdir -p "$B"
HS=$PWD/build/heapscope
RUNS=${RUNS:-5}
SRUNS=${SRUNS:-10}
CFLAGS="-O2 -g -fomit-frame-pointer -pthread"
gcc $CFLAGS -o $B/mallocbench bench/mallocbench.c
gcc $CFLAGS -o $B/exitcheck bench/exitcheck.c
clang -O2 -g -fsanitize=leak -o $B/exitcheck.lsan bench/exitcheck.c
gcc -O2 -shared -fPIC -o $B/nop.so bench/nop.c

# Workloads: name | command (run from $B)
python3 - "$B" <<'PY'
import sys
b = sys.argv[1]
with open(f"{b}/big.c", "w") as f:           # a large generated file for cc1
    for i in range(1500):
        f.write(f"int f{i}(int x) {{ int a[8]; for (int k = 0; k < 8; k++) a[k] = x * {i} + k; return a[x & 7] + {i}; }}\n")
    f.write("int main(void) { return f1(2); }\n")
with open(f"{b}/sqlite.sql", "w") as f:      # ~800k rows inserted and indexed
    f.write("create table t(a integer primary key, b text, c real);\n")
    f.write("with recursive c(x) as (select 1 union all select x+1 from c where x<800000) "
            "insert into t select x, printf('row-%d-%d', x, x*7), x*0.5 from c;\n")
    f.write("create index tb on t(b);\ncreate index tc on t(c);\nselect count(*) from t where b like 'row-1%';\n")
with open(f"{b}/work.py", "w") as f:
    f.write("import json, collections\n"
            "d = collections.defaultdict(list)\n"
            "for i in range(300000):\n    d[i % 1000].append({'k': i, 's': str(i) * 3})\n"
            "print(len(json.dumps(d)))\n")
PY
CC1=$(gcc -print-prog-name=cc1)

declare -a NAMES CMDS
add() { NAMES+=("$1"); CMDS+=("$2"); }
add "malloc/free, 1 thread, 15 deep" "$PWD/$B/mallocbench 1 10000000 15"
add "malloc/free, 2 threads, 15 deep" "$PWD/$B/mallocbench 2 10000000 15"
add "sqlite3, 800k rows + 2 indexes" "sqlite3 -batch -init $PWD/$B/sqlite.sql $PWD/$B/db.sqlite .quit"
add "python3 (PYTHONMALLOC=malloc)" "/usr/bin/python3 $PWD/$B/work.py"
add "cc1 on a 1500-function file" "$CC1 -quiet -O1 $PWD/$B/big.c -o /dev/null"

results=$B/results.tsv
: >"$results"
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]}
  cmd=${CMDS[$i]}
  prep="rm -f $PWD/$B/db.sqlite"
  # python3 allocates through malloc only with PYTHONMALLOC=malloc; set in the
  # environment, not with env(1), so that every tool sees python3 itself.
  case "$name" in python3*) export PYTHONMALLOC=malloc ;; *) unset PYTHONMALLOC ;; esac
  # allocations made, from heapscope's own report
  sh -c "$prep"
  $HS run --leak-check=summary --report=$B/count.json -- $cmd >/dev/null 2>&1 || true
  allocs=$(python3 -c "import json;print(json.load(open('$B/count.json'))['totals']['allocations'])" 2>/dev/null || echo 0)
  vruns=$RUNS
  case "$name" in sqlite3*|python3*|cc1*) vruns=1 ;; esac
  JE=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 2>/dev/null || true)
  # Full tracking in interleaved rounds too: hyperfine ran each command's
  # runs back to back, minutes apart from the others', and a slow phase of
  # this VM in between made heapscope's cc1 cost 582 ns in one run, above
  # libunwind's 431, where every interleaved measurement has it well below.
  python3 bench/interleave.py "$RUNS" $B/h.json --prepare "$prep" \
    "alone=$cmd" \
    "heapscope=$HS run --leak-check=summary -- $cmd" \
    "heapscope (libunwind only)=env HEAPSCOPE_OPTIONS=fast_unwind=0 $HS run --leak-check=summary -- $cmd" \
    "heaptrack=heaptrack -o $PWD/$B/ht $cmd" || true
  # Sampling costs a few percent: more runs, interleaved (bench/interleave.py),
  # CPU time beside wall time; the microbenchmarks take 0.1-0.4 s a run, so
  # they get three times the rounds.
  srounds=$SRUNS
  case "$name" in malloc/free*) srounds=$((SRUNS * 3)) ;; esac
  python3 bench/interleave.py "$srounds" $B/s.json --prepare "$prep" \
    "alone=$cmd" \
    "heapscope sample=$HS run --mode=sample -- $cmd" \
    "empty interposer=env LD_PRELOAD=$PWD/$B/nop.so $cmd" \
    ${JE:+"jemalloc=env LD_PRELOAD=$JE $cmd"} \
    ${JE:+"jemalloc prof=env LD_PRELOAD=$JE MALLOC_CONF=prof:true,lg_prof_sample:19 $cmd"} || true
  hyperfine -N --prepare "$prep" -r "$vruns" --export-json $B/v.json \
    -n memcheck "valgrind --leak-check=full $cmd" >/dev/null 2>&1 || true
  rm -f $PWD/$B/ht.*
  python3 - "$name" "$allocs" $B/h.json $B/v.json $B/s.json >>"$results" <<'PY'
import json, sys
name, allocs = sys.argv[1], int(sys.argv[2])
def load(f, key):
    try:
        return {r["command"]: key(r) for r in json.load(open(f))["results"]}
    except Exception:
        return {}
try:
    hj = json.load(open(sys.argv[3]))
except Exception:
    hj = {}
t = {k: v["wall_median"] for k, v in hj.items()}
t.update(load(sys.argv[4], lambda r: r["median"]))
try:
    sj = json.load(open(sys.argv[5]))
except Exception:
    sj = {}
import statistics
def paired(k, base, key):  # median over rounds of k's time / base's time
    try:
        return statistics.median(a / b for a, b in zip(sj[k][key], sj[base][key]))
    except Exception:
        return float("nan")
sw = {k: v["wall_median"] for k, v in sj.items()}
sc = {k: v["cpu_median"] for k, v in sj.items()}
sm = {k: v["cpu_min"] for k, v in sj.items()}
sr = {"heapscope": paired("heapscope sample", "alone", "wall_runs"),
      "heapscope cpu": paired("heapscope sample", "alone", "cpu_runs"),
      "empty": paired("empty interposer", "alone", "wall_runs"),
      "jemalloc prof": paired("jemalloc prof", "jemalloc", "wall_runs"),
      "rounds": len(sj.get("alone", {}).get("wall_runs", []))}
row = [t.get(k, float("nan")) for k in ["alone", "heapscope", "heapscope (libunwind only)", "heaptrack", "memcheck"]]
ks = ["alone", "heapscope sample", "jemalloc", "jemalloc prof", "empty interposer"]
row += [sw.get(k, float("nan")) for k in ks]
row += [sc.get(k, float("nan")) for k in ks]
row += [sm.get(k, float("nan")) for k in ks]
row += [sr["heapscope"], sr["heapscope cpu"], sr["empty"], sr["jemalloc prof"], sr["rounds"]]
def fpaired(k):  # full tracking: median over rounds of k / alone in the same round
    try:
        return statistics.median(a / b for a, b in zip(hj[k]["wall_runs"], hj["alone"]["wall_runs"]))
    except Exception:
        return float("nan")
row += [fpaired(k) for k in ["heapscope", "heapscope (libunwind only)", "heaptrack"]]
row += [len(hj.get("alone", {}).get("wall_runs", []))]
print("\t".join([name, str(allocs)] + [f"{x:.4f}" for x in row]))
PY
done

# Thread churn: 10,000 short-lived threads, created and joined one by one.
gcc -O2 -g -pthread -Iinclude -o $B/threads_leak tests/progs/threads_leak.c
hyperfine -N -w 1 -r "$RUNS" --export-json $B/t.json \
  -n alone "$B/threads_leak churn" \
  -n heapscope "$HS run -- $B/threads_leak churn" >/dev/null 2>&1
# 8,000 threads alive at once (blocked at exit, each stopped for the check
# and listed in the thread report): until the eleventh stop the report read
# all of /proc/self/maps once per thread, 7x the program's time.
gcc -O1 -g -pthread -o $B/manythreads tests/progs/manythreads.c
hyperfine -N -w 1 -r "$RUNS" --export-json $B/mt.json \
  -n alone "$B/manythreads 8000" \
  -n heapscope "$HS run -- $B/manythreads 8000" >/dev/null 2>&1

# Fixed cost: a program that runs 1 ms and leaks one block. Until the
# eleventh stop the default suppressions' matching read every frame's DWARF,
# libc's compressed detached debug info (libc6-dbg) included: 74 ms a process.
printf '#include <stdlib.h>\nvoid *volatile g;\nint main(void) { g = malloc(7); g = 0; return 0; }\n' >$B/oneleak.c
gcc -O1 -g -o $B/oneleak $B/oneleak.c
hyperfine -N -w 3 -r 30 --export-json $B/fc.json \
  -n alone "$B/oneleak" \
  -n heapscope "$HS run -- $B/oneleak" >/dev/null 2>&1 || true

# Memory: the agent's footprint against the program's own peak RSS.
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
m_alone=$(rss $B/exitcheck 2000000)
m_hs=$(rss $HS run --leak-check=no -- $B/exitcheck 2000000)
# The exit check against LeakSanitizer: 8M blocks (1 GiB) reachable from one
# list. Each tool's run with the check minus its run without, in interleaved
# rounds (the differences are under a second between 1-3 s runs).
python3 bench/interleave.py 7 $B/x.json \
  "heapscope, no check=$HS run --leak-check=no -- $B/exitcheck" \
  "heapscope, check=$HS run --leak-check=summary -- $B/exitcheck" \
  "lsan, no check=env ASAN_OPTIONS=detect_leaks=0 LSAN_OPTIONS=detect_leaks=0 $B/exitcheck.lsan" \
  "lsan, check=$B/exitcheck.lsan"
# The check's own time, measured inside the process: median of 5.
for i in 1 2 3 4 5; do
  HEAPSCOPE_OPTIONS=check_timing=1 $HS run --leak-check=summary -- $B/exitcheck 2>&1 |
    sed -n 's/.*check_timing: [0-9]* blocks, [0-9]* threads stopped, \([0-9]*\) ms wall, \([0-9]*\) ms CPU (stop and take \([0-9]*\) ms, sort \([0-9]*\) ms, index \([0-9]*\) ms, roots and mark \([0-9]*\) ms, group \([0-9]*\) ms).*/\1 \2 \3 \4 \5 \6 \7/p'
done >$B/ct.txt

python3 - "$results" "$m_alone" "$m_hs" $B/x.json $B/t.json $B/ct.txt $B/mt.json $B/fc.json <<'PY' | tee bench/results.md
import json, sys, datetime
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"# heapscope benchmark ({datetime.date.today()}, `make bench`)\n")
print("Full tracking (every allocation, complete stacks), in interleaved rounds (bench/interleave.py: the "
      "program alone, heapscope, heapscope with libunwind only and heaptrack once a round, after a round "
      "that warms up). Times are medians of a run's wall time; the ratio is the median over the rounds of "
      "each round's tool / alone, and added ns per allocation = (ratio - 1) x alone / allocations, so a "
      "slow phase of the VM that spans a round cancels out. memcheck: hyperfine, one run on the real "
      "programs.\n")
print("| workload | allocations | rounds | alone | heapscope | ns/alloc | libunwind only | ns/alloc | heaptrack | ns/alloc | memcheck | slowdown |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    name, n = r[0], int(r[1])
    a, h, hl, ht, vg = map(float, r[2:7])
    q, ql, qt, rounds = map(float, r[27:31])
    ns = lambda q: f"{(q - 1) * a / n * 1e9:.0f}" if n else "-"
    print(f"| {name} | {n:,} | {rounds:.0f} | {a:.3f} s | {h:.3f} s ({q:.2f}x) | {ns(q)} | {hl:.3f} s | {ns(ql)} | "
          f"{ht:.3f} s ({qt:.2f}x) | {ns(qt)} | {vg:.2f} s | {vg/a:.0f}x |")
print("\nSampling (mean 512 KiB between samples), beside jemalloc's own sampling profiler "
      "(prof:true,lg_prof_sample:19, against jemalloc without prof), in interleaved rounds "
      "(bench/interleave.py; every command once a round). \"Added\" is the median over the rounds of "
      "each round's ratio (tool / program alone, in the same round): this VM's speed drifts by 10-20% "
      "between rounds, and a ratio within a round cancels that; the medians of wall time and the added CPU "
      "time (user + system) by minimum are beside it. The empty interposer (bench/nop.c) only forwards "
      "malloc, free, calloc and realloc to glibc, as the hooks do: the floor for any tool loaded with "
      "LD_PRELOAD:\n")
print("| workload | rounds | alone | heapscope sample | added: wall | CPU | CPU by min | ns/alloc (CPU min) | empty interposer: added | jemalloc | jemalloc prof | added: wall | CPU by min | ns/alloc (CPU min) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    name, n = r[0], int(r[1])
    a, hs, je, jp, ni, ac, hc, jc, pc, nc, am, hm, jm, pm, nm = map(float, r[7:22])
    rh, rhc, rn, rj, rounds = map(float, r[22:27])
    ns = lambda x, base: f"{(x - base) / n * 1e9:.1f}" if n else "-"
    print(f"| {name} | {rounds:.0f} | {a:.3f} s | {hs:.3f} s | {(rh-1)*100:+.1f}% | {(rhc-1)*100:+.1f}% | {(hm/am-1)*100:+.1f}% | {ns(hm, am)} | "
          f"{(rn-1)*100:+.1f}% | {je:.3f} s | {jp:.3f} s | {(rj-1)*100:+.1f}% | {(pm/jm-1)*100:+.1f}% | {ns(pm, jm)} |")
x = json.load(open(sys.argv[4]))
import statistics
def d(tool, k):  # median over the rounds of (with the check - without), same round
    runs = zip(x[tool + ", check"][k], x[tool + ", no check"][k])
    return statistics.median(a - b for a, b in runs)
print()
print(f"Exit check, 8 million blocks (1 GiB) reachable through one global list (each tool: its run with the "
      f"check minus its run without in the same round, median over 7 interleaved rounds): heapscope "
      f"{d('heapscope', 'wall_runs'):.2f} s wall, {d('heapscope', 'cpu_runs'):.2f} s CPU; LeakSanitizer "
      f"{d('lsan', 'wall_runs'):.2f} s wall, {d('lsan', 'cpu_runs'):.2f} s CPU. (A 2-3 s run of a 1 GiB "
      f"heap moves by more than the check on this VM: the time measured inside the process is the firmer "
      f"number.)")
ct = sorted(tuple(map(int, l.split())) for l in open(sys.argv[6]) if l.strip())
if ct:
    m = ct[len(ct) // 2]
    print(f"Measured inside the process (check_timing=1, the run with the median wall time of 5): "
          f"{m[0] / 1000:.2f} s wall, {m[1] / 1000:.2f} s CPU (two CPUs share the taking of the table), of which stopping "
          f"the threads and taking the table {m[2] / 1000:.2f} s, sorting the blocks {m[3] / 1000:.2f} s (none when the table lists them in address order), "
          f"the address index {m[4] / 1000:.2f} s, roots and marking {m[5] / 1000:.2f} s, grouping "
          f"{m[6] / 1000:.2f} s.")
print()
ma, mh = int(sys.argv[2]), int(sys.argv[3])
def medians(path):
    """hyperfine's medians by command name, or None when that part did not run"""
    try:
        return {r["command"]: r["median"] for r in json.load(open(path))["results"]}
    except (OSError, KeyError, ValueError):
        return None
t = medians(sys.argv[5])
if t:
    print(f"Thread churn, 10,000 threads created and joined: alone {t['alone']:.3f} s, under heapscope "
          f"{t['heapscope']:.3f} s ({t['heapscope']/t['alone']:.2f}x).\n")
t = medians(sys.argv[7])
if t:
    print(f"8,000 threads alive at exit (stopped for the check, listed in the thread report): alone "
          f"{t['alone']:.3f} s, under heapscope {t['heapscope']:.3f} s ({t['heapscope']/t['alone']:.2f}x).\n")
t = medians(sys.argv[8])
if t:
    print(f"Fixed cost, a 1 ms program that leaks one block (report with its stack): alone {t['alone'] * 1e3:.1f} ms, "
          f"under heapscope {t['heapscope'] * 1e3:.1f} ms.\n")
print(f"Peak RSS with 2 million live blocks of 128 bytes: alone {ma/1024:.0f} MiB, under heapscope {mh/1024:.0f} MiB "
      f"(agent adds {(mh-ma)/ma:.2f}x of the program's own peak).")
PY
