//! Tool-call parsing of model output, for the formats of the supported model families.
//!
//! * Hermes / Qwen2.5 / Qwen3: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, any
//!   number of blocks, text around them is content (vLLM `hermes` parser). A final block cut off by
//!   EOS without `</tool_call>` is accepted if its JSON is complete.
//! * Llama 3.1/3.2 JSON: the whole output is `{"name": ..., "parameters": {...}}` (also `arguments`,
//!   an optional `"type": "function"`, an optional `<|python_tag|>` prefix), several separated by `;`
//!   (vLLM `llama3_json` parser).
//!
//! A call is only recognised when its name is one of the request's tools; anything that does not
//! parse is returned as plain content. [`ToolStream`] does the same incrementally: it streams content
//! until a tool call may be starting and holds the rest until the end.

use serde_json::Value as Json;

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";

/// One parsed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    /// The arguments as JSON text (OpenAI sends them as a string).
    pub arguments: String,
}

/// Parses `text` for tool calls of the tools named in `names`. Returns the remaining content (trimmed)
/// and the calls, or `None` when the text holds no valid call.
pub fn parse_tool_calls(text: &str, names: &[String]) -> Option<(String, Vec<ParsedCall>)> {
    if text.contains(HERMES_OPEN) {
        return parse_hermes(text, names);
    }
    parse_json_calls(text, names).map(|calls| (String::new(), calls))
}

fn call_from_json(v: &Json, names: &[String]) -> Option<ParsedCall> {
    let o = v.as_object()?;
    if let Some(t) = o.get("type") {
        if t.as_str() != Some("function") {
            return None;
        }
    }
    // {"name", "arguments"|"parameters"} or {"function": {"name", "arguments"}}.
    let o = match o.get("function").and_then(Json::as_object) {
        Some(f) if !o.contains_key("name") => f,
        _ => o,
    };
    let name = o.get("name")?.as_str()?;
    if !names.iter().any(|n| n == name) {
        return None;
    }
    let args = match o.get("arguments").or_else(|| o.get("parameters")) {
        None | Some(Json::Null) => "{}".to_string(),
        Some(Json::String(s)) => {
            // Already JSON text; it must still be valid JSON.
            serde_json::from_str::<Json>(s).ok()?;
            s.clone()
        }
        Some(v @ Json::Object(_)) => serde_json::to_string(v).ok()?,
        Some(_) => return None,
    };
    Some(ParsedCall { name: name.to_string(), arguments: args })
}

fn parse_hermes(text: &str, names: &[String]) -> Option<(String, Vec<ParsedCall>)> {
    let mut calls = Vec::new();
    let mut content = String::new();
    let mut rest = text;
    while let Some(open) = rest.find(HERMES_OPEN) {
        content.push_str(&rest[..open]);
        let body_start = open + HERMES_OPEN.len();
        let (body, next) = match rest[body_start..].find(HERMES_CLOSE) {
            Some(c) => (&rest[body_start..body_start + c], body_start + c + HERMES_CLOSE.len()),
            None => (&rest[body_start..], rest.len()),
        };
        let v: Json = serde_json::from_str(body.trim()).ok()?;
        calls.push(call_from_json(&v, names)?);
        rest = &rest[next..];
    }
    content.push_str(rest);
    (!calls.is_empty()).then(|| (content.trim().to_string(), calls))
}

