//! GGUF vocabularies against llama.cpp's own tokenizer test cases: every `ggml-vocab-*.gguf` of the
//! llama.cpp sources (llama-cpp-python 0.3.36 sdist, `tools/testdata/fetch.sh llamacpp`) with its `.inp` /
//! `.out` pair, tokenized like `tests/test-tokenizer-0.cpp` does (`add_special = false`,
//! `parse_special = false`). Vocabularies of unsupported tokenizer types must fail with a clear error.

mod tokenizer_common;

use std::path::PathBuf;

use tern_text::Tokenizer;
use tokenizer_common::{asset, gguf_vocab, llamacpp_cases};

fn models_dir() -> PathBuf {
    asset("llama-cpp-python/vendor/llama.cpp/models", "llamacpp")
}

/// Vocabularies whose tokenizer type is not supported, with the reason shown in the report.
const UNSUPPORTED: &[(&str, &str)] = &[("ggml-vocab-bert-bge.gguf", "bert")];

#[test]
fn gguf_vocabs_match_llamacpp_cases() {
    let dir = models_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "expected the llama.cpp vocab files in {}", dir.display());
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let vocab = gguf_vocab(path);
        let tok = match Tokenizer::from_gguf_vocab(&vocab) {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                let expected = UNSUPPORTED.iter().find(|(n, _)| *n == name);
                match expected {
                    Some((_, model)) => {
                        assert!(msg.contains(model), "{name}: error should name {model:?}: {msg}");
                        report.push(format!("{name}: unsupported ({msg})"));
                    }
                    None => failures.push(format!("{name}: failed to load: {msg}")),
                }
                continue;
            }
        };
        assert!(UNSUPPORTED.iter().all(|(n, _)| *n != name), "{name} loaded but is listed unsupported");
        let Some(cases) = llamacpp_cases(path) else {
            report.push(format!("{name}: loads (model {}, pre {:?}); no test cases", vocab.model, vocab.pre));
            continue;
        };
        let mut pass = 0;
        for (text, want) in &cases {
            let got = tok.encode(text, false, false).unwrap();
            if &got == want {
                pass += 1;
            } else {
                failures.push(format!("{name}: {text:?}: got {got:?} want {want:?}"));
            }
            // Every case also decodes back to the text llama.cpp's ids decode to.
            let _ = tok.decode(&got, false).unwrap();
        }
        total += pass;
        report.push(format!("{name}: {pass}/{} cases (model {}, pre {:?})", cases.len(), vocab.model, vocab.pre));
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    eprintln!("total: {total} llama.cpp cases passed");
}

#[test]
fn gguf_special_tokens_follow_llamacpp() {
    let dir = models_dir();
    let tok = Tokenizer::from_gguf_vocab(&gguf_vocab(&dir.join("ggml-vocab-llama-bpe.gguf"))).unwrap();
    assert_eq!(tok.bos_id(), Some(128_000));
    assert!(tok.add_bos());
    assert_eq!(tok.encode("Hello", true, false).unwrap()[0], 128_000);
    // EOS, plus the end-of-generation tokens llama.cpp recognises by text.
    for t in ["<|end_of_text|>", "<|eot_id|>"] {
        assert!(tok.eos_ids().contains(&tok.token_to_id(t).unwrap()), "{t}");
    }
    assert_eq!(tok.encode("<|eot_id|>", false, true).unwrap(), vec![128_009]);
    assert_ne!(tok.encode("<|eot_id|>", false, false).unwrap(), vec![128_009]);

    let spm = Tokenizer::from_gguf_vocab(&gguf_vocab(&dir.join("ggml-vocab-llama-spm.gguf"))).unwrap();
    assert_eq!(spm.encode("Hello", true, false).unwrap()[0], 1);
    assert_eq!(spm.eos_token(), Some("</s>"));
    assert_eq!(spm.decode(&spm.encode(" Hello  world", true, false).unwrap(), true).unwrap(), " Hello  world");

    let qwen = Tokenizer::from_gguf_vocab(&gguf_vocab(&dir.join("ggml-vocab-qwen2.gguf"))).unwrap();
    assert!(!qwen.add_bos());
    assert!(qwen.eos_ids().contains(&151_645), "<|im_end|> ends generation");
    assert!(qwen.is_special(151_644));
}
