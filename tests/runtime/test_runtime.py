"""`brix runtime` in front of `brix sim` and in front of real vLLM (CPU build, tiny model): a
delegated adapter load from a moto S3 bucket, a completion on the adapter, the standard metric
names on the runtime's /metrics, unload with cleanup, and the key on every change."""

import pathlib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BRIX_BIN, KEY, Runtime, upload

STANDARD = ["aibrix:queue_size", "aibrix:num_requests_running", "aibrix:kv_cache_usage_perc"]


def test_runtime_refuses_to_start_without_a_key(tmp_path):
    import subprocess
    out = subprocess.run([BRIX_BIN, "runtime", "--engine-url", "http://127.0.0.1:9",
                          "--listen", "127.0.0.1:0", "--models-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "--allow-anonymous" in out.stderr, out.stderr


@pytest.mark.parametrize("engine", ["sim", "vllm"], indirect=True)
def test_delegated_load_from_s3_serves_and_unloads(engine, s3, tmp_path):
    engine_url, adapter_dir = engine
    s3_url, client = s3
    prefix = f"runtime-{tmp_path.name}/sql"
    upload(client, pathlib.Path(adapter_dir), prefix)
    rt = Runtime(engine_url, tmp_path)
    try:
        assert rt.http.get("/healthz").status_code == 200
        assert rt.http.get("/ready").status_code == 200
        body = {
            "lora_name": "sql",
            "artifact_url": f"s3://adapters/{prefix}/",
            "credentials": {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                            "AWS_REGION": "us-east-1"},
            "additional_config": {"AWS_ENDPOINT_URL": s3_url, "api-key": KEY},
        }
        refused = rt.post("/v1/lora_adapter/load", body, key=None)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["type"] == "authentication_error"
        assert "sql" not in rt.model_ids()

        r = rt.post("/v1/lora_adapter/load", body)
        assert r.status_code == 200, f"{r.text}\n{rt.proc.logs()}"
        local = pathlib.Path(r.json()["local_path"])
        assert local.is_relative_to(rt.models_dir), local
        assert (local / "adapter_config.json").is_file()
        assert "sql" in rt.model_ids()

        c = httpx.post(f"{engine_url}/v1/completions", timeout=120,
                       json={"model": "sql", "prompt": "select", "max_tokens": 4})
        assert c.status_code == 200, c.text
        assert c.json()["model"] == "sql"

        m = rt.http.get("/metrics")
        assert m.status_code == 200
        names = {s.name for f in text_string_to_metric_families(m.text) for s in f.samples}
        for name in STANDARD:
            assert name in names, f"{name} missing from the runtime's /metrics"
        assert "brix_runtime_adapter_loads_total" in names

        r = rt.post("/v1/lora_adapter/unload", {"lora_name": "sql", "cleanup_local": True})
        assert r.status_code == 200, r.text
        assert not local.exists(), "cleanup_local removes the download"
        assert "sql" not in rt.model_ids()
        again = rt.post("/v1/lora_adapter/unload", {"lora_name": "sql"})
        assert again.status_code == 404, again.text
    finally:
        rt.stop()


def metric_names(rt: Runtime) -> set:
    m = rt.http.get("/metrics")
    assert m.status_code == 200, m.text
    return {s.name for f in text_string_to_metric_families(m.text) for s in f.samples}


@pytest.mark.parametrize("engine", ["sim"], indirect=True)
def test_metric_rules_file_and_modes(engine, tmp_path):
    engine_url, _ = engine
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nfrom = "vllm:num_requests_waiting"\nto = "site:waiting"\n')
    for args, present, absent in [
        (["--metric-rules", str(rules)], {"site:waiting", "aibrix:num_requests_running"},
         {"aibrix:queue_size", "vllm:num_requests_waiting"}),
        (["--metrics-mode", "keep-original"], {"aibrix:queue_size", "vllm:num_requests_waiting"},
         set()),
        (["--metrics-mode", "passthrough"], {"vllm:num_requests_waiting"},
         {"aibrix:queue_size", "aibrix:kv_cache_usage_perc"}),
    ]:
        work = tmp_path / args[-1].replace("/", "_")
        work.mkdir()
        rt = Runtime(engine_url, work, *args)
        try:
            names = metric_names(rt)
            assert present <= names, (args, present - names)
            assert not (absent & names), (args, absent & names)
            assert "brix_runtime_engine_up" in names
        finally:
            rt.stop()
        assert rt.proc.proc.returncode == 0, f"SIGTERM is a clean stop\n{rt.proc.logs()}"
