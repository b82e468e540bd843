//! Latency summaries: nearest-rank percentiles over every recorded request. Pure; no I/O.
//!
//! Every latency is kept (a 10 s run at 10k requests/s is 100k `u64`s), so percentiles are
//! exact rather than bucketed; a tail of a few slow requests is what the p99 column is for.

use serde::Serialize;

/// Percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Requests summarized.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

impl Summary {
    /// Summarizes latencies in nanoseconds (sorted in place); all zeros when empty.
    pub fn from_nanos(latencies: &mut [u64]) -> Self {
        if latencies.is_empty() {
            return Self::default();
        }
        latencies.sort_unstable();
        let total: u128 = latencies.iter().map(|&n| u128::from(n)).sum();
        let count = latencies.len() as u64;
        Self {
            count,
            mean_ms: total as f64 / count as f64 / 1e6,
            p50_ms: ms(percentile(latencies, 50.0)),
            p90_ms: ms(percentile(latencies, 90.0)),
            p99_ms: ms(percentile(latencies, 99.0)),
            max_ms: ms(latencies[latencies.len() - 1]),
        }
    }
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// Nearest-rank percentile (the crate's one, in [`crate::report`]).
pub use crate::report::percentile;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
    }

    #[test]
    fn summary_orders_and_converts() {
        let mut v = vec![3_000_000, 1_000_000, 2_000_000, 10_000_000];
        let s = Summary::from_nanos(&mut v);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.p99_ms, 10.0);
        assert_eq!(s.max_ms, 10.0);
        assert_eq!(s.mean_ms, 4.0);
        assert_eq!(Summary::from_nanos(&mut []), Summary::default());
    }
}
