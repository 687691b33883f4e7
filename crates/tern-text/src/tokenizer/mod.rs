//! One [`Tokenizer`] type for every tokenizer format tern loads.
//!
//! Each format is turned into an in-memory `tokenizers::Tokenizer` (the Rust core of Hugging Face
//! `tokenizers`), so encoding and decoding behave like the Python references:
//!
//! | source | built like |
//! |---|---|
//! | `tokenizer.json` | loaded as is by `tokenizers` (any model type) |
//! | SentencePiece `tokenizer.model` | `transformers` `convert_slow_tokenizer` (module `spm`) |
//! | tiktoken `tokenizer.model` | `TikTokenConverter` + Meta's Llama 3 `tokenizer.py` (module `tiktoken`) |
//! | `vocab.json` + `merges.txt` | `GPT2Converter` / `Qwen2Converter` (module `gpt2`) |
//! | GGUF `tokenizer.ggml.*` | llama.cpp `llama-vocab.cpp` (see [`GgufVocab`]) |
//!
//! Special tokens are merged from `tokenizer_config.json` (`bos_token`, `eos_token`, `add_bos_token`,
//! `add_eos_token`, `added_tokens_decoder`), `generation_config.json` and `config.json` (`eos_token_id` as an
//! integer or a list). `add_bos_token` / `add_eos_token`, when the config sets them, override what the
//! `tokenizer.json` post-processor does (the `LlamaTokenizerFast` behaviour of transformers 4); otherwise the
//! post-processor decides, as in transformers. The EOS set ([`Tokenizer::eos_ids`]) is the union of every
//! end-of-sequence id these files name.
//!
//! `parse_special = false` encodes special-token text as plain text (`tokenizers`'
//! `encode_special_tokens`, llama.cpp's `parse_special = false`): user text `<|im_start|>` never becomes the
//! special token. Non-special added tokens (SentencePiece user-defined pieces) are always matched.
//!
//! Decoding is `tokenizers`' decoding: no `clean_up_tokenization_spaces` post-pass, and an unknown piece
//! decodes as its text (`<unk>`), not SentencePiece's ` ⁇ ` surface.

mod build;
mod config;
mod gguf;
mod gpt2;
mod spm;
mod tiktoken;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokenizers::Tokenizer as HfTokenizer;

pub use gguf::GgufVocab;

use crate::error::TextError;
use build::FixedToken;
use config::{HfConfig, Named};

/// Which format a tokenizer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerFormat {
    /// Hugging Face `tokenizer.json`.
    TokenizerJson,
    /// SentencePiece `tokenizer.model` (protobuf).
    SentencePiece,
    /// tiktoken BPE file (`base64 rank` lines).
    Tiktoken,
    /// GPT-2 style `vocab.json` + `merges.txt`.
    VocabMerges,
    /// GGUF vocabulary metadata.
    Gguf,
}

/// A text tokenizer: encode text to ids, decode ids to text, and the special tokens of the model.
///
/// `Send + Sync`: one instance can serve concurrent requests.
#[derive(Clone)]
pub struct Tokenizer {
    inner: HfTokenizer,
    /// Same pipeline with special tokens encoded as plain text; built on first use.
    plain: OnceLock<HfTokenizer>,
    format: TokenizerFormat,
    source: String,
    vocab_size: usize,
    bos: Option<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Whether the inner post-processor already inserts BOS / appends EOS.
    pp_bos: bool,
    pp_eos: bool,
    special: Vec<bool>,
    /// Ids that `decode(.., skip_special = true)` drops (special added tokens of the pipeline).
    skipped: Vec<bool>,
    /// Ids of byte-fallback tokens (`<0xXX>`) when the decoder turns them into raw bytes.
    byte_tokens: Vec<bool>,
    aliases: Aliases,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("format", &self.format)
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos_ids", &self.eos_ids)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish()
    }
}

/// Ids the inner pipeline uses in place of the real ones (see `spm::Built::aliases`).
#[derive(Debug, Clone, Default)]
struct Aliases {
    to_real: std::collections::HashMap<u32, u32>,
    to_alias: std::collections::HashMap<u32, u32>,
}

