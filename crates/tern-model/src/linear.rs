//! Linear layers: the one place the forward pass meets weight formats.
//!
//! [`Linear::forward`] computes `y = x · Wᵀ (+ b)` for `T` tokens whatever the stored format:
//! dense f32/f16/bf16, or packed ternary with per-token int8 activations (transformers'
//! `BitLinear` / `AutoBitLinear` arithmetic). Model code never matches on the format.

use crate::ModelError;
use tern_gguf::GgmlType;
use tern_kernels::act::{quantize_i8, ActScale};
use tern_kernels::buf::ByteBuf;
use tern_kernels::dense::{self, DenseDType, DenseMatrix};
use tern_kernels::int8::Int8Matrix;
use tern_kernels::quant::{self as qk, QuantMatrix};
use tern_kernels::ternary::{self, QuantizedActs, TernaryMatrix, TernaryPart};
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
    /// tern's int8 with per-64-block scales (quantized LM heads, `--head-quant i8`).
    Int8(Int8Matrix),
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
            LinearWeight::Int8(m) => m.rows(),
            LinearWeight::Ternary { w, .. } => w.rows(),
        }
    }

    pub fn in_features(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(m) => m.cols(),
            LinearWeight::Quant(m) => m.cols(),
            LinearWeight::Int8(m) => m.cols(),
            LinearWeight::Ternary { w, .. } => w.cols(),
        }
    }

    /// Bytes of weight data read per token.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(m) => m.byte_len(),
            LinearWeight::Quant(m) => m.byte_len(),
            LinearWeight::Int8(m) => m.byte_len(),
            LinearWeight::Ternary { w, .. } => w.data().len(),
        }
    }

    /// Row `r` of the weight widened to f32 (embedding lookup; `out.len() == in_features`).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        match &self.weight {
            LinearWeight::Dense(m) => m.row_to_f32(r, out),
            LinearWeight::Quant(m) => m.row_to_f32(r, out),
            LinearWeight::Int8(m) => m.row_to_f32(r, out),
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
            LinearWeight::Int8(m) => tern_kernels::int8::matmul(pool, m, x, out),
            LinearWeight::Ternary { w, scale, input_norm } => {
                let kp = w.padded_cols();
                let src: &[f32] = match input_norm {
                    Some((weight, eps)) => {
                        scratch.normed.resize(x.len(), 0.0);
                        tern_kernels::ops::rms_norm(x, weight, *eps, 0.0, &mut scratch.normed);
                        &scratch.normed
                    }
                    None => x,
                };
                quantize_tokens(src, k, kp, &mut scratch.codes, &mut scratch.scales);
                scratch.factors.clear();
                scratch.factors.extend(scratch.scales.iter().map(|s| scale.factor(s.scale)));
                let acts = QuantizedActs { codes: &scratch.codes, scales: &scratch.scales };
                ternary::matmul(pool, w, &acts, &scratch.factors, out);
            }
        }
        self.add_bias(out);
    }

    fn add_bias(&self, out: &mut [f32]) {
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(b.len()) {
                for (o, &bv) in row.iter_mut().zip(b) {
                    *o += bv;
                }
            }
        }
    }

    /// The ternary matrix when this layer can share quantized activations (ternary, no input norm).
    fn shareable_ternary(&self) -> Option<(&TernaryMatrix, TernaryScale)> {
        match &self.weight {
            LinearWeight::Ternary { w, scale, input_norm: None } => Some((w, *scale)),
            _ => None,
        }
    }

    /// `outs[i] = x · W_iᵀ + b_i` for several layers that read the same input (q/k/v, gate/up).
    ///
    /// When every layer is ternary without its own input norm and they share the padded K, `x` is
    /// quantized once and all products run in one pool dispatch ([`ternary::matmul_many`]); otherwise
    /// each layer runs [`Linear::forward`]. Either way the results are bit-identical with separate
    /// `forward` calls. A warm call allocates nothing.
    ///
    /// # Panics
    /// If `lins` and `outs` differ in length (a caller bug).
    pub fn forward_many(
        pool: &ThreadPool,
        lins: &[&Linear],
        x: &[f32],
        outs: &mut [&mut [f32]],
        scratch: &mut LinearScratch,
    ) {
        assert_eq!(lins.len(), outs.len(), "forward_many: one output per layer");
        let kp = lins.first().and_then(|l| l.shareable_ternary()).map(|(w, _)| w.padded_cols());
        let fused = lins.len() > 1
            && lins.len() <= ternary::MANY_MAX
            && lins.iter().all(|l| l.shareable_ternary().map(|(w, _)| Some(w.padded_cols())) == Some(kp));
        let Some(kp) = kp.filter(|_| fused) else {
            for (l, o) in lins.iter().zip(outs.iter_mut()) {
                l.forward(pool, x, o, scratch);
            }
            return;
        };
        let k = lins[0].in_features();
        let tokens = x.len() / k;
        quantize_tokens(x, k, kp, &mut scratch.codes, &mut scratch.scales);
        scratch.factors.clear();
        for l in lins {
            if let Some((_, sc)) = l.shareable_ternary() {
                scratch.factors.extend(scratch.scales.iter().map(|s| sc.factor(s.scale)));
            }
        }
        let acts = QuantizedActs { codes: &scratch.codes, scales: &scratch.scales };
        let factors = &scratch.factors;
        let mut parts: [Option<TernaryPart<'_>>; ternary::MANY_MAX] = Default::default();
        for (i, ((slot, l), o)) in parts.iter_mut().zip(lins).zip(outs.iter_mut()).enumerate() {
            if let Some((w, _)) = l.shareable_ternary() {
                *slot = Some(TernaryPart { w, factor: &factors[i * tokens..(i + 1) * tokens], out: o });
            }
        }
        run_parts(pool, &mut parts[..lins.len()], &acts);
        for (l, o) in lins.iter().zip(outs.iter_mut()) {
            l.add_bias(o);
        }
    }

    /// A copy of this layer with its weights re-stored as `ty` (F32, F16, BF16 or a ggml block type
    /// with a tern-quants quantizer: Q8_0, Q4_0, Q4_K, Q6_K), row by row through f32, on
    /// `threads` threads. Used for quantized LM heads (`--head-quant`); `name` appears in errors.
    pub fn requantize(&self, ty: GgmlType, threads: usize, name: &str) -> crate::Result<Linear> {
        let (rows, cols) = (self.out_features(), self.in_features());
        let bad = |reason: String| ModelError::BadTensor { file: "<requantize>".into(), tensor: name.into(), reason };
        let rb = tern_quants::storage_size(ty, cols)
            .ok_or_else(|| bad(format!("{cols} columns are not a whole number of {ty} blocks")))?;
        let mut data = vec![0u8; rows * rb];
        let threads = threads.clamp(1, rows.max(1));
        let per = rows.div_ceil(threads).max(1);
        let failed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for (i, chunk) in data.chunks_mut((per * rb).max(1)).enumerate() {
                let failed = &failed;
                s.spawn(move || {
                    let mut buf = vec![0f32; cols];
                    for (j, dst) in chunk.chunks_exact_mut(rb.max(1)).enumerate() {
                        self.row_to_f32(i * per + j, &mut buf);
                        let ok = match ty {
                            GgmlType::F32 => {
                                for (d, v) in dst.chunks_exact_mut(4).zip(&buf) {
                                    d.copy_from_slice(&v.to_le_bytes());
                                }
                                true
                            }
                            _ => tern_quants::quantize_into(ty, &buf, dst).is_ok(),
                        };
                        if !ok {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                    }
                });
            }
        });
        if failed.into_inner() {
            return Err(bad(format!("no quantizer for {ty}")));
        }
        let buf = ByteBuf::from_vec(data);
        let weight = match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                let dt = match ty {
                    GgmlType::F32 => DenseDType::F32,
                    GgmlType::F16 => DenseDType::F16,
                    _ => DenseDType::BF16,
                };
                LinearWeight::Dense(DenseMatrix::new(rows, cols, dt, buf).map_err(|e| bad(format!("{e:?}")))?)
            }
            _ => LinearWeight::Quant(QuantMatrix::new(rows, cols, ty, buf).map_err(|e| bad(e.to_string()))?),
        };
        Ok(Linear { weight, bias: self.bias.clone() })
    }

    /// A copy of this layer re-stored as tern's int8 with per-64-block scales, on `threads` threads.
    pub fn to_int8(&self, threads: usize) -> Linear {
        let m = Int8Matrix::quantize_rows(self.out_features(), self.in_features(), threads, &|r, out| {
            self.row_to_f32(r, out)
        });
        Linear { weight: LinearWeight::Int8(m), bias: self.bias.clone() }
    }

    /// A short description of the storage (`t2`, `tq2_0`, `t1`, `bf16`, `Q4_K`, `i8`, …).
    pub fn format_name(&self) -> String {
        match &self.weight {
            LinearWeight::Dense(m) => m.dtype().name().to_string(),
            LinearWeight::Quant(m) => m.ty().to_string(),
            LinearWeight::Int8(_) => "i8".to_string(),
            LinearWeight::Ternary { w, .. } => w.layout().name().to_string(),
        }
    }
}

