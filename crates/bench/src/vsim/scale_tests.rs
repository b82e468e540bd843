//! Autoscaled runs: the driver's mechanics under scripted decisions (cold starts, drains,
//! holding while no engine is ready, timeouts, billing, determinism), and the policy crate's
//! own autoscaler on a load burst. Nothing here reads a clock.

use std::cell::RefCell;
use std::rc::Rc;

use brix_api::{PodAutoscaler, Resource};
use brix_autoscaler::{Decision, FleetState, Load, Policy, Reading};
use brix_sim::Catalog;

use super::autoscale::Decide;
use super::*;
use crate::workload::WorkRequest;

/// A PodAutoscaler document for the simulated model.
fn document(strategy: &str, min: u32, max: u32, metric: &str, target: &str) -> PodAutoscaler {
    let text = format!(
        "apiVersion: autoscaling.aibrix.ai/v1alpha1
kind: PodAutoscaler
metadata:
  name: test-{}
spec:
  scalingStrategy: {strategy}
  minReplicas: {min}
  maxReplicas: {max}
  metricsSources:
    - metricSourceType: pod
      protocolType: http
      port: \"8000\"
      path: metrics
      targetMetric: {metric}
      targetValue: \"{target}\"
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: llama-3-8b
",
        strategy.to_lowercase()
    );
    match serde_yaml_ng::from_str::<Resource>(&text) {
        Ok(Resource::PodAutoscaler(p)) => p,
        other => panic!("not a PodAutoscaler: {other:?}"),
    }
}

fn config(engines: usize, policy: Policy, startup_s: f64) -> SimConfig {
    let c = Catalog::builtin();
    let mut cfg = match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => SimConfig::new(engines, m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    let mut sc = ScaleConfig::new(policy, startup_s);
    sc.policy.sync_s = 1.0;
    cfg.autoscaler = Some(sc);
    cfg
}

fn policy() -> Policy {
    let doc = document("KPA", 0, 8, "num_requests_running", "4");
    Policy::from_document(&doc, None).unwrap_or_else(|e| panic!("{e}"))
}

/// `n` requests at `rate`/s from `start`, 600-token prompts, 40 output tokens.
fn steady(n: usize, rate: f64, start: f64) -> Vec<WorkRequest> {
    (0..n)
        .map(|i| WorkRequest {
            id: i as u64,
            at_s: start + i as f64 / rate,
            session: None,
            prompt: (0..600).map(|k| (k * 7 + i as u32 * 13) % 2000).collect(),
            output_tokens: 40,
        })
        .collect()
}

/// What the scripted policy saw.
#[derive(Default)]
struct Seen {
    fleets: Vec<(f64, FleetState)>,
    startups: Vec<f64>,
    readings: Vec<(usize, Reading)>,
    loads: Vec<Load>,
}

/// Decides `count` from each `(at, count)` on (the fleet's own count before the first).
struct Script {
    steps: Vec<(f64, u32)>,
    seen: Rc<RefCell<Seen>>,
}

impl Decide for Script {
    fn observe(&mut self, source: usize, reading: Reading, _now: f64) {
        self.seen.borrow_mut().readings.push((source, reading));
    }
    fn observe_load(&mut self, load: &Load, _now: f64) {
        self.seen.borrow_mut().loads.push(*load);
    }
    fn observe_startup(&mut self, seconds: f64) {
        self.seen.borrow_mut().startups.push(seconds);
    }
    fn decide(&mut self, fleet: &FleetState, now: f64) -> Decision {
        self.seen.borrow_mut().fleets.push((now, *fleet));
        let desired = self
            .steps
            .iter()
            .rev()
            .find(|(at, _)| *at <= now)
            .map_or(fleet.desired, |s| s.1);
        Decision {
            at: now,
            current: fleet.desired,
            desired,
            recommendation: Some(desired),
            inputs: vec![("script".into(), f64::from(desired))],
            limits: Vec::new(),
            panic: false,
        }
    }
}

fn scripted(w: &Workload, cfg: &SimConfig, steps: &[(f64, u32)]) -> (SimRun, Rc<RefCell<Seen>>) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let script = Script {
        steps: steps.to_vec(),
        seen: Rc::clone(&seen),
    };
    let keys = route_keys(w, 128);
    let strategy: SimStrategy = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let run = run_with(w, &keys, Release::Open, cfg, &strategy, Box::new(script))
        .unwrap_or_else(|e| panic!("{e}"));
    (run, seen)
}

fn pod(r: &RequestRecord) -> &str {
    r.target_pod.as_deref().unwrap_or("")
}