impl Aliases {
    fn new(pairs: &[(u32, u32)]) -> Aliases {
        Aliases { to_real: pairs.iter().copied().collect(), to_alias: pairs.iter().map(|&(a, r)| (r, a)).collect() }
    }
    fn is_empty(&self) -> bool {
        self.to_real.is_empty()
    }
    fn real(&self, id: u32) -> u32 {
        self.to_real.get(&id).copied().unwrap_or(id)
    }
    fn alias(&self, id: u32) -> u32 {
        self.to_alias.get(&id).copied().unwrap_or(id)
    }
}

/// A tokenizer before the side configs and the final bookkeeping.
struct Draft {
    inner: HfTokenizer,
    format: TokenizerFormat,
    source: String,
    bos: Option<u32>,
    eos: Option<u32>,
    eos_extra: Vec<u32>,
    /// Format default for adding BOS/EOS when the config says nothing (`None`: the post-processor decides).
    add_bos: Option<bool>,
    add_eos: Option<bool>,
    aliases: Vec<(u32, u32)>,
}

fn guard<T>(what: &str, f: impl FnOnce() -> tokenizers::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what} failed inside the tokenizer pipeline: {msg}"))
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TextError> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TextError::NotFound { path: path.to_path_buf() }
        } else {
            TextError::Io { path: path.to_path_buf(), source: e }
        }
    })
}

fn read_text(path: &Path) -> Result<String, TextError> {
    let data = read_file(path)?;
    String::from_utf8(data).map_err(|e| TextError::InvalidTokenizer {
        source_name: path.display().to_string(),
        message: format!("not UTF-8 text: {e}"),
    })
}

fn is_byte_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 6 && b.starts_with(b"<0x") && b[5] == b'>' && b[3].is_ascii_hexdigit() && b[4].is_ascii_hexdigit()
}

