//! Random-weight models of real shapes, built in memory or written to GGUF, for benchmarks that need
//! no download (`tern bench --synthetic NAME`, `tern convert synthetic:NAME OUT.gguf`).
//!
//! Shapes (hyper-parameters from the models' `config.json`):
//! * `bitnet-2b4t`: microsoft/bitnet-b1.58-2B-4T: 30 layers, hidden 2560, FFN 6912, 20 query / 5 KV
//!   heads of 128, vocab 128256, tied head, relu², attention and FFN sub-norms, ternary weights.
//! * `llama-1b`: meta-llama/Llama-3.2-1B: 16 layers, hidden 2048, FFN 8192, 32 / 8 heads of 64, vocab
//!   128256, tied head, SiLU (plain RoPE base 500000: the llama3 frequency scaling does not change cost).
//! * `qwen3-0.6b`: Qwen/Qwen3-0.6B: 28 layers, hidden 1024, FFN 3072, 16 / 8 heads of 128, vocab
//!   151936, tied head, q/k norms.
//!
//! Weights are a pure function of `(seed, tensor, row)` (SplitMix64), so the in-memory model and every
//! GGUF written from the same seed hold the same values: ternary codes uniform-ish over {-1, 0, 1}
//! (5-bit draws, 11/32 : 11/32 : 10/32) with one per-tensor scale `(2K/3)^-1/2` rounded to f16 (so
//! TQ1_0 / TQ2_0 block scales store it exactly); dense weights uniform in `±(3/K)^1/2`; embeddings
//! uniform in ±0.1; norms 1. Rows are generated in parallel with scoped threads.
//!
//! GGUF files follow llama.cpp's conventions (`convert_hf_to_gguf.py` names and metadata, Q/K rows
//! of `llama` permuted for adjacent-pair RoPE) with `tokenizer.ggml.model = "no_vocab"` and
//! `{arch}.vocab_size`, which llama.cpp loads with dummy tokens, enough for `llama-bench`.

use crate::arch;
use crate::config::{GenerationDefaults, ModelConfig};
use crate::linear::{Linear, LinearWeight, TernaryScale};
use crate::model::{Layer, Model};
use crate::rope::{Rope, RopeScaling};
use crate::{ModelError, Result};
use std::path::Path;
pub use tern_gguf::GgmlType;
use tern_gguf::{GgufWriter, Value};
use tern_kernels::buf::ByteBuf;
use tern_kernels::dense::{DenseDType, DenseMatrix};
use tern_kernels::quant::QuantMatrix;
use tern_kernels::ternary::{self, TernaryLayout, TernaryMatrix};

/// The shapes `--synthetic` accepts.
pub const NAMES: &[&str] = &["bitnet-2b4t", "llama-1b", "qwen3-0.6b"];

/// Hyper-parameters of a synthetic model.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    pub model_type: &'static str,
    /// `general.architecture` of its GGUF.
    pub gguf_arch: &'static str,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rms_eps: f32,
    pub rope_theta: f64,
    pub max_pos: usize,
    /// Ternary (BitNet) projections; otherwise dense.
    pub ternary: bool,
}

/// The shape called `name` (see [`NAMES`]).
pub fn shape(name: &str) -> Option<Shape> {
    Some(match name {
        "bitnet-2b4t" => Shape {
            name: "bitnet-2b4t",
            model_type: "bitnet",
            gguf_arch: "bitnet",
            hidden: 2560,
            n_layers: 30,
            n_heads: 20,
            n_kv_heads: 5,
            head_dim: 128,
            ffn: 6912,
            vocab: 128256,
            rms_eps: 1e-5,
            rope_theta: 500_000.0,
            max_pos: 4096,
            ternary: true,
        },
        "llama-1b" => Shape {
            name: "llama-1b",
            model_type: "llama",
            gguf_arch: "llama",
            hidden: 2048,
            n_layers: 16,
            n_heads: 32,
            n_kv_heads: 8,
            head_dim: 64,
            ffn: 8192,
            vocab: 128256,
            rms_eps: 1e-5,
            rope_theta: 500_000.0,
            max_pos: 131072,
            ternary: false,
        },
        "qwen3-0.6b" => Shape {
            name: "qwen3-0.6b",
            model_type: "qwen3",
            gguf_arch: "qwen3",
            hidden: 1024,
            n_layers: 28,
            n_heads: 16,
            n_kv_heads: 8,
            head_dim: 128,
            ffn: 3072,
            vocab: 151936,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
            max_pos: 40960,
            ternary: false,
        },
        _ => return None,
    })
}

