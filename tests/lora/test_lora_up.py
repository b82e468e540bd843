"""Issue 11's 'done when', as a user meets it: a `brix up` file with two ModelAdapters (a local
path and an `s3://` artifact on a real S3-compatible server) serves both through the gateway to
the unmodified OpenAI SDK on the replicas asked for; killing a replica that holds one brings it
back reloaded while requests keep succeeding on the other holder; a deleted adapter is unloaded
everywhere; a bad artifact reports its reason in `brix status`. Once with `brix sim` engines,
once with real vLLM (CPU build, tiny model, real PEFT adapters) as the engine command.
"""

import json
import os
import signal
import tempfile
import pathlib
import threading

import httpx
import openai
import pytest

from conftest import BRIX_BIN, VLLM_MODEL, VLLM_VENV, Up, banner, upload, vllm_available, write_adapter

VLLM_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_NO_USAGE_STATS": "1",
    "VLLM_TARGET_DEVICE": "cpu", "VLLM_LOGGING_LEVEL": "WARNING",
}


def engine(kind: str) -> tuple[str, dict, int]:
    """(engine block of the fleet file, adapters to use, replicas)."""
    if kind == "sim":
        cmd = (f"{BRIX_BIN} sim --port {{port}} --served-model-name {{model}} --gpu H200 "
               "--num-gpu-blocks-override 512 --max-model-len 2048 --output-len fixed:4 "
               "--enable-lora --max-loras 2 --max-cpu-loras 4 --max-lora-rank 16")
        return f"command: {{command: '{cmd}', ready_timeout_s: 60, stop_grace_s: 2}}", {}, 2
    why = vllm_available()
    if why:
        banner(f"real vLLM unavailable ({why}): the vLLM ModelAdapter test is skipped")
        pytest.skip(why)
    cmd = (f"{VLLM_VENV}/bin/vllm serve {VLLM_MODEL}/base --served-model-name {{model}} "
           "--port {port} --host 127.0.0.1 --enable-lora --max-loras 2 --max-cpu-loras 2 "
           "--max-lora-rank 16 --max-model-len 512 --dtype bfloat16")
    spec = {"command": cmd, "ready_timeout_s": 300, "stop_grace_s": 10, "env": VLLM_ENV}
    block = f"command: {json.dumps(spec)}"
    return block, {"sql": VLLM_MODEL / "lora-r8", "chat": VLLM_MODEL / "lora-r16"}, 2


FLEET = """
models:
  - name: base
    replicas: {replicas}
    engine:
      {engine}
secrets:
  s3-creds:
    AWS_ACCESS_KEY_ID: test
    AWS_SECRET_ACCESS_KEY: test
    AWS_REGION: us-east-1
    AWS_ENDPOINT_URL: {s3}
resources:
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata: {{name: sql}}
    spec: {{baseModel: base, artifactURL: '{sql}', replicas: 2}}
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata: {{name: chat}}
    spec:
      baseModel: base
      artifactURL: s3://adapters/chat
      credentialsSecretRef: {{name: s3-creds}}
      replicas: 1
"""


def listed(address: str) -> list:
    try:
        body = httpx.get(f"http://{address}/v1/models", timeout=5).json()
    except httpx.HTTPError:
        return []
    return [m["id"] for m in body["data"] if m.get("parent")]


