//! The GGUF loader and the converter agree with llama.cpp's key and tensor names for the model
//! features that have no default: a non-SiLU activation (`{arch}.hidden_activation`), YaRN's attention
//! factor (`rope.scaling.yarn_attn_factor`, plus llama.cpp's own multiplier `rope.scaling.attn_factor`)
//! and MLP biases (`blk.N.ffn_{gate,up,down}.bias`). Each test converts an HF fixture that has the
//! feature, checks the key or tensor llama.cpp's `convert_hf_to_gguf.py` would write, and requires the
//! same logits from the GGUF as from the HF directory — plus a control showing that dropping the key
//! or tensor changes the logits, so the match is not an accident.
//!
//! Key names checked against llama.cpp (llama-cpp-python 0.3.36 sdist): `gguf-py/gguf/constants.py`
//! (`HIDDEN_ACT = "{arch}.hidden_activation"`, `SCALING_ATTN_FACTOR = "{arch}.rope.scaling.attn_factor"`,
//! `SCALING_YARN_ATTN_FACTOR = "{arch}.rope.scaling.yarn_attn_factor"`), `src/llama-arch.cpp` (same
//! strings), `conversion/base.py` (`add_rope_scaling_yarn_attn_factor(rope_params["attention_factor"])`)
//! and `src/llama-model.cpp` (`LLM_KV_ROPE_SCALING_ATTN_FACTOR` → `rope_attn_factor`, a multiplier;
//! `ffn_gate_b` / `ffn_up_b` / `ffn_down_b` optional for llama).

mod common;

use common::*;
use tern_convert::TargetType::*;
use tern_gguf::Value;

fn hf_logits(dir: &std::path::Path, ids: &[u32]) -> Vec<f32> {
    logits(&tern_model::load::load_hf_dir(dir, None).unwrap(), ids)
}

fn load_err(path: &std::path::Path) -> String {
    match tern_model::load::load_path(path, None) {
        Ok(_) => panic!("{} must be refused", path.display()),
        Err(e) => e.to_string(),
    }
}

fn drop_key(md: &mut Vec<(String, Value)>, key: &str) {
    let n = md.len();
    md.retain(|(k, _)| k != key);
    assert_eq!(md.len(), n - 1, "{key} was not in the file");
}

#[test]
fn hidden_activation_round_trips() {
    // mistral_gelu: gelu_pytorch_tanh MLP, F32 weights (f16 GGUF: the usual f16 rounding only).
    let src = fixture("mistral_gelu");
    let r = reference(&src);
    let want = hf_logits(&src, &r.ids);
    let (_t, out, plan) = convert(&src, F16);
    assert!(plan.notes.iter().any(|n| n.contains("hidden_activation") && n.contains("llama.cpp")), "{:?}", plan.notes);
    let f = tern_gguf::GgufFile::open(&out).unwrap();
    assert_eq!(f.metadata().get_str("llama.hidden_activation").unwrap(), "gelu_pytorch_tanh");
    let got = logits(&load(&out), &r.ids);
    let e = worst_rel_l2(&got, &want, r.vocab);
    let er = worst_rel_l2(&got, &r.logits, r.vocab);
    eprintln!("mistral_gelu f16: rel L2 {e:.2e} vs HF dir, {er:.2e} vs transformers");
    assert!(e <= 2e-3 && er <= 4e-3, "{e} {er}");

    // Control: without the key the llama default (SiLU) runs and the logits are far off.
    let bare = out.with_file_name("no_act.gguf");
    rewrite_gguf(&out, &bare, |md| drop_key(md, "llama.hidden_activation"));
    let e0 = worst_rel_l2(&logits(&load(&bare), &r.ids), &want, r.vocab);
    eprintln!("mistral_gelu without llama.hidden_activation: rel L2 {e0:.2e}");
    assert!(e0 > 0.05, "the activation key must matter for this test to mean anything ({e0})");

    // Unknown activation names are refused, naming the key.
    let bad = out.with_file_name("bad_act.gguf");
    rewrite_gguf(&out, &bad, |md| {
        md.iter_mut().find(|(k, _)| k == "llama.hidden_activation").unwrap().1 = "mish".into();
    });
    let e = load_err(&bad);
    assert!(e.contains("llama.hidden_activation") && e.contains("mish"), "{e}");
}

