//! Helpers shared by the conversion tests: fixture paths, conversion into a temp dir, logits of a
//! loaded model, and error measures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use tern_convert::{ConvertOptions, Plan, TargetType};
use tern_formats::SafetensorsSet;
use tern_kernels::ThreadPool;
use tern_model::{KvCache, Logits, Model, Workspace};

pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf")
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures_root().join(name)
}

/// `reference.safetensors` of a fixture: input ids and transformers float32 logits.
pub struct Reference {
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub vocab: usize,
}

pub fn reference(dir: &Path) -> Reference {
    let set = SafetensorsSet::open_files(&[dir.join("reference.safetensors")]).unwrap();
    let ids = set.get("input_ids").unwrap().to_i64().unwrap().into_iter().map(|x| x as u32).collect();
    let l = set.get("logits").unwrap();
    Reference { ids, vocab: l.shape[1], logits: l.to_f32().unwrap() }
}

/// Converts `src` to `ty` in a fresh temp dir; returns the dir (keep it alive), the file and the plan.
pub fn convert(src: &Path, ty: TargetType) -> (tempfile::TempDir, PathBuf, Plan) {
    convert_with(ConvertOptions::new(src, ty))
}

pub fn convert_with(opts: ConvertOptions) -> (tempfile::TempDir, PathBuf, Plan) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.gguf");
    let plan =
        tern_convert::plan(&opts).unwrap_or_else(|e| panic!("{}: plan {}: {e}", opts.source.display(), opts.target));
    plan.write(&out, false, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: write {}: {e}", opts.source.display(), opts.target));
    (tmp, out, plan)
}

/// Logits of every position of `ids`.
pub fn logits(model: &Model, ids: &[u32]) -> Vec<f32> {
    let pool = ThreadPool::new(2);
    let mut cache = KvCache::new(&model.config, ids.len());
    let mut ws = Workspace::default();
    model.forward(&pool, ids, &mut cache, &mut ws, Logits::All).unwrap();
    ws.logits[..ids.len() * model.vocab()].to_vec()
}

pub fn load(path: &Path) -> Model {
    tern_model::load::load_path(path, None).unwrap_or_else(|e| panic!("{}: load: {e}", path.display()))
}

/// Worst per-position relative L2 error of `a` against `b` (rows of `v`).
pub fn worst_rel_l2(a: &[f32], b: &[f32], v: usize) -> f64 {
    a.chunks(v)
        .zip(b.chunks(v))
        .map(|(x, y)| {
            let num: f64 = x.iter().zip(y).map(|(p, q)| f64::from(p - q).powi(2)).sum();
            let den: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum();
            (num / den.max(1e-30)).sqrt()
        })
        .fold(0.0, f64::max)
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

/// Fraction of positions whose argmax agrees.
pub fn top1_agreement(a: &[f32], b: &[f32], v: usize) -> f64 {
    let n = a.len() / v;
    let same = a.chunks(v).zip(b.chunks(v)).filter(|(x, y)| argmax(x) == argmax(y)).count();
    same as f64 / n as f64
}

/// A small deterministic generator (64-bit LCG) for synthetic checkpoints.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() as f32 / 2_147_483_648.0) - 1.0
    }
    pub fn trit(&mut self) -> i8 {
        (self.next_u32() % 3) as i8 - 1
    }
}

/// Float values stored as F16 (exactly representable, so F16 GGUF tensors equal them).
pub fn f16_bytes(vals: &[f32]) -> Vec<u8> {
    vals.iter().flat_map(|&v| tern_quants::quant::f32_to_f16(v).to_le_bytes()).collect()
}

/// transformers `pack_weights` of a ternary `out × inp` matrix: row `k·R + r` in bits `2k` of row `r`.
pub fn pack_ternary(t: &[i8], out: usize, inp: usize) -> Vec<u8> {
    let r = out / 4;
    let mut p = vec![0u8; r * inp];
    for row in 0..out {
        let (lane, pr) = (row / r, row % r);
        for c in 0..inp {
            p[pr * inp + c] |= ((t[row * inp + c] + 1) as u8) << (2 * lane);
        }
    }
    p
}

/// How the BitNet projections of [`write_bitnet`] are stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BitnetStorage {
    /// Packed U8 + a power-of-two `weight_scale` (AutoBitLinear, offline).
    Packed,
    /// Packed U8 with one code 3 (invalid) in `blk.1` `mlp.down_proj`.
    PackedCorrupt,
    /// Float latent weights (online).
    Latent,
}

