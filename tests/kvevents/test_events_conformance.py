"""`brix sim` publishes KV events as vLLM 0.32 does: the same prompts sent to a real vLLM and
to `brix sim` (same tokenizer, block size 128, sha256_cbor, PYTHONHASHSEED=0), both streams
decoded with vLLM's own `KVEventBatch` decoder: topic and sequence framing, the replay
socket's reply, event kinds and fields, and the block hashes themselves.
"""

import time

import pytest

from conftest import TOPIC

# Token ids under the tiny model's vocabulary (554). 300 tokens = 2 full blocks + a partial;
# A again is a cache hit (no event); B; C (400) evicts; A re-stores an evicted block under
# its parent. Generation (4 tokens) never fills a block, so the random model's answers do not
# matter. A prefix-cache reset, then B again: AllBlocksCleared, and B's blocks stored anew.
A = [(7 * i + 3) % 500 + 10 for i in range(300)]
B = [(11 * i + 5) % 500 + 10 for i in range(300)]
C = [(13 * i + 1) % 500 + 10 for i in range(400)]
TEXT = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)


@pytest.fixture(scope="module")
def streams(engines):
    """What each engine's listener got for the same requests: {name: {"live", "replay"}}."""
    vllm, sim = engines
    t0 = time.time()
    for prompt in (A, A, B, C, A, TEXT, "reset", B):
        for e in (vllm, sim):
            if prompt == "reset":
                e.reset_prefix_cache()  # AllBlocksCleared goes out with the next step
            else:
                e.complete(prompt)
    out = {e.name: e.collected() for e in (vllm, sim)}
    out["t0"], out["t1"] = t0, time.time()
    return out


def events(stream):
    return [ev for _, _, batch in stream["live"] for ev in batch[1]]


@pytest.mark.parametrize("name", ["vllm", "sim"])
def test_framing_topic_sequence_and_batch_shape(streams, name):
    live = streams[name]["live"]
    assert live, f"{name} published nothing"
    assert [t for t, _, _ in live] == [TOPIC] * len(live)
    assert [seq for _, seq, _ in live] == list(range(len(live)))
    for _, _, batch in live:
        ts, evs, dp_rank = batch
        assert streams["t0"] - 5 <= ts <= streams["t1"] + 5
        assert evs and dp_rank == 0


@pytest.mark.parametrize("name", ["vllm", "sim"])
def test_replay_answers_every_buffered_batch_then_the_end_marker(streams, name):
    live, replay = streams[name]["live"], streams[name]["replay"]
    assert replay[-1] == [4, "", -1, None], "end marker: (b'', b'', -1, b'') after the identity"
    assert [r[:3] for r in replay[:-1]] == [[4, TOPIC, seq] for _, seq, _ in live]
    assert [r[3] for r in replay[:-1]] == [b for _, _, b in live]


def test_same_event_kinds_in_the_same_batches(streams):
    kinds = {n: [[e["type"] for e in b[1]] for _, _, b in streams[n]["live"]] for n in ("vllm", "sim")}
    assert kinds["sim"] == kinds["vllm"]


def test_same_events_field_for_field_with_identical_block_hashes(streams):
    v, s = events(streams["vllm"]), events(streams["sim"])
    assert len(s) == len(v)
    for i, (ev, es) in enumerate(zip(v, s)):
        assert es == ev, f"event {i} differs"
    stored = [e for e in v if e["type"] == "BlockStored"]
    assert stored and all(e["block_size"] == 128 for e in stored)
    assert any(e["parent_block_hash"] is not None for e in stored)
    assert any(e["type"] == "BlockRemoved" for e in v)
    assert any(e["type"] == "AllBlocksCleared" for e in v)
