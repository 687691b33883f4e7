//! GPT-2 style `vocab.json` + `merges.txt` (also OpenAI's original names `encoder.json` + `vocab.bpe`).
//!
//! Built like `transformers`' `GPT2Converter`: a byte-level BPE with the GPT-2 split regex (the
//! `ByteLevel` pre-tokenizer with `use_regex`), the `ByteLevel` decoder, and `<|endoftext|>` as a special
//! token when the vocabulary has it. With `tokenizer_class: Qwen2Tokenizer` in the accompanying
//! `tokenizer_config.json` the pipeline of `Qwen2Converter` is used instead (NFC, the Qwen2 split regex).

use std::collections::HashMap;

use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, Tokenizer as HfTokenizer};

use super::build::{add_fixed_tokens, bare_tokenizer, bpe_model, set_bytelevel_pipeline, FixedToken};
use crate::error::TextError;

/// The Qwen2 split regex (`Qwen2Converter` / `tokenization_qwen2.PRETOKENIZE_REGEX`).
pub(crate) const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The flavour of the byte-level pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Gpt2,
    Qwen2,
}

/// Parses `merges.txt`: an optional `#version` header, then one `left right` pair per line.
pub(crate) fn parse_merges(text: &str, source: &str) -> Result<Vec<(String, String)>, TextError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || (i == 0 && line.starts_with("#version")) {
            continue;
        }
        let (l, r) = line.split_once(' ').ok_or_else(|| TextError::InvalidTokenizer {
            source_name: source.to_string(),
            message: format!("line {}: expected `left right`, found {line:?}", i + 1),
        })?;
        if l.is_empty() || r.is_empty() || r.contains(' ') {
            return Err(TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!("line {}: expected exactly two tokens, found {line:?}", i + 1),
            });
        }
        out.push((l.to_string(), r.to_string()));
    }
    Ok(out)
}

/// Parses `vocab.json` (`{"token": id, ...}`).
pub(crate) fn parse_vocab(text: &str, source: &str) -> Result<ahash::AHashMap<String, u32>, TextError> {
    let map: HashMap<String, u64> = serde_json::from_str(text).map_err(|e| TextError::Json {
        path: source.to_string(),
        message: format!("expected an object of token -> id: {e}"),
    })?;
    let mut seen: HashMap<u64, &str> = HashMap::new();
    for (k, &v) in &map {
        if v > u64::from(u32::MAX) {
            return Err(TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!("token {k:?} has id {v}, larger than u32"),
            });
        }
        if let Some(prev) = seen.insert(v, k) {
            return Err(TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!("id {v} is used by both {prev:?} and {k:?}"),
            });
        }
    }
    Ok(map.into_iter().map(|(k, v)| (k, v as u32)).collect())
}

/// Builds the tokenizer from parsed files.
pub(crate) fn build(
    vocab: ahash::AHashMap<String, u32>,
    merges: Vec<(String, String)>,
    flavour: Flavour,
    source: &str,
) -> Result<HfTokenizer, TextError> {
    let eot = vocab.get("<|endoftext|>").copied();
    let mut tok = bare_tokenizer(bpe_model(source, vocab, merges, None, false, false)?);
    match flavour {
        Flavour::Gpt2 => {
            tok.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true))));
            tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        }
        Flavour::Qwen2 => {
            tok.with_normalizer(Some(NormalizerWrapper::NFC(NFC)));
            set_bytelevel_pipeline(&mut tok, source, &[QWEN2_PATTERN])?;
        }
    }
    if let Some(id) = eot {
        add_fixed_tokens(&mut tok, source, &mut [FixedToken::new(id, "<|endoftext|>", true)])?;
    }
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_parse_and_reject() {
        let m = parse_merges("#version: 0.2\nĠ t\nh e\n", "m").unwrap();
        assert_eq!(m, vec![("Ġ".into(), "t".into()), ("h".into(), "e".into())]);
        assert!(parse_merges("abc\n", "m").is_err());
        assert!(parse_merges("a b c\n", "m").is_err());
        assert!(parse_vocab("{\"a\": 1, \"b\": 1}", "v").is_err());
        assert!(parse_vocab("[1,2]", "v").is_err());
    }
}
