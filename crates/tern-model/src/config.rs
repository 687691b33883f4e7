//! `config.json` (and `generation_config.json`) → [`ModelConfig`].
//!
//! Accepts both transformers v4 spelling (`rope_theta` + `rope_scaling`) and v5 spelling
//! (`rope_parameters` holding `rope_type`, `rope_theta` and the scaling fields). Every missing or
//! malformed field is an error naming `config.json` and the field.

use crate::arch::{self, ArchSpec};
use crate::rope::RopeScaling;
use crate::{ModelError, Result};
use std::path::Path;
use tern_formats::json::JsonFile;
use tern_kernels::ops::Activation;

/// Which transformers BitNet linear class a checkpoint targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearClass {
    /// `AutoBitLinear`: output multiplied by `weight_scale` (offline) or latent weights (online).
    AutoBitLinear,
    /// `BitLinear` (transformers' default, Falcon-E): output divided by `weight_scale`.
    BitLinear,
}

/// `quantization_config` with `quant_method: "bitnet"`.
#[derive(Clone, Debug, PartialEq)]
pub struct BitnetQuant {
    pub linear_class: LinearClass,
    /// `quantization_mode: "online"`: float latent weights ternarized at load (AutoBitLinear only).
    pub online: bool,
    /// Module-name fragments that stay dense. `None` (absent) means transformers' default: keep
    /// `lm_head` dense. A given list (even empty) replaces that default, as in transformers 5.x.
    pub modules_to_not_convert: Option<Vec<String>>,
    /// `use_rms_norm`: every ternary linear owns an RMSNorm (`<linear>.rms_norm.weight`) applied
    /// to its input before activation quantization.
    pub use_rms_norm: bool,
    pub rms_norm_eps: f32,
}

/// Everything the forward pass needs to know about a model.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: &'static ArchSpec,
    pub model_type: String,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rms_eps: f32,
    pub act: Activation,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Fraction of each head that rotates (`partial_rotary_factor`).
    pub partial_rotary: f64,
    pub max_position_embeddings: usize,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub tie_embeddings: bool,
    pub sliding_window: Option<usize>,
    /// Per-layer: does this layer use sliding-window attention (and the local RoPE)? Empty means
    /// every layer follows `sliding_window`.
    pub sliding_layers: Vec<bool>,
    /// RoPE of sliding-window layers when it differs from the global one (Gemma-3: theta 1e4, no scaling).
    pub local_rope: Option<(f64, RopeScaling)>,
    /// RMSNorm weight offset: 0 (`w`) or 1 (Gemma's `1 + w`; GGUF files store `w + 1` already).
    pub norm_offset: f32,
    /// Embeddings are multiplied by this (Gemma: `sqrt(hidden)`).
    pub embed_scale: Option<f32>,
    /// Attention score scale; `None` = `head_dim^-0.5`.
    pub attn_scale: Option<f32>,
    /// `final_logit_softcapping`: logits = c · tanh(logits / c).
    pub final_softcap: Option<f32>,
    pub quant: Option<BitnetQuant>,
    /// EOS ids from config.json and generation_config.json.
    pub eos_ids: Vec<u32>,
    pub bos_id: Option<u32>,
    /// Sampling defaults from generation_config.json.
    pub gen_defaults: GenerationDefaults,
    /// Where it was read from (for messages).
    pub source: String,
}

/// Sampling defaults found in `generation_config.json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationDefaults {
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
}

