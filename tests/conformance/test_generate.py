"""/v1/completions and /v1/chat/completions: the same requests to vLLM 0.32 and brix sim."""

import json

from compare import body, expect, get, same, settle

PROMPT = "hello world please tell me a short story about the quick brown fox"
MESSAGES = [{"role": "user", "content": PROMPT}]
LIMIT = 512


def cmpl(**kw):
    return {"model": "tiny", "prompt": PROMPT, **kw}


def chat(**kw):
    return {"model": "tiny", "messages": MESSAGES, **kw}


def both_json(pair, check, path, req, status=200, headers=None):
    """Sends `req` to both; compares status and content type, returns the two JSON bodies."""
    a, b = pair.both("POST", path, json=req, headers=headers or {})
    expect(check, "status", a.status_code, b.status_code)
    expect(check, "content-type", a.headers.get("content-type"), b.headers.get("content-type"))
    assert a.status_code == status, f"vLLM answered {a.status_code}: {a.text[:300]}"
    return body(a), body(b)


def adds_up(reply):
    """Whether usage.total_tokens = prompt_tokens + completion_tokens."""
    u = get(reply, "usage", default={}) or {}
    return u.get("total_tokens") is not None and u.get("total_tokens") == (u.get("prompt_tokens") or 0) + (
        u.get("completion_tokens") or 0)


def usage_checks(check, a, b):
    assert adds_up(a), f"vLLM usage does not add up: {get(a, 'usage')}"
    expect(check, "usage adds up", True, adds_up(b))


def test_completion_basic(pair):
    a, b = both_json(pair, "completions.basic", "/v1/completions", cmpl(max_tokens=5))
    same("completions.basic", a, b)
    usage_checks("completions.basic", a, b)
    assert a["usage"]["completion_tokens"] == 5


def test_chat_basic(pair):
    a, b = both_json(pair, "chat.basic", "/v1/chat/completions", chat(max_tokens=5))
    same("chat.basic", a, b)
    usage_checks("chat.basic", a, b)


def test_completions_default_is_16_tokens(pair):
    a, b = both_json(pair, "completions.default_max_tokens", "/v1/completions", cmpl(seed=3, ignore_eos=True))
    same("completions.default_max_tokens", a, b)
    assert a["usage"]["completion_tokens"] <= 16


def test_chat_default_is_what_fits(pair):
    a, b = both_json(pair, "chat.default_max_tokens", "/v1/chat/completions", chat(seed=3, ignore_eos=True))
    same("chat.default_max_tokens", a, b, values=False)

    def fills(reply):
        u = get(reply, "usage", default={}) or {}
        return (u.get("prompt_tokens") or 0) + (u.get("completion_tokens") or 0) == LIMIT
    # A random model may sample its EOS; then vLLM's answer is shorter and proves nothing.
    if get(a, "choices", 0, "finish_reason") == "length":
        assert fills(a)
        expect("chat.default_max_tokens", "prompt + completion = max_model_len", True, fills(b))


def test_prompt_plus_max_tokens_is_clamped(pair):
    a, b = both_json(pair, "completions.clamp", "/v1/completions", cmpl(max_tokens=500, seed=5, ignore_eos=True))
    same("completions.clamp", a, b)
    u = a["usage"]
    assert a["choices"][0]["finish_reason"] == "length"
    assert u["prompt_tokens"] + u["completion_tokens"] == LIMIT


def test_chat_max_completion_tokens_clamped(pair):
    a, b = both_json(pair, "chat.clamp", "/v1/chat/completions", chat(max_completion_tokens=500, seed=5, ignore_eos=True))
    same("chat.clamp", a, b)


def test_max_tokens_alone_too_large_is_400(pair):
    a, b = both_json(pair, "completions.max_tokens_over_limit", "/v1/completions", cmpl(max_tokens=600), status=400)
    same("completions.max_tokens_over_limit", a, b)
    a, b = both_json(pair, "chat.max_tokens_over_limit", "/v1/chat/completions", chat(max_tokens=600), status=400)
    same("chat.max_tokens_over_limit", a, b)


def test_prompt_alone_too_long_is_400(pair):
    long = " ".join(["hello world"] * 400)
    a, b = both_json(pair, "completions.prompt_over_limit", "/v1/completions",
                     {"model": "tiny", "prompt": long, "max_tokens": 4}, status=400)
    same("completions.prompt_over_limit", a, b)
    a, b = both_json(pair, "chat.prompt_over_limit", "/v1/chat/completions",
                     {"model": "tiny", "messages": [{"role": "user", "content": long}]}, status=400)
    same("chat.prompt_over_limit", a, b)


