//! What a benchmark run records and reports, the same for the live and the virtual-time modes:
//! one [`RequestRecord`] per request (`requests.jsonl`) and a [`Summary`] (`summary.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One request as the client saw it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RequestRecord {
    /// Workload request id.
    pub id: u64,
    /// Session id, for multi-turn workloads.
    pub session: Option<u64>,
    /// Turn within the session.
    pub turn: Option<u32>,
    /// Seconds after the start it was due (open loop) or released (closed loop, next turn).
    pub scheduled_s: f64,
    /// Seconds after the start it was actually sent; `sent_s − scheduled_s` is client lag.
    pub sent_s: f64,
    /// Time to first token.
    pub ttft_ms: Option<f64>,
    /// Every gap between consecutive output tokens (chunks).
    pub itl_ms: Vec<f64>,
    /// (end − first token) / (output tokens − 1).
    pub tpot_ms: Option<f64>,
    /// Send to last byte.
    pub e2e_ms: Option<f64>,
    /// Prompt tokens (engine usage, else the workload's count).
    pub prompt_tokens: u32,
    /// Output tokens (engine usage, else chunks counted).
    pub output_tokens: u32,
    /// HTTP status; 0 when no response came.
    pub status: u16,
    /// The `target-pod` response header (or the simulated engine's name).
    pub target_pod: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl RequestRecord {
    /// Completed with a 2xx and no error.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status) && self.error.is_none()
    }
}

/// Mean and percentiles of one metric, in its unit.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Dist {
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
}

