//! The device operations of a forward pass, as methods of [`CudaDevice`]: RMSNorm, fused RMSNorm +
//! int8 quantization, ternary / ggml-block / dense matrix products, RoPE + KV write, attention,
//! GLU activations, residual add, soft-cap, embedding gather, argmax and sampling.
//!
//! Every method validates buffer lengths against the sizes it is given and returns
//! [`CudaError::Shape`] on a mismatch; the kernels themselves are documented in `kernels/*.cu`.
//! Work is queued on the device's stream; results are visible after a download or
//! [`CudaDevice::synchronize`].

use cudarc::driver::LaunchConfig;
use tern_kernels::ops::Activation;
use tern_kernels::quant::act::ActFormat;

use crate::blas::GemmType;
use crate::compile::{self, Module};
use crate::device::{CudaDevice, DeviceBuf, SPLITK_ELEMS, SPLITK_TILES};
use crate::error::{check, check_min, CudaError, Result};
use crate::weights::{fits_i32, CudaDense, CudaLinear, CudaQuant, CudaTernary, CudaWeight, QKind};
use tern_kernels::dense::DenseDType;

/// Most tokens the GEMV kernels take in one launch; larger batches are processed in chunks.
pub const GEMV_MAX_TOKENS: usize = 8;

/// A raw kernel argument: a device address or a scalar.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    P(u64),
    I(i32),
    F(f32),
    L(i64),
    /// A struct passed by value, as its bytes in C layout.
    B(Vec<u8>),
}

impl Arg {
    /// The value in 8-byte slots; a 4-byte parameter reads the low half of its slot (little-endian).
    fn slots(&self) -> Vec<u64> {
        match self {
            Arg::P(p) => vec![*p],
            Arg::I(i) => vec![u64::from(*i as u32)],
            Arg::F(f) => vec![u64::from(f.to_bits())],
            Arg::L(l) => vec![*l as u64],
            Arg::B(b) => b
                .chunks(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w[..c.len()].copy_from_slice(c);
                    u64::from_le_bytes(w)
                })
                .collect(),
        }
    }
}

fn ptr_or_null<T>(b: Option<&DeviceBuf<T>>) -> Arg {
    Arg::P(b.map_or(0, |b| b.device_addr()))
}

fn i32_of(op: &'static str, v: usize) -> Result<i32> {
    fits_i32(op, v)?;
    Ok(v as i32)
}

/// Split-K for small tensor-core GEMMs, on unless `TERN_CUDA_SPLITK=0` (read once).
fn splitk_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("TERN_CUDA_SPLITK").map_or(true, |v| v != "0"))
}

fn grid_1d(n: usize, block: u32) -> u32 {
    n.div_ceil(block as usize).clamp(1, 1 << 20) as u32
}

impl CudaDevice {
    /// Launches kernel `name` of module `m`.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in number, order and type (pointers as
    /// [`Arg::P`], `int` as [`Arg::I`], `float` as [`Arg::F`], `long long` as [`Arg::L`]), and every
    /// address must be valid for what the kernel accesses with the given sizes.
    pub(crate) unsafe fn launch(
        &self,
        m: &'static Module,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        args: &[Arg],
    ) -> Result<()> {
        let f = self.func(m, name)?;
        let mut vals: Vec<Vec<u64>> = args.iter().map(|a| a.slots()).collect();
        let mut ptrs: Vec<*mut std::ffi::c_void> =
            vals.iter_mut().map(|v| v.as_mut_ptr() as *mut std::ffi::c_void).collect();
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: forwarded to the caller; `vals` outlives the launch call (parameters are copied
        // by cuLaunchKernel).
        unsafe { self.launch_raw(&f, cfg, &mut ptrs) }
    }

    /// Block size of the single-pass quantizers (norm.cu, NQ_REG = 32 elements per thread in
    /// registers): about 16 elements per thread, whole warps, 64..=1024 threads.
    fn quant_block(d: usize) -> u32 {
        d.div_ceil(16).next_multiple_of(32).clamp(64, 1024) as u32
    }

    fn norm_block(d: usize) -> u32 {
        if d >= 4096 {
            1024
        } else if d >= 1024 {
            512
        } else if d >= 256 {
            256
        } else {
            128
        }
    }

    // ---- normalisation and quantization ----------------------------------------------------

    /// RMSNorm of each `d`-wide row of `x` into `out` (`rows = x.len() / d`), tern's
    /// `ops::rms_norm`: `out = x · rsqrt(mean(x²) + eps) · (w + offset)`.
    pub fn rms_norm(
        &self,
        x: &DeviceBuf<f32>,
        norm: Norm<'_>,
        d: usize,
        rows: usize,
        out: &mut DeviceBuf<f32>,
    ) -> Result<()> {
        check_min("rms_norm", "input length", rows * d, x.len())?;
        check_min("rms_norm", "output length", rows * d, out.len())?;
        self.rms_norm_raw(x.device_addr(), norm, d, rows, out.device_addr())
    }

    /// In-place RMSNorm (see [`CudaDevice::rms_norm`]).
    pub fn rms_norm_inplace(&self, x: &mut DeviceBuf<f32>, norm: Norm<'_>, d: usize, rows: usize) -> Result<()> {
        check_min("rms_norm", "input length", rows * d, x.len())?;
        let a = x.device_addr();
        self.rms_norm_raw(a, norm, d, rows, a)
    }

    fn rms_norm_raw(&self, x: u64, norm: Norm<'_>, d: usize, rows: usize, out: u64) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        if let Some(w) = norm.weight {
            check("rms_norm", "weight length", d, w.len())?;
        }
        let args = [
            Arg::P(x),
            ptr_or_null(norm.weight),
            Arg::F(norm.eps),
            Arg::F(norm.offset),
            Arg::I(i32_of("rms_norm", d)?),
            Arg::P(out),
        ];
        // SAFETY: matches `rms_norm(const float*, const float*, float, float, int, float*)`; x and out
        // hold rows × d floats, w holds d (checked by the callers and above).
        unsafe {
            self.launch(
                &compile::NORM,
                "rms_norm",
                (i32_of("rms_norm", rows)? as u32, 1, 1),
                Self::norm_block(d),
                &args,
            )
        }
    }

    /// Per-token int8 absmax quantization of `tokens` rows of width `d` (tern's `act::quantize_i8`),
    /// optionally fused with an RMSNorm first (`norm`), into `acts` (codes padded with zeros to
    /// `acts.kp()`). `out_norm` receives the normalised f32 rows when given.
    pub fn quantize_i8(
        &self,
        x: &DeviceBuf<f32>,
        tokens: usize,
        d: usize,
        norm: Option<Norm<'_>>,
        out_norm: Option<&mut DeviceBuf<f32>>,
        acts: &mut I8Acts,
    ) -> Result<()> {
        check_min("quantize_i8", "input length", tokens * d, x.len())?;
        check_min("quantize_i8", "padded width", d, acts.kp)?;
        check_min("quantize_i8", "activation capacity (tokens)", tokens, acts.capacity)?;
        if let Some(o) = &out_norm {
            check_min("quantize_i8", "normalised output length", tokens * d, o.len())?;
        }
        if let Some(w) = norm.and_then(|n| n.weight) {
            check("quantize_i8", "norm weight length", d, w.len())?;
        }
        acts.tokens = tokens;
        if tokens == 0 {
            return Ok(());
        }
        let n = norm.unwrap_or(Norm { weight: None, eps: 0.0, offset: 0.0 });
        let args = [
            Arg::P(x.device_addr()),
            ptr_or_null(n.weight),
            Arg::F(n.eps),
            Arg::F(n.offset),
            Arg::I(i32::from(norm.is_some())),
            Arg::I(i32_of("quantize_i8", d)?),
            Arg::I(i32_of("quantize_i8", acts.kp)?),
            ptr_or_null(out_norm.as_deref()),
            Arg::P(acts.codes.device_addr()),
            Arg::P(acts.scale.device_addr()),
            Arg::P(acts.sum.device_addr()),
        ];
        // SAFETY: matches `rms_norm_quant_i8`; x holds tokens × d, codes tokens × kp (capacity
        // checked), scale/sum one per token, out_norm tokens × d when non-null.
        unsafe { self.launch(&compile::NORM, "rms_norm_quant_i8", (tokens as u32, 1, 1), Self::quant_block(d), &args) }
    }

