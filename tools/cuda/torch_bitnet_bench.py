#!/usr/bin/env python3
"""PyTorch / transformers bf16 baseline for tern's CUDA benchmark (tools/cuda/run_all.sh).

Builds a BitNetForCausalLM of microsoft/bitnet-b1.58-2B-4T's shape (30 layers, hidden 2560, FFN 6912,
20 / 5 heads of 128, vocab 128256, relu2, attention and FFN sub-norms, tied head) with random
weights in torch.bfloat16 on the GPU. Without a quantization_config transformers runs it as a dense
bf16 model (nn.Linear), which is what "transformers bf16" means here. Measures, with CUDA
synchronisation around wall-clock timers:
  * decode at batch 1: greedy `generate` of 256 new tokens after a 128-token prompt (EOS disabled),
    dynamic cache; tok/s = new tokens / (generate time - prefill time);
  * decode at batch 1 with a static cache and torch.compile(mode="reduce-overhead") (CUDA graphs),
    when --compile is given;
  * prefill pp512: one forward of 512 tokens (logits_to_keep=1), median of 5;
  * 64 concurrent sequences: greedy `generate` with batch 64, 128-token prompts, 128 new tokens;
    aggregate tok/s = 64 * 128 / (time - prefill time).
Prints a markdown table last. Usage: python3 torch_bitnet_bench.py [--compile] [--seqs 64]
"""
import argparse
import statistics
import sys
import time

import torch
import transformers
from transformers import BitNetConfig, BitNetForCausalLM


def sync():
    torch.cuda.synchronize()


def timed(f, reps=5, warm=1):
    for _ in range(warm):
        f()
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--seqs", type=int, default=64)
    ap.add_argument("--new", type=int, default=256)
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = BitNetConfig(
        vocab_size=128256,
        hidden_size=2560,
        intermediate_size=6912,
        num_hidden_layers=30,
        num_attention_heads=20,
        num_key_value_heads=5,
        hidden_act="relu2",
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={"rope_theta": 500000.0, "rope_type": "default"},
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = BitNetForCausalLM(cfg).to(torch.bfloat16).eval()
    sync()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}, "
          f"{n_params / 1e9:.2f} B params bf16, built in {time.perf_counter() - t0:.1f} s", flush=True)
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    rows = []

    def row(what, value, note):
        print(f"{what} = {value} ({note})", flush=True)
        rows.append((what, value, note))

    with torch.inference_mode():
        g = torch.Generator(device="cuda").manual_seed(1)
        prompt = torch.randint(500, 128000, (1, 128), device="cuda", generator=g)
        t_pf = timed(lambda: model(prompt, logits_to_keep=1), reps=3)
        new = a.new

        def decode():
            return model.generate(prompt, max_new_tokens=new, min_new_tokens=new, **gen)

        t = timed(decode, reps=2)
        row("decode b1, ctx 128->384, dynamic cache", f"{new / (t - t_pf):.0f} tok/s",
            f"generate {new} tokens: {t:.2f} s (prefill {t_pf * 1e3:.1f} ms excluded)")

        if a.compile:
            try:
                cm = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
                model.forward = cm

                def decode_static():
                    return model.generate(prompt, max_new_tokens=new, min_new_tokens=new,
                                          cache_implementation="static", **gen)

                t0 = time.perf_counter()
                decode_static()
                sync()
                print(f"compile + first static generate: {time.perf_counter() - t0:.1f} s", flush=True)
                t = timed(decode_static, reps=2, warm=0)
                row("decode b1, static cache + torch.compile", f"{new / (t - t_pf):.0f} tok/s",
                    f"reduce-overhead (CUDA graphs); {t:.2f} s per generate")
            except Exception as e:  # report, keep the other numbers
                row("decode b1, static cache + torch.compile", "failed", str(e).splitlines()[0][:120])
            model.forward = BitNetForCausalLM.forward.__get__(model)

        x512 = torch.randint(500, 128000, (1, 512), device="cuda", generator=g)
        t = timed(lambda: model(x512, logits_to_keep=1), reps=5)
        row("prefill pp512", f"{512 / t:.0f} tok/s", f"median {t * 1e3:.2f} ms per 512-token forward")

        n = a.seqs
        prompts = torch.randint(500, 128000, (n, 128), device="cuda", generator=g)
        mask = torch.ones_like(prompts)
        t_pf = timed(lambda: model(prompts, attention_mask=mask, logits_to_keep=1), reps=2)
        steps = 128

        def batch():
            return model.generate(prompts, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps, **gen)

        t = timed(batch, reps=1)
        row(f"decode {n} sequences, ctx 128->256", f"{n * steps / (t - t_pf):.0f} tok/s",
            f"aggregate; generate {t:.2f} s (batched prefill {t_pf * 1e3:.0f} ms excluded)")
        row(f"batched prefill {n} x 128", f"{n * 128 / t_pf:.0f} tok/s", "one forward")

    print()
    print(f"| transformers bf16, bitnet-2b4t shape on {torch.cuda.get_device_name()} | value | notes |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
