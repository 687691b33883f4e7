//! Pulling a model: resolve the revision to a commit through the Hub API, choose the files
//! ([`crate::select`]), fetch what the snapshot lacks ([`crate::download`]), and return a local path.
//! Offline (or when the Hub cannot be reached) the same choice is made from the cached snapshot that
//! `refs/<revision>` points to — huggingface_hub's `snapshot_download` fallback (`_snapshot_download.py`):
//! any API failure except "revision not found" falls back to the cache, and the original error is
//! reported only when the cache cannot serve the request.

use crate::api::{repo_info, RemoteFile};
use crate::cache::{short, RepoCache};
use crate::download::{Fetched, Fetcher, Progress};
use crate::error::{HubError, Result};
use crate::http::Client;
use crate::options::HubOptions;
use crate::select::{select, shards_from_index, Target, ST_INDEX};
use crate::spec::{is_commit_hash, RepoSpec};
use std::path::{Path, PathBuf};

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// `org/name`.
    pub repo_id: String,
    /// The commit the revision resolved to.
    pub commit: String,
    /// `snapshots/<commit>`.
    pub snapshot: PathBuf,
    /// What a model loader takes: the snapshot folder, or the GGUF file (first part of a split GGUF).
    pub path: PathBuf,
    /// Repo-relative paths of the files the model uses.
    pub files: Vec<String>,
    /// Files whose bytes were transferred by this pull.
    pub downloaded: Vec<String>,
    /// Bytes transferred by this pull.
    pub bytes_downloaded: u64,
    /// Served from the cache without contacting the Hub (offline, commit revision, or Hub unreachable).
    pub from_cache: bool,
}

/// Returns a local model path for `spec`: an existing file or folder as-is, otherwise a repo spec
/// (`org/name[@rev][:file]`) pulled into the cache on demand.
pub fn resolve(spec: &str, opts: &HubOptions) -> Result<PathBuf> {
    if Path::new(spec).exists() {
        return Ok(PathBuf::from(spec));
    }
    let parsed = RepoSpec::parse(spec).map_err(|e| match e {
        HubError::InvalidSpec { spec, reason } => {
            HubError::InvalidSpec { reason: format!("not an existing local path, and not a repo spec: {reason}"), spec }
        }
        other => other,
    })?;
    Ok(pull(&parsed, opts)?.path)
}

/// Makes sure the files `spec` needs are in the cache and returns where they are.
pub fn pull(spec: &RepoSpec, opts: &HubOptions) -> Result<Pulled> {
    if spec.file.is_some() && opts.quant.is_some() {
        return Err(HubError::InvalidSpec {
            spec: spec.to_string(),
            reason: "give either :FILE or --quant, not both".into(),
        });
    }
    let rc = RepoCache::new(&opts.cache_dir, &spec.repo_id);
    let revision = spec.revision();
    if opts.offline {
        return from_cache(spec, opts, &rc).map_err(|e| offline_error(e, spec, &rc));
    }
    if is_commit_hash(revision) {
        // An immutable revision that is fully cached needs no network at all.
        if let Ok(p) = from_cache(spec, opts, &rc) {
            return Ok(p);
        }
    }
    let client = Client::new(opts);
    let cached = || rc.describe();
    let info = match repo_info(&client, &spec.repo_id, revision, &cached) {
        Ok(i) => i,
        Err(e @ HubError::RevisionNotFound { .. }) => return Err(e),
        Err(e) => {
            return match from_cache(spec, opts, &rc) {
                Ok(p) => {
                    tracing::warn!("{e}; using the cached snapshot {}", p.snapshot.display());
                    Ok(p)
                }
                Err(_) => Err(e),
            };
        }
    };
    let names: Vec<String> = info.files.iter().map(|f| f.path.clone()).collect();
    let sel = select(&spec.repo_id, revision, &names, spec.file.as_deref(), opts.quant.as_deref())?;
    rc.tag_cache_dir();
    rc.write_ref(revision, &info.commit)?;
    let remote = |p: &str| info.files.iter().find(|f| f.path == p).cloned();
    let fetcher = Fetcher { client: &client, rc: &rc, commit: &info.commit, progress: Progress::new(opts.progress) };
    let mut files = sel.files.clone();
    let mut jobs: Vec<(String, Option<RemoteFile>)> = files.iter().map(|p| (p.clone(), remote(p))).collect();
    let mut outcomes = fetcher.fetch_all(&jobs, opts.threads)?;
    if sel.needs_index {
        let idx = rc.pointer_path(&info.commit, ST_INDEX)?;
        let bytes = std::fs::read(&idx).map_err(|e| HubError::io(&idx, "read", e))?;
        let shards = shards_from_index(&bytes, &idx)?;
        if let Some(missing) = shards.iter().find(|s| !names.contains(s)) {
            return Err(HubError::EntryNotFound {
                repo: spec.repo_id.clone(),
                revision: revision.to_string(),
                path: missing.clone(),
                available: format!("; {ST_INDEX} names it but the repo does not have it"),
            });
        }
        let shard_jobs: Vec<(String, Option<RemoteFile>)> = shards.iter().map(|p| (p.clone(), remote(p))).collect();
        outcomes.extend(fetcher.fetch_all(&shard_jobs, opts.threads)?);
        files.extend(shards);
        jobs.extend(shard_jobs);
    }
    let mut downloaded = Vec::new();
    let mut bytes = 0;
    for ((path, _), o) in jobs.iter().zip(&outcomes) {
        if let Fetched::Downloaded(n) = o {
            downloaded.push(path.clone());
            bytes += n;
        }
    }
    let snapshot = rc.snapshot_dir(&info.commit);
    let path = target_path(&rc, &info.commit, &sel.target)?;
    Ok(Pulled {
        repo_id: spec.repo_id.clone(),
        commit: info.commit,
        snapshot,
        path,
        files,
        downloaded,
        bytes_downloaded: bytes,
        from_cache: false,
    })
}