impl Tokenizer {
    /// Loads a tokenizer from a model or tokenizer directory, or from a tokenizer file.
    ///
    /// In a directory `tokenizer.json` is preferred, then `tokenizer.model` (SentencePiece or tiktoken,
    /// told apart by content), then `vocab.json` + `merges.txt` (or `encoder.json` + `vocab.bpe`). The
    /// `tokenizer_config.json`, `generation_config.json` and `config.json` next to it are applied.
    pub fn from_path(path: &Path) -> Result<Tokenizer, TextError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TextError::NotFound { path: path.to_path_buf() }
            } else {
                TextError::Io { path: path.to_path_buf(), source: e }
            }
        })?;
        let dir = if meta.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let cfg = HfConfig::load_dir(&dir)?;
        let draft = if meta.is_dir() { Self::load_dir(path, &cfg)? } else { Self::load_file(path, &dir, &cfg)? };
        Self::finish(draft, Some(&cfg))
    }

    fn load_dir(dir: &Path, cfg: &HfConfig) -> Result<Draft, TextError> {
        let tj = dir.join("tokenizer.json");
        if tj.is_file() {
            return Self::draft_tokenizer_json(&read_file(&tj)?, &tj.display().to_string());
        }
        let tm = dir.join("tokenizer.model");
        if tm.is_file() {
            return Self::draft_model_file(&read_file(&tm)?, &tm.display().to_string(), Some(cfg));
        }
        for (v, m) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] {
            let (v, m) = (dir.join(v), dir.join(m));
            if v.is_file() && m.is_file() {
                return Self::draft_vocab_merges_files(&v, &m, dir);
            }
        }
        Err(TextError::NotFound { path: dir.to_path_buf() })
    }

    fn load_file(path: &Path, dir: &Path, cfg: &HfConfig) -> Result<Draft, TextError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let sibling = |a: &str, b: &str| -> Option<PathBuf> {
            let p = dir.join(if name == a { b } else { a });
            p.is_file().then_some(p)
        };
        match name {
            "vocab.json" | "merges.txt" => {
                let other = sibling("vocab.json", "merges.txt").ok_or_else(|| TextError::NotFound {
                    path: dir.join(if name == "vocab.json" { "merges.txt" } else { "vocab.json" }),
                })?;
                let (v, m) =
                    if name == "vocab.json" { (path.to_path_buf(), other) } else { (other, path.to_path_buf()) };
                return Self::draft_vocab_merges_files(&v, &m, dir);
            }
            "encoder.json" | "vocab.bpe" => {
                let other = sibling("encoder.json", "vocab.bpe").ok_or_else(|| TextError::NotFound {
                    path: dir.join(if name == "encoder.json" { "vocab.bpe" } else { "encoder.json" }),
                })?;
                let (v, m) =
                    if name == "encoder.json" { (path.to_path_buf(), other) } else { (other, path.to_path_buf()) };
                return Self::draft_vocab_merges_files(&v, &m, dir);
            }
            _ => {}
        }
        let data = read_file(path)?;
        let source = path.display().to_string();
        if name.ends_with(".json") || data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            Self::draft_tokenizer_json(&data, &source)
        } else {
            Self::draft_model_file(&data, &source, Some(cfg))
        }
    }

    fn draft_tokenizer_json(data: &[u8], source: &str) -> Result<Draft, TextError> {
        let inner = guard("loading tokenizer.json", || HfTokenizer::from_bytes(data)).map_err(|e| TextError::Json {
            path: source.to_string(),
            message: format!("not a valid tokenizer.json: {e}"),
        })?;
        Ok(Draft {
            inner,
            format: TokenizerFormat::TokenizerJson,
            source: source.to_string(),
            bos: None,
            eos: None,
            eos_extra: Vec::new(),
            add_bos: None,
            add_eos: None,
            aliases: Vec::new(),
        })
    }

    fn draft_model_file(data: &[u8], source: &str, cfg: Option<&HfConfig>) -> Result<Draft, TextError> {
        if tiktoken::looks_like_tiktoken(data) {
            // With an `added_tokens_decoder` beside the file, its special tokens replace Meta's list.
            let builtin = cfg.is_none_or(|c| c.added_tokens.is_empty());
            let loaded = tiktoken::load(data, source, builtin)?;
            let id = |s: &str| loaded.tok.token_to_id(s);
            let (bos, eos, extra) = if loaded.llama3 {
                let extra = ["<|eom_id|>", "<|eot_id|>"].iter().filter_map(|s| id(s)).collect();
                (id("<|begin_of_text|>"), id("<|end_of_text|>"), extra)
            } else {
                (None, None, Vec::new())
            };
            Ok(Draft {
                inner: loaded.tok,
                format: TokenizerFormat::Tiktoken,
                source: source.to_string(),
                bos,
                eos,
                eos_extra: extra,
                add_bos: Some(true),
                add_eos: Some(false),
                aliases: Vec::new(),
            })
        } else {
            let model = spm::parse_model(data, source)?;
            let built = spm::build_from_model(&model, source)?;
            Ok(Draft {
                inner: built.tok,
                format: TokenizerFormat::SentencePiece,
                source: source.to_string(),
                bos: model.bos_id,
                eos: model.eos_id,
                eos_extra: Vec::new(),
                add_bos: Some(true),
                add_eos: Some(false),
                aliases: built.aliases,
            })
        }
    }

    fn draft_vocab_merges_files(vocab: &Path, merges: &Path, dir: &Path) -> Result<Draft, TextError> {
        let v = gpt2::parse_vocab(&read_text(vocab)?, &vocab.display().to_string())?;
        let m = gpt2::parse_merges(&read_text(merges)?, &merges.display().to_string())?;
        // Qwen2 ships vocab.json + merges.txt with its own regex; its tokenizer_config names the class.
        let class = std::fs::read(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .and_then(|v| v.get("tokenizer_class").and_then(|c| c.as_str()).map(str::to_string))
            .unwrap_or_default();
        let flavour = if class.starts_with("Qwen2") { gpt2::Flavour::Qwen2 } else { gpt2::Flavour::Gpt2 };
        Self::draft_vocab_merges(v, m, flavour, &vocab.display().to_string())
    }

    fn draft_vocab_merges(
        v: ahash::AHashMap<String, u32>,
        m: Vec<(String, String)>,
        flavour: gpt2::Flavour,
        source: &str,
    ) -> Result<Draft, TextError> {
        let inner = gpt2::build(v, m, flavour, source)?;
        let eot = inner.token_to_id("<|endoftext|>");
        let gpt2 = flavour == gpt2::Flavour::Gpt2;
        Ok(Draft {
            inner,
            format: TokenizerFormat::VocabMerges,
            source: source.to_string(),
            bos: if gpt2 { eot } else { None },
            eos: eot,
            eos_extra: Vec::new(),
            add_bos: Some(false),
            add_eos: Some(false),
            aliases: Vec::new(),
        })
    }

    /// Builds a tokenizer from the `tokenizer.json` bytes alone (no side configs).
    pub fn from_tokenizer_json_bytes(data: &[u8]) -> Result<Tokenizer, TextError> {
        Self::finish(Self::draft_tokenizer_json(data, "tokenizer.json")?, None)
    }

    /// Builds a tokenizer from a `tokenizer.model` (SentencePiece or tiktoken, detected by content).
    pub fn from_model_bytes(data: &[u8]) -> Result<Tokenizer, TextError> {
        Self::finish(Self::draft_model_file(data, "tokenizer.model", None)?, None)
    }

    /// Builds a GPT-2 style byte-level BPE tokenizer from the texts of `vocab.json` and `merges.txt`.
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Tokenizer, TextError> {
        let v = gpt2::parse_vocab(vocab_json, "vocab.json")?;
        let m = gpt2::parse_merges(merges_txt, "merges.txt")?;
        Self::finish(Self::draft_vocab_merges(v, m, gpt2::Flavour::Gpt2, "vocab.json")?, None)
    }

    /// Builds a tokenizer from GGUF vocabulary metadata, the way llama.cpp tokenizes.
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Tokenizer, TextError> {
        let c = gguf::convert(v)?;
        let draft = Draft {
            inner: c.tok,
            format: TokenizerFormat::Gguf,
            source: "GGUF vocab".into(),
            bos: c.bos,
            eos: c.eos,
            eos_extra: c.eos_set,
            add_bos: Some(c.add_bos),
            add_eos: Some(c.add_eos),
            aliases: c.aliases,
        };
        Self::finish(draft, None)
    }

    /// Applies the side configs and computes the lookup tables.
    fn finish(mut d: Draft, cfg: Option<&HfConfig>) -> Result<Tokenizer, TextError> {
        let source = d.source.clone();
        let al = Aliases::new(&d.aliases);
        let mut named_special: Vec<u32> = Vec::new();
        let mut bos_token: Option<String> = None;
        let mut eos_token: Option<String> = None;
        let mut bos = d.bos;
        let mut eos_ids: Vec<u32> = Vec::new();
        let mut add_bos = d.add_bos;
        let mut add_eos = d.add_eos;
        let mut cfg_bos_explicit = false;

        if let Some(cfg) = cfg {
            // Tokens of added_tokens_decoder missing from the tokenizer are added at their ids.
            let mut missing: Vec<FixedToken> = cfg
                .added_tokens
                .iter()
                .filter(|t| d.inner.token_to_id(&t.content).is_none())
                .map(|t| FixedToken {
                    id: t.id,
                    content: t.content.clone(),
                    special: t.special,
                    lstrip: t.lstrip,
                    rstrip: t.rstrip,
                    normalized: t.normalized,
                    single_word: t.single_word,
                })
                .collect();
            build::add_fixed_tokens(&mut d.inner, &source, &mut missing)?;
            for t in &cfg.added_tokens {
                if t.special {
                    named_special.push(t.id);
                }
            }
            let lookup = |n: &Named| match n {
                Named::Token(s) => d.inner.token_to_id(s).map(|id| (al.real(id), s.clone())),
                _ => None,
            };
            match &cfg.bos_token {
                Named::Null => {
                    bos = None;
                    cfg_bos_explicit = true;
                }
                n @ Named::Token(_) => {
                    if let Some((id, s)) = lookup(n) {
                        bos = Some(id);
                        bos_token = Some(s);
                        cfg_bos_explicit = true;
                    }
                }
                Named::Absent => {}
            }
            if let Some((id, s)) = lookup(&cfg.eos_token) {
                eos_ids.push(id);
                eos_token = Some(s);
            }
            for n in [&cfg.unk_token, &cfg.pad_token, &cfg.bos_token, &cfg.eos_token] {
                if let Some((id, _)) = lookup(n) {
                    named_special.push(id);
                }
            }
            for s in &cfg.additional_special {
                if let Some(id) = d.inner.token_to_id(s) {
                    named_special.push(al.real(id));
                }
            }
            if cfg.add_bos_token.is_some() {
                add_bos = cfg.add_bos_token;
            }
            if cfg.add_eos_token.is_some() {
                add_eos = cfg.add_eos_token;
            }
            if !cfg_bos_explicit && bos.is_none() {
                bos = cfg.gen_bos_id.or(cfg.model_bos_id);
            }
            if eos_ids.is_empty() {
                eos_ids.extend(d.eos);
            }
            eos_ids.extend(d.eos_extra.iter().copied());
            eos_ids.extend(cfg.gen_eos_ids.iter().copied());
            eos_ids.extend(cfg.model_eos_ids.iter().copied());
        } else {
            eos_ids.extend(d.eos);
            eos_ids.extend(d.eos_extra.iter().copied());
        }
        let mut seen = Vec::new();
        eos_ids.retain(|id| {
            let new = !seen.contains(id);
            seen.push(*id);
            new
        });

        let mut inner = d.inner;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| TextError::InvalidTokenizer {
            source_name: source.clone(),
            message: format!("cannot disable truncation: {e}"),
        })?;

        let vocab = inner.get_vocab(true);
        let vocab: std::collections::HashMap<String, u32> = vocab.into_iter().map(|(t, id)| (t, al.real(id))).collect();
        let vocab_size = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        // Ids must be dense enough for per-id tables (guards against `{"a": 4000000000}`).
        if vocab_size > 2 * vocab.len() + 65_536 {
            return Err(TextError::InvalidTokenizer {
                source_name: source,
                message: format!("token ids are too sparse: {} tokens but ids up to {}", vocab.len(), vocab_size - 1),
            });
        }
        let in_vocab = |id: u32| (id as usize) < vocab_size;
        if let Some(b) = bos.filter(|&b| !in_vocab(b)) {
            return Err(TextError::InvalidTokenizer {
                source_name: source,
                message: format!("BOS id {b} is outside the vocabulary of {vocab_size} tokens"),
            });
        }
        if let Some(e) = eos_ids.iter().find(|&&e| !in_vocab(e)) {
            return Err(TextError::InvalidTokenizer {
                source_name: source,
                message: format!("EOS id {e} is outside the vocabulary of {vocab_size} tokens"),
            });
        }
        // What the post-processor adds, probed on empty input. A tokenizer.json without side configs
        // takes its BOS / EOS from there (the special tokens the template puts around the text).
        let (pp_bos, pp_eos) = if inner.get_post_processor().is_some() {
            let probe = guard("encoding", || inner.encode_fast("", true))
                .map_err(|e| TextError::InvalidTokenizer { source_name: source.clone(), message: e })?;
            let ids: Vec<u32> = probe.get_ids().iter().map(|&i| al.real(i)).collect();
            let added = inner.get_added_tokens_decoder();
            let is_special = |id: u32| added.get(&al.alias(id)).is_some_and(|t| t.special);
            if bos.is_none() && !cfg_bos_explicit {
                bos = ids.first().copied().filter(|&i| is_special(i));
            }
            if eos_ids.is_empty() && ids.len() >= 2 {
                eos_ids.extend(ids.last().copied().filter(|&i| is_special(i)));
            }
            let pb = bos.is_some() && ids.first().copied() == bos;
            let pe = ids.last().is_some_and(|l| eos_ids.contains(l)) && !(pb && ids.len() == 1);
            (pb, pe)
        } else {
            (false, false)
        };
        if bos_token.is_none() {
            bos_token = bos.and_then(|b| inner.id_to_token(al.alias(b)));
        }
        if eos_token.is_none() {
            eos_token = eos_ids.first().and_then(|&e| inner.id_to_token(al.alias(e)));
        }

        let add_bos = bos.is_some() && add_bos.unwrap_or(pp_bos);
        let add_eos = !eos_ids.is_empty() && add_eos.unwrap_or(pp_eos);

        let mut special = vec![false; vocab_size];
        for (id, tok) in inner.get_added_tokens_decoder() {
            let id = al.real(id);
            if tok.special && in_vocab(id) {
                special[id as usize] = true;
            }
        }
        let skipped = special.clone();
        for id in named_special {
            if in_vocab(id) {
                special[id as usize] = true;
            }
        }
        let decoder_json = inner.get_decoder().and_then(|dec| serde_json::to_string(dec).ok()).unwrap_or_default();
        let mut byte_tokens = vec![false; vocab_size];
        if decoder_json.contains("ByteFallback") {
            for (t, id) in &vocab {
                if is_byte_token(t) {
                    byte_tokens[*id as usize] = true;
                }
            }
        }

        Ok(Tokenizer {
            inner,
            plain: OnceLock::new(),
            format: d.format,
            source,
            vocab_size,
            bos,
            bos_token,
            eos_token,
            eos_ids,
            add_bos,
            add_eos,
            pp_bos,
            pp_eos,
            special,
            skipped,
            byte_tokens,
            aliases: al,
        })
    }

    fn plain(&self) -> &HfTokenizer {
        self.plain.get_or_init(|| {
            let mut t = self.inner.clone();
            t.set_encode_special_tokens(true);
            t
        })
    }

    /// Encodes text. `add_special` adds BOS/EOS as the model wants; `parse_special` recognises
    /// special-token text (otherwise it is tokenized as plain text).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>, TextError> {
        let tk = if parse_special { &self.inner } else { self.plain() };
        let enc = guard("encoding", || tk.encode_fast(text, add_special)).map_err(TextError::Encode)?;
        let mut ids = enc.get_ids().to_vec();
        if !self.aliases.is_empty() {
            for id in &mut ids {
                *id = self.aliases.real(*id);
            }
        }
        if add_special {
            if let Some(b) = self.bos {
                if self.add_bos && !self.pp_bos {
                    ids.insert(0, b);
                } else if !self.add_bos && self.pp_bos && ids.first() == Some(&b) {
                    ids.remove(0);
                }
            }
            if let Some(&e) = self.eos_ids.first() {
                if self.add_eos && !self.pp_eos {
                    ids.push(e);
                } else if !self.add_eos && self.pp_eos && ids.last().is_some_and(|l| self.eos_ids.contains(l)) {
                    ids.pop();
                }
            }
        }
        Ok(ids)
    }

    /// Checks that an id names a token.
    pub(crate) fn check_id(&self, id: u32) -> Result<(), TextError> {
        if (id as usize) < self.vocab_size && self.inner.id_to_token(self.aliases.alias(id)).is_some() {
            Ok(())
        } else {
            Err(TextError::TokenOutOfRange { id, vocab_size: self.vocab_size })
        }
    }

    /// Decodes ids already checked with [`Tokenizer::check_id`].
    pub(crate) fn decode_checked(&self, ids: &[u32], skip_special: bool) -> Result<String, TextError> {
        if self.aliases.is_empty() {
            guard("decoding", || self.inner.decode(ids, skip_special)).map_err(TextError::Decode)
        } else {
            let mapped: Vec<u32> = ids.iter().map(|&id| self.aliases.alias(id)).collect();
            guard("decoding", || self.inner.decode(&mapped, skip_special)).map_err(TextError::Decode)
        }
    }

    /// Decodes ids to text; `skip_special` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TextError> {
        for &id in ids {
            self.check_id(id)?;
        }
        self.decode_checked(ids, skip_special)
    }

    /// Number of ids (one past the highest token id, added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Every end-of-sequence id (tokenizer EOS first, then generation/model config EOS ids).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The BOS token text.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The (first) EOS token text.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The id of a token text (model vocabulary or added token).
    pub fn token_to_id(&self, s: &str) -> Option<u32> {
        self.inner.token_to_id(s).map(|id| self.aliases.real(id))
    }

    /// The text of a token id as stored in the vocabulary (byte-level / `▁` forms are not decoded).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        if id as usize >= self.vocab_size {
            return None;
        }
        self.inner.id_to_token(self.aliases.alias(id))
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether an id is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Whether `decode(.., skip_special = true)` drops this id.
    pub(crate) fn is_skipped(&self, id: u32) -> bool {
        self.skipped.get(id as usize).copied().unwrap_or(false)
    }

    /// Whether an id is a byte-fallback token (`<0xXX>` decoded as one raw byte).
    pub fn is_byte_token(&self, id: u32) -> bool {
        self.byte_tokens.get(id as usize).copied().unwrap_or(false)
    }

    /// The format this tokenizer was loaded from.
    pub fn format(&self) -> TokenizerFormat {
        self.format
    }

    /// The file or source it was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The underlying `tokenizers` pipeline.
    pub fn hf(&self) -> &HfTokenizer {
        &self.inner
    }
}
