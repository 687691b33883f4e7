//! A BitNet b1.58 GGUF built the way bitnet.cpp builds one, loaded and run by tern.
//!
//! No real bitnet.cpp file can be fetched offline, so this test re-enacts bitnet.cpp's own pipeline
//! for BitNet b1.58 2B-4T (`utils/convert-helper-bitnet.py` in microsoft/BitNet) on a small random
//! checkpoint with the 2B-4T layout (sub-norms, squared-ReLU MLP, GQA, tied embeddings), writing every
//! byte here — not with tern's converter — and requires tern's logits from that file to equal its
//! logits from the HF directory. What each step follows:
//!
//! 1. `utils/preprocess-huggingface-bitnet.py` `quant_weight_fp16`: each q/k/v/o/gate/up/down weight,
//!    in f32, becomes `(w·s).round().clamp(-1, 1) / s` with `s = 1 / max(mean|w|, 1e-5)` (the mean is
//!    taken here in f64 and rounded to f32; torch's reduction order can differ in the last bit).
//! 2. `utils/convert-ms-to-gguf-bitnet.py` (`--outtype f32`): `ARCH = MODEL_ARCH.BITNET_25`
//!    (`"bitnet-25"`; the published `ggml-model-i2_s.gguf` of 2B-4T says `"bitnet-b1.58"`, bitnet.cpp's
//!    llama.cpp fork builds both with `build_bitnet_158`, so both strings are tested); `add_meta_arch`
//!    keys in its order (`general.name`, `{arch}.vocab_size`, `context_length`, `embedding_length`,
//!    `block_count`, `feed_forward_length`, `rope.dimension_count = n_embd / n_head`,
//!    `attention.head_count`, `attention.head_count_kv`, `tokenizer.ggml.add_bos_token`,
//!    `attention.layer_norm_rms_epsilon`, `rope.freq_base`, `general.file_type`), then the BPE vocab
//!    (`tokenizer.ggml.model = gpt2`) and its BitNet chat template; no `attention.key_length`, no RoPE
//!    scaling keys, no activation key; tensor names from gguf-py's `TensorNameMap` (`token_embd`,
//!    `blk.N.attn_{norm,q,k,v,output,sub_norm}`, `blk.N.ffn_{norm,gate,up,down,sub_norm}`,
//!    `output_norm`); Q/K are NOT permuted (the permutation code is commented out; the fork's
//!    `llama_rope_type` gives these architectures NEOX RoPE).
//! 3. `llama-quantize … I2_S 1` (one thread, so `quantize_i2_s` sees each whole tensor): the seven
//!    projections become type id 36 via `src/ggml-bitnet-mad.cpp` `quantize_i2_s`, x86 branch as
//!    compiled by default (`include/gemm-config.h` defines `ACT_PARALLEL`, `QK_I2_S = 128`): scale =
//!    max |x| (double, stored as f32), code 1 for |x| < 1e-6, else 2 if x·scale > 0, else 0; block `b`
//!    of 128 values → 32 bytes, value `128b + 32g + j` at byte `32b + j`, bits `6 − 2g`; the f32 scale
//!    at byte `n/4`, inside a tail of 32 bytes whose other 28 bytes llama-quantize leaves uninitialized
//!    (filled with junk here). `token_embd` is F16 (the size of the published 2B-4T file, 1.19 GB,
//!    only adds up with an F16 embedding), norms stay F32; `general.quantization_version = 2` is appended
//!    and `general.file_type` becomes `LLAMA_FTYPE_MOSTLY_I2_S` (40).
//!
//! The I2_S bytes of tern's own `tern convert --type i2_s` are then compared with these.

mod common;

use common::*;
use std::path::Path;
use tern_gguf::{GgmlType, GgufWriter, Value};

/// bitnet.cpp's `quantize_i2_s` (x86, ACT_PARALLEL), written out from the C source.
fn quantize_i2_s(src: &[f32], junk: u8) -> Vec<u8> {
    let n = src.len();
    assert_eq!(n % 128, 0);
    let scale = src.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
    let mut out = vec![0u8; n / 4];
    for (i, &x) in src.iter().enumerate() {
        let q: u8 = if f64::from(x).abs() < 1e-6 {
            1
        } else if f64::from(x) * scale > 0.0 {
            2
        } else {
            0
        };
        let (blk, j) = (i / 128, i % 128);
        out[blk * 32 + j % 32] |= q << (6 - 2 * (j / 32));
    }
    out.extend_from_slice(&(scale as f32).to_le_bytes());
    out.extend((0..28u8).map(|k| junk.wrapping_add(k.wrapping_mul(37))));
    out
}

