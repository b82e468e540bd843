"""Starts a real vLLM 0.32 (CPU build, tiny random model) and `brix sim` with the same settings,
once per session, for the side-by-side checks in this folder.

vLLM comes from .venv-vllm and the model from .vllm-tiny (both made by scripts/vllm-cpu), or
is one already running at BRIX_VLLM_URL (started with the flags below). When either is missing, or vLLM does not come up, every test here is skipped after a loud banner;
BRIX_SKIP_VLLM=1 skips them on purpose. Each difference found is recorded (see compare.py) and
the whole list is printed at the end of the run.
"""

import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compare  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
BRIX_BIN = os.environ.get("BRIX_BIN", str(ROOT / "target" / "debug" / "brix"))
VENV = pathlib.Path(os.environ.get("BRIX_VLLM_VENV", ROOT / ".venv-vllm"))
MODEL = pathlib.Path(os.environ.get("BRIX_VLLM_MODEL", ROOT / ".vllm-tiny"))
VLLM_START_TIMEOUT_S = float(os.environ.get("BRIX_VLLM_START_TIMEOUT", "300"))
SIM_START_TIMEOUT_S = 60
MAX_MODEL_LEN = 512
NAME = "tiny"

VLLM_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_LOGGING_LEVEL": "WARNING",
}

# Why the suite cannot run, when it cannot; set once by the session fixture.
_unavailable = None


def banner(text: str) -> None:
    """A message nobody reading CI output can miss (past pytest's capture; repeated in the
    end-of-run summary)."""
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A server someone else started (BRIX_VLLM_URL, to iterate on the suite without waiting
    for vLLM's start-up each run)."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url.rstrip("/")
        httpx.get(self.url + "/health", timeout=10).raise_for_status()

    def stop(self) -> None:
        pass


class Server:
    """One running server process, its base URL and its log."""

    def __init__(self, name: str, argv: list, env: dict, port: int, timeout_s: float) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"conformance-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def sim_supports(flag: str) -> bool:
    out = subprocess.run([BRIX_BIN, "sim", "--help"], capture_output=True, text=True, timeout=30)
    return flag in out.stdout


def start_vllm():
    if os.environ.get("BRIX_VLLM_URL"):
        return Running("vllm", os.environ["BRIX_VLLM_URL"])
    port = free_port()
    env = {**os.environ, **VLLM_ENV}
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"
    argv = [
        str(VENV / "bin" / "vllm"), "serve", str(MODEL / "base"),
        "--served-model-name", NAME, "--port", str(port), "--host", "127.0.0.1",
        "--enable-lora", "--max-loras", "2", "--max-lora-rank", "8",
        "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "bfloat16",
    ]
    return Server("vllm", argv, env, port, VLLM_START_TIMEOUT_S)


def start_sim() -> Server:
    port = free_port()
    argv = [
        BRIX_BIN, "sim", "--port", str(port), "--served-model-name", NAME,
        "--max-model-len", str(MAX_MODEL_LEN), "--enable-lora", "--max-loras", "2",
        "--max-lora-rank", "8", "--gpu", "H200", "--num-gpu-blocks-override", "512",
        # Answers as long as max_tokens allows, as a random model does (it almost never
        # samples its EOS).
        "--output-len", "fixed:100000", "--seed", "1",
    ]
    if sim_supports("--tokenizer"):
        argv += ["--tokenizer", str(MODEL / "base")]
    return Server("sim", argv, dict(os.environ), port, SIM_START_TIMEOUT_S)


def start_sim_builtin() -> Server:
    """A `brix sim` with its built-in tokenizer (no --tokenizer)."""
    port = free_port()
    argv = [BRIX_BIN, "sim", "--port", str(port), "--gpu", "H200", "--num-gpu-blocks-override", "1024"]
    return Server("sim-builtin", argv, dict(os.environ), port, SIM_START_TIMEOUT_S)


class Pair:
    """The two servers; `both` sends one request to each and returns (vllm, sim) replies."""

    def __init__(self, vllm: Server, sim: Server) -> None:
        self.vllm, self.sim = vllm, sim
        self.clients = {
            s.name: httpx.Client(base_url=s.url, timeout=httpx.Timeout(120, connect=10)) for s in (vllm, sim)
        }

    def one(self, server: str, method: str, path: str, **kw) -> httpx.Response:
        return self.clients[server].request(method, path, **kw)

    def both(self, method: str, path: str, **kw):
        return self.one("vllm", method, path, **kw), self.one("sim", method, path, **kw)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


@pytest.fixture(scope="session")
def pair():
    global _unavailable
    if os.environ.get("BRIX_SKIP_VLLM") == "1":
        pytest.skip("BRIX_SKIP_VLLM=1: vLLM conformance suite skipped")
    if _unavailable:
        pytest.skip(_unavailable)
    if not (VENV / "bin" / "vllm").exists() or not (MODEL / "base" / "config.json").exists():
        _unavailable = f"no vLLM install at {VENV} or no model at {MODEL} (run scripts/vllm-cpu)"
    else:
        try:
            vllm = start_vllm()
        except Exception as e:  # noqa: BLE001 - any failure to start means: skip, loudly
            _unavailable = f"real vLLM did not start: {e}"
    if _unavailable:
        banner(f"vLLM CONFORMANCE SUITE SKIPPED: {_unavailable}")
        pytest.skip(_unavailable)
    try:
        sim = start_sim()
    except Exception:
        vllm.stop()
        raise
    p = Pair(vllm, sim)
    yield p
    p.close()
    sim.stop()
    vllm.stop()


@pytest.fixture
def builtin_sim():
    """A `brix sim` with its built-in tokenizer, for one test."""
    server = start_sim_builtin()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def brix_bin():
    return BRIX_BIN


@pytest.fixture(scope="session")
def model_dir():
    return MODEL


@pytest.fixture(scope="session")
def vllm_python():
    return VENV / "bin" / "python"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Fails a test with every non-deliberate difference it recorded, after it ran (an
    assertion of its own, if it failed, is reported first)."""
    compare.take_failures()
    outcome = yield
    failures = compare.take_failures()
    if failures and outcome.excinfo is None:
        outcome.force_exception(pytest.fail.Exception(failures, pytrace=False))
    elif failures:
        sys.stderr.write(failures + "\n")


def pytest_terminal_summary(terminalreporter):
    if _unavailable:
        terminalreporter.write_sep("!", "vLLM CONFORMANCE SUITE SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"!! {_unavailable}", red=True, bold=True)
        terminalreporter.write_sep("!", red=True, bold=True)
    compare.print_report(terminalreporter)
