//! tern-quants: ggml's block quantization formats as data layouts, shared by the GGUF reader/writer
//! (`tern-gguf`) and the compute kernels (`tern-kernels`) so that neither depends on the other.
//!
//! * [`types`]: the ggml type table ([`GgmlType`]: ids — upstream and bitnet.cpp's — names, block and
//!   byte sizes).
//! * [`quant`]: scalar reference dequantizers and quantizers ported from ggml
//!   (`ggml/src/ggml-quants.c`), tested bit-exact against gguf-py and ggml in `tern-gguf`'s tests.
#![forbid(unsafe_code)]

pub mod quant;
pub mod types;

pub use quant::{dequantize, dequantize_into, quantize, quantize_into, storage_size};
pub use types::{resolve_type_id, GgmlType, TypeIdDialect, TypeIdResolution};

/// Errors from (de)quantizing buffers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The type has no (de)quantizer here.
    #[error("{op} is not supported for tensor type {ty}")]
    UnsupportedType { ty: GgmlType, op: &'static str },
    /// Buffer lengths that do not match a type's block layout.
    #[error("{ty} {op}: {what}: expected {expected}, found {found}")]
    Layout { ty: GgmlType, op: &'static str, what: &'static str, expected: u64, found: u64 },
}

pub type Result<T, E = QuantError> = std::result::Result<T, E>;
