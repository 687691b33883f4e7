"""Writes crates/tern-convert/tests/data/llama_bitlinear_256: a random Llama checkpoint in transformers'
BitNet format (quantization_config bitnet, linear_class bitlinear, packed U8 weights + weight_scale) whose
rows are multiples of 256, so every ternary linear fits TQ1_0/TQ2_0 blocks (the tests/fixtures/hf ternary
models are narrower and fall back to Q4_0). Scales are powers of two and float weights are F16, so a
converted GGUF is exactly the checkpoint: tern must give identical logits for the HF directory and the
tq1_0/tq2_0 files, and llama.cpp's converter must write the same bytes (make_llamacpp_goldens.py).

    python3 tools/convert/make_ternary256.py      # numpy + safetensors
"""
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parents[2] / "crates/tern-convert/tests/data/llama_bitlinear_256"
H, FFN, NH, NKV, HD, LAYERS, VOCAB = 256, 512, 4, 2, 64, 2, 256
rng = np.random.default_rng(20260101)


def f16(shape, std):
    x = rng.normal(0.0, std, size=shape).astype(np.float32)
    return x.astype(np.float16)


def packed(out, inp):
    """transformers pack_weights: row k*R + r goes to bits 2k of packed row r (R = out / 4)."""
    t = rng.integers(-1, 2, size=(out, inp), dtype=np.int8)
    codes = (t + 1).astype(np.uint8)
    r = out // 4
    p = codes[0:r] | (codes[r:2 * r] << 2) | (codes[2 * r:3 * r] << 4) | (codes[3 * r:4 * r] << 6)
    return p.astype(np.uint8)


tensors = {"model.embed_tokens.weight": f16((VOCAB, H), 0.5), "model.norm.weight": (1.0 + f16((H,), 0.1)).astype(np.float16)}
scales = [4.0, 8.0, 16.0, 32.0]
for i in range(LAYERS):
    p = f"model.layers.{i}"
    tensors[f"{p}.input_layernorm.weight"] = (1.0 + f16((H,), 0.1)).astype(np.float16)
    tensors[f"{p}.post_attention_layernorm.weight"] = (1.0 + f16((H,), 0.1)).astype(np.float16)
    for j, (name, out, inp) in enumerate([
        ("self_attn.q_proj", NH * HD, H), ("self_attn.k_proj", NKV * HD, H), ("self_attn.v_proj", NKV * HD, H),
        ("self_attn.o_proj", H, NH * HD), ("mlp.gate_proj", FFN, H), ("mlp.up_proj", FFN, H), ("mlp.down_proj", H, FFN),
    ]):
        tensors[f"{p}.{name}.weight"] = packed(out, inp)
        tensors[f"{p}.{name}.weight_scale"] = np.array([scales[(i + j) % 4]], dtype=np.float16)
OUT.mkdir(parents=True, exist_ok=True)
save_file(tensors, OUT / "model.safetensors", metadata={"format": "pt"})
config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": FFN,
    "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": HD, "num_hidden_layers": LAYERS,
    "vocab_size": VOCAB, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "hidden_act": "silu", "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 0,
    "torch_dtype": "float16",
    "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"},
}
(OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")
print(OUT, sum(v.nbytes for v in tensors.values()), "bytes")
