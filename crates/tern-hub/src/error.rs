//! The one error type of this crate.
//!
//! Every variant names the repo, file, URL or path involved and, where it applies, what was expected
//! versus what was found, so the message alone says what went wrong and what to do next (set a token,
//! accept a gated repo's conditions, pick a quant, go online). The HTTP status classification follows
//! huggingface_hub's `hf_raise_for_status` (`utils/_http.py`): the Hub's `X-Error-Code` header
//! (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`) decides the variant.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// Errors from parsing repo specs, talking to the Hub, and reading or writing the cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A model spec (`org/name[@rev][:file]`) that cannot be parsed or names an invalid repo id.
    #[error("invalid model spec {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },

    /// 401: the repo is private or gated and no (valid) token was sent, or it does not exist.
    #[error(
        "{url}: 401 Unauthorized for repo {repo}: it is private or gated (or does not exist), and {token_state}. \
         Create a read token at {endpoint}/settings/tokens and `export HF_TOKEN=hf_...`, or save it to {token_path} \
         (`hf auth login` does that)"
    )]
    Unauthorized { repo: String, url: String, endpoint: String, token_state: String, token_path: String },

    /// 403 / `X-Error-Code: GatedRepo`: the token's account has not been granted access.
    #[error(
        "{url}: {status} access to gated repo {repo} denied ({token_state}). Accept the conditions at {endpoint}/{repo} \
         with your Hugging Face account, then use a token of that account: `export HF_TOKEN=hf_...` (tokens: \
         {endpoint}/settings/tokens) or save it to {token_path}"
    )]
    Gated { repo: String, url: String, status: u16, endpoint: String, token_state: String, token_path: String },

    /// 404 on the repo itself.
    #[error("{url}: 404 repository {repo} not found on {endpoint} (check the spelling; private repos need HF_TOKEN)")]
    RepoNotFound { repo: String, url: String, endpoint: String },

    /// 404 on a revision (branch, tag, commit) of an existing repo.
    #[error("{url}: 404 revision {revision:?} not found in repo {repo}")]
    RevisionNotFound { repo: String, revision: String, url: String },

    /// A file that is not in the repo at that revision.
    #[error("file {path:?} not found in repo {repo} at revision {revision}{available}")]
    EntryNotFound { repo: String, revision: String, path: String, available: String },

    /// Any other HTTP error status (after retries for 429/5xx).
    #[error("{url}: HTTP {status}{attempts}{detail}")]
    Http { url: String, status: u16, attempts: String, detail: String },

    /// The Hub could not be reached (DNS, refused connection, timeout) and the cache cannot serve the request.
    #[error("cannot reach {url}: {reason}. {cached}")]
    Network { url: String, reason: String, cached: String },

    /// Offline mode (`HF_HUB_OFFLINE=1` / `--offline`) and the cache cannot serve the request.
    #[error("offline mode (HF_HUB_OFFLINE=1 or --offline): {what}. {cached}")]
    Offline { what: String, cached: String },

    /// `--quant` matched no GGUF file of the repo.
    #[error("no GGUF file of {repo} matches quant {quant:?}; available: {available}")]
    NoMatchingQuant { repo: String, quant: String, available: String },

    /// `--quant` (or no choice at all) leaves several GGUF files.
    #[error("{repo}: {why}; choose one with --quant NAME or {repo}:FILE.gguf. Candidates: {candidates}")]
    AmbiguousGguf { repo: String, why: String, candidates: String },

    /// The repo has neither safetensors weights nor GGUF files.
    #[error("repo {repo} at {revision} has no model weights (no *.safetensors, no *.gguf); files: {files}")]
    NothingToLoad { repo: String, revision: String, files: String },

    /// A cached snapshot lacks files the model needs (an interrupted download) and the Hub is not used.
    #[error("cached snapshot {snapshot} of {repo} is incomplete: missing {missing}")]
    IncompleteSnapshot { repo: String, snapshot: PathBuf, missing: String },

    /// The downloaded bytes do not hash to the expected digest (LFS sha256 or git blob sha1).
    #[error("{file} ({url}): {algo} mismatch: expected {expected}, found {found}; the download was discarded")]
    HashMismatch { file: String, url: String, algo: &'static str, expected: String, found: String },

    /// The downloaded length differs from the advertised size.
    #[error("{file} ({url}): size mismatch: expected {expected} bytes, found {found}; the download was discarded")]
    SizeMismatch { file: String, url: String, expected: u64, found: u64 },

    /// A Hub response lacks a required header or has malformed content.
    #[error("{url}: unexpected response: {reason}")]
    BadResponse { url: String, reason: String },

    /// A path from a spec, the Hub or a cache file that would escape its folder.
    #[error("refusing unsafe {what} {path:?}: {reason}")]
    UnsafePath { what: &'static str, path: String, reason: &'static str },

    /// `tern rm` on a folder that does not resolve inside the cache.
    #[error("refusing to remove {path}: it resolves to {resolved}, outside the cache {cache}")]
    OutsideCache { path: PathBuf, resolved: PathBuf, cache: PathBuf },

    /// `tern rm` on a repo (or revision) that is not cached.
    #[error("{what} is not in the cache {cache}")]
    NotCached { what: String, cache: PathBuf },

    /// A model file header (GGUF, safetensors, config.json) that cannot be parsed.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },

    /// An operating-system error on a cache path.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    /// Shorthand for [`HubError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        HubError::Io { path: path.into(), op, source }
    }
}
