//! Hub API calls: repo file listing and per-file metadata.
//!
//! - `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` → `sha` (the commit) and `siblings`
//!   (`rfilename`, `size`, `blobId`, `lfs.sha256`) — huggingface_hub's `HfApi.model_info(files_metadata=True)`.
//! - `HEAD {endpoint}/{repo}/resolve/{commit}/{path}` → `X-Repo-Commit`, `X-Linked-Etag` or `ETag`,
//!   `X-Linked-Size` or `Content-Length`, and for LFS files a redirect to the CDN — the same call and the
//!   same header precedence as huggingface_hub's `get_hf_file_metadata` (`file_download.py`).

use crate::error::{HubError, Result};
use crate::http::{encode, header, Client, Ctx};
use crate::spec::{is_commit_hash, validate_etag, validate_repo_path};

/// One file of a repo at a commit, as listed by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Repo-relative path (validated).
    pub path: String,
    /// Size in bytes, when listed.
    pub size: Option<u64>,
    /// Git blob id (sha1) — the ETag of a non-LFS file.
    pub blob_id: Option<String>,
    /// sha256 of an LFS file — its ETag.
    pub lfs_sha256: Option<String>,
}

impl RemoteFile {
    /// The ETag the Hub will give this file, when the listing tells it.
    pub fn expected_etag(&self) -> Option<&str> {
        self.lfs_sha256.as_deref().or(self.blob_id.as_deref())
    }
}

/// A repo revision resolved to a commit with its files.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

/// Fetches `sha` and `siblings` of `repo` at `revision`.
pub(crate) fn repo_info(client: &Client, repo: &str, revision: &str, cached: &dyn Fn() -> String) -> Result<RepoInfo> {
    let url = format!("{}/api/models/{}/revision/{}?blobs=true", client.opts.endpoint, repo, encode(revision, false));
    let v = client.get_json(&url, Ctx { repo, revision, path: None }, cached)?;
    parse_repo_info(&v, &url)
}

