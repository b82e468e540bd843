"""The gateway through its Service, ported from AIBrix's e2e_test.go and
openai_api_compatibility_test.go: completions and chat (plain and streamed) with model, choices
and usage; the target-pod headers naming a discovered pod; the error envelope for a bad key
(401), an unknown model (400) and an unknown strategy (400); discovery following a scale-up."""

import httpx
import openai
import pytest
from conftest import MODEL, NAMESPACE, eventually, kubectl, ready_pods


def test_completion_and_chat(client, engine_pods):
    raw = client.completions.with_raw_response.create(model=MODEL, prompt="Say hi", max_tokens=8)
    done = raw.parse()
    assert done.model == MODEL and done.choices[0].text and done.usage.completion_tokens > 0
    pod = raw.headers["target-pod"]
    assert pod in engine_pods, f"target-pod {pod} is not a discovered engine pod"
    assert raw.headers["target-pod-ip"] == f"{engine_pods[pod]}:8000"
    assert raw.headers.get("request-id")

    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=8)
    chat = raw.parse()
    assert chat.model == MODEL and chat.choices[0].message.content
    assert chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0
    assert raw.headers["target-pod"] in engine_pods


def test_streaming_chat_multi_turn(client):
    messages = [{"role": "user", "content": "Tell me a story"}]
    for _ in range(3):
        chunks = list(client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=16, stream=True,
            stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].usage.completion_tokens > 0
        messages += [{"role": "assistant", "content": text},
                     {"role": "user", "content": "And then?"}]


def test_bad_api_key_is_401(gateway_url):
    bad = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"


def test_unknown_model_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="no-such-model",
                                       messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"


def test_unknown_strategy_is_400(client):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="x", max_tokens=2,
                                  extra_headers={"routing-strategy": "no-such-strategy"})


def test_probes_and_metrics_need_no_key(gateway_url, client):
    client.completions.create(model=MODEL, prompt="x", max_tokens=2)  # one request counted
    assert httpx.get(f"{gateway_url}/health", timeout=5).status_code == 200
    assert httpx.get(f"{gateway_url}/ready", timeout=5).status_code == 200
    assert b"brix_gateway_requests_total" in httpx.get(f"{gateway_url}/metrics",
                                                      timeout=5).content


def test_discovery_follows_scale_up_and_down(client, engine_pods):
    """A new engine pod is routed to once Ready; a removed one no longer is."""
    kubectl("scale", "deployment/sim-llama2", "-n", NAMESPACE, f"--replicas={len(engine_pods) + 1}")
    try:
        pods = eventually(lambda: (p := ready_pods(f"model.aibrix.ai/name={MODEL}"))
                          and len(p) == len(engine_pods) + 1 and p, 180, "a fourth ready engine")
        (new,) = set(pods) - set(engine_pods)

        def routed_to_new():
            raw = client.completions.with_raw_response.create(
                model=MODEL, prompt="x", max_tokens=2,
                extra_headers={"routing-strategy": "random"})
            return raw.headers["target-pod"] == new
        eventually(routed_to_new, 60, f"a request routed to {new}", interval=0.1)
    finally:
        kubectl("scale", "deployment/sim-llama2", "-n", NAMESPACE,
                f"--replicas={len(engine_pods)}")
    eventually(lambda: len(ready_pods(f"model.aibrix.ai/name={MODEL}")) == len(engine_pods),
               180, "the scale-down")
    alive = set(ready_pods(f"model.aibrix.ai/name={MODEL}"))
    # After a short settle (the gateway debounces pod events), no request lands on a gone pod.
    eventually(lambda: all(
        client.completions.with_raw_response.create(
            model=MODEL, prompt="x", max_tokens=2,
            extra_headers={"routing-strategy": "random"}).headers["target-pod"] in alive
        for _ in range(20)), 60, "routing only to the remaining pods")
