//! tern-text: everything between bytes of text and token ids.
//!
//! * [`tokenizer`]: one `Tokenizer` type loaded from `tokenizer.json`, SentencePiece `tokenizer.model`,
//!   GPT-2 `vocab.json` + `merges.txt`, tiktoken `tokenizer.model`, or GGUF vocab metadata.
//! * [`stream`]: streaming, UTF-8-safe detokenization.
//! * [`template`]: Jinja chat templates rendered the way transformers renders them.
#![forbid(unsafe_code)]

pub mod chat;
pub mod error;
pub mod source;
pub mod stream;
pub mod template;
pub mod tokenizer;

pub use error::TextError;
pub use stream::StreamDecoder;
pub use tokenizer::{GgufVocab, Tokenizer, TokenizerFormat};
