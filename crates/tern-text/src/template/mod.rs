//! Chat templates: Jinja templates from tokenizer_config.json / chat_template.jinja / GGUF, rendered the way
//! transformers' `apply_chat_template` renders them.
//!
//! Reference: transformers 5.x — `tokenization_utils_base.py` (`apply_chat_template`, `get_chat_template`,
//! template loading in `from_pretrained`) and `utils/chat_template_utils.py` (`_compile_jinja_template`,
//! `render_jinja_template`, `_normalize_chat_messages`, `_alias_reasoning_fields`, control-token
//! sanitization). Golden outputs produced by that code (`tools/text/template_goldens.py`) are compared byte
//! for byte in `tests/template_goldens.rs`.
//!
//! # Sources and selection
//! * [`ChatTemplate::from_model_dir`]: `chat_template.jinja` (the default) and
//!   `additional_chat_templates/*.jinja` (named) take precedence over `tokenizer_config.json`'s
//!   `chat_template`, which is a string or a list of `{"name", "template"}`; the legacy processor file
//!   `chat_template.json` is the last fallback. Special tokens (`bos_token`, `eos_token`, `unk_token`,
//!   `sep_token`, `pad_token`, `cls_token`, `mask_token`; strings or `AddedToken` objects) and
//!   `chat_control_tokens` are read from tokenizer_config.json.
//! * [`ChatTemplate::new`]: a raw template string, e.g. GGUF `tokenizer.chat_template`; the caller sets
//!   special tokens with [`ChatTemplate::with_special_token`].
//! * Selection (transformers' `get_chat_template`, [`ChatTemplate::select`]): an explicit
//!   [`RenderRequest::template_name`]; else `tool_use` when tools are given and such a template exists; else
//!   `default` (or the only template); a set of named templates without `default` is an error.
//!
//! # Rendering
//! The environment is transformers' (see `env.rs`): `trim_blocks`, `lstrip_blocks`, loop controls,
//! `raise_exception`, `strftime_now`, Python-`json.dumps` `tojson`, `namespace`, `dict`, Python string and
//! dict methods. The template sees `messages`, `tools` and `documents` (`none` when not given),
//! `add_generation_prompt`, the special tokens, and every `chat_template_kwargs` entry (e.g.
//! `enable_thinking`), which override special tokens of the same name. Messages are normalized as
//! transformers does: `null` keys dropped, reasoning aliased to `reasoning_content` and `thinking`.
//! Tool-call `arguments` are passed as given (see [`messages`] for the opt-in JSON-string parsing), and so is
//! list-shaped content (opt-in: [`RenderRequest::flatten_text_content`]).
//!
//! Safety: rendering never panics. Each render runs on a fuel budget (minijinja fuel, which bounds both
//! instructions and bytes created) and an output cap, both scaled with the input size ([`RenderLimits`]);
//! inputs nested deeper than 128 levels are rejected; errors quote the failing template line.
//!
//! # Tokenizing the prompt
//! Tokenize the rendered prompt *without* adding the tokenizer's own BOS/EOS (transformers calls the
//! tokenizer with `add_special_tokens=False`: templates emit `bos_token` themselves) and *with* special
//! tokens parsed (`parse_special = true`), since the template writes its control tokens as text.
//!
//! # Special tokens in message content
//! The rendered prompt mixes the template's own control tokens (`<|im_start|>`, `<|eot_id|>`, ...) with
//! user text. Tokenizing the whole prompt with special-token parsing on (what transformers, llama.cpp and
//! vLLM do by default) lets a user forge control tokens by typing them. Use
//! [`ChatTemplate::render_segments`]: it reproduces transformers' `sanitize_control_tokens=True` (control
//! tokens inside user strings are marked before rendering and recovered after it) and returns the prompt as
//! [`Segment`]s. Tokenize each segment separately, with special tokens parsed (`parse_special = true`) when
//! [`Segment::parse_special`] is true and as plain text otherwise, and concatenate the ids (transformers'
//! `encode_marked_chat` encodes each piece after a `"\n"` and drops the newline's ids, so that SentencePiece
//! tokenizers do not add a prefix space mid-prompt). For input without control tokens this is a single
//! segment, so the ids equal the unsanitized tokenization.
//!
//! Full provenance ("which bytes came from a message") is deliberately not tracked: templates transform
//! content with string operations (`strip`, `split`, slicing, comparisons) that a marker around the whole
//! content would change, and tokenizing content separately from the surrounding template text would change
//! the BPE merges at every boundary compared to the reference tokenization.

