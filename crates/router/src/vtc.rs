//! The per-user token window behind `vtc-basic`: plain data the gateway keeps and updates as
//! responses finish, read into a [`VtcView`] for each routing call.
//!
//! Tokens are weighted as AIBrix weighs them (input × 1, output × 2) and summed per user over a
//! sliding window (AIBrix: 5 minutes) in one-second buckets. Memory is bounded: a user's
//! buckets never span more than the window, and users with nothing left in it are dropped.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::pod::VtcView;

/// AIBrix's window: 5 minutes.
pub const DEFAULT_WINDOW_S: f64 = 300.0;
/// Weight of one input (prompt) token.
const INPUT_WEIGHT: f64 = 1.0;
/// Weight of one output token.
const OUTPUT_WEIGHT: f64 = 2.0;
/// AIBrix's `min_tokens` when no user has any.
const DEFAULT_MIN: f64 = 1000.0;
/// AIBrix's `max_tokens` when no user has any.
const DEFAULT_MAX: f64 = 8000.0;

#[derive(Clone, Debug, Default)]
struct User {
    /// (second, weighted tokens), oldest first.
    buckets: VecDeque<(i64, f64)>,
    total: f64,
}

impl User {
    /// Total of the buckets still inside the window at `cutoff`.
    fn live_total(&self, cutoff: f64) -> f64 {
        let expired: f64 = self
            .buckets
            .iter()
            .take_while(|(s, _)| expired(*s, cutoff))
            .map(|(_, t)| t)
            .sum();
        (self.total - expired).max(0.0)
    }

    fn prune(&mut self, cutoff: f64) {
        while let Some(&(s, t)) = self.buckets.front() {
            if !expired(s, cutoff) {
                break;
            }
            self.total -= t;
            self.buckets.pop_front();
        }
        if self.buckets.is_empty() {
            self.total = 0.0;
        }
    }
}

/// A one-second bucket is out once it ends at or before the window's start.
fn expired(second: i64, cutoff: f64) -> bool {
    (second + 1) as f64 <= cutoff
}

/// Weighted tokens per user over a sliding window, bounded in memory.
#[derive(Clone, Debug)]
pub struct TokenWindow {
    window_s: f64,
    users: FxHashMap<String, User>,
    last_sweep: f64,
}

impl Default for TokenWindow {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_S)
    }
}

impl TokenWindow {
    /// An empty window of `window_s` seconds.
    pub fn new(window_s: f64) -> Self {
        Self {
            window_s,
            users: FxHashMap::default(),
            last_sweep: f64::NEG_INFINITY,
        }
    }

    /// Users with tokens still held (some may have expired since the last sweep).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is held.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Counts a finished (or admitted) request of `user` at `now`; sweeps expired users at most
    /// once a second.
    pub fn add(&mut self, user: &str, input: u64, output: u64, now: f64) {
        let cutoff = now - self.window_s;
        if now - self.last_sweep >= 1.0 {
            self.users.retain(|_, u| {
                u.prune(cutoff);
                !u.buckets.is_empty()
            });
            self.last_sweep = now;
        }
        let tokens = input as f64 * INPUT_WEIGHT + output as f64 * OUTPUT_WEIGHT;
        let u = self.users.entry(user.to_string()).or_default();
        u.prune(cutoff);
        let second = now.floor() as i64;
        match u.buckets.back_mut() {
            // A clock that steps back lands in the newest bucket.
            Some((s, t)) if *s >= second => *t += tokens,
            _ => u.buckets.push_back((second, tokens)),
        }
        u.total += tokens;
    }

    /// `user`'s weighted tokens in the window at `now`, with the smallest positive and the
    /// largest totals among all users (AIBrix's defaults 1,000 and 8,000 when there are none).
    pub fn view(&self, user: &str, now: f64) -> VtcView {
        let cutoff = now - self.window_s;
        let (mut min, mut max) = (f64::INFINITY, 0.0_f64);
        for u in self.users.values() {
            let t = u.live_total(cutoff);
            if t > 0.0 {
                min = min.min(t);
                max = max.max(t);
            }
        }
        VtcView {
            user_tokens: self.users.get(user).map_or(0.0, |u| u.live_total(cutoff)),
            min_tokens: if min.is_finite() { min } else { DEFAULT_MIN },
            max_tokens: if max > 0.0 { max } else { DEFAULT_MAX },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_weighted_tokens_within_the_window() {
        let mut w = TokenWindow::new(300.0);
        assert_eq!(
            w.view("a", 0.0),
            VtcView {
                user_tokens: 0.0,
                min_tokens: 1000.0,
                max_tokens: 8000.0
            }
        );
        w.add("a", 100, 50, 10.0); // 100 + 2 × 50 = 200
        w.add("a", 10, 0, 10.5);
        w.add("b", 1000, 1000, 200.0); // 3000
        let v = w.view("a", 250.0);
        assert_eq!(
            (v.user_tokens, v.min_tokens, v.max_tokens),
            (210.0, 210.0, 3000.0)
        );
        // a's bucket [10, 11) leaves the window once 300 s have passed its end.
        assert_eq!(w.view("a", 310.9).user_tokens, 210.0);
        let v = w.view("a", 311.0);
        assert_eq!(
            (v.user_tokens, v.min_tokens, v.max_tokens),
            (0.0, 3000.0, 3000.0)
        );
        assert_eq!(w.view("nobody", 311.0).user_tokens, 0.0);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut w = TokenWindow::new(60.0);
        for i in 0..10_000u32 {
            let now = f64::from(i) * 0.5;
            w.add(&format!("user-{}", i % 500), 10, 10, now);
            w.add("steady", 1, 1, now);
        }
        // Each of the 500 users is active once every 250 s: only the ~120 seen in the last
        // 60 s (plus one second of sweep lag) are held.
        assert!(w.len() <= 124, "{} users held", w.len());
        let steady = w.users.get("steady").map_or(0, |u| u.buckets.len());
        assert!(steady <= 61, "{steady} buckets for one user");
        // Buckets are whole seconds: 61 of them (4939..=4999) of 2 × 3 tokens overlap the window.
        assert_eq!(w.view("steady", 4999.5).user_tokens, 61.0 * 6.0);
    }
}
