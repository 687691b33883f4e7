//! In-process tests of the server on an HF fixture model (random BitNet weights, real BPE tokenizer,
//! no download): raw HTTP/1.1 over TCP, so that disconnects, SSE framing and status codes are exactly
//! what a client sees. The OpenAI-client tests against the `tern serve` binary and the real SmolLM2
//! GGUF live in `tools/server/` (run by `crates/tern-cli/tests/serve.rs`).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_server::{EngineConfig, SamplingDefaults, ServerConfig};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf").join(name)
}

/// A server on a free port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), tern_server::ServerError>>>,
}

impl Server {
    fn start(models: &[&str], f: impl FnOnce(&mut ServerConfig)) -> Server {
        let mut cfg = ServerConfig {
            port: 0,
            engine: EngineConfig { parallel: 2, ctx: 0, max_queue: 8, batch_tokens: 64, threads: 1 },
            timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
            defaults: SamplingDefaults::default(),
            ..ServerConfig::default()
        };
        f(&mut cfg);
        let models: Vec<String> = models.iter().map(|m| m.to_string()).collect();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let loader: tern_server::Loader = Arc::new(|spec: &str| {
            let p = if spec == CHAT { chat_fixture() } else { fixture(spec) };
            tern_server::load_parts(&p)
        });
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(tern_server::serve_until(
                cfg,
                models,
                loader,
                async move {
                    let _ = stop_rx.await;
                },
                move |a| {
                    let _ = addr_tx.send(a);
                },
            ))
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("server did not start");
        let s = Server { addr, stop: Some(stop_tx), thread: Some(thread) };
        let t0 = Instant::now();
        while s.get("/health").0 != 200 {
            assert!(t0.elapsed() < Duration::from_secs(60), "model did not load");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        if let Some(b) = body {
            req += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
        }
        req += "\r\n";
        if let Some(b) = body {
            req += b;
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status: u16 = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        (status, body)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, None, &[])
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (st, b) = self.request("POST", path, Some(&body.to_string()), &[]);
        (st, serde_json::from_str(&b).unwrap_or(Value::String(b)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_string)
        .collect()
}

const MODEL: &str = "bitnet_autobitlinear_packed";
/// qwen3_tied weights + the BPE tokenizer of the BitNet fixture + a small chat template with
/// Qwen3-style `enable_thinking` handling.
const CHAT: &str = "chat-fixture";

const TEMPLATE: &str = "{%- for m in messages %}<|begin|>{{ m.role }}\n{{ m.content }}<|end|>\n{% endfor %}\
{%- if add_generation_prompt %}<|begin|>assistant\n{%- if enable_thinking is defined and enable_thinking %}<think>\n\
{%- elif enable_thinking is defined %}<think>\n\n</think>\n\n{%- endif %}{%- endif %}";

fn chat_fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tern-server-chat-fixture-{}", std::process::id()));
    if dir.join("tokenizer_config.json").is_file() {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixture("qwen3_tied").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(fixture(MODEL).join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let cfg =
        json!({"bos_token": "<|begin|>", "eos_token": "<|end|>", "add_bos_token": false, "chat_template": TEMPLATE});
    let tmp = dir.join("tokenizer_config.json.tmp");
    std::fs::write(&tmp, cfg.to_string()).unwrap();
    std::fs::rename(tmp, dir.join("tokenizer_config.json")).unwrap();
    dir
}

fn completion(prompt: &str, extra: Value) -> Value {
    let mut b = json!({"model": MODEL, "prompt": prompt, "max_tokens": 12, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn completions_streaming_matches_non_streaming_and_usage() {
    let s = Server::start(&[MODEL], |_| {});
    let (st, models) = s.get("/v1/models");
    assert_eq!(st, 200);
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], MODEL);

    let (st, r) = s.post("/v1/completions", &completion("hello world", json!({})));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["object"], "text_completion");
    let text = r["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 12);
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let (st, body) = s.request(
        "POST",
        "/v1/completions",
        Some(
            &completion("hello world", json!({"stream": true, "stream_options": {"include_usage": true}})).to_string(),
        ),
        &[],
    );
    assert_eq!(st, 200);
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let ids: std::collections::HashSet<&str> = chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one id for every chunk");
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| c["text"].as_str().unwrap_or("")).collect();
    assert_eq!(streamed, text, "streamed text equals the non-streamed text (greedy)");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_eq!(last["usage"]["completion_tokens"], 12);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("length")]);

    // The second identical request reuses the cached prompt prefix.
    let (_, r2) = s.post("/v1/completions", &completion("hello world", json!({})));
    assert_eq!(r2["choices"][0]["text"], text.as_str());
    assert!(r2["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap() > 0, "{r2}");

    // Logprobs: the tokens concatenate to the text; top alternatives are sorted.
    let (_, r) = s.post("/v1/completions", &completion("hello world", json!({"logprobs": 3})));
    let lp = &r["choices"][0]["logprobs"];
    let joined: String = lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(joined, r["choices"][0]["text"].as_str().unwrap());
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 3);
    for v in lp["token_logprobs"].as_array().unwrap() {
        assert!(v.as_f64().unwrap() <= 0.0);
    }

    let (st, metrics) = s.get("/metrics");
    assert_eq!(st, 200);
    assert!(metrics.contains("tern_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 4"), "{metrics}");
    assert!(metrics.contains("tern_time_to_first_token_seconds_count"));
}

#[test]
fn json_mode_output_is_json() {
    let s = Server::start(&[MODEL], |_| {});
    for seed in 0..4 {
        let (st, r) = s.post(
            "/v1/completions",
            &completion(
                "{",
                json!({"max_tokens": 40, "temperature": 1.0, "seed": seed, "response_format": {"type": "json_object"}}),
            ),
        );
        assert_eq!(st, 200, "{r}");
        let text = r["choices"][0]["text"].as_str().unwrap();
        let mut state = tern_server::json_mode::JsonState::new();
        assert!(text.bytes().all(|b| state.push(b)), "not a JSON prefix: {text:?}");
        if r["choices"][0]["finish_reason"] == "stop" {
            assert!(state.is_complete());
            assert!(serde_json::from_str::<serde_json::Map<String, Value>>(text).is_ok(), "{text:?}");
        }
    }
}

#[test]
fn stop_strings_are_never_leaked() {
    let s = Server::start(&[MODEL], |_| {});
    let (_, r) = s.post("/v1/completions", &completion("the quick brown fox", json!({"max_tokens": 24})));
    let full = r["choices"][0]["text"].as_str().unwrap().to_string();
    // Pick a stop string from the middle of the greedy output.
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 6, "{full:?}");
    let start = chars.len() / 2;
    let stop: String = chars[start..start + 3].iter().collect();
    let want = &full[..full.find(&stop).unwrap()];
    for stream in [false, true] {
        let body = completion("the quick brown fox", json!({"max_tokens": 24, "stop": [stop], "stream": stream}));
        let text = if stream {
            let (_, b) = s.request("POST", "/v1/completions", Some(&body.to_string()), &[]);
            let data = sse_data(&b);
            let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
            assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
            chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap_or("").to_string()).collect::<String>()
        } else {
            let (_, r) = s.post("/v1/completions", &body);
            assert_eq!(r["choices"][0]["finish_reason"], "stop");
            r["choices"][0]["text"].as_str().unwrap().to_string()
        };
        assert_eq!(text, want, "stream={stream} stop={stop:?} full={full:?}");
    }
}

#[test]
fn seeded_sampling_is_deterministic_under_concurrency() {
    let s = Arc::new(Server::start(&[MODEL], |c| c.engine.parallel = 4));
    let req = completion("once upon a time", json!({"temperature": 1.0, "seed": 42, "max_tokens": 16}));
    let (_, solo) = s.post("/v1/completions", &req);
    let want = solo["choices"][0]["text"].as_str().unwrap().to_string();
    let mut handles = Vec::new();
    for i in 0..6 {
        let s = Arc::clone(&s);
        let req = if i == 3 {
            req.clone()
        } else {
            completion(&format!("noise {i} prompt"), json!({"temperature": 1.0, "seed": i, "max_tokens": 16}))
        };
        handles.push(std::thread::spawn(move || s.post("/v1/completions", &req)));
    }
    let results: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (st, r) in &results {
        assert_eq!(*st, 200, "{r}");
    }
    assert_eq!(results[3].1["choices"][0]["text"], want.as_str());
    // n = 3 gives three choices with distinct seeds (seed + index).
    let (_, r) = s.post(
        "/v1/completions",
        &completion("once upon a time", json!({"temperature": 1.0, "seed": 42, "n": 3, "max_tokens": 16})),
    );
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    assert_eq!(choices[0]["text"], want.as_str());
}

#[test]
fn validation_auth_and_errors() {
    let s = Server::start(&[MODEL], |c| c.api_key = Some("sekret".into()));
    let auth = [("Authorization", "Bearer sekret")];
    assert_eq!(s.get("/health").0, 200, "health needs no key");
    assert_eq!(s.get("/v1/models").0, 401);
    assert_eq!(s.request("GET", "/v1/models", None, &[("Authorization", "Bearer wrong")]).0, 401);
    assert_eq!(s.request("GET", "/v1/models", None, &auth).0, 200);
    let post = |body: &str| {
        let (st, b) = s.request("POST", "/v1/completions", Some(body), &auth);
        (st, serde_json::from_str::<Value>(&b).unwrap_or(Value::Null))
    };
    let (st, e) = post("{bad json");
    assert_eq!(st, 400);
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let (st, e) = post(&completion("x", json!({"temperature": 5})).to_string());
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("temperature")));
    let (st, e) = post(&completion("x", json!({"max_tokens": 100000})).to_string());
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("max_tokens")));
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("100000") && msg.contains("128"), "{msg}");
    let (st, e) = post(&json!({"model": "nope", "prompt": "x"}).to_string());
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("model_not_found")));
    let (st, e) = post(&completion("x", json!({"logit_bias": {"100000": 1}})).to_string());
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("logit_bias")));
    let (st, _) = post(&json!({"model": MODEL, "prompt": [1, 2, 99999]}).to_string());
    assert_eq!(st, 400);
    // The fixture has no chat template: chat is a clear 400.
    let (st, b) = s.request(
        "POST",
        "/v1/chat/completions",
        Some(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).to_string()),
        &auth,
    );
    assert_eq!(st, 400, "{b}");
    assert!(b.contains("no chat template"));
    assert_eq!(s.request("GET", "/nope", None, &auth).0, 404);
}