mod env;
mod error;
pub mod messages;
mod pyjson;
mod sanitize;
mod strftime;

use std::io;
use std::path::{Path, PathBuf};

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value as Json};

pub use error::{Location, TemplateError};
pub use messages::{ChatMessage, ContentPart, FunctionCall, FunctionDefinition, MessageContent, Tool, ToolCall};
pub use sanitize::{control_tokens, Segment, CONTROL_TOKEN_END, CONTROL_TOKEN_START};
pub use strftime::DateTime;

/// The named special tokens transformers passes to templates (`SPECIAL_TOKENS_ATTRIBUTES`).
pub const SPECIAL_TOKEN_NAMES: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// Names the template receives from the renderer itself; `chat_template_kwargs` may not use them.
const RESERVED_NAMES: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

/// Maximum nesting depth of messages, tools, documents and kwargs.
const MAX_INPUT_DEPTH: usize = 128;

/// Resource limits of one render, scaled with the size of the input (messages + tools + documents + kwargs,
/// in bytes of their JSON text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// Fuel available to every render (one unit per instruction or per 64 bytes of data created).
    pub base_fuel: u64,
    /// Extra fuel per input byte.
    pub fuel_per_input_byte: u64,
    /// Output cap of every render, in bytes.
    pub base_output_bytes: usize,
    /// Extra output allowance per input byte.
    pub output_bytes_per_input_byte: usize,
}

impl Default for RenderLimits {
    /// 4M fuel + 16 per input byte; 1 MiB + 8 bytes per input byte of output.
    ///
    /// 4M fuel is about 50 ms of work or 256 MB of data created; the real templates need under 0.3 fuel
    /// per input byte, except ones that build the prompt by repeated concatenation (Reka-Edge: ~7 per
    /// byte for a 300-message conversation, growing with the number of messages).
    fn default() -> Self {
        RenderLimits {
            base_fuel: 4_000_000,
            fuel_per_input_byte: 16,
            base_output_bytes: 1 << 20,
            output_bytes_per_input_byte: 8,
        }
    }
}

impl RenderLimits {
    fn fuel(&self, input_bytes: usize) -> u64 {
        self.base_fuel.saturating_add(self.fuel_per_input_byte.saturating_mul(input_bytes as u64))
    }

    fn output_cap(&self, input_bytes: usize) -> usize {
        self.base_output_bytes.saturating_add(self.output_bytes_per_input_byte.saturating_mul(input_bytes))
    }
}

/// What to render: the conversation and the template variables.
#[derive(Debug, Clone, Default)]
pub struct RenderRequest {
    /// Messages (JSON objects in the OpenAI shape, see [`ChatMessage`]).
    pub messages: Vec<Json>,
    /// Tool definitions (`tools` is `none` in the template when absent).
    pub tools: Option<Vec<Json>>,
    /// RAG documents (`documents` is `none` when absent).
    pub documents: Option<Vec<Json>>,
    /// Append the assistant header so the model starts a reply.
    pub add_generation_prompt: bool,
    /// `chat_template_kwargs`: extra template variables (`enable_thinking`, `reasoning_effort`, ...); they
    /// override the template's special tokens of the same name.
    pub kwargs: Map<String, Json>,
    /// A template name to use instead of the automatic choice.
    pub template_name: Option<String>,
    /// The time `strftime_now` reports; the system clock (UTC) when `None`.
    pub now: Option<DateTime>,
    /// Parse tool-call `arguments` given as JSON strings into objects (off: transformers behaviour).
    pub parse_tool_call_arguments: bool,
    /// Join text-only content lists into one string (off: transformers behaviour, under which most
    /// templates fail on list content).
    pub flatten_text_content: bool,
}