impl ModelConfig {
    /// Reads `dir/config.json` and, if present, `dir/generation_config.json`.
    pub fn from_dir(dir: &Path) -> Result<ModelConfig> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            return Err(ModelError::Config {
                path: cfg_path.display().to_string(),
                field: "<file>".into(),
                reason: "config.json not found: a model directory needs config.json plus safetensors weights".into(),
            });
        }
        let j = JsonFile::read(&cfg_path)?;
        let mut cfg = Self::from_json(&j)?;
        let gen_path = dir.join("generation_config.json");
        if gen_path.is_file() {
            let g = JsonFile::read(&gen_path)?;
            cfg.apply_generation_config(&g)?;
        }
        Ok(cfg)
    }

    /// Parses an HF `config.json`.
    pub fn from_json(j: &JsonFile) -> Result<ModelConfig> {
        let model_type =
            j.opt_str("model_type")?.ok_or_else(|| cfg_err(j, "model_type", "required field is missing"))?;
        let arch = arch::by_model_type(model_type).ok_or_else(|| ModelError::UnknownModelType {
            path: j.path.clone(),
            found: model_type.to_string(),
            supported: arch::supported_model_types(),
        })?;
        let hidden = j.usize("hidden_size")?;
        let n_layers = j.usize("num_hidden_layers")?;
        let n_heads = j.usize("num_attention_heads")?;
        let n_kv_heads = j.opt_usize("num_key_value_heads")?.unwrap_or(n_heads);
        let ffn = j.usize("intermediate_size")?;
        let vocab = j.usize("vocab_size")?;
        let head_dim = match j.opt_usize("head_dim")?.or(arch.default_head_dim) {
            Some(h) => h,
            None => {
                if n_heads == 0 || hidden % n_heads != 0 {
                    return Err(cfg_err(
                        j,
                        "head_dim",
                        format!("absent, and hidden_size {hidden} is not divisible by num_attention_heads {n_heads}"),
                    ));
                }
                hidden / n_heads
            }
        };
        for (f, v) in [
            ("hidden_size", hidden),
            ("num_hidden_layers", n_layers),
            ("num_attention_heads", n_heads),
            ("num_key_value_heads", n_kv_heads),
            ("intermediate_size", ffn),
            ("vocab_size", vocab),
            ("head_dim", head_dim),
        ] {
            if v == 0 {
                return Err(cfg_err(j, f, "must be at least 1"));
            }
        }
        if n_heads % n_kv_heads != 0 {
            return Err(cfg_err(
                j,
                "num_key_value_heads",
                format!("{n_kv_heads} does not divide num_attention_heads {n_heads}"),
            ));
        }
        if head_dim > tern_kernels::ops::MAX_HEAD_DIM || head_dim % 2 != 0 {
            return Err(cfg_err(
                j,
                "head_dim",
                format!("{head_dim} is not supported (even, at most {})", tern_kernels::ops::MAX_HEAD_DIM),
            ));
        }
        let act_name = match j.opt_str("hidden_act")? {
            Some(a) => Some(a),
            None => j.opt_str("hidden_activation")?,
        };
        let act = match act_name {
            None => arch.default_act,
            Some(a) => arch::parse_activation(a).ok_or_else(|| {
                cfg_err(
                    j,
                    "hidden_act",
                    format!("activation '{a}' is not supported (silu, gelu, gelu_pytorch_tanh, relu2, relu)"),
                )
            })?,
        };
        let rms_eps = j.opt_f64("rms_norm_eps")?.unwrap_or(arch.default_rms_eps);
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(cfg_err(j, "rms_norm_eps", "must be a finite non-negative number"));
        }
        let max_position_embeddings = j.opt_usize("max_position_embeddings")?.unwrap_or(4096).max(1);
        let (rope_theta, rope_scaling, partial) = parse_rope(j, arch, max_position_embeddings)?;
        let attention_bias = j.opt_bool("attention_bias")?.unwrap_or(false);
        let mlp_bias = j.opt_bool("mlp_bias")?.unwrap_or(false);
        let tie_embeddings = j.opt_bool("tie_word_embeddings")?.unwrap_or(arch.default_tie);
        let sliding_window = match arch.sliding_window {
            crate::arch::SlidingWindow::Never => None,
            crate::arch::SlidingWindow::WhenEnabled => match j.opt_bool("use_sliding_window")? {
                Some(true) => j.opt_usize("sliding_window")?.filter(|&w| w > 0),
                _ => None,
            },
            crate::arch::SlidingWindow::Always { default } => {
                if j.root.contains_key("sliding_window") {
                    j.opt_usize("sliding_window")?.filter(|&w| w > 0)
                } else {
                    default
                }
            }
        };
        let quant = parse_quant(j)?;
        let gemma = arch.gemma;
        let (sliding_layers, local_rope) =
            if gemma { parse_gemma_layers(j, n_layers, theta_local(j)?)? } else { (Vec::new(), None) };
        if let Some(c) = j.opt_f64("attn_logit_softcapping")? {
            return Err(cfg_err(
                j,
                "attn_logit_softcapping",
                format!("attention logit soft-capping ({c}) is not supported"),
            ));
        }
        let attn_scale = match j.opt_f64("query_pre_attn_scalar")? {
            Some(q) if gemma && q > 0.0 => Some((1.0 / q.sqrt()) as f32),
            _ => None,
        };
        let final_softcap = j.opt_f64("final_logit_softcapping")?.filter(|c| *c > 0.0).map(|c| c as f32);
        let eos_ids = j.opt_u32_list("eos_token_id")?.unwrap_or_default();
        let bos_id = j.opt_u32_list("bos_token_id")?.and_then(|v| v.first().copied());
        Ok(ModelConfig {
            arch,
            model_type: model_type.to_string(),
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
            partial_rotary: partial,
            max_position_embeddings,
            attention_bias,
            mlp_bias,
            tie_embeddings,
            sliding_window,
            sliding_layers,
            local_rope,
            norm_offset: if gemma { 1.0 } else { 0.0 },
            embed_scale: gemma.then(|| (hidden as f32).sqrt()),
            attn_scale,
            final_softcap,
            quant,
            eos_ids,
            bos_id,
            gen_defaults: GenerationDefaults::default(),
            source: j.path.clone(),
        })
    }

    /// Merges `generation_config.json`: EOS ids (id or list) and sampling defaults.
    pub fn apply_generation_config(&mut self, g: &JsonFile) -> Result<()> {
        if let Some(ids) = g.opt_u32_list("eos_token_id")? {
            for id in ids {
                if !self.eos_ids.contains(&id) {
                    self.eos_ids.push(id);
                }
            }
        }
        if self.bos_id.is_none() {
            self.bos_id = g.opt_u32_list("bos_token_id")?.and_then(|v| v.first().copied());
        }
        let d = &mut self.gen_defaults;
        d.do_sample = g.opt_bool("do_sample")?;
        d.temperature = g.opt_f64("temperature")?.map(|v| v as f32);
        d.top_k = g.opt_usize("top_k")?;
        d.top_p = g.opt_f64("top_p")?.map(|v| v as f32);
        d.min_p = g.opt_f64("min_p")?.map(|v| v as f32);
        d.repetition_penalty = g.opt_f64("repetition_penalty")?.map(|v| v as f32);
        d.max_new_tokens = g.opt_usize("max_new_tokens")?;
        Ok(())
    }

    /// Whether layer `i` uses sliding-window attention.
    pub fn layer_is_sliding(&self, i: usize) -> bool {
        match self.sliding_layers.get(i) {
            Some(&s) => s && self.sliding_window.is_some(),
            None => self.sliding_window.is_some(),
        }
    }

    /// Dimensions of the rotated part of each head.
    pub fn rotary_dim(&self) -> usize {
        let d = (self.head_dim as f64 * self.partial_rotary) as usize;
        d - d % 2
    }
}

