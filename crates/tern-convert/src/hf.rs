//! Planning the conversion of a Hugging Face model directory (config.json + safetensors).
//!
//! Config parsing is tern-model's ([`ModelConfig::from_dir`], transformers v4 and v5 spellings),
//! tensors come from tern-formats' safetensors reader. Every tensor the config implies is looked up by
//! its HF name and checked for dtype and shape; anything left over is an error, as in
//! `tern_model::load`. Metadata follows `convert_hf_to_gguf.py` (`TextModel.set_gguf_parameters`,
//! `LlamaModel` / `Qwen2Model` / `Qwen3Model` / `BitnetModel`): Mistral is written as `llama`, BitNet
//! as `bitnet` (or bitnet.cpp's `bitnet-b1.58` for I2_S) with `rope.scaling.type = linear`, factor 1,
//! and `{arch}.hidden_activation` (llama.cpp's `LLM_KV_HIDDEN_ACT`, a transformers activation name) for
//! BitNet and for any model whose activation is not the one llama.cpp hard-codes for the architecture
//! (SiLU; squared ReLU for bitnet.cpp's `bitnet-b1.58`). tern's loader honours the key; llama.cpp reads
//! it only for a few other architectures, so such files compute differently there (a note says so).
//! Llama 3 RoPE scaling becomes a `rope_freqs.weight` tensor of frequency factors, computed in f32 as
//! `LlamaModel.generate_extra_tensors` does.

use crate::data::{absmean_scale, llama_permutation, Perm, TensorData};
use crate::encode::Encoder;
use crate::error::{ConvertError, Result};
use crate::target::{fit_type, TargetType};
use crate::vocab::{self, VocabOptions};
use crate::{size_label, ConvertOptions, Plan, PlannedTensor};
use std::collections::BTreeSet;
use tern_formats::safetensors::{DType, SafetensorsSet, TensorEntry};
use tern_gguf::{GgmlType, Value};
use tern_kernels::ops::Activation;
use tern_model::config::{BitnetQuant, LinearClass, ModelConfig};
use tern_model::rope::RopeScaling;

/// How a dense 2-D tensor's type is chosen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Token embeddings and the output head: F16 for ternary targets.
    Embedding,
    /// A projection inside a block.
    Linear,
}

struct Builder<'a> {
    set: &'a SafetensorsSet,
    src: String,
    target: TargetType,
    quant: Option<BitnetQuant>,
    /// Unquantized `bitnet` checkpoint written to a ternary type: ternarize with the absmean.
    latent_bitnet: bool,
    used: BTreeSet<String>,
    tensors: Vec<PlannedTensor>,
    notes: Vec<String>,
}

fn float_dtype(t: &TensorEntry) -> bool {
    matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16)
}