    /// The GLU product `gate = act(gate) · up` for `tokens` rows of width `d` (written back to
    /// `gate`, as [`CudaDevice::glu`]), then [`CudaDevice::quantize_i8`] of those rows with the
    /// optional RMSNorm, in one launch (a ternary FFN's down-projection input).
    #[allow(clippy::too_many_arguments)]
    pub fn glu_quant_i8(
        &self,
        act: Activation,
        gate: &mut DeviceBuf<f32>,
        up: &DeviceBuf<f32>,
        tokens: usize,
        d: usize,
        norm: Option<Norm<'_>>,
        acts: &mut I8Acts,
    ) -> Result<()> {
        check_min("glu_quant_i8", "gate length", tokens * d, gate.len())?;
        check_min("glu_quant_i8", "up length", tokens * d, up.len())?;
        check_min("glu_quant_i8", "padded width", d, acts.kp)?;
        check_min("glu_quant_i8", "activation capacity (tokens)", tokens, acts.capacity)?;
        if let Some(w) = norm.and_then(|n| n.weight) {
            check("glu_quant_i8", "norm weight length", d, w.len())?;
        }
        acts.tokens = tokens;
        if tokens == 0 {
            return Ok(());
        }
        let n = norm.unwrap_or(Norm { weight: None, eps: 0.0, offset: 0.0 });
        let args = [
            Arg::P(gate.device_addr()),
            Arg::P(up.device_addr()),
            Arg::I(act_code(act)),
            ptr_or_null(n.weight),
            Arg::F(n.eps),
            Arg::F(n.offset),
            Arg::I(i32::from(norm.is_some())),
            Arg::I(i32_of("glu_quant_i8", d)?),
            Arg::I(i32_of("glu_quant_i8", acts.kp)?),
            Arg::P(acts.codes.device_addr()),
            Arg::P(acts.scale.device_addr()),
            Arg::P(acts.sum.device_addr()),
        ];
        // SAFETY: matches `glu_quant_i8(float*, const float*, int, const float*, float, float, int, int,
        // int, i8*, float*, int*)`; gate/up hold tokens × d, codes tokens × kp (capacity checked),
        // scale/sum one per token.
        unsafe { self.launch(&compile::NORM, "glu_quant_i8", (tokens as u32, 1, 1), Self::norm_block(d), &args) }
    }

    /// Quantizes `tokens × cols` activations into the block format `format` (tern's
    /// `quant::act`, bit-identical), as the ggml GEMVs consume them.
    pub fn quantize_q8(
        &self,
        x: &DeviceBuf<f32>,
        tokens: usize,
        cols: usize,
        format: ActFormat,
        acts: &mut Q8Acts,
    ) -> Result<()> {
        check_min("quantize_q8", "input length", tokens * cols, x.len())?;
        if cols == 0 || !cols.is_multiple_of(format.block()) {
            return Err(CudaError::Shape {
                op: "quantize_q8",
                what: "columns (whole blocks)",
                expected: format.block(),
                found: cols,
            });
        }
        acts.format = Some(format);
        acts.tokens = tokens;
        acts.cols = cols;
        let b = acts.ensure(self, tokens, cols)?;
        if tokens == 0 {
            return Ok(());
        }
        let n_blocks = tokens * cols / format.block();
        let (name, last) = match format {
            ActFormat::Q8x32 => ("quant_q8x32", Arg::P(b.sums.device_addr())),
            ActFormat::Q8K => ("quant_q8k", Arg::P(b.bsums.device_addr())),
        };
        let args = [
            Arg::P(x.device_addr()),
            Arg::I(i32_of("quantize_q8", n_blocks)?),
            Arg::P(b.qs.device_addr()),
            Arg::P(b.d.device_addr()),
            last,
        ];
        // SAFETY: matches `quant_q8x32(const float*, int, i8*, float*, int*)` /
        // `quant_q8k(const float*, int, i8*, float*, short*)`; buffers sized by `ensure`.
        unsafe { self.launch(&compile::NORM, name, (grid_1d(n_blocks * 32, 256), 1, 1), 256, &args) }
    }

    // ---- matrix products ---------------------------------------------------------------------

    /// `out[t·rows + r] = (Σ_k w[r,k]·q[t,k]) · factor_t (+ bias[r]) (+ out if accumulate)` for the
    /// `acts.tokens()` quantized tokens, bit-identical to tern's CPU ternary kernels (factor from
    /// the matrix's [`crate::ScaleMode`] and the tokens' scales, as tern-model computes it).
    /// Up to [`GEMV_MAX_TOKENS`] tokens run the dp4a GEMV; more run the int8 tensor-core GEMM
    /// ([`CudaDevice::ternary_gemm`]); both give the same bits.
    pub fn ternary_gemv(
        &self,
        w: &CudaTernary,
        acts: &I8Acts,
        out: &mut DeviceBuf<f32>,
        epi: Epilogue<'_>,
    ) -> Result<()> {
        if acts.tokens > GEMV_MAX_TOKENS {
            return self.ternary_gemm(w, acts, out, epi);
        }
        let r = default_rows_per_warp(w.rows(), acts.tokens);
        self.ternary_gemv_variant(w, acts, out, epi, r)
    }

