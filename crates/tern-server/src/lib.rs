//! tern-server: `tern serve`, an OpenAI-compatible HTTP server with continuous batching.
//!
//! * [`request`]: parsing and validating request bodies (400 naming the field, before any compute).
//! * [`engine`]: one scheduler thread per model; KV-cache slots, prefix reuse, chunked prefill,
//!   batched decode, per-request seeded sampling, cancellation.
//! * [`batch`]: one forward pass over several sequences.
//! * [`stop`], [`reasoning`], [`tools`]: stop strings (never leaked), `<think>` → `reasoning_content`,
//!   tool-call parsing (Hermes/Qwen `<tool_call>`, Llama-3 JSON).
//! * [`json_mode`]: `response_format: json_object` by token masking.
//! * [`http`]: axum routes, auth, SSE, `/metrics` ([`metrics`]), `/load` / `/unload` ([`registry`]).
//!
//! [`serve`] runs the whole thing until SIGTERM/SIGINT, then stops accepting connections, drains the
//! requests in flight for up to the shutdown timeout, and returns `Ok`.
#![forbid(unsafe_code)]

pub mod batch;
pub mod engine;
pub mod error;
pub mod http;
pub mod json_mode;
pub mod metrics;
pub mod reasoning;
pub mod registry;
pub mod request;
pub mod stop;
pub mod tools;

pub use engine::EngineConfig;
pub use error::{ApiError, ServerError};
pub use registry::{load_parts, Loader, ModelParts, SamplingDefaults};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Everything `tern serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port (the bound address is printed and passed to `on_listen`).
    pub port: u16,
    pub api_key: Option<String>,
    /// Slots, queue, batch and thread settings (`ctx` is set per model from `ctx_size`).
    pub engine: EngineConfig,
    /// KV positions per sequence; `None` = min(max_position_embeddings, 4096).
    pub ctx_size: Option<usize>,
    /// Per-request limit from arrival to the last token.
    pub timeout: Duration,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    pub defaults: SamplingDefaults,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            engine: EngineConfig { parallel: 4, ctx: 0, max_queue: 64, batch_tokens: 256, threads: 0 },
            ctx_size: None,
            timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(30),
            defaults: SamplingDefaults::default(),
        }
    }
}

impl ServerConfig {
    fn check(&self) -> Result<(), ServerError> {
        if self.engine.parallel == 0 {
            return Err(ServerError::Config { field: "parallel", reason: "must be at least 1".into() });
        }
        if self.engine.batch_tokens == 0 {
            return Err(ServerError::Config { field: "batch_tokens", reason: "must be at least 1".into() });
        }
        if self.ctx_size.is_some_and(|c| c < 2) {
            return Err(ServerError::Config { field: "ctx_size", reason: "must be at least 2".into() });
        }
        if self.timeout.is_zero() {
            return Err(ServerError::Config { field: "timeout", reason: "must be positive".into() });
        }
        Ok(())
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves until SIGTERM/SIGINT (blocking; builds its own async runtime). `models` are loaded in the
/// background through `loader` while `/health` answers 503; a model that fails to load ends the
/// server with an error.
pub fn serve(config: ServerConfig, models: Vec<String>, loader: Loader) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("tern-http")
        .build()
        .map_err(ServerError::Runtime)?;
    let r = rt.block_on(serve_until(config, models, loader, shutdown_signal(), |addr| {
        eprintln!("tern serve: listening on http://{addr}");
    }));
    rt.shutdown_timeout(Duration::from_millis(200));
    r
}

/// The server on the current tokio runtime, until `shutdown` resolves; `on_listen` gets the bound
/// address.
pub async fn serve_until(
    config: ServerConfig,
    models: Vec<String>,
    loader: Loader,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    config.check()?;
    let addr_s = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr_s)
        .await
        .map_err(|source| ServerError::Bind { addr: addr_s.clone(), source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: addr_s, source })?;
    let metrics = Arc::new(metrics::Metrics::default());
    let settings =
        registry::ModelSettings { engine: config.engine, ctx_size: config.ctx_size, defaults: config.defaults.clone() };
    let registry = Arc::new(registry::Registry::new(loader, settings, Arc::clone(&metrics)));
    let state = Arc::new(http::AppState::new(Arc::clone(&registry), metrics, config.api_key.clone(), config.timeout));

    // Initial models load in the background; the first failure stops the server.
    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::unbounded_channel::<ServerError>();
    for spec in models {
        registry.begin_loading(&spec);
        let reg = Arc::clone(&registry);
        let tx = fail_tx.clone();
        tokio::task::spawn_blocking(move || match reg.load(&spec) {
            Ok(e) => eprintln!(
                "tern serve: model {} ready (context {} × {} slots)",
                e.lm.id, e.lm.ctx, e.engine.config.parallel
            ),
            Err(e) => {
                let _ = tx.send(e);
            }
        });
    }
    drop(fail_tx);

    on_listen(addr);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let graceful = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let server = axum::serve(listener, http::router(state)).with_graceful_shutdown(graceful);
    let mut server = tokio::spawn(async move { server.await });
    let mut load_error = None;
    tokio::select! {
        r = &mut server => {
            registry.close_all();
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServerError::Serve(e)),
                Err(e) => Err(ServerError::Serve(std::io::Error::other(e.to_string()))),
            };
        }
        _ = shutdown => {
            eprintln!("tern serve: shutting down, draining requests in flight (up to {:?})", config.shutdown_timeout);
        }
        Some(e) = fail_rx.recv() => {
            load_error = Some(e);
        }
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(config.shutdown_timeout, &mut server).await {
        Ok(_) => {}
        Err(_) => {
            eprintln!("tern serve: shutdown timeout reached; dropping the requests still running");
            server.abort();
        }
    }
    registry.close_all();
    match load_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
