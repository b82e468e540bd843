//! Table tests with the formulas' own vectors and property tests, through the public
//! [`Autoscaler`] API; one file per algorithm under `tests/`.

mod apa;
mod hpa;
mod kpa;
mod props;
mod scaler;

use std::time::Duration;

use brix_api::ScalingKnobs;

use crate::{
    Autoscaler, Decision, FleetState, Limit, Policy, Reading, SloTarget, Source, SourceKind,
    Strategy,
};

/// A policy with AIBrix's default knobs and one source per `(kind, target)`.
fn policy(strategy: Strategy, sources: &[(SourceKind, f64)], min: u32, max: u32) -> Policy {
    let names = [
        "num_requests_running",
        "gpu_cache_usage_perc",
        "gateway_in_flight",
    ];
    Policy {
        name: "p".into(),
        target: "m".into(),
        strategy,
        min_replicas: min,
        max_replicas: max,
        sources: sources
            .iter()
            .enumerate()
            .map(|(i, (kind, target))| Source {
                metric: match kind {
                    SourceKind::Gateway => "gateway_in_flight".into(),
                    _ => names[i % 2].into(),
                },
                kind: *kind,
                target: *target,
            })
            .collect(),
        knobs: ScalingKnobs::default(),
        sync_s: strategy.default_sync_s(),
        stale_after_s: 30.0,
        scale_to_zero_grace_s: 30.0,
        slo: SloTarget::default(),
        profile: None,
    }
}

/// One per-pod source with `target`.
fn pod_policy(strategy: Strategy, target: f64, min: u32, max: u32) -> Policy {
    policy(strategy, &[(SourceKind::PerPod, target)], min, max)
}

/// Seconds as a knob duration.
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `ready` pods, none starting, the platform converged.
fn fleet(ready: u32) -> FleetState {
    FleetState {
        desired: ready,
        ready,
        starting: 0,
        held: 0,
    }
}

/// `n` pods that all read `v`.
fn pods(n: u32, v: f64) -> Reading {
    Reading::Pods(vec![Some(v); n as usize])
}

/// Feeds source 0 `reading(t)` every second over `[from, to)`.
fn feed(a: &mut Autoscaler, from: u32, to: u32, mut reading: impl FnMut(f64) -> Reading) {
    for t in from..to {
        let t = f64::from(t);
        a.observe(0, reading(t), t);
    }
}

/// Whether `d` was limited by `limit` (ignoring `MissingMetrics`' text).
fn limited(d: &Decision, limit: &Limit) -> bool {
    d.limits.iter().any(|l| match (l, limit) {
        (Limit::MissingMetrics(_), Limit::MissingMetrics(_)) => true,
        _ => l == limit,
    })
}

/// The value of input `name` in `d`.
fn input(d: &Decision, name: &str) -> f64 {
    d.inputs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no input {name} in {}", d.reason()))
}
