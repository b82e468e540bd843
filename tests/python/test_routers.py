"""`brix sim` is accepted as a worker by the Rust routers from PyPI: sglang-router (the last
release under that name is 0.3.2) and vllm-router 0.1.17 (vllm-project/router, a fork of it).
Both register workers through /health, /get_server_info and /get_model_info before routing.

Each router lives in a venv of its own (scripts/test makes them): $SGLANG_ROUTER_PYTHON is a
python that can import sglang_router, $VLLM_ROUTER_BIN the `vllm-router` console script. A
router that is not installed is skipped, with the reason in pytest's summary.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

from conftest import SMALL_ENGINE, Sim

ROUTER_START_TIMEOUT_S = 60


def sglang_router_cmd():
    explicit = os.environ.get("SGLANG_ROUTER_PYTHON")
    for python in [explicit] if explicit else [sys.executable]:
        if not os.access(python, os.X_OK):
            continue
        probe = subprocess.run([python, "-c", "import sglang_router"], capture_output=True)
        if probe.returncode == 0:
            return [python, "-m", "sglang_router.launch_router"]
    return None


def vllm_router_cmd():
    binary = os.environ.get("VLLM_ROUTER_BIN") or shutil.which("vllm-router")
    return [binary] if binary and os.access(binary, os.X_OK) else None


ROUTERS = {"sglang-router": sglang_router_cmd, "vllm-router": vllm_router_cmd}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=sorted(ROUTERS))
def routed(request):
    name = request.param
    cmd = ROUTERS[name]()
    if cmd is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it; see this file's docstring)")
    workers = [Sim("--served-model-name", "sim", *SMALL_ENGINE) for _ in range(2)]
    port, metrics_port = free_port(), free_port()
    log = tempfile.TemporaryFile(mode="w+")
    argv = [
        *cmd,
        "--host", "127.0.0.1", "--port", str(port),
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port),
        "--policy", "round_robin",
        "--worker-urls", *[w.url for w in workers],
    ]
    router = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_workers(url, router, log, want=2)
        yield name, url, workers
    finally:
        router.terminate()
        router.wait(timeout=10)
        log.close()
        for w in workers:
            w.stop()


def wait_for_workers(url, router, log, want):
    """Polls the router's /workers until `want` healthy workers are registered."""
    deadline = time.monotonic() + ROUTER_START_TIMEOUT_S
    while time.monotonic() < deadline and router.poll() is None:
        try:
            workers = httpx.get(f"{url}/workers", timeout=2).json().get("workers", [])
            if sum(1 for w in workers if w.get("is_healthy")) >= want:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    log.seek(0)
    raise RuntimeError(f"the router never registered {want} workers:\n{log.read()[-4000:]}")


def test_router_registers_and_routes_to_brix_sim(routed):
    name, url, workers = routed
    listed = httpx.get(f"{url}/workers").json()["workers"]
    assert sorted(w["url"] for w in listed) == sorted(w.url for w in workers)
    if name == "sglang-router":
        # sglang-router keeps what /get_server_info told it; vllm-router does not report it.
        assert all(w["metadata"]["model_path"] == "meta-llama/Meta-Llama-3-8B-Instruct" for w in listed)

    body = {"model": "sim", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    for _ in range(4):
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["role"] == "assistant"

    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=30) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"

    # Round robin spread the requests over both simulated engines.
    for w in workers:
        text = httpx.get(f"{w.url}/metrics").text
        done = [line for line in text.splitlines() if line.startswith("vllm:request_success_total{")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in done) >= 2, w.url
