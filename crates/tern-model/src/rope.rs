//! Rotary position embeddings, as transformers' `modeling_rope_utils.py` computes them.
//!
//! Variants: `default`, `linear` (positions divided by `factor`), `dynamic` (NTK-aware base
//! rescaled from the current sequence length once it exceeds `max_position_embeddings`), `yarn`
//! (per-frequency blend of interpolation and extrapolation, plus an attention factor applied to
//! cos/sin) and `llama3` (wavelength-banded smoothing). Pairing is HF's rotate-half (dims `i` and
//! `i + rot/2`). `cos`/`sin` are computed like transformers: `f32(pos · inv_freq)` then cos/sin in f32.

use crate::{ModelError, Result};
use tern_formats::json::JsonFile;

/// The scaling variant and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    Default,
    Linear {
        factor: f64,
    },
    Dynamic {
        factor: f64,
    },
    /// `factor: None` means `max_position_embeddings / original_max` (transformers 5.x).
    Yarn {
        factor: Option<f64>,
        original_max: usize,
        attention_factor: Option<f64>,
        beta_fast: f64,
        beta_slow: f64,
        mscale: Option<f64>,
        mscale_all_dim: Option<f64>,
        truncate: bool,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max: usize,
    },
}

impl RopeScaling {
    /// Parses a `rope_scaling` / `rope_parameters` object.
    /// `top_original_max` is a top-level `original_max_position_embeddings` in config.json, which
    /// transformers prefers over the one inside the scaling dict.
    pub fn parse(s: &JsonFile, max_pos: usize, top_original_max: Option<usize>) -> Result<RopeScaling> {
        let err =
            |field: &str, reason: String| ModelError::Config { path: s.path.clone(), field: field.to_string(), reason };
        let kind = match s.opt_str("rope_type")? {
            Some(k) => k.to_string(),
            None => s.opt_str("type")?.unwrap_or("default").to_string(),
        };
        let factor = || -> Result<f64> {
            let f = s.opt_f64("factor")?.ok_or_else(|| err("factor", format!("required for rope_type '{kind}'")))?;
            if !(f.is_finite() && f >= 1.0) {
                return Err(err("factor", format!("{f} must be a finite number ≥ 1")));
            }
            Ok(f)
        };
        Ok(match kind.as_str() {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: factor()? },
            "dynamic" => RopeScaling::Dynamic { factor: factor()? },
            "yarn" => {
                let om = top_original_max.or(s.opt_usize("original_max_position_embeddings")?);
                RopeScaling::Yarn {
                    factor: if s.has("factor") { Some(factor()?) } else { None },
                    original_max: om.unwrap_or(max_pos).max(1),
                    attention_factor: s.opt_f64("attention_factor")?,
                    beta_fast: s.opt_f64("beta_fast")?.unwrap_or(32.0),
                    beta_slow: s.opt_f64("beta_slow")?.unwrap_or(1.0),
                    mscale: s.opt_f64("mscale")?,
                    mscale_all_dim: s.opt_f64("mscale_all_dim")?,
                    truncate: s.opt_bool("truncate")?.unwrap_or(true),
                }
            }
            "llama3" => {
                let low = s
                    .opt_f64("low_freq_factor")?
                    .ok_or_else(|| err("low_freq_factor", "required for llama3 RoPE".into()))?;
                let high = s
                    .opt_f64("high_freq_factor")?
                    .ok_or_else(|| err("high_freq_factor", "required for llama3 RoPE".into()))?;
                let om = top_original_max.or(s.opt_usize("original_max_position_embeddings")?).unwrap_or(max_pos);
                if high.partial_cmp(&low) != Some(std::cmp::Ordering::Greater) {
                    return Err(err("high_freq_factor", format!("{high} must exceed low_freq_factor {low}")));
                }
                RopeScaling::Llama3 {
                    factor: factor()?,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max: om.max(1),
                }
            }
            other => {
                return Err(err(
                    "rope_type",
                    format!("'{other}' is not supported (default, linear, dynamic, yarn, llama3)"),
                ))
            }
        })
    }
}

/// Precomputed RoPE state for a model.
#[derive(Clone, Debug)]
pub struct Rope {
    /// Rotated dims per head (even).
    pub rot_dim: usize,
    base: f64,
    scaling: RopeScaling,
    max_pos: usize,
    inv_freq: Vec<f32>,
    attention_factor: f32,
}

fn default_inv_freq(base: f64, dim: usize) -> Vec<f32> {
    // transformers: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), in f32.
    (0..dim / 2).map(|i| 1.0f32 / (base as f32).powf((2 * i) as f32 / dim as f32)).collect()
}

fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl Rope {
    pub fn new(base: f64, rot_dim: usize, scaling: RopeScaling, max_pos: usize) -> Rope {
        let dim = rot_dim;
        let mut attention_factor = 1.0f32;
        let inv_freq = match &scaling {
            RopeScaling::Default | RopeScaling::Dynamic { .. } => default_inv_freq(base, dim),
            RopeScaling::Linear { factor } => {
                default_inv_freq(base, dim).into_iter().map(|f| f / *factor as f32).collect()
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max } => {
                let old = *original_max as f64;
                let low_wl = old / low_freq_factor;
                let high_wl = old / high_freq_factor;
                default_inv_freq(base, dim)
                    .into_iter()
                    .map(|f| {
                        let f = f as f64;
                        let wl = 2.0 * std::f64::consts::PI / f;
                        let r = if wl > low_wl {
                            f / factor
                        } else if wl < high_wl {
                            f
                        } else {
                            let smooth = (old / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        };
                        r as f32
                    })
                    .collect()
            }
            RopeScaling::Yarn {
                factor,
                original_max,
                attention_factor: af,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                truncate,
            } => {
                // transformers 5.x `_compute_yarn_parameters`: without `factor`, it is
                // max_position_embeddings / original_max_position_embeddings.
                let factor = factor.unwrap_or(max_pos as f64 / *original_max as f64);
                attention_factor = match (af, mscale, mscale_all_dim) {
                    (Some(a), _, _) => *a,
                    (None, Some(m), Some(ma)) if *m != 0.0 && *ma != 0.0 => {
                        yarn_mscale(factor, *m) / yarn_mscale(factor, *ma)
                    }
                    _ => yarn_mscale(factor, 1.0),
                } as f32;
                let corr_dim = |rot: f64| {
                    (dim as f64 * (*original_max as f64 / (rot * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * base.ln())
                };
                let (mut low, mut high) = (corr_dim(*beta_fast), corr_dim(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let high = high.min(dim as f64 - 1.0);
                let high = if low == high { high + 0.001 } else { high };
                (0..dim / 2)
                    .map(|i| {
                        let pos_freq = (base as f32).powf((2 * i) as f32 / dim as f32);
                        let extra = 1.0 / pos_freq;
                        let inter = 1.0 / (factor as f32 * pos_freq);
                        let ramp = ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
                        let extra_factor = 1.0 - ramp;
                        inter * (1.0 - extra_factor) + extra * extra_factor
                    })
                    .collect()
            }
        };
        Rope { rot_dim, base, scaling, max_pos, inv_freq, attention_factor }
    }

    /// Divides each inverse frequency by a factor (llama.cpp's `rope_freqs.weight`, Llama-3.1 style).
    pub fn with_freq_factors(mut self, factors: &[f32]) -> Rope {
        for (f, d) in self.inv_freq.iter_mut().zip(factors) {
            *f /= d;
        }
        self
    }

    /// Inverse frequencies used for a forward whose largest position is `seq_len - 1`
    /// (only `dynamic` depends on it).
    pub fn inv_freq_for(&self, seq_len: usize, out: &mut Vec<f32>) {
        out.clear();
        match self.scaling {
            RopeScaling::Dynamic { factor } if seq_len > self.max_pos => {
                let dim = self.rot_dim as f64;
                let base = self.base
                    * ((factor * seq_len as f64 / self.max_pos as f64) - (factor - 1.0)).powf(dim / (dim - 2.0));
                out.extend(default_inv_freq(base, self.rot_dim));
            }
            _ => out.extend_from_slice(&self.inv_freq),
        }
    }

    /// cos/sin for `pos` into `cos`, `sin` (each `rot_dim / 2` long), with the attention factor.
    pub fn cos_sin(&self, inv_freq: &[f32], pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        let p = pos as f32;
        for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(inv_freq) {
            let a = p * f;
            *c = a.cos() * self.attention_factor;
            *s = a.sin() * self.attention_factor;
        }
    }

    /// Whether the frequencies depend on the sequence length (`dynamic` NTK scaling).
    pub fn depends_on_len(&self) -> bool {
        matches!(self.scaling, RopeScaling::Dynamic { .. })
    }

    /// The attention factor multiplied into cos/sin (1 except for yarn).
    pub fn attention_factor(&self) -> f32 {
        self.attention_factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies() {
        let r = Rope::new(10000.0, 8, RopeScaling::Default, 100);
        let mut f = Vec::new();
        r.inv_freq_for(10, &mut f);
        let want = [1.0, 0.1, 0.01, 0.001];
        for (a, b) in f.iter().zip(want) {
            assert!((a - b).abs() / b < 1e-6);
        }
    }

    #[test]
    fn linear_divides() {
        let r = Rope::new(10000.0, 4, RopeScaling::Linear { factor: 4.0 }, 100);
        let mut f = Vec::new();
        r.inv_freq_for(1, &mut f);
        assert!((f[0] - 0.25).abs() < 1e-7 && (f[1] - 0.0025).abs() < 1e-9);
    }

    #[test]
    fn dynamic_only_beyond_max() {
        let r = Rope::new(10000.0, 4, RopeScaling::Dynamic { factor: 2.0 }, 16);
        let mut a = Vec::new();
        r.inv_freq_for(16, &mut a);
        assert_eq!(a, default_inv_freq(10000.0, 4));
        r.inv_freq_for(32, &mut a);
        // base' = 10000 * (2*32/16 - 1)^(4/2) = 10000 * 9
        let want = default_inv_freq(90000.0, 4);
        for (x, y) in a.iter().zip(want) {
            assert!((x - y).abs() / y < 1e-5);
        }
    }

    #[test]
    fn llama3_bands() {
        // Low-frequency dims (long wavelength) are divided by factor; high frequency ones are kept.
        let r = Rope::new(
            500000.0,
            64,
            RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max: 8192 },
            131072,
        );
        let mut f = Vec::new();
        r.inv_freq_for(1, &mut f);
        let d = default_inv_freq(500000.0, 64);
        assert_eq!(f[0], d[0]);
        assert!((f[31] - d[31] / 8.0).abs() / f[31] < 1e-6);
    }

    #[test]
    fn yarn_attention_factor() {
        let s = RopeScaling::Yarn {
            factor: Some(4.0),
            original_max: 16,
            attention_factor: None,
            beta_fast: 32.0,
            beta_slow: 1.0,
            mscale: None,
            mscale_all_dim: None,
            truncate: true,
        };
        let r = Rope::new(10000.0, 16, s, 64);
        assert!((r.attention_factor() - (0.1 * 4f32.ln() + 1.0)).abs() < 1e-6);
    }
}