    /// Several ternary products that share their input (q / k / v, gate / up): one launch per four
    /// matrices with the dp4a GEMV up to [`GEMV_MAX_TOKENS`] tokens, the tensor-core GEMM per
    /// matrix beyond. Results equal separate [`CudaDevice::ternary_gemv`] calls bit for bit.
    pub fn ternary_gemv_many(&self, parts: &mut [TernaryPart<'_>], acts: &I8Acts, accumulate: bool) -> Result<()> {
        let tokens = acts.tokens;
        for p in parts.iter() {
            check("ternary_gemv_many", "activation width (padded K)", p.w.padded_cols(), acts.kp)?;
            check_min("ternary_gemv_many", "output length", tokens * p.w.rows(), p.out.len())?;
            if let Some(b) = p.bias {
                check("ternary_gemv_many", "bias length", p.w.rows(), b.len())?;
            }
        }
        if tokens > GEMV_MAX_TOKENS {
            for p in parts.iter_mut() {
                self.ternary_gemm(p.w, acts, p.out, Epilogue { bias: p.bias, accumulate })?;
            }
            return Ok(());
        }
        let kp = acts.kp;
        let row_chunks = i32_of("ternary_gemv_many", kp / 64)?;
        for group in parts.chunks_mut(4) {
            let total_rows: usize = group.iter().map(|p| p.w.rows()).sum();
            let r = default_rows_per_warp(total_rows, tokens);
            let ri = match r {
                1 => 0,
                2 => 1,
                _ => 2,
            };
            let mut t0 = 0;
            while t0 < tokens {
                let tn = (tokens - t0).min(GEMV_MAX_TOKENS);
                // struct TSegs { TSeg s[4]; int n; } with
                // struct TSeg { const u8* w; float* out; const float* bias; int rows; int mode; float wscale; int warp_end; }
                let mut bytes = Vec::with_capacity(168);
                let mut warp_end = 0usize;
                for i in 0..4 {
                    let (w, out, bias, rows, mode, wscale) = match group.get(i) {
                        Some(p) => {
                            let (ws, mode) = p.w.scale.kernel_args();
                            let rows = p.w.rows();
                            warp_end += rows.div_ceil(r);
                            (
                                p.w.data.device_addr(),
                                p.out.addr_at(t0 * rows),
                                p.bias.map_or(0, |b| b.device_addr()),
                                rows,
                                mode,
                                ws,
                            )
                        }
                        None => (0, 0, 0, 0, 0, 0.0),
                    };
                    bytes.extend_from_slice(&w.to_le_bytes());
                    bytes.extend_from_slice(&out.to_le_bytes());
                    bytes.extend_from_slice(&bias.to_le_bytes());
                    bytes.extend_from_slice(&(rows as i32).to_le_bytes());
                    bytes.extend_from_slice(&mode.to_le_bytes());
                    bytes.extend_from_slice(&wscale.to_le_bytes());
                    bytes.extend_from_slice(&i32_of("ternary_gemv_many", warp_end)?.to_le_bytes());
                }
                bytes.extend_from_slice(&(group.len() as i32).to_le_bytes());
                bytes.extend_from_slice(&0i32.to_le_bytes());
                if warp_end == 0 {
                    break;
                }
                let args = [
                    Arg::B(bytes),
                    Arg::I(row_chunks),
                    Arg::P(acts.codes.addr_at(t0 * kp)),
                    Arg::I(kp as i32),
                    Arg::P(acts.scale.addr_at(t0)),
                    Arg::P(acts.sum.addr_at(t0)),
                    Arg::I(i32::from(accumulate)),
                ];
                // SAFETY: matches `ternary_gemv_multi_t{T}_r{R}(TSegs, int, const i8*, int, const
                // float*, const int*, int)` with TSegs laid out as above (168 bytes, 8-aligned);
                // every segment's buffers were checked against its matrix.
                unsafe {
                    self.launch(
                        &compile::TERNARY,
                        TERNARY_MULTI_NAMES[tn - 1][ri],
                        (grid_1d(warp_end, 4), 1, 1),
                        128,
                        &args,
                    )?
                };
                t0 += tn;
            }
        }
        Ok(())
    }

    /// The ternary product on the int8 tensor cores (`mma.sync` m16n8k32, tiles of 64 rows × 64
    /// tokens) for prefill; same result bits as the GEMV.
    pub fn ternary_gemm(
        &self,
        w: &CudaTernary,
        acts: &I8Acts,
        out: &mut DeviceBuf<f32>,
        epi: Epilogue<'_>,
    ) -> Result<()> {
        let (rows, kp, tokens) = (w.rows(), w.padded_cols(), acts.tokens);
        check("ternary_gemm", "activation width (padded K)", kp, acts.kp)?;
        check_min("ternary_gemm", "output length", tokens * rows, out.len())?;
        if let Some(b) = epi.bias {
            check("ternary_gemm", "bias length", rows, b.len())?;
        }
        if rows == 0 || tokens == 0 {
            return Ok(());
        }
        let (wscale, mode) = w.scale.kernel_args();
        // Split-K when the tiles alone cannot fill the GPU (few tokens): 2 blocks per SM, at least
        // two 128-wide K steps per split.
        let tiles = rows.div_ceil(64) * tokens.div_ceil(64);
        let steps = kp / 128;
        let sms = self.info().sm_count.max(1) as usize;
        let k_split = if splitk_enabled() && tiles < sms && tokens * rows <= SPLITK_ELEMS && tiles <= SPLITK_TILES {
            // About two blocks per SM, at least two K steps per block.
            (2 * sms).div_ceil(tiles).min(steps / 2).max(1)
        } else {
            1
        };
        let (part, counters) = if k_split > 1 { self.splitk_addrs()? } else { (0, 0) };
        let args = [
            Arg::P(w.data.device_addr()),
            Arg::I(rows as i32),
            Arg::I(kp as i32),
            Arg::P(acts.codes.device_addr()),
            Arg::I(i32_of("ternary_gemm", tokens)?),
            Arg::P(acts.scale.device_addr()),
            Arg::P(acts.sum.device_addr()),
            Arg::F(wscale),
            Arg::I(mode),
            ptr_or_null(epi.bias),
            Arg::P(out.device_addr()),
            Arg::I(i32::from(epi.accumulate)),
            Arg::I(k_split as i32),
            Arg::P(part),
            Arg::P(counters),
        ];
        let grid = (rows.div_ceil(64) as u32, tokens.div_ceil(64).min(65535) as u32, k_split as u32);
        if tokens.div_ceil(64) > 65535 {
            return Err(CudaError::Shape {
                op: "ternary_gemm",
                what: "tokens per call",
                expected: 65535 * 64,
                found: tokens,
            });
        }
        // SAFETY: matches `ternary_gemm_imma`; w holds rows × kp/4 bytes (rows ≥ 1), codes
        // tokens × kp, scale/sum one per token, out tokens × rows (checked); with k_split > 1 the
        // split-K scratch holds ≥ tokens × rows partials and ≥ tiles counters, all zero between calls.
        unsafe { self.launch(&compile::IMMA, "ternary_gemm_imma", grid, 128, &args) }
    }

    /// [`CudaDevice::ternary_gemv`] with a chosen number of rows per warp (1, 2 or 4), for tuning.
    #[doc(hidden)]
    pub fn ternary_gemv_variant(
        &self,
        w: &CudaTernary,
        acts: &I8Acts,
        out: &mut DeviceBuf<f32>,
        epi: Epilogue<'_>,
        rows_per_warp: usize,
    ) -> Result<()> {
        let (rows, kp, tokens) = (w.rows(), w.padded_cols(), acts.tokens);
        check("ternary_gemv", "activation width (padded K)", kp, acts.kp)?;
        check_min("ternary_gemv", "output length", tokens * rows, out.len())?;
        if let Some(b) = epi.bias {
            check("ternary_gemv", "bias length", rows, b.len())?;
        }
        let ri = match rows_per_warp {
            1 => 0,
            2 => 1,
            4 => 2,
            other => {
                return Err(CudaError::Unsupported(format!("ternary GEMV with {other} rows per warp (1, 2 or 4)")))
            }
        };
        if rows == 0 {
            return Ok(());
        }
        let (wscale, mode) = w.scale.kernel_args();
        // 16-byte chunks per packed row (kp / 4 bytes).
        let row_chunks = i32_of("ternary_gemv", kp / 64)?;
        let warps = rows.div_ceil(rows_per_warp);
        let mut t0 = 0;
        while t0 < tokens {
            let tn = (tokens - t0).min(GEMV_MAX_TOKENS);
            let args = [
                Arg::P(w.data.device_addr()),
                Arg::I(rows as i32),
                Arg::I(row_chunks),
                Arg::P(acts.codes.addr_at(t0 * kp)),
                Arg::I(kp as i32),
                Arg::P(acts.scale.addr_at(t0)),
                Arg::P(acts.sum.addr_at(t0)),
                Arg::F(wscale),
                Arg::I(mode),
                ptr_or_null(epi.bias),
                Arg::P(out.addr_at(t0 * rows)),
                Arg::I(i32::from(epi.accumulate)),
            ];
            // SAFETY: matches `ternary_gemv_t{T}_r{R}`; w holds rows × kp/4 bytes, codes hold
            // tokens × kp (width checked), scale/sum one per token, out tokens × rows (checked).
            unsafe {
                self.launch(&compile::TERNARY, TERNARY_NAMES[tn - 1][ri], (grid_1d(warps, 4), 1, 1), 128, &args)?
            };
            t0 += tn;
        }
        Ok(())
    }

    /// `out = x · Wᵀ` for ggml-block weights: quantizes `x` (`tokens × cols`) into `scratch` in the
    /// format the weight type needs, then runs the integer GEMV (chunks of 8 tokens).
    pub fn quant_matmul(
        &self,
        w: &CudaQuant,
        x: &DeviceBuf<f32>,
        tokens: usize,
        out: &mut DeviceBuf<f32>,
        scratch: &mut Q8Acts,
        epi: Epilogue<'_>,
    ) -> Result<()> {
        let format = if w.kind.block() == 32 { ActFormat::Q8x32 } else { ActFormat::Q8K };
        self.quantize_q8(x, tokens, w.cols(), format, scratch)?;
        self.quant_gemv(w, scratch, out, epi)
    }

    /// The GEMV of [`CudaDevice::quant_matmul`] on activations already quantized by
    /// [`CudaDevice::quantize_q8`].
    pub fn quant_gemv(&self, w: &CudaQuant, acts: &Q8Acts, out: &mut DeviceBuf<f32>, epi: Epilogue<'_>) -> Result<()> {
        let (rows, cols, tokens) = (w.rows(), w.cols(), acts.tokens);
        let want = if w.kind.block() == 32 { ActFormat::Q8x32 } else { ActFormat::Q8K };
        if acts.format != Some(want) {
            return Err(CudaError::Unsupported(format!(
                "{} weights need {want:?} activations, found {:?}",
                w.ty(),
                acts.format
            )));
        }
        check("quant_gemv", "activation columns", cols, acts.cols)?;
        check_min("quant_gemv", "output length", tokens * rows, out.len())?;
        if let Some(b) = epi.bias {
            check("quant_gemv", "bias length", rows, b.len())?;
        }
        if rows == 0 {
            return Ok(());
        }
        let ki = match w.kind {
            QKind::Q8_0 => 0,
            QKind::Q4_0 => 1,
            QKind::Q4_1 => 2,
            QKind::Q4K => 3,
            QKind::Q6K => 4,
        };
        let nb = cols / w.kind.block();
        let b = acts.bufs()?;
        let mut t0 = 0;
        while t0 < tokens {
            let tn = (tokens - t0).min(GEMV_MAX_TOKENS);
            let fifth = match want {
                ActFormat::Q8x32 => Arg::P(b.sums.addr_at(t0 * nb)),
                ActFormat::Q8K => Arg::P(b.bsums.addr_at(t0 * cols / 16)),
            };
            let args = [
                Arg::P(w.data.device_addr()),
                Arg::I(rows as i32),
                Arg::I(cols as i32),
                Arg::P(b.qs.addr_at(t0 * cols)),
                Arg::P(b.d.addr_at(t0 * nb)),
                fifth,
                ptr_or_null(epi.bias),
                Arg::P(out.addr_at(t0 * rows)),
                Arg::I(i32::from(epi.accumulate)),
            ];
            // SAFETY: matches `quant_gemv_{type}_t{T}`; w holds rows × row_bytes, activations
            // tokens × cols codes with their per-block scales and sums (format and width checked),
            // out tokens × rows (checked).
            unsafe { self.launch(&compile::QUANT, QUANT_NAMES[ki][tn - 1], (grid_1d(rows, 4), 1, 1), 128, &args)? };
            t0 += tn;
        }
        Ok(())
    }

    /// `out = x · Wᵀ` for dense weights: a GEMV kernel (f32 accumulation) up to 8 tokens, cuBLAS
    /// beyond (f16 / bf16 weights then take the activations rounded to the weight's type).
    pub fn dense_matmul(
        &self,
        w: &CudaDense,
        x: &DeviceBuf<f32>,
        tokens: usize,
        out: &mut DeviceBuf<f32>,
        scratch: &mut DenseScratch,
        epi: Epilogue<'_>,
    ) -> Result<()> {
        let (rows, cols) = (w.rows(), w.cols());
        check_min("dense_matmul", "input length", tokens * cols, x.len())?;
        check_min("dense_matmul", "output length", tokens * rows, out.len())?;
        if let Some(b) = epi.bias {
            check("dense_matmul", "bias length", rows, b.len())?;
        }
        if rows == 0 || tokens == 0 {
            return Ok(());
        }
        if tokens <= GEMV_MAX_TOKENS || cols == 0 {
            return self.dense_gemv(w, x.device_addr(), tokens, out.device_addr(), epi);
        }
        let (wt, x_addr, xt) = match w.dtype() {
            DenseDType::F32 => (GemmType::F32, x.device_addr(), GemmType::F32),
            dt => {
                let n = tokens * cols;
                let buf = match &mut scratch.half {
                    Some(b) if b.len() >= n => b,
                    slot => slot.insert(self.alloc::<u16>(n)?),
                };
                let (code, t) = if dt == DenseDType::F16 { (1, GemmType::F16) } else { (2, GemmType::Bf16) };
                let args = [Arg::P(x.device_addr()), Arg::P(buf.device_addr()), Arg::L(n as i64), Arg::I(code)];
                // SAFETY: matches `convert_f32(const float*, u16*, long long, int)`; both hold n elements.
                unsafe { self.launch(&compile::DENSE, "convert_f32", (grid_1d(n, 256).min(65535), 1, 1), 256, &args)? };
                (t, buf.device_addr(), t)
            }
        };
        let beta = if epi.accumulate && epi.bias.is_none() { 1.0 } else { 0.0 };
        if epi.accumulate && epi.bias.is_some() {
            return Err(CudaError::Unsupported("dense_matmul with both bias and accumulate beyond 8 tokens".into()));
        }
        self.gemm_xwt(w.data.device_addr(), wt, x_addr, xt, out.device_addr(), rows, cols, tokens, beta)?;
        if let Some(b) = epi.bias {
            let total = tokens * rows;
            let args = [Arg::P(out.device_addr()), Arg::P(b.device_addr()), Arg::I(rows as i32), Arg::L(total as i64)];
            // SAFETY: matches `add_bias(float*, const float*, int, long long)`; out holds total, bias rows.
            unsafe { self.launch(&compile::DENSE, "add_bias", (grid_1d(total, 256).min(65535), 1, 1), 256, &args)? };
        }
        Ok(())
    }

    fn dense_gemv(&self, w: &CudaDense, x: u64, tokens: usize, out: u64, epi: Epilogue<'_>) -> Result<()> {
        let (rows, cols) = (w.rows(), w.cols());
        let di = match w.dtype() {
            DenseDType::F32 => 0,
            DenseDType::F16 => 1,
            DenseDType::BF16 => 2,
        };
        let vec = usize::from(!cols.is_multiple_of(8));
        let mut t0 = 0;
        while t0 < tokens {
            let tn = (tokens - t0).min(GEMV_MAX_TOKENS);
            let args = [
                Arg::P(w.data.device_addr()),
                Arg::I(rows as i32),
                Arg::I(cols as i32),
                Arg::P(x + (t0 * cols * 4) as u64),
                ptr_or_null(epi.bias),
                Arg::P(out + (t0 * rows * 4) as u64),
                Arg::I(i32::from(epi.accumulate)),
            ];
            // SAFETY: matches `dense_gemv_{dt}_t{T}_{v,s}`; the vector variant only for cols % 8 == 0;
            // buffers checked by the caller.
            unsafe {
                self.launch(&compile::DENSE, DENSE_NAMES[di][tn - 1][vec], (grid_1d(rows, 4), 1, 1), 128, &args)?
            };
            t0 += tn;
        }
        Ok(())
    }

    /// `out = x · Wᵀ (+ b) (+ out if accumulate)` for `tokens` rows of `x`, whatever the weight
    /// format; ternary layers quantize `x` (with their input RMSNorm, if any) into `scratch` first.
    pub fn linear(
        &self,
        l: &CudaLinear,
        x: &DeviceBuf<f32>,
        tokens: usize,
        out: &mut DeviceBuf<f32>,
        scratch: &mut LinearScratch,
        accumulate: bool,
    ) -> Result<()> {
        let epi = Epilogue { bias: l.bias.as_ref(), accumulate };
        match &l.weight {
            CudaWeight::Ternary(w) => {
                let kp = w.padded_cols();
                let acts = match &mut scratch.i8 {
                    Some(a) if a.kp == kp && a.capacity >= tokens => a,
                    slot => slot.insert(I8Acts::new(self, tokens.max(1), kp)?),
                };
                let norm = l.input_norm.as_ref().map(|(w, eps)| Norm { weight: Some(w), eps: *eps, offset: 0.0 });
                self.quantize_i8(x, tokens, w.cols(), norm, None, acts)?;
                self.ternary_gemv(w, acts, out, epi)
            }
            CudaWeight::Quant(w) => self.quant_matmul(w, x, tokens, out, &mut scratch.q8, epi),
            CudaWeight::Dense(w) => self.dense_matmul(w, x, tokens, out, &mut scratch.dense, epi),
        }
    }

    // ---- RoPE, KV cache, attention ----------------------------------------------------------

    /// Rotate-half RoPE of `q` (in place) and `k` for `tokens` tokens at positions `pos0..`, and
    /// the write of the rotated K and of V into the caches (`[kv_head][pos][head_dim]`).
    /// `cos` / `sin` are `[position][half]` tables (`half` ≤ head_dim / 2; partial rotary leaves
    /// the other dims unchanged); `pos0` is a one-element device buffer; `pos_end` is an upper bound
    /// of `pos0 + tokens` that the tables and caches must cover (checked).
    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv(
        &self,
        q: &mut DeviceBuf<f32>,
        k: &DeviceBuf<f32>,
        v: &DeviceBuf<f32>,
        tokens: usize,
        rope: Rope<'_>,
        pos0: &DeviceBuf<i32>,
        pos_end: usize,
        kc: &mut DeviceBuf<f32>,
        vc: &mut DeviceBuf<f32>,
        dims: AttnDims,
    ) -> Result<()> {
        let (nh, nkv, hd) = (dims.n_heads, dims.n_kv_heads, dims.head_dim);
        dims.validate("rope_kv")?;
        check_min("rope_kv", "q length", tokens * nh * hd, q.len())?;
        check_min("rope_kv", "k length", tokens * nkv * hd, k.len())?;
        check_min("rope_kv", "v length", tokens * nkv * hd, v.len())?;
        check_min("rope_kv", "cache capacity", pos_end, dims.capacity)?;
        check_min("rope_kv", "k cache length", nkv * dims.capacity * hd, kc.len())?;
        check_min("rope_kv", "v cache length", nkv * dims.capacity * hd, vc.len())?;
        check_min("rope_kv", "head_dim (2·half)", 2 * rope.half, hd)?;
        check_min("rope_kv", "cos table length", pos_end * rope.half, rope.cos.len())?;
        check_min("rope_kv", "sin table length", pos_end * rope.half, rope.sin.len())?;
        check("rope_kv", "pos0 buffer length", 1, pos0.len())?;
        let total = tokens * (nh + nkv) * (hd - rope.half);
        if total == 0 {
            return Ok(());
        }
        let args = [
            Arg::P(q.device_addr()),
            Arg::P(k.device_addr()),
            Arg::P(v.device_addr()),
            Arg::P(rope.cos.device_addr()),
            Arg::P(rope.sin.device_addr()),
            Arg::P(pos0.device_addr()),
            Arg::P(kc.device_addr()),
            Arg::P(vc.device_addr()),
            Arg::I(i32_of("rope_kv", tokens)?),
            Arg::I(nh as i32),
            Arg::I(nkv as i32),
            Arg::I(hd as i32),
            Arg::I(rope.half as i32),
            Arg::I(i32_of("rope_kv", dims.capacity)?),
        ];
        // SAFETY: matches `rope_kv`; lengths checked above, positions < pos_end ≤ capacity by the
        // caller's contract on pos0.
        unsafe { self.launch(&compile::ATTN, "rope_kv", (grid_1d(total, 256), 1, 1), 256, &args) }
    }

    /// Causal grouped-query attention of `tokens` queries (`q`: tokens × n_heads × head_dim, query
    /// `t` at position `pos0 + t`) over the caches, into `out` (same shape as `q`); flash-decoding
    /// split over key ranges, then a combine pass. `max_keys` is an upper bound of `pos0 + tokens`
    /// that sizes the grid (a CUDA graph captured for a bound stays valid for every `pos0` under it).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        q: &DeviceBuf<f32>,
        kc: &DeviceBuf<f32>,
        vc: &DeviceBuf<f32>,
        tokens: usize,
        pos0: &DeviceBuf<i32>,
        max_keys: usize,
        dims: AttnDims,
        scratch: &mut AttnScratch,
        out: &mut DeviceBuf<f32>,
    ) -> Result<()> {
        let (nh, nkv, hd) = (dims.n_heads, dims.n_kv_heads, dims.head_dim);
        dims.validate("attention")?;
        check_min("attention", "q length", tokens * nh * hd, q.len())?;
        check_min("attention", "output length", tokens * nh * hd, out.len())?;
        check_min("attention", "cache capacity", max_keys, dims.capacity)?;
        check_min("attention", "k cache length", nkv * dims.capacity * hd, kc.len())?;
        check_min("attention", "v cache length", nkv * dims.capacity * hd, vc.len())?;
        check("attention", "pos0 buffer length", 1, pos0.len())?;
        if tokens == 0 {
            return Ok(());
        }
        fits_i32("attention", tokens * nh)?;
        let p = self.attn_plan(tokens, dims, max_keys);
        let (ml, acc) = attn_scratch(self, scratch, p.parts, hd)?;
        let (gi, ei, ns, split_len) = (p.gi, p.ei, p.ns, p.split_len);
        let group = nh / nkv;
        let gb = 1usize << gi;
        let args = [
            Arg::P(q.device_addr()),
            Arg::P(kc.device_addr()),
            Arg::P(vc.device_addr()),
            Arg::P(pos0.device_addr()),
            Arg::P(ml),
            Arg::P(acc),
            Arg::I(nh as i32),
            Arg::I(nkv as i32),
            Arg::I(hd as i32),
            Arg::I(i32_of("attention", dims.capacity)?),
            Arg::F(dims.scale),
            Arg::I(i32_of("attention", dims.window.unwrap_or(0))?),
            Arg::I(i32_of("attention", split_len)?),
            Arg::F(dims.softcap.unwrap_or(0.0)),
        ];
        // SAFETY: matches `attn_split`; partial buffers hold tokens·nh·ns entries, q/caches checked.
        let grid = (ns as u32, (nkv * (group / gb)) as u32, tokens as u32);
        unsafe { self.launch(&compile::ATTN, ATTN_NAMES[gi][ei], grid, 128, &args)? };
        let args = [
            Arg::P(ml),
            Arg::P(acc),
            Arg::P(out.device_addr()),
            Arg::I(nh as i32),
            Arg::I(hd as i32),
            Arg::I(ns as i32),
        ];
        // SAFETY: matches `attn_combine`; same partial buffers, out holds tokens × nh × hd.
        unsafe { self.launch(&compile::ATTN, "attn_combine", (nh as u32, tokens as u32, 1), 128, &args) }
    }

