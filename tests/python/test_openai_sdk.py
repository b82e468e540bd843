"""The unmodified `openai` SDK (and httpx for what it lacks) against `brix sim`."""

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def client(sim):
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="unused", max_retries=0)


def test_models_list_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["sim"]
    base = models.data[0]
    assert base.owned_by == "vllm"
    assert base.root == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert base.max_model_len == 2048


def test_completion(client):
    r = client.completions.create(model="sim", prompt="Hello", max_tokens=3, extra_body={"ignore_eos": True})
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].text
    assert r.usage.completion_tokens == 3
    assert r.usage.total_tokens == r.usage.prompt_tokens + 3


def test_completion_stream(client):
    chunks = list(client.completions.create(model="sim", prompt="Hello", max_tokens=10, stream=True))
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, "stop"]
    assert "".join(c.choices[0].text for c in chunks)


def test_chat(client):
    r = client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "Hi"}], max_completion_tokens=2, user="u1"
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.usage.completion_tokens == 2


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="sim",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, last = chunks
    assert last.choices == []
    assert last.usage.completion_tokens == 3
    assert "".join(c.choices[0].delta.content or "" for c in body)
    assert body[-1].choices[0].finish_reason == "length"


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="gpt-9", prompt="x")
    assert err.value.status_code == 404
    assert "The model `gpt-9` does not exist." in str(err.value)


def test_bad_input_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="sim", prompt="x", max_tokens=-1)


def test_lora_load_use_unload(sim, client):
    load = httpx.post(f"{sim.url}/v1/load_lora_adapter", json={"lora_name": "sql", "lora_path": "adapters/sql"})
    assert (load.status_code, load.text) == (200, "Success: LoRA adapter 'sql' added successfully.")
    adapter = [m for m in client.models.list().data if m.id == "sql"]
    assert len(adapter) == 1 and adapter[0].parent == "sim" and adapter[0].root == "adapters/sql"

    r = client.completions.create(model="sql", prompt="SELECT", max_tokens=2)
    assert r.model == "sql"

    unload = httpx.post(f"{sim.url}/v1/unload_lora_adapter", json={"lora_name": "sql"})
    assert (unload.status_code, unload.text) == (200, "Success: LoRA adapter 'sql' removed successfully.")
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="sql", prompt="SELECT")


def test_metrics_parse_with_prometheus_client(sim, client):
    client.completions.create(model="sim", prompt="warm", max_tokens=2)
    text = httpx.get(f"{sim.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:cache_config_info": "gauge",
        "vllm:lora_requests_info": "gauge",
        # The parser strips `_total` from counter family names, as for vLLM's own output.
        "vllm:prefix_cache_queries": "counter",
        "vllm:prefix_cache_hits": "counter",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:num_preemptions": "counter",
        "vllm:request_success": "counter",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:inter_token_latency_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:request_queue_time_seconds": "histogram",
        "vllm:request_inference_time_seconds": "histogram",
        "vllm:request_prefill_time_seconds": "histogram",
        "vllm:request_decode_time_seconds": "histogram",
        "vllm:iteration_tokens_total": "histogram",
        "vllm:request_prompt_tokens": "histogram",
        "vllm:request_generation_tokens": "histogram",
    }
    for name, kind in expected.items():
        assert name in families, name
        assert families[name].type == kind, name
    success = {s.labels["finished_reason"]: s.value for s in families["vllm:request_success"].samples}
    assert set(success) == {"stop", "length", "abort", "error", "repetition"}
    assert sum(success.values()) >= 1
    generated = families["vllm:generation_tokens"].samples[0]
    assert generated.labels == {"model_name": "sim", "engine": "0"}
    assert generated.value >= 2
