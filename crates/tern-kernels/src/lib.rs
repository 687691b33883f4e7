//! tern-kernels: pure compute. No files, no model names, no formats.
//!
//! * [`pool`]: a persistent, low-latency thread pool used by every parallel kernel.
//! * [`act`]: per-token int8 activation quantization (BitNet b1.58 absmax, as transformers computes it).
//! * [`ternary`]: ternary weights packed 2 bits per weight in a SIMD-friendly block layout and the
//!   ternary × int8 matrix product that consumes them packed.
//! * [`dense`]: f32 / f16 / bf16 row-major weights and their matrix product with f32 activations.
//! * [`ops`]: element-wise and normalisation ops (RMSNorm, activations, RoPE, softmax, attention).
//! * [`int8`]: int8 matrices with per-64-block scales (tern's quantized LM heads) and their product.
//! * [`isa`]: run-time CPU feature detection and the `TERN_ISA` override.
//! * [`membw`]: the memory-read bandwidth probe decode speed is compared against.
//! * [`simd`]: the AVX2 / AVX-512 kernels behind [`ternary::matmul`] and [`dense::matmul`], dispatched
//!   on [`isa::active`].
//!
//! `unsafe` lives only in this crate, each block with a `// SAFETY:` comment.

pub mod act;
pub mod buf;
pub mod dense;
pub mod int8;
pub mod isa;
pub mod membw;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod simd;
pub mod ternary;

pub use pool::ThreadPool;