/// The shape `name` with the overrides of `opts`.
fn shape_with(name: &str, opts: &Options) -> Result<Shape> {
    let mut s = shape(name).ok_or_else(|| unknown(name))?;
    if let Some(v) = opts.vocab {
        s.vocab = v.max(1);
    }
    Ok(s)
}

/// Storage of the layer projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerFormat {
    /// Ternary weights in one of tern's layouts (BitNet shapes only).
    Ternary(TernaryLayout),
    Dense(DenseDType),
    /// ggml blocks (Q8_0, Q4_0, Q4_K, Q6_K, …; TQ1_0 / TQ2_0 for ternary shapes).
    Quant(GgmlType),
}

/// Storage of the token embedding (which is also the tied head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedFormat {
    Dense(DenseDType),
    Quant(GgmlType),
}

/// How to build a synthetic model (`Default`: seed 0, the shape's default formats, all cores).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub seed: u64,
    /// `None`: T2 ternary for BitNet shapes, bf16 otherwise.
    pub layers: Option<LayerFormat>,
    /// `None`: bf16 (as the HF checkpoints store it).
    pub embed: Option<EmbedFormat>,
    /// Threads for generation (0 = all cores).
    pub threads: usize,
    /// Build only this many layers (tests); `None` = the real count.
    pub n_layers: Option<usize>,
    /// A smaller vocabulary (tests); `None` = the real one.
    pub vocab: Option<usize>,
}

fn unknown(name: &str) -> ModelError {
    ModelError::Config {
        path: format!("synthetic:{name}"),
        field: "name".into(),
        reason: format!("unknown synthetic model (known: {})", NAMES.join(", ")),
    }
}

fn bad_opt(name: &str, reason: String) -> ModelError {
    ModelError::Config { path: format!("synthetic:{name}"), field: "format".into(), reason }
}

/// SplitMix64 finalizer.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream of one row of one tensor.
#[inline]
fn row_key(seed: u64, tensor: u64, row: usize) -> u64 {
    mix(mix(seed ^ (tensor << 32)) ^ row as u64)
}

/// Ternary codes (`w + 1`) of a row: twelve 5-bit draws per 64-bit word, `(u·3) >> 5`.
fn ternary_codes(key: u64, out: &mut [u8]) {
    for (i, chunk) in out.chunks_mut(12).enumerate() {
        let h = mix(key.wrapping_add(i as u64));
        for (j, o) in chunk.iter_mut().enumerate() {
            *o = ((((h >> (5 * j)) & 31) * 3) >> 5) as u8;
        }
    }
}

/// Uniform values in `[-a, a)` for a row: four 16-bit draws per 64-bit word.
fn uniform_row(key: u64, a: f32, out: &mut [f32]) {
    for (i, chunk) in out.chunks_mut(4).enumerate() {
        let h = mix(key.wrapping_add(i as u64));
        for (j, o) in chunk.iter_mut().enumerate() {
            *o = (((h >> (16 * j)) & 0xFFFF) as f32 / 32768.0 - 1.0) * a;
        }
    }
}

/// The per-tensor ternary scale for `k` inputs, rounded to f16 (exact in TQ1_0/TQ2_0 blocks).
fn ternary_scale(k: usize) -> f32 {
    tern_quants::quant::f16_to_f32(tern_quants::quant::f32_to_f16((1.5 / k as f32).sqrt()))
}

/// Fills `out` (`rows × row_bytes`) by calling `f(row, dst)` for every row, on `threads` threads.
fn par_rows(out: &mut [u8], row_bytes: usize, threads: usize, f: &(dyn Fn(usize, &mut [u8]) + Sync)) {
    if row_bytes == 0 {
        return;
    }
    let rows = out.len() / row_bytes;
    let threads = threads.clamp(1, rows.max(1));
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (i, chunk) in out.chunks_mut(per * row_bytes).enumerate() {
            s.spawn(move || {
                for (j, dst) in chunk.chunks_exact_mut(row_bytes).enumerate() {
                    f(i * per + j, dst);
                }
            });
        }
    });
}

