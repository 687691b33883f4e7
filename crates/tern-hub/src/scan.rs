//! `tern ls` and `tern rm`: what the cache holds, and removing it.
//!
//! Sizes follow huggingface_hub's `scan_cache_dir` (`utils/_cache_manager.py`): a revision's size is the
//! sum of the distinct blobs its snapshot links to, a repo's size the sum of the distinct blobs any of
//! its snapshots links to. Removing one revision deletes its snapshot, the refs pointing at it and the
//! blobs no other snapshot uses (like `DeleteCacheStrategy`); removing a repo deletes its folder and its
//! `.locks` folder, after checking the folder really lies inside the cache.

use crate::cache::{repo_folder_name, repo_id_from_folder, RepoCache};
use crate::error::{HubError, Result};
use crate::headers::{config_model_type, file_type_name, gguf_summary, safetensors_dtypes};
use crate::spec::RepoSpec;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One cached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// Repo-relative path.
    pub path: String,
    /// Size of its blob.
    pub size: u64,
}

/// One cached revision (snapshot).
#[derive(Debug, Clone)]
pub struct CachedRevision {
    pub commit: String,
    /// Refs (branches/tags) that point at this commit.
    pub refs: Vec<String>,
    pub snapshot: PathBuf,
    pub files: Vec<CachedFile>,
    /// Distinct blobs linked by this snapshot.
    pub size_on_disk: u64,
    /// `safetensors`, `gguf` (both when both are present).
    pub formats: Vec<String>,
    /// GGUF file types (`Q4_K_M`, …) and safetensors dtypes (`BF16`, …).
    pub quants: Vec<String>,
    /// `model_type` of config.json, else the GGUF `general.architecture`.
    pub architecture: Option<String>,
    /// Files whose header could not be read (reported, not fatal).
    pub warnings: Vec<String>,
}

/// One cached repo.
#[derive(Debug, Clone)]
pub struct CachedRepo {
    pub repo_id: String,
    pub dir: PathBuf,
    pub size_on_disk: u64,
    pub revisions: Vec<CachedRevision>,
}

