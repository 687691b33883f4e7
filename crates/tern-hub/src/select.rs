//! Which files of a repo a model needs, and which GGUF a `--quant` or `:file.gguf` picks.
//!
//! Rules (the same whether the list comes from the Hub API or from a cached snapshot):
//! - `:file` → that file (all parts of a split GGUF `name-00001-of-00003.gguf`, as llama.cpp's
//!   `gguf-split` names them) plus the small support files;
//! - `--quant Q` → the GGUF whose name contains `Q` (case-insensitive; as a whole `-`/`.`/`_`-delimited
//!   token first, then as a plain substring); `mmproj-*` projector files are never candidates;
//! - otherwise safetensors weights when present (`model.safetensors.index.json` and the shards of its
//!   `weight_map`, else `model.safetensors`, else every top-level `*.safetensors`), else the only GGUF;
//! - support files, when present at the repo root: config.json, generation_config.json, tokenizer.json,
//!   tokenizer.model, tokenizer_config.json, special_tokens_map.json, added_tokens.json, vocab.json,
//!   merges.txt, chat_template.jinja, chat_template.json.

use crate::error::{HubError, Result};
use crate::spec::validate_repo_path;

/// Small files fetched alongside the weights when the repo has them.
pub const SUPPORT_FILES: [&str; 11] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
];

/// The safetensors shard index.
pub const ST_INDEX: &str = "model.safetensors.index.json";

/// What to return to the caller once the files are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The snapshot folder (safetensors models).
    Dir,
    /// One file of the snapshot (a GGUF, or its first split part).
    File(String),
}

/// The outcome of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Files to fetch first (support files, the chosen weights, the shard index).
    pub files: Vec<String>,
    /// `model.safetensors.index.json` must be read to learn the shards.
    pub needs_index: bool,
    pub target: Target,
}

/// Chooses the files for a model from the repo's file list.
pub fn select(
    repo: &str,
    revision: &str,
    all: &[String],
    file: Option<&str>,
    quant: Option<&str>,
) -> Result<Selection> {
    let has = |p: &str| all.iter().any(|f| f == p);
    let mut files: Vec<String> = SUPPORT_FILES.iter().filter(|s| has(s)).map(|s| s.to_string()).collect();
    let ggufs: Vec<&String> = all.iter().filter(|f| is_gguf(f) && !is_mmproj(f)).collect();

    if let Some(f) = file {
        if !has(f) {
            return Err(HubError::EntryNotFound {
                repo: repo.into(),
                revision: revision.into(),
                path: f.into(),
                available: available_hint(all),
            });
        }
        let parts = if is_gguf(f) { split_parts(f, all) } else { vec![f.to_string()] };
        let target = Target::File(parts[0].clone());
        files.extend(parts);
        return Ok(finish(files, false, target));
    }

    if let Some(q) = quant {
        let groups = gguf_groups(&ggufs);
        let matches = match_quant(q, &groups);
        return match matches.len() {
            0 => Err(HubError::NoMatchingQuant {
                repo: repo.into(),
                quant: q.into(),
                available: if groups.is_empty() { "no GGUF files".into() } else { describe_groups(&groups) },
            }),
            1 => {
                let g = matches[0];
                files.extend(g.iter().cloned());
                Ok(finish(files, false, Target::File(g[0].clone())))
            }
            _ => Err(HubError::AmbiguousGguf {
                repo: repo.into(),
                why: format!("quant {q:?} matches {} GGUF files", matches.len()),
                candidates: describe_groups(&matches.into_iter().cloned().collect::<Vec<_>>()),
            }),
        };
    }

    if has(ST_INDEX) {
        files.push(ST_INDEX.into());
        return Ok(finish(files, true, Target::Dir));
    }
    if has("model.safetensors") {
        files.push("model.safetensors".into());
        return Ok(finish(files, false, Target::Dir));
    }
    let top_st: Vec<String> = all.iter().filter(|f| !f.contains('/') && f.ends_with(".safetensors")).cloned().collect();
    if !top_st.is_empty() {
        files.extend(top_st);
        return Ok(finish(files, false, Target::Dir));
    }
    let groups = gguf_groups(&ggufs);
    match groups.len() {
        0 => Err(HubError::NothingToLoad { repo: repo.into(), revision: revision.into(), files: list(all, 20) }),
        1 => {
            let g = &groups[0];
            files.extend(g.iter().cloned());
            Ok(finish(files, false, Target::File(g[0].clone())))
        }
        n => Err(HubError::AmbiguousGguf {
            repo: repo.into(),
            why: format!("the repo has {n} GGUF models"),
            candidates: describe_groups(&groups),
        }),
    }
}

