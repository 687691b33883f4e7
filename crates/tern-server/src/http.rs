//! The HTTP surface (axum): OpenAI routes, auth, metrics, load/unload, SSE streaming.
//!
//! Response shapes follow the OpenAI API reference for `chat.completion`, `chat.completion.chunk` and
//! `text_completion` (same `id` on every chunk, the role in the first delta, `finish_reason`
//! `stop`/`length`/`tool_calls`, a final usage chunk with empty `choices` when
//! `stream_options.include_usage` is set, `data: [DONE]`), with vLLM's extensions
//! (`reasoning_content`, `prompt_tokens_details.cached_tokens`). A handler that panics answers 500
//! and the server keeps running; a client that disconnects drops the handler (or the SSE body), which
//! drops the event receivers, which cancels the sequences at the engine's next step.

use crate::engine::{Done, Event, Finish, GenParams, Job, SubmitError};
use crate::error::{json_response, ApiError};
use crate::metrics::{Metrics, ModelGauges};
use crate::reasoning::ReasoningSplit;
use crate::registry::{Entry, LoadedModel, Registry};
use crate::request::{self, CommonFields, PromptInput, ToolChoice};
use crate::stop::TokenInfo;
use crate::tools::{ParsedCall, ToolStream};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value as Json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tern_engine::rng::Rng;
use tern_engine::sampler::LogitAdjust;
use tern_engine::SamplingParams;
use tern_text::template::RenderRequest;
use tokio::sync::mpsc;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// Shared state of the handlers.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    /// Per-request limit, from arrival to the last token.
    pub timeout: Duration,
    rng: Mutex<Rng>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, metrics: Arc<Metrics>, api_key: Option<String>, timeout: Duration) -> AppState {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 32);
        AppState { registry, metrics, api_key, timeout, rng: Mutex::new(Rng::new(seed)) }
    }

    fn random_u64(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).next_u64()
    }

    /// `prefix` + 24 random alphanumerics.
    fn new_id(&self, prefix: &str) -> String {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut s = String::from(prefix);
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..24 {
            s.push(ALNUM[(rng.next_u64() % ALNUM.len() as u64) as usize] as char);
        }
        s
    }
}

/// The router with every route and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/load", post(load))
        .route("/unload", post(unload))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), auth))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Middleware

/// Counts every response by endpoint and status, and turns a handler panic into a 500.
async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let endpoint = match req.uri().path() {
        p @ ("/health"
        | "/metrics"
        | "/v1/models"
        | "/v1/chat/completions"
        | "/v1/completions"
        | "/load"
        | "/unload") => p.to_string(),
        p if p.starts_with("/v1/models/") => "/v1/models/{id}".to_string(),
        _ => "other".to_string(),
    };
    let resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("a request handler panicked on {endpoint}");
            ApiError::internal("internal error: the request handler panicked").into_response()
        }
    };
    st.metrics.count_request(&endpoint, resp.status().as_u16());
    resp
}

/// `Authorization: Bearer KEY` on every route except `/health` (constant-time comparison).
async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        if req.uri().path() != "/health" {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
                .unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(req).await
}

async fn fallback(req: Request) -> Response {
    ApiError::not_found(format!("No route for {} {}", req.method(), req.uri().path())).into_response()
}

// ---------------------------------------------------------------------------------------------
// Simple routes

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let loading = st.registry.loading();
    if loading > 0 {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "loading", "loading": loading}));
    }
    let models: Vec<String> = st.registry.list().iter().map(|e| e.lm.id.clone()).collect();
    json_response(StatusCode::OK, &json!({"status": "ok", "models": models}))
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let entries = st.registry.list();
    let gauges: Vec<ModelGauges<'_>> =
        entries.iter().map(|e| ModelGauges { id: &e.lm.id, stats: &e.engine.stats }).collect();
    let text = st.metrics.render(&gauges, st.registry.loading());
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn model_json(lm: &LoadedModel) -> Json {
    json!({
        "id": lm.id,
        "object": "model",
        "created": lm.created,
        "owned_by": "tern",
        "root": lm.path.display().to_string(),
        "aliases": lm.aliases,
        "max_model_len": lm.ctx,
    })
}

