//! The load monitor: the gateway's finished requests, bucketed, over a moving window, as the
//! demand the planner solves for. Bounded: one count array per tick of the window.

use crate::demand::Demand;
use crate::grid::Grid;

/// Window and tick of a [`LoadMonitor`].
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorConfig {
    /// Seconds of history the demand averages over (AIBrix: 240).
    pub window_s: f64,
    /// Seconds per tick (AIBrix: 10); the window holds `window_s / tick_s` ticks.
    pub tick_s: f64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            window_s: 240.0,
            tick_s: 10.0,
        }
    }
}

/// Most ticks a window may hold (memory: ticks × grid cells counters).
pub const MAX_TICKS: usize = 4096;

impl MonitorConfig {
    /// What is wrong with the settings, if anything: a tick that is not positive, a window
    /// shorter than a tick, more than [`MAX_TICKS`] ticks.
    pub fn problem(&self) -> Option<String> {
        if !(self.tick_s.is_finite() && self.tick_s > 0.0) {
            return Some(format!("tick_s {} must be positive seconds", self.tick_s));
        }
        if !(self.window_s.is_finite() && self.window_s >= self.tick_s) {
            return Some(format!(
                "window_s {} must be at least tick_s {}",
                self.window_s, self.tick_s
            ));
        }
        if self.window_s / self.tick_s > MAX_TICKS as f64 {
            return Some(format!(
                "window_s / tick_s = {:.0} ticks, more than {MAX_TICKS}",
                self.window_s / self.tick_s
            ));
        }
        None
    }

    /// Ticks in the window (settings with a problem are clamped: a bad tick is 10 s, the
    /// window at least one tick and at most [`MAX_TICKS`]).
    fn ticks(&self) -> (f64, usize) {
        let tick = if self.tick_s.is_finite() && self.tick_s > 0.0 {
            self.tick_s
        } else {
            10.0
        };
        let n = if self.window_s.is_finite() {
            (self.window_s / tick).round()
        } else {
            1.0
        };
        (tick, (n.max(1.0) as usize).min(MAX_TICKS))
    }
}

/// One tick's counts (empty until the tick sees a request).
#[derive(Clone, Debug)]
struct Slot {
    tick: i64,
    counts: Vec<u32>,
}

/// Bucketed request counts over a moving window (owner: issue-14 helper `opt-core`): a ring of
/// one counter array per tick (the window's ticks and the current, partial one). Times are
/// the caller's seconds (any epoch); a request older than the window is dropped, and time going
/// backwards neither panics nor mixes ticks.
#[derive(Clone, Debug)]
pub struct LoadMonitor {
    grid: Grid,
    cfg: MonitorConfig,
    tick_s: f64,
    ring: Vec<Slot>,
    latest: Option<i64>,
}

impl LoadMonitor {
    /// An empty monitor over `grid` (settings clamped as [`MonitorConfig::problem`] explains).
    pub fn new(grid: Grid, cfg: MonitorConfig) -> Self {
        let (tick_s, n) = cfg.ticks();
        Self {
            grid,
            cfg,
            tick_s,
            ring: vec![
                Slot {
                    tick: i64::MIN,
                    counts: Vec::new(),
                };
                n + 1
            ],
            latest: None,
        }
    }

    /// The grid requests are bucketed on.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// The window settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    /// Ticks in the window.
    fn window_ticks(&self) -> i64 {
        self.ring.len() as i64 - 1
    }

    /// The tick of time `t` (None for a time that is not a finite number).
    fn tick_of(&self, t: f64) -> Option<i64> {
        let k = (t / self.tick_s).floor();
        (k.is_finite() && k.abs() < 1e15).then_some(k as i64)
    }

    /// A request of `input` prompt and `output` generated tokens finished at `now_s`.
    pub fn observe(&mut self, input: u32, output: u32, now_s: f64) {
        let Some(t) = self.tick_of(now_s) else {
            return;
        };
        let latest = self.latest.map_or(t, |l| l.max(t));
        if t < latest - self.window_ticks() {
            return; // older than anything the window still holds
        }
        self.latest = Some(latest);
        let cells = self.grid.len();
        let k = self.grid.index(self.grid.cell(input, output));
        let n = self.ring.len() as i64;
        let slot = &mut self.ring[t.rem_euclid(n) as usize];
        if slot.tick != t {
            // The slot held a tick at least a ring's length older: reuse it.
            slot.tick = t;
            slot.counts.clear();
        }
        if slot.counts.is_empty() {
            slot.counts.resize(cells, 0);
        }
        slot.counts[k] = slot.counts[k].saturating_add(1);
    }

