"""`tern serve` against the real SmolLM2-135M-Instruct Q4_1 GGUF, driven by the official `openai` Python
client and raw HTTP (`requests`, sockets). Run: `TERN_BIN=target/release/tern python3 -m pytest -q tools/server`.
"""

import concurrent.futures as cf
import json
import math
import signal
import socket
import subprocess
import threading
import time

import openai
import pytest
import requests

from conftest import Server, smollm2_path, tern_bin

MODEL = "SmolLM2-135M-Instruct.Q4_1"  # the file-name alias of the served GGUF
MSG = [{"role": "user", "content": "Write one sentence about the sea."}]
NO_EOS = {"2": -100, "0": -100}  # <|im_end|>, <|endoftext|>: keeps a request running for the whole max_tokens


def client(server, key="none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key=key, max_retries=0, timeout=120)


def token_id(text: str) -> int:
    out = subprocess.run([tern_bin(), "tokenize", "-m", smollm2_path(), "--text", text], capture_output=True, text=True, check=True)
    ids = json.loads(out.stdout)
    assert len(ids) == 1, ids
    return ids[0]


# ---------------------------------------------------------------------------------------------------
# Shapes: chat and completions, streaming and not


def test_models_and_aliases(server):
    c = client(server)
    ids = [m.id for m in c.models.list().data]
    assert ids == [smollm2_path()]
    assert c.models.retrieve(MODEL).id == smollm2_path()
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="no-such-model", messages=MSG, max_tokens=4)
    assert e.value.body["code"] == "model_not_found"


def test_chat_non_streaming(server):
    r = client(server).chat.completions.create(model=MODEL, messages=MSG, max_tokens=24, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    ch = r.choices[0]
    assert ch.message.role == "assistant" and isinstance(ch.message.content, str) and ch.message.content
    assert ch.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_equals_non_streaming(server):
    c = client(server)
    full = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=24, temperature=0)
    chunks = list(
        c.chat.completions.create(
            model=MODEL, messages=MSG, max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({ch.id for ch in chunks}) == 1
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == full.usage.completion_tokens
    assert last.usage.prompt_tokens == full.usage.prompt_tokens


def test_raw_sse_framing(server):
    body = {"model": MODEL, "messages": MSG, "max_tokens": 8, "stream": True}
    with requests.post(server.api + "/chat/completions", json=body, stream=True, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    first = json.loads(data[0])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_completions(server):
    c = client(server)
    r = c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
    streamed = "".join(
        ch.choices[0].text for ch in c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True) if ch.choices
    )
    assert streamed == r.choices[0].text
    echo = c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0, echo=True)
    assert echo.choices[0].text.startswith("The capital of France is")
    two = c.completions.create(model=MODEL, prompt=["One", "Two"], max_tokens=3, temperature=0)
    assert [ch.index for ch in two.choices] == [0, 1]


def test_finish_reason_length_and_stop(server):
    c = client(server)
    r = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3
    long = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=40, temperature=0).choices[0].message.content
    words = long.split()
    assert len(words) >= 4, long
    stop = " " + words[3]
    want = long[: long.index(stop)]
    for stream in (False, True):
        if stream:
            chunks = list(c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=40, temperature=0, stop=[stop, "zzzz"], stream=True))
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
            assert finish == ["stop"]
        else:
            r = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=40, temperature=0, stop=stop)
            text, finish = r.choices[0].message.content, r.choices[0].finish_reason
            assert finish == "stop"
        assert text == want, (stream, stop, text, long)
        assert stop not in text


def test_logprobs_concatenate_to_text(server):
    c = client(server)
    r = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=16, temperature=0, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    assert "".join(t.token for t in lp) == r.choices[0].message.content
    for t in lp:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
        # Greedy: the chosen token is the most likely one.
        assert math.isclose(t.logprob, t.top_logprobs[0].logprob, abs_tol=1e-4)
    chunks = list(c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=16, temperature=0, logprobs=True, stream=True))
    toks = [t.token for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content]
    assert "".join(toks) == r.choices[0].message.content


def test_n_choices_and_penalties(server):
    c = client(server)
    r = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=8, temperature=1.0, seed=7, n=3)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    assert len({ch.message.content for ch in r.choices}) >= 2
    r = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=24, temperature=0, frequency_penalty=2.0, presence_penalty=2.0)
    assert r.choices[0].message.content


def test_logit_bias_forces_a_token(server):
    yes = token_id(" yes")
    r = client(server).completions.create(model=MODEL, prompt="Answer:", max_tokens=4, temperature=0, logit_bias={str(yes): 100})
    assert r.choices[0].text == " yes" * 4