impl RenderRequest {
    /// A request for these messages (JSON objects).
    pub fn new(messages: Vec<Json>) -> RenderRequest {
        RenderRequest { messages, ..RenderRequest::default() }
    }

    /// A request for typed messages.
    pub fn from_messages(messages: &[ChatMessage]) -> RenderRequest {
        RenderRequest::new(messages.iter().map(ChatMessage::to_json).collect())
    }

    /// Sets the tools (JSON objects).
    pub fn with_tools(mut self, tools: Vec<Json>) -> RenderRequest {
        self.tools = Some(tools);
        self
    }

    /// Sets typed tools.
    pub fn with_typed_tools(mut self, tools: &[Tool]) -> RenderRequest {
        self.tools = Some(tools.iter().map(Tool::to_json).collect());
        self
    }

    /// Sets `add_generation_prompt`.
    pub fn with_generation_prompt(mut self, yes: bool) -> RenderRequest {
        self.add_generation_prompt = yes;
        self
    }

    /// Adds one `chat_template_kwargs` entry.
    pub fn with_kwarg(mut self, name: impl Into<String>, value: Json) -> RenderRequest {
        self.kwargs.insert(name.into(), value);
        self
    }

    /// Fixes the time `strftime_now` sees.
    pub fn with_now(mut self, now: DateTime) -> RenderRequest {
        self.now = Some(now);
        self
    }

    /// Size of the input in bytes of JSON text (approximately), used to scale the limits.
    fn input_bytes(&self) -> usize {
        fn size(v: &Json) -> usize {
            match v {
                Json::Null | Json::Bool(_) | Json::Number(_) => 8,
                Json::String(s) => s.len() + 2,
                Json::Array(a) => 2 + a.iter().map(size).sum::<usize>(),
                Json::Object(o) => 2 + o.iter().map(|(k, v)| k.len() + 4 + size(v)).sum::<usize>(),
            }
        }
        let list = |l: &[Json]| l.iter().map(size).sum::<usize>();
        list(&self.messages)
            + self.tools.as_deref().map_or(0, list)
            + self.documents.as_deref().map_or(0, list)
            + self.kwargs.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>()
    }
}

/// A successful render with its accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The prompt.
    pub text: String,
    /// The template that was used.
    pub template_name: String,
    /// Fuel consumed.
    pub fuel_used: u64,
}

#[derive(Debug, Clone)]
struct NamedTemplate {
    name: String,
    source: String,
    /// The parse error, kept so that it is reported when this template is selected.
    syntax_error: Option<(String, Option<Location>)>,
}

/// One or more named chat templates of a model, compiled and ready to render.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    templates: Vec<NamedTemplate>,
    env: Environment<'static>,
    special_tokens: Vec<(String, String)>,
    chat_control_tokens: Option<Vec<String>>,
    limits: RenderLimits,
}

impl ChatTemplate {
    /// A single template from its source (e.g. GGUF `tokenizer.chat_template`). Fails on a syntax error.
    pub fn new(source: &str) -> Result<ChatTemplate, TemplateError> {
        let t = ChatTemplate::from_named(vec![("default".to_string(), source.to_string())]);
        match &t.templates[0].syntax_error {
            Some((message, location)) => {
                Err(TemplateError::Syntax { message: message.clone(), location: location.clone() })
            }
            None => Ok(t),
        }
    }

