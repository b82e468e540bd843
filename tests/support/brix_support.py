"""Helpers shared by the pytest suites that run `brix` against real servers (tests/lora,
tests/runtime): paths, a free port, waiting on HTTP, a tiny LoRA adapter, and a real
S3-compatible server (moto). Each suite's conftest puts this folder on sys.path and imports it.

moto comes from the test venv (scripts/test installs `moto[server]`); real vLLM and its tiny
model from .venv-vllm and .vllm-tiny (scripts/vllm-cpu).
"""

import json
import os
import pathlib
import shutil
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


def wait_http(url: str, timeout: float, proc=None, ok=lambda r: True) -> None:
    """Waits until `url` answers and `ok(response)` holds; fails early if `proc` exits."""
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


def moto_s3(what: str):
    """Body of a session fixture: a moto S3 server on a free port with an `adapters` bucket,
    yielding (endpoint URL, boto3 client). Missing moto skips `what` loudly, fails with CI."""
    if not os.path.exists(MOTO):
        if os.environ.get("CI"):
            pytest.fail(f"moto_server not found at {MOTO}: scripts/test installs moto[server]")
        banner(f"moto_server not found at {MOTO}: {what} are skipped")
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
