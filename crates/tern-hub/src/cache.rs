//! The on-disk cache, in huggingface_hub's layout (`file_download.py`: `repo_folder_name`,
//! `_cache_commit_hash_for_specific_revision`, `_create_symlink`, `_create_cachedir_tag`; and
//! `utils/_cache_manager.py` for what counts as cached):
//!
//! ```text
//! <cache>/CACHEDIR.TAG
//! <cache>/.locks/models--org--name/<etag>.lock       flock(2) while a blob is written
//! <cache>/models--org--name/blobs/<etag>              file content; etag = sha256 (LFS) or git blob sha1
//! <cache>/models--org--name/blobs/<etag>.incomplete   partial download, resumed with an HTTP Range request
//! <cache>/models--org--name/refs/<revision>           the commit hash (no newline) a branch/tag points to
//! <cache>/models--org--name/snapshots/<commit>/<path> relative symlink to ../../blobs/<etag>
//! ```
//!
//! huggingface_hub ≥ 1.0 downloads into a process-unique `<etag>.<8 hex>.incomplete` which it deletes on
//! failure; older versions (and tern) keep `<etag>.incomplete` under the lock and resume it. Both layouts
//! read the other's blobs, refs and snapshots.

use crate::error::{HubError, Result};
use crate::spec::{is_commit_hash, validate_repo_path, validate_revision};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `CACHEDIR.TAG` content, byte-identical to huggingface_hub's `CACHEDIR_TAG_CONTENT`.
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by huggingface_hub.\n\
# For information about cache directory tags, see:\n\
#\thttps://bford.info/cachedir/\n";

/// `models--org--name` for `org/name` (huggingface_hub's `repo_folder_name` with repo_type "model").
pub fn repo_folder_name(repo_id: &str) -> String {
    let mut s = String::from("models");
    for part in repo_id.split('/') {
        s.push_str("--");
        s.push_str(part);
    }
    s
}

/// Inverse of [`repo_folder_name`] for model repos: `models--org--name` → `org/name`.
pub fn repo_id_from_folder(name: &str) -> Option<String> {
    let rest = name.strip_prefix("models--")?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.replace("--", "/"))
}

/// Paths of one repo inside a cache root.
#[derive(Debug, Clone)]
pub struct RepoCache {
    /// The cache root.
    pub root: PathBuf,
    /// `org/name`.
    pub repo_id: String,
    /// `<root>/models--org--name`.
    pub dir: PathBuf,
}

impl RepoCache {
    /// The folders of `repo_id` (already validated) under `root`.
    pub fn new(root: &Path, repo_id: &str) -> Self {
        RepoCache { root: root.to_path_buf(), repo_id: repo_id.to_string(), dir: root.join(repo_folder_name(repo_id)) }
    }

    /// `blobs/<etag>`.
    pub fn blob_path(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    /// `blobs/<etag>.incomplete`.
    pub fn incomplete_path(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.incomplete"))
    }

    /// `<root>/.locks/models--org--name/<etag>.lock`.
    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.root.join(".locks").join(repo_folder_name(&self.repo_id)).join(format!("{etag}.lock"))
    }

    /// `snapshots/<commit>`.
    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// `snapshots/<commit>/<path>` (path validated).
    pub fn pointer_path(&self, commit: &str, path: &str) -> Result<PathBuf> {
        validate_repo_path(path)?;
        Ok(join_repo_path(&self.snapshot_dir(commit), path))
    }