/// Scans every `models--*` folder of the cache (a missing cache is empty).
pub fn list_cached(cache_dir: &Path) -> Result<Vec<CachedRepo>> {
    let rd = match fs::read_dir(cache_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HubError::io(cache_dir, "list cache", e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| HubError::io(cache_dir, "list cache", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(repo_id) = repo_id_from_folder(&name) else { continue };
        if !entry.path().is_dir() {
            continue;
        }
        out.push(scan_repo(cache_dir, &repo_id)?);
    }
    out.sort_by(|a, b| a.repo_id.cmp(&b.repo_id));
    Ok(out)
}

/// Scans one repo folder.
pub fn scan_repo(cache_dir: &Path, repo_id: &str) -> Result<CachedRepo> {
    let rc = RepoCache::new(cache_dir, repo_id);
    let mut revisions = Vec::new();
    let mut repo_blobs: HashMap<PathBuf, u64> = HashMap::new();
    for (commit, refs) in rc.revisions()? {
        let snapshot = rc.snapshot_dir(&commit);
        let mut files = Vec::new();
        let mut blobs: HashMap<PathBuf, u64> = HashMap::new();
        for path in rc.snapshot_files(&commit)? {
            let p = rc.pointer_path(&commit, &path)?;
            let blob = first_hop(&p);
            let size = fs::metadata(&p).map_err(|e| HubError::io(&p, "stat", e))?.len();
            blobs.insert(blob.clone(), size);
            repo_blobs.insert(blob, size);
            files.push(CachedFile { path, size });
        }
        let (formats, quants, architecture, warnings) = describe_snapshot(&snapshot, &files);
        revisions.push(CachedRevision {
            commit,
            refs,
            snapshot,
            size_on_disk: blobs.values().sum(),
            files,
            formats,
            quants,
            architecture,
            warnings,
        });
    }
    Ok(CachedRepo { repo_id: repo_id.to_string(), dir: rc.dir, size_on_disk: repo_blobs.values().sum(), revisions })
}

/// The path a snapshot entry links to (one hop, made absolute), or the entry itself.
fn first_hop(p: &Path) -> PathBuf {
    match fs::read_link(p) {
        Ok(t) => {
            let abs = p.parent().map(|d| d.join(&t)).unwrap_or(t);
            normalize(&abs)
        }
        Err(_) => p.to_path_buf(),
    }
}

/// Lexical `..` removal (like `os.path.abspath`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

type Described = (Vec<String>, Vec<String>, Option<String>, Vec<String>);

fn describe_snapshot(snapshot: &Path, files: &[CachedFile]) -> Described {
    let mut formats = BTreeSet::new();
    let mut quants: Vec<String> = Vec::new();
    let mut st_dtypes = BTreeSet::new();
    let mut arch = None;
    let mut gguf_arch = None;
    let mut warnings = Vec::new();
    let full = |rel: &str| crate::cache::join_repo_path(snapshot, rel);
    for f in files {
        let lower = f.path.to_ascii_lowercase();
        if lower.ends_with(".safetensors") {
            formats.insert("safetensors".to_string());
            match safetensors_dtypes(&full(&f.path)) {
                Ok(d) => st_dtypes.extend(d),
                Err(e) => warnings.push(e.to_string()),
            }
        } else if lower.ends_with(".gguf") {
            formats.insert("gguf".to_string());
            match gguf_summary(&full(&f.path)) {
                Ok(s) => {
                    if gguf_arch.is_none() {
                        gguf_arch = s.architecture;
                    }
                    let q = s
                        .file_type
                        .map(|ft| file_type_name(ft).map(str::to_string).unwrap_or_else(|| format!("ftype {ft}")))
                        .or_else(|| crate::select::quant_from_name(&f.path));
                    if let Some(q) = q {
                        if !quants.contains(&q) {
                            quants.push(q);
                        }
                    }
                }
                Err(e) => {
                    warnings.push(e.to_string());
                    if let Some(q) = crate::select::quant_from_name(&f.path) {
                        if !quants.contains(&q) {
                            quants.push(q);
                        }
                    }
                }
            }
        } else if f.path == "config.json" {
            match config_model_type(&full(&f.path)) {
                Ok(m) => arch = m,
                Err(e) => warnings.push(e.to_string()),
            }
        }
    }
    quants.extend(st_dtypes);
    (formats.into_iter().collect(), quants, arch.or(gguf_arch), warnings)
}

/// What `tern rm` removed.
#[derive(Debug, Clone)]
pub struct Removed {
    /// Folders and files deleted.
    pub paths: Vec<PathBuf>,
    /// Bytes of blobs (and partial downloads) freed.
    pub bytes_freed: u64,
}

/// Removes a cached repo (`org/name`) or one revision of it (`org/name@rev`).
pub fn remove(spec: &str, cache_dir: &Path) -> Result<Removed> {
    let spec = RepoSpec::parse(spec)?;
    if spec.file.is_some() {
        return Err(HubError::InvalidSpec {
            spec: spec.to_string(),
            reason: "rm takes org/name or org/name@revision, not a file".into(),
        });
    }
    let rc = RepoCache::new(cache_dir, &spec.repo_id);
    let not_cached = || HubError::NotCached { what: format!("repo {}", spec.repo_id), cache: cache_dir.to_path_buf() };
    let meta = match fs::symlink_metadata(&rc.dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_cached()),
        Err(e) => return Err(HubError::io(&rc.dir, "stat", e)),
    };
    let cache_real = cache_dir.canonicalize().map_err(|e| HubError::io(cache_dir, "resolve cache folder", e))?;
    let real = rc.dir.canonicalize().map_err(|e| HubError::io(&rc.dir, "resolve repo folder", e))?;
    let expected = cache_real.join(repo_folder_name(&spec.repo_id));
    if meta.file_type().is_symlink() || real != expected || !meta.is_dir() {
        return Err(HubError::OutsideCache { path: rc.dir.clone(), resolved: real, cache: cache_real });
    }
    match &spec.revision {
        None => {
            let bytes = dir_blob_bytes(&real.join("blobs"));
            fs::remove_dir_all(&real).map_err(|e| HubError::io(&real, "remove repo folder", e))?;
            let mut paths = vec![real];
            let locks = cache_real.join(".locks").join(repo_folder_name(&spec.repo_id));
            if fs::symlink_metadata(&locks).is_ok_and(|m| m.is_dir()) && fs::remove_dir_all(&locks).is_ok() {
                paths.push(locks);
            }
            Ok(Removed { paths, bytes_freed: bytes })
        }
        Some(rev) => remove_revision(&RepoCache::new(&cache_real, &spec.repo_id), rev),
    }
}

fn remove_revision(rc: &RepoCache, rev: &str) -> Result<Removed> {
    let commit = rc.commit_for(rev)?.ok_or_else(|| HubError::NotCached {
        what: format!("revision {rev:?} of {}", rc.repo_id),
        cache: rc.root.clone(),
    })?;
    let snap = rc.snapshot_dir(&commit);
    if !snap.is_dir() {
        return Err(HubError::NotCached {
            what: format!("snapshot {commit} of {}", rc.repo_id),
            cache: rc.root.clone(),
        });
    }
    let revisions = rc.revisions()?;
    let mut keep: HashSet<PathBuf> = HashSet::new();
    let mut drop_blobs: HashSet<PathBuf> = HashSet::new();
    for (c, _) in &revisions {
        for f in rc.snapshot_files(c)? {
            let blob = first_hop(&rc.pointer_path(c, &f)?);
            if *c == commit {
                drop_blobs.insert(blob);
            } else {
                keep.insert(blob);
            }
        }
    }
    let mut paths = Vec::new();
    let mut bytes = 0;
    fs::remove_dir_all(&snap).map_err(|e| HubError::io(&snap, "remove snapshot", e))?;
    paths.push(snap);
    for (c, refs) in &revisions {
        if *c == commit {
            for r in refs {
                let p = crate::cache::join_repo_path(&rc.dir.join("refs"), r);
                if fs::remove_file(&p).is_ok() {
                    paths.push(p);
                }
            }
        }
    }
    let blobs_dir = rc.dir.join("blobs");
    for b in drop_blobs.difference(&keep) {
        // Only blobs of this repo's own blobs folder are deleted.
        if b.parent() == Some(blobs_dir.as_path()) {
            if let Ok(m) = fs::symlink_metadata(b) {
                if fs::remove_file(b).is_ok() {
                    bytes += m.len();
                    paths.push(b.clone());
                }
            }
        }
    }
    if revisions.len() == 1 {
        bytes += dir_blob_bytes(&blobs_dir);
        fs::remove_dir_all(&rc.dir).map_err(|e| HubError::io(&rc.dir, "remove repo folder", e))?;
        paths.push(rc.dir.clone());
    }
    Ok(Removed { paths, bytes_freed: bytes })
}

fn dir_blob_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| fs::symlink_metadata(e.path()).ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Human-readable size (`1.5G`, `340.2M`, `12.0K`, `512B`), like `hf cache scan`.
pub fn human_size(n: u64) -> String {
    const U: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut i = 0;
    v /= 1000.0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1}{}", U[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1500), "1.5K");
        assert_eq!(human_size(2_500_000_000), "2.5G");
    }
}