impl TernaryScale {
    /// The f32 factor of a token quantized with activation scale `s_x`.
    #[inline]
    pub fn factor(self, s_x: f32) -> f32 {
        match self {
            TernaryScale::Multiply(ws) => ws / s_x,
            TernaryScale::Divide(ws) => 1.0 / (s_x * ws),
        }
    }
}

/// Quantizes `tokens = x.len() / k` rows of `k` values into `codes` (`tokens × kp`, zero padded).
fn quantize_tokens(x: &[f32], k: usize, kp: usize, codes: &mut Vec<i8>, scales: &mut Vec<ActScale>) {
    let tokens = x.len() / k.max(1);
    codes.resize(tokens * kp, 0);
    scales.clear();
    for t in 0..tokens {
        scales.push(quantize_i8(&x[t * k..(t + 1) * k], &mut codes[t * kp..(t + 1) * kp]));
    }
}

/// Runs `ternary::matmul_many` on the filled parts (2..=MANY_MAX of them, no allocation).
fn run_parts(pool: &ThreadPool, parts: &mut [Option<TernaryPart<'_>>], acts: &QuantizedActs<'_>) {
    // Move the parts into a contiguous array the kernel takes by slice.
    let mut arr: [Option<TernaryPart<'_>>; ternary::MANY_MAX] = Default::default();
    let n = parts.len();
    for (d, s) in arr.iter_mut().zip(parts.iter_mut()) {
        *d = s.take();
    }
    match n {
        2 => {
            if let [Some(a), Some(b), ..] = arr {
                ternary::matmul_many(pool, &mut [a, b], acts);
            }
        }
        3 => {
            if let [Some(a), Some(b), Some(c), ..] = arr {
                ternary::matmul_many(pool, &mut [a, b, c], acts);
            }
        }
        _ => {
            for p in arr.into_iter().flatten() {
                let mut one = [p];
                ternary::matmul_many(pool, &mut one, acts);
            }
        }
    }
}

/// `--head-quant`: how the LM head (the embedding when tied) is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadQuant {
    /// As the model file stores it.
    Keep,
    F32,
    F16,
    /// ggml Q8_0 (8.5 bits per weight).
    Q8,
    /// tern's int8 with per-64-block f32 scales (8.5 bits per weight; `tern_kernels::int8`).
    I8,
    /// ggml Q6_K (6.56 bits).
    Q6,
    /// ggml Q4_0 (4.5 bits; fast to quantize at load).
    Q4,
    /// ggml Q4_K (4.5 bits; better error than Q4_0, slow to quantize at load).
    Q4K,
}

impl HeadQuant {
    /// Every choice with its command-line name.
    pub const ALL: &'static [(HeadQuant, &'static str)] = &[
        (HeadQuant::Keep, "keep"),
        (HeadQuant::F32, "f32"),
        (HeadQuant::F16, "f16"),
        (HeadQuant::Q8, "q8"),
        (HeadQuant::I8, "i8"),
        (HeadQuant::Q6, "q6"),
        (HeadQuant::Q4, "q4"),
        (HeadQuant::Q4K, "q4k"),
    ];

    /// Parses a command-line name (`keep`, `f32`, `f16`, `q8`, `i8`, `q6`, `q4`, `q4k`).
    pub fn parse(s: &str) -> Option<HeadQuant> {
        HeadQuant::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)).map(|(h, _)| *h)
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        HeadQuant::ALL.iter().find(|(h, _)| *h == self).map_or("?", |(_, n)| n)
    }

    /// The storage type for rows of `cols` values, falling back when `cols` is not a whole number of
    /// 256-blocks: Q6_K → Q8_0 (as llama-quantize), Q4_K → Q4_0 (llama-quantize picks Q5_0, which has
    /// no quantizer here); `None` for [`HeadQuant::Keep`].
    pub fn ggml_for(self, cols: usize) -> Option<GgmlType> {
        let t = self.ggml()?;
        let bs = t.block_size() as usize;
        Some(match t {
            GgmlType::Q6_K if !cols.is_multiple_of(bs) => GgmlType::Q8_0,
            GgmlType::Q4_K if !cols.is_multiple_of(bs) => GgmlType::Q4_0,
            t => t,
        })
    }

    /// tern's default for a head stored as `head` (chosen from measured speed and quality, see
    /// BENCHMARKS.md): a head the file already stores in ggml blocks is kept; a float head becomes
    /// [`HeadQuant::I8`] (KL divergence vs the f32 head 6e-4 – 1.3e-3 and top-1 agreement
    /// 98.6 – 99.2% on SmolLM2-135M and Gemma-3-270M, half the bytes of f16, quick to quantize at
    /// load, and a GEMV kernel 1.5 – 3× faster than today's Q8_0 one; Q8_0 halves the KLD and is the
    /// better choice once its kernel streams as fast; Q4_0 costs 15% top-1).
    pub fn default_for(head: &Linear) -> HeadQuant {
        match &head.weight {
            LinearWeight::Dense(_) => HeadQuant::I8,
            _ => HeadQuant::Keep,
        }
    }

    /// The ggml storage type (`None` for [`HeadQuant::Keep`] and [`HeadQuant::I8`]).
    pub fn ggml(self) -> Option<GgmlType> {
        Some(match self {
            HeadQuant::Keep | HeadQuant::I8 => return None,
            HeadQuant::F32 => GgmlType::F32,
            HeadQuant::F16 => GgmlType::F16,
            HeadQuant::Q8 => GgmlType::Q8_0,
            HeadQuant::Q6 => GgmlType::Q6_K,
            HeadQuant::Q4 => GgmlType::Q4_0,
            HeadQuant::Q4K => GgmlType::Q4_K,
        })
    }
}