#[test]
fn bitnet_activation_defaults_follow_llamacpp_and_bitnetcpp() {
    // A BitNet (relu2) checkpoint: tern writes the key for `bitnet` and `bitnet-b1.58`. Without it,
    // `bitnet` means llama.cpp's SiLU graph and `bitnet-b1.58` bitnet.cpp's squared-ReLU graph.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bitnet256");
    write_bitnet(&src, BitnetStorage::Packed, 11);
    let ids = synthetic_ids(24, 256);
    let want = hf_logits(&src, &ids);
    for (ty, arch) in [(TQ2_0, "bitnet"), (I2_S, "bitnet-b1.58")] {
        let (_t, out, _) = convert(&src, ty);
        let f = tern_gguf::GgufFile::open(&out).unwrap();
        let key = format!("{arch}.hidden_activation");
        assert_eq!(f.metadata().get_str(&key).unwrap(), "relu2");
        assert_eq!(logits(&load(&out), &ids), want, "{arch} with {key}");
        let bare = out.with_file_name("bare.gguf");
        rewrite_gguf(&out, &bare, |md| drop_key(md, &key));
        let got = logits(&load(&bare), &ids);
        let e = worst_rel_l2(&got, &want, 256);
        eprintln!("{arch} without {key}: rel L2 {e:.2e}");
        if arch == "bitnet" {
            assert!(e > 0.05, "bitnet without the key must run SiLU ({e})");
        } else {
            assert_eq!(got, want, "bitnet-b1.58 without the key must run squared ReLU");
        }
    }
    // Leaving I2_S renames bitnet-b1.58 → bitnet: the implied squared ReLU must be written down.
    let (_a, i2s, _) = convert(&src, I2_S);
    let bare = i2s.with_file_name("bare.gguf");
    rewrite_gguf(&i2s, &bare, |md| drop_key(md, "bitnet-b1.58.hidden_activation"));
    let (_b, tq2, p) = convert(&bare, TQ2_0);
    assert_eq!(p.arch, "bitnet");
    let f = tern_gguf::GgufFile::open(&tq2).unwrap();
    assert_eq!(f.metadata().get_str("bitnet.hidden_activation").unwrap(), "relu2");
    assert_eq!(logits(&load(&tq2), &ids), want);
}

#[test]
fn yarn_attention_factor_round_trips() {
    // llama_rope_yarn (F16 weights, factor 4, original 256) with an explicit attention_factor 0.8,
    // well away from the default 0.1·ln 4 + 1 = 1.139. F16 → f16 GGUF is exact.
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("llama_rope_yarn");
    let ids = reference(&src).ids;
    let dir = tmp.path().join("yarn_af");
    derive_hf_dir(&src, &dir, |c| c["rope_scaling"]["attention_factor"] = 0.8.into(), &[]);
    let want = hf_logits(&dir, &ids);
    let (_t, out, _) = convert(&dir, F16);
    let f = tern_gguf::GgufFile::open(&out).unwrap();
    assert_eq!(f.metadata().get_float("llama.rope.scaling.yarn_attn_factor").unwrap(), 0.8f32 as f64);
    assert!(f.metadata().get("llama.rope.scaling.attn_factor").is_none());
    let got = logits(&load(&out), &ids);
    let e = worst_rel_l2(&got, &want, 256);
    eprintln!("yarn attention_factor 0.8, f16: rel L2 {e:.2e}, max |Δ| {:.2e}", max_abs(&got, &want));
    assert!(e <= 1e-6, "{e}");
    let plain = hf_logits(&src, &ids);
    assert!(max_abs(&want, &plain) > 1e-2, "attention_factor must change the logits for this test to mean anything");

    // llama.cpp's multiplier: the plain YaRN GGUF plus `rope.scaling.attn_factor = 0.9` must equal HF
    // with attention_factor = 0.9 · (0.1·ln 4 + 1).
    let (_u, plain_gguf, _) = convert(&src, F16);
    let scaled = tmp.path().join("attn_mul.gguf");
    rewrite_gguf(&plain_gguf, &scaled, |md| md.push(("llama.rope.scaling.attn_factor".into(), Value::F32(0.9))));
    let af = f64::from(0.9f32) * (0.1 * 4f64.ln() + 1.0);
    let dir2 = tmp.path().join("yarn_af2");
    derive_hf_dir(&src, &dir2, |c| c["rope_scaling"]["attention_factor"] = af.into(), &[]);
    let want2 = hf_logits(&dir2, &ids);
    let got2 = logits(&load(&scaled), &ids);
    let e2 = worst_rel_l2(&got2, &want2, 256);
    eprintln!("yarn + rope.scaling.attn_factor 0.9: rel L2 {e2:.2e}");
    assert!(e2 <= 1e-5, "{e2}");

    // The multiplier without YaRN is refused rather than ignored.
    let (_v, linear, _) = convert(&fixture("llama_rope_linear"), F16);
    let bad = tmp.path().join("linear_attn.gguf");
    rewrite_gguf(&linear, &bad, |md| md.push(("llama.rope.scaling.attn_factor".into(), Value::F32(0.9))));
    let e = load_err(&bad);
    assert!(e.contains("llama.rope.scaling.attn_factor") && e.contains("YaRN"), "{e}");
}

