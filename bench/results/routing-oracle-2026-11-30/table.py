#!/usr/bin/env python3
"""One markdown table of TTFT mean / p99 per scenario and strategy, with the ratio to the oracle."""
import json
import pathlib
import sys

here = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
order = ["random", "least-request", "prefix-cache", "kv-cost", "sglang-cache-aware", "ttft", "oracle"]
scen = ["mooncake-light", "mooncake-heavy", "multiturn-light", "multiturn-heavy"]


def ttft(path):
    s = json.loads(path.read_text())
    t = s["ttft_ms"]
    return t["mean"], t["p99"]


print("| strategy | " + " | ".join(f"{s} mean / p99 ms (× oracle)" for s in scen) + " |")
print("|---" * (len(scen) + 1) + "|")
for st in order:
    cells = []
    for s in scen:
        p = here / s / st / "summary.json"
        o = here / s / "oracle" / "summary.json"
        if not p.exists():
            cells.append("–")
            continue
        (m, p99), (om, op99) = ttft(p), ttft(o)
        cells.append(f"{m:.1f} / {p99:.0f} ({m / om:.3f} / {p99 / op99:.3f})")
    print(f"| {st} | " + " | ".join(cells) + " |")

# The same scenarios routed on the engines' KV events (exact cached tokens), against the same
# oracle (it reads the engines' truth either way).
ev = [s for s in scen if (here / f"{s}-events").exists()]
if ev:
    print()
    print("| strategy, KV events | " + " | ".join(f"{s} mean / p99 ms (× oracle)" for s in ev) + " |")
    print("|---" * (len(ev) + 1) + "|")
    for st in ["prefix-cache", "kv-cost", "ttft"]:
        cells = []
        for s in ev:
            p = here / f"{s}-events" / st / "summary.json"
            o = here / s / "oracle" / "summary.json"
            if not p.exists():
                cells.append("–")
                continue
            (m, p99), (om, op99) = ttft(p), ttft(o)
            cells.append(f"{m:.1f} / {p99:.0f} ({m / om:.3f} / {p99 / op99:.3f})")
        print(f"| {st} | " + " | ".join(cells) + " |")
