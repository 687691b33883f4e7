//! HTTP plumbing over `ureq` (rustls): one agent with bounded connect/read timeouts and no automatic
//! redirects, bounded retries with exponential backoff, Hub error classification, and the redirect rules
//! of huggingface_hub's `_httpx2_follow_hub_redirects_with_backoff` / `_is_same_or_hub_host`
//! (`utils/_http.py`): redirects that stay on the Hub's origin are followed with the `Authorization`
//! header; a redirect to another origin (a CDN with a signed URL) ends metadata resolution, and the
//! file is then fetched from there without the token.

use crate::error::{HubError, Result};
use crate::options::HubOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use ureq::http::{HeaderMap, Response};
use ureq::Body;

/// Statuses retried with backoff (huggingface_hub retries 429 and 5xx gateway errors).
const RETRY_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 10;

/// A response plus how many attempts it took.
pub(crate) struct Resp {
    pub resp: Response<Body>,
    pub attempts: u32,
    /// The URL that produced `resp`.
    pub url: String,
}

/// What a request is about, to name it in errors.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub path: Option<&'a str>,
}

/// The shared HTTP client.
pub(crate) struct Client {
    agent: ureq::Agent,
    pub opts: HubOptions,
    hub_origin: Option<Origin>,
    /// Some server answered (so later network errors are transient, worth the full retry budget).
    reached: AtomicBool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Client {
    pub fn new(opts: &HubOptions) -> Self {
        let hub_origin = origin(&opts.endpoint);
        let loopback =
            hub_origin.as_ref().is_some_and(|o| matches!(o.host.as_str(), "127.0.0.1" | "localhost" | "[::1]"));
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_per_read(Some(opts.read_timeout))
            .timeout_per_write(Some(opts.read_timeout))
            .timeout_recv_response(Some(opts.read_timeout))
            .user_agent(format!("tern-hub/{}", env!("CARGO_PKG_VERSION")));
        if loopback {
            // A local mirror/mock: never route it through an HTTP(S)_PROXY from the environment.
            cfg = cfg.proxy(None);
        }
        Client { agent: cfg.build().into(), opts: opts.clone(), hub_origin, reached: AtomicBool::new(false) }
    }

    /// Whether `url` is on the Hub endpoint's origin (gets the token).
    fn is_hub(&self, url: &str) -> bool {
        self.hub_origin.is_some() && origin(url) == self.hub_origin
    }

    /// One request, no retries. `range_from` adds `Range: bytes=N-`.
    fn send_once(
        &self,
        method: &str,
        url: &str,
        range_from: Option<u64>,
    ) -> std::result::Result<Response<Body>, ureq::Error> {
        let auth = self.token_header(url);
        let mut req = match method {
            "HEAD" => self.agent.head(url),
            _ => self.agent.get(url),
        };
        req = req.header("Accept-Encoding", "identity");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(n) = range_from {
            req = req.header("Range", format!("bytes={n}-"));
        }
        req.call()
    }

    fn token_header(&self, url: &str) -> Option<String> {
        match &self.opts.token {
            Some(t) if self.is_hub(url) => Some(format!("Bearer {t}")),
            _ => None,
        }
    }

    /// A request retried on network errors and 429/5xx, with backoff; returns the last response
    /// (possibly still an error status) or a network error mentioning what is cached (`cached`).
    pub fn send(&self, method: &str, url: &str, range_from: Option<u64>, cached: &dyn Fn() -> String) -> Result<Resp> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.send_once(method, url, range_from) {
                Ok(resp) => {
                    self.reached.store(true, Ordering::Relaxed);
                    let status = resp.status().as_u16();
                    if RETRY_STATUSES.contains(&status) && attempt <= self.opts.max_retries {
                        let wait = retry_after(resp.headers()).unwrap_or_else(|| self.backoff(attempt));
                        tracing::warn!("{method} {url}: HTTP {status}, retrying in {wait:?} (attempt {attempt})");
                        std::thread::sleep(wait);
                        continue;
                    }
                    return Ok(Resp { resp, attempts: attempt, url: url.to_string() });
                }
                Err(e) => {
                    // Until the Hub has answered once, a network failure most likely means "offline":
                    // fail fast (no retry on DNS failure, one otherwise) so the cache fallback is quick.
                    let budget = if self.reached.load(Ordering::Relaxed) {
                        self.opts.max_retries
                    } else if matches!(e, ureq::Error::HostNotFound) {
                        0
                    } else {
                        self.opts.max_retries.min(1)
                    };
                    if attempt <= budget {
                        let wait = self.backoff(attempt);
                        tracing::warn!("{method} {url}: {e}, retrying in {wait:?} (attempt {attempt})");
                        std::thread::sleep(wait);
                        continue;
                    }
                    return Err(HubError::Network {
                        url: url.to_string(),
                        reason: format!("{e} (after {attempt} attempts)"),
                        cached: cached(),
                    });
                }
            }
        }
    }

    /// The delay before retry number `attempt` (1-based): base · 2^(attempt-1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let f = 1u32.checked_shl(attempt.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
        self.opts.retry_base_delay.saturating_mul(f).min(MAX_BACKOFF)
    }

    /// GET a JSON document from the Hub API (following same-origin redirects, e.g. a renamed repo).
    pub fn get_json(&self, url: &str, ctx: Ctx<'_>, cached: &dyn Fn() -> String) -> Result<serde_json::Value> {
        let mut url = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            let r = self.send("GET", &url, None, cached)?;
            let status = r.resp.status().as_u16();
            if (300..400).contains(&status) {
                url = self.redirect_target(&r)?;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(self.status_error(r, ctx));
            }
            let bytes = r.resp.into_body().with_config().limit(256 << 20).read_to_vec().map_err(|e| {
                HubError::Network { url: url.clone(), reason: format!("reading body: {e}"), cached: cached() }
            })?;
            return serde_json::from_slice(&bytes)
                .map_err(|e| HubError::BadResponse { url, reason: format!("invalid JSON: {e}") });
        }
        Err(HubError::BadResponse { url, reason: format!("more than {MAX_REDIRECTS} redirects") })
    }

    /// The absolute `Location` of a redirect response.
    pub fn redirect_target(&self, r: &Resp) -> Result<String> {
        let loc = header(r.resp.headers(), "location")
            .ok_or_else(|| HubError::BadResponse { url: r.url.clone(), reason: "redirect without Location".into() })?;
        Ok(urljoin(&r.url, &loc))
    }

    /// Whether a redirect from `from` to `to` stays on the Hub (then it is followed for metadata).
    pub fn same_or_hub_origin(&self, from: &str, to: &str) -> bool {
        let t = origin(to);
        t.is_some() && (t == origin(from) || t == self.hub_origin)
    }

    /// Turns an error status into the matching [`HubError`] (huggingface_hub's `hf_raise_for_status`).
    pub fn status_error(&self, r: Resp, ctx: Ctx<'_>) -> HubError {
        let status = r.resp.status().as_u16();
        let code = header(r.resp.headers(), "x-error-code").unwrap_or_default();
        let message = header(r.resp.headers(), "x-error-message").unwrap_or_default();
        let url = r.url.clone();
        let endpoint = self.opts.endpoint.clone();
        let token_state = match &self.opts.token {
            Some(_) => {
                "a token was sent (from HF_TOKEN or the token file) but it was refused or lacks access".to_string()
            }
            None => "no token is set".to_string(),
        };
        let token_path = self.opts.token_path.display().to_string();
        let repo = ctx.repo.to_string();
        match (status, code.as_str()) {
            (_, "GatedRepo") | (403, _) => HubError::Gated { repo, url, status, endpoint, token_state, token_path },
            (_, "RevisionNotFound") => HubError::RevisionNotFound { repo, revision: ctx.revision.to_string(), url },
            (_, "EntryNotFound") => HubError::EntryNotFound {
                repo,
                revision: ctx.revision.to_string(),
                path: ctx.path.unwrap_or("?").to_string(),
                available: String::new(),
            },
            (401, _) => HubError::Unauthorized { repo, url, endpoint, token_state, token_path },
            (404, "RepoNotFound") => HubError::RepoNotFound { repo, url, endpoint },
            (404, _) if ctx.path.is_none() => HubError::RepoNotFound { repo, url, endpoint },
            (404, _) => HubError::EntryNotFound {
                repo,
                revision: ctx.revision.to_string(),
                path: ctx.path.unwrap_or("?").to_string(),
                available: String::new(),
            },
            _ => {
                let attempts = if r.attempts > 1 { format!(" after {} attempts", r.attempts) } else { String::new() };
                let mut detail = String::new();
                if !message.is_empty() {
                    detail = format!(": {message}");
                } else if let Ok(body) = r.resp.into_body().with_config().limit(4096).read_to_string() {
                    let body = body.trim();
                    if !body.is_empty() {
                        detail = format!(": {}", body.chars().take(300).collect::<String>());
                    }
                }
                HubError::Http { url, status, attempts, detail }
            }
        }
    }
}

