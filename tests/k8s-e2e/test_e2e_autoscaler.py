"""A PodAutoscaler on the cluster, in spirit of AIBrix's autoscaler e2e tests: a KPA on the
engines' own `num_requests_running` scales a `brix sim` Deployment up through its /scale
subresource while concurrent long generations run, and the status says so."""

import concurrent.futures
import threading

from conftest import (DEPLOY_TIMEOUT_S, NAMESPACE, apply, engine_deployment, eventually, kubectl,
                      kubectl_json)

NAME = "sim-scale"
MODEL = "sim-scale"


def test_podautoscaler_scales_a_deployment_under_load(client, deployed):
    apply(engine_deployment(NAME, MODEL, 1))
    kubectl("rollout", "status", f"deployment/{NAME}", "-n", NAMESPACE,
            f"--timeout={DEPLOY_TIMEOUT_S}s", timeout=DEPLOY_TIMEOUT_S + 30)
    apply({
        "apiVersion": "autoscaling.aibrix.ai/v1alpha1", "kind": "PodAutoscaler",
        "metadata": {"name": NAME},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 1, "maxReplicas": 3, "scalingStrategy": "KPA",
            "metricsSources": [{"metricSourceType": "pod", "protocolType": "http",
                                "port": "8000", "path": "/metrics",
                                "targetMetric": "num_requests_running", "targetValue": "2"}],
        },
    })
    stop = threading.Event()

    def load(_):
        while not stop.is_set():
            client.completions.create(model=MODEL, prompt="Write a long story.", max_tokens=400,
                                      extra_body={"ignore_eos": True})
    try:
        eventually(lambda: MODEL in {m.id for m in client.models.list().data}, 120,
                   f"{MODEL} discovered")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            workers = [pool.submit(load, i) for i in range(8)]
            scaled = eventually(
                lambda: (r := kubectl_json("get", "deployment", NAME, "-n", NAMESPACE)
                         ["spec"]["replicas"]) > 1 and r, 300, "the Deployment scaled up")
            stop.set()
            for w in workers:
                w.result(timeout=120)
        assert 1 < scaled <= 3
        status = kubectl_json("get", "podautoscalers.autoscaling.aibrix.ai", NAME,
                              "-n", NAMESPACE)["status"]
        assert status.get("desiredScale", 0) > 1, status
        assert status.get("lastScaleTime"), status
        assert status.get("scalingHistory"), status
        assert any(c.get("type") == "AbleToScale" and c.get("status") == "True"
                   for c in status.get("conditions", [])), status
    finally:
        stop.set()
        kubectl("delete", "podautoscalers.autoscaling.aibrix.ai", NAME, "-n", NAMESPACE,
                "--ignore-not-found", check=False)
        kubectl("delete", "deployment", NAME, "-n", NAMESPACE, "--ignore-not-found",
                check=False)
