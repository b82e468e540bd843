"""Fixtures for the ModelAdapter end-to-end tests: a real S3-compatible server (moto), LoRA
adapters on disk, and `brix up` from a fleet file written per test.

moto comes from the test venv (scripts/test installs `moto[server]`); real vLLM and its tiny
model from .venv-vllm and .vllm-tiny (scripts/vllm-cpu). A missing piece skips loudly, and
with CI set a missing moto fails.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "support"))

from brix_support import (  # noqa: E402  (re-exported for the tests: `from conftest import ...`)
    BRIX_BIN, MOTO, ROOT, VLLM_MODEL, VLLM_VENV, banner, free_port, moto_s3, upload,
    vllm_available, wait_http, write_adapter,
)


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on a free port: (endpoint URL, boto3 client)."""
    yield from moto_s3("the S3 adapter tests")


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