async fn list_models(State(st): State<Arc<AppState>>) -> Response {
    let data: Vec<Json> = st.registry.list().iter().map(|e| model_json(&e.lm)).collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

async fn get_model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match st.registry.find(Some(&id)) {
        Ok(e) => json_response(StatusCode::OK, &model_json(&e.lm)),
        Err(e) => e.into_response(),
    }
}

fn model_field(body: &[u8]) -> Result<String, ApiError> {
    let o = request::parse_body(body)?;
    match o.get("model") {
        Some(Json::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(v) if !v.is_null() => Err(ApiError::invalid("model", "`model` must be a non-empty string")),
        _ => Err(ApiError::invalid("model", "`model` is required")),
    }
}

async fn load(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let spec = match model_field(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Ok(e) = st.registry.find(Some(&spec)) {
        return json_response(StatusCode::OK, &json!({"status": "already loaded", "model": model_json(&e.lm)}));
    }
    if !st.registry.begin_loading(&spec) {
        return ApiError {
            status: StatusCode::CONFLICT,
            kind: "invalid_request_error",
            message: format!("model {spec:?} is already being loaded"),
            param: Some("model".into()),
            code: None,
        }
        .into_response();
    }
    let reg = Arc::clone(&st.registry);
    let s2 = spec.clone();
    match tokio::task::spawn_blocking(move || reg.load(&s2)).await {
        Ok(Ok(e)) => json_response(StatusCode::OK, &json!({"status": "loaded", "model": model_json(&e.lm)})),
        Ok(Err(crate::ServerError::AlreadyLoaded(_))) => {
            json_response(StatusCode::OK, &json!({"status": "already loaded"}))
        }
        Ok(Err(e)) => ApiError::invalid("model", e.to_string()).into_response(),
        Err(_) => ApiError::internal(format!("loading {spec} panicked")).into_response(),
    }
}

async fn unload(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let name = match model_field(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match st.registry.unload(&name) {
        Ok(e) => json_response(StatusCode::OK, &json!({"status": "unloaded", "model": e.lm.id})),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Generation

type Events = SelectAll<BoxStream<'static, (usize, Event)>>;

/// Submitted sequences of one request.
struct Generation {
    lm: Arc<LoadedModel>,
    events: Events,
    /// Choices (`prompts × n`).
    choices: usize,
    deadline: tokio::time::Instant,
    arrived: Instant,
}

fn resolve_sampling(
    st: &AppState,
    lm: &LoadedModel,
    c: &CommonFields,
) -> Result<(SamplingParams, LogitAdjust, u64), ApiError> {
    let d = &lm.defaults;
    let s = &c.sampling;
    let params = SamplingParams {
        temperature: s.temperature.unwrap_or(d.temperature),
        top_k: s.top_k.unwrap_or(d.top_k),
        top_p: s.top_p.unwrap_or(d.top_p),
        min_p: s.min_p.unwrap_or(d.min_p),
        repetition_penalty: s.repetition_penalty.unwrap_or(d.repetition_penalty),
        seed: 0,
    };
    if let Err((field, why)) = params.validate() {
        return Err(ApiError::invalid(field, format!("`{field}` {why}")));
    }
    let vocab = lm.model.vocab();
    if let Some(&(t, _)) = s.logit_bias.iter().find(|(t, _)| *t as usize >= vocab) {
        return Err(ApiError::invalid(
            "logit_bias",
            format!("`logit_bias` token id {t} is outside the vocabulary (size {vocab})"),
        ));
    }
    let adjust = LogitAdjust {
        presence_penalty: s.presence_penalty.unwrap_or(d.presence_penalty),
        frequency_penalty: s.frequency_penalty.unwrap_or(d.frequency_penalty),
        logit_bias: s.logit_bias.clone(),
    };
    if let Err((field, why)) = adjust.validate() {
        return Err(ApiError::invalid(field, format!("`{field}` {why}")));
    }
    let seed = s.seed.or(d.seed).unwrap_or_else(|| st.random_u64());
    Ok((params, adjust, seed))
}

/// Checks the context, builds one job per choice and submits them all.
fn submit(
    st: &AppState,
    entry: &Entry,
    prompts: Vec<Vec<u32>>,
    c: &CommonFields,
    prompt_field: &str,
    arrived: Instant,
) -> Result<Generation, ApiError> {
    let lm = &entry.lm;
    let (sampling, adjust, seed) = resolve_sampling(st, lm, c)?;
    let mut jobs = Vec::new();
    let mut receivers: Events = SelectAll::new();
    for (pi, p) in prompts.into_iter().enumerate() {
        if p.is_empty() {
            return Err(ApiError::invalid(prompt_field, "the prompt encodes to no tokens"));
        }
        let ctx = lm.ctx;
        if p.len() >= ctx {
            return Err(ApiError::invalid(
                prompt_field,
                format!("the prompt has {} tokens but the context size is {ctx}: nothing is left to generate", p.len()),
            ));
        }
        let room = ctx - p.len();
        let max_tokens = match c.max_tokens {
            Some(m) if m > room => {
                return Err(ApiError::invalid(
                    "max_tokens",
                    format!(
                        "the prompt ({} tokens) plus max_tokens ({m}) is {} tokens, more than the context size ({ctx})",
                        p.len(),
                        p.len() + m
                    ),
                ));
            }
            Some(m) => m,
            None => lm.defaults.max_tokens.unwrap_or(room).min(room),
        };
        let prompt: Arc<[u32]> = p.into();
        for i in 0..c.n {
            let idx = pi * c.n + i;
            let (tx, mut rx) = mpsc::unbounded_channel();
            receivers.push(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(move |e| (idx, e)).boxed());
            jobs.push(Job {
                prompt: Arc::clone(&prompt),
                params: GenParams {
                    sampling: SamplingParams { seed: seed.wrapping_add(idx as u64), ..sampling.clone() },
                    adjust: adjust.clone(),
                    max_tokens,
                    stop: c.stop.clone(),
                    logprobs: c.logprobs,
                    ignore_eos: c.ignore_eos,
                    json_object: c.json_object,
                },
                events: tx,
                arrived,
            });
        }
    }
    let choices = jobs.len();
    entry.engine.submit(jobs).map_err(|e| match e {
        SubmitError::Busy { waiting } => ApiError::overloaded(waiting),
        SubmitError::Closed => ApiError::unavailable(format!("model {} is being unloaded", lm.id)),
    })?;
    Ok(Generation {
        lm: Arc::clone(lm),
        events: receivers,
        choices,
        deadline: tokio::time::Instant::from_std(arrived + st.timeout),
        arrived,
    })
}

/// Everything one choice produced (non-streaming).
#[derive(Default)]
struct Collected {
    text: String,
    tokens: Vec<TokenInfo>,
    done: Option<Done>,
}

async fn collect(st: &AppState, mut g: Generation) -> Result<Vec<Collected>, ApiError> {
    let mut out: Vec<Collected> = (0..g.choices).map(|_| Collected::default()).collect();
    loop {
        match tokio::time::timeout_at(g.deadline, g.events.next()).await {
            Err(_) => return Err(ApiError::timeout(st.timeout.as_secs_f64())),
            Ok(None) => break,
            Ok(Some((i, ev))) => match ev {
                Event::Text { text, tokens } => {
                    out[i].text.push_str(&text);
                    out[i].tokens.extend(tokens);
                }
                Event::Done(d) => out[i].done = Some(d),
                Event::Error(m) => return Err(ApiError::internal(m)),
            },
        }
    }
    if out.iter().any(|c| c.done.is_none()) {
        return Err(ApiError::internal("the engine stopped before finishing the request"));
    }
    st.metrics.e2e.observe(g.arrived.elapsed().as_secs_f64());
    Ok(out)
}

/// Usage over all choices: prompt tokens counted once per prompt.
#[derive(Default, Clone, Copy)]
struct Usage {
    prompt: usize,
    completion: usize,
    cached: usize,
}

impl Usage {
    fn add(&mut self, d: &Done, first_of_prompt: bool) {
        if first_of_prompt {
            self.prompt += d.prompt_tokens;
            self.cached += d.cached_tokens;
        }
        self.completion += d.completion_tokens;
    }

    fn json(&self) -> Json {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }
}

/// A finite logprob for JSON (OpenAI uses −9999 for "impossible").
fn lp_num(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        -9999.0
    }
}

fn chat_logprob(t: &TokenInfo) -> Json {
    json!({
        "token": t.text,
        "logprob": lp_num(t.logprob),
        "bytes": t.text.as_bytes(),
        "top_logprobs": t.top.iter().map(|(s, l)| json!({"token": s, "logprob": lp_num(*l), "bytes": s.as_bytes()})).collect::<Vec<_>>(),
    })
}

/// Legacy completions logprobs; `offset` is where the first token's text starts in the choice text.
fn completion_logprobs(tokens: &[TokenInfo], mut offset: usize) -> Json {
    let mut text_offset = Vec::with_capacity(tokens.len());
    for t in tokens {
        text_offset.push(offset);
        offset += t.text.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| t.text.clone()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| lp_num(t.logprob)).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            let mut m = serde_json::Map::new();
            for (s, l) in &t.top {
                m.entry(s.clone()).or_insert(json!(lp_num(*l)));
            }
            Json::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": text_offset,
    })
}

fn tool_calls_json(st: &AppState, calls: &[ParsedCall], streaming: bool) -> Json {
    Json::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = json!({
                    "id": st.new_id("call_"),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                });
                if streaming {
                    v["index"] = json!(i);
                }
                v
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Chat

struct ChatSetup {
    prompt: Vec<u32>,
    in_thinking: bool,
}

async fn prepare_chat(lm: Arc<LoadedModel>, req: &request::ChatRequest) -> Result<ChatSetup, ApiError> {
    if lm.template.is_none() {
        return Err(ApiError::invalid(
            "messages",
            format!("model {} has no chat template: use /v1/completions with a raw prompt", lm.id),
        ));
    }
    let mut rr = RenderRequest::new(req.messages.clone()).with_generation_prompt(true);
    rr.tools = req.tools.clone();
    rr.kwargs = req.template_kwargs.clone();
    rr.flatten_text_content = true;
    rr.parse_tool_call_arguments = true;
    let lm2 = Arc::clone(&lm);
    let encoded = tokio::task::spawn_blocking(move || {
        let Some(t) = lm2.template.as_ref() else { return Err("no chat template".to_string()) };
        tern_text::chat::encode_chat(&lm2.tokenizer, t, &rr).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| ApiError::internal("rendering the chat template panicked"))?
    .map_err(|e| ApiError::invalid("messages", format!("the chat template failed: {e}")))?;
    let in_thinking = lm.reasoning && ReasoningSplit::prompt_opens_thinking(&encoded.text);
    Ok(ChatSetup { prompt: encoded.ids, in_thinking })
}

async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let arrived = Instant::now();
    match chat_inner(st, body, arrived).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(st: Arc<AppState>, body: Bytes, arrived: Instant) -> Result<Response, ApiError> {
    let req = request::parse_chat(&body)?;
    let entry = st.registry.find(req.common.model.as_deref())?;
    let lm = Arc::clone(&entry.lm);
    let setup = prepare_chat(Arc::clone(&lm), &req).await?;
    let gen = submit(&st, &entry, vec![setup.prompt], &req.common, "messages", arrived)?;
    let tools: Option<Vec<String>> =
        (req.tool_choice == ToolChoice::Auto && !req.tool_names.is_empty()).then(|| req.tool_names.clone());
    let id = st.new_id("chatcmpl-");
    let created = now_unix();
    let reasoning = lm.reasoning;
    if req.common.stream {
        let fmt = ChatStream {
            st: Arc::clone(&st),
            id,
            created,
            model: lm.id.clone(),
            include_usage: req.common.include_usage,
            logprobs: req.common.logprobs.is_some(),
            choices: (0..gen.choices)
                .map(|_| ChatChoice {
                    split: reasoning.then(|| ReasoningSplit::new(setup.in_thinking)),
                    tools: tools.clone().map(ToolStream::new),
                    done: false,
                })
                .collect(),
            usage: Usage::default(),
        };
        return Ok(sse(st, gen, fmt));
    }
    let collected = collect(&st, gen).await?;
    let mut usage = Usage::default();
    let mut choices = Vec::new();
    for (i, c) in collected.iter().enumerate() {
        let Some(done) = c.done else { continue };
        usage.add(&done, i == 0);
        let (reasoning_content, content) =
            if reasoning { ReasoningSplit::split_all(setup.in_thinking, &c.text) } else { (None, c.text.clone()) };
        let parsed = tools.as_ref().and_then(|names| crate::tools::parse_tool_calls(&content, names));
        let mut finish = done.finish.as_str();
        let mut message = json!({"role": "assistant", "content": content});
        if let Some((rest, calls)) = parsed {
            message["content"] = if rest.is_empty() { Json::Null } else { json!(rest) };
            message["tool_calls"] = tool_calls_json(&st, &calls, false);
            if done.finish == Finish::Stop {
                finish = "tool_calls";
            }
        }
        if let Some(r) = reasoning_content {
            message["reasoning_content"] = json!(r);
        }
        let logprobs = match req.common.logprobs {
            Some(_) => json!({"content": c.tokens.iter().map(chat_logprob).collect::<Vec<_>>(), "refusal": null}),
            None => Json::Null,
        };
        choices.push(json!({"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish}));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": lm.id,
            "system_fingerprint": null,
            "choices": choices,
            "usage": usage.json(),
        }),
    ))
}

/// Turns engine events into SSE chunks for one request.
trait Formatter: Send + 'static {
    /// Chunks sent before any token.
    fn start(&mut self) -> Vec<Json>;
    /// Chunks for one event of choice `i`.
    fn event(&mut self, i: usize, ev: Event) -> Result<Vec<Json>, String>;
    /// All receivers ended: the usage chunk, or an error if a choice never finished.
    fn end(&mut self) -> Result<Option<Json>, String>;
}

struct ChatChoice {
    split: Option<ReasoningSplit>,
    tools: Option<ToolStream>,
    done: bool,
}

struct ChatStream {
    st: Arc<AppState>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    choices: Vec<ChatChoice>,
    usage: Usage,
}

impl ChatStream {
    fn chunk(&self, choices: Vec<Json>) -> Json {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if self.include_usage {
            c["usage"] = Json::Null;
        }
        c
    }

    fn choice(&self, i: usize, delta: Json, tokens: &[TokenInfo], finish: Option<&str>) -> Json {
        let logprobs = if self.logprobs && !tokens.is_empty() {
            json!({"content": tokens.iter().map(chat_logprob).collect::<Vec<_>>(), "refusal": null})
        } else {
            Json::Null
        };
        json!({"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
    }

    fn delta(reasoning: &str, content: &str) -> Option<Json> {
        let mut d = serde_json::Map::new();
        if !reasoning.is_empty() {
            d.insert("reasoning_content".into(), json!(reasoning));
        }
        if !content.is_empty() {
            d.insert("content".into(), json!(content));
        }
        (!d.is_empty()).then_some(Json::Object(d))
    }
}

impl Formatter for ChatStream {
    fn start(&mut self) -> Vec<Json> {
        (0..self.choices.len())
            .map(|i| self.chunk(vec![self.choice(i, json!({"role": "assistant", "content": ""}), &[], None)]))
            .collect()
    }

    fn event(&mut self, i: usize, ev: Event) -> Result<Vec<Json>, String> {
        let Some(ch) = self.choices.get_mut(i) else { return Ok(Vec::new()) };
        match ev {
            Event::Text { text, tokens } => {
                let (r, c) = match ch.split.as_mut() {
                    Some(s) => {
                        let o = s.push(&text);
                        (o.reasoning, o.content)
                    }
                    None => (String::new(), text),
                };
                let c = match ch.tools.as_mut() {
                    Some(t) => t.push(&c),
                    None => c,
                };
                let delta = ChatStream::delta(&r, &c);
                if delta.is_none() && (tokens.is_empty() || !self.logprobs) {
                    return Ok(Vec::new());
                }
                let delta = delta.unwrap_or_else(|| json!({}));
                Ok(vec![self.chunk(vec![self.choice(i, delta, &tokens, None)])])
            }
            Event::Done(d) => {
                ch.done = true;
                let (r, mut c) = match ch.split.as_mut() {
                    Some(s) => {
                        let o = s.finish();
                        (o.reasoning, o.content)
                    }
                    None => (String::new(), String::new()),
                };
                let mut calls = Vec::new();
                if let Some(t) = ch.tools.as_mut() {
                    let mut out = t.push(&c);
                    let (rest, parsed) = t.finish();
                    out.push_str(&rest);
                    c = out;
                    calls = parsed;
                }
                self.usage.add(&d, i == 0);
                let mut out = Vec::new();
                if let Some(delta) = ChatStream::delta(&r, &c) {
                    out.push(self.chunk(vec![self.choice(i, delta, &[], None)]));
                }
                let mut finish = d.finish.as_str();
                if !calls.is_empty() {
                    let tc = tool_calls_json(&self.st, &calls, true);
                    out.push(self.chunk(vec![self.choice(i, json!({"tool_calls": tc}), &[], None)]));
                    if d.finish == Finish::Stop {
                        finish = "tool_calls";
                    }
                }
                out.push(self.chunk(vec![self.choice(i, json!({}), &[], Some(finish))]));
                Ok(out)
            }
            Event::Error(m) => Err(m),
        }
    }

    fn end(&mut self) -> Result<Option<Json>, String> {
        if self.choices.iter().any(|c| !c.done) {
            return Err("the engine stopped before finishing the request".into());
        }
        Ok(self.include_usage.then(|| {
            let mut c = self.chunk(Vec::new());
            c["usage"] = self.usage.json();
            c
        }))
    }
}

fn sse_data(v: &Json) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// Streams a generation as server-sent events through `fmt`.
fn sse<F: Formatter>(st: Arc<AppState>, gen: Generation, mut fmt: F) -> Response {
    let pending: VecDeque<SseEvent> = fmt.start().iter().map(sse_data).collect();
    let timeout_s = st.timeout.as_secs_f64();
    let metrics = Arc::clone(&st.metrics);
    struct S<F> {
        events: Option<Events>,
        fmt: F,
        pending: VecDeque<SseEvent>,
        deadline: tokio::time::Instant,
        arrived: Instant,
        finished: bool,
    }
    let state =
        S { events: Some(gen.events), fmt, pending, deadline: gen.deadline, arrived: gen.arrived, finished: false };
    let _lm = gen.lm;
    let stream = futures_util::stream::unfold(state, move |mut s| {
        let metrics = Arc::clone(&metrics);
        async move {
            loop {
                if let Some(e) = s.pending.pop_front() {
                    return Some((Ok::<_, Infallible>(e), s));
                }
                if s.finished {
                    return None;
                }
                let next = match s.events.as_mut() {
                    Some(ev) => tokio::time::timeout_at(s.deadline, ev.next()).await,
                    None => Ok(None),
                };
                let fail = |s: &mut S<F>, err: ApiError| {
                    s.pending.push_back(sse_data(&err.body()));
                    s.pending.push_back(SseEvent::default().data("[DONE]"));
                    s.finished = true;
                    // Dropping the receivers cancels the sequences.
                    s.events = None;
                };
                match next {
                    Ok(Some((i, ev))) => match s.fmt.event(i, ev) {
                        Ok(chunks) => s.pending.extend(chunks.iter().map(sse_data)),
                        Err(m) => fail(&mut s, ApiError::internal(m)),
                    },
                    Ok(None) => match s.fmt.end() {
                        Ok(usage) => {
                            s.pending.extend(usage.iter().map(sse_data));
                            s.pending.push_back(SseEvent::default().data("[DONE]"));
                            s.finished = true;
                            s.events = None;
                            metrics.e2e.observe(s.arrived.elapsed().as_secs_f64());
                        }
                        Err(m) => fail(&mut s, ApiError::internal(m)),
                    },
                    Err(_) => fail(&mut s, ApiError::timeout(timeout_s)),
                }
            }
        }
    });
    Sse::new(stream).into_response()
}

// ---------------------------------------------------------------------------------------------
// Completions

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let arrived = Instant::now();
    match completions_inner(st, body, arrived).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(st: Arc<AppState>, body: Bytes, arrived: Instant) -> Result<Response, ApiError> {
    let req = request::parse_completion(&body)?;
    let entry = st.registry.find(req.common.model.as_deref())?;
    let lm = Arc::clone(&entry.lm);
    let inputs = req.prompts.clone();
    let lm2 = Arc::clone(&lm);
    let encoded: Vec<(Vec<u32>, String)> = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let vocab = lm2.model.vocab().min(lm2.tokenizer.vocab_size());
        inputs
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                PromptInput::Text(t) => {
                    let ids = lm2
                        .tokenizer
                        .encode(t, true, true)
                        .map_err(|e| ApiError::invalid("prompt", format!("prompt {i}: {e}")))?;
                    Ok((ids, t.clone()))
                }
                PromptInput::Tokens(ids) => {
                    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                        return Err(ApiError::invalid(
                            "prompt",
                            format!("prompt {i}: token id {bad} is outside the vocabulary (size {vocab})"),
                        ));
                    }
                    let text = lm2.tokenizer.decode(ids, false).unwrap_or_default();
                    Ok((ids.clone(), text))
                }
            })
            .collect()
    })
    .await
    .map_err(|_| ApiError::internal("tokenizing the prompt panicked"))??;
    let echo: Vec<String> = encoded.iter().map(|(_, t)| if req.echo { t.clone() } else { String::new() }).collect();
    let prompts: Vec<Vec<u32>> = encoded.into_iter().map(|(ids, _)| ids).collect();
    let gen = submit(&st, &entry, prompts, &req.common, "prompt", arrived)?;
    let n = req.common.n;
    let id = st.new_id("cmpl-");
    let created = now_unix();
    if req.common.stream {
        let fmt = CompletionStream {
            id,
            created,
            model: lm.id.clone(),
            include_usage: req.common.include_usage,
            logprobs: req.common.logprobs.is_some(),
            echo: (0..gen.choices).map(|i| echo[i / n].clone()).collect(),
            offsets: vec![0; gen.choices],
            done: vec![false; gen.choices],
            n,
            usage: Usage::default(),
        };
        return Ok(sse(st, gen, fmt));
    }
    let collected = collect(&st, gen).await?;
    let mut usage = Usage::default();
    let mut choices = Vec::new();
    for (i, c) in collected.iter().enumerate() {
        let Some(done) = c.done else { continue };
        usage.add(&done, i.is_multiple_of(n));
        let prefix = &echo[i / n];
        let logprobs = match req.common.logprobs {
            Some(_) => completion_logprobs(&c.tokens, prefix.len()),
            None => Json::Null,
        };
        choices.push(json!({
            "index": i,
            "text": format!("{prefix}{}", c.text),
            "logprobs": logprobs,
            "finish_reason": done.finish.as_str(),
        }));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": lm.id,
            "system_fingerprint": null,
            "choices": choices,
            "usage": usage.json(),
        }),
    ))
}

