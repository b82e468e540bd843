"""The gateway routes on a real vLLM's KV events (issue 12).

One real vLLM 0.32 (CPU build, the tiny model, block size 128) and one `brix sim` with the same
tokenizer both publish KV events (`--kv-events-config`); a `brix gateway` in front subscribes to
both, tokenizes each chat with the model's own tokenizer and chat template, and routes on its
per-pod exact index. Each engine is sent a long chat of its own directly, behind the gateway's
back: the approximate index knows nothing, so only the events can send each chat back to the
engine holding it. Passing means the gateway's token ids equal vLLM's (template included), its
event decoding is vLLM's, and routing follows.

Needs .venv-vllm and .vllm-tiny (scripts/vllm-cpu) and a `brix` binary with `brix sim
--kv-events-config`; without them the test skips loudly (with CI set, a missing vLLM is still a
skip, as tests/conformance). One vLLM at a time: it takes about 4 GB.
"""

import json
import os
import pathlib
import re
import signal
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
START_TIMEOUT_S = float(os.environ.get("BRIX_VLLM_START_TIMEOUT", "300"))
NAME = "tiny"
MAX_MODEL_LEN = 512

VLLM_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_LOGGING_LEVEL": "WARNING",
}


def banner(text: str) -> None:
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kv_config(events: int, replay: int) -> str:
    return json.dumps({
        "enable_kv_cache_events": True, "publisher": "zmq",
        "endpoint": f"tcp://*:{events}", "replay_endpoint": f"tcp://*:{replay}", "topic": "",
    })


class Proc:
    """A process in its own group, its log in a temp file; `ready` polls a URL."""

    def __init__(self, name: str, argv: list, env: dict | None = None) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"kvevents-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env or dict(os.environ), start_new_session=True)

    def ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def unavailable() -> str | None:
    if os.environ.get("BRIX_SKIP_VLLM") == "1":
        return "BRIX_SKIP_VLLM=1"
    if not (VENV / "bin" / "vllm").exists() or not (MODEL / "base" / "tokenizer.json").exists():
        return f"no vLLM at {VENV} or no tiny model at {MODEL} (scripts/vllm-cpu installs them)"
    if not os.path.exists(BRIX_BIN):
        return f"no brix binary at {BRIX_BIN} (cargo build -p brix)"
    helptext = subprocess.run([BRIX_BIN, "sim", "--help"], capture_output=True, text=True, timeout=30).stdout
    if "--kv-events-config" not in helptext:
        return "this brix sim has no --kv-events-config"
    return None


