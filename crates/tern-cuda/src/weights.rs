//! Weights on the device, uploaded from tern's in-memory formats without changing their layout:
//! [`CudaTernary`] (T2-packed ternary, `tern_kernels::ternary::TernaryMatrix`), [`CudaQuant`] (ggml
//! blocks Q8_0 / Q4_0 / Q4_1 / Q4_K / Q6_K, `tern_kernels::quant::QuantMatrix`) and [`CudaDense`]
//! (f32 / f16 / bf16 row-major, `tern_kernels::dense::DenseMatrix`), and [`CudaLinear`], the one
//! type a forward pass calls, as `tern_model::linear::Linear` is on the CPU.

use tern_kernels::dense::{DenseDType, DenseMatrix};
use tern_kernels::quant::QuantMatrix;
use tern_kernels::ternary::{TernaryLayout, TernaryMatrix};
use tern_quants::GgmlType;

use crate::device::{CudaDevice, DeviceBuf};
use crate::error::{check, CudaError, Result};

/// How a ternary layer turns `Σ w·x` into its output (tern-model's `TernaryScale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleMode {
    /// `y = dot / s_x · scale` (transformers' AutoBitLinear).
    Multiply(f32),
    /// `y = dot / (s_x · scale)` (BitLinear).
    Divide(f32),
    /// `y = dot · f_t` where the activations' per-token scale array holds the factors `f_t`
    /// themselves (the CPU kernel's `factor` argument; used by tests and fused callers).
    Factor,
}

impl ScaleMode {
    pub(crate) fn kernel_args(self) -> (f32, i32) {
        match self {
            ScaleMode::Multiply(s) => (s, 0),
            ScaleMode::Divide(s) => (s, 1),
            ScaleMode::Factor => (1.0, 2),
        }
    }
}

/// A ternary matrix in the T2 layout on the device.
#[derive(Debug)]
pub struct CudaTernary {
    rows: usize,
    cols: usize,
    pub(crate) data: DeviceBuf<u8>,
    pub(crate) scale: ScaleMode,
}

impl CudaTernary {
    /// Uploads `w`: T2 bytes unchanged (they are what the kernels read); matrices in tern's other
    /// layouts (TQ2_0 in place, T1) are repacked to T2 on the host first.
    pub fn upload(dev: &CudaDevice, w: &TernaryMatrix, scale: ScaleMode) -> Result<CudaTernary> {
        fits_i32("ternary upload", w.rows())?;
        fits_i32("ternary upload", tern_kernels::ternary::padded_k(w.cols()))?;
        let data = if w.layout() == TernaryLayout::T2 {
            dev.upload(w.data())?
        } else {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let t2 = w.to_layout(TernaryLayout::T2, threads).map_err(|e| {
                CudaError::Unsupported(format!("repacking {} ternary weights to T2: {e}", w.layout().name()))
            })?;
            dev.upload(t2.data())?
        };
        check("ternary upload", "T2 bytes", w.rows() * tern_kernels::ternary::padded_k(w.cols()) / 4, data.len())?;
        Ok(CudaTernary { rows: w.rows(), cols: w.cols(), data, scale })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// K padded to whole 128-blocks: the length of each token's int8 codes.
    pub fn padded_cols(&self) -> usize {
        tern_kernels::ternary::padded_k(self.cols)
    }
    pub fn scale(&self) -> ScaleMode {
        self.scale
    }
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }
}

/// The ggml block types with a device GEMV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QKind {
    Q8_0,
    Q4_0,
    Q4_1,
    Q4K,
    Q6K,
}

impl QKind {
    pub(crate) fn of(ty: GgmlType) -> Option<QKind> {
        Some(match ty {
            GgmlType::Q8_0 => QKind::Q8_0,
            GgmlType::Q4_0 => QKind::Q4_0,
            GgmlType::Q4_1 => QKind::Q4_1,
            GgmlType::Q4_K => QKind::Q4K,
            GgmlType::Q6_K => QKind::Q6K,
            _ => return None,
        })
    }
    pub(crate) fn block(self) -> usize {
        match self {
            QKind::Q8_0 | QKind::Q4_0 | QKind::Q4_1 => 32,
            QKind::Q4K | QKind::Q6K => 256,
        }
    }
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            QKind::Q8_0 => 34,
            QKind::Q4_0 => 18,
            QKind::Q4_1 => 20,
            QKind::Q4K => 144,
            QKind::Q6K => 210,
        }
    }
    /// Element type id of ops.cu's `dequant_elem`.
    pub(crate) fn elem_type(self) -> i32 {
        match self {
            QKind::Q8_0 => 3,
            QKind::Q4_0 => 4,
            QKind::Q4_1 => 5,
            QKind::Q4K => 6,
            QKind::Q6K => 7,
        }
    }
}

/// A ggml block-quantized matrix on the device (rows of whole blocks, as in GGUF).
#[derive(Debug)]
pub struct CudaQuant {
    rows: usize,
    cols: usize,
    ty: GgmlType,
    pub(crate) kind: QKind,
    pub(crate) data: DeviceBuf<u8>,
}

impl CudaQuant {
    /// Uploads a [`QuantMatrix`] (its rows are copied into one contiguous device buffer).
    pub fn upload(dev: &CudaDevice, m: &QuantMatrix) -> Result<CudaQuant> {
        let mut bytes = Vec::with_capacity(m.byte_len());
        for r in 0..m.rows() {
            bytes.extend_from_slice(m.row_bytes(r));
        }
        Self::from_bytes(dev, m.rows(), m.cols(), m.ty(), &bytes)
    }