fn threads_of(opts: &Options) -> usize {
    if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        opts.threads
    }
}

/// Roles of the projections of one layer, in tensor-id order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

const ROLES: [Role; 7] = [Role::Q, Role::K, Role::V, Role::O, Role::Gate, Role::Up, Role::Down];

impl Role {
    /// `(rows, cols)` of the projection.
    fn dims(self, s: &Shape) -> (usize, usize) {
        let (h, q, kv) = (s.hidden, s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim);
        match self {
            Role::Q => (q, h),
            Role::K | Role::V => (kv, h),
            Role::O => (h, q),
            Role::Gate | Role::Up => (s.ffn, h),
            Role::Down => (h, s.ffn),
        }
    }
    fn gguf(self) -> &'static str {
        match self {
            Role::Q => "attn_q",
            Role::K => "attn_k",
            Role::V => "attn_v",
            Role::O => "attn_output",
            Role::Gate => "ffn_gate",
            Role::Up => "ffn_up",
            Role::Down => "ffn_down",
        }
    }
    fn id(self, layer: usize) -> u64 {
        16 + 16 * layer as u64 + ROLES.iter().position(|&r| r == self).unwrap_or(0) as u64
    }
}

const EMBED_ID: u64 = 1;
const EMBED_RANGE: f32 = 0.1;

/// The `ModelConfig` of a shape (with `n_layers` layers).
pub fn config(s: &Shape, n_layers: usize) -> ModelConfig {
    let spec = arch::by_model_type(s.model_type).expect("synthetic shapes use known model types");
    ModelConfig {
        arch: spec,
        model_type: s.model_type.to_string(),
        hidden: s.hidden,
        n_layers,
        n_heads: s.n_heads,
        n_kv_heads: s.n_kv_heads,
        head_dim: s.head_dim,
        ffn: s.ffn,
        vocab: s.vocab,
        rms_eps: s.rms_eps,
        act: spec.default_act,
        rope_theta: s.rope_theta,
        rope_scaling: RopeScaling::Default,
        partial_rotary: 1.0,
        max_position_embeddings: s.max_pos,
        attention_bias: false,
        mlp_bias: false,
        tie_embeddings: true,
        sliding_window: None,
        sliding_layers: Vec::new(),
        local_rope: None,
        norm_offset: 0.0,
        embed_scale: None,
        attn_scale: None,
        final_softcap: None,
        quant: None,
        eos_ids: Vec::new(),
        bos_id: None,
        gen_defaults: GenerationDefaults::default(),
        source: format!("synthetic:{}", s.name),
    }
}

/// Row `r` of a dense / float tensor as f32 (`out.len()` = its columns).
fn float_row(seed: u64, id: u64, cols: usize, r: usize, out: &mut [f32]) {
    let a = if id == EMBED_ID { EMBED_RANGE } else { (3.0 / cols as f32).sqrt() };
    uniform_row(row_key(seed, id, r), a, out);
}

