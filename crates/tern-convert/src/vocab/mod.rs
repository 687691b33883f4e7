//! Hugging Face tokenizer files → GGUF `tokenizer.*` metadata, as llama.cpp's `convert_hf_to_gguf.py`
//! writes it (`TextModel._set_vocab_sentencepiece`, `_set_vocab_llama_hf`, `_set_vocab_gpt2`,
//! `get_vocab_base`, `get_vocab_base_pre` and gguf-py's `SpecialVocab`, llama.cpp as vendored by
//! llama-cpp-python 0.3.36).
//!
//! The source is chosen like `LlamaModel.set_vocab`: a SentencePiece `tokenizer.model` (→
//! `tokenizer.ggml.model = "llama"`, pieces, scores and types), else a `tokenizer.json` holding a
//! byte-fallback BPE with a `Sequence` decoder (Llama-2 style fast tokenizer → `"llama"`), else a
//! byte-level BPE `tokenizer.json` or `vocab.json` + `merges.txt` (→ `"gpt2"` with merges and the
//! pre-tokenizer name). Without tokenizer files the model gets `tokenizer.ggml.model = "none"`.
//!
//! The pre-tokenizer name is llama.cpp's fingerprint: SHA-256 of Python's `str()` of the ids the
//! tokenizer gives a fixed check text ([`pre_hashes`]); the ids come from tern-text's tokenizer, which
//! reproduces Hugging Face `tokenizers`. An unknown fingerprint falls back to recognising the
//! `tokenizer.json` pre-tokenizer regex (GPT-2, Llama 3, Qwen2), else the conversion stops and asks
//! for `--vocab-pre`, as llama.cpp's converter stops.
//!
//! Differences from llama.cpp's converter: vocabularies shorter than the model's `vocab_size` are
//! padded with `[PAD{i}]` UNUSED tokens in every path (llama.cpp pads only some, and its file then does
//! not load); Llama-2 style `tokenizer.json` vocabularies get SentencePiece-style scores (`-rank` of the
//! merge forming each piece) instead of llama.cpp's placeholder −1000, without which llama.cpp's SPM
//! tokenizer merges in another order than transformers; added tokens are not re-normalised through
//! `decode(encode(token))`.

pub mod pre_hashes;
pub(crate) mod special;
pub(crate) mod spm;

use crate::error::{ConvertError, Result};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use special::{ChatTemplate, Special};
use std::collections::HashMap;
use std::path::Path;
use tern_gguf::{Array, Value};

/// llama.cpp token types (`gguf.TokenType`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}
use token_type::*;

/// Options for the vocabulary.
#[derive(Clone, Debug, Default)]
pub struct VocabOptions {
    /// The GGUF architecture (`llama` also gets `tokenizer.ggml.add_space_prefix` from
    /// `tokenizer_config.json` `add_prefix_space`, as `LlamaModel.set_vocab` does).
    pub arch: String,
    /// Force `tokenizer.ggml.pre` for a byte-level BPE vocabulary.
    pub pre: Option<String>,
    /// Where the model's `config.json` (special token ids) is; default: the tokenizer directory.
    pub config_dir: Option<std::path::PathBuf>,
}

/// The tokenizer metadata to write, in order, plus log lines.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    pub kv: Vec<(String, Value)>,
    pub notes: Vec<String>,
    /// One line for the log, e.g. `gpt2 (pre llama-bpe), 128256 tokens, 280147 merges, chat template`.
    pub summary: String,
}

