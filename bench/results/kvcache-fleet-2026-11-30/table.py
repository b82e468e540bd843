#!/usr/bin/env python3
"""Tables of the KV-pool fleet study (run.sh): per scenario, the four configurations
(a) prefix caching alone with least-request, (b) + the pool, (c) cache-aware routing alone,
(d) both; TTFT per offered rate, the highest rate that meets the TTFT SLO (throughput), hit
ratios and bytes moved; then the restart / scale events.

Layout: SCENARIO/{nopool,pool}@RATE/STRATEGY/{summary.json,sim.json} for sweeps, and
EVENT/{nopool,pool}/STRATEGY/{summary.json,sim.json,timeline.csv} for events.
A sweep's unit.json names its rate unit and SLO. Usage: table.py DIR."""
import csv
import json
import pathlib
import sys

here = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
SLO = 2500.0
UNIT = "/s"
LB = "least-request"
CA = ["prefix-cache", "ttft"]
GIB = float(1 << 30)


def load(d):
    s = json.loads((d / "summary.json").read_text())
    m = json.loads((d / "sim.json").read_text())
    return s, m


def stats(d):
    s, m = load(d)
    eng = m["per_engine"]
    q = sum(e["prefix_queries"] for e in eng) or 1
    pool = m.get("kv_pool") or {}
    return {
        "mean": s["ttft_ms"]["mean"],
        "p99": s["ttft_ms"]["p99"],
        "rps": s["requests_per_s"],
        "ok": s["completed"],
        "local": sum(e["prefix_hits"] for e in eng) / q,
        "ext": sum(e["external_hits"] for e in eng) / q,
        "loaded": sum(e["external_loaded_bytes"] for e in eng) / GIB,
        "stored": sum(e["external_stored_bytes"] for e in eng) / GIB,
        "evictions": pool.get("evictions", 0),
        "used": pool.get("used_bytes", 0) / GIB,
    }


def rates(scen):
    out = sorted({float(p.name.split("@")[1]) for p in scen.iterdir() if "@" in p.name})
    return out


def run(scen, cfg, rate, strat):
    d = scen / f"{cfg}@{rate:g}" / strat
    return stats(d) if (d / "summary.json").exists() else None


def max_rate(scen, cfg, strat):
    """Highest offered rate of the sweep up to which every rate's p99 TTFT meets the SLO,
    with the requests/s completed there."""
    best = None
    for r in rates(scen):
        x = run(scen, cfg, r, strat)
        if not x or x["p99"] > SLO:
            break
        best = (r, x["rps"])
    return best


def pct(a, b):
    return f"{100.0 * (a / b - 1.0):+.0f} %" if b else "–"


def sweep(scen):
    global SLO, UNIT
    u = json.loads((scen / "unit.json").read_text())
    SLO, UNIT = u["slo_p99_ms"], " " + u["unit"]
    rs = rates(scen)
    strats = [LB] + [c for c in CA if (scen / f"nopool@{rs[0]:g}" / c).exists()]
    print(f"\n### {scen.name}: TTFT mean / p99 ms per offered rate ({UNIT.strip()}; SLO p99 ≤ {SLO:.0f} ms)\n")
    print("| config | " + " | ".join(f"{r:g}" for r in rs) + f" | max rate meeting SLO,{UNIT} (req/s done) |")
    print("|---" * (len(rs) + 2) + "|")
    for cfg in ["nopool", "pool"]:
        for st in strats:
            cells = []
            for r in rs:
                x = run(scen, cfg, r, st)
                cells.append("–" if x is None else f"{x['mean']:.0f} / {x['p99']:.0f}")
            m = max_rate(scen, cfg, st)
            mr = "none" if m is None else f"{m[0]:g} ({m[1]:.2f})"
            print(f"| {cfg} {st} | " + " | ".join(cells) + f" | {mr} |")
    # The four configurations at the reference rate: the highest at which (a) meets the SLO.
    ref = max_rate(scen, "nopool", LB)
    ref_rate = ref[0] if ref else rs[0]
    best_ca = {}
    for cfg in ["nopool", "pool"]:
        # The better cache-aware strategy: the higher rate meeting the SLO, then the lower
        # mean TTFT at the reference rate.
        cands = [(run(scen, cfg, ref_rate, c), max_rate(scen, cfg, c), c) for c in strats[1:]]
        cands = [(-(m[0] if m else 0.0), x["mean"], c) for x, m, c in cands if x]
        best_ca[cfg] = min(cands)[2] if cands else None
    rows = [
        ("(a) prefix caching, " + LB, "nopool", LB),
        ("(b) + pool, " + LB, "pool", LB),
        (f"(c) cache-aware routing ({best_ca['nopool']})", "nopool", best_ca["nopool"]),
        (f"(d) both ({best_ca['pool']})", "pool", best_ca["pool"]),
    ]
    a = run(scen, "nopool", ref_rate, LB)
    am = max_rate(scen, "nopool", LB)
    print(f"\n{scen.name} at {ref_rate:g}{UNIT} (the highest rate (a) sustains), and throughput:\n")
    print("| config | TTFT mean ms | vs (a) | TTFT p99 ms | vs (a) | max rate meeting SLO | req/s done there | vs (a) | local hit | pool hit | loaded GiB | stored GiB | pool evictions | pool used GiB |")
    print("|---" * 14 + "|")
    for name, cfg, st in rows:
        if st is None:
            continue
        x = run(scen, cfg, ref_rate, st)
        m = max_rate(scen, cfg, st)
        if x is None:
            continue
        mr = "none" if m is None else f"{m[0]:g}"
        done = "–" if m is None else f"{m[1]:.2f}"
        dm = pct(m[1], am[1]) if (m and am) else "–"
        print(
            f"| {name} | {x['mean']:.0f} | {pct(x['mean'], a['mean'])} | {x['p99']:.0f} | {pct(x['p99'], a['p99'])} "
            f"| {mr} | {done} | {dm} | {100 * x['local']:.1f} % | {100 * x['ext']:.1f} % | {x['loaded']:.0f} | {x['stored']:.0f} "
            f"| {x['evictions']} | {x['used']:.1f} |"
        )


