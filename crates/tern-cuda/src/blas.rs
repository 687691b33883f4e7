//! cuBLAS GEMMs for dense weights in prefill (more than 8 tokens): `y = x · Wᵀ` with `W` row-major
//! `rows × cols` (as `nn.Linear.weight`), `x` row-major `tokens × cols`, `y` row-major
//! `tokens × rows`, f32 accumulation and f32 output (`cublasGemmEx`, `CUBLAS_COMPUTE_32F`, so no
//! TF32 for f32 weights). cuBLAS is loaded on first use: a missing `libcublas.so` is an error from
//! that call, not from [`crate::CudaDevice::new`].
//!
//! Column-major view: `yᵀ (rows × tokens, ldc = rows) = op(W) · xᵀ` with `op = T` on `W` stored as
//! a `cols × rows` column-major matrix (lda = cols) and `xᵀ` a `cols × tokens` one (ldb = cols).

use cudarc::cublas::sys as cb;
use cudarc::cublas::CudaBlas;

use crate::device::CudaDevice;
use crate::error::{CudaError, Result};

const LIB: &str = "cuBLAS (libcublas.so)";

/// The device's cuBLAS handle.
pub(crate) struct Blas {
    handle: CudaBlas,
}

/// Element types of GEMM operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GemmType {
    F32,
    F16,
    Bf16,
}

impl GemmType {
    fn cuda(self) -> cb::cudaDataType {
        match self {
            GemmType::F32 => cb::cudaDataType::CUDA_R_32F,
            GemmType::F16 => cb::cudaDataType::CUDA_R_16F,
            GemmType::Bf16 => cb::cudaDataType::CUDA_R_16BF,
        }
    }
}

impl CudaDevice {
    fn with_blas<R>(&self, f: impl FnOnce(&Blas) -> Result<R>) -> Result<R> {
        let mut guard = self.blas_slot().lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            // SAFETY: only tries to dlopen the candidate library names.
            if !unsafe { cb::is_culib_present() } {
                return Err(CudaError::Library {
                    library: LIB,
                    detail: "cuBLAS was not found; install the CUDA toolkit's cuBLAS and add its lib directory to \
                             LD_LIBRARY_PATH"
                        .into(),
                });
            }
            let stream = self.stream().clone();
            let handle = crate::compile::guard(LIB, || CudaBlas::new(stream))?
                .map_err(|e| CudaError::blas("cublasCreate", e))?;
            *guard = Some(Blas { handle });
        }
        match guard.as_ref() {
            Some(b) => f(b),
            None => Err(CudaError::blas("handle", "not initialised")),
        }
    }

    /// `out (tokens × rows) = beta · out + x (tokens × cols) · Wᵀ` on raw device addresses.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_xwt(
        &self,
        w: u64,
        wt: GemmType,
        x: u64,
        xt: GemmType,
        out: u64,
        rows: usize,
        cols: usize,
        tokens: usize,
        beta: f32,
    ) -> Result<()> {
        let to_i32 = |v: usize, what: &'static str| {
            i32::try_from(v).map_err(|_| CudaError::Shape { op: "gemm", what, expected: i32::MAX as usize, found: v })
        };
        let (m, n, k) = (to_i32(rows, "rows")?, to_i32(tokens, "tokens")?, to_i32(cols, "cols")?);
        let alpha = 1.0f32;
        self.with_blas(|b| {
            crate::compile::guard(LIB, || {
                // SAFETY: the caller passes addresses of buffers holding rows×cols weights,
                // tokens×cols activations and tokens×rows outputs of the stated types; alpha/beta
                // are host f32 scalars matching CUBLAS_COMPUTE_32F.
                unsafe {
                    cudarc::cublas::result::gemm_ex(
                        *b.handle.handle(),
                        cb::cublasOperation_t::CUBLAS_OP_T,
                        cb::cublasOperation_t::CUBLAS_OP_N,
                        m,
                        n,
                        k,
                        &alpha as *const f32 as *const _,
                        w as *const _,
                        wt.cuda(),
                        k,
                        x as *const _,
                        xt.cuda(),
                        k,
                        &beta as *const f32 as *const _,
                        out as *mut _,
                        cb::cudaDataType::CUDA_R_32F,
                        m,
                        cb::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        cb::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                    )
                }
            })?
            .map_err(|e| CudaError::blas("cublasGemmEx", format!("{e:?}")))
        })
    }
}
