//! Parsing and validating OpenAI request bodies (`/v1/chat/completions`, `/v1/completions`) before any
//! compute.
//!
//! Field names, types and ranges follow the OpenAI API reference (chat: `temperature` 0–2, `top_p`
//! (0, 1], `presence_penalty`/`frequency_penalty` −2..2, `logit_bias` −100..100, `top_logprobs` 0–20,
//! `n` ≥ 1, `stream_options` only with `stream`; completions: integer `logprobs` 0–5 (here up to 20))
//! plus the extensions vLLM and llama.cpp accept (`top_k`, `min_p`, `repetition_penalty`,
//! `chat_template_kwargs`). Every error is a 400 naming the field. Unknown fields are ignored, as
//! OpenAI-compatible servers do; fields that would change the output in ways tern cannot honour
//! (`response_format` with a JSON type, `tool_choice: required`, images, `suffix`) are refused.

use crate::error::ApiError;
use serde_json::{Map, Value as Json};

/// Largest `n`.
pub const MAX_N: u64 = 16;
/// Most stop strings.
pub const MAX_STOP: usize = 16;
/// Largest `top_logprobs` (chat) / `logprobs` (completions).
pub const MAX_TOP_LOGPROBS: u64 = 20;

/// Sampling fields of a request; `None` = use the server default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: Option<u64>,
}

/// Fields shared by both endpoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommonFields {
    pub model: Option<String>,
    pub sampling: SamplingFields,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// `Some(k)`: return logprobs with the `k` most likely alternatives.
    pub logprobs: Option<usize>,
    /// vLLM / llama.cpp extension: keep generating past EOS (benchmarks).
    pub ignore_eos: bool,
    /// `response_format: {"type": "json_object"}`: constrain the output to one JSON object.
    pub json_object: bool,
}

/// What the server does with the request's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoice {
    /// Render the tools; parse calls out of the reply.
    Auto,
    /// Render the tools; never parse calls.
    None,
}

/// A validated chat request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub common: CommonFields,
    /// Messages as the chat template expects them (OpenAI shape, `developer` renamed `system`).
    pub messages: Vec<Json>,
    pub tools: Option<Vec<Json>>,
    pub tool_names: Vec<String>,
    pub tool_choice: ToolChoice,
    pub template_kwargs: Map<String, Json>,
}

/// One prompt of a completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// A validated completion request.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub common: CommonFields,
    pub prompts: Vec<PromptInput>,
    pub echo: bool,
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_f64() => "a non-integer number",
        Json::Number(_) => "an integer",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn wrong_type(field: &str, want: &str, got: &Json) -> ApiError {
    ApiError::invalid(field, format!("`{field}` must be {want}, got {}", type_name(got)))
}

/// Typed access to the top-level object; `null` counts as absent.
struct Fields<'a>(&'a Map<String, Json>);

impl<'a> Fields<'a> {
    fn get(&self, k: &str) -> Option<&'a Json> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn number(&self, k: &str, lo: f64, hi: f64, lo_open: bool, range: &str) -> Result<Option<f32>, ApiError> {
        let Some(v) = self.get(k) else { return Ok(None) };
        let x = v.as_f64().ok_or_else(|| wrong_type(k, "a number", v))?;
        let ok = x.is_finite() && (if lo_open { x > lo } else { x >= lo }) && x <= hi;
        if !ok {
            return Err(ApiError::invalid(k, format!("`{k}` must be {range}, got {x}")));
        }
        Ok(Some(x as f32))
    }

    fn uint(&self, k: &str, lo: u64, hi: u64) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.get(k) else { return Ok(None) };
        let x = match v {
            Json::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(x), _) => x,
                (None, Some(neg)) => {
                    return Err(ApiError::invalid(k, format!("`{k}` must be at least {lo}, got {neg}")));
                }
                _ => return Err(wrong_type(k, "an integer", v)),
            },
            _ => return Err(wrong_type(k, "an integer", v)),
        };
        if x < lo || x > hi {
            return Err(ApiError::invalid(k, format!("`{k}` must be between {lo} and {hi}, got {x}")));
        }
        Ok(Some(x))
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(wrong_type(k, "a boolean", v)),
        }
    }

    fn string(&self, k: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(k, "a string", v)),
        }
    }
}

