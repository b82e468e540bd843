//! Two profiles of one GPU side by side (analytic vs sim: the paper's open question).

use brix_optimizer::Profile;
use serde::Serialize;

/// How profile `a` differs from profile `b`, bucket by bucket (ratios `a / b`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The GPU type.
    pub gpu: String,
    /// Buckets where both are > 0.
    pub both: usize,
    /// Median of `a / b` over those buckets.
    pub median_ratio: f64,
    /// Smallest ratio.
    pub min_ratio: f64,
    /// Largest ratio.
    pub max_ratio: f64,
    /// Share of those buckets within ±20 %.
    pub within_20pct: f64,
    /// Buckets only `a` can serve.
    pub only_a: usize,
    /// Buckets only `b` can serve.
    pub only_b: usize,
    /// The buckets furthest apart (`(input, output, a, b)`), worst first, at most five.
    pub worst: Vec<(u32, u32, f64, f64)>,
}

/// Compares `a` with `b`; None when their grids differ.
pub fn compare(a: &Profile, b: &Profile) -> Option<Comparison> {
    let grid = a.grid();
    if grid != b.grid() {
        return None;
    }
    let mut ratios = Vec::new();
    let (mut only_a, mut only_b) = (0, 0);
    for k in 0..grid.len() {
        let c = grid.cell_at(k);
        let (x, y) = (a.capacity(c), b.capacity(c));
        match (x > 0.0, y > 0.0) {
            (true, true) => ratios.push((x / y, grid.inputs[c.inp], grid.outputs[c.out], x, y)),
            (true, false) => only_a += 1,
            (false, true) => only_b += 1,
            (false, false) => {}
        }
    }
    let mut sorted: Vec<f64> = ratios.iter().map(|r| r.0).collect();
    sorted.sort_by(f64::total_cmp);
    let within = sorted.iter().filter(|r| (0.8..=1.2).contains(*r)).count();
    let mut worst = ratios.clone();
    worst.sort_by(|p, q| q.0.ln().abs().total_cmp(&p.0.ln().abs()));
    Some(Comparison {
        gpu: a.gpu.clone(),
        both: sorted.len(),
        median_ratio: crate::report::percentile(&sorted, 50.0),
        min_ratio: sorted.first().copied().unwrap_or(0.0),
        max_ratio: sorted.last().copied().unwrap_or(0.0),
        within_20pct: if sorted.is_empty() {
            0.0
        } else {
            within as f64 / sorted.len() as f64
        },
        only_a,
        only_b,
        worst: worst
            .into_iter()
            .take(5)
            .map(|(_, i, o, x, y)| (i, o, x, y))
            .collect(),
    })
}
