//! The Hugging Face side files that change a tokenizer's special tokens: `tokenizer_config.json`,
//! `generation_config.json` and `config.json`.
//!
//! Read the way `transformers` reads them: `bos_token` / `eos_token` / `unk_token` / `pad_token` are a
//! string, `null`, or an `AddedToken` dict (`{"content": ..., "special": ...}`); `add_bos_token` /
//! `add_eos_token` are booleans; `added_tokens_decoder` maps an id (as a string) to an `AddedToken` dict;
//! `additional_special_tokens` lists strings or dicts. `eos_token_id` in `generation_config.json` and
//! `config.json` is an integer or a list of integers (multimodal `config.json` files nest it in
//! `text_config`). Fields that are absent or `null` are ignored; a field of the wrong type is an error
//! naming the file and field.

use std::path::Path;

use serde_json::Value;

use crate::error::TextError;

/// An `AddedToken` entry of `added_tokens_decoder`.
#[derive(Debug, Clone)]
pub(crate) struct AddedTokenSpec {
    pub id: u32,
    pub content: String,
    pub special: bool,
    pub lstrip: bool,
    pub rstrip: bool,
    pub normalized: bool,
    pub single_word: bool,
}

/// A token named by the config: absent, explicitly `null`, or a string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Named {
    #[default]
    Absent,
    Null,
    Token(String),
}

/// Everything the side files say about special tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct HfConfig {
    pub bos_token: Named,
    pub eos_token: Named,
    pub unk_token: Named,
    pub pad_token: Named,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub added_tokens: Vec<AddedTokenSpec>,
    pub additional_special: Vec<String>,
    pub tokenizer_class: Option<String>,
    /// `eos_token_id` of `generation_config.json`.
    pub gen_eos_ids: Vec<u32>,
    pub gen_bos_id: Option<u32>,
    /// `eos_token_id` / `bos_token_id` of `config.json`.
    pub model_eos_ids: Vec<u32>,
    pub model_bos_id: Option<u32>,
}

fn read_json(path: &Path) -> Result<Option<Value>, TextError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TextError::Io { path: path.to_path_buf(), source: e }),
    };
    let v: Value = serde_json::from_slice(&data)
        .map_err(|e| TextError::Json { path: path.display().to_string(), message: e.to_string() })?;
    if !v.is_object() {
        return Err(TextError::Json {
            path: path.display().to_string(),
            message: "expected a JSON object at the top level".into(),
        });
    }
    Ok(Some(v))
}

fn wrong(path: &Path, field: &str, expected: &str, found: &Value) -> TextError {
    let mut shown = found.to_string();
    if shown.len() > 80 {
        let mut cut = 80;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    TextError::Json {
        path: path.display().to_string(),
        message: format!("field `{field}`: expected {expected}, found {shown}"),
    }
}

fn named(v: Option<&Value>, path: &Path, field: &str) -> Result<Named, TextError> {
    match v {
        None => Ok(Named::Absent),
        Some(Value::Null) => Ok(Named::Null),
        Some(Value::String(s)) => Ok(Named::Token(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Named::Token(s.clone())),
            Some(other) => Err(wrong(path, &format!("{field}.content"), "a string", other)),
            None => {
                Err(wrong(path, field, "a string or an AddedToken object with `content`", &Value::Object(o.clone())))
            }
        },
        Some(other) => Err(wrong(path, field, "a string, null or an AddedToken object", other)),
    }
}

fn opt_bool(v: Option<&Value>, path: &Path, field: &str) -> Result<Option<bool>, TextError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong(path, field, "a boolean", other)),
    }
}

fn id_of(v: &Value, path: &Path, field: &str) -> Result<u32, TextError> {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| wrong(path, field, "a non-negative 32-bit integer", v))
}

fn ids(v: Option<&Value>, path: &Path, field: &str) -> Result<Vec<u32>, TextError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().filter(|x| !x.is_null()).map(|x| id_of(x, path, field)).collect(),
        Some(x) => Ok(vec![id_of(x, path, field)?]),
    }
}

fn opt_id(v: Option<&Value>, path: &Path, field: &str) -> Result<Option<u32>, TextError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        // Some configs write a list here too; the first entry is the BOS.
        Some(Value::Array(a)) => match a.first() {
            Some(x) => Ok(Some(id_of(x, path, field)?)),
            None => Ok(None),
        },
        Some(x) => Ok(Some(id_of(x, path, field)?)),
    }
}

fn flag(
    o: &serde_json::Map<String, Value>,
    key: &str,
    default: bool,
    path: &Path,
    field: &str,
) -> Result<bool, TextError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(wrong(path, &format!("{field}.{key}"), "a boolean", other)),
    }
}