/// Parses a body into its top-level object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Json>, ApiError> {
    let v: Json = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
    match v {
        Json::Object(o) => Ok(o),
        other => {
            Err(ApiError::bad_request(format!("The request body must be a JSON object, got {}", type_name(&other))))
        }
    }
}

fn parse_stop(f: &Fields<'_>) -> Result<Vec<String>, ApiError> {
    let list: Vec<&Json> = match f.get("stop") {
        None => return Ok(Vec::new()),
        Some(s @ Json::String(_)) => vec![s],
        Some(Json::Array(a)) => a.iter().collect(),
        Some(v) => return Err(wrong_type("stop", "a string or an array of strings", v)),
    };
    if list.len() > MAX_STOP {
        return Err(ApiError::invalid(
            "stop",
            format!("`stop` has {} strings; at most {MAX_STOP} are allowed", list.len()),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Json::String(s) if s.is_empty() => Err(ApiError::invalid(
                "stop",
                format!("`stop[{i}]` is an empty string; stop strings must not be empty"),
            )),
            Json::String(s) => Ok(s.clone()),
            other => Err(wrong_type(&format!("stop[{i}]"), "a string", other)),
        })
        .collect()
}

fn parse_logit_bias(f: &Fields<'_>) -> Result<Vec<(u32, f32)>, ApiError> {
    let o = match f.get("logit_bias") {
        None => return Ok(Vec::new()),
        Some(Json::Object(o)) => o,
        Some(v) => return Err(wrong_type("logit_bias", "an object mapping token ids to biases", v)),
    };
    let mut out = Vec::with_capacity(o.len());
    for (k, v) in o {
        let id: u32 = k.trim().parse().map_err(|_| {
            ApiError::invalid(
                "logit_bias",
                format!("`logit_bias` key {k:?} is not a token id (a non-negative integer)"),
            )
        })?;
        let b = v.as_f64().ok_or_else(|| wrong_type(&format!("logit_bias[{k}]"), "a number", v))?;
        if !(-100.0..=100.0).contains(&b) {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("`logit_bias[{k}]` must be between -100 and 100, got {b}"),
            ));
        }
        out.push((id, b as f32));
    }
    Ok(out)
}

fn parse_common(f: &Fields<'_>, chat: bool) -> Result<CommonFields, ApiError> {
    let model = f.string("model")?.map(str::to_string);
    let sampling = SamplingFields {
        temperature: f.number("temperature", 0.0, 2.0, false, "between 0 and 2")?,
        top_p: f.number("top_p", 0.0, 1.0, true, "greater than 0 and at most 1")?,
        top_k: match f.get("top_k") {
            // vLLM spells "off" as -1 (or 0).
            Some(Json::Number(n)) if n.as_i64() == Some(-1) => Some(0),
            _ => f.uint("top_k", 0, u32::MAX as u64)?.map(|k| k as usize),
        },
        min_p: f.number("min_p", 0.0, 1.0, false, "between 0 and 1")?,
        repetition_penalty: f.number("repetition_penalty", 0.0, 10.0, true, "greater than 0 and at most 10")?,
        presence_penalty: f.number("presence_penalty", -2.0, 2.0, false, "between -2 and 2")?,
        frequency_penalty: f.number("frequency_penalty", -2.0, 2.0, false, "between -2 and 2")?,
        logit_bias: parse_logit_bias(f)?,
        seed: match f.get("seed") {
            None => None,
            Some(Json::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(Json::Number(n)) if n.as_i64().is_some() => n.as_i64().map(|x| x as u64),
            Some(v) => return Err(wrong_type("seed", "an integer", v)),
        },
    };
    let max_tokens = f.uint("max_tokens", 1, u32::MAX as u64)?;
    let max_completion = f.uint("max_completion_tokens", 1, u32::MAX as u64)?;
    let n = f.uint("n", 1, MAX_N)?.unwrap_or(1) as usize;
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Json::Object(o)) => {
            if !stream {
                return Err(ApiError::invalid(
                    "stream_options",
                    "`stream_options` is only allowed when `stream` is true",
                ));
            }
            match o.get("include_usage") {
                None | Some(Json::Null) => false,
                Some(Json::Bool(b)) => *b,
                Some(v) => return Err(wrong_type("stream_options.include_usage", "a boolean", v)),
            }
        }
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    let logprobs = if chat {
        let on = f.bool("logprobs")?.unwrap_or(false);
        let top = f.uint("top_logprobs", 0, MAX_TOP_LOGPROBS)?;
        if top.is_some() && !on {
            return Err(ApiError::invalid("top_logprobs", "`top_logprobs` requires `logprobs` to be true"));
        }
        on.then_some(top.unwrap_or(0) as usize)
    } else {
        f.uint("logprobs", 0, MAX_TOP_LOGPROBS)?.map(|k| k as usize)
    };
    Ok(CommonFields {
        model,
        sampling,
        max_tokens: max_completion.or(max_tokens).map(|x| x as usize),
        stop: parse_stop(f)?,
        n,
        stream,
        include_usage,
        logprobs,
        ignore_eos: f.bool("ignore_eos")?.unwrap_or(false),
        json_object: response_format_is_json(f)?,
    })
}