/// Builds the vocabulary metadata from the tokenizer files in `dir` for a model of `n_vocab` tokens.
pub fn from_dir(dir: &Path, n_vocab: usize, opts: &VocabOptions) -> Result<Vocab> {
    let tm = dir.join("tokenizer.model");
    let tj_path = dir.join("tokenizer.json");
    let cfg_dir = opts.config_dir.as_deref().unwrap_or(dir);
    let mut v = Vocab::default();
    if opts.arch == "llama" {
        if let Some(Json::Bool(b)) =
            read(&dir.join("tokenizer_config.json"))?.as_ref().and_then(|c| c.get("add_prefix_space"))
        {
            v.kv.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(*b)));
        }
    }
    let tm_data =
        if tm.is_file() { Some(std::fs::read(&tm).map_err(|e| ConvertError::io(&tm, "read", e))?) } else { None };
    if let Some(data) = tm_data.as_ref().filter(|d| !spm::looks_like_tiktoken(d)) {
        spm_vocab(dir, cfg_dir, &tm, data, n_vocab, &mut v)?;
    } else if let Some(tj) = read(&tj_path)? {
        let model = tj.get("model").cloned().unwrap_or(Json::Null);
        let mtype = model.get("type").and_then(Json::as_str).unwrap_or("");
        let byte_fallback = model.get("byte_fallback").and_then(Json::as_bool).unwrap_or(false);
        let seq_decoder = tj.get("decoder").and_then(|d| d.get("type")).and_then(Json::as_str) == Some("Sequence");
        match mtype {
            "BPE" if byte_fallback && seq_decoder => llama_hf_vocab(dir, cfg_dir, &tj, n_vocab, &mut v)?,
            "BPE" => {
                let base = json_vocab(&model, &tj_path)?;
                let added = added_tokens(&tj, dir)?;
                bpe_vocab(dir, base, added, n_vocab, Some(&tj), opts, &mut v)?;
            }
            other => {
                return Err(ConvertError::tokenizer(
                    tj_path.display(),
                    format!(
                    "tokenizer model type {other:?} is not supported (llama.cpp's llama/gpt2 vocabularies need BPE)"
                ),
                ))
            }
        }
    } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
        let vj = dir.join("vocab.json");
        let base = match read(&vj)? {
            Some(j) => json_map(&j, &vj)?,
            None => HashMap::new(),
        };
        let mut added = added_tokens(&Json::Null, dir)?;
        if let Some(Json::Object(a)) = read(&dir.join("added_tokens.json"))? {
            for (content, id) in a {
                if let Some(id) = id.as_u64() {
                    if !added.iter().any(|t| t.id == id) {
                        added.push(AddedTok { id, content, special: false });
                    }
                }
            }
        }
        bpe_vocab(dir, base, added, n_vocab, None, opts, &mut v)?;
    } else if tm_data.is_some() {
        return Err(ConvertError::tokenizer(
            tm.display(),
            "a tiktoken tokenizer.model cannot be written as GGUF vocabulary; provide the tokenizer.json of the model",
        ));
    } else {
        v.kv.push(("tokenizer.ggml.model".into(), "none".into()));
        v.summary = "none (no tokenizer files found; the GGUF has no vocabulary)".into();
        v.notes.push(format!(
            "{}: no tokenizer.model, tokenizer.json or vocab.json + merges.txt: writing tokenizer.ggml.model = none",
            dir.display()
        ));
    }
    Ok(v)
}

fn read(path: &Path) -> Result<Option<Json>> {
    special::read_json(path).map_err(|e| ConvertError::tokenizer(path.display(), e))
}

fn json_map(j: &Json, path: &Path) -> Result<HashMap<String, u64>> {
    let obj =
        j.as_object().ok_or_else(|| ConvertError::tokenizer(path.display(), "vocabulary is not a JSON object"))?;
    obj.iter()
        .map(|(k, v)| {
            v.as_u64().map(|id| (k.clone(), id)).ok_or_else(|| {
                ConvertError::tokenizer(
                    path.display(),
                    format!("token {k:?} has id {v}, expected a non-negative integer"),
                )
            })
        })
        .collect()
}

fn json_vocab(model: &Json, path: &Path) -> Result<HashMap<String, u64>> {
    match model.get("vocab") {
        Some(v) => json_map(v, path),
        None => Err(ConvertError::tokenizer(path.display(), "model.vocab is missing")),
    }
}

#[derive(Clone, Debug)]
struct AddedTok {
    id: u64,
    content: String,
    special: bool,
}