/// preprocess-huggingface-bitnet.py `quant_weight_fp16`, in f32.
fn quant_weight_fp16(w: &[f32]) -> Vec<f32> {
    let mean = (w.iter().map(|x| f64::from(x.abs())).sum::<f64>() / w.len() as f64) as f32;
    let s = 1.0f32 / mean.max(1e-5);
    w.iter()
        .map(|&x| {
            let r = (x * s).round_ties_even().clamp(-1.0, 1.0);
            r / s
        })
        .collect()
}

const HF_TO_GGUF: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.attn_sub_norm", "attn_sub_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("mlp.ffn_sub_norm", "ffn_sub_norm"),
];

fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let base = rest.strip_suffix(".weight").unwrap();
    let g = HF_TO_GGUF.iter().find(|(h, _)| *h == base).unwrap_or_else(|| panic!("unmapped {hf}")).1;
    format!("blk.{layer}.{g}.weight")
}

fn is_projection(hf: &str) -> bool {
    [
        "q_proj.weight",
        "k_proj.weight",
        "v_proj.weight",
        "o_proj.weight",
        "gate_proj.weight",
        "up_proj.weight",
        "down_proj.weight",
    ]
    .iter()
    .any(|k| hf.contains(k))
}

/// A tied 2B-4T-style latent checkpoint (write_bitnet's, minus `lm_head`).
fn tied_latent_checkpoint(dir: &Path, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    write_bitnet(tmp.path(), BitnetStorage::Latent, seed);
    use safetensors::tensor::{Dtype, TensorView};
    let set = tern_formats::SafetensorsSet::open_dir(tmp.path()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let views: Vec<(String, TensorView<'_>)> = set
        .tensors
        .values()
        .filter(|t| t.name != "lm_head.weight")
        .map(|t| (t.name.clone(), TensorView::new(Dtype::F16, t.shape.clone(), t.bytes()).unwrap()))
        .collect();
    safetensors::tensor::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap()).unwrap();
    cfg["tie_word_embeddings"] = true.into();
    cfg["max_position_embeddings"] = 4096.into();
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
}

/// Writes `out` the way convert-ms-to-gguf-bitnet.py + llama-quantize I2_S would for `src`.
fn bitnet_cpp_gguf(src: &Path, out: &Path, arch: &str) {
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    let u = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
    let (n_embd, n_head) = (cfg["hidden_size"].as_u64().unwrap(), cfg["num_attention_heads"].as_u64().unwrap());
    let vocab = cfg["vocab_size"].as_u64().unwrap() as usize;
    let k = |s: &str| format!("{arch}.{s}");
    let mut w = GgufWriter::new();
    let tokens: Vec<tern_gguf::GgufString> = (0..vocab).map(|i| format!("t{i}").into_bytes().into()).collect();
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), arch.into()),
        ("general.name".into(), "bitnet2b_2501".into()),
        (k("vocab_size"), u("vocab_size")),
        (k("context_length"), u("max_position_embeddings")),
        (k("embedding_length"), u("hidden_size")),
        (k("block_count"), u("num_hidden_layers")),
        (k("feed_forward_length"), u("intermediate_size")),
        (k("rope.dimension_count"), Value::U32((n_embd / n_head) as u32)),
        (k("attention.head_count"), u("num_attention_heads")),
        (k("attention.head_count_kv"), u("num_key_value_heads")),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32)),
        (k("rope.freq_base"), Value::F32(cfg["rope_theta"].as_f64().unwrap() as f32)),
        ("general.file_type".into(), Value::U32(40)),
        ("tokenizer.ggml.model".into(), "gpt2".into()),
        ("tokenizer.ggml.tokens".into(), Value::Array(tern_gguf::Array::String(tokens))),
        ("tokenizer.ggml.token_type".into(), Value::Array(tern_gguf::Array::I32(vec![1; vocab]))),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
        (
            "tokenizer.chat_template".into(),
            "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}\
             {{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}{% elif message['role'] == \
             'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
                .into(),
        ),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    for (key, v) in md {
        w.add_kv(key, v).unwrap();
    }
    let set = tern_formats::SafetensorsSet::open_dir(src).unwrap();
    let mut data: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, t) in set.tensors.values().enumerate() {
        let name = gguf_name(&t.name);
        let vals = t.to_f32().unwrap();
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        let (ty, bytes) = if is_projection(&t.name) {
            (GgmlType::I2_S, quantize_i2_s(&quant_weight_fp16(&vals), 0xA5 ^ i as u8))
        } else if name == "token_embd.weight" {
            (GgmlType::F16, f16_bytes(&vals))
        } else {
            (GgmlType::F32, vals.iter().flat_map(|x| x.to_le_bytes()).collect())
        };
        w.add_tensor(name.clone(), &dims, ty).unwrap();
        data.push((name, bytes));
    }
    let mut o = w.create(out).unwrap();
    for (name, bytes) in &data {
        o.write_tensor(name, bytes).unwrap();
    }
    o.finish().unwrap();
}