/// `response_format`: `text` (default) or `json_object`; `json_schema` is refused.
fn response_format_is_json(f: &Fields<'_>) -> Result<bool, ApiError> {
    let Some(v) = f.get("response_format") else { return Ok(false) };
    let Json::Object(o) = v else { return Err(wrong_type("response_format", "an object", v)) };
    match o.get("type").and_then(Json::as_str) {
        Some("text") => Ok(false),
        Some("json_object") => Ok(true),
        Some("json_schema") => Err(ApiError::invalid(
            "response_format",
            "`response_format` type \"json_schema\" needs schema-constrained decoding, which tern does not support \
             yet; \"json_object\" (any valid JSON object) is supported",
        )),
        Some(t) => Err(ApiError::invalid("response_format", format!("unknown `response_format.type` {t:?}"))),
        None => Err(ApiError::invalid("response_format", "`response_format.type` is required")),
    }
}

fn parse_content(field: &str, v: &Json) -> Result<(), ApiError> {
    match v {
        Json::Null | Json::String(_) => Ok(()),
        Json::Array(parts) => {
            for (j, p) in parts.iter().enumerate() {
                let pf = format!("{field}[{j}]");
                let Json::Object(po) = p else { return Err(wrong_type(&pf, "a content part object", p)) };
                match po.get("type").and_then(Json::as_str) {
                    Some("text") => match po.get("text") {
                        Some(Json::String(_)) => {}
                        Some(t) => return Err(wrong_type(&format!("{pf}.text"), "a string", t)),
                        None => return Err(ApiError::invalid(&pf, format!("`{pf}.text` is required"))),
                    },
                    Some(t) => {
                        return Err(ApiError::invalid(
                            &pf,
                            format!("content part type {t:?} is not supported: the model takes text only"),
                        ))
                    }
                    None => return Err(ApiError::invalid(&pf, format!("`{pf}.type` is required"))),
                }
            }
            Ok(())
        }
        other => Err(wrong_type(field, "a string or an array of content parts", other)),
    }
}