#[test]
fn mlp_biases_round_trip() {
    // llama_rope_linear (F16) plus random gate/up/down biases and mlp_bias = true: the f16 GGUF holds
    // the same numbers (biases are F32 in both), so the logits must be identical.
    let src = fixture("llama_rope_linear");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    let (h, ffn, layers) = (
        cfg["hidden_size"].as_u64().unwrap() as usize,
        cfg["intermediate_size"].as_u64().unwrap() as usize,
        cfg["num_hidden_layers"].as_u64().unwrap() as usize,
    );
    let mut rng = Lcg(23);
    let mut extra = Vec::new();
    for i in 0..layers {
        for (m, n) in [("gate_proj", ffn), ("up_proj", ffn), ("down_proj", h)] {
            let v: Vec<f32> = (0..n).map(|_| 0.5 * rng.uniform()).collect();
            extra.push((format!("model.layers.{i}.mlp.{m}.bias"), vec![n], v));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama_mlp_bias");
    derive_hf_dir(&src, &dir, |c| c["mlp_bias"] = true.into(), &extra);
    let ids = reference(&src).ids;
    let want = hf_logits(&dir, &ids);
    let (_t, out, plan) = convert(&dir, F16);
    assert!(plan.notes.iter().all(|n| !n.contains("ffn_gate/up/down biases")), "{:?}", plan.notes);
    let f = tern_gguf::GgufFile::open(&out).unwrap();
    for n in ["ffn_gate", "ffn_up", "ffn_down"] {
        let t = f.require_tensor(&format!("blk.1.{n}.bias")).unwrap();
        assert_eq!(t.ggml_type, tern_gguf::GgmlType::F32);
    }
    let model = load(&out);
    assert!(model.config.mlp_bias);
    let got = logits(&model, &ids);
    assert_eq!(got, want, "llama with MLP biases, f16 (max |Δ| {})", max_abs(&got, &want));
    let plain = hf_logits(&src, &ids);
    assert!(max_abs(&want, &plain) > 1e-2, "the biases must change the logits for this test to mean anything");
}

#[test]
fn unsupported_tensor_types_are_named_at_load() {
    // An IQ2_XXS projection (a type tern reads and sizes but does not run) must fail the model load
    // with the type and the tensor named, not later and not with a panic.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bitnet256");
    write_bitnet(&src, BitnetStorage::Packed, 2);
    let (_t, out, _) = convert(&src, F16);
    let f = tern_gguf::GgufFile::open(&out).unwrap();
    let mut w = tern_gguf::GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        w.add_kv(k, v.clone()).unwrap();
    }
    let target = "blk.1.ffn_up.weight";
    let ty = |t: &tern_gguf::TensorInfo| if t.name == target { tern_gguf::GgmlType::IQ2_XXS } else { t.ggml_type };
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, ty(t)).unwrap();
    }
    let bad = tmp.path().join("iq.gguf");
    let mut o = w.create(&bad).unwrap();
    for t in f.tensors() {
        if t.name == target {
            let n = tern_gguf::GgmlType::IQ2_XXS.storage_size(&t.dims).unwrap() as usize;
            o.write_tensor(&t.name, &vec![0u8; n]).unwrap();
        } else {
            o.write_tensor(&t.name, f.tensor_data(t).unwrap()).unwrap();
        }
    }
    o.finish().unwrap();
    let e = load_err(&bad);
    assert!(e.contains(target) && e.contains("unsupported tensor type IQ2_XXS"), "{e}");
}
