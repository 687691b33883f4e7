//! Tokenizers described by GGUF vocabulary metadata (`tokenizer.ggml.*`), matching llama.cpp
//! (`src/llama-vocab.cpp` of llama.cpp as vendored by llama-cpp-python 0.3.36).
//!
//! * `llama` (SPM): SentencePiece-style BPE by piece score, `▁` escaping, a dummy-prefix space before each
//!   run of text (`add_space_prefix`, default true), byte fallback through `<0xXX>` pieces.
//! * `gpt2` (BPE): byte-level BPE over the GGUF merges with the split regexes llama.cpp uses for each
//!   `tokenizer.ggml.pre` value (the original `tokenizer.json` regex where llama.cpp records one, since the
//!   reference token ids come from Hugging Face `tokenizers`), and `ignore_merges` where llama.cpp sets it.
//! * `gemma4`: SentencePiece-style BPE over raw UTF-8 with `▁` for spaces, split on newlines, byte fallback.
//! * `t5` (UGM): SentencePiece Unigram with the precompiled charsmap normalizer, as SentencePiece encodes.
//!
//! Token types follow llama.cpp: CONTROL and UNKNOWN tokens are special (parsed only when special tokens are
//! parsed), USER_DEFINED tokens are always matched in text, BYTE tokens serve byte fallback. The EOS set is
//! llama.cpp's end-of-generation set (EOS, EOT, EOM ids plus the tokens llama.cpp recognises by text).

use tokenizers::Tokenizer as HfTokenizer;

use super::build::{
    add_fixed_tokens, bare_tokenizer, bpe_model, set_bytelevel_pipeline, set_spm_pipeline, vocab_map, FixedToken,
    SpmPipeline,
};
use super::spm::{self, Algorithm, Piece, PieceType, SpmSpec};
use crate::error::TextError;

