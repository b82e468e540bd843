//! Time-bucketed metric windows: 1 s buckets, memory bounded by the longest window read.
//!
//! [`Window`] holds gauge samples (a per-pod mean per tick, an external value) and answers the
//! mean over a window ending now; [`CounterWindow`] holds a monotonic counter's samples and
//! answers its rate over a window. A window with no sample in it has no value (`None`): missing
//! data is never read as zero. Time is `f64` seconds on the driver's clock; a sample older than
//! the newest one is folded into the newest bucket (the driver's clock does not run backwards,
//! but a late sample must not grow memory or reorder buckets).

use std::collections::VecDeque;

/// One second of samples: their sum and count.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    second: i64,
    sum: f64,
    count: u32,
}

/// Buckets of one second, oldest first, kept for `keep_s` seconds behind the newest.
#[derive(Clone, Debug, PartialEq)]
struct Buckets {
    buckets: VecDeque<Bucket>,
    keep_s: f64,
}

impl Buckets {
    fn new(keep_s: f64) -> Self {
        Self {
            buckets: VecDeque::new(),
            keep_s: keep_s.max(1.0),
        }
    }

    /// Adds `value` to the bucket of `now` and drops buckets older than `keep_s`.
    fn add(&mut self, now: f64, value: f64) {
        let mut second = now.floor() as i64;
        match self.buckets.back_mut() {
            Some(last) if second <= last.second => {
                second = last.second;
                last.sum += value;
                last.count += 1;
            }
            _ => self.buckets.push_back(Bucket {
                second,
                sum: value,
                count: 1,
            }),
        }
        let oldest = second as f64 - self.keep_s;
        while self
            .buckets
            .front()
            .is_some_and(|b| (b.second as f64) < oldest)
        {
            self.buckets.pop_front();
        }
    }

    /// The buckets of the seconds in `(now - window_s, now]`: a window of `w` seconds
    /// holds `w` buckets.
    fn within(&self, now: f64, window_s: f64) -> impl Iterator<Item = &Bucket> {
        let from = now - window_s;
        self.buckets
            .iter()
            .rev()
            .skip_while(move |b| b.second as f64 > now)
            .take_while(move |b| b.second as f64 > from)
    }
}

/// Gauge samples in 1 s buckets: a per-pod mean or a total recorded once per tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    buckets: Buckets,
    newest: Option<(f64, f64)>,
}

impl Window {
    /// A window that keeps `keep_s` seconds (the longest window it will be asked about).
    pub fn new(keep_s: f64) -> Self {
        Self {
            buckets: Buckets::new(keep_s),
            newest: None,
        }
    }

    /// Records `value` measured at `now`; a non-finite value is not a measurement and is
    /// dropped.
    pub fn record(&mut self, now: f64, value: f64) {
        if !value.is_finite() || !now.is_finite() {
            return;
        }
        self.buckets.add(now, value);
        if self.newest.is_none_or(|(t, _)| now >= t) {
            self.newest = Some((now, value));
        }
    }

    /// The mean over the last `window_s` seconds ending at `now`, each second with samples
    /// weighing the same (its own mean); `None` when no second in it has a sample.
    pub fn average(&self, now: f64, window_s: f64) -> Option<f64> {
        let (sum, n) = self
            .buckets
            .within(now, window_s)
            .fold((0.0, 0u32), |(s, n), b| {
                (s + b.sum / f64::from(b.count), n + 1)
            });
        (n > 0).then(|| sum / f64::from(n))
    }

    /// The newest sample's value.
    pub fn latest(&self) -> Option<f64> {
        self.newest.map(|(_, v)| v)
    }

    /// Seconds since the newest sample (`None`: never recorded).
    pub fn age(&self, now: f64) -> Option<f64> {
        self.newest.map(|(t, _)| (now - t).max(0.0))
    }
}

/// A monotonic counter's samples, at most one per second, as a running total of increases.
///
/// A counter that goes down was restarted (a new gateway, a new engine): the increase over
/// that step is the new value (counted from zero), as Prometheus' `rate()` does; a rate is
/// never negative.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterWindow {
    /// `(time, increases since the first sample)`, oldest first, one per second.
    points: VecDeque<(f64, f64)>,
    keep_s: f64,
    last_raw: Option<f64>,
}

impl CounterWindow {
    /// A window that keeps `keep_s` seconds.
    pub fn new(keep_s: f64) -> Self {
        Self {
            points: VecDeque::new(),
            keep_s: keep_s.max(1.0),
            last_raw: None,
        }
    }