#[test]
fn overload_gives_429_and_disconnect_frees_the_slot() {
    let s = Server::start(&[MODEL], |c| {
        c.engine.parallel = 1;
        c.engine.max_queue = 0;
    });
    // A long streaming request holds the only slot.
    let body = completion("a b c", json!({"max_tokens": 100, "stream": true})).to_string();
    let mut conn = TcpStream::connect(s.addr).unwrap();
    write!(
        conn,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    while !line.starts_with("data:") && !line.contains("data: {") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let (st, e) = s.post("/v1/completions", &completion("x", json!({})));
    assert_eq!(st, 429, "{e}");
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    // Hang up: the slot must be free again within a second.
    drop(reader);
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    drop(conn);
    let t0 = Instant::now();
    loop {
        let (st, _) = s.post("/v1/completions", &completion("x", json!({"max_tokens": 2})));
        if st == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "slot not freed after disconnect (last status {st})");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, m) = s.get("/metrics");
    assert!(m.contains("tern_sequences_cancelled_total 1"), "{m}");
}

#[test]
fn load_and_unload() {
    let s = Server::start(&[MODEL], |_| {});
    let (st, r) = s.post("/load", &json!({"model": CHAT}));
    assert_eq!(st, 200, "{r}");
    let (_, models) = s.get("/v1/models");
    assert!(models.contains(CHAT));
    let (st, _) = s.post("/v1/completions", &json!({"model": CHAT, "prompt": [1, 2, 3], "max_tokens": 3}));
    assert_eq!(st, 200);
    let (st, r) = s.post("/load", &json!({"model": "no_such_fixture"}));
    assert_eq!(st, 400, "{r}");
    let (st, _) = s.post("/unload", &json!({"model": CHAT}));
    assert_eq!(st, 200);
    let (st, _) = s.post("/v1/completions", &json!({"model": CHAT, "prompt": [1], "max_tokens": 1}));
    assert_eq!(st, 404);
    let (st, _) = s.post("/unload", &json!({"model": CHAT}));
    assert_eq!(st, 404);
    // The first model still serves.
    let (st, _) = s.post("/v1/completions", &completion("x", json!({"max_tokens": 2})));
    assert_eq!(st, 200);
}

