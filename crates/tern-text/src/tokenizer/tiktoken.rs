//! tiktoken-format `tokenizer.model` (Meta Llama 3): lines `<base64 token bytes> <rank>`.
//!
//! Converted like `transformers`' `TikTokenConverter`: token bytes become GPT-2 byte-level strings, the
//! rank is the id, and the BPE merges are every split of a token into two tokens, ordered by the merged
//! token's rank (tiktoken merges the adjacent pair whose concatenation has the lowest rank); whole
//! pre-tokens found in the vocabulary are emitted directly (`ignore_merges`, as tiktoken does). The split
//! regex and the 256 special tokens are those of `llama_models/llama3/tokenizer.py` (llama-models 0.3.0):
//! `<|begin_of_text|>`, `<|end_of_text|>`, `<|reserved_special_token_0|>`, `<|reserved_special_token_1|>`,
//! `<|finetune_right_pad_id|>`, `<|step_id|>`, `<|start_header_id|>`, `<|end_header_id|>`, `<|eom_id|>`,
//! `<|eot_id|>`, `<|python_tag|>`, `<|image|>`, then `<|reserved_special_token_2|>` … `_245|>`, with ids
//! following the base vocabulary.

use base64::Engine;
use tokenizers::Tokenizer as HfTokenizer;

use super::build::{
    add_fixed_tokens, bare_tokenizer, bpe_model, bytes_to_bytelevel, bytes_to_unicode, set_bytelevel_pipeline,
    FixedToken,
};
use crate::error::TextError;

/// The Llama 3 pre-tokenizer regex (`Tokenizer.pat_str`).
pub(crate) const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Number of special tokens Meta reserves after the base vocabulary.
const NUM_RESERVED_SPECIAL_TOKENS: usize = 256;

/// Size of the Llama 3 base vocabulary (the special tokens apply to files of this size).
pub(crate) const LLAMA3_BASE_VOCAB: usize = 128_000;

/// The Llama 3 special tokens, in id order.
pub(crate) fn llama3_special_tokens() -> Vec<String> {
    let mut v: Vec<String> = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let named = v.len();
    for i in 0..NUM_RESERVED_SPECIAL_TOKENS - named {
        v.push(format!("<|reserved_special_token_{}|>", 2 + i));
    }
    v
}

/// Whether a file looks like a tiktoken BPE file (its first non-empty line is `base64 integer`).
pub(crate) fn looks_like_tiktoken(data: &[u8]) -> bool {
    let head = &data[..data.len().min(4096)];
    let Some(line) = head.split(|&b| b == b'\n').find(|l| !l.is_empty()) else {
        return false;
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (tok, rank) = (&line[..sp], &line[sp + 1..]);
    !tok.is_empty()
        && tok.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        && !rank.is_empty()
        && rank.iter().all(u8::is_ascii_digit)
}

/// Parses the `token rank` lines into a list indexed by rank.
pub(crate) fn parse_ranks(data: &[u8], source: &str) -> Result<Vec<Vec<u8>>, TextError> {
    let text = std::str::from_utf8(data).map_err(|e| TextError::InvalidTokenizer {
        source_name: source.to_string(),
        message: format!("tiktoken file is not UTF-8 text: {e}"),
    })?;
    let mut pairs: Vec<(usize, Vec<u8>)> = Vec::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bad = |msg: String| TextError::InvalidTokenizer {
            source_name: source.to_string(),
            message: format!("line {}: {msg}", lineno + 1),
        };
        let (tok, rank) =
            line.split_once(' ').ok_or_else(|| bad(format!("expected `<base64> <rank>`, found {line:?}")))?;
        let bytes = b64.decode(tok).map_err(|e| bad(format!("invalid base64 {tok:?}: {e}")))?;
        if bytes.is_empty() {
            return Err(bad("empty token".into()));
        }
        let rank: usize = rank.trim().parse().map_err(|_| bad(format!("invalid rank {rank:?}")))?;
        pairs.push((rank, bytes));
    }
    pairs.sort_by_key(|p| p.0);
    for (i, (rank, _)) in pairs.iter().enumerate() {
        if *rank != i {
            let what = if *rank < i { "appears twice" } else { "skips a rank" };
            return Err(TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!("ranks must be 0..{}: rank {rank} {what} (expected {i})", pairs.len()),
            });
        }
    }
    Ok(pairs.into_iter().map(|p| p.1).collect())
}