@pytest.fixture(scope="module")
def fleet():
    why = unavailable()
    if why:
        banner(f"GATEWAY-ON-vLLM-EVENTS TEST SKIPPED: {why}")
        pytest.skip(why)
    procs = []
    try:
        ports = {k: free_port() for k in ("vllm", "vllm_ev", "vllm_re", "sim", "sim_ev", "sim_re")}
        env = {**os.environ, **VLLM_ENV, "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}
        vllm = Proc("vllm", [
            str(VENV / "bin" / "vllm"), "serve", str(MODEL / "base"), "--served-model-name", NAME,
            "--port", str(ports["vllm"]), "--host", "127.0.0.1", "--max-model-len", str(MAX_MODEL_LEN),
            "--dtype", "bfloat16", "--kv-events-config", kv_config(ports["vllm_ev"], ports["vllm_re"]),
        ], env)
        procs.append(vllm)
        sim = Proc("sim", [
            BRIX_BIN, "sim", "--port", str(ports["sim"]), "--served-model-name", NAME,
            "--max-model-len", str(MAX_MODEL_LEN), "--gpu", "H200", "--num-gpu-blocks-override", "512",
            "--tokenizer", str(MODEL / "base"),
            "--kv-events-config", kv_config(ports["sim_ev"], ports["sim_re"]),
        ])
        procs.append(sim)
        try:
            vllm.ready(f"http://127.0.0.1:{ports['vllm']}/health", START_TIMEOUT_S)
        except RuntimeError as e:
            banner(f"GATEWAY-ON-vLLM-EVENTS TEST SKIPPED: real vLLM did not start: {e}")
            pytest.skip(f"real vLLM did not start: {e}")
        sim.ready(f"http://127.0.0.1:{ports['sim']}/health", 60)
        work = pathlib.Path(tempfile.mkdtemp(prefix="kvevents-gw-"))
        pods = []
        for name in ("vllm", "sim"):
            pods.append({
                "name": name, "address": f"127.0.0.1:{ports[name]}",
                "kv_events": {"events": f"tcp://127.0.0.1:{ports[name + '_ev']}",
                              "replay": f"tcp://127.0.0.1:{ports[name + '_re']}"},
            })
        (work / "endpoints.yaml").write_text(json.dumps({"models": [{"name": NAME, "endpoints": pods}]}))
        (work / "gateway.yaml").write_text(json.dumps({
            "listen": "127.0.0.1:0",
            "endpoints": str(work / "endpoints.yaml"),
            "routing": {"default_strategy": "prefix-cache"},
            "scrape": {"interval_ms": 200, "timeout_ms": 5000},
            "kv_events": {"models": [{"name": NAME, "tokenizer": str(MODEL / "base")}]},
        }))
        gw = subprocess.Popen([BRIX_BIN, "gateway", "--config", str(work / "gateway.yaml")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True)
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and gw.poll() is None:
            line = gw.stdout.readline()
            if line.startswith("brix gateway listening on "):
                url = line.split()[-1]
        assert url, "brix gateway did not start"
        yield {"url": url, "ports": ports}
        os.killpg(gw.pid, signal.SIGTERM)
        gw.wait(timeout=30)
    finally:
        for p in procs:
            p.stop()


def chat(i: int) -> dict:
    """A chat of its own for `i`: about 420 tokens of the tiny model's vocabulary (3 full blocks of 128)."""
    words = " ".join(f"topic {i} item {w} is ready" for w in range(24))
    return {"model": NAME, "max_tokens": 1, "messages": [
        {"role": "system", "content": f"You are assistant number {i}."},
        {"role": "user", "content": words},
    ]}


def metric(text: str, family: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not re.match(rf"{family}[{{ ]", line):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def until(what: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_chats_cached_behind_the_gateways_back_are_routed_to_their_engine(fleet):
    url, ports = fleet["url"], fleet["ports"]
    client = httpx.Client(timeout=120)
    metrics = lambda: client.get(f"{url}/metrics").text  # noqa: E731
    # Each engine gets its chat directly.
    for i, pod in enumerate(("vllm", "sim")):
        r = client.post(f"http://127.0.0.1:{ports[pod]}/v1/chat/completions", json=chat(i))
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]["prompt_tokens"]
        assert usage > 300, f"the chat must span several 128-token blocks ({usage} tokens)"
    for pod in ("vllm", "sim"):
        until(f"{pod}'s events reach the gateway",
              lambda: metric(metrics(), "brix_gateway_kv_index_blocks", pod=pod) >= 2)
    # Through the gateway, each chat goes back to its engine, twice; the gateway's own count of
    # the chosen pod's cached tokens shows its keys matched that engine's events: for vLLM, all
    # 3 full 128-token blocks of each chat (the last token is always recomputed).
    cached = lambda: metric(metrics(), "brix_gateway_kv_routed_prompt_tokens_total", kind="cached")  # noqa: E731
    for i, pod in enumerate(("vllm", "sim")):
        before = cached()
        for _ in range(2):
            r = client.post(f"{url}/v1/chat/completions", json=chat(i))
            assert r.status_code == 200, r.text
            assert r.headers["target-pod"] == pod, (i, r.headers.get("target-pod"))
        hit = cached() - before
        assert hit >= 2 * (384 if pod == "vllm" else 400), (pod, hit)
    text = metrics()
    # The approximate index knew nothing of what was sent behind its back.
    assert metric(text, "brix_gateway_kv_predictions_total", outcome="under") >= 2
    assert metric(text, "brix_gateway_kv_events_total", pod="vllm", kind="stored") >= 1
    # And vLLM itself served those prompts from its cache.
    hits = metric(client.get(f"http://127.0.0.1:{ports['vllm']}/metrics").text, "vllm:prefix_cache_hits_total")
    assert hits >= 2 * 384, hits