    /// Named templates (`default`, `tool_use`, `rag`, ...). Syntax errors are reported when a broken
    /// template is selected for rendering, so that one broken variant does not disable the others.
    pub fn from_named(templates: Vec<(String, String)>) -> ChatTemplate {
        let mut env = env::new_environment();
        let mut named = Vec::with_capacity(templates.len());
        for (name, source) in templates {
            let rewritten = env::rewrite_generation_tags(&source).into_owned();
            let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                env.add_template_owned(name.clone(), rewritten)
            }))
            .unwrap_or_else(|_| {
                Err(minijinja::Error::new(ErrorKind::SyntaxError, "internal error: the template parser panicked"))
            });
            let syntax_error = match added {
                Ok(()) => None,
                Err(e) => {
                    let location = e.line().map(|line| Location::from_source(&name, &source, line));
                    Some((error_message(&e), location))
                }
            };
            named.push(NamedTemplate { name, source, syntax_error });
        }
        ChatTemplate {
            templates: named,
            env,
            special_tokens: Vec::new(),
            chat_control_tokens: None,
            limits: RenderLimits::default(),
        }
    }

    /// Loads the templates and special tokens of a Hugging Face model directory. `Ok(None)` when the
    /// directory has no chat template.
    pub fn from_model_dir(dir: &Path) -> Result<Option<ChatTemplate>, TemplateError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            let text = read_file(&config_path)?;
            Some(parse_config(&text, &config_path.display().to_string())?)
        } else {
            None
        };

        let mut file_templates: Vec<(String, String)> = Vec::new();
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            file_templates.push(("default".into(), read_file(&jinja)?));
        }
        let extra_dir = dir.join("additional_chat_templates");
        if extra_dir.is_dir() {
            let entries = std::fs::read_dir(&extra_dir)
                .map_err(|source| TemplateError::Io { path: extra_dir.clone(), source })?;
            let mut extra: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "jinja"))
                .collect();
            extra.sort();
            for path in extra {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                file_templates.push((name, read_file(&path)?));
            }
        }

        let templates = if !file_templates.is_empty() {
            file_templates
        } else if let Some(t) = config.as_ref().and_then(|c| c.templates.clone()) {
            t
        } else {
            let legacy = dir.join("chat_template.json");
            if legacy.is_file() {
                let text = read_file(&legacy)?;
                let origin = legacy.display().to_string();
                let json: Json = serde_json::from_str(&text)
                    .map_err(|e| TemplateError::Config { path: origin.clone(), message: e.to_string() })?;
                match json.get("chat_template") {
                    Some(v) => parse_template_field(v, &origin)?,
                    None => return Ok(None),
                }
            } else {
                return Ok(None);
            }
        };
        let mut t = ChatTemplate::from_named(templates);
        if let Some(config) = config {
            t.special_tokens = config.special_tokens;
            t.chat_control_tokens = config.chat_control_tokens;
        }
        Ok(Some(t))
    }

    /// Loads templates and special tokens from the text of a tokenizer_config.json. `Ok(None)` when it has
    /// no `chat_template`. `origin` names the source in errors.
    pub fn from_tokenizer_config(json: &str, origin: &str) -> Result<Option<ChatTemplate>, TemplateError> {
        let config = parse_config(json, origin)?;
        let Some(templates) = config.templates else {
            return Ok(None);
        };
        let mut t = ChatTemplate::from_named(templates);
        t.special_tokens = config.special_tokens;
        t.chat_control_tokens = config.chat_control_tokens;
        Ok(Some(t))
    }

    /// Sets (or replaces) a template variable that is always passed, e.g. `bos_token` from GGUF metadata.
    pub fn with_special_token(mut self, name: &str, value: &str) -> ChatTemplate {
        self.special_tokens.retain(|(n, _)| n != name);
        self.special_tokens.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the resource limits.
    pub fn with_limits(mut self, limits: RenderLimits) -> ChatTemplate {
        self.limits = limits;
        self
    }

    /// The special tokens passed to the template, as `(name, value)`.
    pub fn special_tokens(&self) -> &[(String, String)] {
        &self.special_tokens
    }

    /// The value of one special token (`bos_token`, ...).
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special_tokens.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `chat_control_tokens` from tokenizer_config.json, if listed there.
    pub fn chat_control_tokens(&self) -> Option<&[String]> {
        self.chat_control_tokens.as_deref()
    }

    /// The template names, in load order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.templates.iter().map(|t| t.name.as_str())
    }

    /// The source of a named template.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.templates.iter().find(|t| t.name == name).map(|t| t.source.as_str())
    }

    /// The template transformers would pick: the requested name, else `tool_use` when tools are given and
    /// it exists, else `default` (or the only template).
    pub fn select(&self, name: Option<&str>, has_tools: bool) -> Result<&str, TemplateError> {
        let find = |n: &str| self.templates.iter().find(|t| t.name == n);
        let chosen = match name {
            Some(n) => find(n),
            None if self.templates.len() == 1 => self.templates.first(),
            None => has_tools.then(|| find("tool_use")).flatten().or_else(|| find("default")),
        };
        chosen.map(|t| t.name.as_str()).ok_or_else(|| TemplateError::NoSuchTemplate {
            name: name.unwrap_or("default").to_string(),
            available: self.templates.iter().map(|t| t.name.clone()).collect(),
        })
    }

    /// Renders the prompt.
    pub fn render(&self, req: &RenderRequest) -> Result<String, TemplateError> {
        self.render_detailed(req).map(|r| r.text)
    }

    /// Renders the prompt and reports which template was used and the fuel consumed.
    pub fn render_detailed(&self, req: &RenderRequest) -> Result<Rendered, TemplateError> {
        self.render_inner(req, None)
    }

    /// Renders with transformers' control-token marking: control tokens inside user-supplied strings are
    /// wrapped in [`CONTROL_TOKEN_START`] / [`CONTROL_TOKEN_END`]. Returns the marked prompt, which
    /// [`split_marked`](Self::split_marked) turns into segments.
    pub fn render_marked(&self, req: &RenderRequest, control_tokens: &[String]) -> Result<String, TemplateError> {
        let matcher = sanitize::TokenMatcher::new(control_tokens);
        self.render_inner(req, Some(&matcher)).map(|r| r.text)
    }

    /// Splits a prompt from [`render_marked`](Self::render_marked) into segments.
    pub fn split_marked(marked: &str, control_tokens: &[String]) -> Vec<Segment> {
        sanitize::split_marked(marked, &sanitize::TokenMatcher::new(control_tokens))
    }

    /// Renders the prompt as segments safe to tokenize (see the module docs). `added_tokens` yields
    /// `(content, special)` for the tokenizer's added tokens; the control tokens are picked from them as
    /// transformers does ([`control_tokens`]).
    pub fn render_segments<'a, I>(&self, req: &RenderRequest, added_tokens: I) -> Result<Vec<Segment>, TemplateError>
    where
        I: IntoIterator<Item = (&'a str, bool)>,
    {
        let name = self.select(req.template_name.as_deref(), req.tools.is_some())?;
        let source = self.source(name).unwrap_or_default();
        let tokens = control_tokens(source, added_tokens, self.chat_control_tokens.as_deref());
        let matcher = sanitize::TokenMatcher::new(&tokens);
        let marked = self.render_inner(req, Some(&matcher))?.text;
        Ok(sanitize::split_marked(&marked, &matcher))
    }

    fn render_inner(
        &self,
        req: &RenderRequest,
        marker: Option<&sanitize::TokenMatcher>,
    ) -> Result<Rendered, TemplateError> {
        let name = self.select(req.template_name.as_deref(), req.tools.is_some())?;
        let Some(entry) = self.templates.iter().find(|t| t.name == name) else {
            return Err(TemplateError::NoSuchTemplate {
                name: name.to_string(),
                available: self.names().map(str::to_string).collect(),
            });
        };
        if let Some((message, location)) = &entry.syntax_error {
            return Err(TemplateError::Syntax { message: message.clone(), location: location.clone() });
        }
        let ctx = self.build_context(req, marker)?;
        let input_bytes = req.input_bytes();
        let fuel = self.limits.fuel(input_bytes);
        let cap = self.limits.output_cap(input_bytes);

        let mut env = self.env.clone();
        env.set_fuel(Some(fuel));
        let template = env.get_template(name).map_err(|e| self.map_error(&e, fuel, cap))?;
        let mut writer = CappedWriter { buf: Vec::new(), cap, overflow: false };
        // Last line of defence: a panic inside the engine becomes an error, never a crash of the caller.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| template.render_captured_to(ctx, &mut writer)));
        let Ok(result) = result else {
            return Err(TemplateError::Render {
                message: "internal error: the template engine panicked".into(),
                location: None,
            });
        };
        let overflow = writer.overflow;
        match result {
            Ok(captured) => {
                let fuel_used = captured.state().fuel_levels().map_or(0, |(used, _)| used);
                let text = String::from_utf8(writer.buf).map_err(|_| TemplateError::Render {
                    message: "template produced invalid UTF-8".into(),
                    location: None,
                })?;
                Ok(Rendered { text, template_name: name.to_string(), fuel_used })
            }
            Err(e) if overflow => Err(TemplateError::OutputTooLarge { limit: cap, location: self.error_location(&e) }),
            Err(e) => Err(self.map_error(&e, fuel, cap)),
        }
    }

    fn build_context(
        &self,
        req: &RenderRequest,
        marker: Option<&sanitize::TokenMatcher>,
    ) -> Result<Value, TemplateError> {
        let prepare = |v: &Json| -> Json {
            match marker {
                Some(m) => sanitize::mark_json(v, m),
                None => v.clone(),
            }
        };
        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.iter().enumerate() {
            if !m.is_object() {
                return Err(TemplateError::invalid_input(format!(
                    "message {i} is not a JSON object (found {})",
                    json_kind(m)
                )));
            }
            let mut m = messages::normalize_message(m);
            if req.parse_tool_call_arguments {
                messages::parse_tool_call_arguments(&mut m);
            }
            if req.flatten_text_content {
                messages::flatten_text_content(&mut m);
            }
            messages.push(to_value(&prepare(&m), 0, "messages")?);
        }
        let list = |l: &Option<Vec<Json>>, what: &str| -> Result<Value, TemplateError> {
            match l {
                None => Ok(Value::from_object(env::PyNone)),
                Some(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(to_value(&prepare(item), 0, what)?);
                    }
                    Ok(Value::from(out))
                }
            }
        };
        let tools = list(&req.tools, "tools")?;
        let documents = list(&req.documents, "documents")?;

        let now = req.now.unwrap_or_else(DateTime::now_utc);
        let strftime_now = Value::from_function(move |fmt: &str| now.strftime(fmt));

        let mut pairs: Vec<(String, Value)> = vec![
            ("strftime_now".into(), strftime_now),
            ("messages".into(), Value::from(messages)),
            ("tools".into(), tools),
            ("documents".into(), documents),
            ("add_generation_prompt".into(), Value::from(req.add_generation_prompt)),
        ];
        for (name, value) in &self.special_tokens {
            if !req.kwargs.contains_key(name) {
                pairs.push((name.clone(), Value::from(value.as_str())));
            }
        }
        for (name, value) in &req.kwargs {
            if RESERVED_NAMES.contains(&name.as_str()) {
                return Err(TemplateError::invalid_input(format!(
                    "chat_template_kwargs may not set '{name}': it is passed by the renderer"
                )));
            }
            pairs.push((name.clone(), to_value(&prepare(value), 0, name)?));
        }
        Ok(Value::from_pairs(pairs))
    }

    fn error_location(&self, e: &minijinja::Error) -> Option<Location> {
        let line = e.line()?;
        let name = e.name()?;
        let source = self.source(name)?;
        Some(Location::from_source(name, source, line))
    }

    fn map_error(&self, e: &minijinja::Error, fuel: u64, cap: usize) -> TemplateError {
        let location = self.error_location(e);
        // A `raise_exception` call may be wrapped by the engine (e.g. inside a macro): look down the chain.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(mj) = err.downcast_ref::<minijinja::Error>() {
                let raised =
                    std::error::Error::source(mj).is_some_and(|s| s.downcast_ref::<env::RaisedException>().is_some());
                if raised {
                    return TemplateError::Raised { message: mj.detail().unwrap_or_default().to_string(), location };
                }
                if mj.kind() == ErrorKind::OutOfFuel {
                    return TemplateError::OutOfFuel { fuel, location };
                }
            }
            cur = err.source();
        }
        match e.kind() {
            ErrorKind::SyntaxError => TemplateError::Syntax { message: error_message(e), location },
            ErrorKind::WriteFailure => TemplateError::OutputTooLarge { limit: cap, location },
            _ => TemplateError::Render { message: error_message(e), location },
        }
    }
}