fn parse_messages(f: &Fields<'_>) -> Result<Vec<Json>, ApiError> {
    let list = match f.get("messages") {
        None => return Err(ApiError::invalid("messages", "`messages` is required")),
        Some(Json::Array(a)) => a,
        Some(v) => return Err(wrong_type("messages", "an array of messages", v)),
    };
    if list.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must contain at least one message"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let mf = format!("messages[{i}]");
        let Json::Object(mo) = m else { return Err(wrong_type(&mf, "an object", m)) };
        let role = match mo.get("role") {
            Some(Json::String(r)) => r.as_str(),
            Some(v) => return Err(wrong_type(&format!("{mf}.role"), "a string", v)),
            None => return Err(ApiError::invalid(&format!("{mf}.role"), format!("`{mf}.role` is required"))),
        };
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid(
                &format!("{mf}.role"),
                format!("`{mf}.role` {role:?} is not one of system, developer, user, assistant, tool"),
            ));
        }
        let content = mo.get("content").unwrap_or(&Json::Null);
        parse_content(&format!("{mf}.content"), content)?;
        let has_calls = matches!(mo.get("tool_calls"), Some(Json::Array(a)) if !a.is_empty());
        if content.is_null() && !(role == "assistant" && has_calls) {
            return Err(ApiError::invalid(&format!("{mf}.content"), format!("`{mf}.content` is required")));
        }
        if let Some(tc) = mo.get("tool_calls").filter(|v| !v.is_null()) {
            let Json::Array(calls) = tc else { return Err(wrong_type(&format!("{mf}.tool_calls"), "an array", tc)) };
            for (j, c) in calls.iter().enumerate() {
                let cf = format!("{mf}.tool_calls[{j}]");
                let func = c.get("function").and_then(Json::as_object);
                let name_ok = func.and_then(|fo| fo.get("name")).is_some_and(Json::is_string);
                if !name_ok {
                    return Err(ApiError::invalid(&cf, format!("`{cf}.function.name` must be a string")));
                }
            }
        }
        for k in ["name", "tool_call_id"] {
            if let Some(v) = mo.get(k).filter(|v| !v.is_null() && !v.is_string()) {
                return Err(wrong_type(&format!("{mf}.{k}"), "a string", v));
            }
        }
        let mut m = mo.clone();
        // vLLM renders a null content (assistant turns that only call tools) as "": templates that
        // concatenate `message['content']` would fail on a missing value.
        if content.is_null() {
            m.insert("content".into(), Json::String(String::new()));
        }
        if role == "developer" {
            m.insert("role".into(), Json::String("system".into()));
        }
        out.push(Json::Object(m));
    }
    Ok(out)
}

fn parse_tools(f: &Fields<'_>) -> Result<(Option<Vec<Json>>, Vec<String>), ApiError> {
    let list = match f.get("tools") {
        None => return Ok((None, Vec::new())),
        Some(Json::Array(a)) => a,
        Some(v) => return Err(wrong_type("tools", "an array", v)),
    };
    let mut names = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let tf = format!("tools[{i}]");
        let Json::Object(to) = t else { return Err(wrong_type(&tf, "an object", t)) };
        if to.get("type").and_then(Json::as_str) != Some("function") {
            return Err(ApiError::invalid(&tf, format!("`{tf}.type` must be \"function\"")));
        }
        let Some(Json::Object(func)) = to.get("function") else {
            return Err(ApiError::invalid(&tf, format!("`{tf}.function` must be an object")));
        };
        let name = match func.get("name") {
            Some(Json::String(n)) if !n.is_empty() && n.len() <= 64 => n,
            _ => {
                return Err(ApiError::invalid(
                    &tf,
                    format!("`{tf}.function.name` must be a non-empty string (≤ 64 chars)"),
                ))
            }
        };
        if let Some(p) = func.get("parameters").filter(|p| !p.is_null() && !p.is_object()) {
            return Err(wrong_type(&format!("{tf}.function.parameters"), "an object (JSON Schema)", p));
        }
        names.push(name.clone());
    }
    Ok((if list.is_empty() { None } else { Some(list.clone()) }, names))
}

fn parse_tool_choice(f: &Fields<'_>) -> Result<ToolChoice, ApiError> {
    match f.get("tool_choice") {
        None => Ok(ToolChoice::Auto),
        Some(Json::String(s)) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Err(ApiError::invalid(
                "tool_choice",
                "`tool_choice: \"required\"` needs constrained decoding, which tern does not support yet (use \"auto\")",
            )),
            other => Err(ApiError::invalid("tool_choice", format!("unknown `tool_choice` {other:?}"))),
        },
        Some(Json::Object(_)) => Err(ApiError::invalid(
            "tool_choice",
            "forcing a named function needs constrained decoding, which tern does not support yet (use \"auto\")",
        )),
        Some(v) => Err(wrong_type("tool_choice", "a string or an object", v)),
    }
}

/// Validates a `/v1/chat/completions` body.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let o = parse_body(body)?;
    let f = Fields(&o);
    let common = parse_common(&f, true)?;
    let messages = parse_messages(&f)?;
    let (tools, tool_names) = parse_tools(&f)?;
    let tool_choice = parse_tool_choice(&f)?;
    let template_kwargs = match f.get("chat_template_kwargs") {
        None => Map::new(),
        Some(Json::Object(k)) => k.clone(),
        Some(v) => return Err(wrong_type("chat_template_kwargs", "an object", v)),
    };
    Ok(ChatRequest { common, messages, tools, tool_names, tool_choice, template_kwargs })
}