#[test]
fn engines_asked_for_take_no_traffic_until_started_and_are_billed_from_the_ask() {
    let w = Workload {
        requests: steady(200, 10.0, 0.0),
    };
    let cfg = config(1, policy(), 5.0);
    let (run, seen) = scripted(&w, &cfg, &[(2.0, 3)]);
    assert_eq!(run.records.len(), 200);
    assert!(run.records.iter().all(RequestRecord::ok));
    for new in ["engine-1", "engine-2"] {
        let sent: Vec<f64> = run
            .records
            .iter()
            .filter(|r| pod(r) == new)
            .map(|r| r.sent_s)
            .collect();
        assert!(!sent.is_empty(), "{new} serves once up");
        assert!(sent.iter().all(|&t| t >= 7.0), "{new} cold until 2 + 5 s");
    }
    assert!(
        run.records
            .iter()
            .any(|r| pod(r) == "engine-0" && r.sent_s >= 7.0)
    );
    assert_eq!(seen.borrow().startups, vec![5.0, 5.0]);
    let f = &run.fleet;
    let end = run.end_s;
    assert!(
        (f.replica_seconds - (end + 2.0 * (end - 2.0))).abs() < 1e-6,
        "{f:?} {end}"
    );
    assert_eq!(f.gpu_seconds, f.replica_seconds, "one GPU each");
    assert!((f.cost_usd - f.gpu_seconds / 3600.0 * cfg.gpu.price_per_hour).abs() < 1e-9);
    assert_eq!((f.replicas_min, f.replicas_max, f.scale_events), (1, 3, 1));
    assert!((f.replicas_mean - f.replica_seconds / end).abs() < 1e-9);
    assert_eq!(f.decisions as usize, run.decisions.len());
    // The timeline shows them starting, then ready.
    let at = |t: f64| {
        run.timeline
            .iter()
            .find(|s| s.t == t)
            .copied()
            .unwrap_or_default()
    };
    assert_eq!(
        (at(4.0).ready, at(4.0).starting, at(4.0).desired),
        (1, 2, 3)
    );
    assert_eq!((at(8.0).ready, at(8.0).starting), (3, 0));
    // Per-pod readings cover the ready engines only.
    let seen = seen.borrow();
    assert!(seen.readings.iter().all(|(k, _)| *k == 0));
    let widths: Vec<usize> = seen
        .readings
        .iter()
        .map(|(_, r)| match r {
            Reading::Pods(v) => v.len(),
            _ => 0,
        })
        .collect();
    assert_eq!((widths[4], widths[8]), (1, 3));
    assert_eq!(seen.loads.last().map(|l| l.requests), Some(200));
}

#[test]
fn removal_drains_ready_engines_only_and_loses_no_request() {
    let w = Workload {
        requests: steady(400, 40.0, 0.0),
    };
    let cfg = config(4, policy(), 8.0);
    // Two more asked for at 1 s (ready at 9 s), then the count falls to 3 at 3 s.
    let (run, _) = scripted(&w, &cfg, &[(1.0, 6), (3.0, 3)]);
    assert_eq!(run.records.len(), 400, "none dropped");
    assert!(run.records.iter().all(RequestRecord::ok));
    let mut ids: Vec<u64> = run.records.iter().map(|r| r.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 400, "none counted twice");
    let routed: u64 = run.engines.iter().map(|e| e.requests).sum();
    assert_eq!(routed, 400);
    // The starting engines stay while surplus; one ready engine drains at 3 s.
    for s in run.timeline.iter().filter(|s| s.t >= 4.0 && s.t < 9.0) {
        assert_eq!((s.ready, s.starting, s.desired), (3, 2, 3), "{s:?}");
    }
    let last_sent = |name: &str| {
        run.records
            .iter()
            .filter(|r| pod(r) == name)
            .map(|r| r.sent_s)
            .fold(0.0, f64::max)
    };
    let drained: Vec<usize> = (0..4)
        .filter(|e| last_sent(&format!("engine-{e}")) < 3.0)
        .collect();
    assert_eq!(drained.len(), 1, "one of the first four drained");
    let victim = format!("engine-{}", drained[0]);
    let ends_after = run
        .records
        .iter()
        .filter(|r| pod(r) == victim)
        .any(|r| r.sent_s + r.e2e_ms.unwrap_or(0.0) / 1000.0 > 3.0);
    assert!(ends_after, "its requests in flight at 3 s finished there");
    // Once the two are ready, two surplus ready engines drain: 3 are left.
    let last = run.timeline.last().copied().unwrap_or_default();
    assert!(last.t >= 10.0 && last.ready == 3, "{last:?}");
    let f = &run.fleet;
    assert_eq!((f.replicas_max, f.scale_events), (6, 2));
    assert!(
        f.replica_seconds < 6.0 * run.end_s,
        "stopped engines stop billing"
    );
}