/// Bytes of a `rows × cols` float tensor (`id`) stored as `ty` (F32, F16, BF16 or a ggml block type).
fn float_tensor_bytes(
    seed: u64,
    id: u64,
    rows: usize,
    cols: usize,
    ty: GgmlType,
    threads: usize,
    name: &str,
) -> Result<Vec<u8>> {
    let rb = tern_quants::storage_size(ty, cols)
        .ok_or_else(|| bad_opt(name, format!("{cols} columns are not whole {ty} blocks")))?;
    let mut out = vec![0u8; rows * rb];
    let failed = std::sync::atomic::AtomicBool::new(false);
    par_rows(&mut out, rb, threads, &|r, dst| {
        let mut v = vec![0f32; cols];
        float_row(seed, id, cols, r, &mut v);
        match ty {
            GgmlType::F32 => dst.iter_mut().zip(v.iter().flat_map(|x| x.to_le_bytes())).for_each(|(d, b)| *d = b),
            GgmlType::F16 => {
                for (d, x) in dst.chunks_exact_mut(2).zip(&v) {
                    d.copy_from_slice(&tern_quants::quant::f32_to_f16(*x).to_le_bytes());
                }
            }
            GgmlType::BF16 => {
                for (d, x) in dst.chunks_exact_mut(2).zip(&v) {
                    d.copy_from_slice(&tern_quants::quant::f32_to_bf16(*x).to_le_bytes());
                }
            }
            _ => {
                if tern_quants::quantize_into(ty, &v, dst).is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    if failed.into_inner() {
        return Err(bad_opt(name, format!("cannot quantize to {ty}")));
    }
    Ok(out)
}

fn dense_dtype_ggml(d: DenseDType) -> GgmlType {
    match d {
        DenseDType::F32 => GgmlType::F32,
        DenseDType::F16 => GgmlType::F16,
        DenseDType::BF16 => GgmlType::BF16,
    }
}

/// A float-valued `Linear` (`id`, `rows × cols`) stored as `ty`.
fn float_linear(
    seed: u64,
    id: u64,
    rows: usize,
    cols: usize,
    ty: GgmlType,
    threads: usize,
    name: &str,
) -> Result<Linear> {
    let bytes = ByteBuf::from_vec(float_tensor_bytes(seed, id, rows, cols, ty, threads, name)?);
    let weight = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            let dt = match ty {
                GgmlType::F32 => DenseDType::F32,
                GgmlType::F16 => DenseDType::F16,
                _ => DenseDType::BF16,
            };
            LinearWeight::Dense(DenseMatrix::new(rows, cols, dt, bytes).map_err(|e| bad_opt(name, format!("{e:?}")))?)
        }
        _ => LinearWeight::Quant(QuantMatrix::new(rows, cols, ty, bytes).map_err(|e| bad_opt(name, e.to_string()))?),
    };
    Ok(Linear { weight, bias: None })
}

/// Codes of row `r` of the ternary projection `id` (`out.len()` = its columns).
fn ternary_row(seed: u64, id: u64, r: usize, out: &mut [u8]) {
    ternary_codes(row_key(seed, id, r), out);
}

/// Builds the synthetic model `name` in memory.
pub fn build(name: &str, opts: &Options) -> Result<Model> {
    let s = shape_with(name, opts)?;
    let threads = threads_of(opts);
    let n_layers = opts.n_layers.unwrap_or(s.n_layers).min(s.n_layers);
    let layer_fmt = opts.layers.unwrap_or(if s.ternary {
        LayerFormat::Ternary(TernaryLayout::T2)
    } else {
        LayerFormat::Dense(DenseDType::BF16)
    });
    let embed_ty = match opts.embed.unwrap_or(EmbedFormat::Dense(DenseDType::BF16)) {
        EmbedFormat::Dense(d) => dense_dtype_ggml(d),
        EmbedFormat::Quant(t) => t,
    };
    let seed = opts.seed;
    let embed = float_linear(seed, EMBED_ID, s.vocab, s.hidden, embed_ty, threads, name)?;
    let proj = |role: Role, layer: usize| -> Result<Linear> {
        let (rows, cols) = role.dims(&s);
        let id = role.id(layer);
        match layer_fmt {
            LayerFormat::Ternary(layout) => {
                if !s.ternary {
                    return Err(bad_opt(name, "ternary layers need a BitNet shape".into()));
                }
                let w = TernaryMatrix::from_code_rows(
                    layout,
                    rows,
                    cols,
                    &|r, out| ternary_row(seed, id, r, &mut out[..cols]),
                    threads,
                );
                let weight =
                    LinearWeight::Ternary { w, scale: TernaryScale::Multiply(ternary_scale(cols)), input_norm: None };
                Ok(Linear { weight, bias: None })
            }
            LayerFormat::Quant(ty @ (GgmlType::TQ1_0 | GgmlType::TQ2_0)) => {
                if !s.ternary {
                    return Err(bad_opt(name, format!("{ty} layers need a BitNet shape")));
                }
                let bytes = ternary_gguf_bytes(seed, id, rows, cols, ty, threads, name)?;
                let m = QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(bytes))
                    .map_err(|e| bad_opt(name, e.to_string()))?;
                Ok(Linear { weight: LinearWeight::Quant(m), bias: None })
            }
            LayerFormat::Quant(ty) => float_linear(seed, id, rows, cols, ty, threads, name),
            LayerFormat::Dense(d) => float_linear(seed, id, rows, cols, dense_dtype_ggml(d), threads, name),
        }
    };
    let cfg = config(&s, n_layers);
    let mut layers = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        layers.push(Layer {
            attn_norm: vec![1.0; s.hidden],
            q: proj(Role::Q, l)?,
            k: proj(Role::K, l)?,
            v: proj(Role::V, l)?,
            o: proj(Role::O, l)?,
            q_norm: cfg.arch.qk_norm.then(|| vec![1.0; s.head_dim]),
            k_norm: cfg.arch.qk_norm.then(|| vec![1.0; s.head_dim]),
            attn_sub_norm: cfg.arch.sub_norms.then(|| vec![1.0; s.n_heads * s.head_dim]),
            ffn_norm: vec![1.0; s.hidden],
            gate: proj(Role::Gate, l)?,
            up: proj(Role::Up, l)?,
            down: proj(Role::Down, l)?,
            ffn_sub_norm: cfg.arch.sub_norms.then(|| vec![1.0; s.ffn]),
            post_attn_norm: None,
            post_ffn_norm: None,
        });
    }
    let rope = Rope::new(cfg.rope_theta, cfg.rotary_dim(), cfg.rope_scaling.clone(), cfg.max_position_embeddings);
    Ok(Model { config: cfg, embed, layers, norm: vec![1.0; s.hidden], lm_head: None, rope, rope_local: None })
}

