//! Robustness: rendering never panics and never hangs, whatever the template or the input.
//!
//! Deterministic mutation fuzzing (no external fuzzer): the real templates of
//! `tools/testdata/fetch.sh llamacpp` are cut, duplicated and spliced with Jinja fragments, and rendered
//! over well-formed and ill-typed conversations. Every render must return (Ok or Err) without a panic, the
//! engine's internal panic guard must never trigger, and every error must carry a printable message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tern_text::template::{ChatTemplate, RenderLimits, RenderRequest, TemplateError};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const FRAGMENTS: &[&str] = &[
    "{%",
    "%}",
    "{{",
    "}}",
    "{#",
    "#}",
    "{%-",
    "-%}",
    "(",
    ")",
    "[",
    "]",
    "'",
    "\"",
    "|",
    ".",
    ",",
    "~",
    "*",
    "**",
    "+",
    "-",
    "/",
    "//",
    "%",
    " if ",
    " else ",
    " for ",
    " in ",
    " endfor ",
    " endif ",
    " set ",
    " macro ",
    " endmacro ",
    " call ",
    " raw ",
    " endraw ",
    " break ",
    " continue ",
    " generation ",
    "messages",
    "message",
    "loop",
    "loop.index0",
    "tools",
    "none",
    "true",
    "[::-1]",
    "[1:-1]",
    "|tojson(indent=",
    "|tojson",
    "|length",
    "|trim",
    "|items",
    "|map(attribute='x')",
    "|selectattr('role')",
    "|first",
    "namespace(",
    "range(",
    "dict(",
    ".split(",
    ".strip(",
    ".format(",
    ".items()",
    ".get(",
    "1e309",
    "-1",
    "99999999999999999999999",
    "0.5",
    "\\u",
    "\u{F0000}",
    "\u{F0001}",
    "é",
    "\n",
    " ",
    "raise_exception(",
    "strftime_now('%Y')",
    " is string ",
    " is mapping ",
    " is not none ",
    "{% for m in messages %}",
    "{% endfor %}",
    "{% if x %}",
    "{% endif %}",
    "{{ messages[0].content }}",
];

fn conversations() -> Vec<RenderRequest> {
    let tools = vec![json!({"type": "function", "function": {"name": "f", "description": "d",
        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}})];
    vec![
        RenderRequest::new(vec![
            json!({"role": "system", "content": "sys"}),
            json!({"role": "user", "content": "hi <|im_end|>"}),
            json!({"role": "assistant", "content": "", "reasoning_content": "r",
                   "tool_calls": [{"id": "call12345", "type": "function",
                                   "function": {"name": "f", "arguments": {"a": "b"}}}]}),
            json!({"role": "tool", "tool_call_id": "call12345", "content": "out"}),
        ])
        .with_tools(tools)
        .with_generation_prompt(true)
        .with_kwarg("enable_thinking", json!(false)),
        // Ill-typed input: every field of the wrong type.
        RenderRequest::new(vec![
            json!({"role": 5, "content": {"nested": [1, 2.5, null, true]}}),
            json!({"role": "user", "content": [1, [2, [3]], {"type": 7}]}),
            json!({"role": "assistant", "tool_calls": "not a list", "content": 1e300}),
            json!({"role": null, "content": u64::MAX}),
            json!({}),
        ])
        .with_tools(vec![json!("tool"), json!(null), json!([1])])
        .with_kwarg("enable_thinking", json!("maybe")),
        RenderRequest::new(vec![]),
    ]
}

fn check(result: &Result<String, TemplateError>) {
    if let Err(e) = result {
        let msg = e.to_string();
        assert!(!msg.is_empty());
        assert!(!msg.contains("internal error"), "the engine panicked internally: {msg}");
    }
}

#[test]
fn mutated_real_templates_never_panic() {
    let dir = std::env::var_os("TERN_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdata"))
        .join("llama-cpp-python/vendor/llama.cpp/models/templates");
    let mut sources: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| panic!("missing {}: run `tools/testdata/fetch.sh llamacpp`", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jinja"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    sources.sort();
    assert!(sources.len() > 50, "expected the llama.cpp templates in {}", dir.display());

    let limits = RenderLimits {
        base_fuel: 200_000,
        fuel_per_input_byte: 0,
        base_output_bytes: 1 << 20,
        output_bytes_per_input_byte: 0,
    };
    let requests = conversations();
    // TERN_FUZZ_ROUNDS / TERN_FUZZ_SEED allow longer local runs.
    let rounds: usize = std::env::var("TERN_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed: u64 = std::env::var("TERN_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed.max(1));
    let start = Instant::now();
    let (mut renders, mut ok) = (0usize, 0usize);
    for round in 0..rounds {
        for source in &sources {
            let chars: Vec<char> = source.chars().collect();
            let mut mutated: Vec<char> = chars.clone();
            for _ in 0..=round % 4 {
                let len = mutated.len().max(1);
                let a = rng.below(len);
                let b = (a + rng.below(200)).min(mutated.len());
                match rng.below(4) {
                    0 => {
                        mutated.drain(a..b);
                    }
                    1 => {
                        let piece: Vec<char> = mutated[a..b].to_vec();
                        let at = rng.below(mutated.len() + 1);
                        mutated.splice(at..at, piece);
                    }
                    _ => {
                        let frag = FRAGMENTS[rng.below(FRAGMENTS.len())];
                        let at = rng.below(mutated.len() + 1);
                        mutated.splice(at..at, frag.chars());
                    }
                }
            }
            let text: String = mutated.into_iter().collect();
            let template = ChatTemplate::from_named(vec![("default".into(), text)])
                .with_special_token("bos_token", "<s>")
                .with_limits(limits);
            for req in &requests {
                let t0 = Instant::now();
                let result = template.render(req);
                assert!(t0.elapsed() < Duration::from_secs(2), "a render took {:?}", t0.elapsed());
                check(&result);
                renders += 1;
                ok += usize::from(result.is_ok());
                let segments = template.render_segments(req, [("<|im_end|>", true), ("<s>", true)]);
                if let Err(e) = &segments {
                    assert!(!e.to_string().contains("internal error"), "{e}");
                }
            }
        }
    }
    eprintln!(
        "fuzz: {renders} renders of mutated templates ({ok} rendered, {} errors) in {:?}",
        renders - ok,
        start.elapsed()
    );
}

#[test]
fn random_fragment_soup_never_panics() {
    let mut rng = Rng(12345);
    let requests = conversations();
    let limits = RenderLimits {
        base_fuel: 100_000,
        fuel_per_input_byte: 0,
        base_output_bytes: 1 << 16,
        output_bytes_per_input_byte: 0,
    };
    for _ in 0..3000 {
        let n = 1 + rng.below(30);
        let text: String = (0..n).map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())]).collect();
        let template = ChatTemplate::from_named(vec![("default".into(), text)]).with_limits(limits);
        for req in &requests {
            check(&template.render(req));
        }
    }
    // Hostile values in every position.
    let t = ChatTemplate::new(
        "{{ messages|tojson(indent=2, sort_keys=true) }}{{ messages[0].content.split() }}{{ x|tojson }}",
    )
    .expect("parses");
    let req = RenderRequest::new(vec![json!({"role": "user", "content": "a\u{0}b\u{F0000}c"})])
        .with_kwarg("x", Json::from(f64::MAX));
    check(&t.render(&req));
}
