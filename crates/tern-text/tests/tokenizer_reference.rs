//! Encode/decode agreement with the Python references, id for id, on the golden corpus (unicode, emoji,
//! CJK, code, whitespace runs, digits, special-token text, a >10k-character text). Goldens are made by
//! `tools/text/tokenizer_goldens.py`; the tokenizer files come from `tools/testdata/fetch.sh tokenizers`.

mod tokenizer_common;

use serde_json::Value;
use tern_text::tokenizer::TokenizerFormat;
use tern_text::Tokenizer;
use tokenizer_common::{asset, corpus, gguf_vocab, golden, ids, tokenizer_json_dir};

/// Compares every case of a golden; returns the number of checks that passed.
fn check_golden(name: &str, tok: &Tokenizer, g: &Value, has_special: bool, has_skip: bool) -> usize {
    check_golden_with(name, tok, g, has_special, has_skip, &|d| d.to_string())
}

/// Like [`check_golden`], with the reference decoding rewritten by `fix` first.
fn check_golden_with(
    name: &str,
    tok: &Tokenizer,
    g: &Value,
    has_special: bool,
    has_skip: bool,
    fix: &dyn Fn(&str) -> String,
) -> usize {
    let texts = corpus();
    let cases = g["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), texts.len(), "{name}: golden and corpus sizes differ");
    let mut failures = Vec::new();
    let mut passed = 0;
    let short = |t: &str| t.chars().take(60).collect::<String>();
    for (text, c) in texts.iter().zip(cases) {
        let want = ids(&c["ids"]);
        let got = tok.encode(text, false, false).unwrap();
        if got == want {
            passed += 1;
        } else {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            failures.push(format!(
                "encode {:?}: first difference at {at}: got {:?} want {:?}",
                short(text),
                &got[at..got.len().min(at + 8)],
                &want[at..want.len().min(at + 8)]
            ));
        }
        let decoded = fix(c.get("decoded").and_then(Value::as_str).unwrap_or(text));
        let got = tok.decode(&want, false).unwrap();
        if got == decoded {
            passed += 1
        } else {
            failures.push(format!("decode {:?}: got {:?} want {:?}", short(text), short(&got), short(&decoded)))
        }
        if has_special {
            let want_s = ids(&c["ids_special"]);
            let got = tok.encode(text, false, true).unwrap();
            if got == want_s {
                passed += 1
            } else {
                failures.push(format!(
                    "encode+special {:?}: got {:?}.. want {:?}..",
                    short(text),
                    &got[..got.len().min(12)],
                    &want_s[..want_s.len().min(12)]
                ))
            }
            let d = c.get("decoded_special").and_then(Value::as_str).unwrap_or(text);
            let got = tok.decode(&want_s, false).unwrap();
            if got == d {
                passed += 1
            } else {
                failures.push(format!("decode special {:?}: got {:?} want {:?}", short(text), short(&got), short(d)))
            }
            if has_skip {
                let d = c.get("decoded_skip").and_then(Value::as_str).unwrap_or(text);
                let got = tok.decode(&want_s, true).unwrap();
                if got == d {
                    passed += 1
                } else {
                    failures.push(format!("decode skip {:?}: got {:?} want {:?}", short(text), short(&got), short(d)))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{name}: {} failures:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{name}: {passed} checks passed over {} texts", texts.len());
    passed
}

#[test]
fn llama3_tokenizer_json_matches_hf_tokenizers() {
    let dir = tokenizer_json_dir("lenml-llama3");
    let tok = Tokenizer::from_path(&dir).unwrap();
    assert_eq!(tok.format(), TokenizerFormat::TokenizerJson);
    let g = golden("llama3-json");
    check_golden("llama3 tokenizer.json", &tok, &g, true, true);
    assert_eq!(tok.vocab_size(), 128_256);
    assert_eq!(tok.bos_token(), g["bos_token"].as_str());
    assert_eq!(tok.eos_token(), g["eos_token"].as_str());
    assert_eq!(tok.eos_ids()[0], g["eos_token_id"].as_u64().unwrap() as u32);
    assert_eq!(tok.bos_id(), Some(128_000));
    // transformers: this tokenizer.json's post-processor adds no BOS and the config does not ask for one.
    for (text, want) in g["add_special"].as_object().unwrap() {
        assert_eq!(tok.encode(text, true, false).unwrap(), ids(want), "add_special {text:?}");
    }
    assert!(!tok.add_bos());
    assert!(tok.is_special(128_009));
    assert!(!tok.is_special(9906));
    assert_eq!(tok.token_to_id("<|eot_id|>"), Some(128_009));
    assert_eq!(tok.id_to_token(9906).as_deref(), Some("Hello"));
}

#[test]
fn qwen3_tokenizer_json_matches_hf_tokenizers() {
    let dir = tokenizer_json_dir("lenml-qwen3");
    let tok = Tokenizer::from_path(&dir.join("tokenizer.json")).unwrap();
    let g = golden("qwen3-json");
    check_golden("qwen3 tokenizer.json", &tok, &g, true, true);
    assert_eq!(tok.bos_id(), None);
    assert_eq!(tok.bos_token(), None);
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert_eq!(tok.eos_ids(), &[151_645]);
    for (text, want) in g["add_special"].as_object().unwrap() {
        assert_eq!(tok.encode(text, true, false).unwrap(), ids(want), "add_special {text:?}");
    }
    // User text can never become a special token unless asked for.
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(151_644));
    assert!(!tok.encode("<|im_start|>user", false, false).unwrap().contains(&151_644));
    assert_eq!(tok.encode("<|im_start|>user", false, true).unwrap()[0], 151_644);
    // Non-special added tokens (<think>) are always matched, as in tokenizers and llama.cpp.
    assert_eq!(tok.encode("<think>", false, false).unwrap(), vec![151_667]);
    assert!(!tok.is_special(151_667));
}

#[test]
fn llama2_sentencepiece_matches_sentencepiece() {
    let path = asset("tokenizers/llama2-tokenizer.model", "tokenizers");
    let tok = Tokenizer::from_path(&path).unwrap();
    assert_eq!(tok.format(), TokenizerFormat::SentencePiece);
    let g = golden("llama2-spm");
    check_golden("llama2 tokenizer.model (SentencePiece)", &tok, &g, false, false);
    assert_eq!(tok.vocab_size(), g["vocab_size"].as_u64().unwrap() as usize);
    assert_eq!(tok.bos_id(), Some(g["bos_id"].as_u64().unwrap() as u32));
    assert_eq!(tok.eos_ids(), &[g["eos_id"].as_u64().unwrap() as u32]);
    assert_eq!(tok.bos_token(), Some("<s>"));
    assert_eq!(tok.eos_token(), Some("</s>"));
    assert!(tok.add_bos() && !tok.add_eos());
    let plain = tok.encode("Hello world", false, false).unwrap();
    let mut with_bos = vec![1];
    with_bos.extend(&plain);
    assert_eq!(tok.encode("Hello world", true, false).unwrap(), with_bos);
    // Control pieces are parsed only on request; byte fallback covers characters outside the vocabulary.
    assert_eq!(tok.encode("<s>", false, true).unwrap(), vec![1]);
    assert_ne!(tok.encode("<s>", false, false).unwrap(), vec![1]);
    assert!(tok.is_byte_token(tok.token_to_id("<0xE2>").unwrap()));
}

#[test]
fn gpt2_vocab_merges_match_tiktoken() {
    let dir = asset("tokenizers/gpt2", "tokenizers");
    let tok = Tokenizer::from_path(&dir).unwrap();
    assert_eq!(tok.format(), TokenizerFormat::VocabMerges);
    check_golden("gpt2 encoder.json + vocab.bpe", &tok, &golden("gpt2"), true, false);
    assert_eq!(tok.vocab_size(), 50_257);
    assert_eq!(tok.eos_ids(), &[50_256]);
    assert!(!tok.add_bos());
    // The same files through the explicit constructor.
    let v = std::fs::read_to_string(dir.join("encoder.json")).unwrap();
    let m = std::fs::read_to_string(dir.join("vocab.bpe")).unwrap();
    let tok2 = Tokenizer::from_vocab_merges(&v, &m).unwrap();
    assert_eq!(tok2.encode("Hello world", false, false).unwrap(), vec![15_496, 995]);
}

#[test]
fn llama3_tiktoken_matches_meta_tokenizer() {
    let path = asset("tokenizers/llama3-tiktoken.model", "tokenizers");
    let tok = Tokenizer::from_path(&path).unwrap();
    assert_eq!(tok.format(), TokenizerFormat::Tiktoken);
    let g = golden("llama3-tiktoken");
    check_golden("llama3 tokenizer.model (tiktoken)", &tok, &g, true, false);
    assert_eq!(tok.vocab_size(), g["n_words"].as_u64().unwrap() as usize);
    assert_eq!(tok.bos_id(), Some(g["bos_id"].as_u64().unwrap() as u32));
    let mut stops = ids(&g["stop_tokens"]);
    let mut eos = tok.eos_ids().to_vec();
    stops.sort_unstable();
    eos.sort_unstable();
    assert_eq!(eos, stops);
    assert_eq!(tok.encode("Hello world", true, false).unwrap(), ids(&g["bos_hello"]));
    assert_eq!(tok.token_to_id("<|image|>"), Some(128_256 - 256 + 11));
    assert_eq!(tok.token_to_id("<|reserved_special_token_245|>"), Some(128_255));
}

#[test]
fn t5_unigram_gguf_matches_sentencepiece() {
    // SentencePiece Unigram with the precompiled nmt_nfkc charsmap (XLM-R vocabulary of llama.cpp's
    // ggml-vocab-nomic-bert-moe.gguf); the reference is sentencepiece on the same pieces and normalizer.
    let path = asset("llama-cpp-python/vendor/llama.cpp/models/ggml-vocab-nomic-bert-moe.gguf", "llamacpp");
    let tok = Tokenizer::from_gguf_vocab(&gguf_vocab(&path)).unwrap();
    // sentencepiece shows <unk> as its unk_surface " ⁇ "; tokenizers (and tern) decode it as "<unk>".
    let fix = |d: &str| d.replace(" \u{2047} ", "<unk>");
    check_golden_with("t5/unigram GGUF (SentencePiece)", &tok, &golden("t5-unigram"), false, false, &fix);
    // Control pieces are never produced from text unless special tokens are parsed.
    assert_eq!(tok.encode("<s>", false, true).unwrap(), vec![0]);
    assert!(!tok.encode("<s>", false, false).unwrap().contains(&0));
    // The GGUF asks for XLM-R's `<s> text </s>`.
    assert!(tok.add_bos() && tok.add_eos());
    let ids = tok.encode("Hello", true, false).unwrap();
    assert_eq!((ids[0], ids[ids.len() - 1]), (0, 2));
    assert_eq!(tok.decode(&[0, 3, 2], false).unwrap(), "<s><unk></s>");
}

#[test]
fn decode_round_trips() {
    let texts = corpus();
    let spm = Tokenizer::from_path(&asset("tokenizers/llama2-tokenizer.model", "tokenizers")).unwrap();
    let tj = Tokenizer::from_path(&tokenizer_json_dir("lenml-llama3")).unwrap();
    let tt = Tokenizer::from_path(&asset("tokenizers/llama3-tiktoken.model", "tokenizers")).unwrap();
    let mut n = 0;
    for t in &texts {
        // Byte-level BPE is lossless on any text, special-token text included.
        for tok in [&tj, &tt] {
            for parse in [false, true] {
                let ids = tok.encode(t, false, parse).unwrap();
                assert_eq!(&tok.decode(&ids, false).unwrap(), t);
                n += 1;
            }
        }
        // SentencePiece drops the dummy prefix again; texts without a leading space round-trip (a literal
        // `▁` in the input decodes as a space, as in sentencepiece).
        if !t.starts_with(' ') && !t.contains('\u{2581}') {
            let ids = spm.encode(t, true, false).unwrap();
            let back = spm.decode(&ids, true).unwrap();
            assert!(&back == t, "llama2 round trip of {:?}: {:?}", &t[..t.len().min(40)], &back[..back.len().min(40)]);
            n += 1;
        }
    }
    eprintln!("round trips: {n} passed");
}
