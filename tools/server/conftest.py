"""Fixtures for the `tern serve` integration tests: start the real `tern` binary on a real model.

Environment:
  TERN_BIN       path of the `tern` binary (default: target/release/tern, then target/debug/tern)
  TERN_TESTDATA  test-asset root (default: <repo>/.cache/testdata; fill it with tools/testdata/fetch.sh smollm2)
"""

import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

REPO = pathlib.Path(__file__).resolve().parents[2]


def tern_bin() -> str:
    b = os.environ.get("TERN_BIN")
    if b:
        return b
    for p in ("target/release/tern", "target/debug/tern"):
        if (REPO / p).is_file():
            return str(REPO / p)
    pytest.fail("set TERN_BIN to the tern binary (or build it: cargo build --release -p tern-cli)")


def smollm2_path() -> str:
    root = pathlib.Path(os.environ.get("TERN_TESTDATA", REPO / ".cache/testdata"))
    p = root / "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        pytest.fail(f"{p} is missing: run tools/testdata/fetch.sh smollm2")
    return str(p)


class Server:
    """A `tern serve` process on a free port; stderr is collected in `self.log`."""

    def __init__(self, *args: str, model: str | None = None, env: dict | None = None):
        model = model or smollm2_path()
        cmd = [tern_bin(), "serve", "-m", model, "--port", "0", *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        self.log: list[str] = []
        self.url = None
        got = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on (http://\S+)", line)
                if m and not got.is_set():
                    self.url = m.group(1)
                    got.set()
            got.set()

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()
        if not got.wait(60) or self.url is None:
            self.stop()
            raise RuntimeError("tern serve did not start:\n" + "".join(self.log))
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("tern serve did not become healthy:\n" + "".join(self.log))
            time.sleep(0.1)

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metric(self, name: str, headers=None) -> float:
        text = requests.get(self.url + "/metrics", headers=headers, timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def server():
    s = Server("--parallel", "4", "--max-queue", "64")
    yield s
    s.stop()


@pytest.fixture
def make_server():
    started = []

    def make(*args, **kw):
        s = Server(*args, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