fn cfg_err(j: &JsonFile, field: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Config { path: j.path.clone(), field: field.to_string(), reason: reason.into() }
}

fn theta_local(j: &JsonFile) -> Result<f64> {
    // v5: rope_parameters.sliding_attention.rope_theta; v4: rope_local_base_freq.
    if let Some(p) = j.object("rope_parameters")? {
        if let Some(sl) = p.object("sliding_attention")? {
            if let Some(t) = sl.opt_f64("rope_theta")? {
                return Ok(t);
            }
        }
    }
    Ok(j.opt_f64("rope_local_base_freq")?.unwrap_or(10_000.0))
}

/// RoPE of sliding-window layers: base and scaling.
type LocalRope = Option<(f64, RopeScaling)>;

/// Gemma-3 layer types: `layer_types` (v5) or `sliding_window_pattern` (every N-th layer is global).
fn parse_gemma_layers(j: &JsonFile, n_layers: usize, local_theta: f64) -> Result<(Vec<bool>, LocalRope)> {
    let sliding: Vec<bool> = match j.opt_str_list("layer_types")? {
        Some(types) => {
            if types.len() != n_layers {
                return Err(cfg_err(j, "layer_types", format!("{} entries for {n_layers} layers", types.len())));
            }
            types
                .iter()
                .map(|t| match t.as_str() {
                    "sliding_attention" => Ok(true),
                    "full_attention" => Ok(false),
                    other => Err(cfg_err(j, "layer_types", format!("unknown layer type '{other}'"))),
                })
                .collect::<Result<_>>()?
        }
        None => {
            let pat =
                j.opt_usize("sliding_window_pattern")?.or(j.opt_usize("_sliding_window_pattern")?).unwrap_or(6).max(1);
            (0..n_layers).map(|i| (i + 1) % pat != 0).collect()
        }
    };
    let mut local_scaling = RopeScaling::Default;
    if let Some(p) = j.object("rope_parameters")? {
        if let Some(sl) = p.object("sliding_attention")? {
            local_scaling = RopeScaling::parse(&sl, j.opt_usize("max_position_embeddings")?.unwrap_or(4096), None)?;
        }
    }
    Ok((sliding, Some((local_theta, local_scaling))))
}

