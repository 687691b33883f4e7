//! Linear layers: the one place the forward pass meets weight formats.
//!
//! [`Linear::forward`] computes `y = x · Wᵀ (+ b)` for `T` tokens whatever the stored format:
//! dense f32/f16/bf16, or packed ternary with per-token int8 activations (transformers'
//! `BitLinear` / `AutoBitLinear` arithmetic). Model code never matches on the format.

use tern_kernels::act::{quantize_i8, ActScale};
use tern_kernels::dense::{self, DenseMatrix};
use tern_kernels::quant::{self as qk, QuantMatrix};
use tern_kernels::ternary::{self, QuantizedActs, TernaryMatrix};
use tern_kernels::ThreadPool;

/// How a ternary layer turns the integer dot product into the output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TernaryScale {
    /// `y = dot / s_x · scale` (AutoBitLinear: `weight_scale` offline, `mean|W|` online).
    Multiply(f32),
    /// `y = dot / (s_x · scale)` (BitLinear).
    Divide(f32),
}

/// Weight storage of a linear layer.
#[derive(Clone, Debug)]
pub enum LinearWeight {
    Dense(DenseMatrix),
    /// ggml block-quantized (GGUF Q4_0 … Q6_K, TQ1_0/TQ2_0 with per-block scales), kept packed.
    Quant(QuantMatrix),
    Ternary {
        w: TernaryMatrix,
        scale: TernaryScale,
        /// `use_rms_norm`: the input is RMS-normalised with this weight and eps before quantization.
        input_norm: Option<(Vec<f32>, f32)>,
    },
}

/// A linear layer `out_features × in_features` with an optional bias.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: LinearWeight,
    pub bias: Option<Vec<f32>>,
}

/// Reusable buffers for ternary activation quantization.
#[derive(Default, Debug)]
pub struct LinearScratch {
    codes: Vec<i8>,
    scales: Vec<ActScale>,
    factors: Vec<f32>,
    normed: Vec<f32>,
}

impl Linear {
    pub fn out_features(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(m) => m.rows(),
            LinearWeight::Quant(m) => m.rows(),
            LinearWeight::Ternary { w, .. } => w.rows(),
        }
    }

    pub fn in_features(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(m) => m.cols(),
            LinearWeight::Quant(m) => m.cols(),
            LinearWeight::Ternary { w, .. } => w.cols(),
        }
    }

    /// Bytes of weight data read per token.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(m) => m.byte_len(),
            LinearWeight::Quant(m) => m.byte_len(),
            LinearWeight::Ternary { w, .. } => w.data().len(),
        }
    }

    /// Row `r` of the weight widened to f32 (embedding lookup; `out.len() == in_features`).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        match &self.weight {
            LinearWeight::Dense(m) => m.row_to_f32(r, out),
            LinearWeight::Quant(m) => m.row_to_f32(r, out),
            LinearWeight::Ternary { w, scale, .. } => {
                let s = match *scale {
                    TernaryScale::Multiply(s) => s,
                    TernaryScale::Divide(s) => 1.0 / s,
                };
                for (c, o) in out.iter_mut().enumerate().take(w.cols()) {
                    *o = w.get(r, c) as f32 * s;
                }
            }
        }
    }

    /// `out[t, :] = x[t, :] · Wᵀ + b` for `T = x.len() / in_features` tokens.
    pub fn forward(&self, pool: &ThreadPool, x: &[f32], out: &mut [f32], scratch: &mut LinearScratch) {
        let (k, n) = (self.in_features(), self.out_features());
        let tokens = x.len() / k;
        debug_assert_eq!(x.len(), tokens * k);
        debug_assert_eq!(out.len(), tokens * n);
        match &self.weight {
            LinearWeight::Dense(m) => dense::matmul(pool, m, x, out),
            LinearWeight::Quant(m) => qk::matmul(pool, m, x, out),
            LinearWeight::Ternary { w, scale, input_norm } => {
                let kp = w.padded_cols();
                scratch.codes.resize(tokens * kp, 0);
                scratch.scales.clear();
                scratch.factors.clear();
                let src: &[f32] = match input_norm {
                    Some((weight, eps)) => {
                        scratch.normed.resize(x.len(), 0.0);
                        tern_kernels::ops::rms_norm(x, weight, *eps, 0.0, &mut scratch.normed);
                        &scratch.normed
                    }
                    None => x,
                };
                for t in 0..tokens {
                    let s = quantize_i8(&src[t * k..(t + 1) * k], &mut scratch.codes[t * kp..(t + 1) * kp]);
                    scratch.factors.push(match *scale {
                        TernaryScale::Multiply(ws) => ws / s.scale,
                        TernaryScale::Divide(ws) => 1.0 / (s.scale * ws),
                    });
                    scratch.scales.push(s);
                }
                let acts = QuantizedActs { codes: &scratch.codes, scales: &scratch.scales };
                ternary::matmul(pool, w, &acts, &scratch.factors, out);
            }
        }
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(n) {
                for (o, &bv) in row.iter_mut().zip(b) {
                    *o += bv;
                }
            }
        }
    }
}