def test_n_choices(pair):
    a, b = both_json(pair, "completions.n2", "/v1/completions", cmpl(max_tokens=4, n=2, ignore_eos=True))
    same("completions.n2", a, b)
    a, b = both_json(pair, "chat.n2", "/v1/chat/completions", chat(max_tokens=4, n=2, ignore_eos=True))
    same("chat.n2", a, b)


def test_prompt_list(pair):
    req = {"model": "tiny", "prompt": ["hello world", PROMPT], "max_tokens": 3, "ignore_eos": True}
    a, b = both_json(pair, "completions.prompt_list", "/v1/completions", req)
    same("completions.prompt_list", a, b)


def without_counts(reply):
    """`reply` with its token counts zeroed: where a stop string falls depends on the text,
    which a random model and the sim's filler make differ, so only the counts' consistency
    (checked first) and everything else are compared."""
    u = get(reply, "usage")
    if isinstance(u, dict):
        u = dict(u, completion_tokens=0, total_tokens=0)
        reply = dict(reply, usage=u)
    return reply


def test_stop_string(pair):
    # A random model and the sim's filler both emit an "e" well within 100 tokens.
    a, b = both_json(pair, "completions.stop", "/v1/completions", cmpl(max_tokens=100, stop=["e"], seed=11))
    usage_checks("completions.stop", a, b)
    same("completions.stop", without_counts(a), without_counts(b))
    assert "e" not in a["choices"][0]["text"]
    expect("completions.stop", "text free of the stop string", True, "e" not in str(get(b, "choices", 0, "text")))
    a, b = both_json(pair, "chat.stop", "/v1/chat/completions", chat(max_tokens=100, stop=["e"], seed=11))
    usage_checks("chat.stop", a, b)
    same("chat.stop", without_counts(a), without_counts(b))


def test_echo(pair):
    a, b = both_json(pair, "completions.echo", "/v1/completions", cmpl(max_tokens=3, echo=True))
    same("completions.echo", a, b)
    expect("completions.echo", "text starts with the prompt",
           a["choices"][0]["text"].startswith(PROMPT), str(get(b, "choices", 0, "text")).startswith(PROMPT))


def test_logprobs(pair):
    a, b = both_json(pair, "completions.logprobs", "/v1/completions", cmpl(max_tokens=3, logprobs=2))
    same("completions.logprobs", a, b)
    a, b = both_json(pair, "chat.logprobs", "/v1/chat/completions", chat(max_tokens=3, logprobs=True, top_logprobs=2))
    same("chat.logprobs", a, b)
    def plausible(reply):
        lp = get(reply, "choices", 0, "logprobs", "content", default=None)
        return bool(lp) and all(isinstance(x.get("logprob"), (int, float)) and x["logprob"] <= 0 for x in lp)
    assert plausible(a)
    expect("chat.logprobs", "logprobs present and <= 0", True, plausible(b))


def test_seed_repeats(pair):
    req = cmpl(max_tokens=8, seed=42, temperature=1.0)
    texts = {}
    for who in ("vllm", "sim"):
        r1 = body(pair.one(who, "POST", "/v1/completions", json=req))
        r2 = body(pair.one(who, "POST", "/v1/completions", json=req))
        texts[who] = get(r1, "choices", 0, "text") is not None and get(r1, "choices", 0, "text") == get(
            r2, "choices", 0, "text")
    expect("completions.seed", "same seed gives the same text", texts["vllm"], texts["sim"])


def test_bad_sampling_params_are_400(pair):
    cases = {
        "temperature_negative": cmpl(max_tokens=2, temperature=-1),
        "top_p_zero": cmpl(max_tokens=2, top_p=0),
        "max_tokens_zero": cmpl(max_tokens=0),
        "n_zero": cmpl(max_tokens=2, n=0),
        "logprobs_too_many": cmpl(max_tokens=2, logprobs=50),
    }
    for name, req in cases.items():
        a, b = pair.both("POST", "/v1/completions", json=req)
        expect(f"completions.{name}", "status", a.status_code, b.status_code)
        same(f"completions.{name}", body(a), body(b))


def test_empty_messages_is_400(pair):
    a, b = pair.both("POST", "/v1/chat/completions", json={"model": "tiny", "messages": []})
    expect("chat.empty_messages", "status", a.status_code, b.status_code)
    assert a.status_code == 400
    same("chat.empty_messages", body(a), body(b))


def test_unknown_model_is_404(pair):
    a, b = pair.both("POST", "/v1/completions", json={"model": "nope", "prompt": "hi", "max_tokens": 2})
    expect("completions.unknown_model", "status", a.status_code, b.status_code)
    same("completions.unknown_model", body(a), body(b))


