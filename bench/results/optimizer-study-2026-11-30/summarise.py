#!/usr/bin/env python3
"""Markdown tables from one run of the optimizer study (its results.csv and tries.csv).

Usage: summarise.py RUN_DIR. Per workload and arrival, one row per rate:
- at utilisation 0.9 (what the profiles predict): the best single type and the optimizer's
  mix, the predicted saving, and the SLO attainment each reached on replay (✗: below the
  percentile), with the mix's attainment under exact-bucket routing in brackets;
- sized on replay: the highest utilisation of the list at which both plans meet the SLO
  (one knob for both, as an operator sets it), the two plans there and the saving.
"""
import csv
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def att(r):
    s = f"{float(r['attainment_pct']):.1f}"
    return s if r["slo_met"] == "true" else s + " ✗"


def main(run):
    tries = load(f"{run}/tries.csv")
    by = defaultdict(lambda: defaultdict(dict))  # case -> util -> plan -> row
    order = defaultdict(list)
    for r in tries:
        case = (r["workload"], r["arrival"], r["rate"])
        by[case][r["utilisation"]][r["plan"]] = r
        if r["utilisation"] not in order[case]:
            order[case].append(r["utilisation"])
    groups = defaultdict(list)
    for case in by:
        groups[case[:2]].append(case)
    for (w, a), cases in groups.items():
        print(f"\n#### {w}, {a} arrivals\n")
        print("| req/s | best single @0.9 | mix @0.9 | predicted saving | attained: single / mix "
              "(exact routing) | both meet at u | single | mix | saving |")
        print("|---|---|---|---|---|---|---|---|---|")
        for case in sorted(cases, key=lambda c: float(c[2])):
            us = order[case]
            s0, m0 = by[case][us[0]]["single"], by[case][us[0]]["mix"]
            pred = 100 * (1 - float(m0["cost_per_hour"]) / float(s0["cost_per_hour"]))
            ex = m0["exact_routing_attainment_pct"]
            ex = f" ({float(ex):.1f})" if ex else ""
            both = next((u for u in us if all(by[case][u][k]["slo_met"] == "true"
                                              for k in ("mix", "single"))), None)
            if both is None:
                tail = "none | | | |"
            else:
                s, m = by[case][both]["single"], by[case][both]["mix"]
                sv = 100 * (1 - float(m["cost_per_hour"]) / float(s["cost_per_hour"]))
                tail = (f"{both} | {s['replicas']} ${float(s['cost_per_hour']):.2f} | "
                        f"{m['replicas']} ${float(m['cost_per_hour']):.2f} | {sv:.1f} % |")
            print(f"| {case[2]} | {s0['replicas']} ${float(s0['cost_per_hour']):.2f} | "
                  f"{m0['replicas']} ${float(m0['cost_per_hour']):.2f} | {pred:.1f} % | "
                  f"{att(s0)} / {att(m0)}{ex} | {tail}")


if __name__ == "__main__":
    main(sys.argv[1])