    /// The commit a revision resolves to from the cache alone: a commit hash as-is, else `refs/<revision>`.
    pub fn commit_for(&self, revision: &str) -> Result<Option<String>> {
        if is_commit_hash(revision) {
            return Ok(Some(revision.to_string()));
        }
        validate_revision(revision)?;
        let ref_path = join_repo_path(&self.dir.join("refs"), revision);
        match fs::read_to_string(&ref_path) {
            Ok(s) => {
                let c = s.trim();
                if is_commit_hash(c) {
                    Ok(Some(c.to_string()))
                } else {
                    Err(HubError::BadFile {
                        path: ref_path,
                        reason: format!("expected a 40-hex commit hash, found {c:?}"),
                    })
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HubError::io(ref_path, "read ref", e)),
        }
    }

    /// Writes `refs/<revision>` = commit (atomically, only if it changed; nothing for a commit revision).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        validate_revision(revision)?;
        let ref_path = join_repo_path(&self.dir.join("refs"), revision);
        if fs::read_to_string(&ref_path).is_ok_and(|s| s == commit) {
            return Ok(());
        }
        let parent = ref_path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(|e| HubError::io(parent, "create refs folder", e))?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = ref_path.with_file_name(format!(
            "{}.{}-{}.tmp",
            ref_path.file_name().and_then(|n| n.to_str()).unwrap_or("ref"),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&tmp, commit).map_err(|e| HubError::io(&tmp, "write ref", e))?;
        fs::rename(&tmp, &ref_path).map_err(|e| HubError::io(&ref_path, "rename ref", e))
    }

    /// Creates the cache root's `CACHEDIR.TAG` if missing (best effort, like huggingface_hub).
    pub fn tag_cache_dir(&self) {
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::create_dir_all(&self.root);
            let _ = fs::write(tag, CACHEDIR_TAG);
        }
    }

    /// Whether `snapshots/<commit>/<path>` exists and resolves to an existing file.
    pub fn has_file(&self, commit: &str, path: &str) -> bool {
        self.pointer_path(commit, path).is_ok_and(|p| p.is_file())
    }

    /// Creates `snapshots/<commit>/<path>` → relative link to `blobs/<etag>` (replacing what was there).
    pub fn link_pointer(&self, commit: &str, path: &str, etag: &str) -> Result<PathBuf> {
        let pointer = self.pointer_path(commit, path)?;
        let parent = pointer.parent().unwrap_or(&self.dir).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| HubError::io(&parent, "create snapshot folder", e))?;
        // Relative target: one `..` per folder between the pointer and the repo folder.
        let depth = path.split('/').count() + 1; // snapshots/<commit>/<dirs...>
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        match fs::symlink_metadata(&pointer) {
            Ok(_) => fs::remove_file(&pointer).map_err(|e| HubError::io(&pointer, "replace snapshot link", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HubError::io(&pointer, "stat snapshot link", e)),
        }
        match symlink_or_copy(&target, &self.blob_path(etag), &pointer) {
            Ok(()) => Ok(pointer),
            // Another process or thread linked the same file in between: fine if it points at our blob.
            Err(_) if fs::read_link(&pointer).is_ok_and(|t| t == target) => Ok(pointer),
            Err(e) => Err(e),
        }
    }

    /// Every file (relative `/` path) under `snapshots/<commit>` whose link resolves, sorted.
    pub fn snapshot_files(&self, commit: &str) -> Result<Vec<String>> {
        let dir = self.snapshot_dir(commit);
        let mut out = Vec::new();
        if dir.is_dir() {
            walk_files(&dir, &dir, &mut out, 0)?;
        }
        out.sort();
        Ok(out)
    }