    /// Grid of [`CudaDevice::attention`]: heads per block, head-dim class, number of key splits.
    fn attn_plan(&self, tokens: usize, dims: AttnDims, max_keys: usize) -> AttnPlan {
        let (nh, nkv, hd) = (dims.n_heads, dims.n_kv_heads, dims.head_dim);
        let span = dims.window.map_or(max_keys, |w| w.max(1).min(max_keys)).max(1);
        let group = nh / nkv;
        // Query heads per block: the largest of 8, 4, 2, 1 dividing the group (K/V loaded once for them).
        let (gi, gb) = [(3usize, 8usize), (2, 4), (1, 2), (0, 1)]
            .into_iter()
            .find(|&(_, g)| group.is_multiple_of(g))
            .unwrap_or((0, 1));
        let ei = if hd <= 64 {
            0
        } else if hd <= 128 {
            1
        } else {
            2
        };
        let blocks_per_split = nkv * (group / gb) * tokens;
        let sms = self.info().sm_count.max(1) as usize;
        let want_splits = (2 * sms).div_ceil(blocks_per_split).max(1);
        let split_len = span.div_ceil(want_splits).max(32).next_multiple_of(16);
        let ns = span.div_ceil(split_len);
        AttnPlan { gi, ei, ns, split_len, parts: tokens * nh * ns }
    }

