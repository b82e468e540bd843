"""A ModelAdapter on the cluster, ported in spirit from AIBrix's model_adapter_test.go: the
controller loads the adapter on pods picked by podSelector, the status turns Running with a Ready
condition and instances, the gateway routes the adapter's name to exactly those pods, and a
delete unloads it (the finalizer) so the name stops routing."""

import openai
import pytest
from conftest import MODEL, NAMESPACE, apply, eventually, kubectl, kubectl_json

ADAPTER = "text2sql-lora"


def adapter_status():
    obj = kubectl_json("get", "modeladapters.model.aibrix.ai", ADAPTER, "-n", NAMESPACE)
    return obj.get("status") or {}


def ready(status):
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions", []))


@pytest.fixture
def adapter(engine_pods):
    apply({
        "apiVersion": "model.aibrix.ai/v1alpha1", "kind": "ModelAdapter",
        "metadata": {"name": ADAPTER, "labels": {"model.aibrix.ai/name": ADAPTER}},
        "spec": {
            "baseModel": MODEL,
            "podSelector": {"matchLabels": {"model.aibrix.ai/name": MODEL,
                                            "adapter.model.aibrix.ai/enabled": "true"}},
            "artifactURL": "huggingface://yard1/llama-2-7b-sql-lora-test",
            "schedulerName": "default",
            "replicas": 2,
        },
    })
    yield ADAPTER
    kubectl("delete", "modeladapters.model.aibrix.ai", ADAPTER, "-n", NAMESPACE,
            "--ignore-not-found", "--wait=false", check=False)


def test_adapter_becomes_ready_and_routes(client, engine_pods, adapter):
    status = eventually(lambda: (s := adapter_status()) and ready(s) and s, 180,
                        "the ModelAdapter Running and Ready")
    instances = set(status.get("instances") or [])
    assert instances and instances <= set(engine_pods), status
    assert len(instances) == 2, f"replicas: 2 but instances {instances}"

    def served():
        raw = client.chat.completions.with_raw_response.create(
            model=adapter, messages=[{"role": "user", "content": "SELECT?"}], max_tokens=4)
        return raw.headers["target-pod"]
    pods = {eventually(served, 60, "the gateway routing the adapter") for _ in range(10)}
    assert pods <= instances, f"adapter requests went to {pods}, not only {instances}"


def test_adapter_delete_unloads(client, engine_pods, adapter):
    eventually(lambda: ready(adapter_status()), 180, "the ModelAdapter Ready")
    kubectl("delete", "modeladapters.model.aibrix.ai", adapter, "-n", NAMESPACE,
            "--timeout=120s")  # waits for the finalizer: the unloads are done

    def refused():
        try:
            client.chat.completions.create(
                model=adapter, messages=[{"role": "user", "content": "x"}], max_tokens=2)
        except openai.BadRequestError as e:
            return e.code == "model_not_found"
        return False
    eventually(refused, 60, "the deleted adapter no longer routed")