    /// `(commit, refs pointing at it)` for every snapshot folder, refs sorted, snapshots sorted by commit.
    pub fn revisions(&self) -> Result<Vec<(String, Vec<String>)>> {
        let mut refs: Vec<(String, String)> = Vec::new(); // (ref name, commit)
        let refs_dir = self.dir.join("refs");
        if refs_dir.is_dir() {
            let mut names = Vec::new();
            walk_files(&refs_dir, &refs_dir, &mut names, 0)?;
            for name in names {
                if name.ends_with(".tmp") {
                    continue;
                }
                let p = join_repo_path(&refs_dir, &name);
                if let Ok(c) = fs::read_to_string(&p) {
                    refs.push((name, c.trim().to_string()));
                }
            }
        }
        let mut out = Vec::new();
        let snaps = self.dir.join("snapshots");
        let rd = match fs::read_dir(&snaps) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(HubError::io(snaps, "list snapshots", e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| HubError::io(&snaps, "list snapshots", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().is_dir() {
                continue;
            }
            let mut r: Vec<String> = refs.iter().filter(|(_, c)| *c == name).map(|(n, _)| n.clone()).collect();
            r.sort();
            out.push((name, r));
        }
        out.sort();
        Ok(out)
    }

    /// A one-line summary of what the cache holds for this repo (for network/offline errors).
    pub fn describe(&self) -> String {
        let revs = match self.revisions() {
            Ok(r) if !r.is_empty() => r,
            _ => return format!("Nothing of {} is cached in {}.", self.repo_id, self.root.display()),
        };
        let parts: Vec<String> = revs
            .iter()
            .map(|(commit, refs)| {
                let files = self.snapshot_files(commit).unwrap_or_default();
                let shown: Vec<&str> = files.iter().take(6).map(String::as_str).collect();
                let more = if files.len() > 6 { format!(", … {} more", files.len() - 6) } else { String::new() };
                let refs = if refs.is_empty() { String::new() } else { format!(" ({})", refs.join(", ")) };
                format!("{}{refs}: [{}{more}]", short(commit), shown.join(", "))
            })
            .collect();
        format!("Cached for {} in {}: {}", self.repo_id, self.dir.display(), parts.join("; "))
    }
}

/// First 8 characters of a commit.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..8).unwrap_or(commit)
}

/// Joins a validated `/`-separated relative path onto a folder.
pub(crate) fn join_repo_path(base: &Path, rel: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for seg in rel.split('/') {
        p.push(seg);
    }
    p
}

fn walk_files(root: &Path, dir: &Path, out: &mut Vec<String>, depth: usize) -> Result<()> {
    if depth > 32 {
        return Ok(());
    }
    let rd = fs::read_dir(dir).map_err(|e| HubError::io(dir, "list folder", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| HubError::io(dir, "list folder", e))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| HubError::io(&path, "stat", e))?;
        if ft.is_dir() {
            walk_files(root, &path, out, depth + 1)?;
        } else if path.is_file() {
            // `is_file` follows the link: broken links (missing blobs) are not cached files.
            if let Ok(rel) = path.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        _ => None,
                    })
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn symlink_or_copy(target: &Path, _blob: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(|e| HubError::io(link, "create snapshot symlink", e))
}

#[cfg(not(unix))]
fn symlink_or_copy(_target: &Path, blob: &Path, link: &Path) -> Result<()> {
    // huggingface_hub also falls back to a copy where symlinks are unavailable.
    fs::copy(blob, link).map(|_| ()).map_err(|e| HubError::io(link, "copy blob into snapshot", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        assert_eq!(repo_folder_name("julien-c/EsperBERTo-small"), "models--julien-c--EsperBERTo-small");
        assert_eq!(repo_folder_name("gpt2"), "models--gpt2");
        assert_eq!(repo_id_from_folder("models--org--name").as_deref(), Some("org/name"));
        assert_eq!(repo_id_from_folder("datasets--org--name"), None);
    }

    #[test]
    fn refs_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let rc = RepoCache::new(dir.path(), "org/name");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(rc.commit_for("main").unwrap(), None);
        rc.write_ref("refs/pr/1", commit).unwrap();
        assert_eq!(rc.commit_for("refs/pr/1").unwrap().as_deref(), Some(commit));
        assert_eq!(
            fs::read_to_string(rc.dir.join("refs/refs/pr/1")).unwrap(),
            commit,
            "no newline, like huggingface_hub"
        );
        fs::create_dir_all(rc.dir.join("blobs")).unwrap();
        fs::write(rc.blob_path("e1"), b"x").unwrap();
        let p = rc.link_pointer(commit, "a/b/c.txt", "e1").unwrap();
        assert_eq!(fs::read_link(&p).unwrap(), PathBuf::from("../../../../blobs/e1"));
        assert_eq!(fs::read(&p).unwrap(), b"x");
        assert_eq!(rc.snapshot_files(commit).unwrap(), vec!["a/b/c.txt".to_string()]);
        assert_eq!(rc.revisions().unwrap(), vec![(commit.to_string(), vec!["refs/pr/1".to_string()])]);
        fs::write(rc.dir.join("refs/main"), "not a hash").unwrap();
        assert!(rc.commit_for("main").is_err());
    }
}