/// Validates a `/v1/completions` body.
pub fn parse_completion(body: &[u8]) -> Result<CompletionRequest, ApiError> {
    let o = parse_body(body)?;
    let f = Fields(&o);
    let common = parse_common(&f, false)?;
    let tokens = |field: &str, a: &[Json]| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|t| {
                t.as_u64()
                    .filter(|&x| x <= u32::MAX as u64)
                    .map(|x| x as u32)
                    .ok_or_else(|| wrong_type(field, "a string, an array of strings or an array of token ids", t))
            })
            .collect()
    };
    let prompts = match f.get("prompt") {
        None => return Err(ApiError::invalid("prompt", "`prompt` is required")),
        Some(Json::String(s)) => vec![PromptInput::Text(s.clone())],
        Some(Json::Array(a)) if a.is_empty() => {
            return Err(ApiError::invalid("prompt", "`prompt` must not be an empty array"));
        }
        Some(Json::Array(a)) if a[0].is_string() => a
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Json::String(s) => Ok(PromptInput::Text(s.clone())),
                other => Err(wrong_type(&format!("prompt[{i}]"), "a string", other)),
            })
            .collect::<Result<_, _>>()?,
        Some(Json::Array(a)) if a[0].is_array() => a
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Json::Array(ids) => Ok(PromptInput::Tokens(tokens(&format!("prompt[{i}]"), ids)?)),
                other => Err(wrong_type(&format!("prompt[{i}]"), "an array of token ids", other)),
            })
            .collect::<Result<_, _>>()?,
        Some(Json::Array(a)) => vec![PromptInput::Tokens(tokens("prompt", a)?)],
        Some(v) => return Err(wrong_type("prompt", "a string, an array of strings or an array of token ids", v)),
    };
    if prompts.len() * common.n > MAX_N as usize {
        return Err(ApiError::invalid(
            "prompt",
            format!("{} prompts × n={} is more than {MAX_N} completions in one request", prompts.len(), common.n),
        ));
    }
    if f.string("suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "`suffix` (fill-in-the-middle) is not supported"));
    }
    if let Some(b) = f.uint("best_of", 1, MAX_N)? {
        if b as usize != common.n {
            return Err(ApiError::invalid("best_of", "`best_of` other than `n` is not supported"));
        }
    }
    let echo = f.bool("echo")?.unwrap_or(false);
    if echo && common.logprobs.is_some() {
        return Err(ApiError::invalid("echo", "`echo` together with `logprobs` (prompt logprobs) is not supported"));
    }
    Ok(CompletionRequest { common, prompts, echo })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_err(body: &str) -> ApiError {
        parse_chat(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn chat_validation_names_the_field() {
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        let cases: &[(&str, &str)] = &[
            (r#"{"messages": 3}"#, "messages"),
            (r#"{"messages": []}"#, "messages"),
            (r#"{"messages":[{"role":"robot","content":"x"}]}"#, "messages[0].role"),
            (r#"{"messages":[{"role":"user"}]}"#, "messages[0].content"),
            (r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#, "messages[0].content[0]"),
            (&format!(r#"{{{m},"temperature":"hot"}}"#), "temperature"),
            (&format!(r#"{{{m},"temperature":2.5}}"#), "temperature"),
            (&format!(r#"{{{m},"temperature":-0.1}}"#), "temperature"),
            (&format!(r#"{{{m},"top_p":0}}"#), "top_p"),
            (&format!(r#"{{{m},"presence_penalty":-3}}"#), "presence_penalty"),
            (&format!(r#"{{{m},"frequency_penalty":2.01}}"#), "frequency_penalty"),
            (&format!(r#"{{{m},"max_tokens":0}}"#), "max_tokens"),
            (&format!(r#"{{{m},"max_tokens":-5}}"#), "max_tokens"),
            (&format!(r#"{{{m},"max_tokens":1.5}}"#), "max_tokens"),
            (&format!(r#"{{{m},"max_completion_tokens":0}}"#), "max_completion_tokens"),
            (&format!(r#"{{{m},"logprobs":true,"top_logprobs":21}}"#), "top_logprobs"),
            (&format!(r#"{{{m},"top_logprobs":2}}"#), "top_logprobs"),
            (&format!(r#"{{{m},"stop":""}}"#), "stop"),
            (&format!(r#"{{{m},"stop":["a",""]}}"#), "stop"),
            (&format!(r#"{{{m},"stop":5}}"#), "stop"),
            (&format!(r#"{{{m},"n":0}}"#), "n"),
            (&format!(r#"{{{m},"logit_bias":{{"x":1}}}}"#), "logit_bias"),
            (&format!(r#"{{{m},"logit_bias":{{"5":101}}}}"#), "logit_bias"),
            (&format!(r#"{{{m},"stream_options":{{"include_usage":true}}}}"#), "stream_options"),
            (&format!(r#"{{{m},"response_format":{{"type":"json_schema"}}}}"#), "response_format"),
            (&format!(r#"{{{m},"response_format":{{"type":"yaml"}}}}"#), "response_format"),
            (&format!(r#"{{{m},"response_format":"json"}}"#), "response_format"),
            (&format!(r#"{{{m},"tool_choice":"required"}}"#), "tool_choice"),
            (&format!(r#"{{{m},"tools":[{{"type":"function"}}]}}"#), "tools[0]"),
            (&format!(r#"{{{m},"chat_template_kwargs":[]}}"#), "chat_template_kwargs"),
            (&format!(r#"{{{m},"seed":"x"}}"#), "seed"),
            (&format!(r#"{{{m},"stream":"yes"}}"#), "stream"),
        ];
        for (body, field) in cases {
            let e = chat_err(body);
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(*field), "{body}: {}", e.message);
        }
        assert!(chat_err("{not json").message.contains("Invalid JSON"));
        assert!(chat_err("[1]").message.contains("JSON object"));
    }

    #[test]
    fn chat_fields_parse() {
        let r = parse_chat(
            br#"{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}],
            "temperature":0,"top_p":1,"top_k":-1,"max_tokens":7,"max_completion_tokens":5,"stop":"END","seed":-1,
            "logprobs":true,"top_logprobs":3,"n":2,"stream":true,"stream_options":{"include_usage":true},
            "logit_bias":{"12":-100},"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],
            "chat_template_kwargs":{"enable_thinking":false},"user":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0]["role"], "system");
        assert_eq!(r.messages[2]["content"], "");
        assert_eq!(r.common.max_tokens, Some(5));
        assert_eq!(r.common.stop, vec!["END"]);
        assert_eq!(r.common.sampling.top_k, Some(0));
        assert_eq!(r.common.sampling.seed, Some(u64::MAX));
        assert_eq!(r.common.sampling.logit_bias, vec![(12, -100.0)]);
        assert_eq!(r.common.logprobs, Some(3));
        assert!(r.common.include_usage && r.common.stream);
        assert_eq!(r.tool_names, vec!["f"]);
        assert_eq!(r.template_kwargs["enable_thinking"], false);
        let j = parse_chat(br#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#);
        assert!(j.unwrap().common.json_object);
    }

    #[test]
    fn completion_prompts() {
        let p = |b: &str| parse_completion(b.as_bytes());
        assert_eq!(p(r#"{"prompt":"hi"}"#).unwrap().prompts, vec![PromptInput::Text("hi".into())]);
        assert_eq!(p(r#"{"prompt":[1,2]}"#).unwrap().prompts, vec![PromptInput::Tokens(vec![1, 2])]);
        assert_eq!(p(r#"{"prompt":[[1],[2]]}"#).unwrap().prompts.len(), 2);
        assert_eq!(p(r#"{"prompt":["a","b"],"logprobs":2}"#).unwrap().common.logprobs, Some(2));
        for (b, field) in [
            (r#"{}"#, "prompt"),
            (r#"{"prompt":[]}"#, "prompt"),
            (r#"{"prompt":[1,-2]}"#, "prompt"),
            (r#"{"prompt":["a",3]}"#, "prompt[1]"),
            (r#"{"prompt":"a","logprobs":21}"#, "logprobs"),
            (r#"{"prompt":"a","suffix":"b"}"#, "suffix"),
            (r#"{"prompt":"a","echo":true,"logprobs":1}"#, "echo"),
        ] {
            assert_eq!(p(b).unwrap_err().param.as_deref(), Some(field), "{b}");
        }
    }
}