#[test]
fn from_zero_requests_are_held_then_served_in_arrival_order() {
    let w = Workload {
        requests: steady(30, 10.0, 0.5),
    };
    let cfg = config(0, policy(), 5.0);
    let (run, seen) = scripted(&w, &cfg, &[(0.0, 1)]);
    assert!(run.records.iter().all(RequestRecord::ok), "no error seen");
    let first = &run.records[0];
    assert_eq!(first.sent_s, 0.5, "sent when it arrived");
    let ttft = first.ttft_ms.unwrap_or(0.0);
    assert!(ttft >= 5000.0, "its TTFT includes the cold start: {ttft}");
    // Held ones reach the engine in arrival order: their first tokens come in that order.
    let firsts: Vec<f64> = run
        .records
        .iter()
        .map(|r| r.sent_s + r.ttft_ms.unwrap_or(0.0) / 1000.0)
        .collect();
    assert!(firsts.windows(2).all(|p| p[0] <= p[1]), "{firsts:?}");
    // The first held request asked for a decision at once.
    let seen = seen.borrow();
    assert!(
        seen.fleets
            .iter()
            .any(|(t, f)| *t == 0.5 && f.held == 1 && f.ready == 0),
        "{:?}",
        seen.fleets
    );
    assert_eq!(run.fleet.replicas_min, 0);
}

#[test]
fn held_requests_time_out_with_a_503_and_the_hold_is_bounded() {
    let mut requests = steady(5, 10.0, 0.0);
    requests.push(WorkRequest {
        id: 5,
        at_s: 150.0,
        ..requests[0].clone()
    });
    let w = Workload { requests };
    let mut cfg = config(0, policy(), 200.0);
    if let Some(sc) = cfg.autoscaler.as_mut() {
        sc.hold_limit = 3;
    }
    let (run, _) = scripted(&w, &cfg, &[(0.0, 1)]);
    let status: Vec<u16> = run.records.iter().map(|r| r.status).collect();
    assert_eq!(status, vec![503, 503, 503, 503, 503, 200]);
    let err = |i: usize| run.records[i].error.clone().unwrap_or_default();
    assert_eq!(err(0), "no replica became ready in 120 s");
    assert!(err(3).contains("3 requests are already held"), "{}", err(3));
    assert_eq!(run.records[3].e2e_ms, Some(0.0), "refused at once");
    assert!((run.records[0].e2e_ms.unwrap_or(0.0) - 120_000.0).abs() < 1e-6);
    let late = run.records[5].ttft_ms.unwrap_or(0.0);
    assert!(
        late >= 50_000.0,
        "held from 150 s until the engine is up at 200 s: {late}"
    );
}

