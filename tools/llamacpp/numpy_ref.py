#!/usr/bin/env python3
"""Exact-math reference logits for the real GGUF test models: gguf-py dequantization + a float64 numpy
forward pass (no activation quantization, no f16 intermediates), for the same token ids as the llama.cpp
goldens. Writes crates/tern-cli/tests/data/numpy_logits_{smollm2,gemma3}.json in the same format as
dump_logits.cpp (top-20 ids/logits, row mean/std per position), plus, per prompt, how far llama.cpp's
committed logits are from this reference (so tern's tolerance can be stated relative to llama.cpp's own
error).

Architectures follow llama.cpp's graphs (src/models/llama.cpp, src/models/gemma3.cpp):
* llama (SmolLM2): RMSNorm, GGUF Q/K rows as stored with adjacent-pair ("NORM") RoPE, GQA, SwiGLU,
  tied head when output.weight is absent.
* gemma3: embeddings × sqrt(n_embd); norms stored as 1 + w; per-head q/k RMSNorm; NEOX RoPE with
  base rope.freq_base on every 6th layer (global) and 10000 on the others (sliding window 512, longer
  than every prompt); attention scale 1/sqrt(key_length); post-attention and post-FFN norms; GELU
  (tanh approximation, as ggml_gelu) gate × up.

    pip install gguf==0.19.0 numpy
    python3 tools/llamacpp/numpy_ref.py            # needs tools/testdata/fetch.sh smollm2 gemma3
"""
import json
import math
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DATA = os.environ.get("TERN_TESTDATA", os.path.join(ROOT, ".cache", "testdata"))
OUT = os.path.join(ROOT, "crates", "tern-cli", "tests", "data")
TOP_K = 20


class Model:
    def __init__(self, path):
        self.r = GGUFReader(path)
        self.arch = self.str("general.architecture")
        self.t = {t.name: t for t in self.r.tensors}

    def field(self, key, default=None):
        f = self.r.fields.get(key)
        if f is None:
            return default
        return f.parts[f.data[0]]

    def str(self, key):
        return bytes(self.field(key)).decode()

    def num(self, key, default=None):
        v = self.field(f"{self.arch}.{key}")
        return default if v is None else v[0].item()

    def w(self, name, dtype=np.float64):
        t = self.t[name]
        a = dequantize(t.data, t.tensor_type)
        shape = [int(x) for x in reversed(t.shape)]  # numpy order: rows, then the contiguous ne0
        return np.asarray(a, dtype=dtype).reshape(shape)

    def has(self, name):
        return name in self.t