fn parse_tokenizer_config(v: &Value, path: &Path, cfg: &mut HfConfig) -> Result<(), TextError> {
    cfg.bos_token = named(v.get("bos_token"), path, "bos_token")?;
    cfg.eos_token = named(v.get("eos_token"), path, "eos_token")?;
    cfg.unk_token = named(v.get("unk_token"), path, "unk_token")?;
    cfg.pad_token = named(v.get("pad_token"), path, "pad_token")?;
    cfg.add_bos_token = opt_bool(v.get("add_bos_token"), path, "add_bos_token")?;
    cfg.add_eos_token = opt_bool(v.get("add_eos_token"), path, "add_eos_token")?;
    cfg.tokenizer_class = v.get("tokenizer_class").and_then(Value::as_str).map(str::to_string);
    match v.get("added_tokens_decoder") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, entry) in map {
                let field = format!("added_tokens_decoder.{k}");
                let id: u32 =
                    k.parse().map_err(|_| wrong(path, &field, "an integer id as key", &Value::String(k.clone())))?;
                let Value::Object(o) = entry else {
                    return Err(wrong(path, &field, "an AddedToken object", entry));
                };
                let content = match o.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => return Err(wrong(path, &format!("{field}.content"), "a string", other)),
                    None => return Err(wrong(path, &field, "an object with `content`", entry)),
                };
                cfg.added_tokens.push(AddedTokenSpec {
                    id,
                    content,
                    special: flag(o, "special", false, path, &field)?,
                    lstrip: flag(o, "lstrip", false, path, &field)?,
                    rstrip: flag(o, "rstrip", false, path, &field)?,
                    normalized: flag(o, "normalized", true, path, &field)?,
                    single_word: flag(o, "single_word", false, path, &field)?,
                });
            }
        }
        Some(other) => return Err(wrong(path, "added_tokens_decoder", "an object", other)),
    }
    match v.get("additional_special_tokens") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                if let Named::Token(s) = named(Some(x), path, &format!("additional_special_tokens[{i}]"))? {
                    cfg.additional_special.push(s);
                }
            }
        }
        Some(other) => return Err(wrong(path, "additional_special_tokens", "a list", other)),
    }
    Ok(())
}

impl HfConfig {
    /// Reads whichever of the three files exist in `dir`.
    pub(crate) fn load_dir(dir: &Path) -> Result<HfConfig, TextError> {
        let mut cfg = HfConfig::default();
        let p = dir.join("tokenizer_config.json");
        if let Some(v) = read_json(&p)? {
            parse_tokenizer_config(&v, &p, &mut cfg)?;
        }
        let p = dir.join("generation_config.json");
        if let Some(v) = read_json(&p)? {
            cfg.gen_eos_ids = ids(v.get("eos_token_id"), &p, "eos_token_id")?;
            cfg.gen_bos_id = opt_id(v.get("bos_token_id"), &p, "bos_token_id")?;
        }
        let p = dir.join("config.json");
        if let Some(v) = read_json(&p)? {
            let text = v.get("text_config");
            let pick = |k: &str| v.get(k).filter(|x| !x.is_null()).or_else(|| text.and_then(|t| t.get(k)));
            cfg.model_eos_ids = ids(pick("eos_token_id"), &p, "eos_token_id")?;
            cfg.model_bos_id = opt_id(pick("bos_token_id"), &p, "bos_token_id")?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_shapes_and_rejects_wrong_types() {
        let p = Path::new("tokenizer_config.json");
        let v: Value = serde_json::from_str(
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": null,
                "add_bos_token": true,
                "added_tokens_decoder": {"5": {"content": "<x>", "special": true}}}"#,
        )
        .unwrap();
        let mut cfg = HfConfig::default();
        parse_tokenizer_config(&v, p, &mut cfg).unwrap();
        assert_eq!(cfg.bos_token, Named::Token("<s>".into()));
        assert_eq!(cfg.eos_token, Named::Null);
        assert_eq!(cfg.add_bos_token, Some(true));
        assert_eq!(cfg.added_tokens[0].id, 5);
        assert!(cfg.added_tokens[0].special);
        assert!(cfg.added_tokens[0].normalized);

        for bad in [
            r#"{"add_bos_token": "yes"}"#,
            r#"{"bos_token": 3}"#,
            r#"{"added_tokens_decoder": {"x": {"content": "a"}}}"#,
            r#"{"added_tokens_decoder": {"1": {"special": true}}}"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            let mut cfg = HfConfig::default();
            assert!(parse_tokenizer_config(&v, p, &mut cfg).is_err(), "{bad}");
        }
        assert_eq!(ids(Some(&serde_json::json!([1, 2])), p, "e").unwrap(), vec![1, 2]);
        assert!(ids(Some(&serde_json::json!(-1)), p, "e").is_err());
    }
}
