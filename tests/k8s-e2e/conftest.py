"""Fixtures for the end-to-end suite on a real cluster (kind or any KUBECONFIG): the chart
installed into a fresh namespace, `brix sim` engine pods labelled as AIBrix discovers them, and
the gateway Service port-forwarded to a local port. Run it with scripts/e2e-k8s.

Environment: BRIX_E2E_IMAGE (default brix:0.1.0; the cluster must be able to pull it, e.g.
`kind load docker-image`), BRIX_E2E_NAMESPACE (default brix-e2e), BRIX_E2E_KEEP=1 keeps the
namespace and release after the run, BRIX_HELM (else the helm tests/k8s caches).
Without a reachable cluster every test skips ('SKIPPED: no cluster reachable').
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "k8s"))
import helmbin  # noqa: E402  (shared with the offline chart tests)

CHART = ROOT / "deploy" / "helm" / "brix"
IMAGE = os.environ.get("BRIX_E2E_IMAGE", "brix:0.1.0")
NAMESPACE = os.environ.get("BRIX_E2E_NAMESPACE", "brix-e2e")
RELEASE = "brix"
# AIBrix's e2e constants (test/e2e/util.go): model name and gateway key.
MODEL = "llama2-7b"
API_KEY = "test-key-1234567890"
ENGINES = 3
DEPLOY_TIMEOUT_S = 300
KUBECTL_TIMEOUT_S = 120


def kubectl(*args, input=None, check=True, timeout=KUBECTL_TIMEOUT_S):
    out = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def kubectl_json(*args):
    return json.loads(kubectl(*args, "-o", "json"))


def apply(obj: dict):
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(obj))


def eventually(check, timeout, what, interval=1.0):
    """Polls `check` until it returns a truthy value (returned) or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # a transient API or connection error: retried until the deadline
            last = e
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def cluster_reachable() -> str:
    """'' when `kubectl cluster-info` answers, else why not."""
    try:
        out = subprocess.run(["kubectl", "cluster-info", "--request-timeout=5s"],
                             capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "kubectl not found"
    except subprocess.TimeoutExpired:
        return "kubectl cluster-info timed out"
    return "" if out.returncode == 0 else (out.stderr.strip().splitlines() or ["failed"])[-1]


def pytest_collection_modifyitems(config, items):
    why = cluster_reachable()
    if why:
        skip = pytest.mark.skip(reason=f"SKIPPED: no cluster reachable ({why})")
        for item in items:
            item.add_marker(skip)


def engine_deployment(name, model, replicas, extra_args=()):
    """`brix sim` pods labelled as AIBrix's gateway discovers them (aibrix.md §1.8)."""
    repo, _, tag = IMAGE.rpartition(":")
    labels = {"app": name, "model.aibrix.ai/name": model, "model.aibrix.ai/port": "8000",
              "adapter.model.aibrix.ai/enabled": "true"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                    "containers": [{
                        "name": "engine", "image": f"{repo}:{tag}",
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["sim", "--host", "0.0.0.0", "--port", "8000",
                                 "--served-model-name", model, "--gpu", "H200",
                                 "--num-gpu-blocks-override", "2048", "--max-model-len", "4096",
                                 "--enable-lora", "--max-loras", "4", *extra_args],
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                           "periodSeconds": 2},
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def ready_pods(selector):
    pods = kubectl_json("get", "pods", "-n", NAMESPACE, "-l", selector)["items"]
    return {p["metadata"]["name"]: p["status"].get("podIP") for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", []))}


@pytest.fixture(scope="session")
def deployed():
    """The chart (2 gateways with Redis sync, 2 leader-elected controllers) and the engines."""
    helm = helmbin.helm_path()
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("create", "secret", "generic", "brix-api-keys", "-n", NAMESPACE,
            f"--from-literal=api-key={API_KEY}", check=False)
    # Helm installs crds/ only on first install and never upgrades them.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    repo, _, tag = IMAGE.rpartition(":")
    values = {
        "image": {"repository": repo, "tag": tag},
        "gateway": {"watchNamespace": NAMESPACE,
                    "apiKeys": {"existingSecret": "brix-api-keys", "secretKeys": ["api-key"]}},
        "controllers": {"watchNamespace": NAMESPACE},
        "redis": {"enabled": True},
    }
    values_file = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"brix-e2e-{os.getpid()}.json"
    values_file.write_text(json.dumps(values))
    out = subprocess.run([helm, "upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE,
                          "-f", str(values_file), "--wait", "--timeout", f"{DEPLOY_TIMEOUT_S}s"],
                         capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S + 60)
    values_file.unlink()
    if out.returncode != 0:
        pytest.fail(f"helm install failed:\n{out.stdout}{out.stderr}\n"
                    + kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False))
    apply(engine_deployment("sim-llama2", MODEL, ENGINES))
    kubectl("rollout", "status", "deployment/sim-llama2", "-n", NAMESPACE,
            f"--timeout={DEPLOY_TIMEOUT_S}s", timeout=DEPLOY_TIMEOUT_S + 30)
    yield
    if os.environ.get("BRIX_E2E_KEEP") != "1":
        subprocess.run([helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait"],
                       capture_output=True, timeout=DEPLOY_TIMEOUT_S)
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gateway_url(deployed):
    """The gateway Service on localhost (kubectl port-forward, as AIBrix's e2e does on 8888)."""
    port = free_port()
    proc = subprocess.Popen(["kubectl", "port-forward", "-n", NAMESPACE,
                             f"svc/{RELEASE}-gateway", f"{port}:8888"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    eventually(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 60,
               "the port-forwarded gateway")
    # The gateway has discovered the engines once the model is listed.
    eventually(lambda: MODEL in models(url), 120, f"{MODEL} in /v1/models")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def models(url):
    r = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    return {m["id"] for m in r.json().get("data", [])} if r.status_code == 200 else set()


@pytest.fixture(scope="session")
def client(gateway_url):
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=API_KEY, max_retries=0,
                         timeout=60)


@pytest.fixture(scope="session")
def engine_pods(deployed):
    pods = eventually(lambda: (p := ready_pods(f"model.aibrix.ai/name={MODEL}"))
                      and len(p) == ENGINES and p, 120, f"{ENGINES} ready engine pods")
    return pods
