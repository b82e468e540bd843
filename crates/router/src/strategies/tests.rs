//! Table tests for the strategies measured by the gateway (throughput, least-latency) and the
//! per-user fairness one (vtc-basic), plus the registry.

use super::scorer;
use crate::decision::Fallback;
use crate::pod::{Observed, Pod, RouteRequest, VtcView};
use crate::strategy::Strategy;
use crate::testing::{empty, pick, pods};

fn observed(ttft: Option<f64>, tpot: Option<f64>) -> Observed {
    Observed {
        ttft_s: ttft,
        tpot_s: tpot,
        ..Observed::default()
    }
}

#[test]
fn every_strategy_has_its_own_type() {
    for s in Strategy::ALL {
        assert_eq!(scorer(s).strategy(), s);
    }
    let labels: Vec<&str> = [
        Fallback::MissingSignal(Strategy::LeastLatency),
        Fallback::NoSession,
        Fallback::NoPrefixMatch,
        Fallback::LoadImbalance,
        Fallback::NoUser,
    ]
    .map(Fallback::as_str)
    .into();
    assert_eq!(
        labels,
        [
            "missing_signal",
            "no_session",
            "no_prefix_match",
            "load_imbalance",
            "no_user"
        ]
    );
}

#[test]
fn throughput_picks_the_fewest_weighted_tokens_per_second() {
    // (prompt tps, output tps) per pod → cost 2p + o.
    let cases: [(&[(f64, f64)], usize); 3] = [
        (&[(100.0, 10.0), (10.0, 100.0), (50.0, 50.0)], 1), // 210, 120, 150
        (&[(0.0, 500.0), (200.0, 0.0)], 1),                 // 500, 400
        (&[(30.0, 0.0), (0.0, 0.0), (0.0, 61.0)], 1),       // idle pod
    ];
    let idx = empty();
    for (tps, want) in cases {
        let mut ps = pods(&vec![0; tps.len()]);
        for (p, &(prompt, output)) in ps.iter_mut().zip(tps) {
            p.observed.prompt_tps = prompt;
            p.observed.output_tps = output;
        }
        for seed in 0..10 {
            let d = pick("throughput", &RouteRequest::default(), &ps, &idx, seed);
            assert_eq!((d.pod, d.fallback), (want, None), "{tps:?} seed {seed}");
        }
    }
}

#[test]
fn least_latency_estimates_this_request() {
    // Pod 0: TTFT 0.1 s, TPOT 20 ms. Pod 1: TTFT 0.05 s, TPOT 30 ms.
    // est = ttft × (1 + queue) + tpot × expected output (max_tokens, else 128).
    let cases: [(u32, Option<f64>, Option<u32>, usize); 5] = [
        (0, None, None, 0),       // 2.66 s vs 3.89 s
        (0, None, Some(1), 1),    // 0.12 s vs 0.08 s: short answers favour fast TTFT
        (10, None, None, 0),      // 3.66 s vs 3.89 s
        (20, None, None, 1),      // 4.66 s vs 3.89 s
        (5, Some(15.0), None, 1), // the engine's waiting queue counts too: 4.66 s
    ];
    let idx = empty();
    for (load, waiting, max_tokens, want) in cases {
        let mut ps = pods(&[load, 0]);
        ps[0].observed = observed(Some(0.1), Some(0.02));
        ps[0].metrics.waiting = waiting;
        ps[1].observed = observed(Some(0.05), Some(0.03));
        let req = RouteRequest {
            max_tokens,
            ..RouteRequest::default()
        };
        for seed in 0..10 {
            let d = pick("least-latency", &req, &ps, &idx, seed);
            assert_eq!((d.pod, d.fallback), (want, None), "load {load} seed {seed}");
        }
    }
}