    /// The demand at `now_s`: per bucket, the larger of the window's mean rate and the latest
    /// full tick's rate (a rise shows within one tick, a fall takes the window). The window is
    /// the `window_s / tick_s` full ticks before the one `now_s` falls in.
    pub fn demand(&self, now_s: f64) -> Demand {
        let mut d = Demand::zero(self.grid.clone());
        let Some(now) = self.tick_of(now_s) else {
            return d;
        };
        let n = self.window_ticks();
        let mut sum = vec![0u64; d.rates.len()];
        let mut last: &[u32] = &[];
        for slot in &self.ring {
            if slot.tick >= now - n && slot.tick < now && slot.counts.len() == sum.len() {
                for (s, c) in sum.iter_mut().zip(&slot.counts) {
                    *s += u64::from(*c);
                }
                if slot.tick == now - 1 {
                    last = &slot.counts;
                }
            }
        }
        let window = n as f64 * self.tick_s;
        for (k, r) in d.rates.iter_mut().enumerate() {
            let mean = sum[k] as f64 / window;
            let latest = last.get(k).map_or(0.0, |c| f64::from(*c) / self.tick_s);
            *r = mean.max(latest);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(window_s: f64, tick_s: f64) -> LoadMonitor {
        LoadMonitor::new(Grid::default(), MonitorConfig { window_s, tick_s })
    }

    fn rate(m: &LoadMonitor, input: u32, output: u32, now: f64) -> f64 {
        let d = m.demand(now);
        d.rates[d.grid.index(d.grid.cell(input, output))]
    }

    #[test]
    fn steady_load_reads_as_its_rate_and_a_rise_shows_within_a_tick() {
        let mut m = monitor(40.0, 10.0);
        // 2 req/s of 1000-in/200-out for 40 s (t = 0 … 39.5).
        for i in 0..80 {
            m.observe(1000, 200, f64::from(i) * 0.5);
        }
        assert!((rate(&m, 1000, 200, 40.0) - 2.0).abs() < 1e-9);
        assert_eq!(m.demand(40.0).total(), rate(&m, 1000, 200, 40.0));
        // Other shapes land in their own bucket.
        m.observe(16000, 8, 40.5);
        assert_eq!(rate(&m, 16000, 8, 50.0), 0.1); // the latest tick: 1 in 10 s
        // A burst of 10 req/s in the tick [50, 60): the latest tick wins over the mean.
        for i in 0..100 {
            m.observe(1000, 200, 50.0 + f64::from(i) * 0.1);
        }
        assert!((rate(&m, 1000, 200, 60.0) - 10.0).abs() < 1e-9);
        // The partial current tick is not counted yet.
        assert!(
            (rate(&m, 1000, 200, 59.0) - 1.5).abs() < 1e-9,
            "{}",
            rate(&m, 1000, 200, 59.0)
        );
    }

    #[test]
    fn a_fall_takes_the_window_and_old_ticks_drop_out() {
        let mut m = monitor(40.0, 10.0);
        for i in 0..40 {
            m.observe(100, 100, f64::from(i)); // 1 req/s for 40 s
        }
        // Silence from 40 s: the mean decays tick by tick, then nothing is left.
        assert!((rate(&m, 100, 100, 40.0) - 1.0).abs() < 1e-9);
        assert!((rate(&m, 100, 100, 50.0) - 0.75).abs() < 1e-9);
        assert!((rate(&m, 100, 100, 70.0) - 0.25).abs() < 1e-9);
        assert_eq!(rate(&m, 100, 100, 80.0), 0.0);
        // A request from before the window is dropped; a slot is reused without mixing.
        m.observe(100, 100, 1000.0);
        m.observe(100, 100, 5.0);
        assert_eq!(m.demand(1010.0).total(), 0.1);
    }

    #[test]
    fn time_going_backwards_or_nonsense_does_not_panic_or_mix_ticks() {
        let mut m = monitor(20.0, 10.0);
        m.observe(100, 100, 100.0);
        m.observe(100, 100, 95.0); // late but inside the window: counted in its own tick
        m.observe(100, 100, 50.0); // too old: dropped
        for t in [f64::NAN, f64::INFINITY, -f64::INFINITY, 1e300] {
            m.observe(100, 100, t);
            let _ = m.demand(t);
        }
        let d = m.demand(110.0);
        // Window [90, 110): two requests over 20 s, latest tick [100, 110): one in 10 s.
        assert!((d.total() - 0.1).abs() < 1e-9, "{}", d.total());
        // Asking about the past sees only what was in that window.
        assert!((m.demand(100.0).total() - 0.1).abs() < 1e-9);
        assert_eq!(m.demand(0.0).total(), 0.0);
        // Negative clocks work too.
        let mut m = monitor(20.0, 10.0);
        m.observe(100, 100, -15.0);
        assert!((m.demand(-5.0).total() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn settings_are_checked_and_clamped() {
        assert!(MonitorConfig::default().problem().is_none());
        for (w, t) in [(10.0, 0.0), (10.0, f64::NAN), (5.0, 10.0), (1e9, 1.0)] {
            assert!(
                MonitorConfig {
                    window_s: w,
                    tick_s: t
                }
                .problem()
                .is_some(),
                "{w} {t}"
            );
        }
        let m = monitor(1e9, 1.0);
        assert_eq!(m.window_ticks(), MAX_TICKS as i64);
        let m = monitor(5.0, -1.0);
        assert_eq!(m.window_ticks(), 1);
    }
}