fn error_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Converts JSON to a template value, keeping object key order.
fn to_value(v: &Json, depth: usize, what: &str) -> Result<Value, TemplateError> {
    if depth > MAX_INPUT_DEPTH {
        return Err(TemplateError::invalid_input(format!("{what} is nested deeper than {MAX_INPUT_DEPTH} levels")));
    }
    Ok(match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(to_value(item, depth + 1, what)?);
            }
            Value::from(out)
        }
        Json::Object(obj) => {
            let mut pairs = Vec::with_capacity(obj.len());
            for (k, item) in obj {
                pairs.push((Value::from(k.as_str()), to_value(item, depth + 1, what)?));
            }
            Value::from_pairs(pairs)
        }
    })
}

/// An output sink that fails once more than `cap` bytes were written.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
    overflow: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.cap {
            self.overflow = true;
            return Err(io::Error::other("chat template output cap exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Io { path: path.to_path_buf(), source })
}

/// What tokenizer_config.json contributes.
struct ConfigTemplates {
    templates: Option<Vec<(String, String)>>,
    special_tokens: Vec<(String, String)>,
    chat_control_tokens: Option<Vec<String>>,
}

fn parse_config(text: &str, origin: &str) -> Result<ConfigTemplates, TemplateError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|e| TemplateError::Config { path: origin.to_string(), message: e.to_string() })?;
    let Json::Object(obj) = &json else {
        return Err(TemplateError::Config {
            path: origin.to_string(),
            message: format!("expected a JSON object at the top level, found {}", json_kind(&json)),
        });
    };
    let templates = match obj.get("chat_template") {
        None | Some(Json::Null) => None,
        Some(v) => Some(parse_template_field(v, origin)?),
    };
    let mut special_tokens = Vec::new();
    for name in SPECIAL_TOKEN_NAMES {
        let value = match obj.get(name) {
            None | Some(Json::Null) => continue,
            Some(Json::String(s)) => s.clone(),
            Some(Json::Object(o)) => match o.get("content") {
                Some(Json::String(s)) => s.clone(),
                _ => {
                    return Err(TemplateError::Config {
                        path: origin.to_string(),
                        message: format!(
                            "field '{name}': expected a string or an AddedToken object with a string 'content'"
                        ),
                    })
                }
            },
            Some(other) => {
                return Err(TemplateError::Config {
                    path: origin.to_string(),
                    message: format!("field '{name}': expected a string, found {}", json_kind(other)),
                })
            }
        };
        special_tokens.push((name.to_string(), value));
    }
    let chat_control_tokens = match obj.get("chat_control_tokens") {
        None | Some(Json::Null) => None,
        Some(Json::Array(items)) => Some(
            items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_string).ok_or_else(|| TemplateError::Config {
                        path: origin.to_string(),
                        message: format!("field 'chat_control_tokens': expected strings, found {}", json_kind(i)),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(TemplateError::Config {
                path: origin.to_string(),
                message: format!("field 'chat_control_tokens': expected a list of strings, found {}", json_kind(other)),
            })
        }
    };
    Ok(ConfigTemplates { templates, special_tokens, chat_control_tokens })
}

/// `chat_template`: a string, or a list of `{"name": ..., "template": ...}`.
fn parse_template_field(v: &Json, origin: &str) -> Result<Vec<(String, String)>, TemplateError> {
    let err = |message: String| TemplateError::Config { path: origin.to_string(), message };
    match v {
        Json::String(s) => Ok(vec![("default".into(), s.clone())]),
        Json::Array(items) => {
            let mut out: Vec<(String, String)> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = item.get("name").and_then(Json::as_str);
                let template = item.get("template").and_then(Json::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => {
                        // Later entries win, as in transformers' dict construction.
                        out.retain(|(existing, _)| existing != n);
                        out.push((n.to_string(), t.to_string()));
                    }
                    _ => {
                        return Err(err(format!(
                            "field 'chat_template'[{i}]: expected {{\"name\": string, \"template\": string}}"
                        )))
                    }
                }
            }
            if out.is_empty() {
                return Err(err("field 'chat_template': empty list".into()));
            }
            Ok(out)
        }
        other => Err(err(format!(
            "field 'chat_template': expected a string or a list of named templates, found {}",
            json_kind(other)
        ))),
    }
}