/// Serves `spec` from the cache alone.
fn from_cache(spec: &RepoSpec, opts: &HubOptions, rc: &RepoCache) -> Result<Pulled> {
    let revision = spec.revision();
    let commit = rc.commit_for(revision)?.ok_or_else(|| HubError::NotCached {
        what: format!("revision {revision:?} of {}", spec.repo_id),
        cache: rc.root.clone(),
    })?;
    let snapshot = rc.snapshot_dir(&commit);
    if !snapshot.is_dir() {
        return Err(HubError::NotCached {
            what: format!("snapshot {} of {}", short(&commit), spec.repo_id),
            cache: rc.root.clone(),
        });
    }
    let names = rc.snapshot_files(&commit)?;
    let sel = select(&spec.repo_id, revision, &names, spec.file.as_deref(), opts.quant.as_deref())?;
    let mut files = sel.files.clone();
    if sel.needs_index {
        let idx = rc.pointer_path(&commit, ST_INDEX)?;
        let bytes = std::fs::read(&idx).map_err(|e| HubError::io(&idx, "read", e))?;
        let shards = shards_from_index(&bytes, &idx)?;
        let missing: Vec<&String> = shards.iter().filter(|s| !names.contains(s)).collect();
        if !missing.is_empty() {
            return Err(HubError::IncompleteSnapshot {
                repo: spec.repo_id.clone(),
                snapshot,
                missing: missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
        files.extend(shards);
    }
    let path = target_path(rc, &commit, &sel.target)?;
    Ok(Pulled {
        repo_id: spec.repo_id.clone(),
        commit,
        snapshot,
        path,
        files,
        downloaded: Vec::new(),
        bytes_downloaded: 0,
        from_cache: true,
    })
}

fn target_path(rc: &RepoCache, commit: &str, t: &Target) -> Result<PathBuf> {
    match t {
        Target::Dir => Ok(rc.snapshot_dir(commit)),
        Target::File(p) => rc.pointer_path(commit, p),
    }
}

/// Rewords a cache miss in offline mode.
fn offline_error(e: HubError, spec: &RepoSpec, rc: &RepoCache) -> HubError {
    match e {
        HubError::NotCached { what, .. } => {
            HubError::Offline { what: format!("{what} is not cached"), cached: rc.describe() }
        }
        HubError::IncompleteSnapshot { repo, snapshot, missing } => HubError::Offline {
            what: format!("the cached snapshot {} of {repo} lacks {missing}", snapshot.display()),
            cached: rc.describe(),
        },
        HubError::EntryNotFound { path, .. } => {
            HubError::Offline { what: format!("{path} of {} is not cached", spec.repo_id), cached: rc.describe() }
        }
        e @ (HubError::NoMatchingQuant { .. } | HubError::AmbiguousGguf { .. } | HubError::NothingToLoad { .. }) => {
            HubError::Offline { what: format!("among the cached files: {e}"), cached: rc.describe() }
        }
        other => other,
    }
}
