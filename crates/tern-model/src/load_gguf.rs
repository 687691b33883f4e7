//! Binding GGUF files (llama.cpp naming) to the same model code as safetensors checkpoints.
//!
//! Hyper-parameters come from `{arch}.*` metadata keys, tensors from llama.cpp's names
//! (`token_embd`, `blk.N.attn_q`, …). GGUF dims are ggml-ordered (`ne0` = row length first).
//! Differences from HF handled here, once, at load:
//! * `llama` GGUFs store Q/K rows permuted for GPT-J-style (adjacent-pair) RoPE
//!   (`convert_hf_to_gguf.py` `LlamaModel.permute`); rows are reordered back so the shared forward
//!   keeps HF's rotate-half RoPE. Quantized blocks run along a row, so the reorder is exact.
//! * `rope_freqs.weight` (Llama-3.1 frequency factors) divides the inverse frequencies.
//! * No `output.weight` means the head is tied to `token_embd`.
//! * The MLP activation is `{arch}.hidden_activation` when present, else what llama.cpp / bitnet.cpp
//!   hard-code for the architecture ([`gguf_activation`]).
//! * RoPE keys use llama.cpp's names (`llama-arch.cpp` / gguf-py `constants.py`): YaRN's
//!   `rope.scaling.yarn_attn_factor` is transformers' `attention_factor` (what `convert_hf_to_gguf.py`
//!   writes), `rope.scaling.attn_factor` is llama.cpp's extra multiplier (`rope_attn_factor`).
//! * Optional biases are bound wherever llama.cpp binds them: `attn_{q,k,v,output}.bias` and
//!   `ffn_{gate,up,down}.bias`.
//! * Ternary GGUF types: I2_S (one scale per tensor) and TQ1_0/TQ2_0 whose blocks all share one scale
//!   are repacked into tern's T2 ternary layout with per-token int8 activations; other quantized
//!   types stay in their ggml blocks ([`LinearWeight::Quant`]).