/// TQ1_0 / TQ2_0 bytes of a ternary projection.
fn ternary_gguf_bytes(
    seed: u64,
    id: u64,
    rows: usize,
    cols: usize,
    ty: GgmlType,
    threads: usize,
    name: &str,
) -> Result<Vec<u8>> {
    let rb = tern_quants::storage_size(ty, cols)
        .ok_or_else(|| bad_opt(name, format!("{cols} columns are not whole {ty} blocks")))?;
    let d = ternary_scale(cols);
    let mut out = vec![0u8; rows * rb];
    par_rows(&mut out, rb, threads, &|r, dst| {
        let mut codes = vec![1u8; cols];
        ternary_row(seed, id, r, &mut codes);
        if ty == GgmlType::TQ1_0 {
            ternary::tq1_0_from_codes(&codes, d, dst);
        } else {
            ternary::tq2_0_from_codes(&codes, d, dst);
        }
    });
    Ok(out)
}

/// `perm[new] = old` of `convert_hf_to_gguf.py` `LlamaModel.permute`: GGUF row `new` holds HF row
/// `old` (the inverse of `load_gguf`'s un-permutation).
fn llama_permute_rows(n_head: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    let mut perm = vec![0; n_head * head_dim];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                perm[h * head_dim + 2 * i + j] = h * head_dim + j * half + i;
            }
        }
    }
    perm
}

/// What [`write_gguf`] wrote.
#[derive(Clone, Debug)]
pub struct GgufSummary {
    pub tensors: usize,
    pub data_bytes: u64,
    pub layer_type: GgmlType,
    pub embed_type: GgmlType,
}

/// ggml `general.file_type` for a layer type.
fn file_type(t: GgmlType) -> u32 {
    match t {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q2_K => 10,
        GgmlType::Q3_K => 12,
        GgmlType::Q4_K => 15,
        GgmlType::Q5_K => 17,
        GgmlType::Q6_K => 18,
        GgmlType::BF16 => 32,
        GgmlType::TQ1_0 => 36,
        GgmlType::TQ2_0 => 37,
        _ => 0,
    }
}