fn parse_json_calls(text: &str, names: &[String]) -> Option<Vec<ParsedCall>> {
    let t = text.trim();
    let t = t.strip_prefix(PYTHON_TAG).unwrap_or(t).trim_start();
    if !t.starts_with('{') {
        return None;
    }
    let mut calls = Vec::new();
    let mut rest = t;
    loop {
        let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Json>();
        let v = it.next()?.ok()?;
        calls.push(call_from_json(&v, names)?);
        rest = rest[it.byte_offset()..].trim_start();
        rest = rest.strip_prefix(';').unwrap_or(rest).trim_start();
        if rest.is_empty() {
            return Some(calls);
        }
        if !rest.starts_with('{') {
            return None;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only whitespace (or the start of a tag) so far.
    Undecided,
    Content,
    /// A tool call may have started: hold everything until the end.
    Capturing,
}

/// Incremental tool-call detection for streaming.
#[derive(Debug)]
pub struct ToolStream {
    names: Vec<String>,
    mode: Mode,
    buf: String,
}

impl ToolStream {
    pub fn new(names: Vec<String>) -> ToolStream {
        ToolStream { names, mode: Mode::Undecided, buf: String::new() }
    }

    /// Adds content text; returns the content that can be streamed now.
    pub fn push(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        if self.mode == Mode::Undecided {
            let t = self.buf.trim_start();
            if t.is_empty() || [PYTHON_TAG, HERMES_OPEN].iter().any(|tag| tag.starts_with(t) && t.len() < tag.len()) {
                return String::new();
            }
            if t.starts_with('{') || t.starts_with(PYTHON_TAG) || t.starts_with(HERMES_OPEN) {
                self.mode = Mode::Capturing;
            } else {
                self.mode = Mode::Content;
            }
        }
        match self.mode {
            Mode::Capturing | Mode::Undecided => String::new(),
            Mode::Content => {
                if let Some(at) = self.buf.find(HERMES_OPEN) {
                    let out = self.buf[..at].to_string();
                    self.buf.drain(..at);
                    self.mode = Mode::Capturing;
                    return out;
                }
                let max = (HERMES_OPEN.len() - 1).min(self.buf.len());
                let keep = (1..=max)
                    .rev()
                    .find(|&n| {
                        let s = self.buf.len() - n;
                        self.buf.is_char_boundary(s) && HERMES_OPEN.starts_with(&self.buf[s..])
                    })
                    .unwrap_or(0);
                let cut = self.buf.len() - keep;
                let out = self.buf[..cut].to_string();
                self.buf.drain(..cut);
                out
            }
        }
    }

    /// Generation ended: the remaining content and the parsed calls (empty when none).
    pub fn finish(&mut self) -> (String, Vec<ParsedCall>) {
        let buf = std::mem::take(&mut self.buf);
        if self.mode == Mode::Capturing {
            if let Some((content, calls)) = parse_tool_calls(&buf, &self.names) {
                return (content, calls);
            }
        }
        (buf, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["get_weather".into(), "add".into()]
    }

    #[test]
    fn hermes_blocks() {
        let out = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>";
        let (content, calls) = parse_tool_calls(out, &names()).unwrap();
        assert_eq!(content, "Let me check.");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], ParsedCall { name: "get_weather".into(), arguments: r#"{"city":"Paris"}"#.into() });
        assert_eq!(calls[1].arguments, r#"{"a":1,"b":2}"#);
        // Unterminated final block (EOS right after the JSON) is accepted.
        let (_, calls) = parse_tool_calls("<tool_call>{\"name\": \"add\", \"arguments\": \"{}\"}", &names()).unwrap();
        assert_eq!(calls[0].arguments, "{}");
        // Unknown tool or broken JSON: not a call.
        assert!(parse_tool_calls("<tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>", &names()).is_none());
        assert!(parse_tool_calls("<tool_call>{\"name\": \"add\", </tool_call>", &names()).is_none());
    }

    #[test]
    fn llama3_json() {
        let (c, calls) =
            parse_tool_calls(r#"{"name": "get_weather", "parameters": {"city": "Oslo"}}"#, &names()).unwrap();
        assert_eq!(c, "");
        assert_eq!(calls[0].arguments, r#"{"city":"Oslo"}"#);
        let two = r#"<|python_tag|>{"type": "function", "name": "add", "parameters": {"a": 1}}; {"name": "get_weather", "parameters": {"city": "a;b"}}"#;
        let (_, calls) = parse_tool_calls(two, &names()).unwrap();
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["add", "get_weather"]);
        assert_eq!(calls[1].arguments, r#"{"city":"a;b"}"#);
        assert!(parse_tool_calls(r#"{"name": "add"} trailing text"#, &names()).is_none());
        assert!(parse_tool_calls("The answer is {x}", &names()).is_none());
        assert!(parse_tool_calls(r#"{"a": 1}"#, &names()).is_none());
    }

    fn stream(pieces: &[&str]) -> (String, Vec<ParsedCall>) {
        let mut s = ToolStream::new(names());
        let mut content = String::new();
        for p in pieces {
            content += &s.push(p);
        }
        let (rest, calls) = s.finish();
        (content + &rest, calls)
    }

    #[test]
    fn streaming_detection() {
        let (c, calls) = stream(&["Sure", ". <tool", "_call>{\"name\": \"add\", \"arguments\": {}}</tool_call>"]);
        assert_eq!(c, "Sure. ");
        assert_eq!(calls.len(), 1);
        let (c, calls) = stream(&["  {\"name\": \"add\",", " \"parameters\": {}}"]);
        assert_eq!((c.as_str(), calls.len()), ("", 1));
        // Plain text, including a brace later on, streams as content.
        let (c, calls) = stream(&["<", "b> and {x}"]);
        assert_eq!((c.as_str(), calls.len()), ("<b> and {x}", 0));
        // Looked like JSON but was not a call: everything comes back as content.
        let (c, calls) = stream(&["{\"x\": 1}"]);
        assert_eq!((c.as_str(), calls.len()), ("{\"x\": 1}", 0));
    }
}
