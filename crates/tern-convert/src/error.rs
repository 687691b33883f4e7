//! The one error type of `tern-convert`.
//!
//! Every variant names what it is about — the source file or directory, the tensor (by its source
//! name and, once mapped, its GGUF name) or the tokenizer file and field — and says what was expected
//! versus what was found, so a message alone is enough to locate the problem.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;

/// Errors from planning or writing a conversion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// An operating-system error on a file we read or write.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The output exists and `--force` was not given.
    #[error("{path} already exists (pass --force to overwrite it)")]
    OutputExists { path: PathBuf },

    /// The output would overwrite the source.
    #[error("{path}: the output file is the source file; write the conversion to another path")]
    OutputIsSource { path: PathBuf },

    /// The source is neither a model directory nor a GGUF file.
    #[error("{path}: {reason}")]
    BadSource { path: PathBuf, reason: String },

    /// `--type` names no supported target.
    #[error("unknown target type {found:?} (expected one of {expected})")]
    UnknownType { found: String, expected: String },

    /// The model uses something a GGUF file cannot express for llama.cpp and tern (or that this
    /// converter does not write).
    #[error("{source_name}: {what}")]
    Unsupported { source_name: String, what: String },

    /// A tensor that cannot be converted as asked.
    #[error("{source_name}: tensor '{tensor}': {reason}")]
    Tensor { source_name: String, tensor: String, reason: String },

    /// Tokenizer files that cannot be turned into GGUF vocabulary metadata.
    #[error("{path}: {reason}")]
    Tokenizer { path: String, reason: String },

    /// From reading config.json / binding the checkpoint.
    #[error(transparent)]
    Model(#[from] tern_model::ModelError),

    /// From reading safetensors / JSON files.
    #[error(transparent)]
    Format(#[from] tern_formats::FormatError),

    /// From reading the source GGUF or assembling the output header.
    #[error(transparent)]
    Gguf(#[from] tern_gguf::GgufError),
}

impl ConvertError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        ConvertError::Io { path: path.into(), op, source }
    }

    pub(crate) fn tensor(source_name: &str, tensor: &str, reason: impl Into<String>) -> Self {
        ConvertError::Tensor { source_name: source_name.to_string(), tensor: tensor.to_string(), reason: reason.into() }
    }

    pub(crate) fn unsupported(source_name: &str, what: impl Into<String>) -> Self {
        ConvertError::Unsupported { source_name: source_name.to_string(), what: what.into() }
    }

    pub(crate) fn tokenizer(path: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        ConvertError::Tokenizer { path: path.to_string(), reason: reason.into() }
    }
}