#[test]
fn least_latency_lends_new_pods_the_fleet_mean_and_falls_back_without_samples() {
    let idx = empty();
    let req = RouteRequest::default();
    // Measured pods: (0.2 s, 20 ms) and (0.4 s, 40 ms); pod 2 is new and borrows (0.3 s, 30 ms):
    // 0.3 + 3.84 = 4.14 s. Pod 0 at load L costs 0.2 × (1 + L) + 2.56.
    for (load, want) in [(0, 0), (6, 0), (7, 2)] {
        let mut ps = pods(&[load, 0, 0]);
        ps[0].observed = observed(Some(0.2), Some(0.02));
        ps[1].observed = observed(Some(0.4), Some(0.04));
        let d = pick("least-latency", &req, &ps, &idx, 1);
        assert_eq!((d.pod, d.fallback), (want, None), "load {load}");
    }
    // No pod measured yet: least-request, reported.
    let d = pick("least-latency", &req, &pods(&[3, 1, 2]), &idx, 1);
    assert_eq!(
        (d.pod, d.fallback),
        (1, Some(Fallback::MissingSignal(Strategy::LeastLatency)))
    );
}

/// Pods whose names sort differently from their slice order: ranks c=2, a=0, d=3, b=1.
fn named(loads: [u32; 4]) -> Vec<Pod> {
    let mut ps = pods(&loads);
    for (p, n) in ps.iter_mut().zip(["pod-c", "pod-a", "pod-d", "pod-b"]) {
        p.name = n.to_string();
    }
    ps
}

#[test]
fn vtc_basic_sends_heavier_users_to_higher_ranked_pods() {
    let idx = empty();
    // bucket = max(1000, (1000 + 3000) / 2) = 2000; normalized = min(tokens / 2000, 3).
    let cases: [(f64, [u32; 4], usize); 5] = [
        (0.0, [0; 4], 1),           // rank 0: pod-a
        (2000.0, [0; 4], 3),        // rank 1: pod-b
        (4000.0, [0; 4], 0),        // rank 2: pod-c
        (1e9, [0; 4], 2),           // capped at rank n − 1: pod-d
        (600.0, [0, 100, 0, 0], 3), // 0.3: pod-a at 100 in flight costs 1.3, pod-b 0.7
    ];
    for (tokens, loads, want) in cases {
        let req = RouteRequest {
            user: Some("alice"),
            vtc: Some(VtcView {
                user_tokens: tokens,
                min_tokens: 1000.0,
                max_tokens: 3000.0,
            }),
            ..RouteRequest::default()
        };
        let ps = named(loads);
        for seed in 0..20 {
            let d = pick("vtc-basic", &req, &ps, &idx, seed);
            assert_eq!((d.pod, d.fallback), (want, None), "{tokens} seed {seed}");
        }
    }
    // No user, or a user without a view: least-request, never random.
    let view = Some(VtcView::default());
    for req in [
        RouteRequest {
            vtc: view,
            ..RouteRequest::default()
        },
        RouteRequest {
            user: Some("bob"),
            ..RouteRequest::default()
        },
    ] {
        let d = pick("vtc-basic", &req, &named([4, 2, 1, 3]), &idx, 9);
        assert_eq!((d.pod, d.fallback), (2, Some(Fallback::NoUser)));
    }
}

#[test]
fn new_strategies_mix_and_add_nothing_without_signal() {
    let idx = empty();
    let mut ps = pods(&[4, 0, 2]);
    ps[1].observed.prompt_tps = 1000.0;
    let req = RouteRequest::default();
    // Normalised scores: throughput (1, 0, 1), least-request (0, 1, 0.5); 2:1 → (2/3, 1/3, 5/6).
    assert_eq!(
        pick("throughput:2,least-request:1", &req, &ps, &idx, 1).pod,
        2
    );
    // Without samples or users, least-latency and vtc-basic contribute nothing.
    for seed in 0..10 {
        let mix = "least-latency:5,vtc-basic:5,least-request:1";
        assert_eq!(pick(mix, &req, &ps, &idx, seed).pod, 1, "seed {seed}");
    }
}
