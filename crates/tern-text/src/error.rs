//! The crate-wide error type of tern-text.
//!
//! One flat `thiserror` enum shared by the tokenizer, the streaming detokenizer and the chat-template
//! engine. Every variant names the file / field involved and, where it applies, what was expected versus
//! what was found, so that malformed untrusted input (tokenizer files, GGUF metadata, templates) is reported
//! instead of panicking. New variants are appended at the end.

use std::path::PathBuf;

/// Errors produced by tern-text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (tokenizer.json, tokenizer_config.json, config.json, vocab.json, ...) is malformed.
    #[error("malformed JSON in {path}: {message}")]
    Json {
        /// The file (or a description of the in-memory source).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A tokenizer file or GGUF vocab has invalid content.
    #[error("invalid tokenizer data in {source_name}: {message}")]
    InvalidTokenizer {
        /// The file or metadata source (e.g. `tokenizer.model`, `GGUF vocab`).
        source_name: String,
        /// What is wrong, with expected vs found where it applies.
        message: String,
    },
    /// The tokenizer format or model type is recognised but not supported.
    #[error("unsupported tokenizer in {source_name}: {message}")]
    Unsupported {
        /// The file or metadata source.
        source_name: String,
        /// What is not supported.
        message: String,
    },
    /// No tokenizer file was found at the given location.
    #[error("no tokenizer found at {path}: expected tokenizer.json, tokenizer.model, or vocab.json + merges.txt")]
    NotFound {
        /// The directory or file that was searched.
        path: PathBuf,
    },
    /// Encoding text failed inside the tokenizer pipeline.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// Decoding ids failed (e.g. an id outside the vocabulary).
    #[error("decoding failed: {0}")]
    Decode(String),
    /// A token id is outside the vocabulary.
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
}
