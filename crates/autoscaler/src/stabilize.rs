//! Stabilization windows and HPA's rate policies, with Kubernetes semantics.
//!
//! Kubernetes keeps every recommendation for the longest window; a scale-up takes the
//! **lowest** recommendation inside the scale-up window and a scale-down the **highest** inside
//! the scale-down window, so both directions are conservative (`stabilizeRecommendationWith
//! Behaviors` in `pkg/controller/podautoscaler/horizontal.go`).
//!
//! AIBrix defect fixed here: AIBrix's `stabilizeRecommendation` takes the max inside the up
//! window and the min inside the down window, so its default 300 s "scale-down stabilization"
//! makes scale-down *more* aggressive (aibrix.md §3). Brix follows Kubernetes.

use std::collections::VecDeque;

/// Most entries either history keeps, whatever the driver's clock does (a driver deciding
/// many times at one instant must not grow memory).
const MAX_ENTRIES: usize = 4096;

/// Past recommendations, newest last.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stabilizer {
    recommendations: VecDeque<(f64, u32)>,
}

impl Stabilizer {
    /// Records `recommended` at `now` and returns it held between the lowest recommendation
    /// in the last `up_s` seconds and the highest in the last `down_s` seconds, relative to
    /// `current`: `clamp(current, up, down)` as Kubernetes does.
    pub(crate) fn stabilize(
        &mut self,
        now: f64,
        current: u32,
        recommended: u32,
        up_s: f64,
        down_s: f64,
    ) -> u32 {
        let mut up = recommended;
        let mut down = recommended;
        for &(t, r) in &self.recommendations {
            if t > now - up_s {
                up = up.min(r);
            }
            if t > now - down_s {
                down = down.max(r);
            }
        }
        self.recommendations.push_back((now, recommended));
        if self.recommendations.len() > MAX_ENTRIES {
            self.recommendations.pop_front();
        }
        let keep = up_s.max(down_s);
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t <= now - keep)
        {
            self.recommendations.pop_front();
        }
        current.max(up).min(down)
    }
}

/// Kubernetes' default `behavior` rate policies: scale-up by at most `max(100 %, 4 pods)`
/// per 15 s, scale-down by at most 100 % per 15 s, each counted from the replica count at the
/// start of the period (the changes made inside it are remembered).
#[derive(Clone, Debug, Default)]
pub(crate) struct RatePolicy {
    /// `(time, replicas added (> 0) or removed (< 0))`.
    events: VecDeque<(f64, i64)>,
}

/// Kubernetes' policy period.
const PERIOD_S: f64 = 15.0;
/// Scale-up policy `Pods 4`.
const UP_PODS: i64 = 4;
/// Scale-up policy `Percent 100`.
const UP_PERCENT: f64 = 100.0;
/// Scale-down policy `Percent 100`.
const DOWN_PERCENT: f64 = 100.0;

impl RatePolicy {
    /// `desired` limited by the policies; `Some(true)` when the scale-up policy capped it,
    /// `Some(false)` when the scale-down policy floored it.
    pub(crate) fn limit(&self, now: f64, current: u32, desired: u32) -> (u32, Option<bool>) {
        let (mut added, mut removed) = (0i64, 0i64);
        for &(t, change) in &self.events {
            if t > now - PERIOD_S {
                if change > 0 {
                    added += change;
                } else {
                    removed -= change;
                }
            }
        }
        let current_i = i64::from(current);
        let start = (current_i - added + removed).max(0);
        if desired > current {
            let percent = (start as f64 * (1.0 + UP_PERCENT / 100.0)).ceil() as i64;
            let limit = percent.max(start + UP_PODS).max(current_i);
            if i64::from(desired) > limit {
                return (u32::try_from(limit).unwrap_or(u32::MAX), Some(true));
            }
        } else if desired < current {
            let limit = ((start as f64) * (1.0 - DOWN_PERCENT / 100.0)) as i64;
            let limit = limit.min(current_i);
            if i64::from(desired) < limit {
                return (u32::try_from(limit).unwrap_or(0), Some(false));
            }
        }
        (desired, None)
    }

    /// Remembers a change from `current` to `desired` made at `now`.
    pub(crate) fn record(&mut self, now: f64, current: u32, desired: u32) {
        if desired != current {
            self.events
                .push_back((now, i64::from(desired) - i64::from(current)));
            if self.events.len() > MAX_ENTRIES {
                self.events.pop_front();
            }
        }
        while self
            .events
            .front()
            .is_some_and(|(t, _)| *t <= now - PERIOD_S)
        {
            self.events.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_down_takes_the_highest_in_the_window() {
        let mut s = Stabilizer::default();
        assert_eq!(s.stabilize(0.0, 5, 8, 0.0, 300.0), 8);
        assert_eq!(s.stabilize(15.0, 8, 3, 0.0, 300.0), 8);
        assert_eq!(s.stabilize(200.0, 8, 4, 0.0, 300.0), 8);
        // 8 (t=0) has left the 300 s window; 4 (t=200) is the highest left.
        assert_eq!(s.stabilize(301.0, 8, 2, 0.0, 300.0), 4);
        assert_eq!(s.stabilize(501.0, 4, 2, 0.0, 300.0), 2);
    }

    #[test]
    fn scale_up_takes_the_lowest_in_the_window() {
        let mut s = Stabilizer::default();
        assert_eq!(s.stabilize(0.0, 2, 2, 60.0, 0.0), 2);
        assert_eq!(s.stabilize(10.0, 2, 6, 60.0, 0.0), 2);
        assert_eq!(s.stabilize(30.0, 2, 5, 60.0, 0.0), 2);
        assert_eq!(s.stabilize(61.0, 2, 7, 60.0, 0.0), 5);
    }

    #[test]
    fn hpa_default_rates() {
        let mut r = RatePolicy::default();
        // From 1: max(2 × 1, 1 + 4) = 5.
        assert_eq!(r.limit(0.0, 1, 20), (5, Some(true)));
        r.record(0.0, 1, 5);
        // Within the same 15 s period the base is still 1.
        assert_eq!(r.limit(10.0, 5, 20), (5, Some(true)));
        // A new period starts from 5: max(10, 9) = 10.
        assert_eq!(r.limit(15.0, 5, 20), (10, Some(true)));
        assert_eq!(r.limit(15.0, 5, 7), (7, None));
        // Scale-down: 100 % per period, so any count is allowed.
        assert_eq!(r.limit(30.0, 10, 0), (0, None));
    }
}
