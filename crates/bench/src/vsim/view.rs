//! What the gateway knows about one engine, kept exactly as `brix-gateway`'s pod table keeps it
//! (`crates/gateway/src/pool.rs`), so a policy gets the same inputs in virtual time as live:
//! its own in-flight count (exact, released at the end of the response), the engine's gauges as
//! of the last scrape, TTFT/TPOT EWMAs (α = 0.2) and prompt/output token rates over 10 s.
//!
//! This mirrors private code of the gateway crate rather than depending on it (an HTTP server
//! with its own runtime); the constants below must follow `pool.rs`.

use brix_router::{EngineMetrics, Observed, Pod};

/// Smoothing of the measured TTFT and TPOT (the gateway's `EWMA_ALPHA`).
const EWMA_ALPHA: f64 = 0.2;
/// Seconds of history behind the token-rate signals (the gateway's `RATE_WINDOW_S`).
const RATE_WINDOW_S: usize = 10;

/// The gateway's view of one pod.
#[derive(Clone, Debug, Default)]
pub(crate) struct GatewayView {
    /// Requests routed to the pod and not yet answered in full.
    pub(crate) in_flight: u32,
    /// The gauges as of the last scrape.
    pub(crate) metrics: EngineMetrics,
    ttft_s: Option<f64>,
    tpot_s: Option<f64>,
    /// (second, prompt tokens, output tokens) per slot.
    slots: [(u64, f64, f64); RATE_WINDOW_S],
}

impl GatewayView {
    /// Books one complete response, as the gateway's relay does when the stream ends.
    pub(crate) fn observe(
        &mut self,
        now: f64,
        prompt: u32,
        output: u32,
        ttft_s: Option<f64>,
        tpot_s: Option<f64>,
    ) {
        let sec = now.max(0.0) as u64;
        let slot = &mut self.slots[sec as usize % RATE_WINDOW_S];
        if slot.0 != sec {
            *slot = (sec, 0.0, 0.0);
        }
        slot.1 += f64::from(prompt);
        slot.2 += f64::from(output);
        if let Some(t) = ttft_s {
            self.ttft_s = ewma(self.ttft_s, t);
        }
        if let Some(t) = tpot_s {
            self.tpot_s = ewma(self.tpot_s, t);
        }
    }

    /// Writes the routing view at `now` into `pod` (whose name and address stay).
    pub(crate) fn fill(&self, pod: &mut Pod, now: f64) {
        let sec = now.max(0.0) as u64;
        let (p, o) = self
            .slots
            .iter()
            .filter(|s| s.0 + RATE_WINDOW_S as u64 > sec && s.0 <= sec)
            .fold((0.0, 0.0), |(p, o), s| (p + s.1, o + s.2));
        let w = RATE_WINDOW_S as f64;
        pod.in_flight = self.in_flight;
        pod.metrics = self.metrics.clone();
        pod.observed = Observed {
            prompt_tps: p / w,
            output_tps: o / w,
            ttft_s: self.ttft_s,
            tpot_s: self.tpot_s,
        };
    }
}

fn ewma(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(match old {
        Some(x) => x + EWMA_ALPHA * (sample - x),
        None => sample,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ewmas_follow_the_gateway() {
        let mut v = GatewayView::default();
        v.observe(0.5, 100, 10, Some(1.0), Some(0.1));
        v.observe(5.0, 100, 10, Some(2.0), None);
        let mut pod = Pod::default();
        v.fill(&mut pod, 5.5);
        assert_eq!(
            (pod.observed.prompt_tps, pod.observed.output_tps),
            (20.0, 2.0)
        );
        assert_eq!(pod.observed.ttft_s, Some(1.2));
        assert_eq!(pod.observed.tpot_s, Some(0.1));
        v.fill(&mut pod, 10.5);
        assert_eq!(pod.observed.prompt_tps, 10.0, "second 0 left the window");
        v.fill(&mut pod, 30.0);
        assert_eq!(pod.observed.prompt_tps, 0.0);
    }
}