/// Added tokens of tokenizer.json, then those of `tokenizer_config.json` `added_tokens_decoder` whose
/// ids are new (transformers merges both).
fn added_tokens(tj: &Json, dir: &Path) -> Result<Vec<AddedTok>> {
    let mut out: Vec<AddedTok> = Vec::new();
    let parse = |a: &Json, id: Option<u64>| -> Option<AddedTok> {
        Some(AddedTok {
            id: id.or_else(|| a.get("id").and_then(Json::as_u64))?,
            content: a.get("content").and_then(Json::as_str)?.to_string(),
            special: a.get("special").and_then(Json::as_bool).unwrap_or(false),
        })
    };
    if let Some(list) = tj.get("added_tokens").and_then(Json::as_array) {
        out.extend(list.iter().filter_map(|a| parse(a, None)));
    }
    if let Some(Json::Object(dec)) =
        read(&dir.join("tokenizer_config.json"))?.as_ref().and_then(|c| c.get("added_tokens_decoder"))
    {
        for (k, a) in dec {
            let Ok(id) = k.parse::<u64>() else { continue };
            if !out.iter().any(|t| t.id == id) {
                out.extend(parse(a, Some(id)));
            }
        }
    }
    Ok(out)
}

/// gguf-py's `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

fn too_big(path: &Path, id: u64, n_vocab: usize) -> ConvertError {
    ConvertError::tokenizer(
        path.display(),
        format!(
            "token id {id} is outside the model's vocab_size {n_vocab} (config.json); the tokenizer does not fit \
             the model"
        ),
    )
}

/// `get_vocab_base` + `_set_vocab_gpt2`.
fn bpe_vocab(
    dir: &Path,
    base: HashMap<String, u64>,
    added: Vec<AddedTok>,
    n_vocab: usize,
    tj: Option<&Json>,
    opts: &VocabOptions,
    v: &mut Vocab,
) -> Result<()> {
    let mut reverse: Vec<Option<String>> = vec![None; n_vocab];
    let mut sorted: Vec<(&String, &u64)> = base.iter().collect();
    sorted.sort_by_key(|&(_, id)| *id);
    for (tok, &id) in sorted {
        *reverse.get_mut(id as usize).ok_or_else(|| too_big(dir, id, n_vocab))? = Some(tok.clone());
    }
    let mut added_by_content: HashMap<&str, &AddedTok> = HashMap::new();
    for a in &added {
        *reverse.get_mut(a.id as usize).ok_or_else(|| too_big(dir, a.id, n_vocab))? = Some(a.content.clone());
        added_by_content.insert(a.content.as_str(), a);
    }
    let mut tokens = Vec::with_capacity(n_vocab);
    let mut types = Vec::with_capacity(n_vocab);
    let mut padded = 0usize;
    for (i, t) in reverse.into_iter().enumerate() {
        match t {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
                padded += 1;
            }
            Some(t) => match added_by_content.get(t.as_str()) {
                Some(a) if a.special || looks_special(&t) => {
                    tokens.push(t);
                    types.push(CONTROL);
                }
                Some(_) => {
                    tokens.push(t.replace('\u{2581}', " "));
                    types.push(USER_DEFINED);
                }
                None => {
                    tokens.push(t);
                    types.push(NORMAL);
                }
            },
        }
    }
    let (pre, how) = detect_pre(dir, tj, opts)?;
    v.notes.push(format!("tokenizer.ggml.pre = {pre:?} ({how})"));
    if padded > 0 {
        v.notes.push(format!("{padded} ids without a token were filled with [PAD{{i}}] (UNUSED)"));
    }
    let special = Special::load(dir, opts.config_dir.as_deref().unwrap_or(dir), None, true)
        .map_err(|e| ConvertError::tokenizer(dir.display(), e))?;
    if special.merges.is_empty() {
        v.notes.push("no BPE merges found: the vocabulary may not tokenize".into());
    }
    v.summary = format!("gpt2 (pre {pre}), {} tokens, {} merges", tokens.len(), special.merges.len());
    v.kv.push(("tokenizer.ggml.model".into(), "gpt2".into()));
    v.kv.push(("tokenizer.ggml.pre".into(), pre.into()));
    v.kv.push(("tokenizer.ggml.tokens".into(), tokens.into()));
    v.kv.push(("tokenizer.ggml.token_type".into(), types.into()));
    add_special(special, v);
    Ok(())
}