/// Writes the synthetic model `name` (same weights as [`build`] with the same seed) to a GGUF file.
///
/// `layer_type`: TQ1_0 / TQ2_0 for BitNet shapes (F16 / BF16 / F32 store the ternary values
/// `(code − 1)·scale` as floats), any float or ggml block type for dense shapes. `embed_type`: the
/// token embedding (= tied head); `None` follows llama-quantize (Q4_K for TQ1_0 / TQ2_0 files, else
/// the layer type, F16 for F32 / BF16 layers of float files). The file is written to `path.partial`
/// and renamed.
pub fn write_gguf(
    name: &str,
    opts: &Options,
    layer_type: GgmlType,
    embed_type: Option<GgmlType>,
    path: &Path,
) -> Result<GgufSummary> {
    let s = shape_with(name, opts)?;
    let threads = threads_of(opts);
    let n_layers = opts.n_layers.unwrap_or(s.n_layers).min(s.n_layers);
    let ternary_file = matches!(layer_type, GgmlType::TQ1_0 | GgmlType::TQ2_0);
    if ternary_file && !s.ternary {
        return Err(bad_opt(name, format!("{layer_type} needs a BitNet shape")));
    }
    let embed_type = embed_type.unwrap_or(match layer_type {
        GgmlType::TQ1_0 | GgmlType::TQ2_0 => GgmlType::Q4_K,
        GgmlType::F32 | GgmlType::BF16 => GgmlType::F16,
        t => t,
    });
    let p = path.display().to_string();
    let gerr =
        |e: tern_gguf::GgufError| ModelError::Config { path: p.clone(), field: "<gguf>".into(), reason: e.to_string() };
    let arch = s.gguf_arch;
    let k = |x: &str| format!("{arch}.{x}");
    let u = |v: usize| Value::U32(v as u32);
    let mut w = GgufWriter::new();
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), arch.into()),
        ("general.type".into(), "model".into()),
        ("general.name".into(), format!("tern synthetic {} (seed {})", s.name, opts.seed).into()),
        (k("block_count"), u(n_layers)),
        (k("context_length"), u(s.max_pos)),
        (k("embedding_length"), u(s.hidden)),
        (k("feed_forward_length"), u(s.ffn)),
        (k("attention.head_count"), u(s.n_heads)),
        (k("attention.head_count_kv"), u(s.n_kv_heads)),
        (k("rope.freq_base"), Value::F32(s.rope_theta as f32)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(s.rms_eps)),
        (k("attention.key_length"), u(s.head_dim)),
        (k("attention.value_length"), u(s.head_dim)),
        ("general.file_type".into(), Value::U32(file_type(layer_type))),
        (k("vocab_size"), u(s.vocab)),
        (k("rope.dimension_count"), u(s.head_dim)),
        ("general.quantization_version".into(), Value::U32(2)),
        ("tokenizer.ggml.model".into(), "no_vocab".into()),
    ];
    for (key, v) in md {
        w.add_kv(key, v).map_err(gerr)?;
    }
    if s.ternary {
        w.add_kv(k("hidden_activation"), "relu2").map_err(gerr)?;
    }
    let cfg = config(&s, n_layers);
    // (name, dims, type, what)
    enum Src {
        Embed,
        Ones,
        Proj(Role, usize),
    }
    let mut plan: Vec<(String, Vec<u64>, GgmlType, Src)> = Vec::new();
    let d = |v: &[usize]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
    plan.push(("token_embd.weight".into(), d(&[s.hidden, s.vocab]), embed_type, Src::Embed));
    plan.push(("output_norm.weight".into(), d(&[s.hidden]), GgmlType::F32, Src::Ones));
    for l in 0..n_layers {
        let b = format!("blk.{l}");
        plan.push((format!("{b}.attn_norm.weight"), d(&[s.hidden]), GgmlType::F32, Src::Ones));
        if cfg.arch.qk_norm {
            plan.push((format!("{b}.attn_q_norm.weight"), d(&[s.head_dim]), GgmlType::F32, Src::Ones));
            plan.push((format!("{b}.attn_k_norm.weight"), d(&[s.head_dim]), GgmlType::F32, Src::Ones));
        }
        if cfg.arch.sub_norms {
            plan.push((format!("{b}.attn_sub_norm.weight"), d(&[s.n_heads * s.head_dim]), GgmlType::F32, Src::Ones));
            plan.push((format!("{b}.ffn_sub_norm.weight"), d(&[s.ffn]), GgmlType::F32, Src::Ones));
        }
        plan.push((format!("{b}.ffn_norm.weight"), d(&[s.hidden]), GgmlType::F32, Src::Ones));
        for role in ROLES {
            let (rows, cols) = role.dims(&s);
            plan.push((format!("{b}.{}.weight", role.gguf()), d(&[cols, rows]), layer_type, Src::Proj(role, l)));
        }
    }
    for (n, dims, ty, _) in &plan {
        w.add_tensor(n.clone(), dims, *ty).map_err(gerr)?;
    }
    let partial = path.with_extension("gguf.partial");
    let mut out = w.create(&partial).map_err(gerr)?;
    let seed = opts.seed;
    let permute = arch == "llama";
    let mut data_bytes = 0u64;
    for (n, dims, ty, src) in &plan {
        let bytes: Vec<u8> = match src {
            Src::Ones => vec![1.0f32; dims[0] as usize].iter().flat_map(|v| v.to_le_bytes()).collect(),
            Src::Embed => float_tensor_bytes(seed, EMBED_ID, s.vocab, s.hidden, *ty, threads, name)?,
            Src::Proj(role, l) => {
                let (rows, cols) = role.dims(&s);
                let id = role.id(*l);
                let mut b = if s.ternary {
                    match ty {
                        GgmlType::TQ1_0 | GgmlType::TQ2_0 => {
                            ternary_gguf_bytes(seed, id, rows, cols, *ty, threads, name)?
                        }
                        _ => {
                            // Ternary values as floats.
                            let sc = ternary_scale(cols);
                            let rb = tern_quants::storage_size(*ty, cols)
                                .ok_or_else(|| bad_opt(name, format!("{cols} columns are not whole {ty} blocks")))?;
                            let mut out = vec![0u8; rows * rb];
                            let failed = std::sync::atomic::AtomicBool::new(false);
                            par_rows(&mut out, rb, threads, &|r, dst| {
                                let mut codes = vec![1u8; cols];
                                ternary_row(seed, id, r, &mut codes);
                                let v: Vec<f32> = codes.iter().map(|&c| (c as f32 - 1.0) * sc).collect();
                                if tern_quants::quantize_into(*ty, &v, dst).is_err() {
                                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                }
                            });
                            if failed.into_inner() {
                                return Err(bad_opt(name, format!("cannot store ternary values as {ty}")));
                            }
                            out
                        }
                    }
                } else {
                    float_tensor_bytes(seed, id, rows, cols, *ty, threads, name)?
                };
                if permute && matches!(role, Role::Q | Role::K) {
                    let heads = if *role == Role::Q { s.n_heads } else { s.n_kv_heads };
                    let perm = llama_permute_rows(heads, s.head_dim);
                    let rb = b.len() / rows;
                    let mut p = Vec::with_capacity(b.len());
                    for &old in &perm {
                        p.extend_from_slice(&b[old * rb..(old + 1) * rb]);
                    }
                    b = p;
                }
                b
            }
        };
        data_bytes += bytes.len() as u64;
        out.write_tensor(n, &bytes).map_err(gerr)?;
    }
    out.finish().map_err(gerr)?;
    std::fs::rename(&partial, path).map_err(|e| ModelError::Config {
        path: p.clone(),
        field: "<file>".into(),
        reason: format!("renaming {} → {}: {e}", partial.display(), path.display()),
    })?;
    Ok(GgufSummary { tensors: plan.len(), data_bytes, layer_type, embed_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_known() {
        for n in NAMES {
            assert_eq!(shape(n).unwrap().name, *n);
        }
        assert!(shape("nope").is_none());
        let s = shape("bitnet-2b4t").unwrap();
        assert_eq!((s.hidden, s.n_layers, s.ffn, s.vocab, s.n_heads, s.n_kv_heads), (2560, 30, 6912, 128256, 20, 5));
    }

    #[test]
    fn codes_are_ternary_and_deterministic() {
        let mut a = vec![0u8; 1000];
        let mut b = vec![0u8; 1000];
        ternary_row(7, 20, 3, &mut a);
        ternary_row(7, 20, 3, &mut b);
        assert_eq!(a, b);
        assert!(a.iter().all(|&c| c <= 2));
        let counts = [0u8, 1, 2].map(|c| a.iter().filter(|&&x| x == c).count());
        assert!(counts.iter().all(|&n| n > 250), "{counts:?}");
        ternary_row(8, 20, 3, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn permutation_inverts_loader() {
        let (nh, hd) = (3usize, 8usize);
        let p = llama_permute_rows(nh, hd);
        let mut seen = vec![false; nh * hd];
        for &o in &p {
            seen[o] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