#[test]
fn bitnet_cpp_style_i2_s_file_runs_like_the_hf_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bitnet2b_like");
    tied_latent_checkpoint(&src, 5);
    let ids = synthetic_ids(40, 256);
    let hf = tern_model::load::load_hf_dir(&src, None).unwrap();
    assert!(hf.config.tie_embeddings);
    let want = logits(&hf, &ids);
    assert_eq!(GgmlType::I2_S.id(), 36);

    for arch in ["bitnet-b1.58", "bitnet-25"] {
        let path = tmp.path().join(format!("{arch}.gguf"));
        bitnet_cpp_gguf(&src, &path, arch);
        let f = tern_gguf::GgufFile::open(&path).unwrap();
        let q = f.require_tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!((q.ggml_type, q.n_bytes), (GgmlType::I2_S, 256 * 256 / 4 + 32));
        // The raw type id in the tensor-info table is 36.
        let bytes = f.as_bytes();
        let name_pos = bytes.windows(19).position(|w| w == b"blk.0.attn_q.weight").unwrap();
        let after = name_pos + "blk.0.attn_q.weight".len();
        let n_dims = u32::from_le_bytes(bytes[after..after + 4].try_into().unwrap()) as usize;
        let ty_at = after + 4 + 8 * n_dims;
        assert_eq!(u32::from_le_bytes(bytes[ty_at..ty_at + 4].try_into().unwrap()), 36);

        let model = load(&path);
        assert!(model.config.tie_embeddings, "{arch}: no output.weight means a tied head");
        assert_eq!(model.config.act, tern_kernels::ops::Activation::Relu2, "{arch}: build_bitnet_158 is relu²");
        let got = logits(&model, &ids);
        let e = worst_rel_l2(&got, &want, 256);
        eprintln!(
            "{arch}: rel L2 {e:.2e}, max |Δ| {:.2e}, top-1 {:.2}",
            max_abs(&got, &want),
            top1_agreement(&got, &want, 256)
        );
        assert_eq!(got, want, "{arch}: logits differ from the HF checkpoint (max |Δ| {})", max_abs(&got, &want));
    }

    // tern's own converter writes the same I2_S payload (codes and f32 scale) for every projection.
    let (_t, ours, plan) = convert(&src, tern_convert::TargetType::I2_S);
    assert_eq!(plan.arch, "bitnet-b1.58");
    let (a, b) = (
        tern_gguf::GgufFile::open(&ours).unwrap(),
        tern_gguf::GgufFile::open(tmp.path().join("bitnet-b1.58.gguf")).unwrap(),
    );
    let mut compared = 0;
    for t in b.tensors().iter().filter(|t| t.ggml_type == GgmlType::I2_S) {
        let u = a.require_tensor(&t.name).unwrap();
        assert_eq!((u.ggml_type, &u.dims), (t.ggml_type, &t.dims), "{}", t.name);
        let n = (t.n_elements() / 4 + 4) as usize;
        assert_eq!(&a.tensor_data(u).unwrap()[..n], &b.tensor_data(t).unwrap()[..n], "{}: codes + scale", t.name);
        compared += 1;
    }
    assert_eq!(compared, 14);
    let keys =
        |f: &tern_gguf::GgufFile| f.metadata().keys().map(str::to_string).collect::<std::collections::BTreeSet<_>>();
    let (ka, kb) = (keys(&a), keys(&b));
    eprintln!("keys only tern writes: {:?}", ka.difference(&kb).collect::<Vec<_>>());
    eprintln!("keys only bitnet.cpp writes: {:?}", kb.difference(&ka).collect::<Vec<_>>());
}