def window_ttft(path, t0, t1):
    """Mean TTFT of the requests sent in [t0, t1), from timeline.csv (weighted by arrivals)."""
    num = den = 0.0
    with open(path) as f:
        for row in csv.DictReader(f):
            t = float(row["t"])
            if t0 <= t < t1 and row["ttft_mean_ms"]:
                w = float(row["arrivals_per_s"])
                num += w * float(row["ttft_mean_ms"])
                den += w
    return num / den if den else float("nan")


def fresh(d, first):
    """Requests, and local and pool hit ratios, of the engines started during the run."""
    _, m = load(d)
    eng = m["per_engine"][first:]
    q = sum(e["prefix_queries"] for e in eng) or 1
    n = sum(e["requests"] for e in eng)
    return n, sum(e["prefix_hits"] for e in eng) / q, sum(e["external_hits"] for e in eng) / q


def event(ev, t0, t1, first):
    print(f"\n### {ev.name}: TTFT over the run, of the requests sent in [{t0:g}, {t1:g}) s, and the fresh engines\n")
    print("| config | TTFT mean / p99 ms | window TTFT mean ms | local hit | pool hit | loaded GiB | fresh engines: requests, local hit, pool hit |")
    print("|---|---|---|---|---|---|---|")
    for cfg in ["nopool", "pool"]:
        base = ev / cfg
        if not base.exists():
            continue
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            x = stats(d)
            w = window_ttft(d / "timeline.csv", t0, t1)
            n, fl, fp = fresh(d, first)
            print(
                f"| {cfg} {d.name} | {x['mean']:.0f} / {x['p99']:.0f} | {w:.0f} | {100 * x['local']:.1f} % "
                f"| {100 * x['ext']:.1f} % | {x['loaded']:.0f} | {n}, {100 * fl:.1f} %, {100 * fp:.1f} % |"
            )


for scen in sorted(p for p in here.iterdir() if p.is_dir() and any("@" in q.name for q in p.iterdir())):
    sweep(scen)
for ev in sorted(here.glob("event-*")):
    spec = json.loads((ev / "window.json").read_text())
    event(ev, spec["from_s"], spec["to_s"], spec["engines"])

var = here / "variants"
if var.exists():
    print("\n### variants: least-request at the events' rate, transport and pool size / policy\n")
    print("| pool | TTFT mean / p99 ms | local hit | pool hit | loaded GiB | pool evictions | pool used GiB |")
    print("|---|---|---|---|---|---|---|")
    for d in sorted(var.iterdir()):
        x = stats(d / LB)
        print(
            f"| {d.name} | {x['mean']:.0f} / {x['p99']:.0f} | {100 * x['local']:.1f} % | {100 * x['ext']:.1f} % "
            f"| {x['loaded']:.0f} | {x['evictions']} | {x['used']:.1f} |"
        )