use crate::arch::{self, SlidingWindow};
use crate::config::{GenerationDefaults, ModelConfig};
use crate::linear::{Linear, LinearWeight, TernaryScale};
use crate::model::{Layer, Model};
use crate::rope::{Rope, RopeScaling};
use crate::{ModelError, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tern_gguf::{GgmlType, GgufFile, TensorInfo};
use tern_kernels::buf::ByteBuf;
use tern_kernels::dense::{DenseDType, DenseMatrix};
use tern_kernels::quant::QuantMatrix;
use tern_kernels::ternary::TernaryMatrix;

use crate::load::Progress;

/// Keeps the GGUF mapping alive for zero-copy weight views.
struct GgufBytes(Arc<GgufFile>);
impl AsRef<[u8]> for GgufBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// How the GGUF architecture maps onto ours.
struct GgufArch {
    model_type: &'static str,
    /// Q/K rows permuted for adjacent-pair RoPE (llama.cpp `LLAMA_ROPE_TYPE_NORM` archs).
    permuted_qk: bool,
}

fn gguf_arch(name: &str) -> Option<GgufArch> {
    Some(match name {
        "llama" => GgufArch { model_type: "llama", permuted_qk: true },
        "mistral" => GgufArch { model_type: "mistral", permuted_qk: true },
        "qwen2" => GgufArch { model_type: "qwen2", permuted_qk: false },
        "qwen3" => GgufArch { model_type: "qwen3", permuted_qk: false },
        "bitnet" | "bitnet-b1.58" | "bitnet-25" => GgufArch { model_type: "bitnet", permuted_qk: false },
        "gemma3" => GgufArch { model_type: "gemma3_text", permuted_qk: false },
        _ => return None,
    })
}

fn gerr(path: &str, e: tern_gguf::GgufError) -> ModelError {
    let s = e.to_string();
    ModelError::Config { path: path.to_string(), field: "<gguf>".into(), reason: s }
}

/// Opens a `.gguf` file and binds it.
pub fn load_gguf(path: &Path, progress: Option<Progress<'_>>) -> Result<Model> {
    let p = path.display().to_string();
    let f = Arc::new(GgufFile::open(path).map_err(|e| gerr(&p, e))?);
    let config = gguf_config(&f, &p)?;
    bind(config, f, &p, progress)
}

/// Reads hyper-parameters from GGUF metadata into a [`ModelConfig`].
pub fn gguf_config(f: &GgufFile, path: &str) -> Result<ModelConfig> {
    let md = f.metadata();
    let ge = |e| gerr(path, e);
    let arch_name = md.get_str("general.architecture").map_err(ge)?.to_string();
    let ga = gguf_arch(&arch_name).ok_or_else(|| ModelError::UnknownModelType {
        path: path.to_string(),
        found: arch_name.clone(),
        supported: "llama, mistral, qwen2, qwen3, gemma3, bitnet, bitnet-b1.58".into(),
    })?;
    let spec = arch::by_model_type(ga.model_type).expect("GGUF arch maps to a known model type");
    let k = |s: &str| format!("{arch_name}.{s}");
    let uint = |key: &str| -> Result<Option<usize>> {
        match md.get(&k(key)) {
            None => Ok(None),
            Some(_) => md.get_uint(&k(key)).map(|v| Some(v as usize)).map_err(ge),
        }
    };
    let need = |key: &str| -> Result<usize> {
        uint(key)?.ok_or_else(|| ModelError::Config {
            path: path.into(),
            field: k(key),
            reason: "required metadata key is missing".into(),
        })
    };
    let float = |key: &str| -> Result<Option<f64>> {
        match md.get(&k(key)) {
            None => Ok(None),
            Some(_) => md.get_float(&k(key)).map(Some).map_err(ge),
        }
    };
    let hidden = need("embedding_length")?;
    let n_layers = need("block_count")?;
    let n_heads = need("attention.head_count")?;
    let n_kv_heads = uint("attention.head_count_kv")?.unwrap_or(n_heads);
    let ffn = need("feed_forward_length")?;
    let head_dim = uint("attention.key_length")?.unwrap_or(hidden.checked_div(n_heads).unwrap_or(0));
    let embd = f.tensor("token_embd.weight").ok_or_else(|| ModelError::MissingTensor {
        source_name: path.into(),
        tensor: "token_embd.weight".into(),
        role: "token embeddings".into(),
    })?;
    let vocab = match uint("vocab_size")? {
        Some(v) => v,
        None => embd.dims.get(1).copied().unwrap_or(0) as usize,
    };
    for (field, v) in [
        ("embedding_length", hidden),
        ("block_count", n_layers),
        ("attention.head_count", n_heads),
        ("attention.head_count_kv", n_kv_heads),
        ("feed_forward_length", ffn),
        ("vocab_size", vocab),
        ("attention.key_length", head_dim),
    ] {
        if v == 0 {
            return Err(ModelError::Config { path: path.into(), field: k(field), reason: "must be at least 1".into() });
        }
    }
    if n_heads % n_kv_heads != 0 || head_dim % 2 != 0 || head_dim > tern_kernels::ops::MAX_HEAD_DIM {
        return Err(ModelError::Config {
            path: path.into(),
            field: k("attention.head_count_kv"),
            reason: format!("unsupported head layout: {n_heads} heads, {n_kv_heads} KV heads, head dim {head_dim}"),
        });
    }
    let rms_eps = float("attention.layer_norm_rms_epsilon")?.unwrap_or(spec.default_rms_eps);
    let rope_theta = float("rope.freq_base")?.unwrap_or(spec.default_rope_theta);
    let max_pos = uint("context_length")?.unwrap_or(4096).max(1);
    let rot = uint("rope.dimension_count")?.unwrap_or(head_dim);
    // llama.cpp's `rope.scaling.attn_factor` (`hparams.rope_attn_factor`) multiplies whatever attention
    // scale the RoPE type implies; `rope.scaling.yarn_attn_factor` is transformers' YaRN
    // `attention_factor` as `convert_hf_to_gguf.py` writes it, which replaces the default
    // `0.1·ln(factor) + 1`.
    let attn_mul = float("rope.scaling.attn_factor")?.filter(|m| *m != 1.0);
    let rope_scaling =
        match md.get(&k("rope.scaling.type")).map(|_| md.get_str(&k("rope.scaling.type"))).transpose().map_err(ge)? {
            None | Some("none") => RopeScaling::Default,
            Some("linear") => RopeScaling::Linear { factor: float("rope.scaling.factor")?.unwrap_or(1.0) },
            Some("yarn") => {
                let original_max = uint("rope.scaling.original_context_length")?.unwrap_or(max_pos).max(1);
                let factor = float("rope.scaling.factor")?;
                let yarn_attn = float("rope.scaling.yarn_attn_factor")?;
                let attention_factor = match attn_mul {
                    None => yarn_attn,
                    Some(m) => {
                        let f = factor.unwrap_or(max_pos as f64 / original_max as f64);
                        let base = yarn_attn.unwrap_or(if f <= 1.0 { 1.0 } else { 0.1 * f.ln() + 1.0 });
                        Some(base * m)
                    }
                };
                RopeScaling::Yarn {
                    factor,
                    original_max,
                    attention_factor,
                    beta_fast: float("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                    beta_slow: float("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                    mscale: None,
                    mscale_all_dim: None,
                    truncate: true,
                }
            }
            Some(other) => {
                return Err(ModelError::Config {
                    path: path.into(),
                    field: k("rope.scaling.type"),
                    reason: format!("'{other}' is not supported (none, linear, yarn)"),
                })
            }
        };
    if let (Some(m), false) = (attn_mul, matches!(rope_scaling, RopeScaling::Yarn { .. })) {
        return Err(ModelError::Config {
            path: path.into(),
            field: k("rope.scaling.attn_factor"),
            reason: format!("{m}: a RoPE attention factor other than 1 is supported with YaRN scaling only"),
        });
    }
    let act = gguf_activation(md, &arch_name, spec.default_act, path)?;
    let sliding_window = match spec.sliding_window {
        SlidingWindow::Never => None,
        _ => uint("attention.sliding_window")?.filter(|&w| w > 0),
    };
    // Gemma-3 in llama.cpp: every 6th layer is global (`set_swa_pattern(6)`), sliding layers use
    // RoPE base 10000 unscaled, norms already hold `1 + w`, attention scale 1/sqrt(key_length).
    let gemma = spec.gemma;
    let sliding_layers: Vec<bool> = if gemma {
        let pat = uint("attention.sliding_window_pattern")?.unwrap_or(6).max(1);
        (0..n_layers).map(|i| (i + 1) % pat != 0).collect()
    } else {
        Vec::new()
    };
    let local_rope =
        gemma.then(|| (float("rope.freq_base_swa").ok().flatten().unwrap_or(10_000.0), RopeScaling::Default));
    let tok_id = |key: &str| -> Result<Option<u32>> {
        match md.get(key) {
            None => Ok(None),
            Some(_) => md.get_uint(key).map(|v| Some(v as u32)).map_err(ge),
        }
    };
    let mut eos_ids = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = tok_id(key)? {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    Ok(ModelConfig {
        arch: spec,
        model_type: ga.model_type.to_string(),
        hidden,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn,
        vocab,
        rms_eps: rms_eps as f32,
        act,
        rope_theta,
        rope_scaling,
        partial_rotary: rot as f64 / head_dim as f64,
        max_position_embeddings: max_pos,
        attention_bias: f.tensor("blk.0.attn_output.bias").is_some(),
        mlp_bias: f.tensor("blk.0.ffn_up.bias").is_some(),
        tie_embeddings: f.tensor("output.weight").is_none(),
        sliding_window,
        sliding_layers,
        local_rope,
        norm_offset: 0.0,
        embed_scale: gemma.then(|| (hidden as f32).sqrt()),
        attn_scale: gemma.then(|| 1.0 / (head_dim as f32).sqrt()),
        final_softcap: float("final_logit_softcapping")?.filter(|c| *c > 0.0).map(|c| c as f32),
        quant: None,
        eos_ids,
        bos_id: tok_id("tokenizer.ggml.bos_token_id")?,
        gen_defaults: GenerationDefaults::default(),
        source: path.to_string(),
    })
}

/// The MLP activation of a GGUF model: `{arch}.hidden_activation` (llama.cpp's `LLM_KV_HIDDEN_ACT`,
/// written by `convert_hf_to_gguf.py` from the transformers `hidden_act`/`hidden_activation` name, so
/// values are read with transformers' names; llama.cpp's gated aliases `swiglu`/`geglu`/`reglu` are
/// accepted too, with ggml's tanh GELU for `geglu`). Without the key, the activation llama.cpp and bitnet.cpp hard-code for the
/// architecture: SiLU for `llama`/`mistral`/`qwen2`/`qwen3` and for `bitnet` (llama.cpp's and bitnet.cpp's
/// `build_bitnet` use `LLM_FFN_SILU`; 1bitLLM's checkpoints are SiLU), tanh-GELU for `gemma3`
/// (`LLM_FFN_GELU`), squared ReLU for bitnet.cpp's `bitnet-b1.58`/`bitnet-25` (`build_bitnet_158`, the
/// BitNet b1.58 2B-4T layout).
pub fn gguf_activation(
    md: &tern_gguf::Metadata,
    arch_name: &str,
    arch_default: tern_kernels::ops::Activation,
    path: &str,
) -> Result<tern_kernels::ops::Activation> {
    use tern_kernels::ops::Activation;
    let key = format!("{arch_name}.hidden_activation");
    let Some(_) = md.get(&key) else {
        return Ok(if arch_name == "bitnet" { Activation::Silu } else { arch_default });
    };
    let name = md.get_str(&key).map_err(|e| gerr(path, e))?;
    let act = match name {
        "swiglu" => Some(Activation::Silu),
        "geglu" => Some(Activation::GeluTanh),
        "reglu" => Some(Activation::Relu),
        "relu_sqr" | "relu_squared" => Some(Activation::Relu2),
        other => arch::parse_activation(other),
    };
    act.ok_or_else(|| ModelError::Config {
        path: path.into(),
        field: key,
        reason: format!(
            "unsupported activation '{name}' (silu, swish, gelu, gelu_pytorch_tanh, gelu_new, relu, relu2, swiglu, geglu, \
             reglu)"
        ),
    })
}

struct GBinder {
    f: Arc<GgufFile>,
    path: String,
    used: Mutex<BTreeSet<String>>,
}

impl GBinder {
    fn get(&self, name: &str, role: &str) -> Result<&TensorInfo> {
        let t = self.f.tensor(name).ok_or_else(|| ModelError::MissingTensor {
            source_name: self.path.clone(),
            tensor: name.into(),
            role: role.into(),
        })?;
        self.used.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
        Ok(t)
    }

    fn opt(&self, name: &str) -> Option<&TensorInfo> {
        let t = self.f.tensor(name)?;
        self.used.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
        Some(t)
    }

    fn shape_err(&self, t: &TensorInfo, expected: Vec<usize>) -> ModelError {
        ModelError::Shape {
            file: self.path.clone(),
            tensor: t.name.clone(),
            expected,
            found: t.dims.iter().map(|&d| d as usize).collect(),
            why: " (ggml order: row length first)".into(),
        }
    }

    fn bytes(&self, t: &TensorInfo) -> Result<ByteBuf> {
        let data = self.f.tensor_data(t).map_err(|e| gerr(&self.path, e))?;
        let start = data.as_ptr() as usize - self.f.as_bytes().as_ptr() as usize;
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(GgufBytes(Arc::clone(&self.f)));
        ByteBuf::from_shared(owner, start, data.len()).ok_or_else(|| ModelError::BadTensor {
            file: self.path.clone(),
            tensor: t.name.clone(),
            reason: "data outside the file".into(),
        })
    }

    /// A 1-D f32 vector.
    fn vector(&self, name: &str, len: usize, role: &str) -> Result<Vec<f32>> {
        let t = self.get(name, role)?;
        if t.dims.iter().map(|&d| d as usize).product::<usize>() != len
            || t.dims.iter().filter(|&&d| d != 1).count() > 1
        {
            return Err(self.shape_err(t, vec![len]));
        }
        let v = self.f.dequantize_tensor(t).map_err(|e| gerr(&self.path, e))?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::BadTensor {
                file: self.path.clone(),
                tensor: name.into(),
                reason: format!("non-finite value at index {i}"),
            });
        }
        Ok(v)
    }

    /// A `rows × cols` matrix (GGUF dims `[cols, rows]`), optionally with rows reordered by `perm`
    /// (`perm[new_row] = old_row`).
    fn matrix(&self, name: &str, rows: usize, cols: usize, role: &str, perm: Option<&[usize]>) -> Result<Linear> {
        let t = self.get(name, role)?;
        if t.dims.len() != 2 || t.dims[0] as usize != cols || t.dims[1] as usize != rows {
            return Err(self.shape_err(t, vec![cols, rows]));
        }
        let bad = |reason: String| ModelError::BadTensor { file: self.path.clone(), tensor: name.into(), reason };
        let mut buf = self.bytes(t)?;
        if let Some(perm) = perm {
            let rb = buf.len() / rows;
            let src = buf.as_bytes();
            let mut v = Vec::with_capacity(buf.len());
            for &old in perm {
                v.extend_from_slice(&src[old * rb..(old + 1) * rb]);
            }
            buf = ByteBuf::from_vec(v);
        }
        let weight = match t.ggml_type {
            GgmlType::F32 => LinearWeight::Dense(
                DenseMatrix::new(rows, cols, DenseDType::F32, buf)
                    .map_err(|e| bad(format!("{} bytes, expected {}", e.found, e.expected)))?,
            ),
            GgmlType::F16 => LinearWeight::Dense(
                DenseMatrix::new(rows, cols, DenseDType::F16, buf)
                    .map_err(|e| bad(format!("{} bytes, expected {}", e.found, e.expected)))?,
            ),
            GgmlType::BF16 => LinearWeight::Dense(
                DenseMatrix::new(rows, cols, DenseDType::BF16, buf)
                    .map_err(|e| bad(format!("{} bytes, expected {}", e.found, e.expected)))?,
            ),
            GgmlType::I2_S => {
                let vals = tern_quants::dequantize(GgmlType::I2_S, buf.as_bytes(), rows * cols)
                    .map_err(|e| bad(e.to_string()))?;
                ternary_from_values(&vals, rows, cols).map_err(bad)?
            }
            GgmlType::TQ1_0 | GgmlType::TQ2_0 => {
                let vals = tern_quants::dequantize(t.ggml_type, buf.as_bytes(), rows * cols)
                    .map_err(|e| bad(e.to_string()))?;
                match ternary_from_values(&vals, rows, cols) {
                    Ok(w) => w,
                    // Blocks with different scales: keep the ggml blocks.
                    Err(_) => LinearWeight::Quant(
                        QuantMatrix::new(rows, cols, t.ggml_type, buf).map_err(|e| bad(e.to_string()))?,
                    ),
                }
            }
            ty if ty.can_dequantize() => {
                LinearWeight::Quant(QuantMatrix::new(rows, cols, ty, buf).map_err(|e| bad(e.to_string()))?)
            }
            ty => {
                return Err(ModelError::BadTensor {
                    file: self.path.clone(),
                    tensor: name.into(),
                    reason: format!("unsupported tensor type {ty}"),
                })
            }
        };
        Ok(Linear { weight, bias: None })
    }
}

/// Values that are `s·{-1, 0, 1}` for one `s` → a T2 ternary layer; otherwise an error string.
fn ternary_from_values(vals: &[f32], rows: usize, cols: usize) -> std::result::Result<LinearWeight, String> {
    let s = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
    if s == 0.0 {
        return Ok(LinearWeight::Ternary {
            w: TernaryMatrix::zeros(rows, cols),
            scale: TernaryScale::Multiply(1.0),
            input_norm: None,
        });
    }
    let mut q = Vec::with_capacity(vals.len());
    for (i, &v) in vals.iter().enumerate() {
        let c = (v / s).round();
        if (v - c * s).abs() > s * 1e-6 {
            return Err(format!("value {v} at index {i} is not a multiple of the tensor scale {s}"));
        }
        q.push(c as i8);
    }
    let w = TernaryMatrix::from_values(rows, cols, &q).map_err(|e| e.to_string())?;
    Ok(LinearWeight::Ternary { w, scale: TernaryScale::Multiply(s), input_norm: None })
}

/// `perm[new] = old` undoing `LlamaModel.permute(w, n_head)`: HF row `h·hd + j·hd/2 + i` is stored
/// at GGUF row `h·hd + 2i + j`.
fn unpermute_rows(n_head: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    let mut perm = vec![0; n_head * head_dim];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                perm[h * head_dim + j * half + i] = h * head_dim + 2 * i + j;
            }
        }
    }
    perm
}

