//! The retry budget: retries may add at most `ratio` of the requests seen over the last
//! [`WINDOW_S`] seconds, plus a floor of `min_per_s` retries a second (Linkerd's and Envoy's
//! budgets), so a failing fleet is not hit with a multiple of its load.
//!
//! Pure state behind one lock, driven by the gateway's monotonic clock: no I/O, no wall time.

use std::sync::Mutex;

/// Seconds of history the budget counts over.
pub const WINDOW_S: usize = 10;

/// Requests and retries per one-second slot over the last [`WINDOW_S`] seconds.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_s: f64,
    /// (second, requests, retries) per slot.
    slots: Mutex<[(u64, u64, u64); WINDOW_S]>,
}

impl RetryBudget {
    /// A budget allowing `ratio` × requests + `min_per_s` × window retries.
    pub fn new(ratio: f64, min_per_s: f64) -> Self {
        Self {
            ratio,
            min_per_s,
            slots: Mutex::new([(0, 0, 0); WINDOW_S]),
        }
    }

    fn with_slot<T>(
        &self,
        now: f64,
        f: impl FnOnce(&mut [(u64, u64, u64); WINDOW_S], usize) -> T,
    ) -> T {
        let sec = now.max(0.0) as u64;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let i = sec as usize % WINDOW_S;
        if slots[i].0 != sec {
            slots[i] = (sec, 0, 0);
        }
        let live = |s: &(u64, u64, u64)| s.0 + WINDOW_S as u64 > sec && s.0 <= sec;
        for s in slots.iter_mut() {
            if !live(s) {
                *s = (sec, 0, 0);
            }
        }
        f(&mut slots, i)
    }

    /// Counts one request (its first attempt).
    pub fn deposit(&self, now: f64) {
        self.with_slot(now, |s, i| s[i].1 += 1);
    }

    /// Takes one retry from the budget if there is room; returns whether the retry may go.
    pub fn try_withdraw(&self, now: f64) -> bool {
        self.with_slot(now, |s, i| {
            let (requests, retries) = s.iter().fold((0, 0), |(a, b), x| (a + x.1, b + x.2));
            let allowed = self.ratio * requests as f64 + self.min_per_s * WINDOW_S as f64;
            let ok = (retries + 1) as f64 <= allowed;
            if ok {
                s[i].2 += 1;
            }
            ok
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_ratio_plus_floor() {
        let b = RetryBudget::new(0.2, 0.5);
        // Floor alone: 0.5/s over 10 s = 5 retries.
        let granted = (0..20).filter(|_| b.try_withdraw(0.0)).count();
        assert_eq!(granted, 5);
        for _ in 0..100 {
            b.deposit(1.0);
        }
        // 20 % of 100 requests on top of the floor, minus the 5 already taken.
        let granted = (0..100).filter(|_| b.try_withdraw(1.5)).count();
        assert_eq!(granted, 20);
        // Ten seconds later the old requests and retries have left the window.
        assert_eq!((0..20).filter(|_| b.try_withdraw(12.0)).count(), 5);
    }
}
