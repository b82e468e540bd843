"""Fixtures for the ModelAdapter end-to-end tests: a real S3-compatible server (moto), LoRA
adapters on disk, and `brix up` from a fleet file written per test.

moto comes from the test venv (scripts/test installs `moto[server]`); real vLLM and its tiny
model from .venv-vllm and .vllm-tiny (scripts/vllm-cpu). A missing piece skips loudly, and
with CI set a missing moto fails.
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


def banner(text: str) -> None:
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
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


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on a free port: (endpoint URL, boto3 client)."""
    if not os.path.exists(MOTO):
        if os.environ.get("CI"):
            pytest.fail(f"moto_server not found at {MOTO}: scripts/test installs moto[server]")
        banner(f"moto_server not found at {MOTO}: the S3 adapter tests are skipped")
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


def vllm_available() -> str | None:
    """Why real vLLM cannot run here, or None when it can."""
    if os.environ.get("BRIX_SKIP_VLLM") == "1":
        return "BRIX_SKIP_VLLM=1"
    if not (VLLM_VENV / "bin" / "vllm").exists():
        return f"no vLLM at {VLLM_VENV} (scripts/vllm-cpu installs it)"
    if not (VLLM_MODEL / "lora-r8" / "adapter_config.json").exists():
        return f"no tiny model and adapters at {VLLM_MODEL}"
    return None


class Up:
    """`brix up FILE` as a user runs it, with its state (admin key, adapter cache) in a temp dir."""

    def __init__(self, fleet: str, workdir: pathlib.Path, ready_timeout: int = 120) -> None:
        self.dir = workdir
        self.file = workdir / "fleet.yaml"
        self.file.write_text(fleet)
        self.state = workdir / "state"
        self.env = {**os.environ, "BRIX_STATE_DIR": str(self.state)}
        self.log = open(workdir / "up.log", "w+")
        self.proc = subprocess.Popen(
            [BRIX_BIN, "up", str(self.file), "--listen", "127.0.0.1:0", "--logs-dir",
             str(workdir / "logs"), "--ready-timeout-s", str(ready_timeout)],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=self.env)
        self.url = None
        deadline = time.monotonic() + ready_timeout + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline()
            if line.startswith("brix gateway listening on "):
                self.url = line.split()[-1]
                break
        if self.url is None:
            self.stop()
            raise RuntimeError(f"brix up did not start:\n{self.logs()}")

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-6000:]

    def brix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([BRIX_BIN, *args, "--endpoint", self.url], capture_output=True,
                             text=True, timeout=30, env=self.env)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def status(self) -> list:
        return json.loads(self.brix("status", "--json").stdout)

    def adapter(self, name: str):
        for m in self.status():
            for a in m.get("adapters", []):
                if a["name"] == name:
                    return a
        return None

    def replicas(self, model: str) -> list:
        return next(m["replicas"] for m in self.status() if m["name"] == model)

    def until(self, what: str, check, timeout: float = 120):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"{what} not within {timeout} s; status {self.status()}\n{self.logs()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