    /// RoPE + KV write of a batch through its [`BatchTables`]: row `t` of `q` / `k` / `v` belongs to
    /// the sequence and position the tables give it, and its K / V go to that sequence's caches of
    /// `layer`. One launch for all sequences.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv_rows(
        &self,
        q: &mut DeviceBuf<f32>,
        k: &DeviceBuf<f32>,
        v: &DeviceBuf<f32>,
        rope: Rope<'_>,
        tab: &BatchTables,
        layer: usize,
        dims: AttnDims,
    ) -> Result<()> {
        let (nh, nkv, hd) = (dims.n_heads, dims.n_kv_heads, dims.head_dim);
        dims.validate("rope_kv_rows")?;
        let (kv, caps, rows) = tab.addrs("rope_kv_rows", layer, nkv, hd)?;
        let tokens = tab.n_rows;
        check_min("rope_kv_rows", "q length", tokens * nh * hd, q.len())?;
        check_min("rope_kv_rows", "k length", tokens * nkv * hd, k.len())?;
        check_min("rope_kv_rows", "v length", tokens * nkv * hd, v.len())?;
        check_min("rope_kv_rows", "head_dim (2·half)", 2 * rope.half, hd)?;
        check_min("rope_kv_rows", "cos table length", tab.max_end * rope.half, rope.cos.len())?;
        check_min("rope_kv_rows", "sin table length", tab.max_end * rope.half, rope.sin.len())?;
        let total = tokens * (nh + nkv) * (hd - rope.half);
        if total == 0 {
            return Ok(());
        }
        let args = [
            Arg::P(q.device_addr()),
            Arg::P(k.device_addr()),
            Arg::P(v.device_addr()),
            Arg::P(rope.cos.device_addr()),
            Arg::P(rope.sin.device_addr()),
            Arg::P(kv),
            Arg::P(caps),
            Arg::P(rows),
            Arg::I(i32_of("rope_kv_rows", tokens)?),
            Arg::I(nh as i32),
            Arg::I(nkv as i32),
            Arg::I(hd as i32),
            Arg::I(rope.half as i32),
        ];
        // SAFETY: matches `rope_kv_rows`; q/k/v lengths and the RoPE tables checked above; the
        // batch tables hold, for every row, a sequence whose caches were checked to hold
        // n_kv_heads × capacity × head_dim floats with the row's position below that capacity.
        unsafe { self.launch(&compile::ATTN, "rope_kv_rows", (grid_1d(total, 256), 1, 1), 256, &args) }
    }

    /// Causal GQA attention of a batch through its [`BatchTables`] (see
    /// [`CudaDevice::rope_kv_rows`]): row `t` attends over its own sequence's cache of `layer` up to
    /// its position. `max_keys` (≥ every row's position + 1) sizes the grid, so a graph captured
    /// for a bound replays for every batch under it. `dims.capacity` is unused (per sequence).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_rows(
        &self,
        q: &DeviceBuf<f32>,
        tab: &BatchTables,
        layer: usize,
        max_keys: usize,
        dims: AttnDims,
        scratch: &mut AttnScratch,
        out: &mut DeviceBuf<f32>,
    ) -> Result<()> {
        let (nh, nkv, hd) = (dims.n_heads, dims.n_kv_heads, dims.head_dim);
        dims.validate("attention_rows")?;
        let (kv, caps, rows) = tab.addrs("attention_rows", layer, nkv, hd)?;
        let tokens = tab.n_rows;
        check_min("attention_rows", "q length", tokens * nh * hd, q.len())?;
        check_min("attention_rows", "output length", tokens * nh * hd, out.len())?;
        check_min("attention_rows", "max_keys (largest position + 1)", tab.max_end, max_keys)?;
        if tokens == 0 {
            return Ok(());
        }
        fits_i32("attention_rows", tokens * nh)?;
        fits_i32("attention_rows", max_keys)?;
        let p = self.attn_plan(tokens, dims, max_keys);
        let (ml, acc) = attn_scratch(self, scratch, p.parts, hd)?;
        let gb = 1usize << p.gi;
        let grid_y = nkv * (nh / nkv / gb);
        let args = [
            Arg::P(q.device_addr()),
            Arg::P(kv),
            Arg::P(caps),
            Arg::P(rows),
            Arg::P(ml),
            Arg::P(acc),
            Arg::I(nh as i32),
            Arg::I(nkv as i32),
            Arg::I(hd as i32),
            Arg::F(dims.scale),
            Arg::I(i32_of("attention_rows", dims.window.unwrap_or(0))?),
            Arg::I(i32_of("attention_rows", p.split_len)?),
            Arg::F(dims.softcap.unwrap_or(0.0)),
        ];
        let grid = (p.ns as u32, grid_y as u32, tokens as u32);
        // SAFETY: matches `attn_rows_g{GB}_e{E}`; partial buffers hold tokens·nh·ns entries, q
        // checked; the tables as in `rope_kv_rows` (positions below each sequence's capacity).
        unsafe { self.launch(&compile::ATTN, ATTN_ROWS_NAMES[p.gi][p.ei], grid, 128, &args)? };
        let args = [
            Arg::P(ml),
            Arg::P(acc),
            Arg::P(out.device_addr()),
            Arg::I(nh as i32),
            Arg::I(hd as i32),
            Arg::I(p.ns as i32),
        ];
        // SAFETY: matches `attn_combine`; same partial buffers, out holds tokens × nh × hd (checked).
        unsafe { self.launch(&compile::ATTN, "attn_combine", (nh as u32, tokens as u32, 1), 128, &args) }
    }

    /// Writes `pos` into a one-element device buffer (the `pos0` of [`CudaDevice::rope_kv`] and
    /// [`CudaDevice::attention`]).
    pub fn set_pos(&self, buf: &mut DeviceBuf<i32>, pos: usize) -> Result<()> {
        let p = i32_of("set_pos", pos)?;
        self.write(&[p], buf)
    }

    // ---- element-wise ------------------------------------------------------------------------

    fn elementwise(&self, name: &'static str, args: &[Arg], n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let grid = grid_1d(n, 256).min(self.info().sm_count.max(1) as u32 * 32);
        // SAFETY: callers pass arguments matching the named grid-stride kernel of ops.cu with
        // buffers of at least n elements.
        unsafe { self.launch(&compile::OPS, name, (grid, 1, 1), 256, args) }
    }

    /// Copies `src` into `dst` with a vectorized grid-stride kernel (a bandwidth probe for
    /// benchmarks; lengths must be multiples of 4).
    #[doc(hidden)]
    pub fn copy_probe(&self, src: &DeviceBuf<f32>, dst: &mut DeviceBuf<f32>) -> Result<()> {
        check_min("copy_probe", "destination length", src.len(), dst.len())?;
        let n = src.len() / 4;
        let grid = (self.info().sm_count.max(1) as u32) * 8;
        let args = [Arg::P(src.device_addr()), Arg::P(dst.device_addr()), Arg::L(n as i64)];
        // SAFETY: matches `copy_probe(const uint4*, uint4*, long long)`; both hold ≥ 4n floats.
        unsafe { self.launch(&compile::OPS, "copy_probe", (grid, 1, 1), 512, &args) }
    }

    /// `gate[i] = act(gate[i]) · up[i]` for the first `n` elements.
    pub fn glu(&self, act: Activation, gate: &mut DeviceBuf<f32>, up: &DeviceBuf<f32>, n: usize) -> Result<()> {
        check_min("glu", "gate length", n, gate.len())?;
        check_min("glu", "up length", n, up.len())?;
        self.elementwise(
            "glu",
            &[Arg::P(gate.device_addr()), Arg::P(up.device_addr()), Arg::L(n as i64), Arg::I(act_code(act))],
            n,
        )
    }

    /// `a[i] += b[i]` for the first `n` elements (the residual add).
    pub fn add(&self, a: &mut DeviceBuf<f32>, b: &DeviceBuf<f32>, n: usize) -> Result<()> {
        check_min("add", "a length", n, a.len())?;
        check_min("add", "b length", n, b.len())?;
        self.elementwise("add_inplace", &[Arg::P(a.device_addr()), Arg::P(b.device_addr()), Arg::L(n as i64)], n)
    }

    /// `x[i] *= s` for the first `n` elements.
    pub fn scale(&self, x: &mut DeviceBuf<f32>, s: f32, n: usize) -> Result<()> {
        check_min("scale", "length", n, x.len())?;
        self.elementwise("scale_inplace", &[Arg::P(x.device_addr()), Arg::F(s), Arg::L(n as i64)], n)
    }

    /// `x[i] = cap · tanh(x[i] / cap)` for the first `n` elements (final logit soft-cap).
    pub fn softcap(&self, x: &mut DeviceBuf<f32>, cap: f32, n: usize) -> Result<()> {
        check_min("softcap", "length", n, x.len())?;
        self.elementwise("softcap", &[Arg::P(x.device_addr()), Arg::F(cap), Arg::L(n as i64)], n)
    }

    /// Embedding lookup: `out[t] = table[ids[t]] · scale` for `tokens` ids (device i32), widened
    /// to f32 from the table's format (dense or ggml blocks). Ids outside the table give zero rows
    /// and set `bad[0] = 1` when `bad` is given.
    pub fn embed(
        &self,
        table: &CudaWeight,
        ids: &DeviceBuf<i32>,
        tokens: usize,
        scale: f32,
        out: &mut DeviceBuf<f32>,
        bad: Option<&mut DeviceBuf<i32>>,
    ) -> Result<()> {
        let (ty, data, rows, cols, row_bytes) = match table {
            CudaWeight::Dense(d) => {
                let ty = match d.dtype() {
                    DenseDType::F32 => 0,
                    DenseDType::F16 => 1,
                    DenseDType::BF16 => 2,
                };
                (ty, &d.data, d.rows(), d.cols(), d.cols() * d.dtype().size())
            }
            CudaWeight::Quant(q) => (q.kind.elem_type(), &q.data, q.rows(), q.cols(), q.row_bytes()),
            CudaWeight::Ternary(_) => {
                return Err(CudaError::Unsupported("embedding lookup from a ternary table".into()))
            }
        };
        check_min("embed", "ids length", tokens, ids.len())?;
        check_min("embed", "output length", tokens * cols, out.len())?;
        if tokens == 0 || cols == 0 {
            return Ok(());
        }
        let args = [
            Arg::P(data.device_addr()),
            Arg::I(ty),
            Arg::L(row_bytes as i64),
            Arg::I(rows as i32),
            Arg::I(cols as i32),
            Arg::P(ids.device_addr()),
            Arg::F(scale),
            Arg::P(out.device_addr()),
            ptr_or_null(bad.as_deref()),
        ];
        // SAFETY: matches `embed_rows`; table rows × row_bytes, ids and out checked; ids are bounds
        // checked in the kernel.
        unsafe {
            self.launch(
                &compile::OPS,
                "embed_rows",
                (grid_1d(cols, 256), i32_of("embed", tokens)? as u32, 1),
                256,
                &args,
            )
        }
    }

    /// `ids[t] = argmax(logits[t])` (first index of the maximum) for `rows` rows of width `n`.
    pub fn argmax(&self, logits: &DeviceBuf<f32>, rows: usize, n: usize, ids: &mut DeviceBuf<u32>) -> Result<()> {
        check_min("argmax", "logits length", rows * n, logits.len())?;
        check_min("argmax", "ids length", rows, ids.len())?;
        if rows == 0 {
            return Ok(());
        }
        let args = [Arg::P(logits.device_addr()), Arg::I(i32_of("argmax", n)?), Arg::P(ids.device_addr())];
        // SAFETY: matches `argmax_rows(const float*, int, u32*)`; lengths checked.
        unsafe { self.launch(&compile::OPS, "argmax_rows", (i32_of("argmax", rows)? as u32, 1, 1), 1024, &args) }
    }

    /// Samples `ids[t]` from `softmax(logits[t] / temperature)` by inverse CDF with the uniform
    /// numbers `u[t]` ∈ [0, 1) (drawn by the caller's seeded RNG).
    pub fn sample(
        &self,
        logits: &DeviceBuf<f32>,
        rows: usize,
        n: usize,
        temperature: f32,
        u: &DeviceBuf<f32>,
        ids: &mut DeviceBuf<u32>,
    ) -> Result<()> {
        check_min("sample", "logits length", rows * n, logits.len())?;
        check_min("sample", "uniforms length", rows, u.len())?;
        check_min("sample", "ids length", rows, ids.len())?;
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(CudaError::Unsupported(format!(
                "sampling temperature {temperature} (must be positive; use argmax for 0)"
            )));
        }
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let args = [
            Arg::P(logits.device_addr()),
            Arg::I(i32_of("sample", n)?),
            Arg::F(temperature),
            Arg::P(u.device_addr()),
            Arg::P(ids.device_addr()),
        ];
        // SAFETY: matches `sample_rows(const float*, int, float, const float*, u32*)`; lengths checked.
        unsafe { self.launch(&compile::OPS, "sample_rows", (i32_of("sample", rows)? as u32, 1, 1), 1024, &args) }
    }
}

