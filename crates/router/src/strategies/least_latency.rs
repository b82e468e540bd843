//! `least-latency`: the pod expected to finish this request first, from the TTFT and TPOT this
//! gateway measured (AIBrix needs PromQL histograms and silently turns random without them).

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::pod::Observed;
use crate::strategy::Strategy;

/// Output tokens assumed when the request sets no `max_tokens`.
pub(crate) const DEFAULT_EXPECTED_OUTPUT: u32 = 128;

/// Cost = `ttft_s × (1 + queue) + tpot_s × expected_output` with `queue = in_flight + waiting`;
/// a pod without samples borrows the mean of measured pods; least-request when none has any.
pub(crate) struct LeastLatency;

impl Scorer for LeastLatency {
    fn strategy(&self) -> Strategy {
        Strategy::LeastLatency
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let ttft_mean = mean(cx, |o| o.ttft_s);
        let tpot_mean = mean(cx, |o| o.tpot_s);
        if ttft_mean.is_none() && tpot_mean.is_none() {
            return vec![None; cx.pods.len()];
        }
        let out = f64::from(cx.req.max_tokens.unwrap_or(DEFAULT_EXPECTED_OUTPUT));
        cx.pods
            .iter()
            .map(|p| {
                let ttft = usable(p.observed.ttft_s).or(ttft_mean).unwrap_or(0.0);
                let tpot = usable(p.observed.tpot_s).or(tpot_mean).unwrap_or(0.0);
                let queue = f64::from(p.in_flight) + p.metrics.waiting.unwrap_or(0.0).max(0.0);
                Some(ttft * (1.0 + queue) + tpot * out)
            })
            .collect()
    }
}

/// A sample worth using: finite and not negative.
fn usable(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite() && *v >= 0.0)
}

/// Mean of one measurement over the pods that have it.
fn mean(cx: &Ctx<'_>, field: impl Fn(&Observed) -> Option<f64>) -> Option<f64> {
    let samples: Vec<f64> = cx
        .pods
        .iter()
        .filter_map(|p| usable(field(&p.observed)))
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
}
