"""Drives the real, unmodified LMCache (PyPI `lmcache`, run by .venv-lmcache's python) against a
Redis-protocol URL: LMCache's own ChunkedTokenDatabase turns a token prompt into chunk keys, its
RemoteBackend (what LMCacheEngine's StorageManager builds from `remote_url` / `remote_serde`)
stores and fetches KV chunks through the connector the URL names (`redis://` = redis-py,
`resp://` = LMCache's native C++ client). CPU tensors only: no GPU connector is involved.

    python lmcache_client.py URL STEP[,STEP...]     STEP = store|fetch:PROMPT_SEED:CHUNKS

Prints one JSON line with a result per step: the chunk keys, put errors (store), how many keys
the backend reports present (longest prefix), how many it fetched, and how many of those are
byte-equal to the chunks a `store` of that prompt wrote.
"""

import asyncio
import json
import os
import sys
import threading

import torch
from lmcache.v1.config import LMCacheEngineConfig
from lmcache.v1.memory_allocators.host_memory_allocator import HostMemoryAllocator
from lmcache.v1.metadata import LMCacheMetadata
from lmcache.v1.storage_backend import LocalCPUBackend
from lmcache.v1.storage_backend.remote_backend import RemoteBackend
from lmcache.v1.token_database import ChunkedTokenDatabase

CHUNK_TOKENS = 256
LAYERS, HEADS, HEAD_DIM = 4, 2, 64
DTYPE = torch.bfloat16
TIMEOUT_S = 30


def chunk_tensor(prompt_seed: int, i: int) -> torch.Tensor:
    """The KV of chunk `i` of a prompt, in LMCache's KV_2LTD layout [2, layers, tokens, hidden]."""
    g = torch.Generator().manual_seed(prompt_seed * 1_000_003 + i)
    return torch.randn(2, LAYERS, CHUNK_TOKENS, HEADS * HEAD_DIM, generator=g).to(DTYPE)


def run_step(loop, backend, local, tokdb, action: str, prompt_seed: int, chunks: int) -> dict:
    g = torch.Generator().manual_seed(prompt_seed)
    tokens = torch.randint(0, 32_000, (chunks * CHUNK_TOKENS,), generator=g).tolist()
    keys = [key for _, _, key in tokdb.process_tokens(tokens)]
    assert len(keys) == chunks, (len(keys), chunks)
    out = {"action": action, "prompt": prompt_seed, "keys": [k.to_string() for k in keys]}
    if action == "store":
        futures = []
        for i, key in enumerate(keys):
            obj = local.allocate(chunk_tensor(prompt_seed, 0).shape, DTYPE)
            obj.tensor.copy_(chunk_tensor(prompt_seed, i))
            futures.append(backend.submit_put_task(key, obj))
        errors = 0
        for f in futures:
            try:
                f.result(TIMEOUT_S)
            except Exception as e:  # noqa: BLE001 - counted and reported, like LMCache does
                errors += 1
                out["put_error"] = f"{type(e).__name__}: {e}"[:300]
        out["put_errors"] = errors
    # The lookup LMCache's async loading path makes. (Not the sync `batched_contains`: with
    # `resp://`, 0.5.6 registers the future after submitting the request, and a fast enough
    # reply is dropped by the completion thread, leaving the caller waiting forever.)
    lookup = backend.batched_async_contains(f"brix-{action}-{prompt_seed}", keys)
    out["present"] = asyncio.run_coroutine_threadsafe(lookup, loop).result(TIMEOUT_S)
    fetched = equal = 0
    # Like LMCacheEngine.retrieve: fetch only the prefix the lookup reported (the native
    # client cannot read a miss: it expects exactly one chunk's bytes).
    for i, key in enumerate(keys[: out["present"]]):
        obj = backend.get_blocking(key)
        if obj is None:
            continue
        fetched += 1
        want = chunk_tensor(prompt_seed, i)
        got = obj.tensor
        if got.shape == want.shape and torch.equal(got.view(torch.int16), want.view(torch.int16)):
            equal += 1
    out["fetched"], out["equal"] = fetched, equal
    return out


def main() -> None:
    url, steps = sys.argv[1], sys.argv[2]
    config = LMCacheEngineConfig.from_defaults(
        chunk_size=CHUNK_TOKENS,
        remote_url=url,
        remote_serde="naive",
        blocking_timeout_secs=TIMEOUT_S,
        # vLLM's own prefix hash (vLLM 0.32 is importable from .venv-vllm), as inside an engine.
        pre_caching_hash_algorithm="sha256_cbor",
        extra_config={"save_chunk_meta": False, "resp_num_threads": 2},
    )
    metadata = LMCacheMetadata(
        model_name="brix-test-model",
        world_size=1,
        local_world_size=1,
        worker_id=0,
        local_worker_id=0,
        kv_dtype=DTYPE,
        kv_shape=(LAYERS, 2, CHUNK_TOKENS, HEADS, HEAD_DIM),
        use_mla=False,
    )
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    local = LocalCPUBackend(config=config, metadata=metadata,
                            memory_allocator=HostMemoryAllocator(256 << 20))
    backend = RemoteBackend(config, metadata, loop, local)
    tokdb = ChunkedTokenDatabase(config, metadata)
    results = []
    for step in steps.split(","):
        action, prompt_seed, chunks = step.split(":")
        results.append(run_step(loop, backend, local, tokdb, action, int(prompt_seed), int(chunks)))
    print(json.dumps({"url": url, "steps": results}), flush=True)
    # RemoteBackend.close() waits, from the caller, on a coroutine that itself waits for the
    # connector's executor to drain on the same loop; in 0.5.6 that never returns. Nothing is
    # left to flush (every put was awaited above), so leave without it.
    os._exit(0)


if __name__ == "__main__":
    main()
