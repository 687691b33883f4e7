//! tern-gguf