fn bind(config: ModelConfig, f: Arc<GgufFile>, path: &str, progress: Option<Progress<'_>>) -> Result<Model> {
    let b = GBinder { f: Arc::clone(&f), path: path.to_string(), used: Mutex::new(BTreeSet::new()) };
    let c = &config;
    let (h, hd, nh, nkv, ffn) = (c.hidden, c.head_dim, c.n_heads, c.n_kv_heads, c.ffn);
    let permuted = gguf_arch(f.architecture().unwrap_or("")).is_some_and(|a| a.permuted_qk);
    let (qperm, kperm) =
        if permuted { (Some(unpermute_rows(nh, hd)), Some(unpermute_rows(nkv, hd))) } else { (None, None) };
    let embed = b.matrix("token_embd.weight", c.vocab, h, "token embeddings", None)?;
    let scale = |lin: &mut Linear, name: &str| -> Result<()> {
        // bitnet: optional per-tensor `*.scale` multiplies the output (llama.cpp `wq_s`).
        if let Some(t) = b.opt(name) {
            let v = b.f.dequantize_tensor(t).map_err(|e| gerr(path, e))?;
            let s = v.first().copied().unwrap_or(1.0);
            if v.len() != 1 || !s.is_finite() {
                return Err(ModelError::BadTensor {
                    file: path.into(),
                    tensor: name.into(),
                    reason: "expected one finite scale".into(),
                });
            }
            match &mut lin.weight {
                LinearWeight::Ternary { scale: TernaryScale::Multiply(m), .. } => *m *= s,
                _ => {
                    return Err(ModelError::BadTensor {
                        file: path.into(),
                        tensor: name.into(),
                        reason: "a scale tensor for a non-ternary weight is not supported".into(),
                    })
                }
            }
        }
        Ok(())
    };
    let bias = |lin: &mut Linear, name: &str, len: usize| -> Result<()> {
        if b.f.tensor(name).is_some() {
            lin.bias = Some(b.vector(name, len, "bias")?);
        }
        Ok(())
    };
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let p = format!("blk.{i}");
        let mut q = b.matrix(&format!("{p}.attn_q.weight"), nh * hd, h, "query projection", qperm.as_deref())?;
        let mut k = b.matrix(&format!("{p}.attn_k.weight"), nkv * hd, h, "key projection", kperm.as_deref())?;
        let mut v = b.matrix(&format!("{p}.attn_v.weight"), nkv * hd, h, "value projection", None)?;
        let mut o = b.matrix(&format!("{p}.attn_output.weight"), h, nh * hd, "output projection", None)?;
        let mut gate = b.matrix(&format!("{p}.ffn_gate.weight"), ffn, h, "MLP gate", None)?;
        let mut up = b.matrix(&format!("{p}.ffn_up.weight"), ffn, h, "MLP up", None)?;
        let mut down = b.matrix(&format!("{p}.ffn_down.weight"), h, ffn, "MLP down", None)?;
        for (lin, n) in [
            (&mut q, "attn_q"),
            (&mut k, "attn_k"),
            (&mut v, "attn_v"),
            (&mut o, "attn_output"),
            (&mut gate, "ffn_gate"),
            (&mut up, "ffn_up"),
            (&mut down, "ffn_down"),
        ] {
            scale(lin, &format!("{p}.{n}.scale"))?;
        }
        if let (Some(perm), Some(_)) = (&qperm, b.f.tensor(&format!("{p}.attn_q.bias"))) {
            let raw = b.vector(&format!("{p}.attn_q.bias"), nh * hd, "query bias")?;
            q.bias = Some(perm.iter().map(|&o| raw[o]).collect());
        } else {
            bias(&mut q, &format!("{p}.attn_q.bias"), nh * hd)?;
        }
        if let (Some(perm), Some(_)) = (&kperm, b.f.tensor(&format!("{p}.attn_k.bias"))) {
            let raw = b.vector(&format!("{p}.attn_k.bias"), nkv * hd, "key bias")?;
            k.bias = Some(perm.iter().map(|&o| raw[o]).collect());
        } else {
            bias(&mut k, &format!("{p}.attn_k.bias"), nkv * hd)?;
        }
        bias(&mut v, &format!("{p}.attn_v.bias"), nkv * hd)?;
        bias(&mut o, &format!("{p}.attn_output.bias"), h)?;
        // llama.cpp's llama/mistral loader binds these as optional (`ffn_gate_b`, `ffn_up_b`,
        // `ffn_down_b`); `convert_hf_to_gguf.py` writes them for `mlp_bias = true`.
        bias(&mut gate, &format!("{p}.ffn_gate.bias"), ffn)?;
        bias(&mut up, &format!("{p}.ffn_up.bias"), ffn)?;
        bias(&mut down, &format!("{p}.ffn_down.bias"), h)?;
        layers.push(Layer {
            attn_norm: b.vector(&format!("{p}.attn_norm.weight"), h, "attention norm")?,
            post_attn_norm: c
                .arch
                .gemma
                .then(|| b.vector(&format!("{p}.post_attention_norm.weight"), h, "post-attention norm"))
                .transpose()?,
            post_ffn_norm: c
                .arch
                .gemma
                .then(|| b.vector(&format!("{p}.post_ffw_norm.weight"), h, "post-feedforward norm"))
                .transpose()?,
            q,
            k,
            v,
            o,
            q_norm: c
                .arch
                .qk_norm
                .then(|| b.vector(&format!("{p}.attn_q_norm.weight"), hd, "per-head query norm"))
                .transpose()?,
            k_norm: c
                .arch
                .qk_norm
                .then(|| b.vector(&format!("{p}.attn_k_norm.weight"), hd, "per-head key norm"))
                .transpose()?,
            attn_sub_norm: c
                .arch
                .sub_norms
                .then(|| b.vector(&format!("{p}.attn_sub_norm.weight"), nh * hd, "attention sub-norm"))
                .transpose()?,
            ffn_norm: b.vector(&format!("{p}.ffn_norm.weight"), h, "MLP norm")?,
            gate,
            up,
            down,
            ffn_sub_norm: c
                .arch
                .sub_norms
                .then(|| b.vector(&format!("{p}.ffn_sub_norm.weight"), ffn, "MLP sub-norm"))
                .transpose()?,
        });
        if let Some(cb) = progress {
            cb(i + 1, c.n_layers);
        }
    }
    let norm = b.vector("output_norm.weight", h, "final norm")?;
    let lm_head = if c.tie_embeddings { None } else { Some(b.matrix("output.weight", c.vocab, h, "LM head", None)?) };
    let mut rope = Rope::new(c.rope_theta, c.rotary_dim(), c.rope_scaling.clone(), c.max_position_embeddings);
    if b.f.tensor("rope_freqs.weight").is_some() {
        let factors = b.vector("rope_freqs.weight", c.rotary_dim() / 2, "RoPE frequency factors")?;
        rope = rope.with_freq_factors(&factors);
    }
    let used = b.used.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = f.tensors().iter().find(|t| !used.contains(&t.name)) {
        return Err(ModelError::UnexpectedTensor {
            file: path.into(),
            tensor: t.name.clone(),
            arch: c.model_type.clone(),
            hint: String::new(),
        });
    }
    drop(used);
    let rope_local = c
        .local_rope
        .as_ref()
        .map(|(theta, sc)| Rope::new(*theta, c.rotary_dim(), sc.clone(), c.max_position_embeddings));
    Ok(Model { config, embed, layers, norm, lm_head, rope, rope_local })
}

#[cfg(test)]
mod tests {
    #[test]
    fn unpermute_inverts_llama_permute() {
        // LlamaModel.permute: w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2).reshape(...)
        let (nh, hd) = (2usize, 6usize);
        let hf: Vec<usize> = (0..nh * hd).collect();
        let mut gguf = vec![0; nh * hd];
        for h in 0..nh {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    gguf[h * hd + i * 2 + j] = hf[h * hd + j * hd / 2 + i];
                }
            }
        }
        let perm = super::unpermute_rows(nh, hd);
        let back: Vec<usize> = perm.iter().map(|&o| gguf[o]).collect();
        assert_eq!(back, hf);
    }
}