impl Builder<'_> {
    fn entry(&mut self, name: &str, role: &str) -> Result<TensorEntry> {
        let t = self
            .set
            .get(name)
            .ok_or_else(|| ConvertError::tensor(&self.src, name, format!("missing ({role})")))?
            .clone();
        self.used.insert(name.to_string());
        Ok(t)
    }

    fn bad(&self, t: &TensorEntry, reason: impl Into<String>) -> ConvertError {
        ConvertError::tensor(&t.file.display().to_string(), &t.name, reason)
    }

    fn float_entry(&mut self, name: &str, shape: &[usize], role: &str) -> Result<TensorEntry> {
        let t = self.entry(name, role)?;
        if !float_dtype(&t) {
            return Err(self.bad(&t, format!("dtype {}, expected F32, F16 or BF16 ({role})", t.dtype)));
        }
        if t.shape != shape {
            return Err(self.bad(&t, format!("shape {:?}, expected {shape:?} ({role})", t.shape)));
        }
        Ok(t)
    }

    fn push(&mut self, name: String, dims: Vec<u64>, origin: String, data: TensorData, encoder: Encoder) {
        self.tensors.push(PlannedTensor { name, dims, ggml_type: encoder.ggml_type(), origin, data, encoder });
    }

    /// A 1-D float tensor (norm weight, bias) written as F32.
    fn vector(&mut self, gguf: &str, hf: &str, len: usize, role: &str, perm: Option<Perm>) -> Result<()> {
        let t = self.float_entry(hf, &[len], role)?;
        let origin = format!("{hf} ({})", t.dtype);
        let data = match perm {
            // A Q/K bias is permuted element-wise, like the weight's rows.
            Some(p) => {
                if p.len() != len {
                    return Err(self.bad(&t, format!("internal: permutation of {} for {len} values", p.len())));
                }
                let mut v = Vec::with_capacity(len);
                TensorData::HfFloat { entry: t.clone(), cols: len, perm: None }
                    .rows(0, 1, &mut v)
                    .map_err(|e| self.bad(&t, e))?;
                TensorData::Values { v: p.iter().map(|&i| v[i]).collect(), cols: len }
            }
            None => TensorData::HfFloat { entry: t, cols: len, perm: None },
        };
        self.push(gguf.to_string(), vec![len as u64], origin, data, Encoder::Rows(GgmlType::F32));
        Ok(())
    }

    fn dense_encoder(&mut self, gguf: &str, ne0: usize, role: Role) -> Encoder {
        if role == Role::Embedding && self.target.is_ternary() {
            return Encoder::Rows(GgmlType::F16);
        }
        let (ty, note) = fit_type(self.target.ggml(), ne0 as u64, gguf);
        self.notes.extend(note);
        Encoder::Rows(ty)
    }

    fn ternary_encoder(&mut self, gguf: &str, ne0: usize, scale: f32) -> Encoder {
        let (ty, note) = fit_type(self.target.ggml(), ne0 as u64, gguf);
        self.notes.extend(note);
        match ty {
            GgmlType::I2_S => Encoder::I2S { scale },
            GgmlType::Q4_0 if self.target.is_ternary() => Encoder::TernaryQ4_0 { scale },
            other => Encoder::Rows(other),
        }
    }

    /// A dense 2-D float matrix (`rows × cols`, GGUF dims `[cols, rows]`).
    fn matrix(&mut self, gguf: &str, hf: &str, rows: usize, cols: usize, role: Role, what: &str) -> Result<()> {
        let t = self.float_entry(hf, &[rows, cols], what)?;
        let enc = self.dense_encoder(gguf, cols, role);
        let origin = format!("{hf} ({})", t.dtype);
        self.push(
            gguf.to_string(),
            vec![cols as u64, rows as u64],
            origin,
            TensorData::HfFloat { entry: t, cols, perm: None },
            enc,
        );
        Ok(())
    }

    /// transformers' rule for which linears are ternary (`tern_model::load`).
    fn quantized(&self, module: &str) -> Option<BitnetQuant> {
        let q = self.quant.as_ref()?;
        let leaf = module.rsplit('.').next().unwrap_or(module);
        let skip = match &q.modules_to_not_convert {
            None => leaf == "lm_head",
            Some(list) => list.iter().any(|k| module.contains(k.as_str()) || leaf == k),
        };
        (!skip).then(|| q.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        gguf: &str,
        module: &str,
        out: usize,
        inp: usize,
        bias: bool,
        perm: Option<Perm>,
        role: Role,
    ) -> Result<()> {
        let wname = format!("{module}.weight");
        let gname = format!("{gguf}.weight");
        let dims = vec![inp as u64, out as u64];
        match self.quantized(module) {
            None => {
                let t = self.float_entry(&wname, &[out, inp], "linear weight")?;
                if self.target.is_ternary() && role == Role::Linear {
                    if !self.latent_bitnet {
                        return Err(ConvertError::unsupported(
                            &self.src,
                            format!(
                                "--type {} needs ternary weights, but {wname} is a dense {} weight and config.json has \
                                 no bitnet quantization_config; use f16, bf16, q8_0, q4_0, q4_k or q6_k",
                                self.target, t.dtype
                            ),
                        ));
                    }
                    let (q, scale) = absmean_scale(&t).map_err(|e| self.bad(&t, e))?;
                    let enc = self.ternary_encoder(&gname, inp, scale);
                    let origin = format!("{wname} ({}, ternarized with the absmean scale {scale})", t.dtype);
                    self.push(
                        gname,
                        dims,
                        origin,
                        TensorData::HfLatent { entry: t, cols: inp, q, scale, perm: perm.clone() },
                        enc,
                    );
                } else {
                    let enc = self.dense_encoder(&gname, inp, role);
                    let origin = format!("{wname} ({})", t.dtype);
                    self.push(
                        gname,
                        dims,
                        origin,
                        TensorData::HfFloat { entry: t, cols: inp, perm: perm.clone() },
                        enc,
                    );
                }
            }
            Some(q) => {
                if q.use_rms_norm {
                    return Err(ConvertError::unsupported(
                        &self.src,
                        "quantization_config.use_rms_norm = true (an RMSNorm inside every ternary linear) has no GGUF \
                         representation in llama.cpp or tern",
                    ));
                }
                if q.online {
                    let t =
                        self.float_entry(&wname, &[out, inp], "latent ternary weight (quantization_mode online)")?;
                    let (qs, scale) = absmean_scale(&t).map_err(|e| self.bad(&t, e))?;
                    let enc = self.ternary_encoder(&gname, inp, scale);
                    let origin = format!("{wname} ({} latent, absmean scale {scale})", t.dtype);
                    self.push(
                        gname,
                        dims,
                        origin,
                        TensorData::HfLatent { entry: t, cols: inp, q: qs, scale, perm: perm.clone() },
                        enc,
                    );
                } else {
                    let t = self.entry(&wname, "packed ternary weight")?;
                    if t.dtype != DType::U8 {
                        return Err(self.bad(
                            &t,
                            format!("dtype {}, expected U8 (packed ternary, quantization_mode offline)", t.dtype),
                        ));
                    }
                    if !out.is_multiple_of(4) || t.shape != [out / 4, inp] {
                        return Err(self.bad(
                            &t,
                            format!(
                                "shape {:?}, expected [{}, {inp}] (4 ternary codes per byte along the output dim of \
                                 {out} × {inp})",
                                t.shape,
                                out / 4
                            ),
                        ));
                    }
                    let sname = format!("{module}.weight_scale");
                    let st = self.entry(&sname, "ternary weight scale")?;
                    if !float_dtype(&st) || st.numel() != 1 {
                        return Err(self.bad(
                            &st,
                            format!("{} {:?}, expected one float (one scale per tensor)", st.dtype, st.shape),
                        ));
                    }
                    let s = st.to_f32().and_then(|v| v.first().copied()).unwrap_or(f32::NAN);
                    if !(s.is_finite() && s != 0.0) {
                        return Err(self.bad(&st, format!("weight scale {s} must be finite and non-zero")));
                    }
                    let (scale, how) = match q.linear_class {
                        LinearClass::AutoBitLinear => (s, "autobitlinear: × weight_scale"),
                        LinearClass::BitLinear => (1.0 / s, "bitlinear: ÷ weight_scale"),
                    };
                    let enc = self.ternary_encoder(&gname, inp, scale);
                    let origin = format!("{wname} (U8 packed ternary, {how} = {scale})");
                    self.push(
                        gname,
                        dims,
                        origin,
                        TensorData::HfPacked { entry: t, rows: out, cols: inp, scale, perm: perm.clone() },
                        enc,
                    );
                }
            }
        }
        if bias {
            self.vector(&format!("{gguf}.bias"), &format!("{module}.bias"), out, "bias", perm)?;
        }
        Ok(())
    }
}