@pytest.mark.parametrize("kind", ["sim", "vllm"])
def test_two_adapters_served_restored_deleted_and_a_bad_one_explained(kind, s3):
    block, real, replicas = engine(kind)
    endpoint, client = s3
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"brix-lora-{kind}-"))
    sql = real.get("sql") or write_adapter(work / "sql", 8)
    chat = real.get("chat") or write_adapter(work / "chat-src", 16)
    upload(client, chat, f"{kind}/chat")
    fleet = FLEET.format(replicas=replicas, engine=block, s3=endpoint, sql=sql)
    fleet = fleet.replace("s3://adapters/chat", f"s3://adapters/{kind}/chat")
    up = Up(fleet, work, ready_timeout=300 if kind == "vllm" else 60)
    try:
        running = lambda name, n: (lambda: (a := up.adapter(name)) and a["phase"] == "Running"
                                   and a["ready_replicas"] == n and a)
        sql_status = up.until("sql on 2 replicas", running("sql", 2), 300)
        up.until("chat on 1 replica", running("chat", 1), 300)

        sdk = openai.OpenAI(base_url=f"{up.url}/v1", api_key="unused", max_retries=0, timeout=60)
        for model in ["sql", "chat"]:
            r = sdk.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
            assert r.model == model
            chunks = list(sdk.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True))
            assert chunks and chunks[0].model == model

        # What each engine lists is what the status says.
        reps = {r["id"]: r for r in up.replicas("base")}
        holders = sorted(i for i, r in reps.items() if "sql" in listed(r["address"]))
        assert holders == sorted(sql_status["instances"])

        # Kill one holder of sql; the SDK keeps getting answers from the other.
        victim = reps[holders[0]]
        os.killpg(victim["pid"], signal.SIGKILL)  # the engine leads its process group
        errors, sent, done = [], [], threading.Event()

        def reloaded():
            # The killed replica is back and its own engine lists sql again (with 2 replicas
            # and replicas: 2 the copy can only come back there), as the status says.
            r = next(r for r in up.replicas("base") if r["id"] == victim["id"])
            a = up.adapter("sql")
            return (r["restarts"] >= 1 and r["state"] == "ready" and "sql" in listed(r["address"])
                    and a and a["ready_replicas"] == 2 and len(sent) >= 20)

        def hammer():
            while not done.is_set():
                try:
                    sdk.chat.completions.create(
                        model="sql", messages=[{"role": "user", "content": "q"}], max_tokens=2)
                except Exception as e:  # noqa: BLE001 - any failure is what we count
                    errors.append(repr(e))
                sent.append(1)

        t = threading.Thread(target=hammer)
        t.start()
        try:
            up.until("sql reloaded on the killed replica", reloaded, 300)
        finally:
            done.set()
            t.join(timeout=120)
        assert errors == [], errors[:5]
        assert len(sent) >= 20

        # Delete chat: unloaded from every replica, then gone from the status.
        cache = up.state / "adapters"
        assert [d.name for d in cache.glob("sha256-*")], "the s3 artifact was cached"
        out = up.brix("adapter", "delete", "chat")
        assert "deleted" in out.stdout
        up.until("chat forgotten", lambda: up.adapter("chat") is None, 120)
        # Its cached artifact goes with it (sql is a local path: never copied into the cache).
        up.until("chat's cache cleaned", lambda: not list(cache.glob("sha256-*")), 30)
        for r in up.replicas("base"):
            assert "chat" not in listed(r["address"]), r
        with pytest.raises(openai.BadRequestError, match="does not exist"):
            sdk.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2)

        # A bad artifact: the adapter fails with its reason; nothing else is disturbed.
        bad = work / "bad.yaml"
        bad.write_text(
            "apiVersion: model.aibrix.ai/v1alpha1\nkind: ModelAdapter\nmetadata: {name: ghost}\n"
            f"spec: {{baseModel: base, artifactURL: 's3://adapters/{kind}/missing', "
            "credentialsSecretRef: {name: s3-creds}}\n")
        up.brix("adapter", "apply", str(bad))
        ghost = up.until("ghost failed", lambda: (a := up.adapter("ghost")) and a["phase"] == "Failed" and a)
        init = next(c for c in ghost["conditions"] if c["type"] == "Initialized")
        assert init["status"] == "False" and init["reason"] == "ArtifactInvalid", init
        assert f"{kind}/missing" in init["message"], init
        text = up.brix("status").stdout
        assert "ghost" in text and "ArtifactInvalid" in text, text
        r = sdk.chat.completions.create(
            model="sql", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert r.model == "sql"
    finally:
        up.stop()
