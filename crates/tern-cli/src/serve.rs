//! `tern serve`: the OpenAI-compatible HTTP server (all logic in `tern-server`; this file maps flags).
//!
//! Models are given with `-m` (repeatable; local paths or Hub specs, resolved like every other
//! command) or `--synthetic NAME` (random weights of a real shape with a stand-in word-level
//! vocabulary, for benchmarks; also loadable at runtime as `POST /load {"model": "synthetic:NAME"}`).

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tern_model::linear::{quantize_head, HeadQuant};
use tern_server::{EngineConfig, ModelParts, SamplingDefaults, ServerConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model(s) to serve: GGUF files, HF model directories, Hub repos (`org/name[@rev]`,
    /// `org/name:file.gguf`) or `synthetic:NAME`. Repeat for several models.
    #[arg(short = 'm', long = "model")]
    models: Vec<String>,
    /// Also serve a synthetic model of this shape (bitnet-2b4t, llama-1b, qwen3-0.6b) as `synthetic:NAME`.
    #[arg(long, value_name = "NAME")]
    synthetic: Option<String>,
    #[command(flatten)]
    hub: crate::hub_cmds::HubArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every route except /health (default: $TERN_API_KEY).
    #[arg(long)]
    api_key: Option<String>,
    /// Sequences decoded together per model (KV-cache slots).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Requests allowed to wait for a slot; more get 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Context size per sequence (KV positions). Default: min(max_position_embeddings, 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx: Option<usize>,
    /// Most tokens per forward pass (decode tokens + prompt chunks).
    #[arg(long, default_value_t = 256)]
    batch_tokens: usize,
    /// Per-request timeout in seconds (arrival to last token).
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// After SIGTERM/SIGINT, how long in-flight requests may finish (seconds).
    #[arg(long, default_value_t = 30.0)]
    shutdown_timeout: f64,
    /// Compute threads per model (0 = all cores).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// LM head storage: auto (tern's default, as `tern bench`: Q8_0 for a float head, a quantized
    /// head kept), keep, f32, f16, q8, q6, q4, q4k.
    #[arg(long, default_value = "auto", value_name = "TYPE")]
    head_quant: String,
    /// Default temperature of requests that send none (else generation_config.json, else 1).
    #[arg(long = "temp")]
    temperature: Option<f32>,
    /// Default top-p.
    #[arg(long)]
    top_p: Option<f32>,
    /// Default top-k (0 = off).
    #[arg(long)]
    top_k: Option<usize>,
    /// Default min-p.
    #[arg(long)]
    min_p: Option<f32>,
    /// Default repetition penalty.
    #[arg(long = "repeat-penalty")]
    repetition_penalty: Option<f32>,
    /// Default presence penalty.
    #[arg(long)]
    presence_penalty: Option<f32>,
    /// Default frequency penalty.
    #[arg(long)]
    frequency_penalty: Option<f32>,
    /// Default max_tokens (else: the rest of the context).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Seed of requests that send none (default: random per request).
    #[arg(long)]
    seed: Option<u64>,
}

fn secs(field: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        anyhow::bail!("--{field} must be a positive number of seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

pub fn main(a: Args) -> Result<()> {
    let mut models = a.models.clone();
    if let Some(name) = &a.synthetic {
        models.push(format!("synthetic:{name}"));
    }
    if models.is_empty() {
        anyhow::bail!("give at least one model (-m MODEL) or --synthetic NAME");
    }
    let defaults = SamplingDefaults {
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        min_p: a.min_p,
        repetition_penalty: a.repetition_penalty,
        presence_penalty: a.presence_penalty,
        frequency_penalty: a.frequency_penalty,
        max_tokens: a.max_tokens,
        seed: a.seed,
    };
    let check = tern_engine::SamplingParams {
        temperature: defaults.temperature.unwrap_or(1.0),
        top_k: 0,
        top_p: defaults.top_p.unwrap_or(1.0),
        min_p: defaults.min_p.unwrap_or(0.0),
        repetition_penalty: defaults.repetition_penalty.unwrap_or(1.0),
        seed: 0,
    };
    if let Err((field, why)) = check.validate() {
        anyhow::bail!("--{}: {why}", field.replace('_', "-"));
    }
    let config = ServerConfig {
        host: a.host.clone(),
        port: a.port,
        api_key: a.api_key.clone().or_else(|| std::env::var("TERN_API_KEY").ok()).filter(|k| !k.is_empty()),
        engine: EngineConfig {
            parallel: a.parallel,
            ctx: 0,
            max_queue: a.max_queue,
            batch_tokens: a.batch_tokens,
            threads: a.threads,
        },
        ctx_size: a.ctx,
        timeout: secs("timeout", a.timeout)?,
        shutdown_timeout: secs("shutdown-timeout", a.shutdown_timeout)?,
        defaults,
    };
    let head_quant = match a.head_quant.as_str() {
        "auto" => None,
        s => Some(
            HeadQuant::parse(s)
                .with_context(|| format!("--head-quant: unknown type '{s}' (auto, keep, f32, f16, q8, q6, q4, q4k)"))?,
        ),
    };
    let hub = a.hub.clone();
    let threads = if a.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { a.threads };
    let loader: tern_server::Loader = Arc::new(move |spec: &str| -> Result<ModelParts, String> {
        let mut parts = match spec.strip_prefix("synthetic:") {
            Some(name) => tern_server::registry::synthetic_parts(name, 0)?,
            None => {
                let path = crate::hub_cmds::resolve_model(spec, &hub).map_err(|e| format!("{e:#}"))?;
                tern_server::load_parts(&path)?
            }
        };
        let m = &mut parts.model;
        let hq = head_quant.unwrap_or_else(|| HeadQuant::default_for(m.lm_head.as_ref().unwrap_or(&m.embed)));
        quantize_head(m, hq, threads).map_err(|e| format!("quantizing the LM head of {spec}: {e}"))?;
        Ok(parts)
    });
    tern_server::serve(config, models, loader)?;
    Ok(())
}
