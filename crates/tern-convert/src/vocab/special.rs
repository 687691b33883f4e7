//! Special-token metadata from Hugging Face tokenizer files: a port of gguf-py's `SpecialVocab`
//! (`gguf-py/gguf/vocab.py` of the llama.cpp vendored by llama-cpp-python 0.3.36).
//!
//! * merges from `tokenizer.json` `model.merges` (strings, or pairs whose spaces are written as
//!   `Ġ`, U+0120, as llama.cpp does) or else `merges.txt`;
//! * `add_bos` / `add_eos` from the `tokenizer.json` post-processor (`ByteLevel` → both false unless
//!   set, `RobertaProcessing` → both true, `TemplateProcessing` → whether the single-sequence template
//!   starts / ends with the BOS / EOS token, moving a replaced EOS to EOT), then from
//!   `tokenizer_config.json` `add_{bos,eos,...}_token` where the post-processor said nothing;
//! * special token ids: `tokenizer_config.json` `{bos,eos,unk,sep,pad,cls,mask}_token` looked up among
//!   `tokenizer.json`'s added tokens, then `config.json` `{..}_token_id` for types still unset;
//! * the chat template: `tokenizer_config.json` `chat_template` (a string, or a list of
//!   `{name, template}`), else `chat_template.jinja` / `chat_template.json`.

use serde_json::Value as Json;
use std::path::Path;

/// The collected special-token metadata.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Special {
    pub merges: Vec<String>,
    /// `(type, id)` in the order they were found (types: bos, eos, unk, sep, pad, cls, mask, eot, eom).
    pub ids: Vec<(String, u32)>,
    /// `(type, add)`.
    pub add: Vec<(String, bool)>,
    pub chat_template: Option<ChatTemplate>,
    pub notes: Vec<String>,
}

/// A chat template: one string, or named templates (`default` becomes `tokenizer.chat_template`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChatTemplate {
    One(String),
    Named(Vec<(String, String)>),
}

pub(crate) fn read_json(path: &Path) -> Result<Option<Json>, String> {
    if !path.is_file() {
        return Ok(None);
    }
    let data = std::fs::read(path).map_err(|e| format!("{}: read: {e}", path.display()))?;
    serde_json::from_slice(&data).map(Some).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))
}

fn set(list: &mut Vec<(String, bool)>, typ: &str, v: bool) {
    match list.iter_mut().find(|(t, _)| t == typ) {
        Some(e) => e.1 = v,
        None => list.push((typ.to_string(), v)),
    }
}

fn setdefault(list: &mut Vec<(String, bool)>, typ: &str, v: bool) {
    if !list.iter().any(|(t, _)| t == typ) {
        list.push((typ.to_string(), v));
    }
}

fn seq_id(tok: Option<&Json>) -> Option<&str> {
    tok?.get("Sequence")?.get("id")?.as_str()
}

fn special_id(tok: &Json) -> Option<&str> {
    tok.get("SpecialToken").and_then(|s| s.get("id")).and_then(Json::as_str)
}