/// The `ACT_*` code of common.cuh.
fn act_code(act: Activation) -> i32 {
    match act {
        Activation::Silu => 0,
        Activation::Gelu => 1,
        Activation::GeluTanh => 2,
        Activation::Relu2 => 3,
        Activation::Relu => 4,
    }
}

/// Rows per warp of the ternary GEMV: more rows share activation loads, fewer rows give more warps
/// for small matrices.
fn default_rows_per_warp(rows: usize, tokens: usize) -> usize {
    if rows >= 16384 || (tokens > 2 && rows >= 4096) {
        4
    } else if rows >= 4096 || tokens > 2 {
        2
    } else {
        1
    }
}

/// One matrix of [`CudaDevice::ternary_gemv_many`]: its output (`tokens × rows`) and bias.
#[derive(Debug)]
pub struct TernaryPart<'a> {
    pub w: &'a CudaTernary,
    pub out: &'a mut DeviceBuf<f32>,
    pub bias: Option<&'a DeviceBuf<f32>>,
}

/// RMSNorm parameters: `weight` (None = all ones), `eps`, and `offset` (0, or 1 for Gemma's
/// `1 + w`).
#[derive(Clone, Copy, Debug)]
pub struct Norm<'a> {
    pub weight: Option<&'a DeviceBuf<f32>>,
    pub eps: f32,
    pub offset: f32,
}

