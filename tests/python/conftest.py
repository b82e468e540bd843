"""Launches the already-built `brix sim` binary on a free port for the tests in this folder.

The binary comes from $BRIX_BIN (default: target/debug/brix under the repository root); the
fixture starts it with `--port 0` and reads the port from its one stdout line.
"""

import os
import pathlib
import re
import selectors
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BRIX_BIN = os.environ.get("BRIX_BIN", str(ROOT / "target" / "debug" / "brix"))
LISTENING = re.compile(r"^brix (?:sim|gateway) listening on (http://\S+)$")
START_TIMEOUT_S = 60

# A small, fast engine: H200 step times, 512 KV blocks, 2k context, 4-token answers.
SMALL_ENGINE = [
    "--gpu", "H200",
    "--num-gpu-blocks-override", "512",
    "--max-model-len", "2048",
    "--output-len", "fixed:4",
]


class Sim:
    """One running `brix sim` process (or, with `command`, another listening `brix` subcommand)."""

    def __init__(self, *args: str, command: tuple = ("sim", "--port", "0")) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")
        argv = [BRIX_BIN, *command, *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.url = self._wait_for_listening_line()

    def _wait_for_listening_line(self) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=START_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        match = LISTENING.match(line.strip())
        if match is None:
            self.stop()
            self.log.seek(0)
            raise RuntimeError(f"brix {self.proc.args[1]} did not start (stdout {line!r}):\n{self.log.read()}")
        return match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def sim():
    """A LoRA-enabled server named `sim`, shared by one test module."""
    server = Sim("--served-model-name", "sim", "--enable-lora", "--max-loras", "2", *SMALL_ENGINE)
    yield server
    server.stop()


class Gateway(Sim):
    """`brix gateway` in front of the given engines, all serving `model`."""

    def __init__(self, model: str, engines: list, *args: str) -> None:
        self.endpoints = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        addrs = ", ".join(f'"{e.url.removeprefix("http://")}"' for e in engines)
        self.endpoints.write(f"models:\n  - name: {model}\n    endpoints: [{addrs}]\n")
        self.endpoints.close()
        super().__init__(
            "--endpoints", self.endpoints.name, *args,
            command=("gateway", "--listen", "127.0.0.1:0"),
        )

    def stop(self) -> None:
        super().stop()
        os.unlink(self.endpoints.name)


@pytest.fixture(scope="module")
def fleet():
    """Three small engines named `sim` behind one `brix gateway`."""
    engines = [Sim("--served-model-name", "sim", "--seed", str(i), *SMALL_ENGINE) for i in range(3)]
    gateway = Gateway("sim", engines)
    yield gateway, engines
    gateway.stop()
    for e in engines:
        e.stop()