fn parse_rope(j: &JsonFile, arch: &ArchSpec, max_pos: usize) -> Result<(f64, RopeScaling, f64)> {
    // v5: rope_parameters {rope_type, rope_theta, ...} (per layer type for Gemma-3: the
    // `full_attention` entry is the global RoPE); v4: rope_theta + rope_scaling {type|rope_type, ...}.
    let params = match j.object("rope_parameters")? {
        Some(p) if p.has("full_attention") => p.object("full_attention")?,
        other => other,
    };
    let scaling = j.object("rope_scaling")?;
    let theta = match params.as_ref().and_then(|p| p.opt_f64("rope_theta").transpose()) {
        Some(t) => t?,
        None => j.opt_f64("rope_theta")?.unwrap_or(arch.default_rope_theta),
    };
    if !(theta.is_finite() && theta > 1.0) {
        return Err(cfg_err(j, "rope_theta", format!("{theta} is not a valid RoPE base")));
    }
    let partial = match params.as_ref().and_then(|p| p.opt_f64("partial_rotary_factor").transpose()) {
        Some(p) => p?,
        None => j.opt_f64("partial_rotary_factor")?.unwrap_or(1.0),
    };
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(cfg_err(j, "partial_rotary_factor", format!("{partial} must be in (0, 1]")));
    }
    let spec = match (params, scaling) {
        (Some(p), _) if p.has("rope_type") || p.has("type") => Some(p),
        (_, Some(s)) => Some(s),
        (Some(p), None) => Some(p),
        (None, None) => None,
    };
    let scaling = match spec {
        None => RopeScaling::Default,
        Some(s) => RopeScaling::parse(&s, max_pos, j.opt_usize("original_max_position_embeddings")?)?,
    };
    Ok((theta, scaling, partial))
}

fn parse_quant(j: &JsonFile) -> Result<Option<BitnetQuant>> {
    let Some(q) = j.object("quantization_config")? else { return Ok(None) };
    let method = q.opt_str("quant_method")?.unwrap_or("");
    if method != "bitnet" {
        return Err(cfg_err(
            j,
            "quantization_config.quant_method",
            format!("'{method}' is not supported (tern reads 'bitnet' here; for GGUF quantization use a .gguf file)"),
        ));
    }
    let linear_class = match q.opt_str("linear_class")?.unwrap_or("bitlinear") {
        "bitlinear" => LinearClass::BitLinear,
        "autobitlinear" => LinearClass::AutoBitLinear,
        other => {
            return Err(cfg_err(
                j,
                "quantization_config.linear_class",
                format!("'{other}' is not one of bitlinear, autobitlinear"),
            ))
        }
    };
    let online = match q.opt_str("quantization_mode")?.unwrap_or("offline") {
        "offline" => false,
        "online" => true,
        other => {
            return Err(cfg_err(
                j,
                "quantization_config.quantization_mode",
                format!("'{other}' is not one of offline, online"),
            ))
        }
    };
    if online && linear_class == LinearClass::BitLinear {
        return Err(cfg_err(
            j,
            "quantization_config.quantization_mode",
            "online quantization requires linear_class 'autobitlinear' (as in transformers)",
        ));
    }
    Ok(Some(BitnetQuant {
        linear_class,
        online,
        modules_to_not_convert: q.opt_str_list("modules_to_not_convert")?,
        use_rms_norm: q.opt_bool("use_rms_norm")?.unwrap_or(false),
        rms_norm_eps: q.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
    }))
}
