//! Binding Hugging Face safetensors checkpoints to model roles.
//!
//! Every tensor the config implies is looked up by its HF name, checked for dtype and shape, and
//! turned into weights: dense tensors stay zero-copy views into the memory map; ternary layers
//! (`quantization_config.quant_method == "bitnet"`) are repacked once into the T2 layout — from
//! transformers' packed uint8 (`offline`) or by ternarizing float latent weights with the per-tensor
//! absmean scale (`online`, transformers' `WeightQuant`). Tensors left over after binding are an
//! error (a checkpoint that does not match its config must not run silently).

use crate::config::{BitnetQuant, LinearClass, ModelConfig};
use crate::linear::{Linear, LinearWeight, TernaryScale};
use crate::model::{Layer, Model};
use crate::rope::Rope;
use crate::{ModelError, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tern_formats::safetensors::{DType, SafetensorsSet, TensorEntry};
use tern_kernels::buf::ByteBuf;
use tern_kernels::dense::{DenseDType, DenseMatrix};
use tern_kernels::ternary::TernaryMatrix;

/// Called as layers are bound: `(done, total)`.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Loads a model from a path: a `.gguf` file, or an HF directory (config.json + safetensors).
pub fn load_path(path: &Path, progress: Option<Progress<'_>>) -> Result<Model> {
    if path.is_file() {
        return crate::load_gguf::load_gguf(path, progress);
    }
    load_hf_dir(path, progress)
}

/// Loads `dir/config.json` (+ `generation_config.json`) and the safetensors weights in `dir`.
pub fn load_hf_dir(dir: &Path, progress: Option<Progress<'_>>) -> Result<Model> {
    let config = ModelConfig::from_dir(dir)?;
    let set = SafetensorsSet::open_dir(dir)?;
    load_hf(config, &set, dir, progress)
}

/// Binds an opened checkpoint to `config`.
pub fn load_hf(config: ModelConfig, set: &SafetensorsSet, dir: &Path, progress: Option<Progress<'_>>) -> Result<Model> {
    let b = Binder {
        set,
        used: Mutex::new(BTreeSet::new()),
        source: dir.display().to_string(),
        quant: config.quant.clone(),
    };
    let c = &config;
    let (h, hd, nh, nkv, ffn) = (c.hidden, c.head_dim, c.n_heads, c.n_kv_heads, c.ffn);
    let embed = Linear {
        weight: LinearWeight::Dense(b.dense("model.embed_tokens.weight", c.vocab, h, "token embeddings")?),
        bias: None,
    };
    let qkv_bias = c.attention_bias || c.arch.qkv_bias;
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let p = format!("model.layers.{i}");
        let a = format!("{p}.self_attn");
        let m = format!("{p}.mlp");
        layers.push(Layer {
            attn_norm: b.vector(&format!("{p}.input_layernorm.weight"), h, "attention norm")?,
            post_attn_norm: c
                .arch
                .gemma
                .then(|| b.vector(&format!("{p}.post_attention_layernorm.weight"), h, "post-attention norm"))
                .transpose()?,
            post_ffn_norm: c
                .arch
                .gemma
                .then(|| b.vector(&format!("{p}.post_feedforward_layernorm.weight"), h, "post-feedforward norm"))
                .transpose()?,
            q: b.linear(&format!("{a}.q_proj"), nh * hd, h, qkv_bias)?,
            k: b.linear(&format!("{a}.k_proj"), nkv * hd, h, qkv_bias)?,
            v: b.linear(&format!("{a}.v_proj"), nkv * hd, h, qkv_bias)?,
            o: b.linear(&format!("{a}.o_proj"), h, nh * hd, c.attention_bias)?,
            q_norm: c
                .arch
                .qk_norm
                .then(|| b.vector(&format!("{a}.q_norm.weight"), hd, "per-head query norm"))
                .transpose()?,
            k_norm: c
                .arch
                .qk_norm
                .then(|| b.vector(&format!("{a}.k_norm.weight"), hd, "per-head key norm"))
                .transpose()?,
            attn_sub_norm: c
                .arch
                .sub_norms
                .then(|| b.vector(&format!("{a}.attn_sub_norm.weight"), nh * hd, "attention sub-norm"))
                .transpose()?,
            ffn_norm: if c.arch.gemma {
                b.vector(&format!("{p}.pre_feedforward_layernorm.weight"), h, "pre-feedforward norm")?
            } else {
                b.vector(&format!("{p}.post_attention_layernorm.weight"), h, "MLP norm")?
            },
            gate: b.linear(&format!("{m}.gate_proj"), ffn, h, c.mlp_bias)?,
            up: b.linear(&format!("{m}.up_proj"), ffn, h, c.mlp_bias)?,
            down: b.linear(&format!("{m}.down_proj"), h, ffn, c.mlp_bias)?,
            ffn_sub_norm: c
                .arch
                .sub_norms
                .then(|| b.vector(&format!("{m}.ffn_sub_norm.weight"), ffn, "MLP sub-norm"))
                .transpose()?,
        });
        if let Some(cb) = progress {
            cb(i + 1, c.n_layers);
        }
    }
    let norm = b.vector("model.norm.weight", h, "final norm")?;
    let lm_head = if c.tie_embeddings {
        // transformers ties the head to the embeddings even if a copy was saved.
        b.mark_used("lm_head.weight");
        None
    } else {
        // Dense unless an explicit `modules_to_not_convert` list leaves it out (transformers 5.x).
        Some(b.linear("lm_head", c.vocab, h, false)?)
    };
    b.check_all_used(c)?;
    let rope = Rope::new(c.rope_theta, c.rotary_dim(), c.rope_scaling.clone(), c.max_position_embeddings);
    let rope_local = c
        .local_rope
        .as_ref()
        .map(|(theta, sc)| Rope::new(*theta, c.rotary_dim(), sc.clone(), c.max_position_embeddings));
    Ok(Model { config, embed, layers, norm, lm_head, rope, rope_local })
}