def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, theta, neox):
    # x: [T, H, D]
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None] * inv[None, :]  # [T, D/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if neox:
        a, b = x[..., : d // 2], x[..., d // 2 :]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def attention(q, k, v, scale, window=None):
    T, H, D = q.shape
    kvh = k.shape[1]
    rep = H // kvh
    out = np.zeros((T, H, v.shape[-1]))
    for h in range(H):
        kh, vh = k[:, h // rep], v[:, h // rep]
        sc = (q[:, h] @ kh.T) * scale
        mask = np.tril(np.ones((T, T), dtype=bool))
        if window is not None:
            mask &= ~np.tril(np.ones((T, T), dtype=bool), -window)
        sc = np.where(mask, sc, -np.inf)
        sc = sc - sc.max(axis=-1, keepdims=True)
        p = np.exp(sc)
        p /= p.sum(axis=-1, keepdims=True)
        out[:, h] = p @ vh
    return out


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1 + np.exp(-x))


def forward(m, ids):
    arch = m.arch
    n_embd = m.num("embedding_length")
    n_layer = m.num("block_count")
    nh = m.num("attention.head_count")
    nkv = m.num("attention.head_count_kv", nh)
    hd = m.num("attention.key_length", n_embd // nh)
    eps = m.num("attention.layer_norm_rms_epsilon")
    theta = m.num("rope.freq_base", 10000.0)
    emb = m.w("token_embd.weight", np.float32)
    x = emb[ids].astype(np.float64)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    gemma = arch == "gemma3"
    if gemma:
        x = x * math.sqrt(n_embd)
        window = m.num("attention.sliding_window")
        pattern = m.num("attention.sliding_window_pattern", 6)
        theta_swa = m.num("rope.freq_base_swa", 10000.0)
    for i in range(n_layer):
        p = f"blk.{i}."
        h = rms(x, m.w(p + "attn_norm.weight"), eps)
        q = (h @ m.w(p + "attn_q.weight").T).reshape(T, nh, hd)
        k = (h @ m.w(p + "attn_k.weight").T).reshape(T, nkv, hd)
        v = (h @ m.w(p + "attn_v.weight").T).reshape(T, nkv, hd)
        if gemma:
            q = rms(q, m.w(p + "attn_q_norm.weight"), eps)
            k = rms(k, m.w(p + "attn_k_norm.weight"), eps)
            sliding = (i + 1) % pattern != 0
            th = theta_swa if sliding else theta
            q, k = rope(q, pos, th, True), rope(k, pos, th, True)
            a = attention(q, k, v, 1 / math.sqrt(hd), window if sliding else None)
        else:
            q, k = rope(q, pos, theta, False), rope(k, pos, theta, False)
            a = attention(q, k, v, 1 / math.sqrt(hd))
        a = a.reshape(T, nh * hd) @ m.w(p + "attn_output.weight").T
        if gemma:
            a = rms(a, m.w(p + "post_attention_norm.weight"), eps)
        x = x + a
        h = rms(x, m.w(p + "ffn_norm.weight"), eps)
        g = h @ m.w(p + "ffn_gate.weight").T
        u = h @ m.w(p + "ffn_up.weight").T
        f = (gelu_tanh(g) if gemma else silu(g)) * u
        f = f @ m.w(p + "ffn_down.weight").T
        if gemma:
            f = rms(f, m.w(p + "post_ffw_norm.weight"), eps)
        x = x + f
    x = rms(x, m.w("output_norm.weight"), eps)
    head = m.w("output.weight", np.float32) if m.has("output.weight") else emb
    logits = np.empty((T, head.shape[0]))
    for c in range(0, head.shape[0], 32768):
        logits[:, c : c + 32768] = x @ head[c : c + 32768].astype(np.float64).T
    cap = m.num("final_logit_softcapping")
    if cap:
        logits = cap * np.tanh(logits / cap)
    return logits


def main():
    for name, rel in [
        ("smollm2", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("gemma3", "gemma3/gemma-3-270m-Q4_K_M.gguf"),
    ]:
        path = os.path.join(DATA, rel)
        if not os.path.isfile(path):
            sys.exit(f"{path} missing: run tools/testdata/fetch.sh {name}")
        golden = json.load(open(os.path.join(OUT, f"llamacpp_logits_{name}.json")))
        m = Model(path)
        out = {
            "generator": "tools/llamacpp/numpy_ref.py (gguf-py 0.19.0 dequantization, float64 numpy forward)",
            "n_vocab": golden["n_vocab"],
            "top_k": TOP_K,
            "prompts": [],
        }
        for gp in golden["prompts"]:
            ids = gp["ids"]
            lg = forward(m, ids)
            assert lg.shape[1] == golden["n_vocab"], lg.shape
            positions = []
            worst_llamacpp = 0.0
            for t in range(len(ids)):
                row = lg[t]
                order = np.argsort(-row, kind="stable")[:TOP_K]
                positions.append(
                    {
                        "mean": float(row.mean()),
                        "std": float(row.std()),
                        "top_ids": [int(i) for i in order],
                        "top_logits": [round(float(row[i]), 5) for i in order],
                    }
                )
                ref = gp["positions"][t]
                d = max(abs(row[i] - l) for i, l in zip(ref["top_ids"], ref["top_logits"]))
                worst_llamacpp = max(worst_llamacpp, float(d))
            agree = sum(p["top_ids"][0] == r["top_ids"][0] for p, r in zip(positions, gp["positions"]))
            print(f"{name}: {gp['text'][:40]!r}: llama.cpp vs numpy worst top-20 |Δ| {worst_llamacpp:.3f}, "
                  f"top-1 agree {agree}/{len(ids)}")
            out["prompts"].append(
                {
                    "text": gp["text"],
                    "ids": ids,
                    "llamacpp_worst_top20_abs_diff": round(worst_llamacpp, 4),
                    "llamacpp_top1_agree": agree,
                    "positions": positions,
                }
            )
        with open(os.path.join(OUT, f"numpy_logits_{name}.json"), "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
