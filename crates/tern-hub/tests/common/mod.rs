//! A mock Hugging Face Hub for the tests: two std `TcpListener`s on 127.0.0.1 — the Hub origin and a
//! CDN origin on another port — with one thread per connection and `Connection: close` responses.
//!
//! Hub endpoints (as huggingface.co serves them, the subset huggingface_hub and tern use):
//! - `GET /api/models/{org}/{name}/revision/{rev}[?blobs=true]` → `{id, sha, siblings[...]}`;
//! - `GET /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive=...` → `[{type, oid, size, path, lfs}]`;
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{path}` → regular files: 200 with `ETag` (git blob sha1),
//!   `X-Repo-Commit`, `Content-Length`, Range support; LFS files: 302 to the CDN with `X-Repo-Commit`,
//!   `X-Linked-Etag` (sha256), `X-Linked-Size`, `ETag` of the pointer file;
//! - errors with `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`): 401
//!   for private repos without the right token, 403 for gated ones, 404 otherwise.
//!
//! CDN: `HEAD|GET /lfs/{sha256}?sig=...` with `Range: bytes=N-` → 206. Fault injection: N error statuses
//! on a path prefix, a connection dropped after K body bytes, corrupted bytes, Range ignored. Every
//! request is logged (method, path, Range, Authorization) for assertions.
#![allow(dead_code)]

use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// `git hash-object` of `data`.
pub fn git_oid(data: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex(&h.finalize())
}

/// A commit-like 40-hex id derived from a label.
pub fn commit_id(label: &str) -> String {
    git_oid(label.as_bytes())
}

#[derive(Clone)]
pub struct MockFile {
    pub path: String,
    pub data: Arc<Vec<u8>>,
    pub lfs: bool,
}

impl MockFile {
    pub fn regular(path: &str, data: impl Into<Vec<u8>>) -> Self {
        MockFile { path: path.into(), data: Arc::new(data.into()), lfs: false }
    }
    pub fn lfs(path: &str, data: impl Into<Vec<u8>>) -> Self {
        MockFile { path: path.into(), data: Arc::new(data.into()), lfs: true }
    }
    pub fn sha256(&self) -> String {
        sha256(&self.data)
    }
    fn pointer(&self) -> String {
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n", self.sha256(), self.data.len())
    }
    /// The git blob id (of the pointer file for LFS files).
    pub fn blob_id(&self) -> String {
        if self.lfs {
            git_oid(self.pointer().as_bytes())
        } else {
            git_oid(&self.data)
        }
    }
    /// The etag huggingface_hub names the blob after.
    pub fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            git_oid(&self.data)
        }
    }
}

#[derive(Clone)]
pub struct MockRepo {
    pub id: String,
    /// commit → files.
    pub commits: HashMap<String, Vec<MockFile>>,
    /// branch/tag → commit.
    pub refs: HashMap<String, String>,
    /// Private: only this bearer token gets in (401 otherwise).
    pub token: Option<String>,
    /// Gated: 403 GatedRepo whatever the token.
    pub gated: bool,
}

impl MockRepo {
    /// A repo whose `main` is one commit with `files`.
    pub fn new(id: &str, files: Vec<MockFile>) -> Self {
        let c = commit_id(&format!("{id}-1"));
        MockRepo {
            id: id.into(),
            commits: HashMap::from([(c.clone(), files)]),
            refs: HashMap::from([("main".to_string(), c)]),
            token: None,
            gated: false,
        }
    }
    pub fn main_commit(&self) -> String {
        self.refs["main"].clone()
    }
    /// Adds a commit and points `branch` at it.
    pub fn push(&mut self, branch: &str, label: &str, files: Vec<MockFile>) -> String {
        let c = commit_id(&format!("{}-{label}", self.id));
        self.commits.insert(c.clone(), files);
        self.refs.insert(branch.into(), c.clone());
        c
    }
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub cdn: bool,
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
    pub status: u16,
}

struct Fault {
    cdn: Option<bool>,
    prefix: String,
    status: u16,
    left: u32,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, MockRepo>,
    log: Vec<Logged>,
    faults: Vec<Fault>,
    /// sha256 → (bytes sent before the connection is dropped, times left).
    drops: HashMap<String, (usize, u32)>,
    /// sha256 → serve corrupted bytes.
    corrupt: HashMap<String, bool>,
    ignore_range: bool,
}

pub struct MockHub {
    pub hub: SocketAddr,
    pub cdn: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl MockHub {
    pub fn start(repos: Vec<MockRepo>) -> MockHub {
        let state = Arc::new(Mutex::new(State {
            repos: repos.into_iter().map(|r| (r.id.clone(), r)).collect(),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let hub_l = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn_l = TcpListener::bind("127.0.0.1:0").unwrap();
        let hub = hub_l.local_addr().unwrap();
        let cdn = cdn_l.local_addr().unwrap();
        for (l, is_cdn) in [(hub_l, false), (cdn_l, true)] {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = handle(conn, is_cdn, hub, cdn, &state);
                    });
                }
            });
        }
        MockHub { hub, cdn, state, stop }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
    /// Requests other than API calls (file metadata or bytes).
    pub fn data_requests(&self) -> Vec<Logged> {
        self.log().into_iter().filter(|l| l.cdn || l.path.contains("/resolve/")).collect()
    }
    /// The next `times` requests whose path starts with `prefix` answer `status`.
    pub fn fail(&self, cdn: Option<bool>, prefix: &str, status: u16, times: u32) {
        self.state.lock().unwrap().faults.push(Fault { cdn, prefix: prefix.into(), status, left: times });
    }
    /// The next `times` CDN transfers of the blob `sha` are cut after `after` bytes.
    pub fn drop_after(&self, sha: &str, after: usize, times: u32) {
        self.state.lock().unwrap().drops.insert(sha.into(), (after, times));
    }
    pub fn corrupt(&self, sha: &str, on: bool) {
        self.state.lock().unwrap().corrupt.insert(sha.into(), on);
    }
    pub fn ignore_range(&self, on: bool) {
        self.state.lock().unwrap().ignore_range = on;
    }
    pub fn update_repo(&self, f: impl FnOnce(&mut MockRepo), id: &str) {
        let mut s = self.state.lock().unwrap();
        f(s.repos.get_mut(id).unwrap());
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.hub, Duration::from_millis(200));
        let _ = TcpStream::connect_timeout(&self.cdn, Duration::from_millis(200));
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Arc<Vec<u8>>,
    range: Option<(usize, usize)>,
    /// Cut the connection after this many body bytes.
    cut: Option<usize>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Reply { status, headers: Vec::new(), body: Arc::new(Vec::new()), range: None, cut: None }
    }
    fn h(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn json(v: serde_json::Value) -> Self {
        let mut r = Reply::new(200).h("Content-Type", "application/json");
        r.body = Arc::new(serde_json::to_vec(&v).unwrap());
        r
    }
    fn error(status: u16, code: &str, msg: &str) -> Self {
        let mut r = Reply::new(status).h("X-Error-Message", msg);
        if !code.is_empty() {
            r = r.h("X-Error-Code", code);
        }
        r.body = Arc::new(format!("{{\"error\":\"{msg}\"}}").into_bytes());
        r
    }
}

fn status_text(s: u16) -> &'static str {
    match s {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn handle(
    conn: TcpStream,
    is_cdn: bool,
    hub: SocketAddr,
    cdn: SocketAddr,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 || l == "\r\n" || l == "\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let (raw_path, query) = target.split_once('?').unwrap_or((&target, ""));
    let reply = {
        let mut st = state.lock().unwrap();
        let fault = st
            .faults
            .iter_mut()
            .find(|f| f.left > 0 && f.cdn.is_none_or(|c| c == is_cdn) && pct_decode(raw_path).starts_with(&f.prefix));
        let reply = match fault {
            Some(f) => {
                f.left -= 1;
                Reply::error(f.status, "", "injected failure")
            }
            None if is_cdn => cdn_route(&st, raw_path, &headers),
            None => hub_route(&st, raw_path, query, &headers, cdn),
        };
        let mut reply = reply;
        if is_cdn && method == "GET" && (reply.status == 200 || reply.status == 206) {
            let sha = raw_path.rsplit('/').next().unwrap_or("").to_string();
            if let Some((after, left)) = st.drops.get_mut(&sha) {
                if *left > 0 {
                    *left -= 1;
                    reply.cut = Some(*after);
                }
            }
        }
        st.log.push(Logged {
            cdn: is_cdn,
            method: method.clone(),
            path: pct_decode(raw_path),
            range: headers.get("range").cloned(),
            auth: headers.get("authorization").cloned(),
            status: reply.status,
        });
        reply
    };
    let _ = hub;
    write_reply(conn, &method, reply)
}

fn write_reply(mut conn: TcpStream, method: &str, r: Reply) -> std::io::Result<()> {
    let (start, end) = r.range.unwrap_or((0, r.body.len()));
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, status_text(r.status));
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", end - start));
    conn.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let body = &r.body[start..end];
        match r.cut {
            Some(k) if k < body.len() => {
                conn.write_all(&body[..k])?;
                conn.flush()?;
                std::thread::sleep(Duration::from_millis(20));
                let _ = conn.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => conn.write_all(body)?,
        }
    }
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Write);
    // Drain what the client may still send so the close is clean.
    let mut sink = [0u8; 256];
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    while let Ok(n) = conn.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// Applies `Range: bytes=N-[M]` to a full-body reply.
fn ranged(mut r: Reply, headers: &HashMap<String, String>, ignore_range: bool) -> Reply {
    let len = r.body.len();
    r = r.h("Accept-Ranges", "bytes");
    let Some(range) = headers.get("range").filter(|_| !ignore_range) else { return r };
    let Some(spec) = range.strip_prefix("bytes=") else { return r };
    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
    let Ok(start) = a.parse::<usize>() else { return r };
    let end = b.parse::<usize>().map(|e| e + 1).unwrap_or(len).min(len);
    if start >= len {
        let mut e = Reply::new(416).h("Content-Range", format!("bytes */{len}"));
        e.headers.extend(r.headers.into_iter().filter(|(k, _)| k != "Accept-Ranges"));
        return e;
    }
    r.status = 206;
    r.range = Some((start, end));
    r.h("Content-Range", format!("bytes {start}-{}/{len}", end - 1))
}

fn cdn_route(st: &State, raw_path: &str, headers: &HashMap<String, String>) -> Reply {
    let sha = raw_path.strip_prefix("/lfs/").unwrap_or("");
    let file = st.repos.values().flat_map(|r| r.commits.values().flatten()).find(|f| f.lfs && f.sha256() == sha);
    let Some(file) = file else { return Reply::error(404, "", "no such object") };
    let mut data = (*file.data).clone();
    if st.corrupt.get(sha).copied().unwrap_or(false) && !data.is_empty() {
        let mid = data.len() / 2;
        data[mid] ^= 0x5a;
    }
    let mut r = Reply::new(200)
        .h("ETag", format!("\"{sha}\""))
        .h("Content-Type", "application/octet-stream")
        .h("Content-Disposition", format!("attachment; filename=\"{}\"", file.path.rsplit('/').next().unwrap_or("")));
    r.body = Arc::new(data);
    ranged(r, headers, st.ignore_range)
}

fn check_access(repo: &MockRepo, headers: &HashMap<String, String>) -> Option<Reply> {
    if repo.gated {
        return Some(Reply::error(
            403,
            "GatedRepo",
            "Access to model is restricted and you are not in the authorized list.",
        ));
    }
    if let Some(tok) = &repo.token {
        if headers.get("authorization") != Some(&format!("Bearer {tok}")) {
            return Some(Reply::error(401, "RepoNotFound", "Invalid username or password."));
        }
    }
    None
}

fn hub_route(st: &State, raw_path: &str, query: &str, headers: &HashMap<String, String>, cdn: SocketAddr) -> Reply {
    let segs: Vec<String> = raw_path.trim_start_matches('/').split('/').map(pct_decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["api", "models", org, name, kind @ ("revision" | "tree"), rest @ ..] if !rest.is_empty() => {
            let id = format!("{org}/{name}");
            let Some(repo) = st.repos.get(&id) else {
                return Reply::error(404, "RepoNotFound", "Repository not found");
            };
            if let Some(e) = check_access(repo, headers) {
                return e;
            }
            let (rev, sub) = (rest[0], rest[1..].join("/"));
            let Some((commit, files)) = lookup(repo, rev) else {
                return Reply::error(404, "RevisionNotFound", "Invalid rev id");
            };
            if *kind == "revision" {
                let blobs = query.split('&').any(|kv| kv == "blobs=true" || kv == "blobs=True");
                let siblings: Vec<serde_json::Value> = files
                    .iter()
                    .map(|f| {
                        if blobs {
                            let mut v = serde_json::json!({"rfilename": f.path, "size": f.data.len(), "blobId": f.blob_id()});
                            if f.lfs {
                                v["lfs"] = serde_json::json!({"sha256": f.sha256(), "size": f.data.len(), "pointerSize": f.pointer().len()});
                            }
                            v
                        } else {
                            serde_json::json!({"rfilename": f.path})
                        }
                    })
                    .collect();
                return Reply::json(serde_json::json!({
                    "_id": "0", "id": id, "modelId": id, "private": repo.token.is_some(),
                    "gated": repo.gated, "sha": commit, "siblings": siblings, "tags": [], "downloads": 0, "likes": 0
                }));
            }
            let recursive = query.split('&').any(|kv| kv.eq_ignore_ascii_case("recursive=true"));
            let prefix = if sub.is_empty() { String::new() } else { format!("{sub}/") };
            let mut entries = Vec::new();
            let mut dirs: Vec<String> = Vec::new();
            for f in files {
                let Some(rel) = f.path.strip_prefix(&prefix) else { continue };
                let comps: Vec<&str> = rel.split('/').collect();
                for i in 1..comps.len() {
                    let d = format!("{prefix}{}", comps[..i].join("/"));
                    if (recursive || i == 1) && !dirs.contains(&d) {
                        dirs.push(d.clone());
                        entries.push(serde_json::json!({"type": "directory", "oid": git_oid(d.as_bytes()), "size": 0, "path": d}));
                    }
                }
                if comps.len() > 1 && !recursive {
                    continue;
                }
                let mut v =
                    serde_json::json!({"type": "file", "oid": f.blob_id(), "size": f.data.len(), "path": f.path});
                if f.lfs {
                    v["lfs"] =
                        serde_json::json!({"oid": f.sha256(), "size": f.data.len(), "pointerSize": f.pointer().len()});
                }
                entries.push(v);
            }
            Reply::json(serde_json::Value::Array(entries))
        }
        [org, name, "resolve", rev, path @ ..] if !path.is_empty() => {
            let id = format!("{org}/{name}");
            let Some(repo) = st.repos.get(&id) else {
                return Reply::error(404, "RepoNotFound", "Repository not found");
            };
            if let Some(e) = check_access(repo, headers) {
                return e;
            }
            let Some((commit, files)) = lookup(repo, rev) else {
                return Reply::error(404, "RevisionNotFound", "Invalid rev id");
            };
            let path = path.join("/");
            let Some(f) = files.iter().find(|f| f.path == path) else {
                return Reply::error(404, "EntryNotFound", "Entry not found").h("X-Repo-Commit", commit);
            };
            if f.lfs {
                let sha = f.sha256();
                return Reply::new(302)
                    .h("Location", format!("http://{cdn}/lfs/{sha}?sig=mock&expires=9999999999"))
                    .h("X-Repo-Commit", commit)
                    .h("X-Linked-Etag", format!("\"{sha}\""))
                    .h("X-Linked-Size", f.data.len().to_string())
                    .h("ETag", format!("\"{}\"", f.blob_id()));
            }
            let mut r = Reply::new(200)
                .h("ETag", format!("\"{}\"", f.blob_id()))
                .h("X-Repo-Commit", commit)
                .h("Content-Type", "application/octet-stream");
            r.body = f.data.clone();
            ranged(r, headers, st.ignore_range)
        }
        _ => Reply::error(404, "", "Not found"),
    }
}

fn lookup<'a>(repo: &'a MockRepo, rev: &str) -> Option<(String, &'a Vec<MockFile>)> {
    let commit = repo.refs.get(rev).cloned().unwrap_or_else(|| rev.to_string());
    repo.commits.get(&commit).map(|f| (commit, f))
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A valid safetensors file holding one `U8` tensor of `n` noise bytes.
pub fn safetensors_u8(name: &str, n: usize, seed: u64) -> Vec<u8> {
    let mut header = format!("{{\"{name}\":{{\"dtype\":\"U8\",\"shape\":[{n}],\"data_offsets\":[0,{n}]}}}}");
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(noise(n, seed));
    out
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// Test options: mock endpoint, temp cache, no progress bars, fast retries, short timeouts.
pub fn opts(hub: &MockHub, cache: &Path) -> tern_hub::HubOptions {
    let mut o = tern_hub::HubOptions::new(hub.endpoint(), cache);
    o.progress = false;
    o.retry_base_delay = Duration::from_millis(10);
    o.max_retries = 3;
    o.connect_timeout = Duration::from_secs(2);
    o.read_timeout = Duration::from_secs(3);
    o
}

/// Every file (relative path) under a folder, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
