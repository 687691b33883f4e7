//! Shared CLI plumbing: model loading with a progress bar, thread pools, sampling flags.

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use tern_engine::SamplingParams;
use tern_kernels::ThreadPool;
use tern_model::Model;

/// Loads a model from a path: an HF directory (config.json + safetensors) or a `.gguf` file.
pub fn load_model(path: &Path) -> Result<Model> {
    if !path.exists() {
        anyhow::bail!("model path {} does not exist", path.display());
    }
    {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} layers")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_message(path.display().to_string());
        let progress = |done: usize, total: usize| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        };
        let m = tern_model::load::load_path(path, Some(&progress))
            .with_context(|| format!("loading model from {}", path.display()))?;
        pb.finish_and_clear();
        Ok(m)
    }
}

/// `--device auto|cpu|cuda[:N]`, shared by every command that runs a model.
#[derive(ClapArgs, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to run the model: `auto` (CUDA when a driver and a GPU are present, else the CPU),
    /// `cpu`, `cuda` (GPU 0) or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// A parsed `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceArgs {
    pub fn parse(&self) -> Result<Device> {
        let d = self.device.trim();
        Ok(match d {
            "auto" => Device::Auto,
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda(0),
            _ => match d.strip_prefix("cuda:") {
                Some(n) => Device::Cuda(
                    n.parse().map_err(|_| anyhow::anyhow!("--device {d}: expected cuda:N with N a GPU index"))?,
                ),
                None => anyhow::bail!("--device {d}: expected auto, cpu, cuda or cuda:N"),
            },
        })
    }

    /// The workspace to run `model` in: a CUDA one (weights uploaded now) or the CPU's. `auto`
    /// falls back to the CPU with a one-line notice on stderr.
    pub fn workspace(&self, model: &Model) -> Result<tern_model::Workspace> {
        let dev = self.parse()?;
        match dev {
            Device::Cpu => Ok(tern_model::Workspace::default()),
            Device::Cuda(n) => {
                cuda_available().map_err(|why| anyhow::anyhow!("--device cuda:{n}: {why}"))?;
                cuda_workspace(model, n)
            }
            Device::Auto => match cuda_available() {
                Ok(()) => match cuda_workspace(model, 0) {
                    Ok(ws) => Ok(ws),
                    Err(e) => {
                        eprintln!("[tern] device: cpu (CUDA device 0 unusable: {e:#})");
                        Ok(tern_model::Workspace::default())
                    }
                },
                Err(why) => {
                    eprintln!("[tern] device: cpu ({why})");
                    Ok(tern_model::Workspace::default())
                }
            },
        }
    }
}

/// Whether a CUDA driver and at least one GPU are present (the reason when not).
fn cuda_available() -> std::result::Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        if !tern_cuda::driver_present() {
            return Err("no CUDA driver found".into());
        }
        match tern_cuda::device_count() {
            Ok(0) => Err("no CUDA GPU found".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("CUDA: {e}")),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("this tern was built without CUDA support (rebuild with `cargo build --release --features cuda`)".into())
    }
}

/// Opens GPU `ordinal` (the caller has checked [`cuda_available`]).
#[cfg(feature = "cuda")]
fn cuda_workspace(model: &Model, ordinal: usize) -> Result<tern_model::Workspace> {
    let ws = tern_model::Workspace::cuda(model, ordinal).with_context(|| format!("CUDA device {ordinal}"))?;
    eprintln!("[tern] device: cuda:{ordinal} ({})", ws.device_name().unwrap_or("?"));
    Ok(ws)
}

#[cfg(not(feature = "cuda"))]
fn cuda_workspace(_model: &Model, ordinal: usize) -> Result<tern_model::Workspace> {
    let why = cuda_available().err().unwrap_or_default();
    anyhow::bail!("--device cuda:{ordinal}: {why}")
}

/// A thread pool with `threads` threads (0 = all cores).
pub fn pool(threads: usize) -> ThreadPool {
    ThreadPool::new(threads)
}

/// Sampling flags shared by `run` and `chat`.
#[derive(ClapArgs, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature (0 = greedy). Default: generation_config.json, else 0.8.
    #[arg(long = "temp")]
    pub temperature: Option<f32>,
    /// Top-k (0 = off). Default: generation_config.json, else 40.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Top-p (1 = off). Default: generation_config.json, else 0.95.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Min-p (0 = off). Default: generation_config.json, else 0.05.
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Repetition penalty (1 = off).
    #[arg(long = "repeat-penalty")]
    pub repetition_penalty: Option<f32>,
    /// RNG seed (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// Flags over generation_config.json defaults over tern's defaults.
    pub fn resolve(&self, model: &Model) -> Result<SamplingParams> {
        let g = &model.config.gen_defaults;
        let base = SamplingParams::default();
        let greedy_default = g.do_sample == Some(false) && g.temperature.is_none();
        let p = SamplingParams {
            temperature: self.temperature.or(g.temperature).unwrap_or(if greedy_default {
                0.0
            } else {
                base.temperature
            }),
            top_k: self.top_k.or(g.top_k).unwrap_or(base.top_k),
            top_p: self.top_p.or(g.top_p).unwrap_or(base.top_p),
            min_p: self.min_p.or(g.min_p).unwrap_or(base.min_p),
            repetition_penalty: self.repetition_penalty.or(g.repetition_penalty).unwrap_or(1.0),
            seed: self.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            }),
        };
        if let Err((field, why)) = p.validate() {
            anyhow::bail!("--{}: {why}", field.replace('_', "-"));
        }
        Ok(p)
    }
}

/// Parses `1,2,3` into token ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<u32>().with_context(|| format!("'{x}' is not a token id")))
        .collect()
}

#[allow(dead_code)]
pub fn path_arg(p: &str) -> PathBuf {
    PathBuf::from(p)
}

/// Stop ids: the model config's EOS ids (config.json + generation_config.json, or GGUF) merged with
/// the tokenizer's.
pub fn eos_ids(model: &Model, tok: &tern_text::Tokenizer) -> Vec<u32> {
    let mut eos = model.config.eos_ids.clone();
    for &e in tok.eos_ids() {
        if !eos.contains(&e) {
            eos.push(e);
        }
    }
    eos
}