/// Vocabulary metadata of a GGUF file (the `tokenizer.ggml.*` keys), filled by the GGUF reader.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `llama`, `gpt2`, `gemma4`, `bert`, `t5`, ...
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer name (`llama-bpe`, `qwen2`, `gpt-2`, ...).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`.
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges` (`"left right"` strings, in rank order).
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot_id: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`.
    pub eom_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.seperator_token_id` (sic, the GGUF key is misspelt).
    pub sep_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.remove_extra_whitespaces`.
    pub remove_extra_whitespaces: Option<bool>,
    /// `tokenizer.ggml.precompiled_charsmap`.
    pub precompiled_charsmap: Option<Vec<u8>>,
}

const SOURCE: &str = "GGUF vocab";

/// How a `tokenizer.ggml.pre` value pre-tokenizes.
struct PreSpec {
    regexes: &'static [&'static str],
    ignore_merges: bool,
    add_bos: Option<bool>,
    no_bos: bool,
}

const LLAMA3: &[&str] = &[
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const JAIS2: &[&str] = &[
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",
];
const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
    "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
    "\\p{N}+",
];
const DEEPSEEK3_LLM: &[&str] = &[
    "\\p{N}{1,3}",
    "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];
const SPARK2_5: &[&str] = &[
    "\\p{N}{1,3}",
    "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    "\\p{N}",
];
const YOUTU: &[&str] = &[
    "[\u{AC00}-\u{D7A3}\u{3131}-\u{318E}]+|[\u{FF01}\u{2026}\u{201C}\u{201D}\u{2018}\u{2019}\u{2014}\u{FF1A}\u{FF1B}\u{FF0C}\u{3001}-\u{303F}\u{FE30}-\u{FE4F}]+|[\u{3105}-\u{312F}]+|[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const DEEPSEEK_CODER: &[&str] =
    &["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+", "\\p{N}"];
const FALCON: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
];
const STARCODER: &[&str] = &["\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"];
const GPT2: &[&str] = &["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"];
const QWEN2: &[&str] = &[
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const QWEN35: &[&str] = &[
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const BLOOM: &[&str] = &[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+"];
const VIKING: &[&str] = &[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+", "\\p{N}"];
const TEKKEN: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const CHAMELEON: &[&str] = &[
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
];
const GPT4O: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const TINY_AYA: &[&str] = &[
    r"\d{1,3}(?=(?:\d{3})*\b)",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const SUPERBPE: &[&str] = &["\\p{N}+", "(?=(\\d{3})+(?!\\d))"];
const BAILINGMOE: &[&str] = &[
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
];
const SEED_CODER: &[&str] = &[
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const UFAKZEKA: &[&str] = &[r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"];
const LAGUNA: &[&str] = &[
    "[^\\n]+|[\\n]+",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const EXAONE_MOE: &[&str] = &[
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
];
const MINICPM5: &[&str] = &[
    "\\p{N}{1,3}",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const GRANITE_EMB_MULTI: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const DEFAULT: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
];

/// The pre-tokenizer names llama.cpp knows and cannot be reproduced here.
const UNSUPPORTED_PRE: &[(&str, &str)] = &[
    ("kimi-k2", "llama.cpp splits it with a custom C++ routine (Han-script exclusion)"),
    ("afmoe", "llama.cpp splits digits with a custom C++ routine (\\p{AFMoE_digits})"),
    ("whitespace", "it uses raw (not byte-level) tokens"),
    ("gemma4", "it is only valid with tokenizer.ggml.model = gemma4"),
    ("granite-embed-multi-311m", "it is only valid with an SPM-style BPE vocabulary"),
    ("sarvam-moe", "it is only valid with an SPM-style BPE vocabulary"),
];

fn pre_spec(pre: &str) -> Result<PreSpec, TextError> {
    let plain = |regexes| PreSpec { regexes, ignore_merges: false, add_bos: None, no_bos: false };
    let spec = match pre {
        "default" => plain(DEFAULT),
        "minicpm5" => PreSpec { ignore_merges: true, ..plain(MINICPM5) },
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => PreSpec { ignore_merges: true, add_bos: Some(true), ..plain(LLAMA3) },
        "deepseek-llm" => plain(DEEPSEEK_LLM),
        "deepseek-coder" => plain(DEEPSEEK_CODER),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => plain(DEEPSEEK3_LLM),
        "spark2_5" => plain(SPARK2_5),
        "youtu" => PreSpec { ignore_merges: true, ..plain(YOUTU) },
        "falcon" => plain(FALCON),
        "mpt" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
        | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "olmo" | "jais" | "trillion"
        | "granite-docling" | "exaone4" => plain(GPT2),
        "jais-2" => plain(JAIS2),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            plain(STARCODER)
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez" | "hunyuan" | "solar-open" => {
            plain(QWEN2)
        }
        "qwen35" => plain(QWEN35),
        "dbrx" | "smaug-bpe" => plain(LLAMA3),
        "poro-chat" | "bloom" | "gpt3-finnish" => plain(BLOOM),
        "chatglm-bpe" => PreSpec { no_bos: true, ..plain(LLAMA3) },
        "glm4" | "glm5" => PreSpec { no_bos: true, ignore_merges: true, ..plain(LLAMA3) },
        "viking" => plain(VIKING),
        "tekken" => PreSpec { ignore_merges: true, add_bos: Some(true), ..plain(TEKKEN) },
        "chameleon" => PreSpec { add_bos: Some(true), ..plain(CHAMELEON) },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => plain(GPT4O),
        "granite-embed-multi-97m" => PreSpec { ignore_merges: true, ..plain(GRANITE_EMB_MULTI) },
        "tiny_aya" | "cohere2moe" => plain(TINY_AYA),
        "superbpe" => plain(SUPERBPE),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => plain(BAILINGMOE),
        "seed-coder" => plain(SEED_CODER),
        "ufakzeka" => plain(UFAKZEKA),
        "grok-2" => plain(QWEN2),
        "laguna" => plain(LAGUNA),
        "exaone-moe" => plain(EXAONE_MOE),
        other => {
            let why = UNSUPPORTED_PRE
                .iter()
                .find(|(n, _)| *n == other)
                .map_or("it is not a pre-tokenizer llama.cpp knows", |(_, w)| *w);
            return Err(TextError::Unsupported {
                source_name: SOURCE.into(),
                message: format!("tokenizer.ggml.pre = {other:?} is not supported: {why}"),
            });
        }
    };
    Ok(spec)
}

fn check_id(id: Option<u32>, n: usize, key: &str) -> Result<Option<u32>, TextError> {
    match id {
        Some(i) if (i as usize) >= n => Err(TextError::InvalidTokenizer {
            source_name: SOURCE.into(),
            message: format!("tokenizer.ggml.{key} = {i} is outside the {n} tokens"),
        }),
        other => Ok(other),
    }
}

/// Token texts with llama.cpp's substitution for empty tokens.
fn token_texts(v: &GgufVocab) -> Vec<String> {
    v.tokens.iter().enumerate().map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]") } else { t.clone() }).collect()
}

fn token_types(v: &GgufVocab) -> Result<Vec<PieceType>, TextError> {
    let n = v.tokens.len();
    match &v.token_types {
        None => Ok(vec![PieceType::Normal; n]),
        Some(t) if t.len() < n => Err(TextError::InvalidTokenizer {
            source_name: SOURCE.into(),
            message: format!("tokenizer.ggml.token_type has {} entries, expected {n}", t.len()),
        }),
        Some(t) => Ok(t[..n].iter().map(|&x| PieceType::from_i32(x)).collect()),
    }
}

/// The result of converting a GGUF vocabulary.
pub(crate) struct Converted {
    pub tok: HfTokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eos_set: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub aliases: Vec<(u32, u32)>,
}

fn added_tokens(texts: &[String], types: &[PieceType]) -> Vec<FixedToken> {
    texts
        .iter()
        .zip(types)
        .enumerate()
        .filter_map(|(i, (t, k))| match k {
            PieceType::Control | PieceType::Unknown => Some(FixedToken::new(i as u32, t.clone(), true)),
            PieceType::UserDefined => Some(FixedToken::new(i as u32, t.clone(), false)),
            _ => None,
        })
        .collect()
}

/// llama.cpp's text-based detection of end-of-generation tokens (and the EOT/EOM ids it derives).
fn eog_by_text(texts: &[String]) -> (Option<u32>, Option<u32>, Vec<u32>) {
    const EOT: &[&str] = &[
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "<｜end▁of▁sentence｜>",
        "<end_of_utterance>",
    ];
    const EOG: &[&str] = &[
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<eos>",
        "<turn|>",
        "<|tool_response>",
        "<｜end▁of▁sentence｜>",
        "[e~[",
    ];
    const FIM_EOG: &[&str] = &[
        "<|fim_pad|>",
        "<fim-pad>",
        "<fim_pad>",
        "<PAD>",
        "[PAD]",
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
        "<|file_sep|>",
    ];
    let mut eot = None;
    let mut eom = None;
    let mut eog = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let id = i as u32;
        if eot.is_none() && EOT.contains(&t.as_str()) {
            eot = Some(id);
        }
        if eom.is_none() && t == "<|eom_id|>" {
            eom = Some(id);
        }
        if EOG.contains(&t.as_str()) || FIM_EOG.contains(&t.as_str()) {
            eog.push(id);
        }
    }
    // llama.cpp: with <|return|> + <|call|> (or <|calls|> + <|flush|>), <|end|> is not an EOG token;
    // with <|tool_response>, </s> is a normal token.
    let has = |s: &str| eog.iter().any(|&i| texts[i as usize] == s);
    let drop_end = has("<|end|>") && ((has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")));
    let drop_s = has("</s>") && (has("<|tool_response>") || has("<|plamo:eos|>"));
    eog.retain(|&i| {
        let t = texts[i as usize].as_str();
        !((drop_end && t == "<|end|>") || (drop_s && t == "</s>"))
    });
    (eot, eom, eog)
}

fn parse_merges(merges: &[String]) -> Result<Vec<(String, String)>, TextError> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // llama.cpp splits at the first space after the first byte.
            match m.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) {
                Some(p) => Ok((m[..p].to_string(), m[p + 1..].to_string())),
                None => Err(TextError::InvalidTokenizer {
                    source_name: SOURCE.into(),
                    message: format!("tokenizer.ggml.merges[{i}] = {m:?} is not `left right`"),
                }),
            }
        })
        .collect()
}

/// Converts GGUF vocabulary metadata.
pub(crate) fn convert(v: &GgufVocab) -> Result<Converted, TextError> {
    let n = v.tokens.len();
    if n == 0 {
        return Err(TextError::InvalidTokenizer {
            source_name: SOURCE.into(),
            message: "tokenizer.ggml.tokens is empty".into(),
        });
    }
    let texts = token_texts(v);
    let mut types = token_types(v)?;
    let bos_key = check_id(v.bos_id, n, "bos_token_id")?;
    let eos_key = check_id(v.eos_id, n, "eos_token_id")?;
    let eot_key = check_id(v.eot_id, n, "eot_token_id")?;
    let eom_key = check_id(v.eom_id, n, "eom_token_id")?;
    let unk_key = check_id(v.unk_id, n, "unknown_token_id")?;
    check_id(v.pad_id, n, "padding_token_id")?;
    check_id(v.sep_id, n, "seperator_token_id")?;
    let in_range = |d: u32| ((d as usize) < n).then_some(d);

    let (eot_text, eom_text, eog_text) = eog_by_text(&texts);
    let eot = eot_key.or(eot_text);
    let eom = eom_key.or(eom_text);
    // llama.cpp turns end-of-generation tokens into control tokens.
    for id in [eot, eom].into_iter().flatten().chain(eog_text.iter().copied()) {
        let k = &mut types[id as usize];
        if !matches!(k, PieceType::Control | PieceType::Unknown) {
            *k = PieceType::Control;
        }
    }

    let mut aliases = Vec::new();
    let (tok, bos, eos, add_bos, add_eos) = match v.model.as_str() {
        "llama" => {
            let bos = bos_key.or_else(|| in_range(1));
            let eos = eos_key.or_else(|| in_range(2));
            let unk = unk_key.or_else(|| in_range(0));
            let pieces = spm_pieces(v, &texts, &types)?;
            let byte_fallback = types.contains(&PieceType::Byte);
            let spec = SpmSpec {
                pieces: &pieces,
                algorithm: Algorithm::Bpe,
                byte_fallback,
                unk_id: unk,
                pipeline: SpmPipeline {
                    precompiled_charsmap: None,
                    add_dummy_prefix: v.add_space_prefix.unwrap_or(true),
                    remove_extra_whitespaces: v.remove_extra_whitespaces.unwrap_or(false),
                    escape_whitespaces: true,
                    byte_fallback,
                },
            };
            let built = spm::build(&spec, SOURCE)?;
            aliases = built.aliases;
            (built.tok, bos, eos, v.add_bos.unwrap_or(true), v.add_eos.unwrap_or(false))
        }
        "gpt2" => {
            let pre_name = v.pre.as_deref().unwrap_or("default");
            let pre = pre_spec(pre_name)?;
            let merges = v.merges.as_ref().ok_or_else(|| TextError::InvalidTokenizer {
                source_name: SOURCE.into(),
                message: "tokenizer.ggml.merges is required for tokenizer.ggml.model = gpt2".into(),
            })?;
            let vocab = vocab_map(SOURCE, texts.iter().cloned().enumerate().map(|(i, t)| (t, i as u32)))?;
            let merges = parse_merges(merges)?;
            let mut tok = bare_tokenizer(bpe_model(SOURCE, vocab, merges, None, false, pre.ignore_merges)?);
            set_bytelevel_pipeline(&mut tok, SOURCE, pre.regexes)?;
            let mut added = added_tokens(&texts, &types);
            add_fixed_tokens(&mut tok, SOURCE, &mut added)?;
            let bos = if pre.no_bos { None } else { bos_key };
            let add_bos = v.add_bos.unwrap_or(pre.add_bos.unwrap_or(false));
            (tok, bos, eos_key, add_bos, v.add_eos.unwrap_or(false))
        }
        "t5" => {
            let eos = eos_key.or_else(|| in_range(1));
            let unk = unk_key.or_else(|| in_range(2));
            let pieces = spm_pieces(v, &texts, &types)?;
            let byte_fallback = types.contains(&PieceType::Byte);
            let spec = SpmSpec {
                pieces: &pieces,
                algorithm: Algorithm::Unigram,
                byte_fallback,
                unk_id: unk,
                pipeline: SpmPipeline {
                    precompiled_charsmap: v.precompiled_charsmap.as_deref(),
                    add_dummy_prefix: v.add_space_prefix.unwrap_or(true),
                    remove_extra_whitespaces: v.remove_extra_whitespaces.unwrap_or(false),
                    escape_whitespaces: true,
                    byte_fallback,
                },
            };
            let built = spm::build(&spec, SOURCE)?;
            aliases = built.aliases;
            (built.tok, bos_key, eos, v.add_bos.unwrap_or(false), v.add_eos.unwrap_or(true))
        }
        "gemma4" => {
            let merges = v.merges.as_ref().ok_or_else(|| TextError::InvalidTokenizer {
                source_name: SOURCE.into(),
                message: "tokenizer.ggml.merges is required for tokenizer.ggml.model = gemma4".into(),
            })?;
            let vocab = vocab_map(SOURCE, texts.iter().cloned().enumerate().map(|(i, t)| (t, i as u32)))?;
            let merges = parse_merges(merges)?;
            let unk = unk_key.map(|u| texts[u as usize].clone());
            let mut tok = bare_tokenizer(bpe_model(SOURCE, vocab, merges, unk, true, false)?);
            set_spm_pipeline(
                &mut tok,
                SOURCE,
                &SpmPipeline {
                    precompiled_charsmap: None,
                    add_dummy_prefix: false,
                    remove_extra_whitespaces: false,
                    escape_whitespaces: true,
                    byte_fallback: true,
                },
            )?;
            let split = super::build::split_isolated(SOURCE, "[^\\n]+|[\\n]+")?;
            tok.with_pre_tokenizer(Some(split));
            let mut added = added_tokens(&texts, &types);
            add_fixed_tokens(&mut tok, SOURCE, &mut added)?;
            // llama.cpp forces BOS on for Gemma 4.
            (tok, bos_key, eos_key, true, v.add_eos.unwrap_or(false))
        }
        other => {
            return Err(TextError::Unsupported {
                source_name: SOURCE.into(),
                message: format!(
                    "tokenizer.ggml.model = {other:?} is not supported (supported: llama, gpt2, gemma4, t5)"
                ),
            })
        }
    };

    let mut eos_set: Vec<u32> = Vec::new();
    for id in [eos, eot, eom].into_iter().flatten().chain(eog_text) {
        if !eos_set.contains(&id) {
            eos_set.push(id);
        }
    }
    Ok(Converted { tok, bos, eos, eos_set, add_bos, add_eos, aliases })
}

fn spm_pieces(v: &GgufVocab, texts: &[String], types: &[PieceType]) -> Result<Vec<Piece>, TextError> {
    let n = texts.len();
    let scores = match &v.scores {
        None => vec![0.0; n],
        Some(s) if s.len() < n => {
            return Err(TextError::InvalidTokenizer {
                source_name: SOURCE.into(),
                message: format!("tokenizer.ggml.scores has {} entries, expected {n}", s.len()),
            })
        }
        Some(s) => s[..n].to_vec(),
    };
    Ok(texts.iter().zip(types).zip(scores).map(|((t, &kind), score)| Piece { text: t.clone(), score, kind }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_pre_compiles() {
        let names = [
            "default",
            "minicpm5",
            "llama-bpe",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "spark2_5",
            "youtu",
            "falcon",
            "mpt",
            "jais-2",
            "starcoder",
            "qwen2",
            "qwen35",
            "dbrx",
            "poro-chat",
            "glm4",
            "viking",
            "tekken",
            "chameleon",
            "gpt-4o",
            "granite-embed-multi-97m",
            "tiny_aya",
            "superbpe",
            "bailingmoe",
            "seed-coder",
            "ufakzeka",
            "grok-2",
            "laguna",
            "exaone-moe",
        ];
        for n in names {
            let spec = pre_spec(n).unwrap();
            for r in spec.regexes {
                super::super::build::split_isolated("t", r).unwrap_or_else(|e| panic!("{n}: {e}"));
            }
        }
        let err = pre_spec("kimi-k2").err().unwrap().to_string();
        assert!(err.contains("kimi-k2"), "{err}");
        assert!(pre_spec("no-such-pre").is_err());
    }

    #[test]
    fn rejects_bad_metadata() {
        let mut v = GgufVocab { model: "gpt2".into(), tokens: vec!["a".into(), "b".into()], ..Default::default() };
        assert!(convert(&v).is_err()); // no merges
        v.merges = Some(vec!["ab".into()]);
        assert!(convert(&v).is_err()); // malformed merge
        v.merges = Some(vec![]);
        v.eos_id = Some(9);
        assert!(convert(&v).is_err()); // id out of range
        v.eos_id = None;
        v.pre = Some("kimi-k2".into());
        assert!(convert(&v).is_err());
        v.model = "rwkv".into();
        assert!(convert(&v).err().unwrap().to_string().contains("rwkv"));
        v.model = "gpt2".into();
        v.pre = None;
        v.tokens = vec!["a".into(), "a".into()];
        assert!(convert(&v).is_err()); // duplicate token
    }
}
