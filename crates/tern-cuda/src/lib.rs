//! tern-cuda: tern's CUDA kernel layer for NVIDIA GPUs (sm_80 and newer, tuned on sm_90).
//!
//! * [`CudaDevice`] opens a GPU through cudarc with dynamic loading: the crate builds without a CUDA
//!   toolkit, and a machine without a driver, NVRTC or cuBLAS gets a [`CudaError::Library`] naming
//!   the missing library, never a panic.
//! * Kernels are CUDA C sources (`src/kernels/*.cu`) embedded in the binary, compiled by NVRTC for
//!   the device's architecture on first use and cached on disk ([`compile::cache_dir`]).
//! * Weights keep tern's in-memory layouts ([`CudaTernary`]: T2-packed ternary; [`CudaQuant`]: ggml
//!   blocks; [`CudaDense`]: f32/f16/bf16), and [`CudaLinear`] / [`CudaDevice::linear`] is the one
//!   entry point a forward pass needs for any weight format.
//! * Ops ([`ops`]): fused RMSNorm + int8 quantization, ternary W2A8 GEMV (bit-exact with the CPU),
//!   ggml Q8_0/Q4_0/Q4_1/Q4_K/Q6_K GEMV, dense GEMV and cuBLAS GEMM, RoPE + KV write,
//!   flash-decoding attention (GQA, sliding window, soft-cap), GLU, residual add, soft-cap,
//!   embedding gather, argmax and sampling.
//!
//! Unlike the rest of tern outside `tern-kernels`, this crate needs `unsafe`: kernel launches and
//! raw driver / NVRTC / cuBLAS calls. Each block carries a `// SAFETY:` note.

pub mod blas;
pub mod compile;
pub mod device;
pub mod error;
pub mod ops;
pub mod weights;

pub use cudarc;
pub use device::{device_count, driver_present, CudaDevice, DeviceBuf, DeviceInfo, Graph};
pub use error::{CudaError, Result};
pub use ops::{
    AttnDims, AttnScratch, BatchTables, DenseScratch, Epilogue, I8Acts, LinearScratch, Norm, Q8Acts, Rope, SeqTable,
    TernaryPart, GEMV_MAX_TOKENS,
};
pub use weights::{CudaDense, CudaLinear, CudaQuant, CudaTernary, CudaWeight, ScaleMode};