    /// Uploads `rows × cols` weights of type `ty` stored as ggml blocks (GGUF tensor data).
    pub fn from_bytes(dev: &CudaDevice, rows: usize, cols: usize, ty: GgmlType, bytes: &[u8]) -> Result<CudaQuant> {
        let kind = QKind::of(ty).ok_or_else(|| {
            CudaError::Unsupported(format!(
                "no CUDA kernel for {ty} weights (supported: Q8_0, Q4_0, Q4_1, Q4_K, Q6_K); dequantize it to a dense matrix"
            ))
        })?;
        if cols == 0 || !cols.is_multiple_of(kind.block()) {
            return Err(CudaError::Unsupported(format!(
                "{ty} matrix with {cols} columns: not a positive whole number of {}-element blocks",
                kind.block()
            )));
        }
        fits_i32("quant upload", rows)?;
        fits_i32("quant upload", cols)?;
        let expected = rows * (cols / kind.block()) * kind.block_bytes();
        check("quant upload", "bytes", expected, bytes.len())?;
        Ok(CudaQuant { rows, cols, ty, kind, data: dev.upload(bytes)? })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }
    pub(crate) fn row_bytes(&self) -> usize {
        self.cols / self.kind.block() * self.kind.block_bytes()
    }
}

/// A dense row-major matrix on the device in its stored dtype.
#[derive(Debug)]
pub struct CudaDense {
    rows: usize,
    cols: usize,
    dtype: DenseDType,
    pub(crate) data: DeviceBuf<u8>,
}

impl CudaDense {
    /// Uploads a [`DenseMatrix`] in its own dtype. Rows are widened to f32 and narrowed back, which
    /// is exact for every f16 / bf16 value.
    pub fn upload(dev: &CudaDevice, m: &DenseMatrix) -> Result<CudaDense> {
        let (rows, cols, dt) = (m.rows(), m.cols(), m.dtype());
        let mut bytes = Vec::with_capacity(rows * cols * dt.size());
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.row_to_f32(r, &mut row);
            match dt {
                DenseDType::F32 => row.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
                DenseDType::F16 => {
                    row.iter().for_each(|v| bytes.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes()))
                }
                DenseDType::BF16 => {
                    row.iter().for_each(|v| bytes.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes()))
                }
            }
        }
        Self::from_bytes(dev, rows, cols, dt, &bytes)
    }

    /// Uploads `rows × cols` little-endian values of `dtype`.
    pub fn from_bytes(
        dev: &CudaDevice,
        rows: usize,
        cols: usize,
        dtype: DenseDType,
        bytes: &[u8],
    ) -> Result<CudaDense> {
        fits_i32("dense upload", rows)?;
        fits_i32("dense upload", cols)?;
        check("dense upload", "bytes", rows * cols * dtype.size(), bytes.len())?;
        Ok(CudaDense { rows, cols, dtype, data: dev.upload(bytes)? })
    }

    /// Uploads f32 values as `dtype` (rounding to nearest even for f16 / bf16).
    pub fn from_f32(
        dev: &CudaDevice,
        rows: usize,
        cols: usize,
        dtype: DenseDType,
        values: &[f32],
    ) -> Result<CudaDense> {
        check("dense upload", "values", rows * cols, values.len())?;
        let bytes: Vec<u8> = match dtype {
            DenseDType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DenseDType::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            DenseDType::BF16 => values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        };
        Self::from_bytes(dev, rows, cols, dtype, &bytes)
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn dtype(&self) -> DenseDType {
        self.dtype
    }
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }
}

pub(crate) fn fits_i32(op: &'static str, v: usize) -> Result<()> {
    if v <= i32::MAX as usize {
        Ok(())
    } else {
        Err(CudaError::Shape { op, what: "dimension (must fit a 32-bit int)", expected: i32::MAX as usize, found: v })
    }
}

/// Weight storage of a [`CudaLinear`].
#[derive(Debug)]
pub enum CudaWeight {
    Ternary(CudaTernary),
    Quant(CudaQuant),
    Dense(CudaDense),
}

/// A linear layer on the device: `y = x · Wᵀ (+ b)`, mirroring `tern_model::linear::Linear`.
#[derive(Debug)]
pub struct CudaLinear {
    pub weight: CudaWeight,
    pub bias: Option<DeviceBuf<f32>>,
    /// Ternary `use_rms_norm`: the input is RMS-normalised with this weight and eps (offset 0)
    /// before quantization, fused into the quantization kernel.
    pub input_norm: Option<(DeviceBuf<f32>, f32)>,
}

impl CudaLinear {
    pub fn out_features(&self) -> usize {
        match &self.weight {
            CudaWeight::Ternary(w) => w.rows(),
            CudaWeight::Quant(w) => w.rows(),
            CudaWeight::Dense(w) => w.rows(),
        }
    }
    pub fn in_features(&self) -> usize {
        match &self.weight {
            CudaWeight::Ternary(w) => w.cols(),
            CudaWeight::Quant(w) => w.cols(),
            CudaWeight::Dense(w) => w.cols(),
        }
    }
    /// Weight bytes read per call (for bandwidth reports).
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            CudaWeight::Ternary(w) => w.byte_len(),
            CudaWeight::Quant(w) => w.byte_len(),
            CudaWeight::Dense(w) => w.byte_len(),
        }
    }
}
