#!/usr/bin/env python3
"""Interleaved timing for small differences: runs every command once per
round, round after round, so that a slow phase of the machine (this VM's
steal time comes and goes) hits all of them alike; hyperfine runs each
command's runs back to back. Writes JSON: per command the median and minimum
of wall time and of CPU time (user + system of the process tree), and the
median of each round's ratio to the first command (the baseline): a slow
phase that spans a round cancels out of its ratio, which the difference of
two medians does not do. The rounds themselves are kept too (wall_runs,
cpu_runs), for ratios between any two commands.
usage: interleave.py ROUNDS OUT.json --prepare CMD name=command ..."""
import json, resource, statistics, subprocess, sys, time

rounds, out = int(sys.argv[1]), sys.argv[2]
args = sys.argv[3:]
prep = None
if args and args[0] == "--prepare":
    prep, args = args[1], args[2:]
cmds = [a.split("=", 1) for a in args]
wall = {k: [] for k, _ in cmds}
cpu = {k: [] for k, _ in cmds}
for r in range(rounds + 1):  # round 0 warms up and is not counted
    for k, c in cmds:
        if prep:
            subprocess.run(prep, shell=True)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(c, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t1 = time.perf_counter()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r:
            wall[k].append(t1 - t0)
            cpu[k].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
base = cmds[0][0]
def ratio(t, k):
    return statistics.median(a / b for a, b in zip(t[k], t[base]))
json.dump({k: {"wall_median": statistics.median(wall[k]), "wall_min": min(wall[k]),
               "cpu_median": statistics.median(cpu[k]), "cpu_min": min(cpu[k]),
               "wall_ratio": ratio(wall, k), "cpu_ratio": ratio(cpu, k),
               "wall_runs": wall[k], "cpu_runs": cpu[k]} for k, _ in cmds},
          open(out, "w"), indent=1)
