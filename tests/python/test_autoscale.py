"""`brix up` acting on a PodAutoscaler whose external metric source is an exposition served by
the Python `prometheus_client` library (a third-party writer of the text format): the gauge
goes up, the model scales up; it goes down, the model scales back; `brix status --json` shows
the autoscaler and its decisions."""

import json
import subprocess
import tempfile
import time

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from conftest import BRIX_BIN, Sim

FLEET = """\
models:
  - name: m
    replicas: 1
    engine:
      sim: {{gpu: H200, num_gpu_blocks_override: 512}}
resources:
  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: m-kpa
      annotations:
        autoscaling.brix.dev/sync-period: 1s
        autoscaling.aibrix.ai/scale-down-cooldown-window: 2s
    spec:
      scaleTargetRef: {{name: m}}
      minReplicas: 1
      maxReplicas: 3
      observeWindowSeconds: 4
      panicWindowSeconds: 2
      scalingStrategy: KPA
      metricsSources:
        - {{metricSourceType: external, endpoint: '127.0.0.1:{port}', path: /metrics, targetMetric: demand, targetValue: '10'}}
"""


def _status(url: str) -> dict:
    out = subprocess.run(
        [BRIX_BIN, "status", "--json", "--endpoint", url], capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    (model,) = json.loads(out.stdout)
    return model


def _wait_for(url: str, what: str, check, within_s: float = 60.0) -> dict:
    deadline = time.monotonic() + within_s
    while True:
        model = _status(url)
        if check(model):
            return model
        assert time.monotonic() < deadline, f"never happened: {what}: {json.dumps(model)}"
        time.sleep(0.2)


def _ready(model: dict) -> int:
    return sum(r["state"] == "ready" for r in model["replicas"])


def _live(model: dict) -> int:
    return sum(r["state"] != "draining" for r in model["replicas"])


def test_a_prometheus_client_gauge_scales_the_model_up_and_down():
    registry = CollectorRegistry()
    demand = Gauge("demand", "Load on the model, in units of one replica's target.", registry=registry)
    demand.set(10)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    work = tempfile.TemporaryDirectory()
    fleet = f"{work.name}/fleet.yaml"
    with open(fleet, "w") as f:
        f.write(FLEET.format(port=server.server_port))
    up = Sim(fleet, "--listen", "127.0.0.1:0", "--logs-dir", f"{work.name}/logs", command=("up",))
    try:
        model = _wait_for(up.url, "a decision", lambda m: len(m["autoscaler"]["decisions"]) >= 1)
        assert model["autoscaler"]["strategy"] == "KPA"
        assert model["autoscaler"]["targets"] == ["demand=10"]
        demand.set(30)
        model = _wait_for(up.url, "3 ready replicas", lambda m: _ready(m) == 3)
        assert model["autoscaler"]["desired"] == 3
        demand.set(10)
        model = _wait_for(up.url, "back to 1 replica", lambda m: _live(m) == 1)
        assert model["autoscaler"]["desired"] == 1
        assert model["autoscaler"]["scale_events"] >= 2
        assert all("->" in d["reason"] for d in model["autoscaler"]["decisions"])
    finally:
        up.stop()
        server.shutdown()
        thread.join()
        work.cleanup()
