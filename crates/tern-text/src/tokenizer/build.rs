//! Shared pieces for building a `tokenizers::Tokenizer` in memory from the non-JSON formats.
//!
//! * the GPT-2 byte-to-unicode table (`bytes_to_unicode` in OpenAI's `encoder.py`, also used by the
//!   `ByteLevel` pre-tokenizer of HF `tokenizers` and by llama.cpp's `unicode_byte_to_utf8`);
//! * constructors for BPE / Unigram models, byte-level and SentencePiece-style pipelines, mirroring the
//!   objects that `transformers/convert_slow_tokenizer.py` (GPT2Converter, LlamaConverter,
//!   TikTokenConverter) assembles;
//! * adding added/special tokens at fixed ids, checking that every token lands on the id the source says.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer as HfTokenizer,
};

use crate::error::TextError;

/// The SentencePiece whitespace marker `▁` (U+2581).
pub(crate) const SPIECE_UNDERLINE: &str = "\u{2581}";

/// GPT-2's reversible byte → printable-char table.
pub(crate) fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0u32..256 {
        let printable = (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        // Every value is below 0x200, hence a valid scalar value.
        table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    table
}

/// Maps raw bytes to their byte-level string (each byte becomes one char of [`bytes_to_unicode`]).
pub(crate) fn bytes_to_bytelevel(table: &[char; 256], bytes: &[u8]) -> String {
    bytes.iter().map(|&b| table[b as usize]).collect()
}

/// Builds a BPE model.
pub(crate) fn bpe_model(
    source: &str,
    vocab: ahash::AHashMap<String, u32>,
    merges: Vec<(String, String)>,
    unk: Option<String>,
    byte_fallback: bool,
    ignore_merges: bool,
) -> Result<BPE, TextError> {
    let mut builder =
        BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(byte_fallback).ignore_merges(ignore_merges);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk).fuse_unk(true);
    }
    builder.build().map_err(|e| TextError::InvalidTokenizer {
        source_name: source.to_string(),
        message: format!("cannot build BPE model: {e}"),
    })
}

/// Builds a Unigram model.
pub(crate) fn unigram_model(
    source: &str,
    vocab: Vec<(String, f64)>,
    unk_id: Option<usize>,
    byte_fallback: bool,
) -> Result<Unigram, TextError> {
    Unigram::from(vocab, unk_id, byte_fallback).map_err(|e| TextError::InvalidTokenizer {
        source_name: source.to_string(),
        message: format!("cannot build Unigram model: {e}"),
    })
}

/// A `Split` pre-tokenizer on a regex with the `Isolated` behaviour (matches and gaps become pieces).
pub(crate) fn split_isolated(source: &str, regex: &str) -> Result<PreTokenizerWrapper, TextError> {
    let split =
        Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(|e| {
            TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!("cannot compile pre-tokenizer regex {regex:?}: {e}"),
            }
        })?;
    Ok(PreTokenizerWrapper::Split(split))
}

/// Byte-level pipeline: `Split(regex)*` then `ByteLevel` (no regex, no prefix space); ByteLevel decoder.
pub(crate) fn set_bytelevel_pipeline(tok: &mut HfTokenizer, source: &str, regexes: &[&str]) -> Result<(), TextError> {
    let mut pre = Vec::with_capacity(regexes.len() + 1);
    for r in regexes {
        pre.push(split_isolated(source, r)?);
    }
    pre.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)));
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(pre))));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    Ok(())
}

/// Options of a SentencePiece-style (`▁`-escaped) pipeline.
pub(crate) struct SpmPipeline<'a> {
    /// NFKC-like charsmap compiled by SentencePiece (empty: identity).
    pub precompiled_charsmap: Option<&'a [u8]>,
    /// Prefix each text chunk with `▁`.
    pub add_dummy_prefix: bool,
    /// Drop leading/trailing spaces and collapse runs of spaces.
    pub remove_extra_whitespaces: bool,
    /// Replace spaces by `▁`.
    pub escape_whitespaces: bool,
    /// Whether byte tokens `<0xXX>` stand for raw bytes when decoding.
    pub byte_fallback: bool,
}

