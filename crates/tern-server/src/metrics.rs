//! Prometheus metrics, rendered in the text exposition format (version 0.0.4) at `GET /metrics`.
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms with cumulative
//! `le` buckets, `_sum` and `_count`), like vLLM's `vllm:` metrics: requests by endpoint and HTTP
//! status, prompt / generated / prefix-cached tokens, time to first token, inter-token latency,
//! end-to-end latency, and per model the queue depth, active sequences and KV-cache use.

use crate::engine::EngineStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0];
const ITL_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5];

/// A histogram with fixed buckets (lock-free).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one value in seconds.
    pub fn observe(&self, secs: f64) {
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let n = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Server-wide metrics.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub cancelled: AtomicU64,
    pub engine_errors: AtomicU64,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            cached_prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            engine_errors: AtomicU64::new(0),
            ttft: Histogram::new(LATENCY_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// One model's live state for the gauges.
pub struct ModelGauges<'a> {
    pub id: &'a str,
    pub stats: &'a EngineStats,
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Counts one finished HTTP request.
    pub fn count_request(&self, endpoint: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((endpoint.to_string(), status)).or_insert(0) += 1;
    }

    /// The exposition text.
    pub fn render(&self, models: &[ModelGauges<'_>], loading: usize) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(out, "# HELP tern_requests_total HTTP requests by endpoint and status code.");
        let _ = writeln!(out, "# TYPE tern_requests_total counter");
        for ((ep, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "tern_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}", escape(ep));
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "tern_prompt_tokens_total",
            "Prompt tokens of admitted sequences.",
            load(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "tern_prompt_tokens_cached_total",
            "Prompt tokens served from a reused KV-cache prefix.",
            load(&self.cached_prompt_tokens),
        );
        counter(&mut out, "tern_generation_tokens_total", "Tokens sampled.", load(&self.generated_tokens));
        counter(
            &mut out,
            "tern_sequences_cancelled_total",
            "Sequences dropped because the client went away or timed out.",
            load(&self.cancelled),
        );
        counter(&mut out, "tern_engine_errors_total", "Engine steps that failed.", load(&self.engine_errors));
        self.ttft.render(&mut out, "tern_time_to_first_token_seconds", "Time from request arrival to the first token.");
        self.itl.render(&mut out, "tern_inter_token_latency_seconds", "Time between consecutive tokens of a sequence.");
        self.e2e.render(
            &mut out,
            "tern_request_latency_seconds",
            "Time from arrival to the end of a generation request.",
        );
        let gauge = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&EngineStats) -> f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for m in models {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", escape(m.id), f(m.stats));
            }
        };
        let ld = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as f64;
        gauge(&mut out, "tern_queue_depth", "Requests waiting for a KV-cache slot.", &|s| s.waiting() as f64);
        gauge(&mut out, "tern_active_sequences", "Sequences holding a KV-cache slot.", &|s| ld(&s.active));
        gauge(&mut out, "tern_kv_cache_used_positions", "KV-cache positions filled by active sequences.", &|s| {
            ld(&s.kv_used)
        });
        gauge(
            &mut out,
            "tern_kv_cache_capacity_positions",
            "KV-cache positions in all slots.",
            &|s| ld(&s.kv_capacity),
        );
        gauge(&mut out, "tern_kv_cache_usage_ratio", "Fraction of KV-cache positions in use.", &|s| {
            ld(&s.kv_used) / ld(&s.kv_capacity).max(1.0)
        });
        let _ = writeln!(out, "# HELP tern_models_loading Models being loaded.\n# TYPE tern_models_loading gauge");
        let _ = writeln!(out, "tern_models_loading {loading}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::default();
        m.count_request("/v1/chat/completions", 200);
        m.count_request("/v1/chat/completions", 200);
        m.count_request("/v1/chat/completions", 400);
        m.ttft.observe(0.02);
        m.ttft.observe(3.0);
        let stats = EngineStats::default();
        stats.kv_capacity.store(100, Ordering::Relaxed);
        stats.kv_used.store(25, Ordering::Relaxed);
        let text = m.render(&[ModelGauges { id: "a\"b", stats: &stats }], 0);
        assert!(text.contains("tern_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2"));
        assert!(text.contains("tern_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"} 1"));
        assert!(text.contains("tern_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("tern_time_to_first_token_seconds_bucket{le=\"2.5\"} 1"));
        assert!(text.contains("tern_time_to_first_token_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("tern_time_to_first_token_seconds_count 2"));
        assert!(text.contains("tern_kv_cache_usage_ratio{model=\"a\\\"b\"} 0.25"));
    }
}
