#!/usr/bin/env python3
"""Renders the JSON written by tools/bench/run.sh as the markdown tables of BENCHMARKS.md.

    python3 tools/bench/table.py .cache/bench/results
"""
import json
import os
import sys


def load(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def test_of(r):
    return f"pp{r['n_prompt']}" if r["n_prompt"] > 0 else f"tg{r['n_gen']}"


def by_test(rows):
    return {test_of(r): r for r in rows or []}


def fmt_ts(r):
    return f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}"


def main(d):
    meta = load(d, "meta.json") or {}
    bw = load(d, "bandwidth.json") or []
    ceiling = max((b["best_gbs"] for b in bw if b["n_threads"] == meta.get("threads", 2)), default=None)
    print(f"Machine: {meta.get('cpu', '?')}, {meta.get('threads', '?')} threads, {meta.get('reps', '?')} repetitions, "
          f"load average at start {meta.get('load', '?')}, {meta.get('date', '?')}.\n")
    if bw:
        print("| memory read ceiling | best GB/s | mean ± sd GB/s |")
        print("| --- | ---: | ---: |")
        for b in bw:
            print(f"| {b['n_threads']} thread(s), {b['buffer_bytes'] >> 20} MiB | {b['best_gbs']:.1f} | {b['avg_gbs']:.1f} ± {b['stddev_gbs']:.1f} |")
        print()

    print("### Same GGUF file in both engines\n")
    print("| file | test | llama.cpp t/s | tern t/s | tern / llama.cpp | tern layers / head | tern bytes/token | tern GB/s | % of ceiling |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for ty in ["TQ2_0", "TQ1_0"]:
        ll, tt = by_test(load(d, f"llama-{ty}.json")), by_test(load(d, f"tern-{ty}.json"))
        for test in sorted(set(ll) | set(tt), key=lambda s: (s[:2] != "pp", s)):
            l, t = ll.get(test), tt.get(test)
            ratio = f"{t['avg_ts'] / l['avg_ts']:.2f}×" if l and t else "-"
            bpt = f"{t['bytes_per_token'] / 2**20:.0f} MiB" if t and t.get("bytes_per_token") else "-"
            gbs = f"{t['achieved_gbs']:.1f}" if t and t.get("bytes_per_token") else "-"
            pct = f"{100 * t['achieved_gbs'] / ceiling:.0f}%" if t and t.get("bytes_per_token") and ceiling else "-"
            fmt = f"{t['layer_format']} / {t['head_format']}" if t else "-"
            print(f"| bitnet-2b4t synthetic {ty} | {test} | {fmt_ts(l) if l else '-'} | {fmt_ts(t) if t else '-'} | {ratio} | {fmt} | {bpt} | {gbs} | {pct} |")
    again = by_test(load(d, "llama-TQ2_0-again.json"))
    if again:
        print(f"\nllama.cpp TQ2_0 re-run at the end of the run: " + ", ".join(f"{k} {fmt_ts(v)}" for k, v in again.items()))

    print("\n### tern layouts and heads on the TQ2_0 file (re-stored at load)\n")
    base = by_test(load(d, "llama-TQ2_0.json"))
    print("| layers | head | pp t/s | tg t/s | tg vs llama.cpp TQ2_0 | bytes/token | GB/s | % of ceiling | load→first token s | RSS / weights |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lay in ["tq2", "t2", "t1"]:
        for head in ["keep", "i8", "q8"]:
            rows = load(d, f"tern-TQ2_0-{lay}-{head}.json")
            if not rows:
                continue
            t = by_test(rows)
            pp = next((v for k, v in t.items() if k.startswith("pp")), None)
            tg = next((v for k, v in t.items() if k.startswith("tg")), None)
            lt = next((v for k, v in base.items() if k.startswith("tg")), None)
            r0 = rows[0]
            rss = f"{r0['rss_bytes'] / r0['model_size']:.2f}×" if r0.get("rss_bytes") else "-"
            print(f"| {r0['layer_format']} | {r0['head_format']} | {fmt_ts(pp) if pp else '-'} | {fmt_ts(tg) if tg else '-'} | "
                  f"{(tg['avg_ts'] / lt['avg_ts']) if tg and lt else float('nan'):.2f}× | {tg['bytes_per_token'] / 2**20:.0f} MiB | {tg['achieved_gbs']:.1f} | "
                  f"{(100 * tg['achieved_gbs'] / ceiling) if ceiling else float('nan'):.0f}% | {r0['load_to_first_token_s']:.2f} | {rss} |")

    print("\n### Quantized LM heads: quality vs the f32 head\n")
    print("| model | head | type | MiB | ms/token (head GEMV) | mean KLD | top-1 agreement |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name in sorted(os.listdir(d)):
        if not name.startswith("head-"):
            continue
        h = load(d, name)
        for r in h["heads"]:
            print(f"| {os.path.basename(h['model'])} | {r['head']} | {r['type']} | {r['bytes'] / 2**20:.1f} | {r['ms_per_token']:.2f} | "
                  f"{r['kld']:.6f} | {100 * r['top1']:.2f}% |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/bench/results")
