//! The models a server holds: loading (from a spec through a caller-supplied [`Loader`], so the CLI can
//! resolve Hub specs), name resolution (exact id, path, or a short alias: file or directory basename,
//! with or without `.gguf`; the repo name of an `org/name` spec), unloading, and per-model defaults.

use crate::engine::{Engine, EngineConfig};
use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tern_model::Model;
use tern_text::template::ChatTemplate;
use tern_text::Tokenizer;

/// What a loader produces for a model spec.
pub struct ModelParts {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    /// The local path the spec resolved to (used as an alias).
    pub path: PathBuf,
}

/// Turns a model spec (path, Hub spec, ...) into loaded parts. Runs on a blocking thread.
pub type Loader = Arc<dyn Fn(&str) -> Result<ModelParts, String> + Send + Sync>;

/// Loads a model, its tokenizer and chat template from a local path (HF directory or GGUF file).
pub fn load_parts(path: &Path) -> Result<ModelParts, String> {
    if !path.exists() {
        return Err(format!("model path {} does not exist", path.display()));
    }
    let model = tern_model::load::load_path(path, None).map_err(|e| format!("{}: {e}", path.display()))?;
    let tokenizer = tern_text::source::load_tokenizer(path)
        .map_err(|e| format!("loading the tokenizer from {}: {e}", path.display()))?;
    let template = tern_text::source::load_chat_template(path)
        .map_err(|e| format!("loading the chat template from {}: {e}", path.display()))?;
    Ok(ModelParts { model, tokenizer, template, path: path.to_path_buf() })
}

/// A synthetic model (`tern_model::synthetic`: random weights of a real shape) with a stand-in
/// word-level vocabulary (`<unk>`, `t1`, `t2`, ... one word per id, whitespace-split), no chat
/// template: enough to benchmark the server with token-id prompts on `/v1/completions`.
pub fn synthetic_parts(name: &str, seed: u64) -> Result<ModelParts, String> {
    let opts = tern_model::synthetic::Options { seed, ..Default::default() };
    let model = tern_model::synthetic::build(name, &opts).map_err(|e| e.to_string())?;
    let vocab: serde_json::Map<String, serde_json::Value> = (0..model.vocab())
        .map(|i| (if i == 0 { "<unk>".to_string() } else { format!("t{i}") }, serde_json::Value::from(i)))
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    let tokenizer = Tokenizer::from_tokenizer_json_bytes(json.to_string().as_bytes())
        .map_err(|e| format!("building the synthetic vocabulary: {e}"))?;
    Ok(ModelParts { model, tokenizer, template: None, path: PathBuf::from(format!("synthetic:{name}")) })
}

/// Server-side sampling defaults (command-line flags); `None` falls back to the model's
/// generation_config.json, then to OpenAI's neutral defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingDefaults {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub max_tokens: Option<usize>,
    /// Seed of requests that send none (default: a fresh random seed per request).
    pub seed: Option<u64>,
}

/// Defaults resolved for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedDefaults {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub max_tokens: Option<usize>,
    pub seed: Option<u64>,
}

impl SamplingDefaults {
    /// Flags over generation_config.json over neutral values (temperature 1, top_p 1, no top-k/min-p).
    pub fn resolve(&self, model: &Model) -> ResolvedDefaults {
        let g = &model.config.gen_defaults;
        let greedy_default = g.do_sample == Some(false) && g.temperature.is_none();
        ResolvedDefaults {
            temperature: self.temperature.or(g.temperature).unwrap_or(if greedy_default { 0.0 } else { 1.0 }),
            top_p: self.top_p.or(g.top_p).unwrap_or(1.0),
            top_k: self.top_k.or(g.top_k).unwrap_or(0),
            min_p: self.min_p.or(g.min_p).unwrap_or(0.0),
            repetition_penalty: self.repetition_penalty.or(g.repetition_penalty).unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            max_tokens: self.max_tokens,
            seed: self.seed,
        }
    }
}