/// The shard files named by a `model.safetensors.index.json` (paths relative to the index's folder,
/// which is the repo root here), validated and deduplicated.
pub fn shards_from_index(index_json: &[u8], index_path: &std::path::Path) -> Result<Vec<String>> {
    let bad = |reason: String| HubError::BadFile { path: index_path.to_path_buf(), reason };
    let v: serde_json::Value = serde_json::from_slice(index_json).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let mut shards: Vec<String> = Vec::new();
    for (tensor, shard) in map {
        let s = shard.as_str().ok_or_else(|| bad(format!("weight_map[{tensor:?}] is not a string")))?;
        validate_repo_path(s)?;
        if !shards.iter().any(|x| x == s) {
            shards.push(s.to_string());
        }
    }
    if shards.is_empty() {
        return Err(bad("empty \"weight_map\"".into()));
    }
    shards.sort();
    Ok(shards)
}

fn finish(mut files: Vec<String>, needs_index: bool, target: Target) -> Selection {
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Selection { files, needs_index, target }
}

fn is_gguf(f: &str) -> bool {
    f.to_ascii_lowercase().ends_with(".gguf")
}

fn is_mmproj(f: &str) -> bool {
    base_name(f).to_ascii_lowercase().starts_with("mmproj")
}

fn base_name(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

/// `(stem, part, total)` of a split GGUF `stem-00001-of-00003.gguf`.
fn split_info(f: &str) -> Option<(&str, u32, u32)> {
    let stem = f.get(..f.len().checked_sub(5)?)?; // drop ".gguf"
    let (head, total) = stem.rsplit_once("-of-")?;
    let (stem, part) = head.rsplit_once('-')?;
    if part.len() != 5 || total.len() != 5 || !part.bytes().chain(total.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem, part.parse().ok()?, total.parse().ok()?))
}

/// All parts of the split set `f` belongs to (first part first), or just `f`.
fn split_parts(f: &str, all: &[String]) -> Vec<String> {
    let Some((stem, _, total)) = split_info(f) else { return vec![f.to_string()] };
    let mut parts: Vec<(u32, String)> = all
        .iter()
        .filter_map(|g| match split_info(g) {
            Some((s, p, t)) if s == stem && t == total => Some((p, g.clone())),
            _ => None,
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, g)| g).collect()
}

/// GGUF files grouped into models (split parts together, first part first), sorted.
fn gguf_groups(ggufs: &[&String]) -> Vec<Vec<String>> {
    let all: Vec<String> = ggufs.iter().map(|s| s.to_string()).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for f in &all {
        if groups.iter().any(|g| g.contains(f)) {
            continue;
        }
        groups.push(split_parts(f, &all));
    }
    groups.sort();
    groups
}

fn match_quant<'a>(q: &str, groups: &'a [Vec<String>]) -> Vec<&'a Vec<String>> {
    let q = q.to_ascii_lowercase();
    let token = |g: &Vec<String>| {
        let name = base_name(&g[0]).to_ascii_lowercase();
        let name = name.trim_end_matches(".gguf");
        name.match_indices(&q).any(|(i, _)| {
            let before = name[..i].chars().next_back();
            let after = name[i + q.len()..].chars().next();
            before.is_none_or(|c| !c.is_ascii_alphanumeric())
                && after.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
        })
    };
    let exact: Vec<&Vec<String>> = groups.iter().filter(|g| token(g)).collect();
    if !exact.is_empty() {
        return exact;
    }
    groups.iter().filter(|g| base_name(&g[0]).to_ascii_lowercase().contains(&q)).collect()
}

