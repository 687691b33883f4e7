//! Client settings and their environment variables, resolved exactly as huggingface_hub's
//! `constants.py` and `utils/_auth.py` do:
//!
//! - cache: `HF_HUB_CACHE`, else the legacy `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, where
//!   `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`;
//! - endpoint: `HF_ENDPOINT` (trailing `/` removed), else `https://huggingface.co`;
//! - token: `HF_TOKEN`, else the legacy `HUGGING_FACE_HUB_TOKEN`, else the file `HF_TOKEN_PATH`
//!   (default `$HF_HOME/token`), whitespace and newlines stripped, empty = none;
//! - offline: `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) in {1, ON, YES, TRUE}, case-insensitive.

use std::path::PathBuf;
use std::time::Duration;

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Everything the hub client needs; build with [`HubOptions::from_env`] and override fields.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Hub base URL, without trailing slash.
    pub endpoint: String,
    /// The huggingface_hub cache root (the folder holding `models--org--name`).
    pub cache_dir: PathBuf,
    /// Bearer token sent to the Hub (never to a CDN on another origin).
    pub token: Option<String>,
    /// Where a token would be read from (shown in auth error messages).
    pub token_path: PathBuf,
    /// Resolve purely from the cache, no network at all.
    pub offline: bool,
    /// Pick the GGUF whose name contains this quant type (e.g. `Q4_K_M`).
    pub quant: Option<String>,
    /// Files downloaded in parallel.
    pub threads: usize,
    /// Draw indicatif progress bars on stderr.
    pub progress: bool,
    /// Retries after a 429/5xx status or a network error, per request (a resumed download that made
    /// progress starts counting again).
    pub max_retries: u32,
    /// First retry delay; doubled per retry, capped at 8 s (a `Retry-After` header is honoured up to 30 s).
    pub retry_base_delay: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each socket read (a stalled transfer fails after this and is resumed).
    pub read_timeout: Duration,
}

impl HubOptions {
    /// Options from the process environment (see the module docs).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok(), home_dir())
    }

    /// Options from an arbitrary variable lookup and home directory (testable, no global state).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Self {
        // Path-valued variables get `~` and `$VAR` expansion, as in huggingface_hub's constants.py.
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let get_path = |k: &str| get(k).map(|v| expand_vars(&v, &var));
        let home = home.unwrap_or_else(|| PathBuf::from("."));
        let hf_home = match get_path("HF_HOME") {
            Some(h) => expand_tilde(&h, &home),
            None => {
                let xdg =
                    get_path("XDG_CACHE_HOME").map(|x| expand_tilde(&x, &home)).unwrap_or_else(|| home.join(".cache"));
                xdg.join("huggingface")
            }
        };
        let cache_dir = get_path("HF_HUB_CACHE")
            .or_else(|| get_path("HUGGINGFACE_HUB_CACHE"))
            .map(|c| expand_tilde(&c, &home))
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_path =
            get_path("HF_TOKEN_PATH").map(|p| expand_tilde(&p, &home)).unwrap_or_else(|| hf_home.join("token"));
        let token = get("HF_TOKEN")
            .or_else(|| get("HUGGING_FACE_HUB_TOKEN"))
            .and_then(|t| clean_token(&t))
            .or_else(|| std::fs::read_to_string(&token_path).ok().and_then(|t| clean_token(&t)));
        let endpoint =
            get("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()).trim_end_matches('/').to_string();
        let offline = get("HF_HUB_OFFLINE").or_else(|| get("TRANSFORMERS_OFFLINE")).is_some_and(|v| is_true(&v));
        HubOptions {
            endpoint,
            cache_dir,
            token,
            token_path,
            offline,
            quant: None,
            threads: 4,
            progress: true,
            max_retries: 5,
            retry_base_delay: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }

    /// Options for a given endpoint and cache, no token, no env lookups (used by tests and embedders).
    pub fn new(endpoint: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        let cache_dir = cache_dir.into();
        let mut o = Self::from_vars(|_| None, None);
        o.endpoint = endpoint.into().trim_end_matches('/').to_string();
        o.token_path = cache_dir.join("..").join("token");
        o.cache_dir = cache_dir;
        o.token = None;
        o
    }
}

