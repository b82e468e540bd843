"""Fixtures for the KV events conformance suite: a real vLLM 0.32 (CPU build, the tiny model)
and `brix sim` (same tokenizer, block size 128), both publishing KV events with
`--kv-events-config`, `--prefix-caching-hash-algo sha256_cbor` and `PYTHONHASHSEED=0`, and a
listener per engine that decodes with vLLM's own `KVEventBatch` (listen.py, run by vLLM's
python). vLLM comes from .venv-vllm and the model from .vllm-tiny (scripts/vllm-cpu); when
either is missing or vLLM does not start, every test here is skipped after a loud banner;
BRIX_SKIP_VLLM=1 skips them on purpose.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BRIX_BIN = os.environ.get("BRIX_BIN", str(ROOT / "target" / "debug" / "brix"))
VENV = pathlib.Path(os.environ.get("BRIX_VLLM_VENV", ROOT / ".venv-vllm"))
MODEL = pathlib.Path(os.environ.get("BRIX_VLLM_MODEL", ROOT / ".vllm-tiny"))
VLLM_START_TIMEOUT_S = float(os.environ.get("BRIX_VLLM_START_TIMEOUT", "300"))
NAME = "tiny"
TOPIC = "kv"
# vLLM's CPU block size, and a KV cache small enough (same --num-gpu-blocks-override on both)
# that the prompts below evict blocks.
BLOCK_SIZE = 128
NUM_BLOCKS = 8
ENV = {
    "PYTHONHASHSEED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_LOGGING_LEVEL": "WARNING",
    "VLLM_SERVER_DEV_MODE": "1",  # serves /reset_prefix_cache
}

_unavailable = None


def banner(text: str) -> None:
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """One engine process publishing KV events, and a vLLM-decoder listener on it."""

    def __init__(self, name: str, argv: list, port: int, pub: int, rep: int, timeout_s: float) -> None:
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.pub, self.rep = pub, rep
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"kvevents-{name}-", suffix=".log", delete=False)
        env = {**os.environ, **ENV, "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.listener = None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} not healthy after {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self, n: int = 40) -> str:
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def listen(self) -> None:
        """Starts a listener; returns once its SUB socket is connected."""
        self.out = tempfile.NamedTemporaryFile(prefix=f"kvevents-{self.name}-", suffix=".json", delete=False).name
        self.listener = subprocess.Popen(
            [str(VENV / "bin" / "python"), str(pathlib.Path(__file__).with_name("listen.py")),
             f"tcp://127.0.0.1:{self.pub}", f"tcp://127.0.0.1:{self.rep}", TOPIC, self.out],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV})
        line = self.listener.stdout.readline()
        assert line.strip() == "ready", f"listener said {line!r}"
        time.sleep(1)  # the subscription reaches the PUB socket (PUB drops what no one wants)

    def collected(self, quiet_s: float = 3.0) -> dict:
        """Everything the listener got: the live stream, then a replay from seq 0."""
        time.sleep(quiet_s)  # batches of the last step are still on their way
        self.listener.stdin.close()
        self.listener.wait(timeout=60)
        with open(self.out) as f:
            return json.load(f)

    def complete(self, prompt, max_tokens: int = 4) -> dict:
        r = httpx.post(self.url + "/v1/completions", timeout=120, json={
            "model": NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        assert r.status_code == 200, r.text
        return r.json()

    def reset_prefix_cache(self) -> None:
        r = httpx.post(self.url + "/reset_prefix_cache", timeout=60)
        assert r.status_code == 200 and r.json() == {"success": True}, r.text

    def stop(self) -> None:
        if self.listener is not None and self.listener.poll() is None:
            self.listener.kill()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def kv_config(pub: int, rep: int) -> str:
    return json.dumps({"enable_kv_cache_events": True, "publisher": "zmq",
                       "endpoint": f"tcp://*:{pub}", "replay_endpoint": f"tcp://*:{rep}",
                       "topic": TOPIC})


def start_vllm() -> Engine:
    port, pub, rep = free_port(), free_port(), free_port()
    argv = [str(VENV / "bin" / "vllm"), "serve", str(MODEL / "base"), "--served-model-name", NAME,
            "--port", str(port), "--host", "127.0.0.1", "--max-model-len", "512", "--dtype", "bfloat16",
            "--num-gpu-blocks-override", str(NUM_BLOCKS), "--prefix-caching-hash-algo", "sha256_cbor",
            "--kv-events-config", kv_config(pub, rep)]
    return Engine("vllm", argv, port, pub, rep, VLLM_START_TIMEOUT_S)


def start_sim() -> Engine:
    port, pub, rep = free_port(), free_port(), free_port()
    argv = [BRIX_BIN, "sim", "--port", str(port), "--served-model-name", NAME, "--max-model-len", "512",
            "--gpu", "H200", "--block-size", str(BLOCK_SIZE), "--num-gpu-blocks-override", str(NUM_BLOCKS),
            "--tokenizer", str(MODEL / "base"), "--prefix-caching-hash-algo", "sha256_cbor",
            "--output-len", "fixed:100000", "--kv-events-config", kv_config(pub, rep)]
    return Engine("sim", argv, port, pub, rep, 60)


@pytest.fixture(scope="module")
def engines():
    """(vllm, sim), each with a listener attached, fresh for each test module."""
    global _unavailable
    if os.environ.get("BRIX_SKIP_VLLM") == "1":
        pytest.skip("BRIX_SKIP_VLLM=1: KV events conformance suite skipped")
    if _unavailable is None:
        if not (VENV / "bin" / "vllm").exists() or not (MODEL / "base" / "config.json").exists():
            _unavailable = f"no vLLM install at {VENV} or no model at {MODEL} (run scripts/vllm-cpu)"
    if _unavailable:
        banner(f"KV EVENTS CONFORMANCE SUITE SKIPPED: {_unavailable}")
        pytest.skip(_unavailable)
    try:
        vllm = start_vllm()
    except Exception as e:  # noqa: BLE001 - any failure to start means: skip, loudly
        _unavailable = f"real vLLM did not start: {e}"
        banner(f"KV EVENTS CONFORMANCE SUITE SKIPPED: {_unavailable}")
        pytest.skip(_unavailable)
    try:
        sim = start_sim()
    except Exception:
        vllm.stop()
        raise
    try:
        vllm.listen()
        sim.listen()
        yield vllm, sim
    finally:
        sim.stop()
        vllm.stop()


def pytest_terminal_summary(terminalreporter):
    if _unavailable:
        terminalreporter.write_sep("!", "KV EVENTS CONFORMANCE SUITE SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"!! {_unavailable}", red=True, bold=True)
