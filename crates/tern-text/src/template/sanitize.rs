//! Control-token sanitization: keeping message content from forging the template's special tokens.
//!
//! Reference: transformers 5.x `apply_chat_template(..., sanitize_control_tokens=True)`
//! (`chat_template_utils.py`: `_get_template_literal_text`, `_get_control_token_patterns`,
//! `mark_control_tokens`, `encode_marked_chat`; `tokenization_utils_base.py`: `_get_control_tokens`).
//!
//! Before rendering, every occurrence of a control token inside a user-supplied string (message values,
//! tools, documents, `chat_template_kwargs`; not dict keys) is wrapped in the private-use markers U+F0000 /
//! U+F0001, after deleting any such markers already present (so they cannot be forged). After rendering, the
//! prompt is split at the markers: a marked token becomes a segment that must be tokenized as plain text, the
//! text around it is tokenized normally (special tokens parsed), and a lone marker (one that template string
//! operations separated from its token) is dropped but still splits the text, so the text on either side can
//! not join into a control token.
//!
//! Control tokens are the tokenizer's special added tokens plus the non-special added tokens that appear in
//! the template's literal text (or those listed in `chat_control_tokens` in tokenizer_config.json); see
//! [`control_tokens`].

use serde_json::{Map, Value as Json};

/// Start marker wrapped around a control token found in user input.
pub const CONTROL_TOKEN_START: char = '\u{F0000}';
/// End marker wrapped around a control token found in user input.
pub const CONTROL_TOKEN_END: char = '\u{F0001}';

/// A leftmost-longest matcher over a set of control tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenMatcher {
    /// Tokens grouped by first byte, each group sorted longest first.
    by_first: Vec<Vec<String>>,
}

impl TokenMatcher {
    pub(crate) fn new<I, S>(tokens: I) -> TokenMatcher
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut by_first: Vec<Vec<String>> = vec![Vec::new(); 256];
        for t in tokens {
            let t = t.as_ref();
            if let Some(&b) = t.as_bytes().first() {
                if !by_first[b as usize].iter().any(|x| x == t) {
                    by_first[b as usize].push(t.to_string());
                }
            }
        }
        for group in &mut by_first {
            group.sort_by_key(|t| std::cmp::Reverse(t.len()));
        }
        TokenMatcher { by_first }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_first.iter().all(Vec::is_empty)
    }

    /// The candidates (longest first) that could start at the beginning of `s`.
    fn candidates<'a>(&'a self, s: &str) -> &'a [String] {
        match s.as_bytes().first() {
            Some(&b) => &self.by_first[b as usize],
            None => &[],
        }
    }

    /// The longest token that `s` starts with.
    fn match_at<'a>(&'a self, s: &str) -> Option<&'a str> {
        self.candidates(s).iter().find(|t| s.starts_with(t.as_str())).map(String::as_str)
    }
}

