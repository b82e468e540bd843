//! A run's fleet over time as files: `timeline.csv` (one row per observe period: demand,
//! replicas, latency) and `decisions.jsonl` (each decision with its reason).

use std::fmt::Write as _;

use brix_autoscaler::Decision;
use serde::Serialize;

use super::SimRun;

/// The fleet at one observe tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TimelineSample {
    /// Virtual seconds.
    pub t: f64,
    /// The replica count last set.
    pub desired: u32,
    /// Engines in rotation.
    pub ready: u32,
    /// Engines asked for, not ready yet.
    pub starting: u32,
    /// Engines scaled down, finishing their requests.
    pub draining: u32,
    /// Requests at the gateway not ended (sent or held).
    pub in_flight: u32,
    /// Requests held while no engine was ready.
    pub held: u32,
}

/// One row of `timeline.csv`: a sample and the requests that arrived until the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct TimelineRow {
    pub(crate) sample: TimelineSample,
    /// Requests that arrived in the row's period, per second.
    pub(crate) arrivals_per_s: f64,
    /// Mean time to first token of the successful requests that arrived in it, ms.
    pub(crate) ttft_ms: Option<f64>,
}

/// The timeline's rows: each sample with the arrivals and mean TTFT of its period.
pub(crate) fn rows(run: &SimRun) -> Vec<TimelineRow> {
    let t = &run.timeline;
    let mut counts = vec![(0u64, 0u64, 0.0f64); t.len()];
    for r in &run.records {
        // The last sample at or before the request's arrival.
        let k = t.partition_point(|s| s.t <= r.sent_s);
        let Some(c) = k.checked_sub(1).and_then(|k| counts.get_mut(k)) else {
            continue;
        };
        c.0 += 1;
        if let (true, Some(ttft)) = (r.ok(), r.ttft_ms) {
            c.1 += 1;
            c.2 += ttft;
        }
    }
    t.iter()
        .enumerate()
        .map(|(k, s)| {
            let period = t.get(k + 1).map_or(1.0, |n| n.t - s.t).max(1e-9);
            let (n, ok, sum) = counts[k];
            TimelineRow {
                sample: *s,
                arrivals_per_s: n as f64 / period,
                ttft_ms: (ok > 0).then(|| sum / ok as f64),
            }
        })
        .collect()
}

/// `timeline.csv`: `t,arrivals_per_s,desired,ready,starting,draining,in_flight,held,ttft_mean_ms`
/// (TTFT of the requests sent in that period; empty when none completed).
pub fn timeline_csv(run: &SimRun) -> String {
    let mut out = String::from(
        "t,arrivals_per_s,desired,ready,starting,draining,in_flight,held,ttft_mean_ms\n",
    );
    for r in rows(run) {
        let s = r.sample;
        let ttft = r.ttft_ms.map(|v| format!("{v:.1}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{:.3},{},{},{},{},{},{},{ttft}",
            s.t, r.arrivals_per_s, s.desired, s.ready, s.starting, s.draining, s.in_flight, s.held
        );
    }
    out
}

/// A decision as `decisions.jsonl` writes it: its fields and its one-line reason.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    reason: String,
}

/// `decisions.jsonl`: one decision a line, with `reason`.
pub fn decisions_jsonl(decisions: &[Decision]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for d in decisions {
        out.push_str(&serde_json::to_string(&Line {
            decision: d,
            reason: d.reason(),
        })?);
        out.push('\n');
    }
    Ok(out)
}