/// huggingface_hub's `_is_true`: 1/ON/YES/TRUE, any case.
pub(crate) fn is_true(v: &str) -> bool {
    matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

/// huggingface_hub's `_clean_token`: drop CR/LF, trim, empty → none.
fn clean_token(t: &str) -> Option<String> {
    let t: String = t.chars().filter(|&c| c != '\r' && c != '\n').collect();
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn expand_tilde(p: &str, home: &std::path::Path) -> PathBuf {
    if p == "~" {
        home.to_path_buf()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(p)
    }
}

/// `os.path.expandvars`: `$NAME` and `${NAME}` replaced by set variables, anything else kept.
fn expand_vars(s: &str, var: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(j) => (&b[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let n = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..n], n)
        };
        match (!name.is_empty()).then(|| var(name)).flatten() {
            Some(v) => {
                out.push_str(&v);
                rest = &after[consumed..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts(vars: &[(&str, &str)]) -> HubOptions {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HubOptions::from_vars(|k| m.get(k).cloned(), Some(PathBuf::from("/home/u")))
    }

    #[test]
    fn cache_dir_precedence() {
        assert_eq!(opts(&[]).cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(opts(&[("XDG_CACHE_HOME", "/x")]).cache_dir, PathBuf::from("/x/huggingface/hub"));
        assert_eq!(opts(&[("HF_HOME", "~/hf"), ("XDG_CACHE_HOME", "/x")]).cache_dir, PathBuf::from("/home/u/hf/hub"));
        assert_eq!(
            opts(&[("HF_HOME", "/h"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]).cache_dir,
            PathBuf::from("/legacy")
        );
        assert_eq!(
            opts(&[("HF_HOME", "/h"), ("HF_HUB_CACHE", "/c"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]).cache_dir,
            PathBuf::from("/c")
        );
    }

    #[test]
    fn env_vars_in_paths_are_expanded() {
        let o = opts(&[("SCRATCH", "/scratch"), ("HF_HOME", "${SCRATCH}/hf"), ("HF_HUB_CACHE", "$SCRATCH/c/$NOPE")]);
        assert_eq!(o.cache_dir, PathBuf::from("/scratch/c/$NOPE"));
        assert_eq!(o.token_path, PathBuf::from("/scratch/hf/token"));
    }

    #[test]
    fn endpoint_token_offline() {
        let o = opts(&[("HF_ENDPOINT", "http://mirror:8080/"), ("HF_TOKEN", " hf_abc\n"), ("HF_HUB_OFFLINE", "yes")]);
        assert_eq!(o.endpoint, "http://mirror:8080");
        assert_eq!(o.token.as_deref(), Some("hf_abc"));
        assert!(o.offline);
        let o = opts(&[("HF_HUB_OFFLINE", "0"), ("HUGGING_FACE_HUB_TOKEN", "legacy")]);
        assert!(!o.offline);
        assert_eq!(o.token.as_deref(), Some("legacy"));
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(o.token_path, PathBuf::from("/home/u/.cache/huggingface/token"));
        assert!(opts(&[("TRANSFORMERS_OFFLINE", "True")]).offline);
    }

    #[test]
    fn token_file() {
        let dir = tempfile::tempdir().unwrap();
        let tp = dir.path().join("token");
        std::fs::write(&tp, "hf_file_token\r\n").unwrap();
        let o = opts(&[("HF_TOKEN_PATH", tp.to_str().unwrap())]);
        assert_eq!(o.token.as_deref(), Some("hf_file_token"));
        std::fs::write(&tp, "  \n").unwrap();
        assert_eq!(opts(&[("HF_TOKEN_PATH", tp.to_str().unwrap())]).token, None);
        let home = dir.path().join("hf");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("token"), "hf_home_token").unwrap();
        assert_eq!(opts(&[("HF_HOME", home.to_str().unwrap())]).token.as_deref(), Some("hf_home_token"));
        assert_eq!(
            opts(&[("HF_HOME", home.to_str().unwrap()), ("HF_TOKEN", "env")]).token.as_deref(),
            Some("env"),
            "HF_TOKEN wins over the token file"
        );
    }
}
