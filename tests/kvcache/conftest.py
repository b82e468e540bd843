"""Fixtures for the LMCache compatibility tests: `brix kvcache serve` on a free port, a tiny RESP
client for looking inside the pool (DBSIZE, INFO), and the real LMCache from PyPI run by
.venv-lmcache's python (scripts/lmcache-cpu installs it next to .venv-vllm's torch).

When .venv-lmcache is missing the tests skip after a loud banner; with CI set they fail instead
(unless BRIX_SKIP_VLLM=1, which also skips the venv it is built on), so CI always runs them.
"""

import json
import os
import pathlib
import re
import selectors
import signal
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BRIX_BIN = os.environ.get("BRIX_BIN", str(ROOT / "target" / "debug" / "brix"))
LMCACHE_PYTHON = pathlib.Path(
    os.environ.get("BRIX_LMCACHE_PYTHON", ROOT / ".venv-lmcache" / "bin" / "python")
)
CLIENT = pathlib.Path(__file__).with_name("lmcache_client.py")
LISTENING = re.compile(r"^kvcache listening on (\S+)")
START_TIMEOUT_S = 30
CLIENT_TIMEOUT_S = 300
IO_TIMEOUT_S = 10


def banner(text: str) -> None:
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


@pytest.fixture(scope="session")
def lmcache_python() -> str:
    if not LMCACHE_PYTHON.exists():
        why = f"{LMCACHE_PYTHON} is missing: run scripts/lmcache-cpu (needs .venv-vllm)"
        if os.environ.get("CI") and os.environ.get("BRIX_SKIP_VLLM", "0") != "1":
            pytest.fail(why)
        banner(f"LMCache compatibility tests SKIPPED: {why}")
        pytest.skip(why)
    return str(LMCACHE_PYTHON)


class Pool:
    """One `brix kvcache serve` process; restartable on a new port (nothing survives it)."""

    def __init__(self, token=None) -> None:
        self.token = token
        self.proc = None
        self.start()

    def start(self) -> None:
        argv = [BRIX_BIN, "kvcache", "serve", "--listen", "127.0.0.1:0",
                "--capacity", "256MiB", "--max-value", "4MiB"]
        if self.token:
            argv += ["--token", self.token]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=START_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        m = LISTENING.match(line)
        if not m:
            self.stop()
            raise RuntimeError(f"brix kvcache serve did not start: {line!r}")
        self.addr = m.group(1)
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=IO_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=IO_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, scheme: str, password=None) -> str:
        auth = f":{password}@" if password else ""
        return f"{scheme}://{auth}{self.addr}"

    def command(self, *args: str):
        """One RESP command over a fresh connection (AUTH first when the pool has a token)."""
        cmds = ([["AUTH", self.token]] if self.token else []) + [list(args)]
        req = b"".join(
            b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in c)
            for c in cmds
        )
        with socket.create_connection((self.host, self.port), timeout=IO_TIMEOUT_S) as s:
            s.sendall(req)
            f = s.makefile("rb")
            replies = [read_reply(f) for _ in cmds]
        return replies[-1]


def read_reply(f):
    line = f.readline()
    tag, body = line[:1], line[1:-2]
    if tag == b"+":
        return body.decode()
    if tag == b":":
        return int(body)
    if tag == b"-":
        raise RuntimeError(body.decode())
    if tag == b"$":
        n = int(body)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    raise RuntimeError(f"unexpected reply {line!r}")


def info(pool: Pool) -> dict:
    text = pool.command("INFO")
    return dict(l.split(":", 1) for l in text.split("\r\n") if ":" in l)


@pytest.fixture
def pool():
    p = Pool()
    yield p
    p.stop()


@pytest.fixture
def token_pool():
    p = Pool(token="brix-test-token")
    yield p
    p.stop()


def run_lmcache(python: str, url: str, steps: str, env=None) -> list:
    """Runs the LMCache driver once (a fresh process, like a fresh engine) over `steps`
    (`store|fetch:PROMPT_SEED:CHUNKS,...`) and returns one result per step."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "LMCACHE_LOG_LEVEL": "WARNING", **(env or {})}
    proc = subprocess.run([python, str(CLIENT), url, steps], capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT_S, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"LMCache driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])["steps"]
