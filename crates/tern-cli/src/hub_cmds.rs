//! `tern pull`, `tern ls`, `tern rm` — the Hugging Face Hub cache from the command line — and
//! [`HubArgs`]/[`resolve_model`], which let every model-taking command accept `org/name[@rev][:file]`
//! (pulled on demand into the huggingface_hub cache) as well as a local path. All logic lives in
//! `tern-hub`; this file parses flags and prints.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use tern_hub::{human_size, list_cached, HubOptions, RepoSpec};

/// Hub flags shared by every command that takes a model (`#[command(flatten)]` them).
#[derive(Args, Debug, Clone, Default)]
pub struct HubArgs {
    /// For a repo with several GGUF files: the quant type to pick (case-insensitive, e.g. Q4_K_M).
    #[arg(long, value_name = "TYPE")]
    pub quant: Option<String>,
    /// Use only the local cache, never the network (same as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
}

impl HubArgs {
    /// Client options: the environment (HF_HUB_CACHE/HF_HOME, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE)
    /// plus these flags.
    pub fn options(&self) -> HubOptions {
        let mut o = HubOptions::from_env();
        o.quant = self.quant.clone();
        o.offline |= self.offline;
        o.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        o
    }
}

/// A model argument as a local path: an existing file/folder as-is, else a Hub repo spec
/// (`org/name`, `org/name@rev`, `org/name:file.gguf`) resolved from the cache, pulled if needed.
pub fn resolve_model(model: &str, hub: &HubArgs) -> Result<PathBuf> {
    tern_hub::resolve(model, &hub.options()).with_context(|| format!("resolving model {model:?}"))
}

/// `tern pull`: download a model from the Hugging Face Hub into the local cache.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// `org/name`, `org/name@revision` or `org/name:path/in/repo.gguf`.
    pub repo: String,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Files downloaded in parallel.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
}

/// Runs `tern pull`; prints a summary on stderr and the local model path on stdout.
pub fn pull_main(a: PullArgs) -> Result<()> {
    let spec = RepoSpec::parse(&a.repo)?;
    let mut o = a.hub.options();
    o.threads = a.jobs.max(1);
    let p = tern_hub::pull(&spec, &o).with_context(|| format!("pulling {spec}"))?;
    let how = if p.from_cache {
        "from the cache".to_string()
    } else if p.downloaded.is_empty() {
        "already up to date".to_string()
    } else {
        format!("downloaded {} file(s), {}", p.downloaded.len(), human_size(p.bytes_downloaded))
    };
    eprintln!("{} @ {}: {} file(s), {how}", p.repo_id, p.commit, p.files.len());
    println!("{}", p.path.display());
    Ok(())
}

/// `tern ls`: list the models in the local Hugging Face cache.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also list every file of every revision.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Runs `tern ls`.
pub fn ls_main(a: LsArgs) -> Result<()> {
    let o = HubOptions::from_env();
    let repos = list_cached(&o.cache_dir).with_context(|| format!("scanning {}", o.cache_dir.display()))?;
    if a.json {
        let v: Vec<serde_json::Value> = repos
            .iter()
            .map(|r| {
                serde_json::json!({
                    "repo": r.repo_id,
                    "path": r.dir,
                    "size_on_disk": r.size_on_disk,
                    "revisions": r.revisions.iter().map(|v| serde_json::json!({
                        "commit": v.commit,
                        "refs": v.refs,
                        "path": v.snapshot,
                        "size_on_disk": v.size_on_disk,
                        "formats": v.formats,
                        "quants": v.quants,
                        "architecture": v.architecture,
                        "files": v.files.iter().map(|f| serde_json::json!({"path": f.path, "size": f.size})).collect::<Vec<_>>(),
                        "warnings": v.warnings,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if repos.is_empty() {
        eprintln!("no models in {}", o.cache_dir.display());
        return Ok(());
    }
    let mut rows = vec![["REPO", "REVISION", "SIZE", "FORMAT", "QUANT", "ARCH"].map(String::from).to_vec()];
    for r in &repos {
        for v in &r.revisions {
            let rev = if v.refs.is_empty() { v.commit.chars().take(8).collect() } else { v.refs.join(",") };
            rows.push(vec![
                r.repo_id.clone(),
                rev,
                human_size(v.size_on_disk),
                or_dash(v.formats.join(",")),
                or_dash(v.quants.join(",")),
                or_dash(v.architecture.clone().unwrap_or_default()),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    for r in &repos {
        for v in &r.revisions {
            for w in &v.warnings {
                eprintln!("warning: {}: {w}", r.repo_id);
            }
            if a.verbose {
                println!("\n{} @ {} ({})", r.repo_id, v.commit, v.snapshot.display());
                for f in &v.files {
                    println!("  {:>10}  {}", human_size(f.size), f.path);
                }
            }
        }
    }
    let total: u64 = repos.iter().map(|r| r.size_on_disk).sum();
    eprintln!("{} repo(s), {} in {}", repos.len(), human_size(total), o.cache_dir.display());
    Ok(())
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// `tern rm`: delete a cached model (`org/name`) or one revision of it (`org/name@rev`).
#[derive(Args, Debug)]
pub struct RmArgs {
    /// `org/name` or `org/name@revision`.
    pub repo: String,
}

/// Runs `tern rm`.
pub fn rm_main(a: RmArgs) -> Result<()> {
    let o = HubOptions::from_env();
    let r = tern_hub::remove(&a.repo, &o.cache_dir).with_context(|| format!("removing {}", a.repo))?;
    for p in &r.paths {
        eprintln!("removed {}", p.display());
    }
    eprintln!("freed {}", human_size(r.bytes_freed));
    Ok(())
}
