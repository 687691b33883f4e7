//! llama.cpp as a peer: `tests/data/llamacpp_peer.json` holds what llama.cpp (`llama-eval-callback`,
//! built from the llama.cpp of llama-cpp-python 0.3.36) saw when it loaded GGUF files written by
//! `tern convert` — the prompt's token ids and the last position's logits (first three, last three,
//! sum, printed to 4 decimals) — made by `tools/convert/llamacpp_peer.py`. This test converts the same
//! models again (CI needs no llama.cpp) and checks that tern's tokenizer, built from the GGUF
//! vocabulary, gives llama.cpp's ids, and that tern's logits from the same file agree with llama.cpp's.
//!
//! Tolerance per printed logit, with `m = max |logit|`: f16/bf16 files 5e-3 + 2e-3·m, ggml block quants
//! 2e-2 + 1e-2·m, ternary 2e-2·m (seen: 2e-3, 0.04 and 0.28 at m ≈ 28). The engines quantize
//! activations differently (llama.cpp: f16 or q8 blocks by weight type; tern: f32 for float weights,
//! q8 blocks for ggml quants, BitNet's per-token int8 for ternary weights), which the tolerance covers.

mod common;

use common::*;
use std::path::Path;
use tern_convert::{ConvertOptions, TargetType};

#[test]
fn tern_and_llama_cpp_agree_on_converted_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("llamacpp_peer.json")).unwrap()).unwrap();
    let prompt = g["prompt"].as_str().unwrap();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let label = c["label"].as_str().unwrap();
        let mut opts = ConvertOptions::new(
            root.join(c["source"].as_str().unwrap()),
            TargetType::parse(c["type"].as_str().unwrap()).unwrap(),
        );
        opts.vocab_dir = Some(data.join(c["tokenizer"].as_str().unwrap()));
        let (_t, out, _) = convert_with(opts);
        assert_eq!(c["completion_rc"].as_i64(), Some(0), "{label}: llama-completion failed when the golden was made");
        let tok = tern_text::source::load_tokenizer(&out).unwrap();
        let ids = tok.encode(prompt, true, true).unwrap();
        let want_ids: Vec<u32> = c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(ids, want_ids, "{label}: token ids (tern's GGUF tokenizer vs llama.cpp)");
        let model = load(&out);
        let v = model.vocab();
        let all = logits(&model, &ids);
        let last = &all[all.len() - v..];
        let scale = last.iter().fold(0f32, |m, x| m.max(x.abs()));
        let tol = match c["type"].as_str().unwrap() {
            "f16" | "bf16" => 5e-3 + 2e-3 * scale,
            "tq1_0" | "tq2_0" | "i2_s" => 2e-2 * scale,
            _ => 2e-2 + 1e-2 * scale,
        };
        let first3: Vec<f32> =
            c["logits_first3"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let last3: Vec<f32> =
            c["logits_last3"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let mut worst = 0f32;
        for (i, &w) in first3.iter().enumerate() {
            worst = worst.max((last[i] - w).abs());
        }
        for (i, &w) in last3.iter().enumerate() {
            worst = worst.max((last[v - 3 + i] - w).abs());
        }
        let sum: f32 = last.iter().sum();
        let want_sum = c["logits_sum"].as_f64().unwrap() as f32;
        eprintln!("{label:18}: max |Δ| of printed logits {worst:.4} (tol {tol:.3}), sum {sum:.3} vs {want_sum:.3}");
        assert!(worst <= tol, "{label}: logits differ from llama.cpp's by {worst} > {tol}");
        assert!((sum - want_sum).abs() <= tol * (v as f32).sqrt(), "{label}: logit sum {sum} vs llama.cpp {want_sum}");
    }
}