/// Parses a model-info JSON document.
pub fn parse_repo_info(v: &serde_json::Value, url: &str) -> Result<RepoInfo> {
    let bad = |reason: String| HubError::BadResponse { url: url.to_string(), reason };
    let commit = v.get("sha").and_then(|s| s.as_str()).ok_or_else(|| bad("model info has no \"sha\"".into()))?;
    if !is_commit_hash(commit) {
        return Err(bad(format!("\"sha\" {commit:?} is not a 40-hex commit hash")));
    }
    let siblings =
        v.get("siblings").and_then(|s| s.as_array()).ok_or_else(|| bad("model info has no \"siblings\"".into()))?;
    let mut files = Vec::with_capacity(siblings.len());
    for s in siblings {
        let path =
            s.get("rfilename").and_then(|p| p.as_str()).ok_or_else(|| bad("sibling without \"rfilename\"".into()))?;
        if let Err(e) = validate_repo_path(path) {
            // Never joined onto a folder; the rest of the repo stays usable.
            tracing::warn!("{url}: skipping a listed file: {e}");
            continue;
        }
        // Listed ids name blob files: keep only safe ones (the download re-checks the real etag).
        let id = |v: Option<&serde_json::Value>| {
            v.and_then(|x| x.as_str()).filter(|x| validate_etag(x, url).is_ok()).map(str::to_string)
        };
        let lfs_sha256 = id(s.get("lfs").and_then(|l| l.get("sha256")));
        let blob_id = id(s.get("blobId"));
        files.push(RemoteFile {
            path: path.to_string(),
            size: s.get("size").and_then(|x| x.as_u64()),
            blob_id,
            lfs_sha256,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(RepoInfo { commit: commit.to_string(), files })
}

/// What a `HEAD` on the resolve URL says about a file.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub commit: String,
    pub etag: String,
    pub size: Option<u64>,
    /// Where to GET the bytes (the CDN location, or the resolve URL itself).
    pub location: String,
    /// Whether `location` is on the Hub's origin (then it gets the token).
    pub on_hub: bool,
}

/// `{endpoint}/{repo}/resolve/{rev}/{path}`.
pub(crate) fn resolve_url(endpoint: &str, repo: &str, revision: &str, path: &str) -> String {
    format!("{endpoint}/{repo}/resolve/{}/{}", encode(revision, false), encode(path, true))
}

/// `HEAD` the resolve URL, following redirects that stay on the Hub, stopping at the CDN.
pub(crate) fn file_meta(client: &Client, ctx: Ctx<'_>, cached: &dyn Fn() -> String) -> Result<FileMeta> {
    let path = ctx.path.unwrap_or_default();
    let start = resolve_url(&client.opts.endpoint, ctx.repo, ctx.revision, path);
    let mut url = start.clone();
    for _ in 0..10 {
        let r = client.send("HEAD", &url, None, cached)?;
        let status = r.resp.status().as_u16();
        if !(200..400).contains(&status) {
            return Err(client.status_error(r, ctx));
        }
        let h = r.resp.headers();
        let is_redirect = (300..400).contains(&status);
        let location = if is_redirect { Some(client.redirect_target(&r)?) } else { None };
        if let Some(loc) = &location {
            if client.same_or_hub_origin(&url, loc) {
                url = loc.clone();
                continue;
            }
        }
        let commit = header(h, "x-repo-commit").ok_or_else(|| HubError::BadResponse {
            url: url.clone(),
            reason: "no X-Repo-Commit header: HF_ENDPOINT does not look like a Hugging Face Hub endpoint".into(),
        })?;
        if !is_commit_hash(&commit) {
            return Err(HubError::BadResponse {
                url,
                reason: format!("X-Repo-Commit {commit:?} is not a commit hash"),
            });
        }
        let etag = header(h, "x-linked-etag")
            .or_else(|| header(h, "etag"))
            .map(|e| normalize_etag(&e))
            .ok_or_else(|| HubError::BadResponse { url: url.clone(), reason: "no ETag header".into() })?;
        validate_etag(&etag, &url)?;
        let size = header(h, "x-linked-size")
            .or_else(|| if is_redirect { None } else { header(h, "content-length") })
            .and_then(|s| s.parse().ok());
        let on_hub = location.is_none();
        return Ok(FileMeta { commit, etag, size, location: location.unwrap_or(url), on_hub });
    }
    Err(HubError::BadResponse { url: start, reason: "more than 10 redirects".into() })
}

/// huggingface_hub's `_normalize_etag`: drop a `W/` prefix and the quotes.
pub fn normalize_etag(e: &str) -> String {
    e.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_info() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"id":"o/n","sha":"0123456789abcdef0123456789abcdef01234567","siblings":[
            {"rfilename":"config.json","size":10,"blobId":"aaaa"},
            {"rfilename":"m.gguf","size":99,"blobId":"bbbb","lfs":{"sha256":"cccc","size":99,"pointerSize":130}}]}"#,
        )
        .unwrap();
        let info = parse_repo_info(&v, "u").unwrap();
        assert_eq!(info.files.len(), 2);
        assert_eq!(info.files[1].expected_etag(), Some("cccc"));
        assert_eq!(info.files[0].expected_etag(), Some("aaaa"));
        let odd: serde_json::Value = serde_json::from_str(
            r#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"../x"},
            {"rfilename":"ok.gguf","blobId":"../../evil","lfs":{"sha256":"a/b"}}]}"#,
        )
        .unwrap();
        let info = parse_repo_info(&odd, "u").unwrap();
        assert_eq!(info.files.len(), 1, "unsafe paths are skipped");
        assert_eq!(info.files[0].expected_etag(), None, "unsafe ids are dropped");
        let bad: serde_json::Value = serde_json::from_str(r#"{"sha":"main","siblings":[]}"#).unwrap();
        assert!(parse_repo_info(&bad, "u").is_err());
    }

    #[test]
    fn etags() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
    }
}