def test_json_mode_gives_a_json_object(server):
    c = client(server)
    msgs = [{"role": "user", "content": "Reply with a JSON object with two keys, name and age, for Alice who is 30."}]
    r = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=96, temperature=0, response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    assert json.loads(r.choices[0].message.content) == {"name": "Alice", "age": 30}
    chunks = list(c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=96, temperature=0, response_format={"type": "json_object"}, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == r.choices[0].message.content
    # A prompt the model answers in prose: JSON mode still makes it write an object.
    free = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=24, temperature=0).choices[0].message.content
    assert not free.lstrip().startswith("{")
    for seed in range(3):
        r = c.chat.completions.create(model=MODEL, messages=MSG, max_tokens=48, temperature=1.0, seed=seed, response_format={"type": "json_object"})
        text = r.choices[0].message.content
        assert text.lstrip().startswith("{"), text
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text), dict), text


def test_tools_request_is_accepted(server):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    r = client(server).chat.completions.create(model=MODEL, messages=msgs, tools=tools, max_tokens=16, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


# ---------------------------------------------------------------------------------------------------
# Determinism and concurrency


def test_same_seed_same_text_also_under_load(server):
    c = client(server)
    kw = dict(model=MODEL, messages=MSG, max_tokens=24, temperature=0.9, top_p=0.95, seed=1234)
    solo = c.chat.completions.create(**kw).choices[0].message.content
    assert c.chat.completions.create(**kw).choices[0].message.content == solo

    def noise(i):
        return c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Count to {i + 3}."}], max_tokens=24, temperature=1.0, seed=i).choices[0].message.content

    with cf.ThreadPoolExecutor(9) as ex:
        others = [ex.submit(noise, i) for i in range(8)]
        time.sleep(0.05)
        mine = ex.submit(lambda: c.chat.completions.create(**kw).choices[0].message.content)
        assert mine.result() == solo
        for f in others:
            assert f.result()


def test_16_concurrent_streams_complete(server):
    c = client(server)

    def stream(i):
        chunks = list(
            c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Say something about the number {i}."}], max_tokens=12, temperature=0.7, seed=i, stream=True
            )
        )
        finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        return finish, "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)

    with cf.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(stream, range(16)))
    for finish, text in results:
        assert finish in (["stop"], ["length"]) and (text or finish == ["stop"])


# ---------------------------------------------------------------------------------------------------
# Validation: every case is a 400 naming the field, before any compute


BAD = [
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": "ten"}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"stop": ""}, "stop"),
    ({"stop": ["ok", ""]}, "stop"),
    ({"stop": 3}, "stop"),
    ({"n": 0}, "n"),
    ({"seed": 1.5}, "seed"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 500}}, "logit_bias"),
    ({"logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0]"),
    ({"chat_template_kwargs": "x"}, "chat_template_kwargs"),
]


