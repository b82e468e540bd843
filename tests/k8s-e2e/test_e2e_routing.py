"""Routing strategies through the Service, ported from AIBrix's routing_strategy_test.go:
`random` spreads uniformly (χ² at 1 % over 100 requests), `least-request` names a discovered pod
and spreads concurrent load, `prefix-cache` keeps a long shared prefix and a multi-turn
conversation on one pod."""

import concurrent.futures
import uuid
from collections import Counter

from conftest import MODEL


def route(client, strategy, prompt="Hello", max_tokens=2):
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt=prompt, max_tokens=max_tokens,
        extra_headers={"routing-strategy": strategy})
    assert raw.headers["routing-strategy"] == strategy
    return raw.headers["target-pod"]


def test_random_is_uniform(client, engine_pods):
    n = 100
    counts = Counter(route(client, "random") for _ in range(n))
    assert set(counts) <= set(engine_pods)
    expected = n / len(engine_pods)
    chi2 = sum((counts.get(p, 0) - expected) ** 2 / expected for p in engine_pods)
    # The 1 % critical value of χ² with k-1 degrees of freedom (k = 3 pods: 9.21).
    critical = {1: 6.63, 2: 9.21, 3: 11.34, 4: 13.28}[len(engine_pods) - 1]
    assert chi2 < critical, f"random routing is not uniform: {dict(counts)} (χ²={chi2:.2f})"


def test_least_request_spreads_concurrent_load(client, engine_pods):
    assert route(client, "least-request") in engine_pods
    # Long generations in flight at once: least-request puts them on different pods.
    with concurrent.futures.ThreadPoolExecutor(len(engine_pods)) as pool:
        pods = list(pool.map(lambda _: route(client, "least-request", max_tokens=200),
                             range(len(engine_pods))))
    assert len(set(pods)) >= 2, f"concurrent least-request all went to {pods}"


def test_prefix_cache_sticks(client, engine_pods):
    prefix = f"{uuid.uuid4()} " + "You are a helpful assistant that answers briefly. " * 8
    assert len(prefix.encode()) > 128
    first = route(client, "prefix-cache", prompt=prefix + "Question one?")
    for i in range(10):
        assert route(client, "prefix-cache", prompt=prefix + f"Question {i}?") == first


def test_prefix_cache_multi_turn_conversation_sticks(client):
    messages = [{"role": "system", "content": f"{uuid.uuid4()} " + "Be concise. " * 20}]
    pods = []
    for turn in range(5):
        messages.append({"role": "user", "content": f"Turn {turn}: tell me more."})
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, max_tokens=8,
            extra_headers={"routing-strategy": "prefix-cache"})
        pods.append(raw.headers["target-pod"])
        messages.append({"role": "assistant",
                         "content": raw.parse().choices[0].message.content})
    assert len(set(pods)) == 1, f"the conversation moved: {pods}"