#[test]
fn chat_completions_shapes_reasoning_and_history() {
    let s = Server::start(&[CHAT], |_| {});
    let messages = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is"}, {"type": "text", "text": " 2+2?"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 2}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "4"},
    ]);
    let body = json!({"model": CHAT, "messages": messages, "max_tokens": 8, "temperature": 0});
    let (st, r) = s.post("/v1/chat/completions", &body);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    let content = r["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(r["choices"][0]["message"].get("reasoning_content").is_none());

    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let (st, b) = s.request("POST", "/v1/chat/completions", Some(&sb.to_string()), &[]);
    assert_eq!(st, 200);
    let data = sse_data(&b);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"] && c["object"] == "chat.completion.chunk"));
    let streamed: String =
        chunks.iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(streamed, content);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");

    // enable_thinking: the prompt opens <think>, so everything generated is reasoning.
    let mut tb = body.clone();
    tb["chat_template_kwargs"] = json!({"enable_thinking": true});
    let (_, r) = s.post("/v1/chat/completions", &tb);
    let m = &r["choices"][0]["message"];
    assert_eq!(m["content"], "", "{r}");
    assert!(m["reasoning_content"].is_string(), "{r}");
    // enable_thinking false: closed think block in the prompt; plain content.
    tb["chat_template_kwargs"] = json!({"enable_thinking": false});
    let (_, r) = s.post("/v1/chat/completions", &tb);
    assert!(r["choices"][0]["message"].get("reasoning_content").is_none(), "{r}");
    // Chat logprobs concatenate to the content.
    let mut lb = body.clone();
    lb["logprobs"] = json!(true);
    lb["top_logprobs"] = json!(2);
    let (_, r) = s.post("/v1/chat/completions", &lb);
    let toks = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    let joined: String = toks.iter().map(|t| t["token"].as_str().unwrap()).collect();
    assert_eq!(joined, content);
    assert!(toks.iter().all(|t| t["top_logprobs"].as_array().unwrap().len() == 2));
    // A broken conversation is a 400 from the template, not a 500.
    let (st, _) = s.post("/v1/chat/completions", &json!({"model": CHAT, "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"messages": 1}}));
    assert_eq!(st, 400);
}
