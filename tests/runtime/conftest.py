"""Fixtures for the runtime sidecar tests: a real S3-compatible server (moto), an engine (`brix
sim`, or real vLLM from .venv-vllm serving .vllm-tiny), and `brix runtime` in front of it.

moto comes from the test venv (scripts/test installs `moto[server]`); real vLLM and its tiny
model from .venv-vllm and .vllm-tiny (scripts/vllm-cpu). A missing vLLM skips loudly; a missing
moto skips loudly, and fails with CI set.
"""

import os
import pathlib
import signal
import subprocess
import sys

import httpx
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "support"))

from brix_support import (  # noqa: E402  (re-exported for the tests: `from conftest import ...`)
    BRIX_BIN, MOTO, ROOT, VLLM_MODEL, VLLM_VENV, banner, free_port, moto_s3, upload,
    vllm_available, wait_http, write_adapter,
)

KEY = "runtime-test-key"
VLLM_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_NO_USAGE_STATS": "1",
    "VLLM_TARGET_DEVICE": "cpu", "VLLM_LOGGING_LEVEL": "WARNING",
}


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on a free port with an `adapters` bucket: (endpoint URL, boto3 client)."""
    yield from moto_s3("the runtime S3 tests")


class Proc:
    """A child process in its own process group, its output in a log file; stopped (group
    and all) by `stop`."""

    def __init__(self, args: list, log: pathlib.Path, env: dict | None = None) -> None:
        self.log_path = log
        self.log = open(log, "w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass


@pytest.fixture
def engine(request, tmp_path):
    """An engine on a free port, by kind ("sim" or "vllm"): (base URL, adapter source dir)."""
    kind = request.param
    port = free_port()
    if kind == "sim":
        args = [BRIX_BIN, "sim", "--port", str(port), "--served-model-name", "base", "--gpu",
                "H200", "--num-gpu-blocks-override", "512", "--max-model-len", "2048",
                "--output-len", "fixed:4", "--enable-lora", "--max-loras", "2",
                "--max-cpu-loras", "4", "--max-lora-rank", "16"]
        adapter, env, timeout = write_adapter(tmp_path / "lora-src", 8), {}, 60
    else:
        why = vllm_available()
        if why:
            banner(f"real vLLM unavailable ({why}): the runtime-in-front-of-vLLM test is skipped")
            pytest.skip(why)
        args = [str(VLLM_VENV / "bin" / "vllm"), "serve", str(VLLM_MODEL / "base"),
                "--served-model-name", "base", "--port", str(port), "--host", "127.0.0.1",
                "--enable-lora", "--max-loras", "2", "--max-cpu-loras", "2",
                "--max-lora-rank", "16", "--max-model-len", "512", "--dtype", "bfloat16"]
        adapter, env, timeout = VLLM_MODEL / "lora-r8", VLLM_ENV, 300
    proc = Proc(args, tmp_path / f"{kind}.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout, proc.proc, ok=lambda r: r.status_code == 200)
    except RuntimeError as e:
        proc.stop()
        raise RuntimeError(f"{e}\n{proc.logs()}") from e
    yield url, adapter
    proc.stop()


class Runtime:
    """`brix runtime` as a user runs it, in front of `engine_url`."""

    def __init__(self, engine_url: str, workdir: pathlib.Path, *extra: str) -> None:
        self.models_dir = workdir / "runtime-models"
        self.proc = Proc([BRIX_BIN, "runtime", "--engine-url", engine_url, "--listen",
                          "127.0.0.1:0", "--models-dir", str(self.models_dir), *extra],
                         workdir / "runtime.log", {"BRIX_RUNTIME_API_KEY": KEY})
        line = self.proc.proc.stdout.readline()
        if not line.startswith("runtime listening on "):
            self.stop()
            raise RuntimeError(f"brix runtime did not start: {line!r}\n{self.proc.logs()}")
        self.url = "http://" + line.split()[-1]
        self.http = httpx.Client(base_url=self.url, timeout=120)

    def post(self, path: str, body: dict, key: str | None = KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.http.post(path, json=body, headers=headers)

    def model_ids(self) -> list:
        r = self.http.get("/v1/models")
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["data"]]

    def stop(self) -> None:
        self.proc.stop()
