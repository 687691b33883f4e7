//! Fetching files into the cache: one file = HEAD metadata, a per-etag lock, a resumable GET into
//! `blobs/<etag>.incomplete`, size and digest verification, an atomic rename to `blobs/<etag>`, and the
//! snapshot symlink. Mirrors huggingface_hub's `_hf_hub_download_to_cache_dir` + `http_get`
//! (`file_download.py`): the blob is named by the etag of `X-Linked-Etag`/`ETag`; a `Range: bytes=N-`
//! resumes a partial file; a `200` answer to a ranged request restarts from zero; a transfer that breaks
//! mid-body is resumed (the retry budget is reset whenever bytes arrived). Beyond huggingface_hub, the
//! bytes are verified: sha256 for LFS files (their etag *is* the sha256) and the git blob sha1
//! (`sha1("blob <len>\0" + data)`) for regular files whose etag the API listed as their blob id.
//! A file that fails verification is deleted, never renamed into the cache.

use crate::api::{file_meta, FileMeta, RemoteFile};
use crate::cache::RepoCache;
use crate::error::{HubError, Result};
use crate::http::{header, Client, Ctx};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

const CHUNK: usize = 1 << 20;

/// How a file got into the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The snapshot link was already there.
    Cached,
    /// The blob was there (other revision, other tool); only the link was made.
    Linked,
    /// Bytes were downloaded (this many, resumed parts excluded).
    Downloaded(u64),
}

/// Shared state of one pull.
pub(crate) struct Fetcher<'a> {
    pub client: &'a Client,
    pub rc: &'a RepoCache,
    pub commit: &'a str,
    pub progress: Progress,
}

/// indicatif bars (hidden when disabled or when stderr is not a terminal).
pub(crate) struct Progress {
    multi: MultiProgress,
    style: ProgressStyle,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        let target = if enabled { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let style = ProgressStyle::with_template(
            "{msg:40!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Progress { multi: MultiProgress::with_draw_target(target), style }
    }

    fn bar(&self, name: &str, total: Option<u64>, pos: u64) -> ProgressBar {
        let pb = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
        pb.set_style(self.style.clone());
        pb.set_message(name.to_string());
        pb.set_position(pos);
        pb
    }
}

impl Fetcher<'_> {
    fn cached_desc(&self) -> String {
        self.rc.describe()
    }

