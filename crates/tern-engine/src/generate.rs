//! Generating one sequence: prefill the prompt in chunks, then decode token by token.
//!
//! The caller gets each new token through a callback (for streaming) and may stop early. The KV
//! cache lives in the [`Generator`], so a chat session can keep it across turns: [`Generator::reuse_prefix`]
//! keeps the longest common prefix of the cached tokens and the new prompt and only prefills the rest.

use crate::sampler::Sampler;
use std::time::{Duration, Instant};
use tern_kernels::ThreadPool;
use tern_model::{KvCache, Logits, Model, ModelError, Workspace};

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was produced.
    Eos,
    /// `max_tokens` reached.
    Length,
    /// The KV cache (context) is full.
    Context,
    /// The callback asked to stop (stop string, cancellation).
    Stopped,
}

/// What the per-token callback tells the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepControl {
    Continue,
    Stop,
}

/// Result of one generation.
#[derive(Clone, Debug)]
pub struct GenOutput {
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens actually computed (fewer than `prompt_tokens` when a cached prefix was reused).
    pub prefilled_tokens: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

impl GenOutput {
    pub fn prefill_tok_s(&self) -> f64 {
        self.prefilled_tokens as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }
    pub fn decode_tok_s(&self) -> f64 {
        // The first token comes out of prefill; decode steps produce the rest.
        self.tokens.len().saturating_sub(1) as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// A model plus one sequence's state.
pub struct Generator<'m> {
    pub model: &'m Model,
    pub pool: &'m ThreadPool,
    pub cache: KvCache,
    ws: Workspace,
    /// Tokens whose keys/values are in the cache, in order.
    cached: Vec<u32>,
    /// Prompt tokens computed per forward call during prefill.
    pub prefill_chunk: usize,
}

impl<'m> Generator<'m> {
    /// A generator with a KV cache of `ctx` positions (clamped to at least 1).
    pub fn new(model: &'m Model, pool: &'m ThreadPool, ctx: usize) -> Generator<'m> {
        Self::with_workspace(model, pool, ctx, Workspace::default())
    }

    /// Like [`Generator::new`], running in `ws` (e.g. a CUDA workspace from `Workspace::cuda`).
    pub fn with_workspace(model: &'m Model, pool: &'m ThreadPool, ctx: usize, ws: Workspace) -> Generator<'m> {
        Generator {
            model,
            pool,
            cache: KvCache::new(&model.config, ctx.max(1)),
            ws,
            cached: Vec::new(),
            prefill_chunk: 256,
        }
    }

    /// Forgets everything in the cache.
    pub fn reset(&mut self) {
        self.cache.truncate(0);
        self.cached.clear();
    }

    /// Keeps the longest cached prefix shared with `prompt` (at least one prompt token is always
    /// recomputed so there are logits to sample from). Returns how many tokens were kept.
    pub fn reuse_prefix(&mut self, prompt: &[u32]) -> usize {
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let keep = common.min(prompt.len().saturating_sub(1));
        self.cache.truncate(keep);
        self.cached.truncate(keep);
        keep
    }

    /// Tokens currently in the cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// Generates after `prompt` (continuing from a reused cached prefix if [`Self::reuse_prefix`]
    /// was called). Stops on any id in `eos`, after `max_tokens`, when the context is full, or
    /// when `on_token` returns [`StepControl::Stop`]. EOS tokens are not passed to `on_token` and not
    /// included in the output.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        eos: &[u32],
        sampler: &mut Sampler,
        mut on_token: impl FnMut(u32) -> StepControl,
    ) -> Result<GenOutput, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::Config {
                path: "<prompt>".into(),
                field: "prompt".into(),
                reason: "the prompt has no tokens".into(),
            });
        }
        let start = self.cached.len();
        if !prompt.starts_with(&self.cached) {
            self.reset();
        }
        let start = start.min(self.cached.len());
        if prompt.len() > self.cache.capacity() {
            return Err(ModelError::ContextFull { needed: prompt.len(), capacity: self.cache.capacity() });
        }
        let t0 = Instant::now();
        let rest = &prompt[start..];
        let mut i = 0;
        while i < rest.len() {
            let end = (i + self.prefill_chunk.max(1)).min(rest.len());
            self.model.forward(self.pool, &rest[i..end], &mut self.cache, &mut self.ws, Logits::Last)?;
            self.cached.extend_from_slice(&rest[i..end]);
            i = end;
        }
        let prefill_time = t0.elapsed();
        let t1 = Instant::now();
        let mut out = Vec::new();
        let mut history: Vec<u32> = prompt.to_vec();
        let finish = loop {
            if out.len() >= max_tokens {
                break FinishReason::Length;
            }
            let next = sampler.sample(&mut self.ws.logits, &history);
            if eos.contains(&next) {
                break FinishReason::Eos;
            }
            out.push(next);
            history.push(next);
            if on_token(next) == StepControl::Stop {
                break FinishReason::Stopped;
            }
            if out.len() >= max_tokens {
                break FinishReason::Length;
            }
            if self.cache.len() >= self.cache.capacity() {
                break FinishReason::Context;
            }
            self.model.forward(self.pool, &[next], &mut self.cache, &mut self.ws, Logits::Last)?;
            self.cached.push(next);
        };
        Ok(GenOutput {
            tokens: out,
            finish,
            prompt_tokens: prompt.len(),
            prefilled_tokens: rest.len(),
            prefill_time,
            decode_time: t1.elapsed(),
        })
    }
}
