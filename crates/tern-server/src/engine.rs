//! The scheduler: one OS thread per model runs continuous batching over a pool of KV-cache slots.
//!
//! HTTP handlers submit [`Job`]s over a channel and read [`Event`]s back. Each loop iteration:
//! 1. takes new jobs (FIFO) and drops cancelled ones (the handler's receiver is gone: client
//!    disconnected or timed out);
//! 2. admits waiting jobs into free slots, picking the free slot whose cached tokens share the longest
//!    prefix with the new prompt and truncating its cache to that prefix (prefix reuse across requests);
//! 3. runs one batched forward pass over every running sequence: one token for each decoding
//!    sequence plus prompt chunks of prefilling sequences up to a token budget (chunked prefill, so a
//!    long prompt delays the others' next token by one bounded step);
//! 4. samples each sequence that has logits to sample from, with its own seeded sampler, and streams
//!    text through the streaming detokenizer and the stop-string filter.
//!
//! This is the vLLM / TGI design (iteration-level scheduling, Orca) on CPU. A panic inside a step
//! fails the sequences of that step with an error event and the loop continues.

use crate::json_mode::{mask_logits, JsonState};
use crate::metrics::Metrics;
use crate::registry::LoadedModel;
use crate::stop::{StopFilter, TokenInfo, TokenQueue};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tern_engine::sampler::{logprobs, LogitAdjust};
use tern_engine::{Sampler, SamplingParams};
use tern_kernels::ThreadPool;
use tern_model::{KvCache, Model, ModelError, Workspace};
use tern_text::StreamDecoder;
use tokio::sync::mpsc::UnboundedSender;

/// Everything that decides one sequence's output besides its prompt.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub sampling: SamplingParams,
    pub adjust: LogitAdjust,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// `Some(k)`: report logprobs with `k` alternatives.
    pub logprobs: Option<usize>,
    /// Do not stop at EOS (the EOS token is then generated like any other).
    pub ignore_eos: bool,
    /// Constrain the output to one JSON object ([`crate::json_mode`]).
    pub json_object: bool,
}

/// One sequence to generate.
#[derive(Debug)]
pub struct Job {
    pub prompt: Arc<[u32]>,
    pub params: GenParams,
    pub events: UnboundedSender<Event>,
    pub arrived: Instant,
}

/// Why a sequence ended, in OpenAI terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// EOS or a stop string.
    Stop,
    /// `max_tokens` or the context size.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Final accounting of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV entries were reused from an earlier request.
    pub cached_tokens: usize,
}

/// What the engine sends back for a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text (stop strings already removed) and, with logprobs on, the tokens it came from.
    Text {
        text: String,
        tokens: Vec<TokenInfo>,
    },
    Done(Done),
    Error(String),
}

/// Engine sizes.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// KV-cache slots = sequences decoded together.
    pub parallel: usize,
    /// Positions per slot.
    pub ctx: usize,
    /// Waiting jobs allowed beyond the slots (then 429).
    pub max_queue: usize,
    /// Most tokens in one forward pass (decode tokens + prompt chunks).
    pub batch_tokens: usize,
    /// Compute threads (0 = all cores).
    pub threads: usize,
}

/// Live counters of one engine (read by `/metrics` and the 429 check).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Jobs submitted and not yet finished (waiting + running).
    pub in_flight: AtomicUsize,
    /// Jobs in a slot.
    pub active: AtomicUsize,
    /// KV positions filled in busy slots.
    pub kv_used: AtomicUsize,
    /// KV positions in all slots.
    pub kv_capacity: AtomicUsize,
    /// Prompt tokens served from reused prefixes.
    pub reused_tokens: AtomicUsize,
}

impl EngineStats {
    pub fn waiting(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed).saturating_sub(self.active.load(Ordering::Relaxed))
    }
}

enum Cmd {
    Submit(Vec<Job>),
    Shutdown,
}

