//! Knative's Pod Autoscaler (`pkg/autoscaler/scaling/autoscaler.go`): totals over the stable
//! and panic windows against a per-pod target, rate clamps relative to ready pods, and a panic
//! mode that never scales down.
//!
//! AIBrix defects fixed here (aibrix.md §3):
//! - AIBrix's KPA divides the recorded per-pod **mean** by the target as if it were a total,
//!   so its answer ignores the number of pods (and its scale-down is a no-op for typical
//!   values). Brix uses Knative's total: for pod sources each tick records the per-pod mean
//!   × the pods it covered (the sum over pods, missing pods at the mean), and the windows
//!   average those totals; external and gateway sources are totals already.
//! - AIBrix enters panic when `panic / stable > threshold` (two window values); Knative (and
//!   Brix) panic when the panic-window pod count reaches `threshold × ready`.
//! - AIBrix's "no scale-down while panicking" reads `MaxPanicPods` from a context that always
//!   returns 0, so it never holds; Brix keeps the panic start and the episode's maximum here.
//!
//! Brix fix to both: the scale-up cap `ceil(upRate × ready)` counts ready pods only, so while
//! replicas are starting (minutes for an LLM) a cap below the current count would cancel
//! them although the load asks for them. The cap never goes below the current count while
//! the windows ask for at least that many.

use crate::FleetState;
use crate::decision::{Limit, Recommendation};
use crate::hpa::{ceil, ceil_u32};
use crate::sources::Signal;
use brix_api::ScalingKnobs;

/// Panic state across decisions (Knative's `panicTime` and `maxPanicPods`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PanicState {
    since: Option<f64>,
    max_pods: u32,
}

/// One source's desired stable and panic pod counts, before clamping.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Desired {
    stable_total: f64,
    panic_total: f64,
    dspc: f64,
    dppc: f64,
}

/// `dspc` and `dppc` for one source, or `None` without a stable value.
fn desired(signal: &Signal) -> Option<Desired> {
    let stable_total = signal.stable_total?;
    // A panic window with no sample (shorter than the gap since the last one) reads as the
    // stable value: no evidence of a burst.
    let panic_total = signal.panic_total.unwrap_or(stable_total);
    Some(Desired {
        stable_total,
        panic_total,
        dspc: ceil(stable_total / signal.target),
        dppc: ceil(panic_total / signal.target),
    })
}

/// KPA's recommendation over `signals` (the largest desired count over the sources that have
/// one); `fleet.ready` pods take traffic now.
pub(crate) fn recommend(
    signals: &[&Signal],
    fleet: &FleetState,
    knobs: &ScalingKnobs,
    state: &mut PanicState,
    now: f64,
) -> Recommendation {
    let per_source: Vec<(usize, Desired)> = signals
        .iter()
        .enumerate()
        .filter_map(|(i, s)| desired(s).map(|d| (i, d)))
        .collect();
    if per_source.is_empty() {
        return Recommendation::default();
    }
    // The source asking for the most pods (stable view) is the one reported.
    let (lead, top) =
        per_source.iter().copied().fold(
            per_source[0],
            |a, b| if b.1.dspc > a.1.dspc { b } else { a },
        );
    let dspc = top.dspc;
    let dppc = per_source.iter().map(|(_, d)| d.dppc).fold(0.0, f64::max);

    let ready = fleet.ready;
    // Knative: use 1 if there are no ready pods.
    let ready_f = f64::from(ready.max(1));
    let max_down = (ready_f / knobs.max_scale_down_rate).floor();
    // The cap never cancels replicas already asked for (starting ones included) while the
    // windows still ask for them.
    let asked = dspc.max(dppc);
    let max_up = ceil(knobs.max_scale_up_rate * ready_f)
        .max(asked.min(f64::from(fleet.desired)))
        .max(max_down);
    let clamp = |v: f64| v.max(max_down).min(max_up);
    let (stable_pods, panic_pods) = (ceil_u32(clamp(dspc)), ceil_u32(clamp(dppc)));

    let over = dppc / ready_f >= knobs.panic_threshold;
    let stable_window = knobs.stable_window.as_secs_f64();
    match state.since {
        _ if over => state.since = Some(now),
        Some(since) if now - since > stable_window => *state = PanicState::default(),
        _ => {}
    }
    let panicking = state.since.is_some();
    // What the windows ask for, before the rate clamp (to name the clamp that applied).
    let wanted = if panicking { dspc.max(dppc) } else { dspc };
    let mut desired = stable_pods;
    if panicking {
        desired = desired.max(panic_pods);
    }
    let mut limit = match f64::from(desired) {
        d if d < wanted => Some(Limit::ScaleUpRate),
        d if d > wanted => Some(Limit::ScaleDownRate),
        _ => None,
    };
    if panicking {
        if desired > state.max_pods {
            state.max_pods = desired;
        } else if desired < state.max_pods {
            desired = state.max_pods;
            limit = Some(Limit::Panic);
        }
    }
    Recommendation {
        replicas: Some(desired),
        inputs: vec![
            ("stable_total", top.stable_total),
            ("panic_total", top.panic_total),
            ("target", signals[lead].target),
            ("dspc", dspc),
            ("dppc", dppc),
            ("ready", f64::from(ready)),
            ("max_up", max_up),
            ("max_down", max_down),
        ],
        limit,
        panic: panicking,
    }
}