/// `LlamaHfVocab` (`gguf-py/gguf/vocab.py`): a Llama-2 style byte-fallback BPE `tokenizer.json`.
fn llama_hf_vocab(dir: &Path, cfg_dir: &Path, tj: &Json, n_vocab: usize, v: &mut Vocab) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let model = tj.get("model").cloned().unwrap_or(Json::Null);
    let base = json_vocab(&model, &path)?;
    let n_base = base.len();
    let mut reverse: Vec<Option<String>> = vec![None; n_base];
    for (tok, &id) in &base {
        match reverse.get_mut(id as usize) {
            Some(slot) => *slot = Some(tok.clone()),
            None => {
                return Err(ConvertError::tokenizer(
                    path.display(),
                    format!("model.vocab ids are not 0..{n_base}: token {tok:?} has id {id}"),
                ))
            }
        }
    }
    let added = added_tokens(tj, dir)?;
    let cfg = read(&dir.join("tokenizer_config.json"))?;
    // transformers' all_special_ids: the named special tokens plus additional_special_tokens, plus (tern)
    // added tokens flagged special.
    let mut special_texts: Vec<String> = Vec::new();
    if let Some(c) = &cfg {
        for k in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
            match c.get(k) {
                Some(Json::String(s)) => special_texts.push(s.clone()),
                Some(Json::Object(o)) => {
                    special_texts.extend(o.get("content").and_then(Json::as_str).map(str::to_string))
                }
                _ => {}
            }
        }
        for k in ["additional_special_tokens", "extra_special_tokens"] {
            if let Some(Json::Array(list)) = c.get(k) {
                special_texts.extend(list.iter().filter_map(|x| match x {
                    Json::String(s) => Some(s.clone()),
                    Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
                    _ => None,
                }));
            }
        }
    }
    special_texts.extend(added.iter().filter(|a| a.special).map(|a| a.content.clone()));
    let is_special = |t: &str| special_texts.iter().any(|s| s == t);
    let mut tokens = Vec::new();
    let mut types = Vec::new();
    for (id, t) in reverse.into_iter().enumerate() {
        let t =
            t.ok_or_else(|| ConvertError::tokenizer(path.display(), format!("model.vocab has no token with id {id}")))?;
        let ty = if is_byte_token(&t) {
            BYTE
        } else if is_special(&t) {
            CONTROL
        } else {
            NORMAL
        };
        tokens.push(t);
        types.push(ty);
    }
    let mut extra: Vec<&AddedTok> = added.iter().filter(|a| a.id as usize >= n_base).collect();
    extra.sort_by_key(|a| a.id);
    for a in extra {
        if a.id as usize != tokens.len() {
            return Err(ConvertError::tokenizer(
                path.display(),
                format!(
                    "added token {:?} has id {}, expected {} (added ids must follow the base vocabulary)",
                    a.content,
                    a.id,
                    tokens.len()
                ),
            ));
        }
        tokens.push(a.content.clone());
        types.push(if is_special(&a.content) { CONTROL } else { USER_DEFINED });
    }
    if tokens.len() > n_vocab {
        return Err(too_big(&path, tokens.len() as u64 - 1, n_vocab));
    }
    let n_tok = tokens.len();
    // llama.cpp's LlamaHfVocab writes the placeholder score -1000 for every token, and llama.cpp's SPM
    // tokenizer, which merges the adjacent pair whose joined piece scores highest, then merges in a
    // different order than the BPE merge list (tokenizing unlike transformers). tern writes the score
    // SentencePiece BPE models have: -rank of the merge that forms the piece, so the highest score is the
    // first merge, exactly BPE's priority; pieces no merge forms keep -1000.
    let mut scores = vec![-1000.0f32; tokens.len()];
    let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let merges = model.get("merges").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for (rank, m) in merges.iter().enumerate() {
        let joined = match m {
            Json::String(s) => s.split_once(' ').map(|(a, b)| format!("{a}{b}")),
            Json::Array(p) if p.len() == 2 => p[0].as_str().zip(p[1].as_str()).map(|(a, b)| format!("{a}{b}")),
            _ => None,
        };
        let Some(joined) = joined else {
            return Err(ConvertError::tokenizer(path.display(), format!("model.merges[{rank}] is not a merge")));
        };
        if let Some(&id) = index.get(joined.as_str()) {
            if scores[id] == -1000.0 && types[id] == NORMAL {
                scores[id] = -(rank as f32);
            }
        }
    }
    pad(&mut tokens, &mut types, None, n_vocab, v);
    scores.resize(tokens.len(), -1000.0);
    let special = Special::load(dir, cfg_dir, Some(tokens.len()), false)
        .map_err(|e| ConvertError::tokenizer(dir.display(), e))?;
    v.summary = format!("llama (byte-fallback BPE tokenizer.json), {n_tok} tokens");
    v.kv.push(("tokenizer.ggml.model".into(), "llama".into()));
    v.kv.push(("tokenizer.ggml.pre".into(), "default".into()));
    v.kv.push(("tokenizer.ggml.tokens".into(), tokens.into()));
    v.kv.push(("tokenizer.ggml.scores".into(), scores.into()));
    v.kv.push(("tokenizer.ggml.token_type".into(), types.into()));
    add_special(special, v);
    Ok(())
}