@pytest.mark.parametrize("extra,field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_validation(server, extra, field):
    body = {"model": MODEL, "messages": MSG, "max_tokens": 4, **extra}
    r = requests.post(server.api + "/chat/completions", json=body, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and err["type"] == "invalid_request_error", err


@pytest.mark.parametrize("raw", ['{"model": "x", "messages": [', '{"temperature": NaN, "messages": []}', '{"temperature": Infinity}', "[]", ""])
def test_malformed_json(server, raw):
    r = requests.post(server.api + "/chat/completions", data=raw, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_context_overflow_names_both_numbers(server):
    ctx = requests.get(server.api + "/models", timeout=10).json()["data"][0]["max_model_len"]
    r = requests.post(server.api + "/chat/completions", json={"model": MODEL, "messages": MSG, "max_tokens": ctx}, timeout=30)
    assert r.status_code == 400
    e = r.json()["error"]
    assert e["param"] == "max_tokens" and str(ctx) in e["message"] and "prompt (" in e["message"], e
    long_prompt = "word " * (ctx + 10)
    r = requests.post(server.api + "/completions", json={"model": MODEL, "prompt": long_prompt, "max_tokens": 1}, timeout=30)
    assert r.status_code == 400 and str(ctx) in r.json()["error"]["message"]


def test_metrics(server):
    text = requests.get(server.url + "/metrics", timeout=10).text
    for name in (
        "tern_requests_total",
        "tern_prompt_tokens_total",
        "tern_generation_tokens_total",
        "tern_time_to_first_token_seconds_bucket",
        "tern_inter_token_latency_seconds_bucket",
        "tern_queue_depth",
        "tern_active_sequences",
        "tern_kv_cache_usage_ratio",
    ):
        assert name in text, name
    assert server.metric("tern_generation_tokens_total") > 0
    assert 'status="400"' in text


# ---------------------------------------------------------------------------------------------------
# Load, disconnects, auth, timeouts, shutdown (each on its own server)


def test_overload_gives_429(make_server):
    s = make_server("--parallel", "1", "--max-queue", "1")
    body = {"model": MODEL, "messages": MSG, "max_tokens": 48, "temperature": 0, "logit_bias": NO_EOS}
    with cf.ThreadPoolExecutor(6) as ex:
        codes = list(ex.map(lambda _: requests.post(s.api + "/chat/completions", json=body, timeout=120).status_code, range(6)))
    assert codes.count(429) >= 1 and codes.count(200) >= 2, codes
    r = requests.post(s.api + "/chat/completions", json=body, timeout=120)
    assert r.status_code == 200
    with pytest.raises(openai.RateLimitError):
        with cf.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(client(s).chat.completions.create, **body) for _ in range(4)]
            for f in futs:
                f.result()


def _wait_idle(s, within):
    t0 = time.time()
    while time.time() - t0 < within:
        if s.metric("tern_active_sequences") == 0 and s.metric("tern_queue_depth") == 0:
            return time.time() - t0
        time.sleep(0.02)
    raise AssertionError(f"slot not freed within {within} s")


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_frees_the_slot(make_server, stream):
    s = make_server("--parallel", "1")
    body = json.dumps({"model": MODEL, "messages": MSG, "max_tokens": 2000, "stream": stream, "temperature": 1.0, "logit_bias": NO_EOS}).encode()
    host, port = s.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    if stream:
        got = b""
        while got.count(b"data: {") < 2:  # the role chunk, then the first token
            got += sock.recv(4096)
    else:
        t0 = time.time()
        while s.metric("tern_generation_tokens_total") < 1:  # past the prefill
            assert time.time() - t0 < 30
            time.sleep(0.02)
    assert s.metric("tern_active_sequences") == 1
    sock.close()
    _wait_idle(s, 1.0)
    assert s.metric("tern_sequences_cancelled_total") == 1
    r = client(s).chat.completions.create(model=MODEL, messages=MSG, max_tokens=4)
    assert r.choices[0].message.content is not None


def test_auth(make_server):
    s = make_server("--api-key", "s3cret")
    assert requests.get(s.url + "/health", timeout=10).status_code == 200
    assert requests.get(s.api + "/models", timeout=10).status_code == 401
    assert requests.get(s.url + "/metrics", timeout=10).status_code == 401
    assert requests.get(s.api + "/models", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(s, key="wrong").chat.completions.create(model=MODEL, messages=MSG, max_tokens=2)
    r = client(s, key="s3cret").chat.completions.create(model=MODEL, messages=MSG, max_tokens=2)
    assert r.choices[0].message.content is not None


def test_timeout(make_server):
    s = make_server("--timeout", "0.5", "--parallel", "1")
    r = requests.post(s.api + "/chat/completions", json={"model": MODEL, "messages": MSG, "max_tokens": 3000, "temperature": 1.0, "logit_bias": NO_EOS}, timeout=60)
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
    _wait_idle(s, 1.0)
    with requests.post(s.api + "/chat/completions", json={"model": MODEL, "messages": MSG, "max_tokens": 3000, "stream": True, "logit_bias": NO_EOS}, stream=True, timeout=60) as r:
        data = [line[6:] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert data[-1] == "[DONE]" and "timeout_error" in data[-2]


def test_graceful_shutdown_mid_stream(make_server):
    s = make_server("--shutdown-timeout", "60")
    body = {"model": MODEL, "messages": MSG, "max_tokens": 64, "stream": True, "temperature": 0, "logit_bias": NO_EOS}
    lines = []
    with requests.post(s.api + "/chat/completions", json=body, stream=True, timeout=120) as r:
        it = r.iter_lines(decode_unicode=True)
        for line in it:
            lines.append(line)
            if line.startswith("data: {") and '"content":""' not in line:
                break
        s.signal(signal.SIGTERM)
        time.sleep(0.3)
        # No new connections while draining.
        with pytest.raises(requests.ConnectionError):
            requests.get(s.url + "/health", timeout=2)
        lines.extend(it)
    data = [line[6:] for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["choices"][0]["finish_reason"] in ("stop", "length")
    assert s.proc.wait(30) == 0
    assert any("shutting down" in line for line in s.log)


def test_load_and_unload(make_server):
    s = make_server()
    r = requests.post(s.url + "/unload", json={"model": MODEL}, timeout=30)
    assert r.status_code == 200
    assert requests.post(s.api + "/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1}, timeout=30).status_code == 404
    r = requests.post(s.url + "/load", json={"model": smollm2_path()}, timeout=120)
    assert r.status_code == 200, r.text
    assert requests.post(s.api + "/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1}, timeout=30).status_code == 200
    r = requests.post(s.url + "/load", json={"model": "/no/such/model.gguf"}, timeout=30)
    assert r.status_code == 400 and "/no/such/model.gguf" in r.json()["error"]["message"]
    assert requests.get(s.url + "/health", timeout=10).status_code == 200
