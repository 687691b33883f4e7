"""Runs llama.cpp's own converter (convert_hf_to_gguf.py of the llama.cpp vendored by llama-cpp-python
0.3.36) on test models and tokenizers, and records what it writes as a compact golden:
crates/tern-convert/tests/data/llamacpp_goldens.json. tern-convert's tests convert the same inputs
and must produce the same metadata values and byte-identical tensors (see tests/llamacpp_goldens.rs).

Cases:
* "model": a tests/fixtures/hf model directory (or tests/data/llama_bitlinear_256, a ternary model whose
  rows fit TQ blocks) plus one of the small tokenizers of
  crates/tern-convert/tests/data (merged into one directory, as llama.cpp wants), converted with
  --outtype f16 / bf16 / q8_0 / tq1_0 / tq2_0. Metadata values are recorded verbatim (arrays as a SHA-256 digest, see
  `digest`), every tensor as type, dims and SHA-256 of its bytes.
* "vocab": real tokenizers from tools/testdata/fetch.sh tokenizers (Llama 3, Qwen3, Llama 2
  SentencePiece) with a minimal config.json, converted with --vocab-only; tokenizer metadata recorded.

The fixture tokenizers are not in llama.cpp's pre-tokenizer table, so for them (and only them)
`get_vocab_base_pre` is patched to answer "gpt-2", which is what tern-convert infers from their
ByteLevel regex. llama.cpp's converter needs torch, transformers, sentencepiece and numpy; this is run on
the device machine (tools/convert/run_goldens_on_device.sh), which has them.

    python3 tools/convert/make_llamacpp_goldens.py [OUT_JSON]
"""
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("TERN_TESTDATA", ROOT / ".cache/testdata"))
LLAMA = Path(os.environ.get("LLAMA_CPP_DIR", TESTDATA / "llama-cpp-python/vendor/llama.cpp"))
FIXTURES = ROOT / "tests/fixtures/hf"
TOKS = ROOT / "crates/tern-convert/tests/data"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else TOKS / "llamacpp_goldens.json"

# (model directory: a tests/fixtures/hf name or a path under crates/tern-convert/tests/data, tokenizer, types)
MODEL_CASES = [
    ("llama_bitlinear_256", "tok_bpe240", ["f16", "q8_0", "tq1_0", "tq2_0"]),
    ("llama_rope_linear", "tok_bpe240", ["f16", "q8_0"]),
    ("llama_rope_yarn", "tok_bpe240", ["f16", "q8_0"]),
    ("llama_rope_dynamic", "tok_bpe240", ["f16"]),
    ("llama_llama3_rope_bf16", "tok_llamahf", ["f16", "bf16", "q8_0"]),
    ("llama_bitlinear_bf16", "tok_bpe240", ["f16", "q8_0"]),
    ("qwen2_bias", "tok_bpe240", ["f16", "q8_0"]),
    ("qwen3_tied", "tok_spm", ["f16", "q8_0"]),
]

VOCAB_CASES = [
    ("llama3", "tokenizers/lenml-llama3/models", ["tokenizer.json", "tokenizer_config.json"],
     {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256}),
    ("qwen3", "tokenizers/lenml-qwen3/models", ["tokenizer.json", "tokenizer_config.json"],
     {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936}),
    ("llama2_spm", "tokenizers", ["llama2-tokenizer.model"],
     {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
      "bos_token_id": 1, "eos_token_id": 2}),
]
VOCAB_CONFIG_BASE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128,
                     "rms_norm_eps": 1e-5}

sys.path.insert(0, str(LLAMA))
sys.path.insert(1, str(LLAMA / "gguf-py"))
import gguf  # noqa: E402  (llama.cpp's own gguf-py)
import convert_hf_to_gguf  # noqa: E402
from conversion import base as conv_base  # noqa: E402

_orig_pre = conv_base.TextModel.get_vocab_base_pre


def _pre(self, tokenizer):
    try:
        return _orig_pre(self, tokenizer)
    except NotImplementedError:
        if (self.dir_model / "TERN_TEST_TOKENIZER").exists():
            return "gpt-2"
        raise


conv_base.TextModel.get_vocab_base_pre = _pre


def digest(kind, values):
    """SHA-256 of an array: strings as u32 length + UTF-8 bytes, ints as i64, floats as f32 bits, bools
    as one byte, all little-endian."""
    h = hashlib.sha256()
    for v in values:
        if kind == "str":
            b = v if isinstance(v, bytes) else v.encode("utf-8")
            h.update(struct.pack("<I", len(b)) + b)
        elif kind == "int":
            h.update(struct.pack("<q", int(v)))
        elif kind == "float":
            h.update(struct.pack("<f", float(v)))
        elif kind == "bool":
            h.update(b"\x01" if v else b"\x00")
    return h.hexdigest()