fn is_byte_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 6 && b.starts_with(b"<0x") && b[5] == b'>' && b[3].is_ascii_hexdigit() && b[4].is_ascii_hexdigit()
}

fn pad(tokens: &mut Vec<String>, types: &mut Vec<i32>, scores: Option<&mut Vec<f32>>, n_vocab: usize, v: &mut Vocab) {
    let n = tokens.len();
    if n >= n_vocab {
        return;
    }
    for i in n..n_vocab {
        tokens.push(format!("[PAD{i}]"));
        types.push(UNUSED);
    }
    if let Some(s) = scores {
        s.resize(n_vocab, -1000.0);
    }
    v.notes.push(format!("the tokenizer has {n} tokens, the model {n_vocab}: padded with [PAD{{i}}] (UNUSED)"));
}

/// `_create_vocab_sentencepiece` + `_set_vocab_sentencepiece`.
fn spm_vocab(dir: &Path, cfg_dir: &Path, tm: &Path, data: &[u8], n_vocab: usize, v: &mut Vocab) -> Result<()> {
    let m = spm::parse(data, &tm.display().to_string())?;
    if m.model_type != 2 {
        let kind = match m.model_type {
            1 => "UNIGRAM",
            3 => "WORD",
            4 => "CHAR",
            _ => "unknown",
        };
        return Err(ConvertError::tokenizer(
            tm.display(),
            format!(
                "SentencePiece model type {kind} ({}): llama.cpp's \"llama\" vocabulary needs a BPE model",
                m.model_type
            ),
        ));
    }
    if m.remove_extra_whitespaces {
        v.notes.push(
            "tokenizer.model collapses repeated whitespace (remove_extra_whitespaces); llama.cpp's SPM tokenizer \
             does not, so texts with runs of spaces tokenize differently there"
                .into(),
        );
    }
    if !m.add_dummy_prefix {
        v.notes.push(
            "tokenizer.model has add_dummy_prefix = false; llama.cpp adds a leading space unless \
             tokenizer.ggml.add_space_prefix is false (tokenizer_config.json add_prefix_space)"
                .into(),
        );
    }
    let mut tokens: Vec<String> = (0..n_vocab).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n_vocab];
    let mut types = vec![UNUSED; n_vocab];
    for (id, p) in m.pieces.iter().enumerate() {
        if id >= n_vocab {
            v.notes.push(format!(
                "tokenizer.model pieces from id {id} are outside the model's vocab_size {n_vocab}; ignored"
            ));
            break;
        }
        tokens[id] = p.piece.clone();
        scores[id] = p.score;
        types[id] = match p.kind {
            spm::PieceType::Unknown => UNKNOWN,
            spm::PieceType::Control => CONTROL,
            spm::PieceType::Unused => UNUSED,
            spm::PieceType::Byte => BYTE,
            spm::PieceType::Normal | spm::PieceType::UserDefined => NORMAL,
        };
    }
    if let Some(Json::Object(a)) = read(&dir.join("added_tokens.json"))? {
        for (content, id) in a {
            let Some(id) = id.as_u64() else { continue };
            if id as usize >= n_vocab {
                v.notes.push(format!("added token {content:?} id {id} is outside the vocabulary; ignored"));
                continue;
            }
            tokens[id as usize] = content.clone();
            scores[id as usize] = -1000.0;
            types[id as usize] = USER_DEFINED;
        }
    }
    if let Some(Json::Object(dec)) =
        read(&dir.join("tokenizer_config.json"))?.as_ref().and_then(|c| c.get("added_tokens_decoder")).cloned()
    {
        for (k, a) in dec {
            let (Ok(id), Some(content)) = (k.parse::<usize>(), a.get("content").and_then(Json::as_str)) else {
                continue;
            };
            if id >= n_vocab {
                v.notes.push(format!("added token {content:?} id {id} is outside the vocabulary; ignored"));
                continue;
            }
            if a.get("special").and_then(Json::as_bool).unwrap_or(false) || looks_special(content) {
                tokens[id] = content.to_string();
                types[id] = CONTROL;
            } else {
                tokens[id] = content.replace('\u{2581}', " ");
                types[id] = USER_DEFINED;
            }
            scores[id] = -1000.0;
        }
    }
    let special = Special::load(dir, cfg_dir, Some(tokens.len()), false)
        .map_err(|e| ConvertError::tokenizer(dir.display(), e))?;
    v.summary = format!("llama (SentencePiece tokenizer.model), {} pieces", m.pieces.len().min(n_vocab));
    v.kv.push(("tokenizer.ggml.model".into(), "llama".into()));
    v.kv.push(("tokenizer.ggml.pre".into(), "default".into()));
    v.kv.push(("tokenizer.ggml.tokens".into(), tokens.into()));
    v.kv.push(("tokenizer.ggml.scores".into(), scores.into()));
    v.kv.push(("tokenizer.ggml.token_type".into(), types.into()));
    add_special(special, v);
    Ok(())
}

