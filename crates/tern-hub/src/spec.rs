//! Model specs (`org/name`, `org/name@rev`, `org/name:file.gguf`, `org/name@rev:dir/file.gguf`) and the
//! validation of every name that becomes a path: repo ids follow huggingface_hub's `validate_repo_id`
//! (`utils/_validators.py`: 1–96 chars of `[A-Za-z0-9._-]`, optional `namespace/`, no `--`/`..`, no
//! leading/trailing `-`/`.`, no `.git` suffix); repo file paths follow `_validate_relative_filename`
//! (`_local_folder.py`: no absolute, drive or UNC paths, no `..` segment), made stricter (no empty or `.`
//! segment, no backslash, no control characters) since they are joined onto cache folders.

use crate::error::{HubError, Result};

/// The default branch.
pub const DEFAULT_REVISION: &str = "main";

/// A parsed model spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// `org/name` (or a legacy single-segment id such as `gpt2`).
    pub repo_id: String,
    /// Branch, tag or commit; `None` = `main`.
    pub revision: Option<String>,
    /// One file of the repo (`:file.gguf`).
    pub file: Option<String>,
}

impl RepoSpec {
    /// Parses `org/name[@rev][:path]`. Also accepts the prefixes `hf://`, `hf.co/`, `huggingface.co/`,
    /// `https://huggingface.co/` and `https://hf.co/`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| HubError::InvalidSpec { spec: spec.to_string(), reason: reason.to_string() };
        let mut s = spec.trim();
        for prefix in ["hf://", "https://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/"] {
            if let Some(rest) = s.strip_prefix(prefix) {
                s = rest;
                break;
            }
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (repo_rev, file) = match s.split_once(':') {
            Some((a, f)) => {
                if f.is_empty() {
                    return Err(bad("empty file name after ':'"));
                }
                validate_repo_path(f).map_err(|e| bad(&e.to_string()))?;
                (a, Some(f.to_string()))
            }
            None => (s, None),
        };
        let (repo_id, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) => {
                if rev.is_empty() {
                    return Err(bad("empty revision after '@'"));
                }
                validate_revision(rev).map_err(|e| bad(&e.to_string()))?;
                (r, Some(rev.to_string()))
            }
            None => (repo_rev, None),
        };
        validate_repo_id(repo_id).map_err(|reason| bad(&reason))?;
        Ok(RepoSpec { repo_id: repo_id.to_string(), revision, file })
    }

    /// The revision, defaulting to `main`.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }
}

impl std::fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.repo_id)?;
        if let Some(r) = &self.revision {
            write!(f, "@{r}")?;
        }
        if let Some(p) = &self.file {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// huggingface_hub's repo id rules; returns the reason on failure.
pub fn validate_repo_id(id: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2 {
        return Err(format!("repo id {id:?} must be 'name' or 'namespace/name'"));
    }
    for p in &parts {
        if p.is_empty() || p.len() > 96 {
            return Err(format!("repo id {id:?}: each part must have 1 to 96 characters"));
        }
        if !p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return Err(format!("repo id {id:?}: only letters, digits, '-', '_' and '.' are allowed"));
        }
        // `\b` at both ends of `[\w\-.]+` in the Python regex: first and last characters must be word chars.
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if !word(p.as_bytes()[0]) || !word(p.as_bytes()[p.len() - 1]) {
            return Err(format!("repo id {id:?}: parts cannot start or end with '-' or '.'"));
        }
    }
    if id.contains("--") || id.contains("..") {
        return Err(format!("repo id {id:?}: '--' and '..' are forbidden"));
    }
    if id.ends_with(".git") {
        return Err(format!("repo id {id:?} cannot end with '.git'"));
    }
    Ok(())
}

/// A repo-relative file path (`a/b.gguf`) that is safe to join onto a snapshot folder.
pub fn validate_repo_path(p: &str) -> Result<()> {
    let unsafe_path = |reason| HubError::UnsafePath { what: "repo file path", path: p.to_string(), reason };
    if p.is_empty() || p.len() > 4096 {
        return Err(unsafe_path("empty or longer than 4096 bytes"));
    }
    if p.contains('\\') || p.chars().any(char::is_control) {
        return Err(unsafe_path("contains a backslash or a control character"));
    }
    if p.starts_with('/') || p.as_bytes().get(1) == Some(&b':') {
        return Err(unsafe_path("absolute or drive path"));
    }
    if p.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(unsafe_path("empty, '.' or '..' path segment"));
    }
    Ok(())
}

/// A revision name usable as `refs/<revision>` (may contain `/`, e.g. `refs/pr/1`).
pub fn validate_revision(r: &str) -> Result<()> {
    let unsafe_rev = |reason| HubError::UnsafePath { what: "revision", path: r.to_string(), reason };
    if r.is_empty() || r.len() > 255 {
        return Err(unsafe_rev("empty or longer than 255 bytes"));
    }
    if r.contains('\\') || r.contains(':') || r.chars().any(|c| c.is_control() || c == ' ') {
        return Err(unsafe_rev("contains a backslash, ':', a space or a control character"));
    }
    if r.starts_with('/') || r.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(unsafe_rev("absolute, or with an empty, '.' or '..' segment"));
    }
    Ok(())
}

/// A 40-hex-digit git commit hash (huggingface_hub's `REGEX_COMMIT_HASH`).
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// An etag usable as a blob file name.
pub(crate) fn validate_etag(etag: &str, url: &str) -> Result<()> {
    let ok = !etag.is_empty()
        && etag.len() <= 128
        && !etag.starts_with('.')
        && etag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(HubError::BadResponse { url: url.to_string(), reason: format!("etag {etag:?} is not a safe blob name") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RepoSpec {
        RepoSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_all_forms() {
        assert_eq!(p("org/name"), RepoSpec { repo_id: "org/name".into(), revision: None, file: None });
        assert_eq!(p("org/name@v1.0").revision.as_deref(), Some("v1.0"));
        assert_eq!(p("org/name").revision(), "main");
        let s = p("org/name:model-Q4_K_M.gguf");
        assert_eq!((s.repo_id.as_str(), s.file.as_deref()), ("org/name", Some("model-Q4_K_M.gguf")));
        let s = p("org/Na.me_2@refs/pr/1:sub/dir/f.gguf");
        assert_eq!(s.revision.as_deref(), Some("refs/pr/1"));
        assert_eq!(s.file.as_deref(), Some("sub/dir/f.gguf"));
        assert_eq!(s.to_string(), "org/Na.me_2@refs/pr/1:sub/dir/f.gguf");
        assert_eq!(p("gpt2").repo_id, "gpt2");
        assert_eq!(p("https://huggingface.co/org/name").repo_id, "org/name");
        assert_eq!(p("hf.co/org/name@abc").revision.as_deref(), Some("abc"));
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "a/b/c",
            "org/",
            "/name",
            "org/na--me",
            "org/na..me",
            "-org/name",
            "org/name.",
            "org/name.git",
            "org/na me",
            "org/name@",
            "org/name:",
            "org/name:../../etc/passwd",
            "org/name:/abs.gguf",
            "org/name:a//b",
            "org/name:a\\b",
            "org/name@../x",
            "org/name@a b",
            "../../x",
        ] {
            assert!(RepoSpec::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("org/{}", "a".repeat(97));
        assert!(RepoSpec::parse(&long).is_err());
    }

    #[test]
    fn commit_hash() {
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_commit_hash("main"));
        assert!(validate_etag("abc123", "u").is_ok());
        assert!(validate_etag("../x", "u").is_err());
        assert!(validate_etag("a/b", "u").is_err());
    }
}