/// What a matrix product does with its result: add a bias, and add into `out` instead of
/// overwriting it (the residual add, fused).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a DeviceBuf<f32>>,
    pub accumulate: bool,
}

/// RoPE tables: `cos` / `sin` are `[position][half]` (attention factor included).
#[derive(Clone, Copy, Debug)]
pub struct Rope<'a> {
    pub cos: &'a DeviceBuf<f32>,
    pub sin: &'a DeviceBuf<f32>,
    pub half: usize,
}

/// Geometry of attention (tern_kernels::ops::AttnShape without `pos0`, which lives on the device).
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Positions allocated per KV head in the caches.
    pub capacity: usize,
    pub scale: f32,
    /// Sliding window (keys `p − window + 1 ..= p`), `None` = full causal.
    pub window: Option<usize>,
    /// Attention-logit soft-cap (Gemma 2), `None` = off.
    pub softcap: Option<f32>,
}

/// Largest head dimension the attention kernels take.
pub const MAX_HEAD_DIM: usize = 256;

impl AttnDims {
    fn validate(&self, op: &'static str) -> Result<()> {
        if self.n_kv_heads == 0 || self.n_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(CudaError::Shape {
                op,
                what: "n_heads (a multiple of n_kv_heads)",
                expected: self.n_kv_heads,
                found: self.n_heads,
            });
        }
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM {
            return Err(CudaError::Shape {
                op,
                what: "head_dim (1..=256)",
                expected: MAX_HEAD_DIM,
                found: self.head_dim,
            });
        }
        fits_i32(op, self.n_heads)?;
        fits_i32(op, self.capacity)?;
        Ok(())
    }
}

/// Launch geometry of the split attention kernels.
struct AttnPlan {
    gi: usize,
    ei: usize,
    ns: usize,
    split_len: usize,
    parts: usize,
}

/// The partial buffers of `scratch` grown to `parts` entries; their device addresses.
fn attn_scratch(dev: &CudaDevice, scratch: &mut AttnScratch, parts: usize, hd: usize) -> Result<(u64, u64)> {
    let ml = scratch.ml.take().filter(|b| b.len() >= 2 * parts);
    let ml = scratch.ml.insert(match ml {
        Some(b) => b,
        None => dev.alloc::<f32>(2 * parts)?,
    });
    let acc = scratch.acc.take().filter(|b| b.len() >= parts * hd);
    let acc = scratch.acc.insert(match acc {
        Some(b) => b,
        None => dev.alloc::<f32>(parts * hd)?,
    });
    Ok((ml.device_addr(), acc.device_addr()))
}

/// One sequence of a [`BatchTables`]: its K and V caches (one per layer, `[kv_head][position]
/// [head_dim]` f32 each), their capacity in positions, the position of its first new token and
/// how many new tokens it has in the batch (rows are stacked in sequence order).
#[derive(Clone, Copy, Debug)]
pub struct SeqTable<'a> {
    pub k: &'a [DeviceBuf<f32>],
    pub v: &'a [DeviceBuf<f32>],
    pub capacity: usize,
    pub pos0: usize,
    pub tokens: usize,
}

/// Device tables of a batched call for [`CudaDevice::rope_kv_rows`] and
/// [`CudaDevice::attention_rows`]: one u64 buffer holding, per layer and sequence, the K and V cache
/// addresses; per sequence its capacity; per token row `(sequence << 32) | position`. Written by
/// [`BatchTables::set`] (one upload), which checks every cache against the head geometry and every
/// position against its sequence's capacity. The addresses are those of the caches passed to the
/// last `set`: call it again whenever the batch's caches change, and before a graph that reads the
/// tables replays.
#[derive(Debug, Default)]
pub struct BatchTables {
    buf: Option<DeviceBuf<u64>>,
    host: Vec<u64>,
    n_layers: usize,
    n_seq: usize,
    n_rows: usize,
    n_kv_heads: usize,
    head_dim: usize,
    max_end: usize,
}

impl BatchTables {
    pub fn new() -> BatchTables {
        BatchTables::default()
    }

    /// Fills and uploads the tables for `seqs` with caches of `n_kv_heads × capacity × head_dim`.
    pub fn set(&mut self, dev: &CudaDevice, seqs: &[SeqTable<'_>], n_kv_heads: usize, head_dim: usize) -> Result<()> {
        let n_layers = seqs.first().map_or(0, |s| s.k.len());
        let n_seq = seqs.len();
        let n_rows: usize = seqs.iter().map(|s| s.tokens).sum();
        self.host.clear();
        self.host.resize(n_layers * n_seq * 2, 0);
        let mut max_end = 0;
        for (si, sq) in seqs.iter().enumerate() {
            check("BatchTables::set", "K caches (layers)", n_layers, sq.k.len())?;
            check("BatchTables::set", "V caches (layers)", n_layers, sq.v.len())?;
            check_min("BatchTables::set", "cache capacity", sq.pos0 + sq.tokens, sq.capacity)?;
            fits_i32("BatchTables::set", sq.capacity)?;
            let need = n_kv_heads * sq.capacity * head_dim;
            for l in 0..n_layers {
                check_min("BatchTables::set", "K cache length", need, sq.k[l].len())?;
                check_min("BatchTables::set", "V cache length", need, sq.v[l].len())?;
                self.host[(l * n_seq + si) * 2] = sq.k[l].device_addr();
                self.host[(l * n_seq + si) * 2 + 1] = sq.v[l].device_addr();
            }
            if sq.tokens > 0 {
                max_end = max_end.max(sq.pos0 + sq.tokens);
            }
        }
        self.host.extend(seqs.iter().map(|s| s.capacity as u64));
        for (si, sq) in seqs.iter().enumerate() {
            for p in sq.pos0..sq.pos0 + sq.tokens {
                self.host.push(((si as u64) << 32) | p as u64);
            }
        }
        let n = self.host.len();
        let buf = match self.buf.take().filter(|b| b.len() >= n) {
            Some(b) => b,
            None => dev.alloc::<u64>(n.next_power_of_two().max(64))?,
        };
        let buf = self.buf.insert(buf);
        dev.write(&self.host, buf)?;
        self.n_layers = n_layers;
        self.n_seq = n_seq;
        self.n_rows = n_rows;
        self.n_kv_heads = n_kv_heads;
        self.head_dim = head_dim;
        self.max_end = max_end;
        Ok(())
    }

    /// Token rows of the batch.
    pub fn rows(&self) -> usize {
        self.n_rows
    }

    /// Largest `position + 1` over the rows.
    pub fn max_end(&self) -> usize {
        self.max_end
    }

    /// Addresses of the K/V table of `layer`, the capacities and the rows, after checking the
    /// geometry the tables were validated for.
    fn addrs(&self, op: &'static str, layer: usize, n_kv_heads: usize, head_dim: usize) -> Result<(u64, u64, u64)> {
        let Some(buf) = &self.buf else {
            return Err(CudaError::Unsupported(format!("{op}: batch tables used before BatchTables::set")));
        };
        check(op, "KV heads of the batch tables", self.n_kv_heads, n_kv_heads)?;
        check(op, "head_dim of the batch tables", self.head_dim, head_dim)?;
        if layer >= self.n_layers {
            return Err(CudaError::Shape {
                op,
                what: "layer (of the batch tables)",
                expected: self.n_layers,
                found: layer,
            });
        }
        let base = buf.device_addr();
        let caps = self.n_layers * self.n_seq * 2;
        Ok((base + (layer * self.n_seq * 16) as u64, base + (caps * 8) as u64, base + ((caps + self.n_seq) * 8) as u64))
    }
}

/// Partial-result buffers of [`CudaDevice::attention`], grown on demand and reused.
#[derive(Debug, Default)]
pub struct AttnScratch {
    ml: Option<DeviceBuf<f32>>,
    acc: Option<DeviceBuf<f32>>,
}

/// Per-token int8 activations of a ternary layer: `capacity × kp` codes, one scale and one code
/// sum per token.
#[derive(Debug)]
pub struct I8Acts {
    pub(crate) codes: DeviceBuf<i8>,
    pub(crate) scale: DeviceBuf<f32>,
    pub(crate) sum: DeviceBuf<i32>,
    tokens: usize,
    capacity: usize,
    kp: usize,
}

impl I8Acts {
    /// Room for `capacity` tokens of padded width `kp`.
    pub fn new(dev: &CudaDevice, capacity: usize, kp: usize) -> Result<I8Acts> {
        Ok(I8Acts {
            codes: dev.alloc(capacity * kp)?,
            scale: dev.alloc(capacity)?,
            sum: dev.alloc(capacity)?,
            tokens: 0,
            capacity,
            kp,
        })
    }