/// Why a submission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// Queue full (429).
    Busy { waiting: usize },
    /// The engine is shutting down (503).
    Closed,
}

/// Handle to a model's engine thread.
pub struct Engine {
    tx: Mutex<Option<std_mpsc::Sender<Cmd>>>,
    pub stats: Arc<EngineStats>,
    pub config: EngineConfig,
    closed: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine thread for `model`.
    pub fn start(model: Arc<LoadedModel>, config: EngineConfig, metrics: Arc<Metrics>) -> std::io::Result<Engine> {
        let (tx, rx) = std_mpsc::channel();
        let stats = Arc::new(EngineStats::default());
        let st = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name(format!("tern-engine-{}", model.id))
            .spawn(move || EngineLoop::run(model, config, rx, st, metrics))?;
        Ok(Engine {
            tx: Mutex::new(Some(tx)),
            stats,
            config,
            closed: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues jobs (all or none).
    pub fn submit(&self, jobs: Vec<Job>) -> Result<(), SubmitError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::Closed);
        }
        let n = jobs.len();
        let limit = self.config.parallel + self.config.max_queue;
        let prev = self.stats.in_flight.fetch_add(n, Ordering::SeqCst);
        if prev + n > limit {
            self.stats.in_flight.fetch_sub(n, Ordering::SeqCst);
            return Err(SubmitError::Busy { waiting: self.stats.waiting() });
        }
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref().map(|tx| tx.send(Cmd::Submit(jobs))) {
            Some(Ok(())) => Ok(()),
            _ => {
                self.stats.in_flight.fetch_sub(n, Ordering::SeqCst);
                Err(SubmitError::Closed)
            }
        }
    }

    /// Stops taking jobs; the thread finishes what it has, then exits.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(Cmd::Shutdown);
        }
    }

    /// Closes and waits for the thread.
    pub fn join(&self) {
        self.close();
        let h = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

struct Slot {
    cache: KvCache,
    /// Tokens whose keys/values are in `cache`.
    tokens: Vec<u32>,
    busy: bool,
    last_used: u64,
}

struct Seq<'t> {
    job: Job,
    slot: usize,
    /// Prompt tokens whose KV entries are in the slot.
    prompt_done: usize,
    cached: usize,
    /// Prompt + generated ids (sampler history).
    history: Vec<u32>,
    generated: usize,
    sampler: Sampler,
    detok: StreamDecoder<'t>,
    stop: StopFilter,
    tokens: Option<TokenQueue>,
    /// The sampled token to feed at the next step.
    next: [u32; 1],
    last_token_at: Option<Instant>,
    json: Option<JsonState>,
    done: bool,
}

impl Seq<'_> {
    fn prefilling(&self) -> bool {
        self.prompt_done < self.job.prompt.len()
    }
}

struct EngineLoop<'m> {
    lm: &'m LoadedModel,
    pool: ThreadPool,
    cfg: EngineConfig,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    running: Vec<Seq<'m>>,
    ws: Workspace,
    logits: Vec<f32>,
    scratch: Vec<f32>,
    top: Vec<(u32, f32)>,
    stats: Arc<EngineStats>,
    metrics: Arc<Metrics>,
    clock: u64,
}