/// The quant type spelled in a GGUF file name (`model-Q4_K_M.gguf` → `Q4_K_M`), if recognizable.
pub fn quant_from_name(f: &str) -> Option<String> {
    let name = base_name(f);
    let stem = name.get(..name.len().checked_sub(5)?).unwrap_or(name);
    let stem = match split_info(name) {
        Some((s, _, _)) => s,
        None => stem,
    };
    stem.split(['-', '.'])
        .rev()
        .flat_map(|tok| {
            // A token may carry a prefix joined by '_' ("model_Q4_K_M"): try every '_' suffix.
            let starts: Vec<usize> = std::iter::once(0).chain(tok.match_indices('_').map(|(i, _)| i + 1)).collect();
            starts.into_iter().map(move |s| &tok[s..])
        })
        .find(|t| is_quant_name(t))
        .map(|t| t.to_ascii_uppercase())
}

fn is_quant_name(t: &str) -> bool {
    let u = t.to_ascii_uppercase();
    if matches!(
        u.as_str(),
        "F32" | "F16" | "BF16" | "FP16" | "FP32" | "MXFP4" | "MXFP4_MOE" | "I2_S" | "I8_S" | "TL1" | "TL2"
    ) {
        return true;
    }
    let rest = u.strip_prefix("IQ").or_else(|| u.strip_prefix("TQ")).or_else(|| u.strip_prefix('Q'));
    match rest {
        Some(r) => {
            let mut cs = r.chars();
            cs.next().is_some_and(|c| c.is_ascii_digit())
                && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && r.len() <= 8
        }
        None => false,
    }
}

