//! tern-engine: turning logits into text-generation decisions.
//!
//! * [`sampler`]: repetition penalty, temperature, top-k, top-p, min-p, seeded sampling, greedy.
//! * [`generate`]: one sequence — chunked prefill, decode loop over the KV cache, stop on EOS /
//!   length / context, with per-phase timings.
#![forbid(unsafe_code)]

pub mod generate;
pub mod perplexity;
pub mod rng;
pub mod sampler;

pub use generate::{FinishReason, GenOutput, Generator, StepControl};
pub use sampler::{Sampler, SamplingParams};