struct Binder<'a> {
    set: &'a SafetensorsSet,
    used: Mutex<BTreeSet<String>>,
    source: String,
    quant: Option<BitnetQuant>,
}

fn file_of(t: &TensorEntry) -> String {
    t.file.display().to_string()
}

fn float_dtype(t: &TensorEntry) -> Result<DenseDType> {
    match t.dtype {
        DType::F32 => Ok(DenseDType::F32),
        DType::F16 => Ok(DenseDType::F16),
        DType::BF16 => Ok(DenseDType::BF16),
        other => Err(ModelError::DType {
            file: file_of(t),
            tensor: t.name.clone(),
            expected: "F32, F16 or BF16".into(),
            found: other.to_string(),
        }),
    }
}

impl Binder<'_> {
    fn mark_used(&self, name: &str) {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
    }

    fn get(&self, name: &str, role: &str) -> Result<&TensorEntry> {
        let t = self.set.get(name).ok_or_else(|| ModelError::MissingTensor {
            source_name: self.source.clone(),
            tensor: name.to_string(),
            role: role.to_string(),
        })?;
        self.mark_used(name);
        Ok(t)
    }

    fn shape(t: &TensorEntry, expected: &[usize], why: &str) -> Result<()> {
        if t.shape != expected {
            return Err(ModelError::Shape {
                file: file_of(t),
                tensor: t.name.clone(),
                expected: expected.to_vec(),
                found: t.shape.clone(),
                why: why.to_string(),
            });
        }
        Ok(())
    }

    /// A 1-D float vector (norm weights, biases) widened to f32.
    fn vector(&self, name: &str, len: usize, role: &str) -> Result<Vec<f32>> {
        let t = self.get(name, role)?;
        float_dtype(t)?;
        Self::shape(t, &[len], "")?;
        let v = t.to_f32().unwrap_or_default();
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::BadTensor {
                file: file_of(t),
                tensor: name.into(),
                reason: format!("non-finite value {} at index {i}", v[i]),
            });
        }
        Ok(v)
    }

    /// A dense 2-D float matrix, zero-copy.
    fn dense(&self, name: &str, rows: usize, cols: usize, role: &str) -> Result<DenseMatrix> {
        let t = self.get(name, role)?;
        let dt = float_dtype(t)?;
        Self::shape(t, &[rows, cols], "")?;
        dense_view(t, dt)
    }

    fn is_quantized(&self, module: &str) -> Option<&BitnetQuant> {
        let q = self.quant.as_ref()?;
        let leaf = module.rsplit('.').next().unwrap_or(module);
        let skip = match &q.modules_to_not_convert {
            None => leaf == "lm_head",
            Some(list) => list.iter().any(|k| module.contains(k.as_str()) || leaf == k),
        };
        (!skip).then_some(q)
    }

    fn linear(&self, module: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let wname = format!("{module}.weight");
        let weight = match self.is_quantized(module) {
            None => LinearWeight::Dense(self.dense(&wname, out, inp, "linear weight")?),
            Some(q) if q.online => {
                let t = self.get(&wname, "latent (float) ternary weight, quantization_mode online")?;
                float_dtype(t)?;
                Self::shape(t, &[out, inp], " (online BitNet weights are float latent weights)")?;
                let (w, scale) = ternarize_absmean(t, out, inp)?;
                LinearWeight::Ternary {
                    w,
                    scale: TernaryScale::Multiply(scale),
                    input_norm: self.input_norm(module, inp, q)?,
                }
            }
            Some(q) => {
                let t = self.get(&wname, "packed ternary weight")?;
                if t.dtype != DType::U8 {
                    return Err(ModelError::DType {
                        file: file_of(t),
                        tensor: wname,
                        expected: "U8 (packed ternary, quantization_mode offline)".into(),
                        found: t.dtype.to_string(),
                    });
                }
                if !out.is_multiple_of(4) {
                    return Err(ModelError::BadTensor {
                        file: file_of(t),
                        tensor: wname,
                        reason: format!(
                            "packed ternary layers need a multiple of 4 output features, config implies {out}"
                        ),
                    });
                }
                Self::shape(
                    t,
                    &[out / 4, inp],
                    &format!(" (4 ternary codes per byte along the output dim: config implies {out} × {inp})"),
                )?;
                let w = TernaryMatrix::from_hf_packed(out, inp, t.bytes()).map_err(|e| ModelError::BadTensor {
                    file: file_of(t),
                    tensor: wname.clone(),
                    reason: e.to_string(),
                })?;
                let sname = format!("{module}.weight_scale");
                let st = self.get(&sname, "ternary weight scale")?;
                float_dtype(st)?;
                if st.numel() != 1 {
                    return Err(ModelError::Shape {
                        file: file_of(st),
                        tensor: sname,
                        expected: vec![1],
                        found: st.shape.clone(),
                        why: " (one scale per tensor)".into(),
                    });
                }
                let s = st.to_f32().and_then(|v| v.first().copied()).unwrap_or(f32::NAN);
                if !(s.is_finite() && s != 0.0) {
                    return Err(ModelError::BadTensor {
                        file: file_of(st),
                        tensor: sname,
                        reason: format!("weight scale {s} must be finite and non-zero"),
                    });
                }
                let scale = match q.linear_class {
                    LinearClass::AutoBitLinear => TernaryScale::Multiply(s),
                    LinearClass::BitLinear => TernaryScale::Divide(s),
                };
                LinearWeight::Ternary { w, scale, input_norm: self.input_norm(module, inp, q)? }
            }
        };
        let bias = if bias { Some(self.vector(&format!("{module}.bias"), out, "bias")?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// `use_rms_norm`: the linear's own input norm, `<module>.rms_norm.weight`.
    fn input_norm(&self, module: &str, inp: usize, q: &BitnetQuant) -> Result<Option<(Vec<f32>, f32)>> {
        if !q.use_rms_norm {
            return Ok(None);
        }
        let w =
            self.vector(&format!("{module}.rms_norm.weight"), inp, "input RMSNorm of a ternary linear (use_rms_norm)")?;
        Ok(Some((w, q.rms_norm_eps)))
    }

    fn check_all_used(&self, c: &ModelConfig) -> Result<()> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        for (name, t) in &self.set.tensors {
            if used.contains(name) || name.ends_with("rotary_emb.inv_freq") {
                continue;
            }
            let hint = if name.ends_with(".bias") {
                " — a bias the config does not enable (check attention_bias / mlp_bias)".to_string()
            } else if name.ends_with("weight_scale") {
                " — a ternary scale, but config.json has no bitnet quantization_config".to_string()
            } else {
                String::new()
            };
            return Err(ModelError::UnexpectedTensor {
                file: file_of(t),
                tensor: name.clone(),
                arch: c.model_type.clone(),
                hint,
            });
        }
        Ok(())
    }
}

/// A zero-copy dense view of a float tensor.
fn dense_view(t: &TensorEntry, dt: DenseDType) -> Result<DenseMatrix> {
    let (map, off, len) = t.storage();
    let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = map;
    let buf = ByteBuf::from_shared(owner, off, len).ok_or_else(|| ModelError::BadTensor {
        file: file_of(t),
        tensor: t.name.clone(),
        reason: "byte range outside the file".into(),
    })?;
    let (rows, cols) = (t.shape[0], t.shape[1]);
    DenseMatrix::new(rows, cols, dt, buf).map_err(|e| ModelError::BadTensor {
        file: file_of(t),
        tensor: t.name.clone(),
        reason: format!("{} bytes, expected {}", e.found, e.expected),
    })
}

/// transformers `WeightQuant`: `s = 1 / mean(|W|).clamp(min=1e-5)`, `W_q = round(W·s).clamp(-1, 1)`,
/// effective weight `W_q / s`. Returns the ternary matrix and the multiplier `1 / s`.
fn ternarize_absmean(t: &TensorEntry, rows: usize, cols: usize) -> Result<(TernaryMatrix, f32)> {
    let w = t.to_f32().unwrap_or_default();
    let mut sum = 0f64;
    for (i, &x) in w.iter().enumerate() {
        if !x.is_finite() {
            return Err(ModelError::BadTensor {
                file: file_of(t),
                tensor: t.name.clone(),
                reason: format!("non-finite latent weight {x} at index {i}"),
            });
        }
        sum += x.abs() as f64;
    }
    let mean = ((sum / w.len().max(1) as f64) as f32).max(1e-5);
    let s = 1.0f32 / mean;
    let vals: Vec<i8> = w.iter().map(|&x| (x * s).round_ties_even().clamp(-1.0, 1.0) as i8).collect();
    let m = TernaryMatrix::from_values(rows, cols, &vals).map_err(|e| ModelError::BadTensor {
        file: file_of(t),
        tensor: t.name.clone(),
        reason: e.to_string(),
    })?;
    Ok((m, 1.0 / s))
}
