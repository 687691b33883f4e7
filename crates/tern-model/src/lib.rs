//! tern-model: weights bound to roles, one configured decoder forward pass, and the KV cache.
//!
//! Data flow: a format reader (`tern-formats` safetensors, `tern-gguf`) yields named raw tensors →
//! [`config`] turns `config.json` into a [`ModelConfig`] using the architecture table in [`arch`] →
//! [`load`] binds tensors to roles, checks every shape and dtype, and builds packed weights
//! ([`linear::Linear`]: dense f32/f16/bf16 or packed ternary) → [`model::Model::forward`] runs any
//! supported architecture through the same code, configured by flags, never by per-model copies.
#![forbid(unsafe_code)]

pub mod arch;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod linear;
pub mod load;
pub mod load_gguf;
pub mod model;
pub mod plan;
pub mod rope;
pub mod synthetic;

pub use config::ModelConfig;
pub use model::{KvCache, Logits, Model, SeqInput, Workspace};

/// Errors from configuring, loading or running a model. Every variant names the file and the
/// tensor or field involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] tern_formats::FormatError),
    #[error("{path}: model_type '{found}' is not supported (supported: {supported})")]
    UnknownModelType { path: String, found: String, supported: String },
    #[error("{path}: field '{field}': {reason}")]
    Config { path: String, field: String, reason: String },
    #[error("{source_name}: missing tensor '{tensor}' ({role})")]
    MissingTensor { source_name: String, tensor: String, role: String },
    #[error("{file}: unexpected tensor '{tensor}' (not used by a {arch} model with this config.json){hint}")]
    UnexpectedTensor { file: String, tensor: String, arch: String, hint: String },
    #[error("{file}: tensor '{tensor}' has shape {found:?}, expected {expected:?}{why}")]
    Shape { file: String, tensor: String, expected: Vec<usize>, found: Vec<usize>, why: String },
    #[error("{file}: tensor '{tensor}' has dtype {found}, expected {expected}")]
    DType { file: String, tensor: String, expected: String, found: String },
    #[error("{file}: tensor '{tensor}': {reason}")]
    BadTensor { file: String, tensor: String, reason: String },
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("context full: {needed} positions needed but the KV cache holds {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    #[error("KV cache does not fit this executor: made for a different model (layers, KV heads, head size) or living on another device")]
    CacheMismatch,
    #[error("GPU: {0}")]
    Device(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