fn describe_groups(groups: &[Vec<String>]) -> String {
    groups
        .iter()
        .map(|g| {
            let q = quant_from_name(&g[0]).map(|q| format!("{q}: ")).unwrap_or_default();
            let parts = if g.len() > 1 { format!(" (+{} parts)", g.len() - 1) } else { String::new() };
            format!("{q}{}{parts}", g[0])
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn available_hint(all: &[String]) -> String {
    let ggufs: Vec<&String> = all.iter().filter(|f| is_gguf(f)).collect();
    if ggufs.is_empty() {
        format!("; files: {}", list(all, 20))
    } else {
        format!("; GGUF files: {}", describe_groups(&gguf_groups(&ggufs)))
    }
}

fn list(all: &[String], max: usize) -> String {
    if all.is_empty() {
        return "none".into();
    }
    let mut s = all.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if all.len() > max {
        s.push_str(&format!(", … {} more", all.len() - max));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn safetensors_repo() {
        let all = v(&[
            ".gitattributes",
            "README.md",
            "config.json",
            "generation_config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "consolidated.safetensors",
            "original/consolidated.00.pth",
            "tokenizer.json",
            "tokenizer_config.json",
        ]);
        let s = select("o/n", "main", &all, None, None).unwrap();
        assert!(s.needs_index);
        assert_eq!(s.target, Target::Dir);
        assert_eq!(
            s.files,
            v(&["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", ST_INDEX])
        );
        let all = v(&["config.json", "model.safetensors", "other.safetensors", "tokenizer.model"]);
        let s = select("o/n", "main", &all, None, None).unwrap();
        assert_eq!(s.files, v(&["config.json", "tokenizer.model", "model.safetensors"]));
    }

    #[test]
    fn gguf_choice() {
        let all = v(&[
            "README.md",
            "m-Q4_K_M.gguf",
            "m-Q4_K_S.gguf",
            "m-IQ4_XS.gguf",
            "m-Q8_0.gguf",
            "big/m-F16-00001-of-00002.gguf",
            "big/m-F16-00002-of-00002.gguf",
            "mmproj-m-f16.gguf",
        ]);
        let pick = |q: &str| select("o/n", "main", &all, None, Some(q));
        assert_eq!(pick("q4_k_m").unwrap().target, Target::File("m-Q4_K_M.gguf".into()));
        assert_eq!(pick("Q8_0").unwrap().files, v(&["m-Q8_0.gguf"]));
        let f16 = pick("F16").unwrap();
        assert_eq!(f16.target, Target::File("big/m-F16-00001-of-00002.gguf".into()));
        assert_eq!(f16.files.len(), 2);
        // "Q4_K" is no whole token; as a substring it matches two files.
        let e = pick("Q4_K").unwrap_err().to_string();
        assert!(e.contains("m-Q4_K_M.gguf") && e.contains("m-Q4_K_S.gguf") && !e.contains("Q8_0"), "{e}");
        // "Q4_XS" must not match IQ4_XS as a token, but does as a substring.
        assert_eq!(pick("Q4_XS").unwrap().target, Target::File("m-IQ4_XS.gguf".into()));
        let e = pick("Q9_9").unwrap_err().to_string();
        assert!(
            e.contains("Q4_K_M: m-Q4_K_M.gguf") && e.contains("F16: big/m-F16-00001-of-00002.gguf (+1 parts)"),
            "{e}"
        );
        assert!(!e.contains("mmproj"), "{e}");
        let e = select("o/n", "main", &all, None, None).unwrap_err().to_string();
        assert!(e.contains("--quant"), "{e}");
        let one = select("o/n", "main", &v(&["a.gguf", "mmproj.gguf"]), None, None).unwrap();
        assert_eq!(one.target, Target::File("a.gguf".into()));
        let f = select("o/n", "main", &all, Some("big/m-F16-00002-of-00002.gguf"), None).unwrap();
        assert_eq!(f.target, Target::File("big/m-F16-00001-of-00002.gguf".into()));
        let e = select("o/n", "main", &all, Some("nope.gguf"), None).unwrap_err().to_string();
        assert!(e.contains("nope.gguf") && e.contains("Q8_0: m-Q8_0.gguf"), "{e}");
        assert!(select("o/n", "main", &v(&["README.md"]), None, None).is_err());
    }

    #[test]
    fn quant_names() {
        assert_eq!(quant_from_name("Llama-3.2-1B-Instruct-Q4_K_M.gguf").as_deref(), Some("Q4_K_M"));
        assert_eq!(quant_from_name("x/model.q8_0.gguf").as_deref(), Some("Q8_0"));
        assert_eq!(quant_from_name("ggml-model-i2_s.gguf").as_deref(), Some("I2_S"));
        assert_eq!(quant_from_name("model.gguf"), None);
        assert_eq!(quant_from_name("model_IQ2_XXS.gguf").as_deref(), Some("IQ2_XXS"));
        assert_eq!(quant_from_name("m-BF16-00001-of-00002.gguf").as_deref(), Some("BF16"));
        assert_eq!(quant_from_name("bitnet-TQ1_0.gguf").as_deref(), Some("TQ1_0"));
    }

    #[test]
    fn index_shards() {
        let j = br#"{"metadata":{},"weight_map":{"a":"s-2.safetensors","b":"s-1.safetensors","c":"s-2.safetensors"}}"#;
        let p = std::path::Path::new("idx");
        assert_eq!(shards_from_index(j, p).unwrap(), v(&["s-1.safetensors", "s-2.safetensors"]));
        assert!(shards_from_index(br#"{"weight_map":{"a":"../x"}}"#, p).is_err());
        assert!(shards_from_index(br#"{"weight_map":{}}"#, p).is_err());
        assert!(shards_from_index(b"nope", p).is_err());
    }
}