/// A model ready to serve.
pub struct LoadedModel {
    /// The id clients use (the spec as given).
    pub id: String,
    pub path: PathBuf,
    pub aliases: Vec<String>,
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    /// Model + tokenizer EOS ids.
    pub eos: Vec<u32>,
    /// KV positions per sequence.
    pub ctx: usize,
    /// The chat template knows `<think>` blocks: split reasoning from content.
    pub reasoning: bool,
    pub defaults: ResolvedDefaults,
    /// Unix time of loading.
    pub created: u64,
    /// Text of every token on its own (special tokens empty), built on first use by JSON mode.
    token_bytes: std::sync::OnceLock<Vec<Box<[u8]>>>,
}

impl LoadedModel {
    /// The text bytes of each output token id (for constrained decoding); special tokens and ids the
    /// tokenizer does not know have none.
    pub fn token_bytes(&self) -> &[Box<[u8]>] {
        self.token_bytes.get_or_init(|| {
            (0..self.model.vocab() as u32)
                .map(|id| {
                    self.tokenizer.decode(&[id], true).map(|s| s.into_bytes().into_boxed_slice()).unwrap_or_default()
                })
                .collect()
        })
    }
}

/// A loaded model and its engine.
pub struct Entry {
    pub lm: Arc<LoadedModel>,
    pub engine: Engine,
}

/// Settings applied to every model loaded.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub engine: EngineConfig,
    /// KV positions per sequence; `None` = min(max_position_embeddings, 4096).
    pub ctx_size: Option<usize>,
    pub defaults: SamplingDefaults,
}

/// All models of the server.
pub struct Registry {
    entries: RwLock<Vec<Arc<Entry>>>,
    loading: Mutex<Vec<String>>,
    loader: Loader,
    settings: ModelSettings,
    metrics: Arc<Metrics>,
}

fn aliases_of(id: &str, path: &Path) -> Vec<String> {
    let mut a = vec![path.display().to_string()];
    for p in [Path::new(id), path] {
        if let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) {
            if let Some(stem) = name.strip_suffix(".gguf") {
                a.push(stem.to_string());
            }
            a.push(name);
        }
    }
    // `org/name:file.gguf` / `org/name@rev`: the repo name.
    let repo = id.split([':', '@']).next().unwrap_or(id);
    if let Some(name) = repo.rsplit('/').next() {
        a.push(name.to_string());
    }
    a.retain(|x| !x.is_empty() && x != id);
    let mut seen = std::collections::HashSet::new();
    a.retain(|x| seen.insert(x.clone()));
    a
}

impl Registry {
    pub fn new(loader: Loader, settings: ModelSettings, metrics: Arc<Metrics>) -> Registry {
        Registry { entries: RwLock::new(Vec::new()), loading: Mutex::new(Vec::new()), loader, settings, metrics }
    }

    /// Loaded models, in load order.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Models being loaded.
    pub fn loading(&self) -> usize {
        self.loading.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Marks `spec` as loading (so `/health` says 503 before the load thread even starts). False when
    /// it is already loading.
    pub fn begin_loading(&self, spec: &str) -> bool {
        let mut l = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if l.iter().any(|s| s == spec) {
            return false;
        }
        l.push(spec.to_string());
        true
    }

    fn end_loading(&self, spec: &str) {
        let mut l = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = l.iter().position(|s| s == spec) {
            l.remove(i);
        }
    }

    /// Finds a model by id, path or alias; `None` picks the first loaded model.
    pub fn find(&self, name: Option<&str>) -> Result<Arc<Entry>, ApiError> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let ids = || entries.iter().map(|e| e.lm.id.clone()).collect::<Vec<_>>();
        let Some(name) = name else {
            return entries.first().cloned().ok_or_else(|| ApiError::unavailable("no model is loaded"));
        };
        entries
            .iter()
            .find(|e| e.lm.id == name)
            .or_else(|| entries.iter().find(|e| e.lm.aliases.iter().any(|a| a == name)))
            .cloned()
            .ok_or_else(|| ApiError::model_not_found(name, &ids()))
    }

