//! AIBrix's APA (`algorithm/apa.go`, after Huo et al. 2023): the stable-window per-pod mean
//! against the target, with separate up and down tolerance bands and per-decision rate caps.
//!
//! `r = u / t` with `u` the per-pod load and `N` the ready pods (1 if none):
//! `r > 1 + upTol` ⇒ `min(ceil(N·r), ceil(N·upRate))`; `r < 1 − downTol` ⇒
//! `max(ceil(N·r), floor(N / downRate))`; otherwise the count is held. Holding keeps the
//! current desired count (replicas still starting included), not `N`, so a replica that is
//! starting is not given up because the band was met without it.
//!
//! AIBrix defect fixed here: AIBrix averages the per-pod mean over the window, which lags a
//! change in the replica count by the whole window: after a scale-up the old, higher per-pod
//! values keep asking for more (`N` grew, `r` did not fall), a feedback loop that overshoots
//! and then undershoots under constant load. Brix takes `u` = the window's mean of the total
//! over pods (as KPA) ÷ the ready pods now, which equals AIBrix's value while the count is
//! steady and follows a count change at once. A total source is divided the same way (as
//! Kubernetes' `AverageValue`).
//!
//! Brix fix: the scale-up cap `ceil(N·upRate)` counts ready pods only, so while replicas are
//! starting a cap below the current count would cancel them although the load asks for
//! them; the cap never goes below the current count while `ceil(N·r)` asks for at least
//! that many.

use crate::FleetState;
use crate::decision::Limit;
use crate::hpa::{SourceRecommendation, ceil, ceil_u32};
use crate::sources::Signal;
use brix_api::ScalingKnobs;

/// APA's answer for one source, or `None` without a stable value.
pub(crate) fn recommend(
    signal: &Signal,
    fleet: &FleetState,
    knobs: &ScalingKnobs,
) -> Option<SourceRecommendation> {
    let n = f64::from(fleet.ready.max(1));
    let stable = signal.stable_total?;
    let r = stable / n / signal.target;
    let inputs = vec![
        ("stable_total", stable),
        ("target", signal.target),
        ("ratio", r),
        ("ready", f64::from(fleet.ready)),
    ];
    let (replicas, limit) = if r > 1.0 + knobs.scale_up_tolerance {
        let want = ceil(n * r);
        let cap = ceil(n * knobs.max_scale_up_rate).max(want.min(f64::from(fleet.desired)));
        if want > cap {
            (ceil_u32(cap), Some(Limit::ScaleUpRate))
        } else {
            (ceil_u32(want), None)
        }
    } else if r < 1.0 - knobs.scale_down_tolerance {
        let want = ceil(n * r);
        let floor = (n / knobs.max_scale_down_rate).floor();
        if want < floor {
            (ceil_u32(floor), Some(Limit::ScaleDownRate))
        } else {
            (ceil_u32(want), None)
        }
    } else {
        (fleet.desired, Some(Limit::Tolerance))
    };
    Some(SourceRecommendation {
        replicas,
        inputs,
        limit,
    })
}
