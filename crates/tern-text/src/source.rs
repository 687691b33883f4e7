//! Finding the text side of a model wherever it lives: an HF directory, a tokenizer file, or the
//! vocabulary and chat template embedded in a GGUF file's metadata (`tokenizer.ggml.*`,
//! `tokenizer.chat_template`).

use crate::template::{ChatTemplate, TemplateError};
use crate::tokenizer::{GgufVocab, Tokenizer};
use crate::TextError;
use std::path::Path;
use tern_gguf::{Array, GgufFile, Metadata};

fn is_gguf(path: &Path) -> bool {
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| {
                let mut m = [0u8; 4];
                std::io::Read::read_exact(&mut f, &mut m).map(|_| &m == b"GGUF")
            })
            .unwrap_or(false)
}

fn gguf_err(path: &Path, e: impl std::fmt::Display) -> TextError {
    TextError::InvalidTokenizer { source_name: path.display().to_string(), message: e.to_string() }
}

/// A tokenizer from a model directory, a tokenizer file, or a `.gguf` file.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, TextError> {
    if is_gguf(path) {
        let f = GgufFile::open(path).map_err(|e| gguf_err(path, e))?;
        let v = vocab_from_gguf(f.metadata()).map_err(|e| gguf_err(path, e))?;
        return Tokenizer::from_gguf_vocab(&v);
    }
    Tokenizer::from_path(path)
}

/// The chat template of a model directory or `.gguf` file (`None` if it has none), with the
/// special-token strings (`bos_token`, `eos_token`) templates expect.
pub fn load_chat_template(path: &Path) -> Result<Option<ChatTemplate>, TemplateError> {
    if is_gguf(path) {
        let f = GgufFile::open(path)
            .map_err(|e| TemplateError::Config { path: path.display().to_string(), message: e.to_string() })?;
        let md = f.metadata();
        let Ok(src) = md.get_str("tokenizer.chat_template") else { return Ok(None) };
        let mut t = ChatTemplate::new(src)?;
        let tokens = md.get_arr_string("tokenizer.ggml.tokens").ok();
        for (name, key) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
            ("unk_token", "tokenizer.ggml.unknown_token_id"),
            ("pad_token", "tokenizer.ggml.padding_token_id"),
        ] {
            if let (Some(toks), Ok(id)) = (tokens, md.get_uint(key)) {
                if let Some(s) = toks.get(id as usize).and_then(|s| s.to_str()) {
                    t = t.with_special_token(name, s);
                }
            }
        }
        return Ok(Some(t));
    }
    let dir = if path.is_file() { path.parent().unwrap_or(Path::new(".")) } else { path };
    ChatTemplate::from_model_dir(dir)
}

/// Reads `tokenizer.ggml.*` metadata into a [`GgufVocab`].
pub fn vocab_from_gguf(md: &Metadata) -> Result<GgufVocab, tern_gguf::GgufError> {
    let strings = |key: &str| -> Result<Option<Vec<String>>, tern_gguf::GgufError> {
        if !md.contains_key(key) {
            return Ok(None);
        }
        Ok(Some(md.get_arr_string(key)?.iter().map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned()).collect()))
    };
    let id = |key: &str| -> Result<Option<u32>, tern_gguf::GgufError> {
        if !md.contains_key(key) {
            return Ok(None);
        }
        Ok(Some(md.get_uint(key)? as u32))
    };
    let flag = |key: &str| md.get_bool_opt(key);
    let token_types = match md.get("tokenizer.ggml.token_type") {
        None => None,
        Some(_) => match md.get_array("tokenizer.ggml.token_type")? {
            Array::I32(v) => Some(v.clone()),
            Array::U32(v) => Some(v.iter().map(|&x| x as i32).collect()),
            Array::I8(v) => Some(v.iter().map(|&x| x as i32).collect()),
            Array::U8(v) => Some(v.iter().map(|&x| x as i32).collect()),
            _ => None,
        },
    };
    Ok(GgufVocab {
        model: md.get_str("tokenizer.ggml.model")?.to_string(),
        pre: md.get_str_opt("tokenizer.ggml.pre")?.map(str::to_string),
        tokens: strings("tokenizer.ggml.tokens")?.unwrap_or_default(),
        scores: if md.contains_key("tokenizer.ggml.scores") {
            Some(md.get_arr_f32("tokenizer.ggml.scores")?.to_vec())
        } else {
            None
        },
        token_types,
        merges: strings("tokenizer.ggml.merges")?,
        bos_id: id("tokenizer.ggml.bos_token_id")?,
        eos_id: id("tokenizer.ggml.eos_token_id")?,
        eot_id: id("tokenizer.ggml.eot_token_id")?,
        eom_id: id("tokenizer.ggml.eom_token_id")?,
        unk_id: id("tokenizer.ggml.unknown_token_id")?,
        pad_id: id("tokenizer.ggml.padding_token_id")?,
        sep_id: id("tokenizer.ggml.seperator_token_id")?,
        add_bos: flag("tokenizer.ggml.add_bos_token")?,
        add_eos: flag("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: flag("tokenizer.ggml.add_space_prefix")?,
        remove_extra_whitespaces: flag("tokenizer.ggml.remove_extra_whitespaces")?,
        precompiled_charsmap: if md.contains_key("tokenizer.ggml.precompiled_charsmap") {
            Some(md.get_arr_u8("tokenizer.ggml.precompiled_charsmap")?.to_vec())
        } else {
            None
        },
    })
}
