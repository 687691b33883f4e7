#!/usr/bin/env python3
"""Generate the golden files that crates/tern-gguf's tests compare against.

Independent references:
  * gguf-py (`pip install gguf numpy`, written against gguf 0.19.0): `gguf.quants.quantize`/`dequantize`
    for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 TQ1_0 TQ2_0 BF16 F16, dequantize for Q2_K..Q6_K, `GGUFWriter` and
    `GGUFReader` for whole files.
  * ggml's own C reference code (`quantize_row_*_ref`, `dequantize_row_*` in ggml/src/ggml-quants.c of the
    llama.cpp tree vendored in the llama-cpp-python sdist, fetched by `tools/testdata/fetch.sh llamacpp`),
    driven by tools/gguf/ggml_ref.c, built here with `cc -O2 -DNDEBUG` (no -march, hence no FMA).
    Gives the K-quant quantizer outputs (Q2_K..Q6_K) that gguf-py cannot produce, and cross-checks gguf-py.
  * I2_S (bitnet.cpp) has no Python reference; `i2s_quantize`/`i2s_dequantize` below are a vectorised numpy
    transcription of bitnet.cpp's `quantize_i2_s` (x86, QK_I2_S = 128) layout, written independently of the
    Rust code.

Outputs (all under crates/tern-gguf/tests/data/, total < 2 MB):
  quant_goldens.json + quant_goldens.bin   per (type, case): input f32, quantized bytes, dequantized f32
  pywriter.gguf + pywriter.json            a file written by gguf-py's GGUFWriter (every value type,
                                           several tensor types) and gguf-py's parse of it
  pywriter_align64.gguf + .json            same with general.alignment = 64
  real_files.json                          facts about the real GGUFs read with gguf-py (SmolLM2 Q4_1,
                                           llama.cpp's ggml-vocab-*.gguf), incl. sampled dequantized values
  rust_writer.json                         gguf-py's parse of rust_writer.gguf (written by the Rust test
                                           `writer_golden` with TERN_BLESS=1); only if that file exists

Usage: python3 tools/gguf/make_goldens.py [--testdata DIR] [--llama-cpp DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType as VT
from gguf.quants import quantize as py_quantize, dequantize as py_dequantize

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "crates" / "tern-gguf" / "tests" / "data"


# ----------------------------------------------------------------------------------------------------
# ggml C reference driver

def build_ggml_ref(llama_cpp: Path, workdir: Path) -> Path:
    ggml = llama_cpp / "ggml"
    src = ggml / "src" / "ggml-quants.c"
    if not src.exists():
        sys.exit(f"ggml sources not found at {src}; run tools/testdata/fetch.sh llamacpp or pass --llama-cpp")
    exe = workdir / "ggml_ref"
    flags = ["-O2", "-DNDEBUG", "-std=c11", f"-I{ggml / 'include'}", f"-I{ggml / 'src'}"]
    subprocess.run(["cc", *flags, "-c", str(src), "-o", str(workdir / "q.o")], check=True)
    subprocess.run(["cc", *flags, str(Path(__file__).with_name("ggml_ref.c")), str(workdir / "q.o"), "-lm",
                    "-o", str(exe)], check=True)
    return exe


class GgmlRef:
    NAMES = {QT.Q4_0: "q4_0", QT.Q4_1: "q4_1", QT.Q5_0: "q5_0", QT.Q5_1: "q5_1", QT.Q8_0: "q8_0",
             QT.Q2_K: "q2_K", QT.Q3_K: "q3_K", QT.Q4_K: "q4_K", QT.Q5_K: "q5_K", QT.Q6_K: "q6_K",
             QT.TQ1_0: "tq1_0", QT.TQ2_0: "tq2_0"}

    def __init__(self, exe: Path, workdir: Path):
        self.exe, self.dir = exe, workdir

    def quantize(self, qt: QT, x: np.ndarray) -> bytes:
        i, o = self.dir / "in.f32", self.dir / "out.bin"
        i.write_bytes(x.astype("<f4").tobytes())
        subprocess.run([str(self.exe), "quantize", self.NAMES[qt], str(i), str(o)], check=True)
        return o.read_bytes()

    def dequantize(self, qt: QT, q: bytes, n: int) -> np.ndarray:
        i, o = self.dir / "in.bin", self.dir / "out.f32"
        i.write_bytes(q)
        subprocess.run([str(self.exe), "dequantize", self.NAMES[qt], str(i), str(n), str(o)], check=True)
        return np.frombuffer(o.read_bytes(), dtype="<f4").copy()


# ----------------------------------------------------------------------------------------------------
# I2_S reference (bitnet.cpp quantize_i2_s, x86 layout)

def i2s_quantize(x: np.ndarray) -> bytes:
    x64 = x.astype(np.float64)
    scale = float(np.nanmax(np.abs(x64))) if x.size else 0.0  # C: fmax ignores NaN
    codes = np.where(np.abs(x64) < 1e-6, 1, np.where(x64 * scale > 0, 2, 0)).astype(np.uint8)
    blocks = codes.reshape(-1, 4, 32)  # block, group (bit pair), position j
    packed = (blocks[:, 0] << 6) | (blocks[:, 1] << 4) | (blocks[:, 2] << 2) | blocks[:, 3]
    tail = np.zeros(32, np.uint8)
    tail[:4] = np.frombuffer(np.float32(scale).tobytes(), np.uint8)
    return packed.astype(np.uint8).tobytes() + tail.tobytes()


def i2s_dequantize(b: bytes, n: int) -> np.ndarray:
    packed = np.frombuffer(b[: n // 4], np.uint8).reshape(-1, 32)
    scale = np.frombuffer(b[n // 4: n // 4 + 4], "<f4")[0]
    codes = np.stack([(packed >> s) & 3 for s in (6, 4, 2, 0)], axis=1)  # (blocks, 4, 32)
    return ((codes.astype(np.float32) - np.float32(1)) * scale).astype(np.float32).ravel()


# ----------------------------------------------------------------------------------------------------
# quantization goldens

BLOCK = {QT.F16: 1, QT.BF16: 1, QT.Q4_0: 32, QT.Q4_1: 32, QT.Q5_0: 32, QT.Q5_1: 32, QT.Q8_0: 32,
         QT.Q2_K: 256, QT.Q3_K: 256, QT.Q4_K: 256, QT.Q5_K: 256, QT.Q6_K: 256, QT.TQ1_0: 256, QT.TQ2_0: 256}
PY_QUANTIZES = {QT.F16, QT.BF16, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.TQ1_0, QT.TQ2_0}
K_TYPES = [QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K]


def input_cases(block: int, seed: int) -> list[tuple[str, np.ndarray, tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    block = max(block, 32)
    n = 512 if block == 32 else 1024
    rows = 2
    nb = n // block
    f32 = np.float32

    def blocks_scaled(scales):
        x = rng.standard_normal(n).astype(f32).reshape(nb, block)
        return (x * np.asarray(scales, np.float64)[:, None]).astype(f32).ravel()

    cases = [("normal", rng.standard_normal(n).astype(f32))]
    # per-block magnitudes from 1e-8 to 1e4, plus an all-tiny block whose f16 scale underflows to 0
    sc = 10.0 ** rng.uniform(-8, 4, nb)
    sc[0] = 1e-30
    cases.append(("extreme", blocks_scaled(sc)))
    # values whose scales overflow f16 (d becomes inf) next to ordinary ones
    sc = np.ones(nb)
    sc[nb // 2] = 1e6
    cases.append(("overflow", blocks_scaled(sc)))
    # all-zero blocks, a block with a single non-zero, and ordinary blocks
    x = rng.standard_normal(n).astype(f32).reshape(nb, block)
    x[0] = 0
    x[-1] = 0
    x[1] = 0
    x[1, 3] = -2.5
    cases.append(("zeros", x.ravel()))
    # ternary weights {-a, 0, a} per block (BitNet-style), and strictly positive values (min > 0 paths)
    a = rng.uniform(0.01, 0.1, nb)[:, None]
    cases.append(("ternary", (rng.integers(-1, 2, (nb, block)) * a).astype(f32).ravel()))
    cases.append(("positive", rng.uniform(0.5, 3.0, n).astype(f32)))
    # values on a half-integer grid, to exercise rounding ties
    cases.append(("ties", (rng.integers(-16, 17, n) * 0.5).astype(f32)))
    return [(name, x, (rows, n // rows)) for name, x in cases]


def special_floats(qt: QT) -> np.ndarray:
    v = [0.0, -0.0, 1.0, -1.0, 65504.0, 65520.0, 70000.0, -1e10, 6e-8, 3e-8, 1e-6, 1.0 + 2**-11,
         1.0 + 3 * 2**-11, np.inf, -np.inf, 1e38, -3.4e38, 2**-126, 2**-149, 1.00390625, 1.01171875]
    if qt == QT.BF16:
        v += [np.nan, float(np.float32(np.uint32(0x7F800001).view(np.float32)))]
    else:
        v += [np.nan]
    x = np.array(v, dtype=np.float32)
    return np.resize(x, 64).astype(np.float32)


class Blob:
    def __init__(self):
        self.buf = bytearray()

    def add(self, b: bytes) -> list[int]:
        while len(self.buf) % 4:
            self.buf.append(0)
        off = len(self.buf)
        self.buf += b
        return [off, len(b)]


def same_f32(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a, np.float32).ravel()
    b = np.asarray(b, np.float32).ravel()
    if a.shape != b.shape:
        return False
    nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(nan | (a.view(np.uint32) == b.view(np.uint32))))


def make_quant_goldens(ref: GgmlRef) -> dict:
    blob = Blob()
    entries = []
    notes = []

    def record(qt_name, case, shape, x, q, deq, qsrc, check_quantize):
        entries.append({
            "type": qt_name, "case": case, "shape": list(shape), "n": int(np.prod(shape)),
            "input": blob.add(x.astype("<f4").tobytes()) if x is not None else None,
            "quant": blob.add(q), "dequant": blob.add(np.asarray(deq, "<f4").tobytes()),
            "quant_source": qsrc, "check_quantize": check_quantize,
        })

    for qt, block in BLOCK.items():
        for case, x, shape in input_cases(block, seed=int(qt) * 7919 + 1):
            rows, cols = shape
            if qt in PY_QUANTIZES:
                q = py_quantize(x.reshape(rows, cols), qt)
                qb = np.ascontiguousarray(q).view(np.uint8).tobytes()
                deq = py_dequantize(np.frombuffer(qb, np.uint8).reshape(rows, -1), qt).ravel()
                if qt in GgmlRef.NAMES:
                    cq = ref.quantize(qt, x)
                    if cq != qb:
                        nd = sum(1 for a, b in zip(cq, qb) if a != b)
                        notes.append(f"{qt.name}/{case}: gguf-py and ggml C quantize differ in {nd} bytes")
                    if not same_f32(ref.dequantize(qt, qb, x.size), deq):
                        notes.append(f"{qt.name}/{case}: gguf-py and ggml C dequantize differ")
                record(qt.name, case, shape, x, qb, deq, "gguf-py", True)
            else:
                # K-quants: gguf-py only dequantizes; ggml C quantizes.
                qb = ref.quantize(qt, x)
                deq = py_dequantize(np.frombuffer(qb, np.uint8).reshape(rows, -1), qt).ravel()
                if not same_f32(ref.dequantize(qt, qb, x.size), deq):
                    notes.append(f"{qt.name}/{case}: gguf-py and ggml C dequantize differ")
                record(qt.name, case, shape, x, qb, deq, "ggml-c", True)
        if qt in (QT.F16, QT.BF16):
            x = special_floats(qt)
            q = py_quantize(x.reshape(1, -1), qt)
            qb = np.ascontiguousarray(q).view(np.uint8).tobytes()
            deq = py_dequantize(np.frombuffer(qb, np.uint8).reshape(1, -1), qt).ravel()
            record(qt.name, "special", (1, x.size), x, qb, deq, "gguf-py", True)
            # every 8th bit pattern plus the exponent/sign edges, dequantize only
            pats = np.unique(np.concatenate([np.arange(0, 65536, 8), np.arange(0x7bf8, 0x7c08),
                                             np.arange(0xfbf8, 0xfc08), np.arange(0, 8), np.arange(0x8000, 0x8008),
                                             np.arange(0x7f78, 0x7f88), np.arange(0xff78, 0xff88)]))
            bits = pats.astype(np.uint16).view(np.uint8).tobytes()
            deq = py_dequantize(np.frombuffer(bits, np.uint8).reshape(1, -1), qt).ravel()
            record(qt.name, "bit_patterns", (1, pats.size), None, bits, deq, "bit-patterns", False)

    # random bytes through every dequantizer (fp16 scale fields forced to finite, moderate values)
    rng = np.random.default_rng(99)
    scale_fields = {QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2], QT.Q8_0: [0],
                    QT.Q2_K: [80, 82], QT.Q3_K: [108], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208],
                    QT.TQ1_0: [52], QT.TQ2_0: [64]}
    for qt, offs in scale_fields.items():
        block, tsize = gguf.GGML_QUANT_SIZES[qt]
        nblk = 8
        raw = rng.integers(0, 256, (nblk, tsize), dtype=np.uint8)
        for o in offs:
            d = (rng.uniform(-1, 1, nblk) * 10.0 ** rng.uniform(-6, 2, nblk)).astype(np.float16)
            raw[:, o:o + 2] = d.view(np.uint8).reshape(nblk, 2)
        deq = py_dequantize(raw.reshape(1, -1), qt).ravel()
        if qt in GgmlRef.NAMES and not same_f32(ref.dequantize(qt, raw.tobytes(), nblk * block), deq):
            notes.append(f"{qt.name}/random_bytes: gguf-py and ggml C dequantize differ")
        record(qt.name, "random_bytes", (1, nblk * block), None, raw.tobytes(), deq, "random", False)

    # I2_S: numpy transcription of bitnet.cpp (whole tensor, one scale)
    rng = np.random.default_rng(1236)
    for case, x in [
        ("ternary", (rng.integers(-1, 2, 1024) * np.float32(0.0431)).astype(np.float32)),
        ("normal", rng.standard_normal(1024).astype(np.float32)),
        ("small_values", np.where(rng.random(1024) < 0.3, rng.uniform(-2e-6, 2e-6, 1024),
                                  rng.standard_normal(1024)).astype(np.float32)),
        ("zeros", np.zeros(512, np.float32)),
    ]:
        qb = i2s_quantize(x)
        record("I2_S", case, (x.size // 256 if x.size >= 256 else 1, min(256, x.size)), x, qb,
               i2s_dequantize(qb, x.size), "numpy-bitnet", True)

    (OUT / "quant_goldens.bin").write_bytes(bytes(blob.buf))
    meta = {
        "generator": "tools/gguf/make_goldens.py",
        "gguf_py_version": gguf_version(),
        "numpy_version": np.__version__,
        "cross_check_notes": notes,
        "tolerance": "bitwise f32 (NaN == NaN)",
        "entries": entries,
    }
    (OUT / "quant_goldens.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"quant goldens: {len(entries)} entries, {len(blob.buf)} bytes; cross-check notes: {notes or 'none'}")
    return meta


def gguf_version() -> str:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # pragma: no cover
        return "unknown"


# ----------------------------------------------------------------------------------------------------
# whole files

def field_value(f) -> object:
    """Decode a ReaderField into JSON: {"type": ..., "value": ...} with nested arrays kept nested."""
    parts = f.parts
    types = f.types

    def scalar(t, part):
        if t == VT.STRING:
            raise AssertionError
        v = part.tolist()[0]
        if t == VT.BOOL:
            return bool(v)
        if t in (VT.FLOAT32, VT.FLOAT64):
            return float(v)
        return int(v)

    def string(part):
        b = part.tobytes()
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": b.hex()}

    # parts: [keylen, key, type, ...]; walk the value parts recursively.
    pos = 3

    def read(t):
        nonlocal pos
        if t == VT.STRING:
            s = string(parts[pos + 1])
            pos += 2
            return {"type": "str", "value": s}
        if t == VT.ARRAY:
            et = VT(int(parts[pos][0]))
            n = int(parts[pos + 1][0])
            pos += 2
            if et == VT.ARRAY:
                return {"type": "arr", "elem": "arr", "value": [read(VT.ARRAY) for _ in range(n)]}
            if et == VT.STRING:
                vals = []
                for _ in range(n):
                    vals.append(string(parts[pos + 1]))
                    pos += 2
                return {"type": "arr", "elem": "str", "value": vals}
            # gguf-py stores numeric arrays element by element
            vals = []
            for _ in range(n):
                vals.append(scalar(et, parts[pos]))
                pos += 1
            return {"type": "arr", "elem": TYPE_NAMES[et], "value": vals}
        v = scalar(t, parts[pos])
        pos += 1
        return {"type": TYPE_NAMES[t], "value": v}

    return read(types[0])


TYPE_NAMES = {VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32",
              VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "str", VT.ARRAY: "arr",
              VT.UINT64: "u64", VT.INT64: "i64", VT.FLOAT64: "f64"}


def describe_file(path: Path) -> dict:
    r = gguf.GGUFReader(str(path))
    kv = []
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        kv.append({"key": k, **field_value(f)})
    tensors = []
    data_start = min((t.data_offset for t in r.tensors), default=None)
    for t in r.tensors:
        raw = np.asarray(t.data).view(np.uint8).tobytes()
        tensors.append({
            "name": t.name, "dims": [int(d) for d in t.shape], "type": t.tensor_type.name,
            "type_id": int(t.tensor_type), "offset": int(t.data_offset - data_start),
            "n_bytes": int(t.n_bytes), "sha256": hashlib.sha256(raw).hexdigest(),
            **({"data_hex": raw.hex()} if len(raw) <= 4096 else {}),
        })
    return {
        "version": int(r.fields["GGUF.version"].contents()),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "file_size": path.stat().st_size,
        "kv": kv,
        "tensors": tensors,
    }


def make_pywriter_files() -> None:
    rng = np.random.default_rng(7)
    for fname, align in [("pywriter.gguf", None), ("pywriter_align64.gguf", 64)]:
        path = OUT / fname
        w = gguf.GGUFWriter(str(path), "tern-test")
        if align:
            w.add_custom_alignment(align)
        w.add_uint8("t.u8", 200)
        w.add_int8("t.i8", -100)
        w.add_uint16("t.u16", 60000)
        w.add_int16("t.i16", -30000)
        w.add_uint32("t.u32", 4000000000)
        w.add_int32("t.i32", -2000000000)
        w.add_float32("t.f32", 3.14159)
        w.add_uint64("t.u64", 2**63 + 12345)
        w.add_int64("t.i64", -2**62)
        w.add_float64("t.f64", 2.718281828459045)
        w.add_bool("t.bool_true", True)
        w.add_bool("t.bool_false", False)
        w.add_string("t.str", "hello, gguf")
        w.add_string("t.str_unicode", "héllo ✓ 🦙 \u0000 end")
        w.add_string("t.str_empty", "")
        for vt in [VT.UINT8, VT.INT8, VT.UINT16, VT.INT16, VT.UINT32, VT.INT32, VT.UINT64, VT.INT64]:
            lo, hi = {VT.UINT8: (0, 255), VT.INT8: (-128, 127), VT.UINT16: (0, 65535), VT.INT16: (-32768, 32767),
                      VT.UINT32: (0, 2**32 - 1), VT.INT32: (-2**31, 2**31 - 1), VT.UINT64: (0, 2**63),
                      VT.INT64: (-2**63, 2**63 - 1)}[vt]
            vals = [lo, hi] + [int(v) for v in rng.integers(max(lo, -2**62), min(hi, 2**62), 5)]
            w.add_key_value(f"t.arr_{TYPE_NAMES[vt]}", vals, VT.ARRAY, sub_type=vt)
        w.add_key_value("t.arr_f32", [0.5, -1.25, 3.4e38, 1e-40], VT.ARRAY, sub_type=VT.FLOAT32)
        w.add_key_value("t.arr_f64", [0.1, -2.5e300], VT.ARRAY, sub_type=VT.FLOAT64)
        w.add_key_value("t.arr_bool", [True, False, True], VT.ARRAY, sub_type=VT.BOOL)
        w.add_array("t.arr_str", ["a", "", "ünïcode", "<0x0A>"])
        w.add_array("t.arr_nested", [[1, 2, 3], [4], [5, 6]])
        w.add_array("t.arr_nested_str", [["x", "y"], ["z"]])
        w.add_array("t.arr_nested2", [[[1, 2], [3]], [[4, 5, 6]]])
        # tensors: dims in numpy order (gguf-py reverses them into ggml order)
        w.add_tensor("f32.weight", rng.standard_normal((3, 32)).astype(np.float32))
        w.add_tensor("f16.weight", rng.standard_normal((2, 64)).astype(np.float16))
        w.add_tensor("scalarish", np.array([1.5], np.float32))
        w.add_tensor("i8.weight", rng.integers(-128, 128, (5,), dtype=np.int8))
        w.add_tensor("i32.weight", rng.integers(-2**31, 2**31 - 1, (7,), dtype=np.int32))
        w.add_tensor("f64.weight", rng.standard_normal((3,)).astype(np.float64))
        x = rng.standard_normal((4, 64)).astype(np.float32)
        w.add_tensor("q8_0.weight", py_quantize(x, QT.Q8_0), raw_dtype=QT.Q8_0)
        w.add_tensor("bf16.weight", py_quantize(x, QT.BF16), raw_dtype=QT.BF16)
        x = rng.standard_normal((2, 256)).astype(np.float32)
        w.add_tensor("tq2_0.weight", py_quantize(x, QT.TQ2_0), raw_dtype=QT.TQ2_0)
        raw = rng.integers(0, 256, (1, 144 * 2), dtype=np.uint8)
        w.add_tensor("q4_k.weight", raw, raw_dtype=QT.Q4_K)
        w.add_tensor("blk.0.attn_q.weight.4d", rng.standard_normal((2, 1, 3, 32)).astype(np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        desc = describe_file(path)
        (OUT / fname.replace(".gguf", ".json")).write_text(json.dumps(desc, indent=1) + "\n")
        print(f"{fname}: {path.stat().st_size} bytes, {len(desc['kv'])} kv, {len(desc['tensors'])} tensors")


def make_real_files(testdata: Path, llama_cpp: Path | None) -> None:
    out: dict = {"smollm2": None, "vocab": {}}
    smol = testdata / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not smol.exists():
        sys.exit(f"{smol} missing: run tools/testdata/fetch.sh smollm2")
    r = gguf.GGUFReader(str(smol))
    f = r.fields
    info = summarize(r)
    samples = {}
    for t in r.tensors:
        if t.name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight",
                      "blk.0.attn_norm.weight"):
            deq = py_dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).ravel()
            stride = max(1, deq.size // 1024)
            idx = np.arange(0, deq.size, stride)[:1024]
            samples[t.name] = {"type": t.tensor_type.name, "n": int(deq.size), "stride": int(stride),
                               "values_hex": deq[idx].astype("<f4").tobytes().hex()}
    info["dequant_samples"] = samples
    info["first_tensors"] = [{"name": t.name, "dims": [int(d) for d in t.shape], "type": t.tensor_type.name,
                              "n_bytes": int(t.n_bytes)} for t in r.tensors[:6]]
    out["smollm2"] = info
    if llama_cpp is not None:
        for p in sorted((llama_cpp / "models").glob("ggml-vocab-*.gguf")):
            out["vocab"][p.name] = summarize(gguf.GGUFReader(str(p)))
    (OUT / "real_files.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"real_files.json: smollm2 + {len(out['vocab'])} vocab files")


def summarize(r) -> dict:
    f = r.fields

    def get(k):
        if k not in f:
            return None
        fld = f[k]
        if fld.types[0] == VT.ARRAY:
            return None
        return fld.contents()

    arch = get("general.architecture")
    toks = f.get("tokenizer.ggml.tokens")
    tok_list = toks.contents() if toks is not None else []
    return {
        "version": int(get("GGUF.version")),
        "n_kv": len([k for k in f if not k.startswith("GGUF.")]),
        "n_tensors": len(r.tensors),
        "architecture": arch,
        "block_count": get(f"{arch}.block_count"),
        "tokenizer_model": get("tokenizer.ggml.model"),
        "n_tokens": len(tok_list),
        "first_tokens": tok_list[:5],
        "last_token": tok_list[-1] if tok_list else None,
        "keys": [k for k in f if not k.startswith("GGUF.")],
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
    }


def parse_rust_writer() -> None:
    p = OUT / "rust_writer.gguf"
    if not p.exists():
        print("rust_writer.gguf not present (run TERN_BLESS=1 cargo test -p tern-gguf --test writer); skipped")
        return
    (OUT / "rust_writer.json").write_text(json.dumps(describe_file(p), indent=1) + "\n")
    print("rust_writer.json written from gguf-py's parse of rust_writer.gguf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--testdata", type=Path,
                    default=Path(os.environ.get("TERN_TESTDATA", REPO / ".cache" / "testdata")))
    ap.add_argument("--llama-cpp", type=Path, default=None,
                    help="llama.cpp source tree (default: <testdata>/llama-cpp-python/vendor/llama.cpp)")
    ap.add_argument("--only", choices=["quant", "pywriter", "real", "rust"], default=None)
    args = ap.parse_args()
    llama_cpp = args.llama_cpp or args.testdata / "llama-cpp-python" / "vendor" / "llama.cpp"
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "quant"):
            ref = GgmlRef(build_ggml_ref(llama_cpp, tmp), tmp)
            make_quant_goldens(ref)
        if args.only in (None, "pywriter"):
            make_pywriter_files()
        if args.only in (None, "real"):
            make_real_files(args.testdata, llama_cpp if (llama_cpp / "models").exists() else None)
        if args.only in (None, "rust"):
            parse_rust_writer()


if __name__ == "__main__":
    main()