    /// Records the counter's value `counter` read at `now`.
    pub fn record(&mut self, now: f64, counter: f64) {
        if !counter.is_finite() || !now.is_finite() || counter < 0.0 {
            return;
        }
        let (total, same_second) = match (self.points.back(), self.last_raw) {
            (Some(&(t, _)), _) if now < t => return,
            (Some(&(t, total)), Some(prev)) => {
                let increase = if counter >= prev {
                    counter - prev
                } else {
                    counter
                };
                (total + increase, t.floor() == now.floor())
            }
            _ => (0.0, false),
        };
        self.last_raw = Some(counter);
        if same_second {
            self.points.pop_back();
        }
        self.points.push_back((now, total));
        // Keep one point at or before the oldest window start, as the reference for it.
        let cutoff = now - self.keep_s;
        while self.points.get(1).is_some_and(|&(t, _)| t <= cutoff) {
            self.points.pop_front();
        }
    }

    /// Increase per second over the last `window_s` seconds ending at `now`: between the
    /// newest sample and the newest one at or before the window's start (or the oldest kept,
    /// if the history is shorter); `None` before two samples.
    pub fn rate(&self, now: f64, window_s: f64) -> Option<f64> {
        let from = now - window_s;
        let &(t_new, c_new) = self.points.iter().rev().find(|(t, _)| *t <= now)?;
        let &(t_ref, c_ref) = self
            .points
            .iter()
            .rev()
            .find(|(t, _)| *t <= from)
            .or_else(|| self.points.front())?;
        (t_new > t_ref).then(|| (c_new - c_ref) / (t_new - t_ref))
    }

    /// Seconds since the newest sample (`None`: never recorded).
    pub fn age(&self, now: f64) -> Option<f64> {
        self.points.back().map(|(t, _)| (now - t).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_over_seconds_with_samples() {
        let mut w = Window::new(10.0);
        assert_eq!(w.average(0.0, 5.0), None);
        w.record(0.2, 1.0);
        w.record(0.7, 3.0); // same second: its mean is 2
        w.record(1.5, 4.0);
        // A gap at second 2 is not read as zero.
        w.record(3.1, 6.0);
        assert_eq!(w.average(3.5, 10.0), Some(4.0));
        assert_eq!(w.average(3.5, 2.0), Some(6.0));
        assert_eq!(w.average(3.5, 3.0), Some(5.0));
        assert_eq!(w.latest(), Some(6.0));
        assert_eq!(w.age(4.0), Some(4.0 - 3.1));
        // Nothing in the last second once time moves on.
        assert_eq!(w.average(10.0, 1.0), None);
    }

    #[test]
    fn memory_is_bounded_by_the_longest_window() {
        let mut w = Window::new(5.0);
        for t in 0..10_000 {
            w.record(f64::from(t), 1.0);
        }
        assert!(w.buckets.buckets.len() <= 7, "{}", w.buckets.buckets.len());
        assert_eq!(w.average(9_999.0, 5.0), Some(1.0));
    }

    #[test]
    fn non_finite_samples_are_not_measurements() {
        let mut w = Window::new(5.0);
        w.record(1.0, f64::NAN);
        w.record(1.0, f64::INFINITY);
        assert_eq!(w.average(1.0, 5.0), None);
        assert_eq!(w.age(1.0), None);
    }

    #[test]
    fn late_samples_fold_into_the_newest_bucket() {
        let mut w = Window::new(5.0);
        w.record(4.0, 2.0);
        w.record(1.0, 4.0);
        assert_eq!(w.buckets.buckets.len(), 1);
        assert_eq!(w.average(4.0, 1.0), Some(3.0));
        assert_eq!(w.latest(), Some(2.0));
    }

    #[test]
    fn counter_rate() {
        let mut c = CounterWindow::new(60.0);
        assert_eq!(c.rate(0.0, 10.0), None);
        c.record(0.0, 100.0);
        assert_eq!(c.rate(0.0, 10.0), None);
        for t in 1..=20 {
            c.record(f64::from(t), 100.0 + 5.0 * f64::from(t));
        }
        assert_eq!(c.rate(20.0, 10.0), Some(5.0));
        // Since the first sample when the window is longer than the history.
        assert_eq!(c.rate(20.0, 60.0), Some(5.0));
    }

    #[test]
    fn counter_reset_is_a_restart_never_negative() {
        let mut c = CounterWindow::new(60.0);
        c.record(0.0, 1000.0);
        c.record(1.0, 1010.0);
        c.record(2.0, 4.0); // restarted: 4 since the restart
        c.record(3.0, 14.0);
        assert_eq!(c.rate(3.0, 3.0), Some((10.0 + 4.0 + 10.0) / 3.0));
        for t in 4..100 {
            c.record(f64::from(t), 0.0);
        }
        assert!(c.rate(99.0, 10.0).is_some_and(|r| r == 0.0));
        assert!(c.points.len() <= 62, "{}", c.points.len());
    }

    #[test]
    fn counter_samples_within_a_second_keep_one_point() {
        let mut c = CounterWindow::new(60.0);
        c.record(0.0, 0.0);
        c.record(1.2, 5.0);
        c.record(1.7, 9.0);
        assert_eq!(c.points.len(), 2);
        assert_eq!(c.rate(1.7, 10.0), Some(9.0 / 1.7));
    }
}