    /// Activations quantized elsewhere (e.g. by the CPU): `codes` is `tokens × kp`, `scales` and
    /// `sums` one per token (with [`crate::ScaleMode::Factor`], `scales` holds the output factors).
    pub fn from_host(dev: &CudaDevice, kp: usize, codes: &[i8], scales: &[f32], sums: &[i32]) -> Result<I8Acts> {
        let tokens = scales.len();
        check("I8Acts::from_host", "codes", tokens * kp, codes.len())?;
        check("I8Acts::from_host", "sums", tokens, sums.len())?;
        Ok(I8Acts {
            codes: dev.upload(codes)?,
            scale: dev.upload(scales)?,
            sum: dev.upload(sums)?,
            tokens,
            capacity: tokens,
            kp,
        })
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn kp(&self) -> usize {
        self.kp
    }
    pub fn codes(&self) -> &DeviceBuf<i8> {
        &self.codes
    }
    pub fn scales(&self) -> &DeviceBuf<f32> {
        &self.scale
    }
    pub fn sums(&self) -> &DeviceBuf<i32> {
        &self.sum
    }
}

/// Block-quantized activations of the ggml GEMVs (see `tern_kernels::quant::act`), grown on demand.
#[derive(Debug, Default)]
pub struct Q8Acts {
    bufs: Option<Q8Bufs>,
    pub(crate) format: Option<ActFormat>,
    tokens: usize,
    cols: usize,
}

#[derive(Debug)]
struct Q8Bufs {
    qs: DeviceBuf<i8>,
    d: DeviceBuf<f32>,
    sums: DeviceBuf<i32>,
    bsums: DeviceBuf<i16>,
    elems: usize,
}

impl Q8Acts {
    fn ensure(&mut self, dev: &CudaDevice, tokens: usize, cols: usize) -> Result<&Q8Bufs> {
        let n = tokens * cols;
        let keep = self.bufs.take().filter(|b| b.elems >= n);
        let bufs = match keep {
            Some(b) => b,
            None => Q8Bufs {
                qs: dev.alloc(n)?,
                d: dev.alloc(n / 32 + 1)?,
                sums: dev.alloc(n / 32 + 1)?,
                bsums: dev.alloc(n / 16 + 1)?,
                elems: n,
            },
        };
        Ok(self.bufs.insert(bufs))
    }

    fn bufs(&self) -> Result<&Q8Bufs> {
        self.bufs.as_ref().ok_or_else(|| CudaError::Unsupported("quantized activations used before quantize_q8".into()))
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The int8 codes (`tokens × cols`), once something was quantized.
    pub fn codes(&self) -> Option<&DeviceBuf<i8>> {
        self.bufs.as_ref().map(|b| &b.qs)
    }
    /// The per-block scales, once something was quantized.
    pub fn scales(&self) -> Option<&DeviceBuf<f32>> {
        self.bufs.as_ref().map(|b| &b.d)
    }
}

/// Scratch of [`CudaDevice::dense_matmul`]: the activations rounded to 16 bits for cuBLAS.
#[derive(Debug, Default)]
pub struct DenseScratch {
    half: Option<DeviceBuf<u16>>,
}

/// Scratch of [`CudaDevice::linear`], one per thread of work, grown on demand.
#[derive(Debug, Default)]
pub struct LinearScratch {
    i8: Option<I8Acts>,
    q8: Q8Acts,
    dense: DenseScratch,
}

macro_rules! t8 {
    ($pre:literal, $suf:literal) => {
        [
            concat!($pre, "1", $suf),
            concat!($pre, "2", $suf),
            concat!($pre, "3", $suf),
            concat!($pre, "4", $suf),
            concat!($pre, "5", $suf),
            concat!($pre, "6", $suf),
            concat!($pre, "7", $suf),
            concat!($pre, "8", $suf),
        ]
    };
}

macro_rules! ternary_row {
    ($t:literal) => {
        [
            concat!("ternary_gemv_t", $t, "_r1"),
            concat!("ternary_gemv_t", $t, "_r2"),
            concat!("ternary_gemv_t", $t, "_r4"),
        ]
    };
}

/// `TERNARY_NAMES[tokens − 1][rows-per-warp index]`.
const TERNARY_NAMES: [[&str; 3]; 8] = [
    ternary_row!("1"),
    ternary_row!("2"),
    ternary_row!("3"),
    ternary_row!("4"),
    ternary_row!("5"),
    ternary_row!("6"),
    ternary_row!("7"),
    ternary_row!("8"),
];

macro_rules! ternary_multi_row {
    ($t:literal) => {
        [
            concat!("ternary_gemv_multi_t", $t, "_r1"),
            concat!("ternary_gemv_multi_t", $t, "_r2"),
            concat!("ternary_gemv_multi_t", $t, "_r4"),
        ]
    };
}

/// `TERNARY_MULTI_NAMES[tokens − 1][rows-per-warp index]`.
const TERNARY_MULTI_NAMES: [[&str; 3]; 8] = [
    ternary_multi_row!("1"),
    ternary_multi_row!("2"),
    ternary_multi_row!("3"),
    ternary_multi_row!("4"),
    ternary_multi_row!("5"),
    ternary_multi_row!("6"),
    ternary_multi_row!("7"),
    ternary_multi_row!("8"),
];

/// `QUANT_NAMES[type][tokens − 1]`, types Q8_0, Q4_0, Q4_1, Q4_K, Q6_K.
const QUANT_NAMES: [[&str; 8]; 5] = [
    t8!("quant_gemv_q8_0_t", ""),
    t8!("quant_gemv_q4_0_t", ""),
    t8!("quant_gemv_q4_1_t", ""),
    t8!("quant_gemv_q4_k_t", ""),
    t8!("quant_gemv_q6_k_t", ""),
];

macro_rules! dense_pair {
    ($dt:literal, $t:literal) => {
        [concat!("dense_gemv_", $dt, "_t", $t, "_v"), concat!("dense_gemv_", $dt, "_t", $t, "_s")]
    };
}
macro_rules! dense_dt {
    ($dt:literal) => {
        [
            dense_pair!($dt, "1"),
            dense_pair!($dt, "2"),
            dense_pair!($dt, "3"),
            dense_pair!($dt, "4"),
            dense_pair!($dt, "5"),
            dense_pair!($dt, "6"),
            dense_pair!($dt, "7"),
            dense_pair!($dt, "8"),
        ]
    };
}

/// `ATTN_NAMES[log2(heads per block)][head_dim class: ≤ 64, ≤ 128, ≤ 256]`.
const ATTN_NAMES: [[&str; 3]; 4] = [
    ["attn_split_g1_e2", "attn_split_g1_e4", "attn_split_g1_e8"],
    ["attn_split_g2_e2", "attn_split_g2_e4", "attn_split_g2_e8"],
    ["attn_split_g4_e2", "attn_split_g4_e4", "attn_split_g4_e8"],
    ["attn_split_g8_e2", "attn_split_g8_e4", "attn_split_g8_e8"],
];

/// `ATTN_ROWS_NAMES[log2(heads per block)][head_dim class]` (batch-table variants).
const ATTN_ROWS_NAMES: [[&str; 3]; 4] = [
    ["attn_rows_g1_e2", "attn_rows_g1_e4", "attn_rows_g1_e8"],
    ["attn_rows_g2_e2", "attn_rows_g2_e4", "attn_rows_g2_e8"],
    ["attn_rows_g4_e2", "attn_rows_g4_e4", "attn_rows_g4_e8"],
    ["attn_rows_g8_e2", "attn_rows_g8_e4", "attn_rows_g8_e8"],
];

/// `DENSE_NAMES[dtype][tokens − 1][0 = vector, 1 = scalar]`, dtypes f32, f16, bf16.
const DENSE_NAMES: [[[&str; 2]; 8]; 3] = [dense_dt!("f32"), dense_dt!("f16"), dense_dt!("bf16")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_exist_in_sources() {
        let all = compile::ALL.iter().map(|m| m.src).collect::<Vec<_>>().join("\n");
        // Instantiations are macro-generated in the .cu files; check the macro prefixes and that
        // the Rust tables are well-formed.
        assert_eq!(TERNARY_NAMES[7][2], "ternary_gemv_t8_r4");
        assert_eq!(QUANT_NAMES[4][0], "quant_gemv_q6_k_t1");
        assert_eq!(DENSE_NAMES[2][7][1], "dense_gemv_bf16_t8_s");
        for name in [
            "rms_norm_quant_i8",
            "quant_q8x32",
            "quant_q8k",
            "rope_kv",
            "attn_split",
            "attn_combine",
            "argmax_rows",
            "sample_rows",
            "embed_rows",
            "convert_f32",
            "add_bias",
        ] {
            assert!(all.contains(name), "{name}");
        }
        assert!(
            all.contains("ternary_gemv_t##T##_r##R")
                && all.contains("quant_gemv_##NAME##_t##T")
                && all.contains("dense_gemv_##NAME##_t##T##_v")
        );
    }

    #[test]
    fn args_fill_low_bytes() {
        assert_eq!(Arg::I(-1).slots(), [0xffff_ffff]);
        assert_eq!(Arg::F(1.0).slots(), [0x3f80_0000]);
        assert_eq!(Arg::L(-1).slots(), [u64::MAX]);
        assert_eq!(Arg::B(vec![1, 0, 0, 0, 0, 0, 0, 0, 2]).slots(), [1, 2]);
    }
}