    /// Fetches `jobs` with `threads` workers; on the first error no new file is started, and the error of
    /// the first failing file (in job order) is returned.
    pub fn fetch_all(&self, jobs: &[(String, Option<RemoteFile>)], threads: usize) -> Result<Vec<Fetched>> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Result<Fetched>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, 16).min(jobs.len().max(1)) {
                s.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, remote)) = jobs.get(i) else { break };
                    let r = self.fetch_one(path, remote.as_ref());
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut g) = results.lock() {
                        g[i] = Some(r);
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(jobs.len());
        for r in results.into_iter().flatten() {
            out.push(r?);
        }
        Ok(out)
    }

    /// Puts `snapshots/<commit>/<path>` in place.
    pub fn fetch_one(&self, path: &str, remote: Option<&RemoteFile>) -> Result<Fetched> {
        let rc = self.rc;
        if rc.has_file(self.commit, path) {
            return Ok(Fetched::Cached);
        }
        if let Some(etag) = remote.and_then(|r| r.expected_etag()) {
            if rc.blob_path(etag).is_file() {
                rc.link_pointer(self.commit, path, etag)?;
                return Ok(Fetched::Linked);
            }
        }
        let cached = || self.cached_desc();
        let ctx = Ctx { repo: &rc.repo_id, revision: self.commit, path: Some(path) };
        let meta = file_meta(self.client, ctx, &cached)?;
        if meta.commit != self.commit {
            return Err(HubError::BadResponse {
                url: meta.location,
                reason: format!("X-Repo-Commit {} differs from the requested commit {}", meta.commit, self.commit),
            });
        }
        if let Some(listed) = remote.and_then(|r| r.expected_etag()) {
            if listed != meta.etag {
                tracing::warn!("{path}: the API listed etag {listed} but the file has etag {}", meta.etag);
            }
        }
        let expected_size = meta.size.or(remote.and_then(|r| r.size));
        let blob = rc.blob_path(&meta.etag);
        let blobs_dir = rc.dir.join("blobs");
        fs::create_dir_all(&blobs_dir).map_err(|e| HubError::io(&blobs_dir, "create blobs folder", e))?;
        let lock_path = rc.lock_path(&meta.etag);
        if let Some(parent) = lock_path.parent() {
            fs::create_dir_all(parent).map_err(|e| HubError::io(parent, "create locks folder", e))?;
        }
        let lock = File::create(&lock_path).map_err(|e| HubError::io(&lock_path, "create lock", e))?;
        lock.lock().map_err(|e| HubError::io(&lock_path, "lock", e))?;
        let mut fetched = Fetched::Linked;
        if !blob.is_file() {
            let verify = Verify::for_file(&meta, remote, expected_size);
            let n = self.download_blob(path, &meta, expected_size, verify)?;
            fetched = Fetched::Downloaded(n);
        }
        rc.link_pointer(self.commit, path, &meta.etag)?;
        drop(lock);
        Ok(fetched)
    }

    /// Downloads (or resumes) `blobs/<etag>.incomplete`, verifies it and renames it to `blobs/<etag>`.
    /// Returns the number of bytes transferred by this call.
    fn download_blob(&self, path: &str, meta: &FileMeta, expected: Option<u64>, verify: Verify) -> Result<u64> {
        let inc_path = self.rc.incomplete_path(&meta.etag);
        let blob = self.rc.blob_path(&meta.etag);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&inc_path)
            .map_err(|e| HubError::io(&inc_path, "open partial download", e))?;
        let io = |op: &'static str| {
            let p = inc_path.clone();
            move |e: std::io::Error| HubError::io(p, op, e)
        };
        let mut have = f.metadata().map_err(io("stat partial download"))?.len();
        if expected.is_some_and(|x| have > x) {
            have = 0;
            f.set_len(0).map_err(io("truncate partial download"))?;
        }
        let mut hasher = Hasher::new(&verify, expected);
        if have > 0 {
            hash_prefix(&mut f, have, &mut hasher).map_err(io("read partial download"))?;
            tracing::info!("{path}: resuming at byte {have}");
        }
        f.seek(SeekFrom::Start(have)).map_err(io("seek partial download"))?;
        let bar = self.progress.bar(path, expected, have);
        let mut transferred = 0u64;
        let mut budget = self.client.opts.max_retries;
        let url = meta.location.clone();
        let cached = || self.cached_desc();
        let mut buf = vec![0u8; CHUNK];
        'attempts: loop {
            let done_already = expected.is_some_and(|x| have == x && x > 0);
            if done_already {
                break;
            }
            let r = self.client.send("GET", &url, (have > 0).then_some(have), &cached)?;
            let status = r.resp.status().as_u16();
            match status {
                206 => {
                    let cr = header(r.resp.headers(), "content-range").unwrap_or_default();
                    if content_range_start(&cr) != Some(have) {
                        tracing::warn!("{path}: Content-Range {cr:?} does not start at {have}; restarting");
                        restart(&mut f, &mut hasher, &mut have, &bar).map_err(io("truncate partial download"))?;
                        continue 'attempts;
                    }
                }
                200 => {
                    if have > 0 {
                        tracing::warn!("{path}: the server ignored the Range request; restarting from byte 0");
                        restart(&mut f, &mut hasher, &mut have, &bar).map_err(io("truncate partial download"))?;
                    }
                }
                416 if expected.is_none_or(|x| have >= x) => break,
                416 => {
                    restart(&mut f, &mut hasher, &mut have, &bar).map_err(io("truncate partial download"))?;
                    continue 'attempts;
                }
                _ => {
                    let ctx = Ctx { repo: &self.rc.repo_id, revision: self.commit, path: Some(path) };
                    return Err(self.client.status_error(r, ctx));
                }
            }
            let mut body = r.resp.into_body().into_reader();
            loop {
                match body.read(&mut buf) {
                    Ok(0) => break 'attempts,
                    Ok(n) => {
                        f.write_all(&buf[..n]).map_err(io("write partial download"))?;
                        hasher.update(&buf[..n]);
                        have += n as u64;
                        transferred += n as u64;
                        bar.inc(n as u64);
                        budget = self.client.opts.max_retries;
                        if expected.is_some_and(|x| have > x) {
                            break 'attempts;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if budget == 0 {
                            bar.abandon();
                            return Err(HubError::Network {
                                url,
                                reason: format!(
                                    "transfer of {path} broke at byte {have}: {e}; the partial file {} is kept and \
                                     the next pull resumes it",
                                    self.rc.incomplete_path(&meta.etag).display()
                                ),
                                cached: self.cached_desc(),
                            });
                        }
                        let attempt = self.client.opts.max_retries - budget + 1;
                        budget -= 1;
                        let wait = self.client.backoff(attempt);
                        tracing::warn!("{path}: transfer broke at byte {have} ({e}); resuming in {wait:?}");
                        std::thread::sleep(wait);
                        continue 'attempts;
                    }
                }
            }
        }
        bar.finish_and_clear();
        f.flush().map_err(io("flush partial download"))?;
        drop(f);
        let discard = |err: HubError| {
            let _ = fs::remove_file(self.rc.incomplete_path(&meta.etag));
            err
        };
        if let Some(x) = expected {
            if have != x {
                return Err(discard(HubError::SizeMismatch { file: path.into(), url, expected: x, found: have }));
            }
        }
        if let Some((algo, expected_hex, found)) = hasher.finish() {
            if found != expected_hex {
                return Err(discard(HubError::HashMismatch {
                    file: path.into(),
                    url,
                    algo,
                    expected: expected_hex,
                    found,
                }));
            }
        }
        let inc_path = self.rc.incomplete_path(&meta.etag);
        fs::rename(&inc_path, &blob).map_err(|e| HubError::io(&blob, "rename finished download", e))?;
        Ok(transferred)
    }
}

