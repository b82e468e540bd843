"""`brix up` with its embedded default fleet, as the README's first command runs it: the
unmodified OpenAI SDK chats through it and `brix status` shows the replicas."""

import subprocess
import tempfile

import openai
import pytest

from conftest import BRIX_BIN, Sim


@pytest.fixture(scope="module")
def fleet():
    logs = tempfile.TemporaryDirectory()
    up = Sim("--listen", "127.0.0.1:0", "--logs-dir", logs.name, command=("up",))
    yield up
    up.stop()
    logs.cleanup()


def test_the_default_fleet_chats_and_shows_its_replicas(fleet):
    client = openai.OpenAI(base_url=f"{fleet.url}/v1", api_key="unused", max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == ["llama-3-8b", "qwen2.5-7b"]
    for model in ["llama-3-8b", "qwen2.5-7b"]:
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
        )
        assert r.choices[0].message.content
        chunks = list(client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Stream"}], max_tokens=8, stream=True,
        ))
        assert chunks[0].choices[0].delta.role == "assistant"

    out = subprocess.run(
        [BRIX_BIN, "status", "--endpoint", fleet.url], capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert sorted(r[1] for r in rows) == ["llama-3-8b-0", "llama-3-8b-1", "qwen2.5-7b-0", "qwen2.5-7b-1"]
    assert all(r[3] == "ready" for r in rows)