def test_tools_auto_without_parser(pair):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    for choice in ("auto", "none"):
        a, b = pair.both("POST", "/v1/chat/completions", json=chat(max_tokens=3, tools=tools, tool_choice=choice))
        check = f"chat.tools_{choice}"
        expect(check, "status", a.status_code, b.status_code)
        same(check, body(a), body(b))


def test_response_format(pair):
    for fmt in ({"type": "json_object"}, {"type": "text"}):
        a, b = pair.both("POST", "/v1/chat/completions", json=chat(max_tokens=5, response_format=fmt))
        check = f"chat.response_format_{fmt['type']}"
        expect(check, "status", a.status_code, b.status_code)
        same(check, body(a), body(b))


def test_request_id_header(pair):
    hdr = {"x-request-id": "conformance-7"}
    for path, req, check in (("/v1/chat/completions", chat(max_tokens=2), "chat.x_request_id"),
                              ("/v1/completions", cmpl(max_tokens=2), "completions.x_request_id")):
        a, b = pair.both("POST", path, json=req, headers=hdr)
        expect(check, "id", get(body(a), "id"), get(body(b), "id"))
        expect(check, "x-request-id response header", a.headers.get("x-request-id"), b.headers.get("x-request-id"))


def sse(resp):
    """The JSON events of an SSE body, and whether it ended with [DONE]."""
    events, done = [], False
    for block in resp.text.split("\n\n"):
        block = block.strip()
        if not block.startswith("data: "):
            continue
        data = block[len("data: "):]
        if data == "[DONE]":
            done = True
        else:
            events.append(json.loads(data))
    return events, done


def compare_stream(pair, check, path, req, positional=True):
    """Compares two streams: first event, second event and event count only when
    `positional` (where a stream ends may depend on the generated text: a stop string), then
    the last choice event and the usage event."""
    a, b = pair.both("POST", path, json=req)
    expect(check, "status", a.status_code, b.status_code)
    expect(check, "content-type", a.headers.get("content-type"), b.headers.get("content-type"))
    (ea, da), (eb, db) = sse(a), sse(b)
    assert len(ea) >= 2, f"vLLM sent {len(ea)} events"
    if len(eb) < 2:
        return ea, eb
    expect(check, "ends with [DONE]", da, db)
    settle(check, [(f"event[0]{p}", x, y) for p, x, y in _d(ea[0], eb[0])])
    if positional:
        expect(check, "events", len(ea), len(eb))
        settle(check, [(f"event[1]{p}", x, y) for p, x, y in _d(ea[1], eb[1])])
    last_a = [e for e in ea if e.get("choices")][-1]
    last_b = ([e for e in eb if e.get("choices")] or [{}])[-1]
    settle(check, [(f"last_choice_event{p}", x, y) for p, x, y in _d(last_a, last_b)])
    if not ea[-1].get("choices"):
        settle(check, [(f"usage_event{p}", x, y) for p, x, y in _d(ea[-1], eb[-1])])
    return ea, eb


def _d(x, y):
    from compare import diff
    return [(p[1:], va, vb) for p, va, vb in diff(x, y)]


def test_stream_completions(pair):
    compare_stream(pair, "completions.stream", "/v1/completions",
                   cmpl(max_tokens=4, stream=True, stream_options={"include_usage": True}))


def test_stream_chat(pair):
    compare_stream(pair, "chat.stream", "/v1/chat/completions",
                   chat(max_tokens=4, stream=True, stream_options={"include_usage": True}))


def test_stream_chat_stop(pair):
    compare_stream(pair, "chat.stream_stop", "/v1/chat/completions",
                   chat(max_tokens=100, stop=["e"], seed=11, stream=True), positional=False)


def test_stream_continuous_usage(pair):
    compare_stream(pair, "chat.stream_continuous_usage", "/v1/chat/completions",
                   chat(max_tokens=3, stream=True,
                        stream_options={"include_usage": True, "continuous_usage_stats": True}))


def test_stream_continuous_usage_alone(pair):
    # vLLM 0.32: `include_usage` defaults to false, so this stream carries no usage at all.
    ea, eb = compare_stream(pair, "chat.stream_continuous_usage_alone", "/v1/chat/completions",
                            chat(max_tokens=3, stream=True, stream_options={"continuous_usage_stats": True}))
    expect("chat.stream_continuous_usage_alone", "events with usage",
           sum(1 for e in ea if e.get("usage")), sum(1 for e in eb if e.get("usage")))