/// What the finished bytes must hash to.
pub(crate) enum Verify {
    Sha256(String),
    GitSha1(String),
    None,
}

impl Verify {
    fn for_file(meta: &FileMeta, remote: Option<&RemoteFile>, size: Option<u64>) -> Verify {
        let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex(&meta.etag, 64) {
            return Verify::Sha256(meta.etag.to_ascii_lowercase());
        }
        if let Some(lfs) = remote.and_then(|r| r.lfs_sha256.as_deref()) {
            if is_hex(lfs, 64) {
                return Verify::Sha256(lfs.to_ascii_lowercase());
            }
        }
        // A regular git file: its etag is the blob id. Verify only when the API listing agrees (two sources).
        let listed_blob = remote.and_then(|r| if r.lfs_sha256.is_none() { r.blob_id.as_deref() } else { None });
        if size.is_some() && is_hex(&meta.etag, 40) && listed_blob == Some(meta.etag.as_str()) {
            return Verify::GitSha1(meta.etag.to_ascii_lowercase());
        }
        Verify::None
    }
}

enum Hasher {
    Sha256(Sha256, String),
    GitSha1(Sha1, String, u64),
    None,
}

impl Hasher {
    fn new(v: &Verify, size: Option<u64>) -> Self {
        match v {
            Verify::Sha256(h) => Hasher::Sha256(Sha256::new(), h.clone()),
            Verify::GitSha1(h) => {
                let size = size.unwrap_or(0);
                let mut s = Sha1::new();
                s.update(format!("blob {size}\0").as_bytes());
                Hasher::GitSha1(s, h.clone(), size)
            }
            Verify::None => Hasher::None,
        }
    }

    fn reset(&mut self) {
        match self {
            Hasher::Sha256(s, _) => *s = Sha256::new(),
            Hasher::GitSha1(s, _, size) => {
                *s = Sha1::new();
                s.update(format!("blob {size}\0").as_bytes());
            }
            Hasher::None => {}
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(s, _) => s.update(data),
            Hasher::GitSha1(s, _, _) => s.update(data),
            Hasher::None => {}
        }
    }

    /// `(algorithm, expected, found)`.
    fn finish(self) -> Option<(&'static str, String, String)> {
        match self {
            Hasher::Sha256(s, e) => Some(("sha256", e, hex(&s.finalize()))),
            Hasher::GitSha1(s, e, _) => Some(("git blob sha1", e, hex(&s.finalize()))),
            Hasher::None => None,
        }
    }
}

fn hash_prefix(f: &mut File, len: u64, h: &mut Hasher) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = f.read(&mut buf[..(left.min(CHUNK as u64) as usize)])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "partial file shrank while hashing"));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

fn restart(f: &mut File, h: &mut Hasher, have: &mut u64, bar: &ProgressBar) -> std::io::Result<()> {
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    h.reset();
    *have = 0;
    bar.set_position(0);
    Ok(())
}

/// `bytes 100-199/200` → 100.
fn content_range_start(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| HubError::io(path, "open", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| HubError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin` = ce013625030ba8dba906f756967f9e9ca394464a
        let mut h = Hasher::new(&Verify::GitSha1("ce013625030ba8dba906f756967f9e9ca394464a".into()), Some(6));
        h.update(b"hello\n");
        let (_, e, f) = h.finish().unwrap();
        assert_eq!(e, f);
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
    }
}
