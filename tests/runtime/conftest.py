"""Fixtures for the runtime sidecar tests: a real S3-compatible server (moto), an engine (`brix
sim`, or real vLLM from .venv-vllm serving .vllm-tiny), and `brix runtime` in front of it.

moto comes from the test venv (scripts/test installs `moto[server]`); real vLLM and its tiny
model from .venv-vllm and .vllm-tiny (scripts/vllm-cpu). A missing vLLM skips loudly; a missing
moto skips loudly, and fails with CI set.
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BRIX_BIN = os.environ.get("BRIX_BIN", str(ROOT / "target" / "debug" / "brix"))
VLLM_VENV = pathlib.Path(os.environ.get("BRIX_VLLM_VENV", ROOT / ".venv-vllm"))
VLLM_MODEL = pathlib.Path(os.environ.get("BRIX_VLLM_MODEL", ROOT / ".vllm-tiny"))
MOTO = os.environ.get("BRIX_MOTO_SERVER") or shutil.which("moto_server") or str(
    pathlib.Path(sys.executable).parent / "moto_server"
)
KEY = "runtime-test-key"
VLLM_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_NO_USAGE_STATS": "1",
    "VLLM_TARGET_DEVICE": "cpu", "VLLM_LOGGING_LEVEL": "WARNING",
}


def banner(text: str) -> None:
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc=None, ok=lambda r: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            if ok(httpx.get(url, timeout=5)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def write_adapter(d: pathlib.Path, r: int, base: str = "base") -> pathlib.Path:
    """A tiny valid PEFT adapter: adapter_config.json and a hand-written safetensors file."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "base_model_name_or_path": base,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "task_type": "CAUSAL_LM",
    }))
    cols = 64
    header = json.dumps({"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": {
        "dtype": "BF16", "shape": [r, cols], "data_offsets": [0, r * cols * 2]}}).encode()
    (d / "adapter_model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + bytes(r * cols * 2))
    return d


def vllm_available() -> str | None:
    """Why real vLLM cannot run here, or None when it can."""
    if os.environ.get("BRIX_SKIP_VLLM") == "1":
        return "BRIX_SKIP_VLLM=1"
    if not (VLLM_VENV / "bin" / "vllm").exists():
        return f"no vLLM at {VLLM_VENV} (scripts/vllm-cpu installs it)"
    if not (VLLM_MODEL / "lora-r8" / "adapter_config.json").exists():
        return f"no tiny model and adapters at {VLLM_MODEL}"
    return None


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on a free port with an `adapters` bucket: (endpoint URL, boto3 client)."""
    if not os.path.exists(MOTO):
        if os.environ.get("CI"):
            pytest.fail(f"moto_server not found at {MOTO}: scripts/test installs moto[server]")
        banner(f"moto_server not found at {MOTO}: the runtime S3 tests are skipped")
        pytest.skip("moto_server missing")
    import boto3

    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, 30, proc)
        client = boto3.client("s3", endpoint_url=url, aws_access_key_id="test",
                              aws_secret_access_key="test", region_name="us-east-1")
        client.create_bucket(Bucket="adapters")
        yield url, client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def upload(client, src: pathlib.Path, prefix: str) -> None:
    for f in sorted(src.iterdir()):
        if f.is_file():
            client.upload_file(str(f), "adapters", f"{prefix}/{f.name}")


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
