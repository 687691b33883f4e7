//! Element-wise, normalisation and attention ops on f32 activations.
//!
//! References: transformers `LlamaRMSNorm` (f32 variance, `weight * x * rsqrt(mean(x²) + eps)`),
//! `ACT2FN` (`silu`, `gelu`, `gelu_pytorch_tanh`, `relu2`), `rotate_half` RoPE
//! (`q·cos + rotate_half(q)·sin`), and eager attention (`softmax(q·kᵀ·scale + causal mask)·v`).

use crate::pool::ThreadPool;
use crate::ternary::SyncPtr;

/// Largest head dimension the attention kernel accepts (its accumulator lives on the stack).
pub const MAX_HEAD_DIM: usize = 512;

/// RMSNorm of each `weight.len()`-wide row of `x` into `out`: `out = x · rsqrt(mean(x²) + eps) · (w + offset)`.
/// `offset` is 0 for Llama-style norms and 1 for Gemma's `(1 + weight)`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, offset: f32, out: &mut [f32]) {
    let d = weight.len();
    assert!(d > 0 && x.len().is_multiple_of(d) && out.len() == x.len(), "rms_norm: lengths");
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
            *o = (v * inv) * (w + offset);
        }
    }
}

/// In-place RMSNorm (see [`rms_norm`]).
pub fn rms_norm_inplace(x: &mut [f32], weight: &[f32], eps: f32, offset: f32) {
    let d = weight.len();
    assert!(d > 0 && x.len().is_multiple_of(d), "rms_norm_inplace: lengths");
    for xr in x.chunks_exact_mut(d) {
        let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for (v, &w) in xr.iter_mut().zip(weight) {
            *v = (*v * inv) * (w + offset);
        }
    }
}

/// Activation functions of gated MLPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (`silu`, `swish`).
    Silu,
    /// Exact GELU with erf (`gelu`).
    Gelu,
    /// Tanh-approximated GELU (`gelu_pytorch_tanh`, `gelu_new`, `gelu_fast`-like).
    GeluTanh,
    /// `relu(x)²` (`relu2`, BitNet b1.58).
    Relu2,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::GeluTanh => {
                const C: f32 = 0.797_884_6; // sqrt(2/pi)
                0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Relu2 => {
                let r = x.max(0.0);
                r * r
            }
            Activation::Relu => x.max(0.0),
        }
    }
}

/// `gate[i] = act(gate[i]) · up[i]`.
pub fn glu(act: Activation, gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "glu: lengths");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = act.apply(*g) * u;
    }
}

