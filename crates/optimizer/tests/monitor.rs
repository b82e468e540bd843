//! The load monitor against a naive recomputation from every request it accepted, under random
//! arrivals with late and very late (dropped) requests.

use brix_optimizer::{Grid, LoadMonitor, MonitorConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[test]
fn demand_matches_a_naive_recount_of_accepted_requests() {
    let grid = Grid::default();
    let mut rng = SmallRng::seed_from_u64(7);
    for (window_s, tick_s) in [(40.0, 10.0), (5.0, 1.0), (3.0, 3.0)] {
        let mut m = LoadMonitor::new(grid.clone(), MonitorConfig { window_s, tick_s });
        let n = (window_s / tick_s) as i64;
        // (tick, cell) of every accepted request; the newest tick seen so far.
        let mut kept: Vec<(i64, usize)> = Vec::new();
        let mut latest = i64::MIN;
        let mut now = 0.0f64;
        for step in 0..3000 {
            now += rng.random_range(0.0..tick_s / 3.0);
            // Mostly on time, sometimes late by up to two windows.
            let t = if rng.random_bool(0.8) {
                now
            } else {
                now - rng.random_range(0.0..2.0 * window_s)
            };
            let (i, o) = (rng.random_range(1..20_000), rng.random_range(1..3_000));
            m.observe(i, o, t);
            let tick = (t / tick_s).floor() as i64;
            latest = latest.max(tick);
            if tick >= latest - n {
                kept.push((tick, grid.index(grid.cell(i, o))));
            }
            if step % 97 == 0 {
                let at = now + rng.random_range(0.0..tick_s);
                let cur = (at / tick_s).floor() as i64;
                let got = m.demand(at);
                for k in 0..grid.len() {
                    let in_window = kept
                        .iter()
                        .filter(|(tk, c)| *c == k && *tk >= cur - n && *tk < cur)
                        .count() as f64;
                    let last = kept
                        .iter()
                        .filter(|(tk, c)| *c == k && *tk == cur - 1)
                        .count() as f64;
                    let want = (in_window / (n as f64 * tick_s)).max(last / tick_s);
                    assert!(
                        (got.rates[k] - want).abs() < 1e-9,
                        "window {window_s}/{tick_s}, step {step}, cell {k}: {} vs {want}",
                        got.rates[k]
                    );
                }
            }
        }
    }
}