/// Builds the BPE tokenizer (without special tokens) from ranked token bytes.
pub(crate) fn build_bpe(ranks: &[Vec<u8>], pattern: &str, source: &str) -> Result<HfTokenizer, TextError> {
    let table = bytes_to_unicode();
    let index: ahash::AHashMap<&[u8], u32> = ranks.iter().enumerate().map(|(i, b)| (b.as_slice(), i as u32)).collect();
    if index.len() != ranks.len() {
        return Err(TextError::InvalidTokenizer {
            source_name: source.to_string(),
            message: "the same token bytes appear under two ranks".into(),
        });
    }
    let mut merges: Vec<(u32, u32, u32)> = Vec::new();
    for (rank, tok) in ranks.iter().enumerate() {
        for split in 1..tok.len() {
            let (l, r) = tok.split_at(split);
            if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                merges.push((rank as u32, li, ri));
            }
        }
    }
    merges.sort_unstable();
    let strings: Vec<String> = ranks.iter().map(|b| bytes_to_bytelevel(&table, b)).collect();
    let vocab: ahash::AHashMap<String, u32> = strings.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
    let merges: Vec<(String, String)> =
        merges.into_iter().map(|(_, l, r)| (strings[l as usize].clone(), strings[r as usize].clone())).collect();
    let mut tok = bare_tokenizer(bpe_model(source, vocab, merges, None, false, true)?);
    set_bytelevel_pipeline(&mut tok, source, &[pattern])?;
    Ok(tok)
}

/// What a tiktoken load produced.
pub(crate) struct Loaded {
    pub tok: HfTokenizer,
    /// Whether the Llama 3 special tokens were added.
    pub llama3: bool,
}

/// Loads a tiktoken file; with `builtin_specials`, files with the Llama 3 base size get the Llama 3 special
/// tokens.
pub(crate) fn load(data: &[u8], source: &str, builtin_specials: bool) -> Result<Loaded, TextError> {
    let ranks = parse_ranks(data, source)?;
    let mut tok = build_bpe(&ranks, LLAMA3_PATTERN, source)?;
    let llama3 = builtin_specials && ranks.len() == LLAMA3_BASE_VOCAB;
    if llama3 {
        let mut specials: Vec<FixedToken> = llama3_special_tokens()
            .into_iter()
            .enumerate()
            .map(|(i, s)| FixedToken::new((ranks.len() + i) as u32, s, true))
            .collect();
        add_fixed_tokens(&mut tok, source, &mut specials)?;
    }
    Ok(Loaded { tok, llama3 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_token_list_matches_meta() {
        let s = llama3_special_tokens();
        assert_eq!(s.len(), 256);
        assert_eq!(s[9], "<|eot_id|>");
        assert_eq!(s[12], "<|reserved_special_token_2|>");
        assert_eq!(s[255], "<|reserved_special_token_245|>");
    }

    #[test]
    fn detects_and_rejects() {
        assert!(looks_like_tiktoken(b"IQ== 0\nIg== 1\n"));
        assert!(!looks_like_tiktoken(b"\x0a\x0b<unk>"));
        assert!(parse_ranks(b"IQ== 0\nIg== 0\n", "t").is_err());
        assert!(parse_ranks(b"IQ== 0\nIg== 2\n", "t").is_err());
        assert!(parse_ranks(b"I@Q== 0\n", "t").is_err());
        assert!(parse_ranks(b"IQ==\n", "t").is_err());
    }
}
