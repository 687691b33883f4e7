"""llama.cpp as a peer for `tern convert`: converts test models with the tern binary, runs llama.cpp's
`llama-eval-callback` on each GGUF (which loads the file, tokenizes the prompt with the GGUF vocabulary
and prints the last position's logits: first three, last three and their sum) and records what
llama.cpp saw in crates/tern-convert/tests/data/llamacpp_peer.json. tests/llamacpp_peer.rs converts the
same models and checks that tern's tokenizer gives llama.cpp's ids and tern's logits match llama.cpp's.
CI does not need llama.cpp: only this script does.

    python3 tools/convert/llamacpp_peer.py TERN_BIN [LLAMA_BIN_DIR]   # default /work/llamacpp/build/bin

Also runs `llama-completion -p PROMPT -n 8 --temp 0` once per file and records its text (generation
smoke test; the models are random, so the text is not meaningful).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "crates/tern-convert/tests/data"
FIX = ROOT / "tests/fixtures/hf"
TERN = sys.argv[1]
BIN = Path(sys.argv[2] if len(sys.argv) > 2 else "/work/llamacpp/build/bin")
PROMPT = "Hello world, the quick brown fox"

# (label, source dir, tokenizer dir under tests/data, --type)
CASES = [
    ("llama3_rope_f16", FIX / "llama_llama3_rope_bf16", "tok_llamahf", "f16"),
    ("llama3_rope_q8_0", FIX / "llama_llama3_rope_bf16", "tok_llamahf", "q8_0"),
    ("llama_yarn_q4_0", FIX / "llama_rope_yarn", "tok_bpe240", "q4_0"),
    ("llama_linear_bf16", FIX / "llama_rope_linear", "tok_bpe240", "bf16"),
    ("qwen2_bias_q6_k", FIX / "qwen2_bias", "tok_bpe240", "q6_k"),
    ("qwen3_tied_q4_k", FIX / "qwen3_tied", "tok_spm", "q4_k"),
    ("ternary256_tq2_0", DATA / "llama_bitlinear_256", "tok_bpe240", "tq2_0"),
    ("ternary256_tq1_0", DATA / "llama_bitlinear_256", "tok_bpe240", "tq1_0"),
]

env = dict(os.environ, LD_LIBRARY_PATH=str(BIN))


def run(cmd, timeout=300):
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace"))


def parse_eval(text):
    m = re.search(r"number of input tokens = (\d+)\n", text)
    n = int(m.group(1))
    ids = [int(x) for x in re.findall(r"\n\S+ I +(\d+)", text[m.end() - 1:])[:n]]
    blk = text[text.index("result_output = "):]
    row = re.search(r"\[\s*([-\d.e+ ,]+?),\s*\.\.\.,\s*([-\d.e+ ,]+?)\s*\]", blk)
    first = [float(x) for x in row.group(1).split(",")]
    last = [float(x) for x in row.group(2).split(",")]
    total = float(re.search(r"sum = ([-\d.e+]+)", blk).group(1))
    return ids, first, last, total


def main():
    out = {"prompt": PROMPT, "llama_cpp": str(BIN), "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for label, src, tok, ty in CASES:
            gguf = Path(tmp) / f"{label}.gguf"
            r = run([TERN, "convert", str(src), str(gguf), "--type", ty, "--vocab-dir", str(DATA / tok)])
            assert r.returncode == 0, r.stderr
            # llama.cpp's logger is asynchronous and can drop the last lines at exit: log to a file, retry.
            for attempt in range(40):
                log = Path(tmp) / f"{label}.log"
                ev = run([str(BIN / "llama-eval-callback"), "-m", str(gguf), "-p", PROMPT, "-n", "1", "--temp", "0",
                          "-t", "2", "--log-file", str(log)])
                assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
                text = log.read_text(encoding="utf-8", errors="replace")
                tail = text[text.find("result_output = "):] if "result_output = " in text else ""
                if re.search(r"sum = [-\d.e+]+", tail):
                    break
            ids, first, last, total = parse_eval(text)
            gen = run([str(BIN / "llama-completion"), "-m", str(gguf), "-p", PROMPT, "-n", "8", "--temp", "0",
                       "-no-cnv", "-t", "2"])
            case = {"label": label, "source": str(src.relative_to(ROOT)), "tokenizer": tok, "type": ty,
                    "ids": ids, "logits_first3": first, "logits_last3": last, "logits_sum": total,
                    "completion_rc": gen.returncode, "completion": gen.stdout.strip()[-200:]}
            print(label, ids, first, last, total, repr(case["completion"]), flush=True)
            out["cases"].append(case)
    (DATA / "llamacpp_peer.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
