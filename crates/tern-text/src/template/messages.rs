//! OpenAI-shaped chat messages and tools, and the input normalization transformers applies before rendering.
//!
//! The typed structs serialize to exactly the JSON objects that transformers' `apply_chat_template` receives
//! from an OpenAI-compatible client: `{"role", "content"}` where content is a string or a list of
//! `{"type": "text", "text": ...}` parts (other part types such as `image_url` are passed through untouched),
//! assistant `tool_calls` (`[{"id", "type": "function", "function": {"name", "arguments"}}]`), `tool`
//! messages with `tool_call_id`, and reasoning in `reasoning_content`. Unknown fields are kept (`extra`), so
//! anything a template reads can be supplied.
//!
//! Normalization (transformers 5.x, `chat_template_utils.py`):
//! * `_normalize_chat_messages`: keys whose value is `null` are dropped from each message (top level only);
//! * `_alias_reasoning_fields`: the first non-null of `reasoning_content`, `thinking`, `reasoning` becomes
//!   `{"thinking": r, **message, "reasoning_content": r}` (gpt-oss templates read `thinking`).
//!
//! Tool-call arguments are passed as given, like transformers: OpenAI clients send them as a JSON *string*
//! while most templates (Qwen, Llama 3.1, Hermes, ...) were written for a *dict* and print a string verbatim
//! or, worse, iterate it. [`parse_tool_call_arguments`] optionally turns string arguments that parse as a JSON
//! object into that object (what vLLM and llama.cpp do); it is off by default to stay byte-identical to
//! transformers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// A chat message in the OpenAI shape.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool` (or any role the template knows, e.g. `developer`, `ipython`).
    pub role: String,
    /// The content: a string or a list of typed parts. `None` is omitted (transformers drops null keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Reasoning ("thinking") of an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Optional participant or tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `tool` messages: the id of the call this is the result of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Any other field, passed to the template unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl ChatMessage {
    /// A message with string content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: Some(MessageContent::Text(content.into())), ..ChatMessage::default() }
    }

    /// The message as the JSON object the template sees.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

/// Message content: a plain string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts (`{"type": "text", "text": ...}`, `{"type": "image_url", ...}`, ...).
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part type, e.g. `text`, `image_url`, `image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Other fields of the part.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl ContentPart {
    /// A `{"type": "text", "text": ...}` part.
    pub fn text(text: impl Into<String>) -> ContentPart {
        ContentPart { kind: "text".into(), text: Some(text.into()), extra: Map::new() }
    }
}

/// An assistant tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call id (some templates, e.g. Mistral's, require 9 alphanumerics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always `function` in the OpenAI API.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The called function.
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".into()
}

/// The function of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments: a JSON string (OpenAI wire format) or a JSON object (what most templates expect).
    pub arguments: Json,
}

/// A tool (function) definition, as in the OpenAI `tools` array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function` in the OpenAI API.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The function schema.
    pub function: FunctionDefinition,
}

/// A function schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// Function name.
    pub name: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Json>,
    /// Other fields (e.g. `strict`).
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl Tool {
    /// The tool as the JSON object the template sees.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

/// The names a message's reasoning may be given under; the first is the one templates read.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// transformers' `_normalize_chat_messages` + `_alias_reasoning_fields` on one message object.
/// Non-object messages are returned unchanged (the caller rejects them).
pub(crate) fn normalize_message(message: &Json) -> Json {
    let Json::Object(obj) = message else {
        return message.clone();
    };
    let obj: Map<String, Json> =
        obj.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    let reasoning = REASONING_FIELDS.iter().find_map(|k| obj.get(*k).filter(|v| !v.is_null()).cloned());
    let Some(reasoning) = reasoning else {
        return Json::Object(obj);
    };
    // {"thinking": reasoning, **message, "reasoning_content": reasoning}
    let mut out = Map::new();
    out.insert("thinking".into(), reasoning.clone());
    for (k, v) in obj {
        out.insert(k, v);
    }
    out.insert("reasoning_content".into(), reasoning);
    Json::Object(out)
}

/// Joins a content list made only of text parts into one string (parts separated by `"\n"`, vLLM's
/// "string" content format), for templates that only handle string content. Lists with other part types are
/// left unchanged.
pub fn flatten_text_content(message: &mut Json) {
    let Some(Json::Array(parts)) = message.get("content") else {
        return;
    };
    let mut texts = Vec::with_capacity(parts.len());
    for part in parts {
        match (part.get("type").and_then(Json::as_str), part.get("text").and_then(Json::as_str)) {
            (Some("text"), Some(text)) => texts.push(text),
            _ => return,
        }
    }
    let joined = texts.join("\n");
    if let Some(content) = message.get_mut("content") {
        *content = Json::String(joined);
    }
}

/// Replaces tool-call `arguments` strings that parse as a JSON object by that object (in place).
pub fn parse_tool_call_arguments(message: &mut Json) {
    let Some(calls) = message.get_mut("tool_calls").and_then(Json::as_array_mut) else {
        return;
    };
    for call in calls {
        let target = match call.get_mut("function") {
            Some(f) if f.is_object() => f,
            _ => call,
        };
        if let Some(args) = target.get_mut("arguments") {
            if let Some(text) = args.as_str() {
                if let Ok(parsed @ Json::Object(_)) = serde_json::from_str::<Json>(text) {
                    *args = parsed;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_messages_serialize_to_openai_shape() {
        let mut m = ChatMessage::new("assistant", "");
        m.tool_calls = Some(vec![ToolCall {
            id: Some("call_1".into()),
            kind: "function".into(),
            function: FunctionCall { name: "f".into(), arguments: json!({"a": 1}) },
        }]);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":{"a":1}}}]}"#
        );
        let parsed: ChatMessage =
            serde_json::from_value(json!({"role": "user", "content": [{"type": "text", "text": "hi"}], "x": 1}))
                .unwrap();
        assert_eq!(parsed.content, Some(MessageContent::Parts(vec![ContentPart::text("hi")])));
        assert_eq!(parsed.extra.get("x"), Some(&json!(1)));
    }

    #[test]
    fn normalization_matches_transformers() {
        let m = json!({"role": "assistant", "content": "x", "tool_calls": null, "reasoning": "r"});
        let n = normalize_message(&m);
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"thinking":"r","role":"assistant","content":"x","reasoning":"r","reasoning_content":"r"}"#
        );
        let mut m = json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        flatten_text_content(&mut m);
        assert_eq!(m["content"], json!("a\nb"));
        let mut m = json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]});
        flatten_text_content(&mut m);
        assert!(m["content"].is_array());
        let mut m =
            json!({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\": 1}"}}]});
        parse_tool_call_arguments(&mut m);
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], json!({"a": 1}));
    }
}
