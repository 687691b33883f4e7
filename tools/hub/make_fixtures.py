#!/usr/bin/env python3
"""Makes the small model files used by crates/tern-hub/tests (served by the mock hub) and the golden
`expected.json` describing them, read back with the reference Python readers:

- gguf (pip `gguf`, llama.cpp's gguf-py): `general.architecture` and `general.file_type` (its
  `LlamaFileType` name without the `MOSTLY_` prefix) via `GGUFReader`;
- safetensors (pip `safetensors`): tensor dtypes via `safe_open(...).get_slice(name).get_dtype()`;
- hashlib: sha256 of every file (= the Hub's LFS etag).

Re-run from the repo root:  python3 tools/hub/make_fixtures.py
"""
import hashlib
import json
import pathlib

import numpy as np
import gguf
from safetensors import safe_open
from safetensors.numpy import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "tern-hub" / "tests" / "fixtures"


def write_gguf(path, arch, ftype, extra_kv=True):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    if extra_kv:
        # Arrays of strings and numbers before general.file_type exercise the value skipping.
        w.add_token_list(["<s>", "</s>", "hello", "world"])
        w.add_token_scores([0.0, -1.0, -2.5, -3.0])
        w.add_context_length(128)
    w.add_file_type(ftype)
    w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_gguf(OUT / "tiny-Q4_K_M.gguf", "llama", gguf.LlamaFileType.MOSTLY_Q4_K_M)
    write_gguf(OUT / "tiny-Q8_0.gguf", "qwen2", gguf.LlamaFileType.MOSTLY_Q8_0)
    save_file(
        {
            "model.embed_tokens.weight": np.ones((4, 8), dtype=np.float16),
            "model.layers.0.mlp.up_proj.weight": np.arange(16, dtype=np.int8).reshape(4, 4),
            "model.norm.weight": np.ones(8, dtype=np.float32),
        },
        str(OUT / "model.safetensors"),
        metadata={"format": "pt"},
    )

    expected = {}
    for p in sorted(OUT.iterdir()):
        if p.suffix == ".gguf":
            r = gguf.GGUFReader(str(p))
            f_arch = r.fields["general.architecture"]
            arch = bytes(f_arch.parts[f_arch.data[0]]).decode()
            f_ft = r.fields["general.file_type"]
            ft = int(f_ft.parts[f_ft.data[0]][0])
            name = gguf.LlamaFileType(ft).name.removeprefix("MOSTLY_")
            expected[p.name] = {"architecture": arch, "file_type": ft, "file_type_name": name}
        elif p.suffix == ".safetensors":
            with safe_open(str(p), "np") as f:
                dtypes = sorted({f.get_slice(k).get_dtype() for k in f.keys()})
            expected[p.name] = {"dtypes": dtypes}
        else:
            continue
        expected[p.name]["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
        expected[p.name]["size"] = p.stat().st_size
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(json.dumps(expected, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
