//! The progress bar a live run shows on stderr: requests done out of all, with failures and
//! the worst client lag so far, so a failing endpoint or a saturated client is visible while it
//! runs rather than only in the summary. Drawn only on a terminal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::RequestRecord;

/// Counts finished requests into a bar.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    failed: AtomicU64,
    /// Largest lag so far, in microseconds.
    max_lag_us: AtomicU64,
}

impl Progress {
    /// A bar over `total` requests; hidden when `show` is false or stderr is not a terminal.
    pub(crate) fn new(total: u64, show: bool) -> Self {
        let target = if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) =
            ProgressStyle::with_template("{elapsed_precise} [{bar:32}] {pos}/{len} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            failed: AtomicU64::new(0),
            max_lag_us: AtomicU64::new(0),
        }
    }

    /// Counts one finished request.
    pub(crate) fn record(&self, r: &RequestRecord) {
        let failed = if r.ok() {
            self.failed.load(Ordering::Relaxed)
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed) + 1
        };
        let lag_us = ((r.sent_s - r.scheduled_s).max(0.0) * 1e6) as u64;
        let max_lag = self
            .max_lag_us
            .fetch_max(lag_us, Ordering::Relaxed)
            .max(lag_us);
        self.bar.set_message(format!(
            "failed {failed}, client lag max {:.1} ms",
            max_lag as f64 / 1000.0
        ));
        self.bar.inc(1);
    }

    /// Clears the bar at the end of the run.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
