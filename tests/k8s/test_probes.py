"""The chart's probe paths against a real `brix gateway`: the liveness and readiness paths the
rendered Deployment names answer 200, without an API key even when the gateway requires one
(kubelet probes send none); /ready once the engine behind it is healthy."""

import os
import re
import selectors
import subprocess
import tempfile
import time

import httpx
import pytest
from conftest import RELEASE, render

LISTENING = re.compile(r"^brix (?:sim|gateway) listening on (http://\S+)$")
START_TIMEOUT_S = 60


class Proc:
    """A `brix` subcommand that prints its listening line on stdout."""

    def __init__(self, brix, *args):
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([brix, *args], stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = self.proc.stdout.readline() if sel.select(timeout=START_TIMEOUT_S) else ""
        match = LISTENING.match(line.strip())
        if match is None:
            self.stop()
            raise RuntimeError(f"brix {args[0]} did not start: {line!r}")
        self.url = match.group(1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def eventually(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last or time.monotonic() > deadline:
            return last
        time.sleep(0.1)


@pytest.fixture(scope="module")
def gateway(brix):
    sim = Proc(brix, "sim", "--port", "0", "--served-model-name", "m", "--gpu", "H200",
               "--num-gpu-blocks-override", "512", "--max-model-len", "2048")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(f'models:\n  - name: m\n    endpoints: ["{sim.url.removeprefix("http://")}"]\n')
    gw = Proc(brix, "gateway", "--listen", "127.0.0.1:0", "--endpoints", f.name,
              "--api-key", "sk-probe-test")
    yield gw
    gw.stop()
    sim.stop()
    os.unlink(f.name)


def probe_paths(helm, tmp_path_factory):
    paths = set()
    for values in ({}, {"gateway": {"readinessPath": "/ready"}}):
        docs = render(helm, values, tmp_path_factory.mktemp("probes"))
        (gw,) = [d for d in docs if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == f"{RELEASE}-gateway"]
        (c,) = gw["spec"]["template"]["spec"]["containers"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] == "http"
            paths.add(c[probe]["httpGet"]["path"])
    return paths


def test_probe_paths_answer_without_a_key(helm, tmp_path_factory, gateway):
    paths = probe_paths(helm, tmp_path_factory)
    assert paths == {"/health", "/ready"}
    # The API key is enforced on the API, so a probe passing without it is not an open door.
    r = httpx.post(f"{gateway.url}/v1/completions", json={"model": "m", "prompt": "x"},
                   timeout=10)
    assert r.status_code == 401
    for path in sorted(paths):
        status = eventually(lambda: httpx.get(gateway.url + path, timeout=5).status_code == 200)
        assert status, f"{path} did not answer 200"