#[test]
fn unknown_pod_metrics_read_missing_with_one_warning_and_totals_fail() {
    let w = Workload {
        requests: steady(20, 10.0, 0.0),
    };
    let mut p = policy();
    p.sources[0].metric = "vllm:no_such_metric".into();
    let mut total = p.sources[0].clone();
    total.kind = brix_autoscaler::SourceKind::Total;
    p.sources.push(total);
    let cfg = config(2, p, 5.0);
    let (run, seen) = scripted(&w, &cfg, &[]);
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(run.warnings[0].contains("vllm:no_such_metric"));
    for (k, r) in &seen.borrow().readings {
        match (k, r) {
            (0, Reading::Pods(v)) => assert_eq!(v, &vec![None, None]),
            (1, Reading::Failed(why)) => assert!(why.contains("no external endpoint")),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let w = Workload {
        requests: steady(150, 20.0, 0.0),
    };
    let cfg = config(1, policy(), 3.0);
    let steps = [(1.0, 3), (4.0, 2), (6.0, 4)];
    let (a, _) = scripted(&w, &cfg, &steps);
    let (b, _) = scripted(&w, &cfg, &steps);
    assert_eq!(a, b);
    assert_eq!(timeline_csv(&a), timeline_csv(&b));
    assert!(a.fleet.scale_events == 3 && a.fleet.replicas_max == 4);
    let keys = route_keys(&w, 128);
    let s: SimStrategy = "prefix-cache".parse().unwrap_or_else(|e| panic!("{e}"));
    let x = run(&w, &keys, Release::Open, &cfg, &s).unwrap_or_else(|e| panic!("{e}"));
    let y = run(&w, &keys, Release::Open, &cfg, &s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(x, y);
}

#[test]
fn a_static_fleet_is_billed_for_the_whole_run() {
    let w = Workload {
        requests: steady(60, 10.0, 0.0),
    };
    let mut cfg = config(3, policy(), 5.0);
    cfg.autoscaler = None;
    let keys = route_keys(&w, 128);
    let s: SimStrategy = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let r = run(&w, &keys, Release::Open, &cfg, &s).unwrap_or_else(|e| panic!("{e}"));
    let f = &r.fleet;
    assert!((f.replica_seconds - 3.0 * r.end_s).abs() < 1e-6, "{f:?}");
    assert_eq!(
        (f.replicas_min, f.replicas_max, f.scale_events, f.decisions),
        (3, 3, 0, 0)
    );
    assert!((f.replicas_mean - 3.0).abs() < 1e-9);
    assert!(r.decisions.is_empty() && r.warnings.is_empty());
    let csv = timeline_csv(&r);
    assert!(csv.starts_with("t,arrivals_per_s,desired,ready"));
    assert!(
        csv.lines().nth(1).is_some_and(|l| l.starts_with("0,")),
        "{csv}"
    );
    let arrivals: f64 = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.parse::<f64>().ok())
        .sum();
    assert!(
        (arrivals - 60.0).abs() < 1e-9,
        "1 s rows count every arrival"
    );
}

/// Light load, a burst, light load again: `(from, to, rate)` phases of 600-token requests.
fn phases(parts: &[(f64, f64, f64)]) -> Workload {
    let mut requests = Vec::new();
    for &(from, to, rate) in parts {
        let n = ((to - from) * rate) as usize;
        for mut r in steady(n, rate, from) {
            r.id = requests.len() as u64;
            r.output_tokens = 120;
            requests.push(r);
        }
    }
    Workload { requests }
}

#[test]
fn a_burst_scales_up_and_back_down_with_each_real_policy() {
    let w = phases(&[(0.0, 20.0, 2.0), (20.0, 60.0, 40.0), (60.0, 200.0, 2.0)]);
    let keys = route_keys(&w, 128);
    let s: SimStrategy = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let c = config(1, policy(), 5.0);
    let profile = brix_autoscaler::ReplicaProfile::from_engine(&c.model, &c.gpu, &c.engine, 5.0)
        .unwrap_or_else(|e| panic!("{e}"));
    for strategy in ["KPA", "APA", "HPA", "SLO"] {
        let doc = document(strategy, 1, 6, "num_requests_running", "8");
        let mut p =
            Policy::from_document(&doc, Some(profile.clone())).unwrap_or_else(|e| panic!("{e}"));
        p.knobs.stable_window = std::time::Duration::from_secs(10);
        p.knobs.panic_window = std::time::Duration::from_secs(4);
        p.knobs.scale_down_cooldown = std::time::Duration::from_secs(10);
        p.sync_s = p.sync_s.min(2.0);
        let mut cfg = config(1, p.clone(), 5.0);
        if let Some(sc) = cfg.autoscaler.as_mut() {
            // `config` sets a 1 s period for the scripted tests; keep the policy's, shortened.
            sc.policy.sync_s = p.sync_s;
        }
        let r = run(&w, &keys, Release::Open, &cfg, &s).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.records.iter().all(RequestRecord::ok), "{strategy}");
        let peak = r
            .timeline
            .iter()
            .filter(|t| t.t < 70.0)
            .map(|t| t.ready)
            .max()
            .unwrap_or(0);
        assert!(peak >= 2, "{strategy} scaled up in the burst: {peak}");
        let last = r.timeline.last().copied().unwrap_or_default();
        assert!(
            last.desired < peak,
            "{strategy} back down after it: {last:?}"
        );
        assert!(r.fleet.scale_events >= 2, "{strategy}: {:?}", r.fleet);
        assert!(r.fleet.replica_seconds < f64::from(peak) * r.end_s);
    }
}

#[test]
fn a_real_kpa_at_zero_activates_on_the_first_request_and_serves_it() {
    let w = phases(&[(3.0, 13.0, 2.0)]);
    let keys = route_keys(&w, 128);
    let s: SimStrategy = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let doc = document("KPA", 0, 4, "num_requests_running", "8");
    let p = Policy::from_document(&doc, None).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = config(0, p, 5.0);
    if let Some(sc) = cfg.autoscaler.as_mut() {
        sc.policy.sync_s = 2.0;
    }
    let r = run(&w, &keys, Release::Open, &cfg, &s).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        r.records.iter().all(RequestRecord::ok),
        "no client sees an error"
    );
    let first = r.decisions.iter().find(|d| d.desired > 0);
    assert!(
        first.is_some_and(|d| d.at == 3.0 && d.current == 0),
        "activated at the first arrival: {first:?}"
    );
    let ttft = r.records[0].ttft_ms.unwrap_or(0.0);
    assert!(
        ttft >= 5000.0,
        "the first request waited for the cold start: {ttft}"
    );
    assert_eq!(r.fleet.replicas_min, 0);
}