/// The transformers `hidden_act` name of an activation.
fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Silu => "silu",
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
        Activation::Relu2 => "relu2",
        Activation::Relu => "relu",
    }
}

/// llama.cpp's Llama 3 RoPE frequency factors (`LlamaModel.generate_extra_tensors`), in f32.
fn llama3_factors(theta: f64, dim: usize, factor: f64, low: f64, high: f64, old_ctx: usize) -> Vec<f32> {
    let base = theta as f32;
    let (factor, low, high, old) = (factor as f32, low as f32, high as f32, old_ctx as f32);
    let low_wavelen = old / low;
    let high_wavelen = old / high;
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0f32 / base.powf((2 * i) as f32 / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

pub(crate) fn plan(opts: &ConvertOptions) -> Result<Plan> {
    let dir = opts.source.as_path();
    let src = dir.display().to_string();
    let c = ModelConfig::from_dir(dir)?;
    let set = SafetensorsSet::open_dir(dir)?;
    let target = opts.target;
    let (arch, permuted) = match c.model_type.as_str() {
        "llama" | "mistral" => ("llama", true),
        "qwen2" => ("qwen2", false),
        "qwen3" => ("qwen3", false),
        "bitnet" if target == TargetType::I2_S => ("bitnet-b1.58", false),
        "bitnet" => ("bitnet", false),
        other => {
            return Err(ConvertError::unsupported(
                &src,
                format!("model_type '{other}' cannot be converted (llama, mistral, qwen2, qwen3, bitnet)"),
            ))
        }
    };
    let mut notes_act: Option<String> = None;
    let is_bitnet = c.model_type == "bitnet";
    // The activation llama.cpp hard-codes for the architecture (it reads no activation key for these);
    // any other one is written as `{arch}.hidden_activation`, which tern reads.
    let llamacpp_act = if is_bitnet && arch == "bitnet-b1.58" { Activation::Relu2 } else { Activation::Silu };
    let write_act = is_bitnet || c.act != llamacpp_act;
    if c.act != llamacpp_act {
        let engine = if arch == "bitnet-b1.58" { "bitnet.cpp" } else { "llama.cpp" };
        notes_act = Some(format!(
            "hidden_act '{}': written as {arch}.hidden_activation, which tern honours; {engine}'s '{arch}' graph \
             hard-codes '{}' and will compute something else",
            act_name(c.act),
            act_name(llamacpp_act)
        ));
    }
    if target == TargetType::I2_S && !is_bitnet {
        return Err(ConvertError::unsupported(
            &src,
            format!(
                "--type i2_s is bitnet.cpp's type and needs its BitNet architecture; model_type '{}' can use tq2_0 \
                 or tq1_0",
                c.model_type
            ),
        ));
    }
    let latent_bitnet = is_bitnet && c.quant.is_none() && target.is_ternary();
    let mut b = Builder {
        set: &set,
        src: src.clone(),
        target,
        quant: c.quant.clone(),
        latent_bitnet,
        used: BTreeSet::new(),
        tensors: Vec::new(),
        notes: Vec::new(),
    };
    b.notes.extend(notes_act);
    if latent_bitnet {
        b.notes.push(
            "config.json has no quantization_config: ternarizing the BitNet projections with the per-tensor absmean \
             (llama.cpp BitnetModel.weight_quant)"
                .into(),
        );
    }
    let (h, hd, nh, nkv, ffn, vocab) = (c.hidden, c.head_dim, c.n_heads, c.n_kv_heads, c.ffn, c.vocab);
    let (qperm, kperm) =
        if permuted { (Some(llama_permutation(nh, hd)), Some(llama_permutation(nkv, hd))) } else { (None, None) };
    let qkv_bias = c.attention_bias || c.arch.qkv_bias;

    b.matrix("token_embd.weight", "model.embed_tokens.weight", vocab, h, Role::Embedding, "token embeddings")?;
    let rot = c.rotary_dim();
    if let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max } = &c.rope_scaling {
        let f = llama3_factors(c.rope_theta, rot, *factor, *low_freq_factor, *high_freq_factor, *original_max);
        let n = f.len();
        b.push(
            "rope_freqs.weight".into(),
            vec![n as u64],
            "generated: Llama 3 RoPE frequency factors".into(),
            TensorData::Values { v: f, cols: n },
            Encoder::Rows(GgmlType::F32),
        );
    }
    for i in 0..c.n_layers {
        let p = format!("model.layers.{i}");
        let g = format!("blk.{i}");
        b.vector(&format!("{g}.attn_norm.weight"), &format!("{p}.input_layernorm.weight"), h, "attention norm", None)?;
        b.linear(
            &format!("{g}.attn_q"),
            &format!("{p}.self_attn.q_proj"),
            nh * hd,
            h,
            qkv_bias,
            qperm.clone(),
            Role::Linear,
        )?;
        b.linear(
            &format!("{g}.attn_k"),
            &format!("{p}.self_attn.k_proj"),
            nkv * hd,
            h,
            qkv_bias,
            kperm.clone(),
            Role::Linear,
        )?;
        b.linear(&format!("{g}.attn_v"), &format!("{p}.self_attn.v_proj"), nkv * hd, h, qkv_bias, None, Role::Linear)?;
        b.linear(
            &format!("{g}.attn_output"),
            &format!("{p}.self_attn.o_proj"),
            h,
            nh * hd,
            c.attention_bias,
            None,
            Role::Linear,
        )?;
        if c.arch.qk_norm {
            b.vector(
                &format!("{g}.attn_q_norm.weight"),
                &format!("{p}.self_attn.q_norm.weight"),
                hd,
                "query norm",
                None,
            )?;
            b.vector(
                &format!("{g}.attn_k_norm.weight"),
                &format!("{p}.self_attn.k_norm.weight"),
                hd,
                "key norm",
                None,
            )?;
        }
        if c.arch.sub_norms {
            b.vector(
                &format!("{g}.attn_sub_norm.weight"),
                &format!("{p}.self_attn.attn_sub_norm.weight"),
                nh * hd,
                "attention sub-norm",
                None,
            )?;
        }
        b.vector(
            &format!("{g}.ffn_norm.weight"),
            &format!("{p}.post_attention_layernorm.weight"),
            h,
            "MLP norm",
            None,
        )?;
        b.linear(&format!("{g}.ffn_gate"), &format!("{p}.mlp.gate_proj"), ffn, h, c.mlp_bias, None, Role::Linear)?;
        b.linear(&format!("{g}.ffn_up"), &format!("{p}.mlp.up_proj"), ffn, h, c.mlp_bias, None, Role::Linear)?;
        b.linear(&format!("{g}.ffn_down"), &format!("{p}.mlp.down_proj"), h, ffn, c.mlp_bias, None, Role::Linear)?;
        if c.arch.sub_norms {
            b.vector(
                &format!("{g}.ffn_sub_norm.weight"),
                &format!("{p}.mlp.ffn_sub_norm.weight"),
                ffn,
                "MLP sub-norm",
                None,
            )?;
        }
    }
    b.vector("output_norm.weight", "model.norm.weight", h, "final norm", None)?;
    if c.tie_embeddings {
        b.used.insert("lm_head.weight".into());
    } else {
        b.linear("output", "lm_head", vocab, h, false, None, Role::Embedding)?;
        if is_bitnet {
            b.notes.push(
                "untied lm_head: llama.cpp's bitnet graph always uses token_embd as the head and refuses files with \
                 output.weight (tern reads it)"
                    .into(),
            );
        }
    }
    for (name, t) in &set.tensors {
        if !b.used.contains(name) && !name.ends_with("rotary_emb.inv_freq") {
            let hint = if name.ends_with(".bias") { " (a bias the config does not enable)" } else { "" };
            return Err(ConvertError::tensor(
                &t.file.display().to_string(),
                name,
                format!("not used by a {} model with this config.json{hint}", c.model_type),
            ));
        }
    }

    // Metadata.
    let name = opts.name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into())
    });
    let k = |s: &str| format!("{arch}.{s}");
    let mut md: Vec<(String, Value)> =
        vec![("general.architecture".into(), arch.into()), ("general.type".into(), "model".into())];
    let gd = &c.gen_defaults;
    if let Some(v) = gd.top_k {
        md.push(("general.sampling.top_k".into(), Value::I32(v.min(i32::MAX as usize) as i32)));
    }
    if let Some(v) = gd.top_p {
        md.push(("general.sampling.top_p".into(), Value::F32(v)));
    }
    if let Some(v) = gd.min_p {
        md.push(("general.sampling.min_p".into(), Value::F32(v)));
    }
    if let Some(v) = gd.temperature {
        md.push(("general.sampling.temp".into(), Value::F32(v)));
    }
    if let Some(v) = gd.repetition_penalty {
        md.push(("general.sampling.penalty_repeat".into(), Value::F32(v)));
    }
    md.push(("general.name".into(), name.into()));
    let n_params: u64 = b.tensors.iter().map(PlannedTensor::n_elements).sum();
    md.push(("general.size_label".into(), size_label(n_params).into()));
    let u = |v: usize| Value::U32(v.min(u32::MAX as usize) as u32);
    md.push((k("block_count"), u(c.n_layers)));
    md.push((k("context_length"), u(c.max_position_embeddings)));
    md.push((k("embedding_length"), u(h)));
    md.push((k("feed_forward_length"), u(ffn)));
    md.push((k("attention.head_count"), u(nh)));
    md.push((k("attention.head_count_kv"), u(nkv)));
    match &c.rope_scaling {
        RopeScaling::Default if is_bitnet => {
            md.push((k("rope.scaling.type"), "linear".into()));
            md.push((k("rope.scaling.factor"), Value::F32(1.0)));
        }
        RopeScaling::Default | RopeScaling::Llama3 { .. } => {}
        RopeScaling::Linear { factor } => {
            md.push((k("rope.scaling.type"), "linear".into()));
            md.push((k("rope.scaling.factor"), Value::F32(*factor as f32)));
        }
        RopeScaling::Dynamic { factor } => b.notes.push(format!(
            "rope_type dynamic (factor {factor}) has no GGUF form; written as plain RoPE, which is identical up to \
             max_position_embeddings = {}",
            c.max_position_embeddings
        )),
        RopeScaling::Yarn {
            factor,
            original_max,
            attention_factor,
            beta_fast,
            beta_slow,
            mscale,
            mscale_all_dim,
            truncate,
        } => {
            let f = factor.unwrap_or(c.max_position_embeddings as f64 / (*original_max).max(1) as f64);
            md.push((k("rope.scaling.type"), "yarn".into()));
            md.push((k("rope.scaling.factor"), Value::F32(f as f32)));
            md.push((k("rope.scaling.original_context_length"), u(*original_max)));
            if let Some(a) = attention_factor {
                // convert_hf_to_gguf.py's key; llama.cpp reads it for grok only (its llama/qwen graphs use
                // 0.1·ln(factor) + 1), tern reads it as transformers' attention_factor.
                md.push((k("rope.scaling.yarn_attn_factor"), Value::F32(*a as f32)));
                b.notes.push(format!(
                    "YaRN attention_factor {a} is written as {arch}.rope.scaling.yarn_attn_factor (as \
                     convert_hf_to_gguf.py does); llama.cpp's '{arch}' graph ignores it"
                ));
            }
            md.push((k("rope.scaling.yarn_beta_fast"), Value::F32(*beta_fast as f32)));
            md.push((k("rope.scaling.yarn_beta_slow"), Value::F32(*beta_slow as f32)));
            if mscale.is_some() || mscale_all_dim.is_some() || !truncate {
                b.notes.push("YaRN mscale / mscale_all_dim / truncate = false have no GGUF key; dropped".into());
            }
        }
    }
    md.push((k("rope.freq_base"), Value::F32(c.rope_theta as f32)));
    md.push((k("attention.layer_norm_rms_epsilon"), Value::F32(c.rms_eps)));
    md.push((k("attention.key_length"), u(hd)));
    md.push((k("attention.value_length"), u(hd)));
    md.push(("general.file_type".into(), Value::U32(target.file_type())));
    md.push((k("vocab_size"), u(vocab)));
    md.push((k("rope.dimension_count"), u(rot)));
    if write_act {
        md.push((k("hidden_activation"), act_name(c.act).into()));
    }
    if let Some(w) = c.sliding_window.filter(|&w| w < c.max_position_embeddings) {
        b.notes.push(format!(
            "sliding_window {w}: the GGUF '{arch}' architecture has no sliding window; attention past {w} tokens differs"
        ));
    }
    md.push(("general.quantization_version".into(), Value::U32(2)));
    let vdir = opts.vocab_dir.clone().unwrap_or_else(|| dir.to_path_buf());
    let vopts =
        VocabOptions { arch: arch.to_string(), pre: opts.vocab_pre.clone(), config_dir: Some(dir.to_path_buf()) };
    let v = vocab::from_dir(&vdir, vocab, &vopts)?;
    md.extend(v.kv);
    b.notes.extend(v.notes);
    Ok(Plan {
        source: opts.source.clone(),
        target,
        arch: arch.to_string(),
        metadata: md,
        tensors: b.tensors,
        notes: b.notes,
        vocab_summary: v.summary,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn llama3_factors_match_the_hf_llama3_rule() {
        // Llama 3.1 8B: theta 500000, head_dim 128, factor 8, low 1, high 4, original 8192.
        let f = super::llama3_factors(500_000.0, 128, 8.0, 1.0, 4.0, 8192);
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[1] >= w[0]), "factors grow with the wavelength");
    }
}