/// A header as a string (first value, if valid UTF-8).
pub(crate) fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_string())
}

/// `Retry-After: <seconds>` (dates are ignored), capped.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let s: u64 = header(h, "retry-after")?.parse().ok()?;
    Some(Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

fn origin(url: &str) -> Option<Origin> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if authority.starts_with('[') {
        match authority.split_once("]:") {
            Some((h, p)) => (format!("{h}]"), p.parse().ok()?),
            None => (authority.to_string(), default_port(&scheme)?),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port(&scheme)?),
        }
    };
    Some(Origin { scheme, host: host.to_ascii_lowercase(), port })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Resolves a `Location` against the URL that returned it (absolute, scheme-relative, absolute-path
/// or relative-path references).
pub(crate) fn urljoin(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    if let Some(l) = loc.strip_prefix("//") {
        return format!("{scheme}://{l}");
    }
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    if loc.starts_with('/') {
        return format!("{scheme}://{authority}{loc}");
    }
    let path = rest[auth_end..].split(['?', '#']).next().unwrap_or("");
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    format!("{scheme}://{authority}{dir}{loc}")
}

/// Percent-encodes a string for a URL path; `keep_slash` keeps `/` (file paths) or encodes it (revisions,
/// like huggingface_hub's `quote(revision, safe="")`).
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_joins() {
        assert_eq!(origin("https://huggingface.co/a"), origin("https://HuggingFace.co:443/b"));
        assert_ne!(origin("http://127.0.0.1:1/a"), origin("http://127.0.0.1:2/a"));
        assert_eq!(urljoin("http://h:1/a/b?x", "/c"), "http://h:1/c");
        assert_eq!(urljoin("http://h:1/a/b", "c?d"), "http://h:1/a/c?d");
        assert_eq!(urljoin("https://h/a", "//cdn/x"), "https://cdn/x");
        assert_eq!(urljoin("https://h/a", "http://cdn/x"), "http://cdn/x");
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("a b/c#.gguf", true), "a%20b/c%23.gguf");
    }

    #[test]
    fn backoff_is_bounded() {
        let mut o = HubOptions::new("http://127.0.0.1:9", "/tmp/none");
        o.retry_base_delay = Duration::from_millis(100);
        let c = Client::new(&o);
        assert_eq!(c.backoff(1), Duration::from_millis(100));
        assert_eq!(c.backoff(3), Duration::from_millis(400));
        assert_eq!(c.backoff(60), MAX_BACKOFF);
    }
}
