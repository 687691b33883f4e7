//! tern-formats: readers for model files. They know nothing of kernels or architectures.
//!
//! * [`safetensors`]: one `model.safetensors` or a sharded set (`model.safetensors.index.json`),
//!   memory-mapped and validated (overlaps, truncation, dtypes), giving typed views of raw bytes.
//! * [`json`]: small helpers to read `config.json`-style files with errors that name the file and field.
//!
//! GGUF lives in its own crate, `tern-gguf`.
#![deny(unsafe_code)] // one audited exception: memory-mapping a file (`safetensors::map_file`)

pub mod json;
pub mod safetensors;

pub use safetensors::{DType, SafetensorsSet, TensorEntry};

/// Errors from reading model files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: String, reason: String },
    #[error("{path}: tensor '{tensor}' has dtype {dtype}, which tern does not support{hint}")]
    UnsupportedDType { path: String, tensor: String, dtype: String, hint: &'static str },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("{path}: field '{field}': {reason}")]
    Field { path: String, field: String, reason: String },
    #[error("{path}: tensor '{tensor}' is listed for {expected_file} in the index but that file does not contain it")]
    MissingFromShard { path: String, tensor: String, expected_file: String },
    #[error("tensor '{tensor}' appears in both {first} and {second}")]
    DuplicateTensor { tensor: String, first: String, second: String },
    #[error("{path}: no model weights found (looked for model.safetensors and model.safetensors.index.json)")]
    NoWeights { path: String },
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;
