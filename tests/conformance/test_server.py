"""/v1/models, /version, LoRA load/unload, /metrics and client disconnects, side by side."""

import re
import socket
import time

from prometheus_client.parser import text_string_to_metric_families

from compare import body, expect, get, same, settle


def test_models(pair):
    a, b = pair.both("GET", "/v1/models")
    expect("models", "status", a.status_code, b.status_code)
    same("models", body(a), body(b))


def test_version(pair):
    a, b = pair.both("GET", "/version")
    same("version", body(a), body(b))


def test_unknown_route(pair):
    a, b = pair.both("GET", "/v1/nope")
    expect("unknown_route", "status", a.status_code, b.status_code)
    same("unknown_route", body(a), body(b))


def lora(pair, check, path, req):
    a, b = pair.both("POST", path, json=req)
    expect(check, "status", a.status_code, b.status_code)
    expect(check, "content-type", a.headers.get("content-type"), b.headers.get("content-type"))
    if a.headers.get("content-type", "").startswith("application/json"):
        same(check, body(a), body(b) if b.headers.get("content-type", "").startswith("application/json") else b.text)
    else:
        expect(check, "body", a.text, b.text)
    return a, b


def test_lora_lifecycle(pair, model_dir):
    r8, r16 = str(model_dir / "lora-r8"), str(model_dir / "lora-r16")
    pair.both("POST", "/v1/unload_lora_adapter", json={"lora_name": "ad1"})  # a reused server
    lora(pair, "lora.load", "/v1/load_lora_adapter", {"lora_name": "ad1", "lora_path": r8})
    lora(pair, "lora.load_again", "/v1/load_lora_adapter", {"lora_name": "ad1", "lora_path": r8})
    lora(pair, "lora.load_inplace", "/v1/load_lora_adapter",
         {"lora_name": "ad1", "lora_path": r8, "load_inplace": True})
    a, b = pair.both("GET", "/v1/models")
    same("lora.models", body(a), body(b))
    a, b = pair.both("POST", "/v1/completions", json={"model": "ad1", "prompt": "hello", "max_tokens": 2})
    expect("lora.generate", "status", a.status_code, b.status_code)
    same("lora.generate", body(a), body(b))
    lora(pair, "lora.unload", "/v1/unload_lora_adapter", {"lora_name": "ad1"})
    lora(pair, "lora.unload_unknown", "/v1/unload_lora_adapter", {"lora_name": "ad1"})


def test_lora_missing_path_is_404(pair, model_dir):
    lora(pair, "lora.missing_path", "/v1/load_lora_adapter",
         {"lora_name": "ghost", "lora_path": str(model_dir / "no-such-adapter")})


def test_lora_rank_over_limit(pair, model_dir):
    lora(pair, "lora.rank_over_limit", "/v1/load_lora_adapter",
         {"lora_name": "big", "lora_path": str(model_dir / "lora-r16")})


def families(text, vllm=True):
    """Metric families by name; `_created` series (which prometheus_client's parser reports as
    gauges of their own) are left out and listed apart."""
    return {f.name: f for f in text_string_to_metric_families(text)
            if f.name.startswith("vllm:") == vllm and not f.name.endswith("_created")}


def created(text):
    return {f.name for f in text_string_to_metric_families(text) if f.name.endswith("_created")}


def test_metric_families(pair):
    a, b = pair.both("GET", "/metrics")
    expect("metrics", "content-type", a.headers.get("content-type"), b.headers.get("content-type"))
    fa, fb = families(a.text), families(b.text)
    diffs = []
    for name in sorted(set(fa) | set(fb)):
        if name not in fb:
            diffs.append((name, fa[name].type, "(absent)"))
        elif name not in fa:
            diffs.append((name, "(absent)", fb[name].type))
        elif fa[name].type != fb[name].type:
            diffs.append((name, fa[name].type, fb[name].type))
        else:
            la = sorted({k for s in fa[name].samples for k in s.labels if k != "le"})
            lb = sorted({k for s in fb[name].samples for k in s.labels if k != "le"})
            if la != lb:
                diffs.append((name + " labels", str(la), str(lb)))
    pa, pb = families(a.text, vllm=False), families(b.text, vllm=False)
    for name in sorted(set(pa) | set(pb)):
        if name not in pb:
            diffs.append((name, pa[name].type, "(absent)"))
        elif name not in pa:
            diffs.append((name, "(absent)", pb[name].type))
    if created(a.text) and not created(b.text):
        diffs.append(("_created series", f"{len(created(a.text))} families", "none"))
    settle("metrics", diffs)


def metric(url_text, name):
    total = 0.0
    for f in text_string_to_metric_families(url_text):
        for s in f.samples:
            if s.name == name:
                total += s.value
    return total


def wait_idle(pair, who, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = pair.one(who, "GET", "/metrics").text
        if metric(text, "vllm:num_requests_running") == 0 and metric(text, "vllm:num_requests_waiting") == 0:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{who} still busy after {timeout_s} s")


def test_disconnect_is_not_a_success(pair):
    facts = {}
    for who, server in (("vllm", pair.vllm), ("sim", pair.sim)):
        before = wait_idle(pair, who)
        port = int(server.url.rsplit(":", 1)[1])
        req = ('{"model":"tiny","prompt":"hello","max_tokens":400,"stream":true,'
                '"ignore_eos":true}').encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(req)}\r\n\r\n".encode() + req)
            got = b""
            while b"data: " not in got:
                chunk = s.recv(4096)
                assert chunk, f"{who} closed before the first event"
                got += chunk
        after = wait_idle(pair, who)
        facts[who] = (
            metric(after, "vllm:request_success_total") - metric(before, "vllm:request_success_total"),
            metric(after, "vllm:e2e_request_latency_seconds_count") - metric(before, "vllm:e2e_request_latency_seconds_count"),
        )
    expect("disconnect", "(success_total, e2e count) increase", facts["vllm"], facts["sim"])
    assert facts["vllm"] == (0, 0), facts
