"""Golden for tern-convert's Q5_0 quantizer (llama-quantize's fallback for Q4_K): gguf-py's numpy
port of ggml's quantize_row_q5_0_ref (`gguf.quants.Q5_0`, PyPI gguf) applied to a few blocks of
random and edge-case values. Writes crates/tern-convert/tests/data/q5_0_golden.json.

    python3 tools/convert/make_q5_0_golden.py      # numpy + gguf (pip install gguf)
"""
import json
from importlib.metadata import version
from pathlib import Path

import gguf
import numpy as np

OUT = Path(__file__).resolve().parents[2] / "crates/tern-convert/tests/data/q5_0_golden.json"
rng = np.random.default_rng(5)
blocks = [
    rng.normal(0, 1, 32),
    rng.normal(0, 0.02, 32),
    np.zeros(32),
    -np.abs(rng.normal(0, 3, 32)),
    np.linspace(-1, 1, 32),
    np.concatenate([[5.0], rng.uniform(-5, 5, 31)]),
    rng.uniform(-1e-3, 1e-3, 32),
    np.round(rng.normal(0, 4, 32)) / 4,
]
x = np.concatenate(blocks).astype(np.float32)
q = gguf.quants.quantize(x.reshape(4, -1), gguf.GGMLQuantizationType.Q5_0)
OUT.write_text(json.dumps({
    "source": f"gguf {version('gguf')} gguf.quants.Q5_0",
    "values_f32_bits": [int(v) for v in x.view(np.uint32)],
    "q5_0_hex": q.tobytes().hex(),
}) + "\n")
print(OUT, x.size, "values", len(q.tobytes()), "bytes")