/// `SpecialVocab.add_to_gguf`.
fn add_special(s: Special, v: &mut Vocab) {
    v.notes.extend(s.notes);
    if !s.merges.is_empty() {
        v.kv.push(("tokenizer.ggml.merges".into(), s.merges.into()));
    }
    for (typ, id) in s.ids {
        let key = match typ.as_str() {
            "bos" => "bos_token_id",
            "eos" => "eos_token_id",
            "unk" => "unknown_token_id",
            "sep" => "seperator_token_id",
            "pad" => "padding_token_id",
            "mask" => "mask_token_id",
            "eot" => "eot_token_id",
            "eom" => "eom_token_id",
            _ => continue, // cls: gguf-py has no key for it
        };
        v.kv.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
    }
    for (typ, add) in s.add {
        if matches!(typ.as_str(), "bos" | "eos" | "sep") {
            v.kv.push((format!("tokenizer.ggml.add_{typ}_token"), Value::Bool(add)));
        }
    }
    match s.chat_template {
        Some(ChatTemplate::One(t)) => {
            v.kv.push(("tokenizer.chat_template".into(), t.into()));
            v.summary.push_str(", chat template");
        }
        Some(ChatTemplate::Named(list)) => {
            let mut names = Vec::new();
            let mut default = None;
            for (name, t) in list {
                if name == "default" {
                    default = Some(t);
                } else {
                    v.kv.push((format!("tokenizer.chat_template.{name}"), t.into()));
                    names.push(name);
                }
            }
            if !names.is_empty() {
                v.kv.push((
                    "tokenizer.chat_templates".into(),
                    Value::Array(Array::String(names.into_iter().map(Into::into).collect())),
                ));
            }
            if let Some(t) = default {
                v.kv.push(("tokenizer.chat_template".into(), t.into()));
                v.summary.push_str(", chat template");
            }
        }
        None => {}
    }
}