/// `a[i] += b[i]`.
pub fn add_inplace(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "add_inplace: lengths");
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Rotate-half RoPE on one token: `x` holds `heads × head_dim` values; the first `2·cos.len()`
/// dims of each head rotate (partial rotary leaves the rest unchanged). `cos`/`sin` already include
/// any attention factor: `x[i] ← x[i]·cos[i] − x[i+h]·sin[i]`, `x[i+h] ← x[i+h]·cos[i] + x[i]·sin[i]`.
pub fn rope_rotate_half(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    assert!(2 * half <= head_dim && sin.len() == half && x.len().is_multiple_of(head_dim), "rope: lengths");
    for h in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (a, b) = (h[i], h[i + half]);
            h[i] = a * cos[i] - b * sin[i];
            h[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

/// Geometry of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Rows allocated per KV head in the cache (`k[kvh][pos][d]`).
    pub capacity: usize,
    /// Position of the first query token; query `t` sees keys `0..=pos0 + t`.
    pub pos0: usize,
    /// Score scale, usually `head_dim^-0.5`.
    pub scale: f32,
    /// Sliding window: query at position `p` sees keys `p - window + 1 ..= p` (transformers'
    /// `kv_idx > q_idx - sliding_window`). `None` = full causal attention.
    pub window: Option<usize>,
}

/// Causal grouped-query attention for `T` new tokens of one sequence.
///
/// `q`: `T × n_heads × head_dim`; `k`, `v`: `n_kv_heads × capacity × head_dim` holding at least
/// `pos0 + T` positions; `out`: `T × n_heads × head_dim`. Uses an online (streaming) softmax in f32,
/// so no score buffer is needed.
pub fn attention(pool: &ThreadPool, s: AttnShape, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    let hd = s.head_dim;
    assert!(hd <= MAX_HEAD_DIM, "attention: head_dim {hd} > {MAX_HEAD_DIM}");
    assert!(s.n_kv_heads > 0 && s.n_heads.is_multiple_of(s.n_kv_heads), "attention: heads");
    let row = s.n_heads * hd;
    assert!(q.len().is_multiple_of(row) && out.len() == q.len(), "attention: q/out lengths");
    let tokens = q.len() / row;
    assert!(s.pos0 + tokens <= s.capacity, "attention: cache too small");
    assert!(k.len() >= s.n_kv_heads * s.capacity * hd && v.len() >= s.n_kv_heads * s.capacity * hd);
    let group = s.n_heads / s.n_kv_heads;
    let out_ptr = SyncPtr(out.as_mut_ptr());
    pool.run(tokens * s.n_heads, &|task| {
        let out_ptr = &out_ptr;
        let (t, h) = (task / s.n_heads, task % s.n_heads);
        let kvh = h / group;
        let qv = &q[t * row + h * hd..t * row + (h + 1) * hd];
        let kbase = &k[kvh * s.capacity * hd..];
        let vbase = &v[kvh * s.capacity * hd..];
        let n_keys = s.pos0 + t + 1;
        let first = s.window.map_or(0, |w| n_keys.saturating_sub(w.max(1)));
        let mut acc = [0f32; MAX_HEAD_DIM];
        let acc = &mut acc[..hd];
        let mut m = f32::NEG_INFINITY;
        let mut l = 0f32;
        for j in first..n_keys {
            let kj = &kbase[j * hd..(j + 1) * hd];
            let sc = crate::dense::dot_f32(qv, kj) * s.scale;
            let vj = &vbase[j * hd..(j + 1) * hd];
            if sc > m {
                let corr = (m - sc).exp();
                l = l * corr + 1.0;
                for (a, &x) in acc.iter_mut().zip(vj) {
                    *a = *a * corr + x;
                }
                m = sc;
            } else {
                let p = (sc - m).exp();
                l += p;
                for (a, &x) in acc.iter_mut().zip(vj) {
                    *a += p * x;
                }
            }
        }
        let inv = 1.0 / l;
        for (d, a) in acc.iter().enumerate() {
            // SAFETY: each (t, h) task writes its own disjoint head_dim slice of `out`.
            unsafe { *out_ptr.0.add(t * row + h * hd + d) = a * inv };
        }
    });
}

/// Numerically stable in-place softmax.
pub fn softmax_inplace(x: &mut [f32]) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_reference() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let w = [1.0f32, 0.5, 2.0, 1.0];
        let mut o = [0f32; 4];
        rms_norm(&x, &w, 1e-6, 0.0, &mut o);
        let inv = 1.0 / (7.5f32 + 1e-6).sqrt();
        assert!((o[0] - inv).abs() < 1e-6 && (o[1] - 2.0 * inv * 0.5).abs() < 1e-6 && (o[2] - 6.0 * inv).abs() < 1e-6);
    }

    #[test]
    fn activations() {
        assert_eq!(Activation::Relu2.apply(-3.0), 0.0);
        assert_eq!(Activation::Relu2.apply(3.0), 9.0);
        assert!((Activation::Silu.apply(1.0) - 0.7310586).abs() < 1e-6);
        // torch.nn.functional.gelu(1.0) = 0.8413447, tanh approx = 0.8411920
        assert!((Activation::Gelu.apply(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((Activation::GeluTanh.apply(1.0) - 0.841_192).abs() < 1e-5);
    }

    #[test]
    fn rope_rotates_pairs_half_apart() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        let (c, s) = (0.5f32, 0.25f32);
        rope_rotate_half(&mut x, 4, &[c, c], &[s, s]);
        assert_eq!(x, [1.0 * c - 3.0 * s, 2.0 * c - 4.0 * s, 3.0 * c + 1.0 * s, 4.0 * c + 2.0 * s]);
    }

    #[test]
    fn attention_matches_naive_softmax() {
        let pool = ThreadPool::new(2);
        let (nh, nkv, hd, cap, pos0, tokens) = (4usize, 2usize, 8usize, 16usize, 3usize, 4usize);
        let f = |i: usize| ((i * 7919 % 97) as f32 - 48.0) / 20.0;
        let q: Vec<f32> = (0..tokens * nh * hd).map(f).collect();
        let k: Vec<f32> = (0..nkv * cap * hd).map(|i| f(i + 11)).collect();
        let v: Vec<f32> = (0..nkv * cap * hd).map(|i| f(i + 29)).collect();
        let mut out = vec![0f32; q.len()];
        let shape =
            AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, capacity: cap, pos0, scale: 0.35, window: None };
        attention(&pool, shape, &q, &k, &v, &mut out);
        for t in 0..tokens {
            for h in 0..nh {
                let kvh = h / 2;
                let n = pos0 + t + 1;
                let qv = &q[(t * nh + h) * hd..][..hd];
                let mut sc: Vec<f32> =
                    (0..n).map(|j| (0..hd).map(|d| qv[d] * k[(kvh * cap + j) * hd + d]).sum::<f32>() * 0.35).collect();
                softmax_inplace(&mut sc);
                for d in 0..hd {
                    let want: f32 = (0..n).map(|j| sc[j] * v[(kvh * cap + j) * hd + d]).sum();
                    let got = out[(t * nh + h) * hd + d];
                    assert!((want - got).abs() < 1e-5, "t{t} h{h} d{d}: {want} vs {got}");
                }
            }
        }
    }
}