def field_value(f):
    vt = gguf.GGUFValueType
    t0 = f.types[0]
    if t0 == vt.ARRAY:
        sub = f.types[-1]
        items = [f.parts[i] for i in f.data]
        if sub == vt.STRING:
            vals = [bytes(p.tobytes()) for p in items]
            kind = "str"
        elif sub in (vt.FLOAT32, vt.FLOAT64):
            vals = [float(p[0]) for p in items]
            kind = "float"
        elif sub == vt.BOOL:
            vals = [bool(p[0]) for p in items]
            kind = "bool"
        else:
            vals = [int(p[0]) for p in items]
            kind = "int"
        return {"array": sub.name, "len": len(vals), "sha256": digest(kind, vals),
                "head": [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in vals[:8]]}
    p = f.parts[f.data[0]]
    if t0 == vt.STRING:
        return {"type": "STRING", "value": bytes(p.tobytes()).decode("utf-8")}
    if t0 in (vt.FLOAT32, vt.FLOAT64):
        return {"type": t0.name, "value": float(p[0])}
    if t0 == vt.BOOL:
        return {"type": "BOOL", "value": bool(p[0])}
    return {"type": t0.name, "value": int(p[0])}


def dump(path, tensors=True):
    r = gguf.GGUFReader(path)
    md = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        md[name] = field_value(f)
    out = {"metadata": md}
    if tensors:
        raw = Path(path).read_bytes()
        ts = {}
        for t in r.tensors:
            b = raw[t.data_offset:t.data_offset + t.n_bytes]
            ts[t.name] = {"type": t.tensor_type.name, "dims": [int(x) for x in t.shape],
                          "sha256": hashlib.sha256(b).hexdigest()}
            if t.name == "rope_freqs.weight":
                ts[t.name]["values"] = [float(x) for x in t.data]
        out["tensors"] = ts
    return out


def run_convert(model_dir, outfile, outtype, vocab_only=False):
    # --no-lazy: the lazy (meta-device) path of dequant_bitnet fails for packed BitNet weights.
    argv = ["convert_hf_to_gguf.py", str(model_dir), "--outfile", str(outfile), "--outtype", outtype, "--no-lazy"]
    if vocab_only:
        argv.append("--vocab-only")
    sys.argv = argv
    convert_hf_to_gguf.main()


def main():
    work = Path(tempfile.mkdtemp())
    goldens = {"llama_cpp": "llama-cpp-python 0.3.36 vendored convert_hf_to_gguf.py", "models": [], "vocabs": []}
    for fixture, tok, types in MODEL_CASES:
        d = work / fixture
        shutil.copytree(FIXTURES / fixture if (FIXTURES / fixture).is_dir() else TOKS / fixture, d)
        for f in (TOKS / tok).iterdir():
            shutil.copy(f, d / f.name)
        (d / "TERN_TEST_TOKENIZER").write_text("")
        if (d / "reference.safetensors").exists():
            (d / "reference.safetensors").unlink()
        for ty in types:
            out = work / f"{fixture}-{ty}.gguf"
            run_convert(d, out, ty)
            g = dump(out)
            g.update({"fixture": fixture, "tokenizer": tok, "outtype": ty})
            goldens["models"].append(g)
            print("model", fixture, tok, ty, len(g["tensors"]), "tensors", flush=True)
    for name, src, files, cfg in VOCAB_CASES:
        srcdir = TESTDATA / src
        if not all((srcdir / f).exists() for f in files):
            print("skip vocab", name, "(run tools/testdata/fetch.sh tokenizers)", flush=True)
            continue
        d = work / f"vocab-{name}"
        d.mkdir()
        for f in files:
            dst = "tokenizer.model" if f.endswith(".model") else f
            shutil.copy(srcdir / f, d / dst)
        config = dict(VOCAB_CONFIG_BASE, **cfg)
        (d / "config.json").write_text(json.dumps(config, indent=2))
        out = work / f"vocab-{name}.gguf"
        run_convert(d, out, "f16", vocab_only=True)
        g = dump(out, tensors=False)
        g["metadata"] = {k: v for k, v in g["metadata"].items() if k.startswith("tokenizer.")}
        g.update({"name": name, "source": src, "files": files, "config": config})
        goldens["vocabs"].append(g)
        print("vocab", name, len(g["metadata"]), "keys", flush=True)
    OUT.write_text(json.dumps(goldens, indent=1, sort_keys=True) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