/// Python's `str(list_of_ints)`.
fn py_list(ids: &[u32]) -> String {
    let inner: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// llama.cpp's fingerprint of a tokenizer: SHA-256 hex of `str(tokenizer.encode(CHKTXT))`.
pub fn pre_fingerprint(ids: &[u32]) -> String {
    let h = Sha256::digest(py_list(ids).as_bytes());
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The pre-tokenizer name for a fingerprint, if llama.cpp knows it.
pub fn pre_for_fingerprint(hash: &str) -> Option<&'static str> {
    pre_hashes::PRE_HASHES.binary_search_by(|(h, _)| (*h).cmp(hash)).ok().map(|i| pre_hashes::PRE_HASHES[i].1)
}

const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Recognises the common byte-level pre-tokenizers of a tokenizer.json by their regex.
fn pre_from_regex(tj: &Json) -> Option<&'static str> {
    let pt = tj.get("pre_tokenizer")?;
    let byte_level_regex = |p: &Json| {
        p.get("type").and_then(Json::as_str) == Some("ByteLevel")
            && p.get("use_regex").and_then(Json::as_bool).unwrap_or(true)
    };
    if byte_level_regex(pt) {
        return Some("gpt-2");
    }
    let list = pt.get("pretokenizers").and_then(Json::as_array)?;
    match list.as_slice() {
        [one] if byte_level_regex(one) => Some("gpt-2"),
        [split, bl] if bl.get("type").and_then(Json::as_str) == Some("ByteLevel") => {
            let regex = split.get("pattern").and_then(|p| p.get("Regex")).and_then(Json::as_str)?;
            let ignore_merges =
                tj.get("model").and_then(|m| m.get("ignore_merges")).and_then(Json::as_bool).unwrap_or(false);
            match regex {
                LLAMA3_REGEX if ignore_merges => Some("llama-bpe"),
                LLAMA3_REGEX => Some("smaug-bpe"),
                QWEN2_REGEX => Some("qwen2"),
                GPT2_REGEX => Some("gpt-2"),
                _ => None,
            }
        }
        _ => None,
    }
}

fn detect_pre(dir: &Path, tj: Option<&Json>, opts: &VocabOptions) -> Result<(String, String)> {
    if let Some(p) = &opts.pre {
        return Ok((p.clone(), "given with --vocab-pre".into()));
    }
    let why = match tern_text::Tokenizer::from_path(dir) {
        Ok(tok) => match tok.encode(pre_hashes::CHKTXT, true, true) {
            Ok(ids) => {
                let h = pre_fingerprint(&ids);
                if let Some(name) = pre_for_fingerprint(&h) {
                    return Ok((name.to_string(), format!("llama.cpp fingerprint {}", &h[..16])));
                }
                format!("fingerprint {h} is not in llama.cpp's table")
            }
            Err(e) => format!("could not encode the check text: {e}"),
        },
        Err(e) => format!("could not load the tokenizer to fingerprint it: {e}"),
    };
    if let Some(name) = tj.and_then(pre_from_regex) {
        return Ok((name.to_string(), format!("{why}; recognised from the tokenizer.json pre-tokenizer regex")));
    }
    Err(ConvertError::tokenizer(
        dir.display(),
        format!(
            "the BPE pre-tokenizer was not recognised ({why}); pass --vocab-pre NAME with the llama.cpp \
             pre-tokenizer that splits text like this tokenizer (e.g. gpt-2, llama-bpe, qwen2)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_python_str_of_list() {
        // Python: hashlib.sha256(str([1, 2, 3]).encode()).hexdigest()
        assert_eq!(pre_fingerprint(&[1, 2, 3]), "a36b1f2c3f84522dd1005145646617d7054c0851e97c72a039c0bdfac9fa07f3");
        assert_eq!(py_list(&[]), "[]");
        assert_eq!(py_list(&[7, 10]), "[7, 10]");
        assert!(pre_hashes::PRE_HASHES.windows(2).all(|w| w[0].0 < w[1].0));
        let (h, name) = pre_hashes::PRE_HASHES[0];
        assert_eq!(pre_for_fingerprint(h), Some(name));
    }

    #[test]
    fn special_looking_tokens() {
        assert!(looks_special("<|im_start|>") && looks_special("<pad>") && looks_special("<unused12>"));
        assert!(!looks_special("hello") && !looks_special("<s>"));
    }
}
