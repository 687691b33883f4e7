"""Writes three small tokenizers (committed under crates/tern-convert/tests/data/) that fit the
vocabularies of the tests/fixtures/hf models, one per vocabulary path of the converter:

* tok_bpe240/    byte-level BPE tokenizer.json (GPT-2 style, at most 240 ids, corpus alphabet; it has
                 <|endoftext|> so transformers' Qwen2Tokenizer adds no default token) -> gpt2
* tok_llamahf/   byte-fallback BPE tokenizer.json with a Metaspace pre-tokenizer and a Sequence
                 decoder (Llama-2 "fast" style, < 400 ids)              -> llama (LlamaHfVocab)
* tok_spm/       SentencePiece BPE tokenizer.model with byte fallback (320 pieces) -> llama

    python3 tools/convert/make_test_tokenizers.py      # tokenizers 0.23, sentencepiece 0.2
"""
import io
import json
from pathlib import Path

import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/tern-convert/tests/data"
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Ternary weights are -1, 0 or 1; activations are int8.",
    "Hello world! tern runs BitNet b1.58 models on the CPU.",
    "Converting a checkpoint writes GGUF metadata, tensors and a tokenizer.",
] * 50
TEMPLATE = (
    "{% for m in messages %}{{ bos_token if loop.first else '' }}<|{{ m['role'] }}|>\n"
    "{{ m['content'] }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# 1. byte-level BPE
d = OUT / "tok_bpe240"
d.mkdir(parents=True, exist_ok=True)
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
    vocab_size=240, special_tokens=["<|end|>", "<|begin|>", "<|endoftext|>"],
    show_progress=False))  # corpus alphabet only, so it fits 256-id fixtures
assert tok.get_vocab_size() <= 240, tok.get_vocab_size()
(d / "tokenizer.json").write_text(tok.to_str(pretty=False))
(d / "tokenizer_config.json").write_text(json.dumps(
    {"bos_token": "<|begin|>", "eos_token": "<|end|>", "add_bos_token": False, "chat_template": TEMPLATE}, indent=2) + "\n")
print(d, tok.get_vocab_size())

# 2. Llama-2 style byte-fallback BPE (what transformers' LlamaConverter produces)
d = OUT / "tok_llamahf"
d.mkdir(parents=True, exist_ok=True)
specials = ["<unk>", "<s>", "</s>"]
byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
# Train the merges, then lay the vocabulary out like Llama 2's: specials, the 256 byte tokens (plain
# vocabulary entries, not added tokens), then the learned pieces.
trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
trainer_tok.train_from_iterator([("\u2581" + s.replace(" ", "\u2581")) for s in CORPUS], trainers.BpeTrainer(
    vocab_size=120, special_tokens=specials, show_progress=False, limit_alphabet=60))
learned = json.loads(trainer_tok.to_str())["model"]
vocab = {t: i for i, t in enumerate(specials + byte_tokens)}
for t, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
    if t not in vocab:
        vocab[t] = len(vocab)
merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
tok.add_special_tokens(specials)
tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
tok.pre_tokenizer = None
tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
assert tok.get_vocab_size() <= 400, tok.get_vocab_size()
(d / "tokenizer.json").write_text(tok.to_str(pretty=False))
(d / "tokenizer_config.json").write_text(json.dumps(
    {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
     "tokenizer_class": "LlamaTokenizerFast", "chat_template": TEMPLATE}, indent=2) + "\n")
print(d, tok.get_vocab_size())

# 3. SentencePiece BPE model
d = OUT / "tok_spm"
d.mkdir(parents=True, exist_ok=True)
buf = io.BytesIO()
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(CORPUS), model_writer=buf, model_type="bpe", vocab_size=320, byte_fallback=True,
    character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, user_defined_symbols=["<tool>"],
    minloglevel=2)
(d / "tokenizer.model").write_bytes(buf.getvalue())
(d / "tokenizer_config.json").write_text(json.dumps(
    {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
     "chat_template": TEMPLATE}, indent=2) + "\n")
sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
print(d, sp.get_piece_size(), sp.encode("Hello world"))
