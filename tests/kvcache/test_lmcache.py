"""The real LMCache (PyPI, unmodified) stores and fetches KV chunks through `brix kvcache`, with
both of its Redis-protocol remote backends: `redis://` (redis-py, RESP3 after `HELLO 3`) and
`resp://` (LMCache's native C++ client, RESP2, on several connections).

Each LMCache run is a fresh process, like a fresh engine: one stores the chunks of a prompt,
another derives the same chunk keys (LMCache's token database, vLLM's sha256_cbor) and fetches
the chunks back byte-equal. Each run costs 10-20 s of imports (torch, vLLM), so runs are few
and each does several steps.
"""

import pytest

from conftest import info, run_lmcache

CHUNKS = 6
CHUNK_BYTES = 2 * 4 * 256 * 128 * 2  # KV_2LTD bf16: 2 × layers × tokens × hidden × 2 bytes
# Redis keys LMCache writes per chunk: `redis://` stores data and metadata apart.
KEYS_PER_CHUNK = {"redis": 2, "resp": 1}


def counts(step: dict) -> tuple:
    return step["present"], step["fetched"], step["equal"]


@pytest.mark.parametrize("scheme", ["redis", "resp"])
def test_lmcache_stores_and_another_engine_fetches_through_brix(lmcache_python, pool, scheme):
    assert pool.command("DBSIZE") == 0
    stored, other = run_lmcache(lmcache_python, pool.url(scheme), f"store:7:{CHUNKS},fetch:8:{CHUNKS}")
    assert stored["put_errors"] == 0, stored.get("put_error")
    assert counts(stored) == (CHUNKS, CHUNKS, CHUNKS)
    assert counts(other) == (0, 0, 0), "another prompt has no chunks in the pool"

    # The data is in Brix: its own counters saw the chunks arrive.
    keys = CHUNKS * KEYS_PER_CHUNK[scheme]
    assert pool.command("DBSIZE") == keys
    stats = info(pool)
    assert int(stats["entries"]) == keys
    assert int(stats["used_bytes"]) >= CHUNKS * CHUNK_BYTES

    # A second engine process derives the same keys from the same prompt and reads them back.
    [fetched] = run_lmcache(lmcache_python, pool.url(scheme), f"fetch:7:{CHUNKS}")
    assert fetched["keys"] == stored["keys"]
    assert counts(fetched) == (CHUNKS, CHUNKS, CHUNKS)
    assert int(info(pool)["hits"]) > int(stats["hits"])

    # Nothing survives a pool restart: the same lookup is now a miss.
    pool.restart()
    assert pool.command("DBSIZE") == 0
    [after] = run_lmcache(lmcache_python, pool.url(scheme), f"fetch:7:{CHUNKS}")
    assert counts(after) == (0, 0, 0)


def test_lmcache_authenticates_with_the_pool_token(lmcache_python, token_pool):
    token = token_pool.token
    [stored] = run_lmcache(lmcache_python, token_pool.url("redis", token), "store:5:2")
    assert (stored["put_errors"], *counts(stored)) == (0, 2, 2, 2)
    # resp:// takes the password from LMCACHE_RESP_PASSWORD (or extra_config "password").
    other, stored = run_lmcache(lmcache_python, token_pool.url("resp"), "fetch:5:2,store:5:2",
                                env={"LMCACHE_RESP_PASSWORD": token})
    assert counts(other) == (0, 0, 0), "resp:// names its keys apart from redis://"
    assert (stored["put_errors"], *counts(stored)) == (0, 2, 2, 2)
    entries = token_pool.command("DBSIZE")
    assert entries == 2 * 2 + 2

    # Without the token nothing is stored and nothing is read.
    denied, looked = run_lmcache(lmcache_python, token_pool.url("redis"), "store:6:2,fetch:5:2")
    assert denied["put_errors"] == 2 and "AuthenticationError" in denied["put_error"]
    assert counts(denied) == (0, 0, 0) and counts(looked) == (0, 0, 0)
    assert token_pool.command("DBSIZE") == entries
