//! Kubernetes HPA (`autoscaling/v2`) for one source: the latest reading against the target,
//! with the tolerance band and the missing-pods rule of `replica_calculator.go`.
//!
//! AIBrix generates a native HPA for this strategy and runs no algorithm of its own; Brix runs
//! Kubernetes' calculation itself, so the same document scales the same way outside
//! Kubernetes. Stabilization and the rate policies are applied by the caller (`scaler.rs`).

use crate::FleetState;
use crate::decision::Limit;
use crate::policy::SourceKind;
use crate::sources::{Latest, Signal};

/// One source's HPA answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SourceRecommendation {
    /// Replicas it asks for.
    pub replicas: u32,
    /// The numbers it used.
    pub inputs: Vec<(&'static str, f64)>,
    /// Tolerance, when it held the count.
    pub limit: Option<Limit>,
}

/// HPA's replica count for `signal`, or `None` without a fresh reading. `current` is the
/// replica count the platform converges to (Kubernetes' `currentReplicas`).
pub(crate) fn recommend(
    signal: &Signal,
    fleet: &FleetState,
    up_tolerance: f64,
    down_tolerance: f64,
) -> Option<SourceRecommendation> {
    let current = fleet.desired;
    let target = signal.target;
    let within = |ratio: f64| ratio <= 1.0 + up_tolerance && ratio >= 1.0 - down_tolerance;
    let hold = |inputs: Vec<(&'static str, f64)>| SourceRecommendation {
        replicas: current,
        inputs,
        limit: Some(Limit::Tolerance),
    };
    match signal.latest.as_ref()? {
        // External metric with an `AverageValue` target: `ceil(total / target)`; the
        // tolerance compares the total with `target × current` (GetExternalPerPodMetricReplicas).
        Latest::Total(total) => {
            debug_assert!(signal.kind != SourceKind::PerPod);
            let ratio = if current == 0 {
                f64::INFINITY
            } else {
                total / (target * f64::from(current))
            };
            let inputs = vec![("value", *total), ("target", target), ("ratio", ratio)];
            if current > 0 && within(ratio) {
                return Some(hold(inputs));
            }
            Some(SourceRecommendation {
                replicas: ceil_u32(total / target),
                inputs,
                limit: None,
            })
        }
        Latest::Pods(pods) => per_pod(pods, fleet, target, within),
    }
}

/// `calcPlainMetricReplicas`: pods with a value give the mean; on a tentative scale-up, pods
/// with a missing value and replicas still starting count 0; on a scale-down, missing pods
/// count as exactly the target; the decision is dropped if that reverses its direction or
/// lands inside the tolerance.
fn per_pod(
    pods: &[Option<f64>],
    fleet: &FleetState,
    target: f64,
    within: impl Fn(f64) -> bool,
) -> Option<SourceRecommendation> {
    let current = fleet.desired;
    let present: Vec<f64> = pods.iter().flatten().copied().collect();
    if present.is_empty() {
        return None;
    }
    let sum: f64 = present.iter().sum();
    let ready = present.len() as f64;
    let missing = (pods.len() - present.len()) as f64;
    let unready = f64::from(fleet.starting);
    let ratio = sum / ready / target;
    let mut inputs = vec![
        ("mean", sum / ready),
        ("target", target),
        ("ratio", ratio),
        ("ready", ready),
    ];
    let hold = |inputs| {
        Some(SourceRecommendation {
            replicas: current,
            inputs,
            limit: Some(Limit::Tolerance),
        })
    };
    if missing == 0.0 && (unready == 0.0 || ratio <= 1.0) {
        if within(ratio) {
            return hold(inputs);
        }
        return Some(SourceRecommendation {
            replicas: ceil_u32(ratio * ready),
            inputs,
            limit: None,
        });
    }
    // Fill in the pods set aside and recompute.
    let (mut total, mut count) = (sum, ready + missing);
    if ratio < 1.0 {
        total += missing * target;
    } else if ratio > 1.0 {
        count += unready;
    }
    let new_ratio = total / count / target;
    inputs.push(("missing", missing));
    inputs.push(("starting", unready));
    inputs.push(("adjusted_ratio", new_ratio));
    if within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return hold(inputs);
    }
    let replicas = ceil_u32(new_ratio * count);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return hold(inputs);
    }
    Some(SourceRecommendation {
        replicas,
        inputs,
        limit: None,
    })
}

/// `ceil(x)`, forgiving the rounding error of the product or quotient it is given
/// (`10 × (0.35 / 0.5)` is 7.000000000000001 in floating point, and 7 replicas are meant).
pub(crate) fn ceil(x: f64) -> f64 {
    (x - 1e-9 * x.abs().max(1.0)).ceil()
}

/// [`ceil`] as a replica count (negative and NaN are 0, huge is `u32::MAX`).
pub(crate) fn ceil_u32(x: f64) -> u32 {
    let c = ceil(x);
    if c.is_nan() || c <= 0.0 {
        0
    } else if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c as u32
    }
}
