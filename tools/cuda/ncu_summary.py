#!/usr/bin/env python3
"""Summarises `ncu --csv --metrics gpu__time_duration.sum` output of `cuda_model_bench --profile`.

Phases are separated by `copy_probe` kernels (see the bench's `profile`): decode b1 (4 steps),
decode of N sequences (3 steps), prefill pp512 (1 call). For each phase: kernel time per step by
kernel name (largest first) and the sum. Usage: ncu_summary.py ncu.csv
"""
import collections
import csv
import sys

PHASES = [("decode b1", 4), ("decode batch", 3), ("prefill pp512", 1)]


def main(path):
    rows = []
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "ns")
        us = v / 1e3 if unit == "nsecond" or unit == "ns" else v if unit in ("usecond", "us") else v * 1e3
        name = r["Kernel Name"].split("(")[0]
        rows.append((name, us, r.get("Grid Size", "")))
    phases, cur = [], None
    for name, us, grid in rows:
        if name == "copy_probe":
            if cur is not None:
                phases.append(cur)
            cur = []
            continue
        if cur is not None:
            cur.append((name, us, grid))
    for (label, steps), ks in zip(PHASES, phases):
        agg = collections.defaultdict(lambda: [0, 0.0])
        for name, us, _ in ks:
            agg[name][0] += 1
            agg[name][1] += us
        total = sum(a[1] for a in agg.values())
        print(f"\n### {label}: {total / steps:.1f} us of kernels per step, {len(ks) / steps:.0f} launches per step")
        print("| kernel | launches/step | us/step | us/launch |")
        print("|---|---|---|---|")
        for name, (n, us) in sorted(agg.items(), key=lambda x: -x[1][1])[:14]:
            print(f"| {name} | {n / steps:.0f} | {us / steps:.1f} | {us / n:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