impl<'m> EngineLoop<'m> {
    fn run(
        model: Arc<LoadedModel>,
        cfg: EngineConfig,
        rx: std_mpsc::Receiver<Cmd>,
        stats: Arc<EngineStats>,
        metrics: Arc<Metrics>,
    ) {
        let lm: &LoadedModel = &model;
        let slots: Vec<Slot> = (0..cfg.parallel.max(1))
            .map(|_| Slot {
                cache: KvCache::new(&lm.model.config, cfg.ctx),
                tokens: Vec::new(),
                busy: false,
                last_used: 0,
            })
            .collect();
        stats.kv_capacity.store(slots.len() * cfg.ctx, Ordering::Relaxed);
        let mut e = EngineLoop {
            lm,
            pool: ThreadPool::new(cfg.threads),
            cfg,
            slots,
            waiting: VecDeque::new(),
            running: Vec::new(),
            ws: Workspace::default(),
            logits: Vec::new(),
            scratch: Vec::new(),
            top: Vec::new(),
            stats,
            metrics,
            clock: 0,
        };
        let mut draining = false;
        loop {
            if e.running.is_empty() && e.waiting.is_empty() {
                if draining {
                    break;
                }
                match rx.recv() {
                    Ok(cmd) => e.command(cmd, &mut draining),
                    Err(_) => break,
                }
            }
            while let Ok(cmd) = rx.try_recv() {
                e.command(cmd, &mut draining);
            }
            e.drop_cancelled();
            e.admit();
            if e.running.is_empty() {
                continue;
            }
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| e.step()));
            let failure = match r {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(format!("model error: {err}")),
                Err(p) => Some(format!("internal error (panic in the engine step: {})", panic_message(&p))),
            };
            if let Some(msg) = failure {
                tracing::error!("{msg}");
                e.fail_running(&msg);
            }
            e.retire();
        }
        // Anything left (the channel closed while jobs waited) ends with an error.
        for j in e.waiting.drain(..) {
            let _ = j.events.send(Event::Error("the model was unloaded".into()));
            e.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn command(&mut self, cmd: Cmd, draining: &mut bool) {
        match cmd {
            Cmd::Submit(jobs) => self.waiting.extend(jobs),
            Cmd::Shutdown => *draining = true,
        }
    }

    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|j| !j.events.is_closed());
        let gone = before - self.waiting.len();
        if gone > 0 {
            self.stats.in_flight.fetch_sub(gone, Ordering::SeqCst);
            self.metrics.cancelled.fetch_add(gone as u64, Ordering::Relaxed);
        }
        for s in &mut self.running {
            if !s.done && s.job.events.is_closed() {
                s.done = true;
                self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.retire();
    }

    /// Frees the slots of finished sequences.
    fn retire(&mut self) {
        let slots = &mut self.slots;
        let stats = &self.stats;
        self.running.retain(|s| {
            if s.done {
                slots[s.slot].busy = false;
                stats.active.fetch_sub(1, Ordering::SeqCst);
                stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            !s.done
        });
        let used: usize = self.slots.iter().filter(|s| s.busy).map(|s| s.cache.len()).sum();
        self.stats.kv_used.store(used, Ordering::Relaxed);
    }

    fn admit(&mut self) {
        while !self.waiting.is_empty() {
            let Some(job) = self.waiting.front() else { break };
            let prompt = Arc::clone(&job.prompt);
            // The free slot sharing the longest prefix; least recently used on ties.
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.busy)
                .map(|(i, s)| (i, common_prefix(&s.tokens, &prompt), s.last_used))
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
            let Some((slot_i, common, _)) = best else { break };
            let Some(job) = self.waiting.pop_front() else { break };
            // At least one prompt token is recomputed so there are logits to sample from.
            let keep = common.min(prompt.len().saturating_sub(1));
            self.clock += 1;
            let slot = &mut self.slots[slot_i];
            slot.cache.truncate(keep);
            slot.tokens.truncate(keep);
            slot.busy = true;
            slot.last_used = self.clock;
            self.stats.active.fetch_add(1, Ordering::SeqCst);
            self.stats.reused_tokens.fetch_add(keep, Ordering::Relaxed);
            let p = &job.params;
            let sampler = Sampler::new(p.sampling.clone()).with_adjust(p.adjust.clone());
            let stop = StopFilter::new(&p.stop);
            let tokens = p.logprobs.map(|_| TokenQueue::default());
            let json = p.json_object.then(JsonState::new);
            let mut history = Vec::with_capacity(prompt.len() + p.max_tokens.min(4096));
            history.extend_from_slice(&prompt);
            self.running.push(Seq {
                job,
                slot: slot_i,
                prompt_done: keep,
                cached: keep,
                history,
                generated: 0,
                sampler,
                detok: StreamDecoder::new(&self.lm.tokenizer),
                stop,
                tokens,
                next: [0],
                last_token_at: None,
                json,
                done: false,
            });
        }
    }

    /// One batched forward pass and the sampling that follows it.
    fn step(&mut self) -> Result<(), ModelError> {
        let model: &Model = &self.lm.model;
        let vocab = model.vocab();
        // Plan: decode tokens first, then prompt chunks within the budget (FIFO).
        let mut budget = self.cfg.batch_tokens.max(1);
        let mut plan: Vec<(usize, usize, usize)> = Vec::new(); // (seq, start, end) in prompt; decode: (seq, 0, 0)
        for (i, s) in self.running.iter().enumerate() {
            if !s.done && !s.prefilling() {
                plan.push((i, 0, 0));
                budget = budget.saturating_sub(1);
            }
        }
        for (i, s) in self.running.iter().enumerate() {
            if s.done || !s.prefilling() || budget == 0 {
                continue;
            }
            let n = (s.job.prompt.len() - s.prompt_done).min(budget);
            plan.push((i, s.prompt_done, s.prompt_done + n));
            budget -= n;
        }
        if plan.is_empty() {
            return Ok(());
        }
        plan.sort_unstable_by_key(|p| p.0);
        // Forward.
        {
            let mut caches: Vec<Option<&mut KvCache>> = self.slots.iter_mut().map(|s| Some(&mut s.cache)).collect();
            let mut inputs: Vec<(&[u32], &mut KvCache)> = Vec::with_capacity(plan.len());
            for &(i, a, b) in &plan {
                let s = &self.running[i];
                let toks: &[u32] = if a == b { &s.next } else { &s.job.prompt[a..b] };
                let cache = caches[s.slot].take().ok_or_else(|| ModelError::Config {
                    path: "<engine>".into(),
                    field: "slot".into(),
                    reason: "two sequences share a KV-cache slot".into(),
                })?;
                inputs.push((toks, cache));
            }
            crate::batch::forward_last(model, &self.pool, &mut inputs, &mut self.ws, &mut self.logits)?;
        }
        // Book-keeping and sampling.
        for (row, &(i, a, b)) in plan.iter().enumerate() {
            let s = &mut self.running[i];
            let slot = &mut self.slots[s.slot];
            if a == b {
                slot.tokens.push(s.next[0]);
            } else {
                slot.tokens.extend_from_slice(&s.job.prompt[a..b]);
                s.prompt_done = b;
                if s.prefilling() {
                    continue;
                }
                self.metrics.prompt_tokens.fetch_add(s.job.prompt.len() as u64, Ordering::Relaxed);
                self.metrics.cached_prompt_tokens.fetch_add(s.cached as u64, Ordering::Relaxed);
            }
            let logits = &mut self.logits[row * vocab..(row + 1) * vocab];
            sample_one(self.lm, s, slot, logits, &mut self.scratch, &mut self.top, &self.metrics);
        }
        Ok(())
    }

    fn fail_running(&mut self, msg: &str) {
        for s in &mut self.running {
            if !s.done {
                let _ = s.job.events.send(Event::Error(msg.to_string()));
                s.done = true;
            }
            // The cache may be half written: forget it.
            let slot = &mut self.slots[s.slot];
            slot.cache.truncate(0);
            slot.tokens.clear();
        }
        self.metrics.engine_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Samples the next token of `s` from its logits row and streams the result.
fn sample_one(
    lm: &LoadedModel,
    s: &mut Seq<'_>,
    slot: &Slot,
    logits: &mut [f32],
    scratch: &mut Vec<f32>,
    top: &mut Vec<(u32, f32)>,
    metrics: &Metrics,
) {
    let now = Instant::now();
    match s.last_token_at {
        None => metrics.ttft.observe(now.duration_since(s.job.arrived).as_secs_f64()),
        Some(t) => metrics.itl.observe(now.duration_since(t).as_secs_f64()),
    }
    s.last_token_at = Some(now);
    let want_lp = s.job.params.logprobs;
    if want_lp.is_some() {
        scratch.clear();
        scratch.extend_from_slice(logits);
    }
    if let Some(js) = s.json {
        if js.is_complete() || mask_logits(&js, lm.token_bytes(), logits) == 0 {
            let why = if js.is_complete() { Finish::Stop } else { Finish::Length };
            finish(lm, s, why, false);
            return;
        }
    }
    let n_prompt = s.job.prompt.len();
    let id = s.sampler.sample_after_prompt(logits, &s.history, n_prompt);
    if let Some(js) = s.json.as_mut() {
        js.advance(lm.token_bytes().get(id as usize).map_or(&[][..], |b| &b[..]));
    }
    metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
    if !s.job.params.ignore_eos && lm.eos.contains(&id) {
        finish(lm, s, Finish::Stop, false);
        return;
    }
    s.history.push(id);
    s.generated += 1;
    let piece = s.detok.push(id).ok().flatten().unwrap_or_default();
    if let (Some(k), Some(q)) = (want_lp, s.tokens.as_mut()) {
        let lp = logprobs(scratch, id, k, top);
        let alts = top.iter().map(|&(t, l)| (token_text(lm, t), l)).collect();
        q.push(TokenInfo { id, text: piece.clone(), logprob: lp, top: alts });
    }
    let released = s.stop.push(&piece);
    if released.stopped {
        send_text(s, released.text);
        finish(lm, s, Finish::Stop, true);
        return;
    }
    send_text(s, released.text);
    if s.json.is_some_and(|j| j.is_complete()) {
        finish(lm, s, Finish::Stop, false);
        return;
    }
    if s.generated >= s.job.params.max_tokens || slot.cache.len() >= slot.cache.capacity() {
        finish(lm, s, Finish::Length, false);
        return;
    }
    s.next = [id];
}

/// The text of one token on its own (for `top_logprobs`).
fn token_text(lm: &LoadedModel, id: u32) -> String {
    lm.tokenizer.decode(&[id], false).unwrap_or_else(|_| lm.tokenizer.id_to_token(id).unwrap_or_default())
}

fn send_text(s: &mut Seq<'_>, text: String) {
    let tokens = match s.tokens.as_mut() {
        Some(q) => q.release(text.len()),
        None => Vec::new(),
    };
    if !text.is_empty() || !tokens.is_empty() {
        let _ = s.job.events.send(Event::Text { text, tokens });
    }
}

/// Ends a sequence: releases held text (unless a stop string cut it) and sends `Done`.
fn finish(_lm: &LoadedModel, s: &mut Seq<'_>, why: Finish, stop_matched: bool) {
    let mut text = String::new();
    let mut cut = stop_matched;
    if !stop_matched {
        let tail = s.detok.flush().unwrap_or_default();
        if let Some(q) = s.tokens.as_mut() {
            q.append_to_last(&tail);
        }
        let r = s.stop.push(&tail);
        text.push_str(&r.text);
        if r.stopped {
            cut = true;
        } else {
            text.push_str(&s.stop.finish());
        }
    }
    let finish = if cut { Finish::Stop } else { why };
    let mut tokens = Vec::new();
    if let Some(q) = s.tokens.as_mut() {
        tokens = q.release(text.len());
        tokens.extend(q.finish(cut));
    }
    if !text.is_empty() || !tokens.is_empty() {
        let _ = s.job.events.send(Event::Text { text, tokens });
    }
    let _ = s.job.events.send(Event::Done(Done {
        finish,
        prompt_tokens: s.job.prompt.len(),
        completion_tokens: s.generated,
        cached_tokens: s.cached,
    }));
    s.done = true;
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}