struct CompletionStream {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    /// Echoed prompt text per choice (sent first).
    echo: Vec<String>,
    /// Bytes of text sent per choice (for `text_offset`).
    offsets: Vec<usize>,
    done: Vec<bool>,
    n: usize,
    usage: Usage,
}

impl CompletionStream {
    fn chunk(&self, i: usize, text: &str, logprobs: Json, finish: Option<&str>) -> Json {
        let mut c = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": i, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Json::Null;
        }
        c
    }
}

impl Formatter for CompletionStream {
    fn start(&mut self) -> Vec<Json> {
        let mut out = Vec::new();
        for i in 0..self.echo.len() {
            if !self.echo[i].is_empty() {
                out.push(self.chunk(i, &self.echo[i], Json::Null, None));
                self.offsets[i] = self.echo[i].len();
            }
        }
        out
    }

    fn event(&mut self, i: usize, ev: Event) -> Result<Vec<Json>, String> {
        if i >= self.done.len() {
            return Ok(Vec::new());
        }
        match ev {
            Event::Text { text, tokens } => {
                let lp = if self.logprobs { completion_logprobs(&tokens, self.offsets[i]) } else { Json::Null };
                self.offsets[i] += text.len();
                if text.is_empty() && (!self.logprobs || tokens.is_empty()) {
                    return Ok(Vec::new());
                }
                Ok(vec![self.chunk(i, &text, lp, None)])
            }
            Event::Done(d) => {
                self.done[i] = true;
                self.usage.add(&d, i.is_multiple_of(self.n));
                Ok(vec![self.chunk(i, "", Json::Null, Some(d.finish.as_str()))])
            }
            Event::Error(m) => Err(m),
        }
    }

    fn end(&mut self) -> Result<Option<Json>, String> {
        if self.done.iter().any(|d| !d) {
            return Err("the engine stopped before finishing the request".into());
        }
        Ok(self.include_usage.then(|| {
            json!({
                "id": self.id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage.json(),
            })
        }))
    }
}
