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

/// Bucketed request counts over a moving window (owner: issue-14 helper `opt-core`).
#[derive(Clone, Debug)]
pub struct LoadMonitor {
    grid: Grid,
    cfg: MonitorConfig,
}

impl LoadMonitor {
    /// An empty monitor over `grid`.
    pub fn new(grid: Grid, cfg: MonitorConfig) -> Self {
        Self { grid, cfg }
    }

    /// The grid requests are bucketed on.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// The window settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    /// A request of `input` prompt and `output` generated tokens finished at `now_s`.
    pub fn observe(&mut self, input: u32, output: u32, now_s: f64) {
        let _ = (input, output, now_s);
        todo!("opt-core")
    }

    /// The demand at `now_s`: per bucket, the larger of the window's mean rate and the latest
    /// full tick's rate (a rise shows within one tick, a fall takes the window).
    pub fn demand(&self, now_s: f64) -> Demand {
        let _ = now_s;
        todo!("opt-core")
    }
}