/// Content of a `{typ}_token` entry (a string or an AddedToken dict).
fn token_content(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

impl Special {
    /// Loads everything from the tokenizer files in `dir` and the `config.json` in `config_dir`.
    /// `n_vocab` bounds the accepted ids (`None`: no bound, as for BPE vocabularies in llama.cpp's
    /// converter).
    pub(crate) fn load(
        dir: &Path,
        config_dir: &Path,
        n_vocab: Option<usize>,
        load_merges: bool,
    ) -> Result<Special, String> {
        let mut s = Special::default();
        let mut types: Vec<&str> = vec!["bos", "eos", "unk", "sep", "pad", "cls", "mask"];
        let tokenizer = read_json(&dir.join("tokenizer.json"))?;
        let mut cfg = read_json(&dir.join("tokenizer_config.json"))?;
        let mut added: Vec<(String, u64)> = Vec::new();
        if let Some(t) = &tokenizer {
            if load_merges {
                s.merges = merges_from_tokenizer_json(t)?;
            }
            if let Some(list) = t.get("added_tokens").and_then(Json::as_array) {
                for a in list {
                    if let (Some(c), Some(id)) =
                        (a.get("content").and_then(Json::as_str), a.get("id").and_then(Json::as_u64))
                    {
                        added.push((c.to_string(), id));
                    }
                }
            }
        }
        let cfg_str = |cfg: &Option<Json>, key: &str| token_content(cfg.as_ref().and_then(|c| c.get(key)));
        if let Some(t) = &tokenizer {
            // gguf-py treats a missing or empty tokenizer_config.json alike (`if not tokenizer_config`).
            let has_cfg = cfg.as_ref().and_then(Json::as_object).is_some_and(|o| !o.is_empty());
            let mut bos = cfg_str(&cfg, "bos_token");
            let mut cls = cfg_str(&cfg, "cls_token");
            let mut eos = cfg_str(&cfg, "eos_token");
            let sep = cfg_str(&cfg, "sep_token");
            let cfg_set = |cfg: &mut Option<Json>, key: &str, v: &str| {
                if let Some(Json::Object(c)) = cfg.as_mut() {
                    c.insert(key.to_string(), Json::String(v.to_string()));
                }
            };
            if bos.is_none() && has_cfg {
                if let Some(c) = cls.clone() {
                    cfg_set(&mut cfg, "bos_token", &c);
                    bos = Some(c);
                }
            }
            if eos.is_none() && has_cfg {
                if let Some(sp) = sep.clone() {
                    cfg_set(&mut cfg, "eos_token", &sp);
                    eos = Some(sp);
                }
            }
            if let Some(pp) = t.get("post_processor").filter(|p| !p.is_null()) {
                let procs: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
                    Some(list) => list.iter().collect(),
                    None => vec![pp],
                };
                for p in procs {
                    match p.get("type").and_then(Json::as_str) {
                        Some("ByteLevel") => {
                            setdefault(&mut s.add, "bos", false);
                            setdefault(&mut s.add, "eos", false);
                        }
                        Some("RobertaProcessing") => {
                            set(&mut s.add, "bos", true);
                            set(&mut s.add, "eos", true);
                            set(&mut s.add, "sep", true);
                        }
                        Some("TemplateProcessing") => {
                            let single = p.get("single").and_then(Json::as_array).cloned().unwrap_or_default();
                            let pair = p.get("pair").and_then(Json::as_array).cloned().unwrap_or_default();
                            let (mut first_tok, mut last_tok) = (None, None);
                            if single.len() > 1 {
                                first_tok = single.first().and_then(special_id).map(str::to_string);
                                last_tok = single.last().and_then(special_id).map(str::to_string);
                            }
                            if let Some(first) = first_tok.clone() {
                                let known = |b: &Option<String>, c: &Option<String>| {
                                    b.as_deref() == Some(first.as_str()) || c.as_deref() == Some(first.as_str())
                                };
                                if !has_cfg {
                                    bos = Some(first.clone());
                                } else if !known(&bos, &cls) {
                                    if bos.is_none() {
                                        cfg_set(&mut cfg, "bos_token", &first);
                                        bos = Some(first.clone());
                                    }
                                    if cls.is_none() {
                                        cfg_set(&mut cfg, "cls_token", &first);
                                        cls = Some(first.clone());
                                    }
                                }
                                let add = known(&bos, &cls);
                                set(&mut s.add, "bos", add);
                                if !add {
                                    s.notes
                                        .push(format!("unknown leading special token {first:?} in TemplateProcessing"));
                                }
                            }
                            if let Some(last) = last_tok.clone() {
                                if !has_cfg {
                                    eos = Some(last.clone());
                                } else if eos.as_deref() != Some(last.as_str()) {
                                    // The replaced EOS becomes EOT (or EOM), as in gguf-py.
                                    let slot = if !types.contains(&"eot") {
                                        types.push("eot");
                                        Some("eot_token")
                                    } else if !types.contains(&"eom") {
                                        types.push("eom");
                                        Some("eom_token")
                                    } else {
                                        s.notes
                                            .push(format!("overriding EOS {eos:?} with {last:?} without EOT/EOM slot"));
                                        None
                                    };
                                    if let (Some(slot), Some(old)) = (slot, eos.clone()) {
                                        cfg_set(&mut cfg, slot, &old);
                                    }
                                    cfg_set(&mut cfg, "eos_token", &last);
                                    eos = Some(last.clone());
                                }
                                set(&mut s.add, "eos", eos.as_deref() == Some(last.as_str()));
                            }
                            // The pair template `[first] A [sep] [eos] B [last]` decides add_sep.
                            if !pair.is_empty() {
                                let start = usize::from(
                                    first_tok.is_some() && pair.first().and_then(special_id) == first_tok.as_deref(),
                                );
                                let stop_trim = usize::from(
                                    last_tok.is_some() && pair.last().and_then(special_id) == last_tok.as_deref(),
                                );
                                let inner = pair.get(start..pair.len().saturating_sub(stop_trim)).unwrap_or(&[]);
                                if inner.len() > 2
                                    && seq_id(inner.first()) == Some("A")
                                    && seq_id(inner.last()) == Some("B")
                                {
                                    let mid = &inner[1..inner.len() - 1];
                                    let is_sep = |t: &str| sep.as_deref() == Some(t) || eos.as_deref() == Some(t);
                                    let mut add_sep = false;
                                    if let Some(e) = mid.first().and_then(special_id) {
                                        add_sep = is_sep(e) && last_tok.is_none();
                                    }
                                    if mid.len() == 2 && mid.get(1).and_then(special_id).is_some_and(is_sep) {
                                        add_sep = true;
                                    }
                                    set(&mut s.add, "sep", add_sep);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        // Chat template.
        let template = match cfg.as_ref().and_then(|c| c.get("chat_template")) {
            Some(Json::String(t)) => Some(ChatTemplate::One(t.clone())),
            Some(Json::Array(list)) => Some(ChatTemplate::Named(named_templates(list))),
            Some(Json::Null) | None => None,
            Some(_) => {
                s.notes.push("tokenizer_config.json: chat_template is neither a string nor a list; ignored".into());
                None
            }
        };
        s.chat_template = match template {
            Some(t) => Some(t),
            None => chat_template_files(dir)?,
        };
        if let Some(c) = &cfg {
            for typ in &types {
                if let Some(Json::Bool(b)) = c.get(format!("add_{typ}_token").as_str()) {
                    match s.add.iter().find(|(t, _)| t == typ) {
                        None => s.add.push((typ.to_string(), *b)),
                        Some((_, pp)) if pp != b => s.notes.push(format!(
                            "tokenizer_config.json add_{typ}_token = {b} disagrees with the tokenizer.json \
                             post-processor ({pp}); using the post-processor"
                        )),
                        _ => {}
                    }
                }
                let Some(content) = token_content(c.get(format!("{typ}_token").as_str())) else { continue };
                let id = added.iter().find(|(a, _)| *a == content).map(|&(_, id)| id);
                s.set_id(typ, id, n_vocab)?;
            }
        }
        // config.json `{typ}_token_id` (also inside text_config).
        if let Some(c) = read_json(&config_dir.join("config.json"))? {
            for typ in &types {
                let key = format!("{typ}_token_id");
                let v = c.get(key.as_str()).or_else(|| c.get("text_config").and_then(|t| t.get(key.as_str())));
                if let Some(n) = v.and_then(Json::as_i64) {
                    if n < 0 {
                        return Err(format!("config.json: {key} = {n} is negative"));
                    }
                    s.set_id(typ, Some(n as u64), n_vocab)?;
                }
            }
        }
        if load_merges && s.merges.is_empty() {
            s.merges = merges_txt(dir)?;
        }
        Ok(s)
    }

    fn set_id(&mut self, typ: &str, id: Option<u64>, n_vocab: Option<usize>) -> Result<(), String> {
        let Some(id) = id else { return Ok(()) };
        if n_vocab.is_none_or(|n| (id as usize) < n) && id <= u64::from(u32::MAX) {
            if !self.ids.iter().any(|(t, _)| t == typ) {
                self.ids.push((typ.to_string(), id as u32));
            }
        } else {
            self.notes.push(format!("special token {typ} id {id} is outside the vocabulary; skipped"));
        }
        Ok(())
    }
}

fn named_templates(list: &[Json]) -> Vec<(String, String)> {
    list.iter()
        .filter_map(|c| {
            let name: String = c
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                .collect();
            let t = c.get("template").and_then(Json::as_str)?;
            (!name.is_empty()).then(|| (name, t.to_string()))
        })
        .collect()
}

fn chat_template_files(dir: &Path) -> Result<Option<ChatTemplate>, String> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let t = std::fs::read_to_string(&jinja).map_err(|e| format!("{}: read: {e}", jinja.display()))?;
        return Ok(Some(ChatTemplate::One(t)));
    }
    if let Some(j) = read_json(&dir.join("chat_template.json"))? {
        return Ok(match j.get("chat_template") {
            Some(Json::String(t)) => Some(ChatTemplate::One(t.clone())),
            Some(Json::Array(list)) => Some(ChatTemplate::Named(named_templates(list))),
            _ => None,
        });
    }
    Ok(None)
}

/// `model.merges` of a tokenizer.json in llama.cpp's `"left right"` form.
pub(crate) fn merges_from_tokenizer_json(t: &Json) -> Result<Vec<String>, String> {
    let Some(list) = t.get("model").and_then(|m| m.get("merges")).and_then(Json::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        match m {
            Json::String(s) => out.push(s.clone()),
            Json::Array(pair) if pair.len() == 2 => {
                let part = |v: &Json| -> Result<String, String> {
                    v.as_str()
                        .map(|s| s.chars().map(|c| if c == ' ' { '\u{120}' } else { c }).collect())
                        .ok_or_else(|| format!("tokenizer.json: model.merges[{i}] is not a pair of strings"))
                };
                out.push(format!("{} {}", part(&pair[0])?, part(&pair[1])?));
            }
            _ => return Err(format!("tokenizer.json: model.merges[{i}] has an unknown merges format")),
        }
    }
    Ok(out)
}

/// `merges.txt` (an optional `#version` first line, then `left right` lines).
pub(crate) fn merges_txt(dir: &Path) -> Result<Vec<String>, String> {
    let path = dir.join("merges.txt");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: read: {e}", path.display()))?;
    let mut lines = text.lines().peekable();
    if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
        lines.next();
    }
    Ok(lines
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            match (p.next(), p.next(), p.next()) {
                (Some(a), Some(b), None) => Some(format!("{a} {b}")),
                _ => None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in files {
            std::fs::write(d.path().join(n), c).unwrap();
        }
        d
    }

    #[test]
    fn llama3_style_template_processing_adds_bos() {
        let tj = r#"{"added_tokens":[{"id":5,"content":"<|begin_of_text|>","special":true},
            {"id":6,"content":"<|end_of_text|>","special":true}],
            "post_processor":{"type":"Sequence","processors":[{"type":"ByteLevel"},
              {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},
              {"Sequence":{"id":"A","type_id":0}}]}]},
            "model":{"type":"BPE","merges":[["a","b c"],["ab","c"]]}}"#;
        let tc = r#"{"bos_token":"<|begin_of_text|>","eos_token":{"content":"<|end_of_text|>"},
            "chat_template":"{{ x }}","add_eos_token":true}"#;
        let d = dir_with(&[
            ("tokenizer.json", tj),
            ("tokenizer_config.json", tc),
            ("config.json", r#"{"pad_token_id":7}"#),
        ]);
        let s = Special::load(d.path(), d.path(), None, true).unwrap();
        assert_eq!(s.merges, vec!["a b\u{120}c".to_string(), "ab c".to_string()]);
        assert_eq!(s.add, vec![("bos".into(), true), ("eos".into(), false)]);
        assert_eq!(s.ids, vec![("bos".into(), 5), ("eos".into(), 6), ("pad".into(), 7)]);
        assert_eq!(s.chat_template, Some(ChatTemplate::One("{{ x }}".into())));
        assert!(s.notes.iter().any(|n| n.contains("add_eos_token")), "{:?}", s.notes);
    }

    #[test]
    fn merges_txt_and_named_templates() {
        let d = dir_with(&[
            ("merges.txt", "#version: 0.2\na b\nab c\nbad line here\n"),
            (
                "tokenizer_config.json",
                r#"{"chat_template":[{"name":"default","template":"D"},{"name":"tool use","template":"T"}]}"#,
            ),
        ]);
        let s = Special::load(d.path(), d.path(), Some(10), true).unwrap();
        assert_eq!(s.merges, vec!["a b".to_string(), "ab c".to_string()]);
        assert_eq!(
            s.chat_template,
            Some(ChatTemplate::Named(vec![("default".into(), "D".into()), ("tool_use".into(), "T".into())]))
        );
    }
}
