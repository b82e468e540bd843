"""Differences between vLLM's and brix sim's answers: found recursively, checked against the
table of deliberate differences (deliberate.json, the machine-readable copy of the table in
docs/sim.md), recorded for the end-of-run report, and turned into a test failure when not
deliberate.

A difference is keyed `CHECK PATH` (e.g. `chat.basic $.choices[].message.reasoning_content`);
a deliberate entry's `match` is a pattern over that key where `*` matches anything.
"""

import json
import pathlib
import re

HERE = pathlib.Path(__file__).resolve().parent
DELIBERATE = json.loads((HERE / "deliberate.json").read_text())["differences"]

# Fields whose values a random model (or a clock, or a counter) makes differ on every run:
# only their JSON type is compared (and for containers, nothing below them).
RANDOM_VALUES = {
    "id", "created", "text", "content", "logprob", "token", "bytes", "tokens",
    "token_logprobs", "text_offset", "top_logprobs", "arguments", "system_fingerprint",
}

# Every difference seen this run: (key, detail, deliberate reason or None).
RECORD = []
# Differences of the running test that are not deliberate; the test fails with all of them
# when it ends (see conftest.pytest_runtest_call), so one run reports every difference.
PENDING = []


def kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def short(v, n=160):
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def diff(a, b, path="$", values=True):
    """(path, vllm, sim) for every place the JSON values `a` (vLLM) and `b` (sim) differ in
    shape, or in value where the value is deterministic. List indices appear as `[]`."""
    out = []
    ka, kb = kind(a), kind(b)
    if ka != kb:
        return [(path, f"{ka} {short(a)}", f"{kb} {short(b)}")]
    if ka == "object" and path == "$" and ("error" in a) != ("error" in b):
        # An error answered where the other side served (or the reverse): one difference,
        # not one per field.
        return [(path, short(a, 240), short(b, 240))]
    if ka == "object":
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}"
            if k not in b:
                out.append((p, short(a[k]), "(absent)"))
            elif k not in a:
                out.append((p, "(absent)", short(b[k])))
            elif k in RANDOM_VALUES:
                if kind(a[k]) != kind(b[k]):
                    out.append((p, f"{kind(a[k])} {short(a[k])}", f"{kind(b[k])} {short(b[k])}"))
                elif kind(a[k]) == "array" and k == "top_logprobs":
                    out += diff_top_logprobs(a[k], b[k], p)
            else:
                out += diff(a[k], b[k], p, values)
    elif ka == "array":
        if len(a) != len(b):
            out.append((path + ".length", str(len(a)), str(len(b))))
        seen = set()
        for x, y in zip(a, b):
            for d in diff(x, y, path + "[]", values):
                if d[0] not in seen:
                    seen.add(d[0])
                    out.append(d)
    elif values and a != b:
        out.append((path, short(a), short(b)))
    return out


def diff_top_logprobs(a, b, path):
    """Lists of alternatives: chat's are objects (compared by shape), completions' are
    {token: logprob} maps (compared by size)."""
    out = []
    if len(a) != len(b):
        out.append((path + ".length", str(len(a)), str(len(b))))
    for x, y in zip(a[:1], b[:1]):
        if kind(x) != kind(y):
            out.append((path + "[]", kind(x), kind(y)))
        elif kind(x) == "object" and "token" in x:
            out += diff(x, y, path + "[]")
        elif kind(x) == "object" and len(x) != len(y):
            out.append((path + "[].size", str(len(x)), str(len(y))))
    return out


def glob(pattern):
    """`*` matches anything; every other character, brackets included, only itself."""
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")) + r"\Z")


PATTERNS = [(glob(e["match"]), e["why"]) for e in DELIBERATE]


def deliberate(key):
    for pattern, why in PATTERNS:
        if pattern.match(key):
            return why
    return None


def settle(check, differences):
    """Records `differences` [(path, vllm, sim)] under `check`; those not in the deliberate
    table fail the test when it ends."""
    for path, va, vb in differences:
        key = f"{check} {path}"
        why = deliberate(key)
        RECORD.append((key, f"vLLM {va} | sim {vb}", why))
        if why is None:
            PENDING.append(f"  {key}\n      vLLM: {va}\n      sim:  {vb}")


def take_failures():
    """The readable diff of the running test's non-deliberate differences ('' if none)."""
    failing = list(PENDING)
    PENDING.clear()
    if not failing:
        return ""
    return f"{len(failing)} difference(s) from vLLM 0.32:\n" + "\n".join(failing)


def same(check, a, b, values=True):
    """Compares two JSON values (vLLM's first) and settles the differences."""
    settle(check, diff(a, b, values=values))


def expect(check, what, vllm_value, sim_value):
    """Compares one derived fact (a count, a property) that must agree."""
    if vllm_value != sim_value:
        settle(check, [(what, short(vllm_value), short(sim_value))])


def print_report(tr):
    if not RECORD:
        return
    tr.write_sep("=", f"vLLM conformance: {len(RECORD)} difference(s)")
    for key, detail, why in RECORD:
        tag = "deliberate" if why else "FAIL"
        tr.write_line(f"[{tag}] {key}: {detail}")
        if why:
            tr.write_line(f"           why: {why}")


def body(resp):
    """A reply's JSON, or its text when it is not JSON (an answer of the wrong kind is then a
    type difference, not a crash of the test)."""
    try:
        return resp.json()
    except ValueError:
        return resp.text


def get(v, *path, default=None):
    """v[path[0]][path[1]]..., or `default` where the path does not exist."""
    for p in path:
        try:
            v = v[p]
        except (KeyError, IndexError, TypeError):
            return default
    return v
