"""Listens to one engine's KV events with vLLM's own decoder; run with vLLM's python.

    python listen.py ENDPOINT REPLAY_ENDPOINT TOPIC OUT_JSON

Subscribes (pyzmq SUB, libzmq), prints "ready", and collects every message until stdin
closes; then asks the replay socket (DEALER) for everything from seq 0 and writes OUT_JSON:
{"live": [[topic, seq, batch]], "replay": [[frames, topic, seq, batch|null]]}, each batch as
`msgspec.to_builtins(KVEventBatch)` decoded by vLLM's `vllm.distributed.kv_events`.
"""

import json
import sys
import threading

import msgspec
import zmq
from vllm.distributed.kv_events import KVEventBatch


def main() -> None:
    endpoint, replay_endpoint, topic, out = sys.argv[1:5]
    dec = msgspec.msgpack.Decoder(type=KVEventBatch)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("ready", flush=True)
    live = []
    while not done.is_set() or sub.poll(200):
        if sub.poll(200):
            frames = sub.recv_multipart()
            t, seq, payload = frames
            live.append([t.decode(), int.from_bytes(seq, "big"), msgspec.to_builtins(dec.decode(payload))])
    req = ctx.socket(zmq.DEALER)
    req.connect(replay_endpoint)
    req.send_multipart([b"", (0).to_bytes(8, "big")])
    replay = []
    while req.poll(10_000):
        frames = req.recv_multipart()
        _, t, seq, payload = frames
        n = int.from_bytes(seq, "big", signed=True)
        batch = msgspec.to_builtins(dec.decode(payload)) if payload else None
        replay.append([len(frames), t.decode(), n, batch])
        if n == -1:
            break
    with open(out, "w") as f:
        json.dump({"live": live, "replay": replay}, f)


if __name__ == "__main__":
    main()