/// Writes a random `model_type: bitnet` checkpoint (microsoft/bitnet-b1.58-2B-4T layout: sub-norms,
/// relu2, untied head) with hidden 256 and intermediate 512, so every projection fits TQ/I2_S blocks.
pub fn write_bitnet(dir: &Path, storage: BitnetStorage, seed: u64) {
    use safetensors::tensor::{Dtype, TensorView};
    let (h, ffn, nh, nkv, hd, layers, vocab) = (256usize, 512usize, 4usize, 2usize, 64usize, 2usize, 256usize);
    let mut rng = Lcg(seed);
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let floats = |rng: &mut Lcg, name: String, shape: Vec<usize>, base: f32, spread: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| base + spread * rng.uniform()).collect();
        (name, Dtype::F16, shape, f16_bytes(&v))
    };
    tensors.push(floats(&mut rng, "model.embed_tokens.weight".into(), vec![vocab, h], 0.0, 1.0));
    tensors.push(floats(&mut rng, "lm_head.weight".into(), vec![vocab, h], 0.0, 0.2));
    tensors.push(floats(&mut rng, "model.norm.weight".into(), vec![h], 1.0, 0.2));
    let scales = [0.25f32, 0.5, 0.125, 1.0];
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        tensors.push(floats(&mut rng, format!("{p}.input_layernorm.weight"), vec![h], 1.0, 0.2));
        tensors.push(floats(&mut rng, format!("{p}.post_attention_layernorm.weight"), vec![h], 1.0, 0.2));
        tensors.push(floats(&mut rng, format!("{p}.self_attn.attn_sub_norm.weight"), vec![nh * hd], 1.0, 0.2));
        tensors.push(floats(&mut rng, format!("{p}.mlp.ffn_sub_norm.weight"), vec![ffn], 1.0, 0.2));
        for (j, (name, out, inp)) in [
            ("self_attn.q_proj", nh * hd, h),
            ("self_attn.k_proj", nkv * hd, h),
            ("self_attn.v_proj", nkv * hd, h),
            ("self_attn.o_proj", h, nh * hd),
            ("mlp.gate_proj", ffn, h),
            ("mlp.up_proj", ffn, h),
            ("mlp.down_proj", h, ffn),
        ]
        .into_iter()
        .enumerate()
        {
            if storage == BitnetStorage::Latent {
                tensors.push(floats(&mut rng, format!("{p}.{name}.weight"), vec![out, inp], 0.0, 0.05));
                continue;
            }
            let t: Vec<i8> = (0..out * inp).map(|_| rng.trit()).collect();
            let mut packed = pack_ternary(&t, out, inp);
            if storage == BitnetStorage::PackedCorrupt && i == 1 && name == "mlp.down_proj" {
                packed[5] |= 0b11;
            }
            tensors.push((format!("{p}.{name}.weight"), Dtype::U8, vec![out / 4, inp], packed));
            tensors.push((format!("{p}.{name}.weight_scale"), Dtype::F16, vec![1], f16_bytes(&[scales[(i + j) % 4]])));
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    let views: Vec<(String, TensorView<'_>)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(meta), &dir.join("model.safetensors")).unwrap();
    let mode = if storage == BitnetStorage::Latent { "online" } else { "offline" };
    let config = serde_json::json!({
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_size": h, "intermediate_size": ffn,
        "num_attention_heads": nh, "num_key_value_heads": nkv, "num_hidden_layers": layers, "vocab_size": vocab,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "relu2",
        "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 0, "torch_dtype": "float16",
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": mode}
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// Fixed token ids for synthetic models.
pub fn synthetic_ids(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + 11) % vocab).collect()
}

/// Copies the GGUF `src` to `dst` (tensors byte for byte, in order), passing its metadata through
/// `edit` first (to add, drop or change keys).
pub fn rewrite_gguf(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<(String, tern_gguf::Value)>)) {
    let f = tern_gguf::GgufFile::open(src).unwrap();
    let mut md: Vec<(String, tern_gguf::Value)> =
        f.metadata().iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    edit(&mut md);
    let mut w = tern_gguf::GgufWriter::new();
    for (k, v) in md {
        w.add_kv(k, v).unwrap();
    }
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ggml_type).unwrap();
    }
    let mut out = w.create(dst).unwrap();
    for t in f.tensors() {
        out.write_tensor(&t.name, f.tensor_data(t).unwrap()).unwrap();
    }
    out.finish().unwrap();
}

/// A copy of the HF directory `src` in `dst`: config.json edited by `edit`, every safetensors tensor
/// kept (converted to F16 unless already F16/BF16/U8) and `extra` F32 tensors added.
pub fn derive_hf_dir(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
    extra: &[(String, Vec<usize>, Vec<f32>)],
) {
    use safetensors::tensor::{Dtype, TensorView};
    let set = SafetensorsSet::open_dir(src).unwrap();
    std::fs::create_dir_all(dst).unwrap();
    let dt = |d: tern_formats::safetensors::DType| match d {
        tern_formats::safetensors::DType::F16 => Dtype::F16,
        tern_formats::safetensors::DType::BF16 => Dtype::BF16,
        tern_formats::safetensors::DType::F32 => Dtype::F32,
        tern_formats::safetensors::DType::U8 => Dtype::U8,
        other => panic!("derive_hf_dir: unexpected dtype {other}"),
    };
    let extra_bytes: Vec<Vec<u8>> =
        extra.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views: Vec<(String, TensorView<'_>)> = set
        .tensors
        .values()
        .map(|t| (t.name.clone(), TensorView::new(dt(t.dtype), t.shape.clone(), t.bytes()).unwrap()))
        .collect();
    for ((n, s, _), b) in extra.iter().zip(&extra_bytes) {
        views.push((n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()));
    }
    safetensors::tensor::serialize_to_file(views, None, &dst.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dst.join("config.json"), serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    for extra_file in ["generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
        if src.join(extra_file).is_file() {
            std::fs::copy(src.join(extra_file), dst.join(extra_file)).unwrap();
        }
    }
}