    /// Loads `spec` (blocking: resolve, read weights, start the engine). Call [`Registry::begin_loading`]
    /// first.
    pub fn load(&self, spec: &str) -> Result<Arc<Entry>, ServerError> {
        let r = self.load_inner(spec);
        self.end_loading(spec);
        r
    }

    fn load_inner(&self, spec: &str) -> Result<Arc<Entry>, ServerError> {
        if self.list().iter().any(|e| e.lm.id == spec) {
            return Err(ServerError::AlreadyLoaded(spec.to_string()));
        }
        let err = |message: String| ServerError::Load { spec: spec.to_string(), message };
        let loader = Arc::clone(&self.loader);
        let parts = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader(spec)))
            .map_err(|_| err("the loader panicked".into()))?
            .map_err(err)?;
        let cfg = &parts.model.config;
        let ctx = self.settings.ctx_size.unwrap_or_else(|| cfg.max_position_embeddings.min(4096)).max(2);
        let mut eos = cfg.eos_ids.clone();
        for &e in parts.tokenizer.eos_ids() {
            if !eos.contains(&e) {
                eos.push(e);
            }
        }
        let reasoning = parts
            .template
            .as_ref()
            .is_some_and(|t| t.names().filter_map(|n| t.source(n)).any(|s| s.contains("</think>")));
        let defaults = self.settings.defaults.resolve(&parts.model);
        let lm = Arc::new(LoadedModel {
            id: spec.to_string(),
            aliases: aliases_of(spec, &parts.path),
            path: parts.path,
            model: parts.model,
            tokenizer: parts.tokenizer,
            template: parts.template,
            eos,
            ctx,
            reasoning,
            defaults,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            token_bytes: std::sync::OnceLock::new(),
        });
        let engine_cfg = EngineConfig { ctx, ..self.settings.engine };
        let engine = Engine::start(Arc::clone(&lm), engine_cfg, Arc::clone(&self.metrics))
            .map_err(|e| err(format!("starting the engine thread: {e}")))?;
        let entry = Arc::new(Entry { lm, engine });
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.iter().any(|e| e.lm.id == spec) {
            return Err(ServerError::AlreadyLoaded(spec.to_string()));
        }
        entries.push(Arc::clone(&entry));
        Ok(entry)
    }

    /// Removes a model: new requests get 404; its engine finishes the requests it has, then stops.
    pub fn unload(&self, name: &str) -> Result<Arc<Entry>, ApiError> {
        let entry = self.find(Some(name))?;
        self.entries.write().unwrap_or_else(|e| e.into_inner()).retain(|e| !Arc::ptr_eq(e, &entry));
        entry.engine.close();
        Ok(entry)
    }

    /// Closes every engine (shutdown).
    pub fn close_all(&self) {
        for e in self.list() {
            e.engine.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        let a = aliases_of(
            "models/SmolLM2-135M-Instruct.Q4_1.gguf",
            Path::new("/abs/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        );
        assert!(a.contains(&"SmolLM2-135M-Instruct.Q4_1".to_string()));
        assert!(a.contains(&"SmolLM2-135M-Instruct.Q4_1.gguf".to_string()));
        assert!(a.contains(&"/abs/models/SmolLM2-135M-Instruct.Q4_1.gguf".to_string()));
        let a = aliases_of("org/repo:file.gguf", Path::new("/cache/snap/file.gguf"));
        assert!(a.contains(&"repo".to_string()) && a.contains(&"file".to_string()));
        let a = aliases_of("tests/fixtures/hf/qwen3_tied", Path::new("tests/fixtures/hf/qwen3_tied"));
        assert_eq!(a, vec!["qwen3_tied".to_string()]);
    }
}