/// Re-stores the LM head of `model` as `hq` ([`HeadQuant::ggml_for`]) on `threads` threads. A tied
/// head becomes a separate `lm_head`; the embedding keeps its exact rows (for a memory-mapped file
/// only the looked-up rows stay resident). Returns whether anything changed.
pub fn quantize_head(model: &mut crate::Model, hq: HeadQuant, threads: usize) -> crate::Result<bool> {
    let head = model.lm_head.as_ref().unwrap_or(&model.embed);
    if hq == HeadQuant::I8 {
        if matches!(head.weight, LinearWeight::Int8(_)) {
            return Ok(false);
        }
        model.lm_head = Some(head.to_int8(threads));
        return Ok(true);
    }
    let Some(ty) = hq.ggml_for(head.in_features()) else { return Ok(false) };
    let same = match &head.weight {
        LinearWeight::Dense(m) => m.dtype().name() == ty.to_string().to_ascii_lowercase(),
        LinearWeight::Quant(m) => m.ty() == ty,
        LinearWeight::Int8(_) | LinearWeight::Ternary { .. } => false,
    };
    if same {
        return Ok(false);
    }
    model.lm_head = Some(head.requantize(ty, threads, "LM head")?);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ternary(rows: usize, cols: usize, seed: u64, scale: TernaryScale, bias: bool) -> Linear {
        let vals: Vec<i8> = (0..rows * cols).map(|i| ((i as u64 * 2654435761 + seed * 97) % 3) as i8 - 1).collect();
        let w = TernaryMatrix::from_values(rows, cols, &vals).unwrap();
        let bias = bias.then(|| (0..rows).map(|r| r as f32 * 0.25 - 1.0).collect());
        Linear { weight: LinearWeight::Ternary { w, scale, input_norm: None }, bias }
    }

    #[test]
    fn forward_many_equals_separate_forwards() {
        let pool = ThreadPool::new(2);
        let (k, tokens) = (300usize, 3usize);
        let x: Vec<f32> = (0..tokens * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let q = ternary(40, k, 1, TernaryScale::Multiply(0.5), true);
        let kk = ternary(10, k, 2, TernaryScale::Divide(2.0), false);
        let v = ternary(10, k, 3, TernaryScale::Multiply(1.5), false);
        let dense = Linear {
            weight: LinearWeight::Dense(
                DenseMatrix::from_f32(8, k, &(0..8 * k).map(|i| (i % 7) as f32 * 0.1).collect::<Vec<_>>()).unwrap(),
            ),
            bias: None,
        };
        for lins in [vec![&q, &kk, &v], vec![&q, &kk], vec![&q, &dense, &v]] {
            let mut sc = LinearScratch::default();
            let mut want: Vec<Vec<f32>> = Vec::new();
            for l in &lins {
                let mut o = vec![0f32; tokens * l.out_features()];
                l.forward(&pool, &x, &mut o, &mut sc);
                want.push(o);
            }
            let mut got: Vec<Vec<f32>> = lins.iter().map(|l| vec![f32::NAN; tokens * l.out_features()]).collect();
            let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
            Linear::forward_many(&pool, &lins, &x, &mut outs, &mut sc);
            for (g, w) in got.iter().zip(&want) {
                let (g, w): (Vec<u32>, Vec<u32>) =
                    (g.iter().map(|v| v.to_bits()).collect(), w.iter().map(|v| v.to_bits()).collect());
                assert_eq!(g, w);
            }
        }
    }

    #[test]
    fn head_quant_names_and_fallbacks() {
        for (h, n) in HeadQuant::ALL {
            assert_eq!(HeadQuant::parse(n), Some(*h));
            assert_eq!(h.name(), *n);
        }
        assert_eq!(HeadQuant::parse("q5"), None);
        assert_eq!(HeadQuant::Q6.ggml_for(2560), Some(GgmlType::Q6_K));
        assert_eq!(HeadQuant::Q6.ggml_for(576), Some(GgmlType::Q8_0));
        assert_eq!(HeadQuant::Q4K.ggml_for(640), Some(GgmlType::Q4_0));
        assert_eq!(HeadQuant::Keep.ggml_for(2560), None);
    }

    #[test]
    fn requantize_matches_tern_quants() {
        let (rows, cols) = (5usize, 256usize);
        let vals: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0).collect();
        let d = Linear { weight: LinearWeight::Dense(DenseMatrix::from_f32(rows, cols, &vals).unwrap()), bias: None };
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::Q4_K, GgmlType::F16] {
            let q = d.requantize(ty, 3, "t").unwrap();
            let want = tern_quants::quantize(ty, &vals).unwrap();
            let got = match &q.weight {
                LinearWeight::Quant(m) => (0..rows).flat_map(|r| m.row_bytes(r).to_vec()).collect::<Vec<u8>>(),
                LinearWeight::Dense(m) => {
                    let mut v = vec![0f32; rows * cols];
                    for r in 0..rows {
                        m.row_to_f32(r, &mut v[r * cols..(r + 1) * cols]);
                    }
                    tern_quants::quantize(ty, &v).unwrap()
                }
                _ => unreachable!(),
            };
            assert_eq!(got, want, "{ty}");
        }
        assert!(d.requantize(GgmlType::Q5_1, 1, "t").is_err());
    }
}
