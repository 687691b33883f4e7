#!/usr/bin/env python3
"""Load benchmark of `tern serve`: aggregate generated tokens/s and time to first token (p50/p99)
with 1, 4, 16 and 64 concurrent streaming clients.

Each client sends its requests one after another to /v1/completions with a prompt of random token ids
(no chat template needed, no prefix shared between requests), `ignore_eos` so every request generates
exactly --max-tokens tokens, and `stream_options.include_usage` to count them. Aggregate tok/s is all
generated tokens of a level divided by that level's wall time; TTFT is measured from sending the
request to the first chunk that carries generated text; ITL is (last − first token time) / (tokens − 1).

Examples (the lead runs these on a quiet machine for BENCHMARKS.md):
  # spawn the server on the BitNet-2B4T-shaped synthetic model (random weights, no download)
  python3 tools/server/bench.py --synthetic bitnet-2b4t --tern target/release/tern --json bench.json
  # a real model
  python3 tools/server/bench.py -m model.gguf --tern target/release/tern
  # an already running server
  python3 tools/server/bench.py --url http://127.0.0.1:8080 --model NAME
"""

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

import requests


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def spawn(args):
    cmd = [args.tern, "serve", "--port", "0", "--parallel", str(args.parallel), "--ctx-size", str(args.ctx_size),
           "--max-queue", str(max(args.concurrency) * 2), "--batch-tokens", str(args.batch_tokens), "--threads", str(args.threads), "--head-quant", args.head_quant]
    if args.synthetic:
        cmd += ["--synthetic", args.synthetic]
    else:
        cmd += ["-m", args.model_path]
    print("+ " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = None
    log = []
    got = threading.Event()

    def pump():
        nonlocal url
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                got.set()
        got.set()

    threading.Thread(target=pump, daemon=True).start()
    if not got.wait(120) or url is None:
        proc.kill()
        sys.exit("tern serve did not start:\n" + "".join(log))
    t0 = time.time()
    while True:
        try:
            if requests.get(url + "/health", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.time() - t0 > 600:
            sys.exit("tern serve did not become healthy:\n" + "".join(log))
        time.sleep(0.2)
    return proc, url


def one_request(url, model, prompt, max_tokens, key):
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    with requests.post(url + "/v1/completions", json=body, headers=headers, stream=True, timeout=3600) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        for line in r.iter_lines(decode_unicode=True):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            if "error" in c:
                raise RuntimeError(c["error"]["message"])
            if c.get("choices") and c["choices"][0].get("text"):
                now = time.perf_counter()
                first = first or now
                last = now
            if c.get("usage"):
                tokens = c["usage"]["completion_tokens"]
    return {"ttft": (first or time.perf_counter()) - t0, "tokens": tokens, "first": first, "last": last, "start": t0}


def run_level(url, model, clients, per_client, prompt_tokens, max_tokens, vocab_hi, key, seed):
    rng = random.Random(seed)
    prompts = [[[rng.randrange(100, vocab_hi) for _ in range(prompt_tokens)] for _ in range(per_client)] for _ in range(clients)]
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for p in prompts[i]:
            try:
                r = one_request(url, model, p, max_tokens, key)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    gen = sum(r["tokens"] for r in results)
    ttft = [r["ttft"] for r in results]
    itl = [(r["last"] - r["first"]) / (r["tokens"] - 1) for r in results if r["tokens"] > 1 and r["first"] and r["last"]]
    return {
        "clients": clients,
        "requests": len(results),
        "errors": len(errors),
        "error_sample": errors[:3],
        "prompt_tokens": prompt_tokens,
        "max_tokens": max_tokens,
        "generated_tokens": gen,
        "wall_s": wall,
        "agg_tok_s": gen / wall if wall > 0 else 0.0,
        "per_client_tok_s": statistics.mean([(r["tokens"] / (r["last"] - r["start"])) for r in results if r["last"]]) if results else 0.0,
        "ttft_p50_ms": percentile(ttft, 50) * 1e3,
        "ttft_p99_ms": percentile(ttft, 99) * 1e3,
        "itl_p50_ms": percentile(itl, 50) * 1e3,
        "itl_p99_ms": percentile(itl, 99) * 1e3,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="an already running server")
    src.add_argument("--synthetic", metavar="NAME", help="spawn `tern serve --synthetic NAME` (e.g. bitnet-2b4t)")
    src.add_argument("-m", "--model-path", help="spawn `tern serve -m MODEL`")
    ap.add_argument("--model", help="model name in requests (default: the server's first model)")
    ap.add_argument("--tern", default=os.environ.get("TERN_BIN", "target/release/tern"), help="tern binary to spawn")
    ap.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    ap.add_argument("--requests", type=int, default=2, help="requests per client per level")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=64, help="server slots when spawning")
    ap.add_argument("--ctx-size", type=int, default=512, help="server context per slot when spawning")
    ap.add_argument("--batch-tokens", type=int, default=256, help="server tokens per forward pass when spawning")
    ap.add_argument("--threads", type=int, default=0, help="server compute threads when spawning (0 = all cores)")
    ap.add_argument("--head-quant", default="auto", help="server LM head storage when spawning (auto = tern's default, as tern bench)")
    ap.add_argument("--api-key", default=os.environ.get("TERN_API_KEY"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x]
    if args.prompt_tokens + args.max_tokens > args.ctx_size and not args.url:
        sys.exit("--prompt-tokens + --max-tokens must fit in --ctx-size")

    proc = None
    url = args.url
    if not url:
        proc, url = spawn(args)
    try:
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        models = requests.get(url + "/v1/models", headers=headers, timeout=30).json()["data"]
        model = args.model or models[0]["id"]
        vocab_hi = 1000
        one_request(url, model, [200] * 8, 4, args.api_key)  # warm-up
        rows = []
        print(f"{'clients':>7} {'reqs':>5} {'err':>4} {'gen tok':>8} {'wall s':>7} {'agg tok/s':>10} {'tok/s/client':>12} "
              f"{'TTFT p50 ms':>11} {'TTFT p99 ms':>11} {'ITL p50 ms':>10} {'ITL p99 ms':>10}")
        for c in args.concurrency:
            r = run_level(url, model, c, args.requests, args.prompt_tokens, args.max_tokens, vocab_hi, args.api_key, args.seed + c)
            rows.append(r)
            print(f"{r['clients']:>7} {r['requests']:>5} {r['errors']:>4} {r['generated_tokens']:>8} {r['wall_s']:>7.2f} "
                  f"{r['agg_tok_s']:>10.1f} {r['per_client_tok_s']:>12.1f} {r['ttft_p50_ms']:>11.0f} {r['ttft_p99_ms']:>11.0f} "
                  f"{r['itl_p50_ms']:>10.1f} {r['itl_p99_ms']:>10.1f}", flush=True)
            if r["errors"]:
                print(f"   errors, e.g.: {r['error_sample']}", file=sys.stderr)
        if args.json:
            meta = {"model": model, "url": url, "synthetic": args.synthetic, "parallel": args.parallel, "ctx_size": args.ctx_size,
                    "batch_tokens": args.batch_tokens, "requests_per_client": args.requests}
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "levels": rows}, f, indent=2)
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