/// Normalizer + decoder of SentencePiece models, the way `LlamaConverter` (legacy) builds them and
/// llama.cpp's SPM path behaves: the dummy prefix is added to every chunk of text between added tokens.
pub(crate) fn set_spm_pipeline(tok: &mut HfTokenizer, source: &str, opts: &SpmPipeline<'_>) -> Result<(), TextError> {
    let bad = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| TextError::InvalidTokenizer {
        source_name: source.to_string(),
        message: format!("cannot build {what}: {e}"),
    };
    let mut norms: Vec<NormalizerWrapper> = Vec::new();
    if let Some(map) = opts.precompiled_charsmap.filter(|m| !m.is_empty()) {
        let pc = tokenizers::normalizers::Precompiled::from(map).map_err(|e| TextError::InvalidTokenizer {
            source_name: source.to_string(),
            message: format!("invalid precompiled_charsmap: {e}"),
        })?;
        norms.push(NormalizerWrapper::Precompiled(pc));
    }
    if opts.remove_extra_whitespaces {
        let edge = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\A +| +\z".into()), "")
            .map_err(|e| bad("whitespace normalizer", e))?;
        let runs = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()), " ")
            .map_err(|e| bad("whitespace normalizer", e))?;
        norms.push(NormalizerWrapper::Replace(edge));
        norms.push(NormalizerWrapper::Replace(runs));
    }
    let space = if opts.escape_whitespaces { SPIECE_UNDERLINE } else { " " };
    if opts.add_dummy_prefix {
        norms.push(NormalizerWrapper::Prepend(Prepend::new(space.to_string())));
    }
    if opts.escape_whitespaces {
        let r = Replace::new(" ", SPIECE_UNDERLINE).map_err(|e| bad("normalizer", e))?;
        norms.push(NormalizerWrapper::Replace(r));
    }
    if !norms.is_empty() {
        tok.with_normalizer(Some(NormalizerWrapper::Sequence(NormalizerSequence::new(norms))));
    }

    let mut decs: Vec<DecoderWrapper> = Vec::new();
    if opts.escape_whitespaces {
        let r = Replace::new(SPIECE_UNDERLINE, " ").map_err(|e| bad("decoder", e))?;
        decs.push(DecoderWrapper::Replace(r));
    }
    if opts.byte_fallback {
        decs.push(DecoderWrapper::ByteFallback(ByteFallback::new()));
    }
    decs.push(DecoderWrapper::Fuse(Fuse::new()));
    if opts.add_dummy_prefix {
        decs.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    tok.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(decs))));
    Ok(())
}

/// A token to register in the added vocabulary at a fixed id.
#[derive(Debug, Clone)]
pub(crate) struct FixedToken {
    pub id: u32,
    pub content: String,
    pub special: bool,
    pub lstrip: bool,
    pub rstrip: bool,
    pub normalized: bool,
    pub single_word: bool,
}

impl FixedToken {
    pub(crate) fn new(id: u32, content: impl Into<String>, special: bool) -> Self {
        FixedToken {
            id,
            content: content.into(),
            special,
            lstrip: false,
            rstrip: false,
            normalized: false,
            single_word: false,
        }
    }

    fn to_added(&self) -> AddedToken {
        AddedToken::from(self.content.clone(), self.special)
            .lstrip(self.lstrip)
            .rstrip(self.rstrip)
            .normalized(self.normalized)
            .single_word(self.single_word)
    }
}

/// Adds tokens at the ids they must have.
///
/// A token already in the model vocabulary keeps its model id; a new one gets the next free id (the
/// `tokenizers` rule), so tokens are added in id order and the resulting id is checked against the
/// expected one.
pub(crate) fn add_fixed_tokens(
    tok: &mut HfTokenizer,
    source: &str,
    tokens: &mut [FixedToken],
) -> Result<(), TextError> {
    tokens.sort_by_key(|t| t.id);
    // One call: the added-token matcher is rebuilt once, and new tokens get consecutive ids in id order.
    let added: Vec<AddedToken> = tokens.iter().filter(|t| !t.content.is_empty()).map(FixedToken::to_added).collect();
    tok.add_tokens(&added);
    for t in tokens.iter().filter(|t| !t.content.is_empty()) {
        let got = tok.token_to_id(&t.content);
        if got != Some(t.id) {
            return Err(TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!(
                    "added token {:?} should have id {} but the vocabulary gives it {}",
                    t.content,
                    t.id,
                    got.map_or_else(|| "no id".to_string(), |g| g.to_string())
                ),
            });
        }
    }
    Ok(())
}

/// Checks a token list for duplicates (two ids with the same text make the vocabulary ambiguous).
pub(crate) fn vocab_map(
    source: &str,
    tokens: impl Iterator<Item = (String, u32)>,
) -> Result<ahash::AHashMap<String, u32>, TextError> {
    let mut map: ahash::AHashMap<String, u32> = ahash::AHashMap::new();
    for (t, id) in tokens {
        if let Some(prev) = map.insert(t.clone(), id) {
            return Err(TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!("token {t:?} appears twice (ids {prev} and {id})"),
            });
        }
    }
    Ok(map)
}

/// Converts a model into the wrapper type and starts a bare tokenizer.
pub(crate) fn bare_tokenizer(model: impl Into<ModelWrapper>) -> HfTokenizer {
    HfTokenizer::new(model.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xA0], 'ł');
        assert_eq!(t[0xAD], 'Ń');
        let mut seen = std::collections::HashSet::new();
        for c in t {
            assert!(seen.insert(c));
        }
    }
}