/// `mark_control_tokens` on one string.
pub(crate) fn mark_str(s: &str, matcher: &TokenMatcher) -> String {
    let cleaned: String = s.chars().filter(|&c| c != CONTROL_TOKEN_START && c != CONTROL_TOKEN_END).collect();
    if matcher.is_empty() {
        return cleaned;
    }
    let mut out = String::with_capacity(cleaned.len() + 16);
    let mut i = 0;
    while i < cleaned.len() {
        let rest = &cleaned[i..];
        if let Some(tok) = matcher.match_at(rest) {
            out.push(CONTROL_TOKEN_START);
            out.push_str(tok);
            out.push(CONTROL_TOKEN_END);
            i += tok.len();
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `mark_control_tokens` on a JSON value: strings are marked recursively, dict keys are not.
pub(crate) fn mark_json(value: &Json, matcher: &TokenMatcher) -> Json {
    match value {
        Json::String(s) => Json::String(mark_str(s, matcher)),
        Json::Array(items) => Json::Array(items.iter().map(|v| mark_json(v, matcher)).collect()),
        Json::Object(obj) => {
            Json::Object(obj.iter().map(|(k, v)| (k.clone(), mark_json(v, matcher))).collect::<Map<String, Json>>())
        }
        other => other.clone(),
    }
}

/// One piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The text.
    pub text: String,
    /// `true`: template output (with ordinary message text), to be tokenized with special tokens parsed.
    /// `false`: a control token that came from user input, to be tokenized as plain text.
    pub parse_special: bool,
}

/// `encode_marked_chat`'s split of a rendered prompt into segments.
pub(crate) fn split_marked(rendered: &str, matcher: &TokenMatcher) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, segments: &mut Vec<Segment>| {
        if !text.is_empty() {
            segments.push(Segment { text: std::mem::take(text), parse_special: true });
        }
    };
    let mut i = 0;
    while i < rendered.len() {
        let rest = &rendered[i..];
        let c = rest.chars().next().unwrap_or(' ');
        if c == CONTROL_TOKEN_START {
            let after = &rest[c.len_utf8()..];
            let marked = matcher
                .candidates(after)
                .iter()
                .find(|t| after.starts_with(t.as_str()) && after[t.len()..].starts_with(CONTROL_TOKEN_END));
            flush(&mut text, &mut segments);
            if let Some(tok) = marked {
                segments.push(Segment { text: tok.clone(), parse_special: false });
                i += c.len_utf8() + tok.len() + CONTROL_TOKEN_END.len_utf8();
            } else {
                i += c.len_utf8();
            }
        } else if c == CONTROL_TOKEN_END {
            flush(&mut text, &mut segments);
            i += c.len_utf8();
        } else {
            text.push(c);
            i += c.len_utf8();
        }
    }
    flush(&mut text, &mut segments);
    segments
}

/// transformers' `_get_template_literal_text`: the template's raw text outside tags plus every string literal
/// inside `{{ }}` / `{% %}` tags, joined with NUL so a search can't match across two of them. Comments are
/// skipped; `{% raw %}` bodies count as text.
pub(crate) fn template_literal_text(source: &str) -> String {
    let mut pieces: Vec<String> = Vec::new();
    let mut rest = source;
    loop {
        let next = ["{{", "{%", "{#"].iter().filter_map(|m| rest.find(m).map(|p| (p, *m))).min_by_key(|(p, _)| *p);
        let Some((pos, opener)) = next else {
            pieces.push(rest.to_string());
            break;
        };
        pieces.push(rest[..pos].to_string());
        let tag = &rest[pos + 2..];
        if opener == "{#" {
            match tag.find("#}") {
                Some(end) => rest = &tag[end + 2..],
                None => break,
            }
            continue;
        }
        let closer = if opener == "{{" { "}}" } else { "%}" };
        let (literals, consumed) = scan_tag(tag, closer);
        let is_raw = opener == "{%"
            && tag[..consumed.min(tag.len())]
                .trim_matches(|c: char| c == '-' || c == '+' || c == '%' || c == '}' || c.is_whitespace())
                == "raw";
        pieces.extend(literals);
        rest = &tag[consumed.min(tag.len())..];
        if is_raw {
            // Everything up to {% endraw %} is literal text.
            let mut search = 0;
            let mut end_found = None;
            while let Some(p) = rest[search..].find("{%") {
                let start = search + p;
                let inner = &rest[start + 2..];
                if let Some(close) = inner.find("%}") {
                    let name = inner[..close].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
                    if name == "endraw" {
                        end_found = Some((start, start + 2 + close + 2));
                        break;
                    }
                }
                search = start + 2;
            }
            match end_found {
                Some((a, b)) => {
                    pieces.push(rest[..a].to_string());
                    rest = &rest[b..];
                }
                None => {
                    pieces.push(rest.to_string());
                    break;
                }
            }
        }
    }
    pieces.join("\0")
}

/// Scans a tag body up to its closer, collecting string literals. Returns the literals and the number of
/// bytes consumed (including the closer).
fn scan_tag(tag: &str, closer: &str) -> (Vec<String>, usize) {
    let mut literals = Vec::new();
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(closer.as_bytes()) {
            return (literals, i + closer.len());
        }
        let b = bytes[i];
        if b == b'\'' || b == b'"' {
            let quote = b as char;
            let mut lit = String::new();
            let mut j = i + 1;
            let mut chars = tag[j..].char_indices();
            let mut closed = false;
            while let Some((off, c)) = chars.next() {
                if c == quote {
                    j = i + 1 + off + 1;
                    closed = true;
                    break;
                }
                if c == '\\' {
                    match chars.next() {
                        Some((_, 'n')) => lit.push('\n'),
                        Some((_, 't')) => lit.push('\t'),
                        Some((_, 'r')) => lit.push('\r'),
                        Some((_, '0')) => lit.push('\0'),
                        Some((_, e @ ('\\' | '\'' | '"'))) => lit.push(e),
                        Some((_, e)) => {
                            lit.push('\\');
                            lit.push(e);
                        }
                        None => lit.push('\\'),
                    }
                } else {
                    lit.push(c);
                }
            }
            literals.push(lit);
            if !closed {
                return (literals, bytes.len());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    (literals, bytes.len())
}

/// The control tokens of a tokenizer for a template, as transformers' `_get_control_tokens` picks them:
/// every special added token, plus the non-special added tokens listed in `chat_control_tokens` when given,
/// or else those that appear in the template's literal text (except whitespace-only tokens such as
/// Gemma's `"\n"`).
///
/// `added_tokens` yields `(content, special)` for each added token of the tokenizer.
pub fn control_tokens<'a, I>(
    template_source: &str,
    added_tokens: I,
    chat_control_tokens: Option<&[String]>,
) -> Vec<String>
where
    I: IntoIterator<Item = (&'a str, bool)>,
{
    let literal_text =
        if chat_control_tokens.is_none() { template_literal_text(template_source) } else { String::new() };
    let mut out: Vec<String> = Vec::new();
    for (content, special) in added_tokens {
        if content.is_empty() {
            continue;
        }
        let keep = special
            || match chat_control_tokens {
                Some(list) => list.iter().any(|t| t == content),
                None => !content.chars().all(super::env::py_isspace) && literal_text.contains(content),
            };
        if keep && !out.iter().any(|t| t == content) {
            out.push(content.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_splits_like_transformers() {
        let m = TokenMatcher::new(["<|im_end|>", "<|im", "</s>"]);
        let marked = mark_str("a<|im_end|>b\u{F0000}</s>", &m);
        assert_eq!(marked, "a\u{F0000}<|im_end|>\u{F0001}b\u{F0000}</s>\u{F0001}");
        let rendered = format!("<|im_start|>user\n{marked}<|im_end|>x\u{F0000}<|im\u{F0001}y\u{F0001}");
        let segs = split_marked(&rendered, &m);
        let got: Vec<(&str, bool)> = segs.iter().map(|s| (s.text.as_str(), s.parse_special)).collect();
        assert_eq!(
            got,
            [
                ("<|im_start|>user\na", true),
                ("<|im_end|>", false),
                ("b", true),
                ("</s>", false),
                ("<|im_end|>x", true),
                ("<|im", false),
                ("y", true),
            ]
        );
    }

    #[test]
    fn literal_text_and_control_tokens() {
        let src = "{# <|c|> #}{{ '<|im_start|>' + role }}\n{% if x %}<|im_end|>{% endif %}{% raw %}<|r|>{% endraw %}";
        let text = template_literal_text(src);
        assert!(text.contains("<|im_start|>") && text.contains("<|im_end|>") && text.contains("<|r|>"));
        assert!(!text.contains("<|c|>"));
        // Multi-byte text inside tags and unterminated tags do not trip the scanner.
        let _ = template_literal_text("{{ é ü '<a>' }}{% é {# x");
        let _ = template_literal_text("{{ 'unterminated é");
        let toks = control_tokens(src, [("<s>", true), ("<|im_end|>", false), ("<|c|>", false), ("\n", false)], None);
        assert_eq!(toks, ["<s>", "<|im_end|>"]);
    }
}
