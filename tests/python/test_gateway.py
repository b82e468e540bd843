"""The unmodified `openai` SDK against `brix gateway` in front of several `brix sim` engines,
with the routing strategy chosen per request by header."""

import openai
import pytest

STRATEGIES = [
    "random", "least-request", "least-kv-cache", "power-of-two", "session-affinity",
    "prefix-cache", "kv-cost", "throughput", "least-latency", "vtc-basic",
    "prefix-cache:2,least-request:1",
]


@pytest.fixture(scope="module")
def client(fleet):
    gateway, _ = fleet
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def headers(strategy):
    return {"routing-strategy": strategy, "user": "sdk-user"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_chat_and_completions_plain_and_streaming(client, fleet, strategy):
    _, engines = fleet
    pods = {e.url.removeprefix("http://") for e in engines}

    raw = client.chat.completions.with_raw_response.create(
        model="sim", messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
        extra_headers=headers(strategy),
    )
    assert raw.headers["routing-strategy"] == strategy
    assert raw.headers["target-pod-ip"] in pods
    chat = raw.parse()
    assert chat.choices[0].message.content
    assert chat.usage.completion_tokens > 0

    done = client.completions.create(model="sim", prompt="Hello", max_tokens=3, extra_headers=headers(strategy))
    assert done.choices[0].text

    chunks = list(client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "Stream"}], stream=True,
        extra_headers=headers(strategy),
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices for c in chunks), "no usage chunk unless asked for"

    chunks = list(client.completions.create(
        model="sim", prompt="Stream", stream=True, stream_options={"include_usage": True},
        extra_headers=headers(strategy),
    ))
    assert chunks[-1].usage.completion_tokens > 0


def test_models_and_errors(client):
    assert [m.id for m in client.models.list().data] == ["sim"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "x"}],
            extra_headers={"routing-strategy": "fastest"},
        )