impl Dist {
    /// Summarises `values` (any order); all zeros when empty.
    pub fn of(values: &mut [f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: percentile(values, 50.0),
            p90: percentile(values, 90.0),
            p99: percentile(values, 99.0),
        }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` % of the
/// values at or below it (the default, 0, when there are none). The crate's one percentile.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency objectives a request must meet to count toward goodput.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Slo {
    /// Largest acceptable time to first token.
    pub ttft_ms: Option<f64>,
    /// Largest acceptable time per output token.
    pub tpot_ms: Option<f64>,
}

impl Slo {
    fn met(&self, r: &RequestRecord) -> bool {
        let within = |limit: Option<f64>, v: Option<f64>| match limit {
            None => true,
            Some(l) => v.is_some_and(|v| v <= l),
        };
        r.ok() && within(self.ttft_ms, r.ttft_ms) && within(self.tpot_ms, r.tpot_ms)
    }
}

/// The run's headline numbers (`summary.json`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Summary {
    /// What was run (strategy, endpoint, mode).
    pub label: String,
    /// Time to first token, ms.
    pub ttft_ms: Dist,
    /// Inter-token latency over every gap of every request, ms.
    pub itl_ms: Dist,
    /// Time per output token per request, ms.
    pub tpot_ms: Dist,
    /// End-to-end latency, ms.
    pub e2e_ms: Dist,
    /// Completed requests per second of run time.
    pub requests_per_s: f64,
    /// Output tokens per second of run time.
    pub output_tokens_per_s: f64,
    /// Requests that completed.
    pub completed: u64,
    /// Requests that failed.
    pub failed: u64,
    /// First send to last completion, seconds.
    pub duration_s: f64,
    /// The objectives goodput counts against.
    pub slo: Slo,
    /// Completed requests per second that met the SLO.
    pub goodput_per_s: f64,
    /// How late the client sent requests against their schedule, ms (a saturated client
    /// shows here, not as lower latency).
    pub client_lag_ms: Dist,
    /// Completed requests per target pod.
    pub per_pod: BTreeMap<String, u64>,
    /// The fleet's size and cost (virtual-time runs, static or autoscaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSummary>,
}

/// What the fleet cost over a run, so static and autoscaled runs compare.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FleetSummary {
    /// GPU time billed: each engine from its request to its stop (or the run's end), times
    /// its tensor-parallel GPUs.
    pub gpu_seconds: f64,
    /// The same in engine (replica) seconds.
    pub replica_seconds: f64,
    /// `gpu_seconds` at the GPU profile's price per GPU-hour.
    pub cost_usd: f64,
    /// Fewest engines billed at any time.
    pub replicas_min: u32,
    /// Most engines billed at any time.
    pub replicas_max: u32,
    /// Engines billed, time-weighted over the run.
    pub replicas_mean: f64,
    /// Changes of the desired replica count.
    pub scale_events: u64,
    /// Decisions the autoscaler made.
    pub decisions: u64,
}

impl Summary {
    /// Computes the summary of `records`.
    pub fn from_records(label: &str, records: &[RequestRecord], slo: Slo) -> Self {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
        let collect = |f: &dyn Fn(&RequestRecord) -> Option<f64>| {
            let mut v: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
            Dist::of(&mut v)
        };
        let start = records
            .iter()
            .map(|r| r.sent_s)
            .fold(f64::INFINITY, f64::min);
        let end = ok
            .iter()
            .map(|r| r.sent_s + r.e2e_ms.unwrap_or(0.0) / 1000.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let duration_s = if end > start { end - start } else { 0.0 };
        let per_s = |n: f64| {
            if duration_s > 0.0 {
                n / duration_s
            } else {
                0.0
            }
        };
        let mut itl: Vec<f64> = ok.iter().flat_map(|r| r.itl_ms.iter().copied()).collect();
        let mut lag: Vec<f64> = records
            .iter()
            .map(|r| ((r.sent_s - r.scheduled_s) * 1000.0).max(0.0))
            .collect();
        let mut per_pod = BTreeMap::new();
        for r in &ok {
            if let Some(p) = &r.target_pod {
                *per_pod.entry(p.clone()).or_insert(0) += 1;
            }
        }
        let output: u64 = ok.iter().map(|r| u64::from(r.output_tokens)).sum();
        let good = ok.iter().filter(|r| slo.met(r)).count();
        Self {
            label: label.to_string(),
            ttft_ms: collect(&|r| r.ttft_ms),
            itl_ms: Dist::of(&mut itl),
            tpot_ms: collect(&|r| r.tpot_ms),
            e2e_ms: collect(&|r| r.e2e_ms),
            requests_per_s: per_s(ok.len() as f64),
            output_tokens_per_s: per_s(output as f64),
            completed: ok.len() as u64,
            failed: (records.len() - ok.len()) as u64,
            duration_s,
            slo,
            goodput_per_s: per_s(good as f64),
            client_lag_ms: Dist::of(&mut lag),
            per_pod,
            fleet: None,
        }
    }

    /// Summaries side by side as a markdown table.
    pub fn table(rows: &[&Summary]) -> String {
        let mut s = String::from(
            "| run | ok | failed | req/s | out tok/s | goodput/s | TTFT mean / p50 / p99 ms | TPOT p50 / p99 ms | ITL p99 ms | e2e p50 / p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} | {:.1} | {:.0} / {:.0} |",
                r.label,
                r.completed,
                r.failed,
                r.requests_per_s,
                r.output_tokens_per_s,
                r.goodput_per_s,
                r.ttft_ms.mean,
                r.ttft_ms.p50,
                r.ttft_ms.p99,
                r.tpot_ms.p50,
                r.tpot_ms.p99,
                r.itl_ms.p99,
                r.e2e_ms.p50,
                r.e2e_ms.p99,
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let cases = [
            (50.0, 50.0),
            (90.0, 90.0),
            (99.0, 99.0),
            (100.0, 100.0),
            (0.0, 1.0),
            (0.5, 1.0),
        ];
        for (p, want) in cases {
            assert_eq!(percentile(&v, p), want, "p{p}");
        }
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile::<f64>(&[], 50.0), 0.0);
        let mut odd = vec![5.0, 1.0, 3.0];
        assert_eq!(
            Dist::of(&mut odd),
            Dist {
                mean: 3.0,
                p50: 3.0,
                p90: 5.0,
                p99: 5.0
            }
        );
    }

    #[test]
    fn summary_counts_goodput_lag_and_failures() {
        let rec = |id, sent: f64, ttft: f64, status| RequestRecord {
            id,
            scheduled_s: 0.0,
            sent_s: sent,
            ttft_ms: Some(ttft),
            itl_ms: vec![10.0, 20.0],
            tpot_ms: Some(15.0),
            e2e_ms: Some(1000.0),
            output_tokens: 3,
            status,
            target_pod: Some(format!("pod-{}", id % 2)),
            ..RequestRecord::default()
        };
        let records = vec![
            rec(0, 0.0, 100.0, 200),
            rec(1, 1.0, 300.0, 200),
            rec(2, 1.0, 50.0, 500),
        ];
        let slo = Slo {
            ttft_ms: Some(200.0),
            tpot_ms: None,
        };
        let s = Summary::from_records("x", &records, slo);
        assert_eq!((s.completed, s.failed), (2, 1));
        assert_eq!(s.duration_s, 2.0);
        assert_eq!(s.requests_per_s, 1.0);
        assert_eq!(s.goodput_per_s, 0.5);
        assert_eq!(s.output_tokens_per_s, 3.0);
        assert_eq!(s.ttft_ms.p50, 100.0);
        assert_eq!(s.itl_ms.p99, 20.0);
        assert_eq!(s.client_lag_ms.p99, 1000.0);
        assert_eq!(s.per_pod.len(), 2);
        assert!(Summary::table(&[&s]).contains("| x | 2 | 1 |"));
    }
}
