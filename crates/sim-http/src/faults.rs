//! Injected failures for resilience tests: a start-up window in which the server is unready,
//! requests answered 500, requests that never answer, and generations cut mid-way.
//!
//! Draws come from one RNG seeded with the engine seed and are taken in request order, so a
//! run with the same seed and the same request sequence fails the same requests.

use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::config::FaultConfig;
use crate::driver::Clock;
use crate::error::ApiError;

/// The fault settings plus the state their draws need.
#[derive(Debug)]
pub(crate) struct Faults {
    cfg: FaultConfig,
    ready_at: Instant,
    rng: Mutex<SmallRng>,
}

impl Faults {
    /// Faults for a server whose clock started at `clock`'s zero.
    pub(crate) fn new(cfg: FaultConfig, clock: Clock, seed: u64) -> Self {
        Self {
            ready_at: clock.instant(cfg.startup_delay.as_secs_f64()),
            cfg,
            rng: Mutex::new(SmallRng::seed_from_u64(seed ^ 0x5eed_fa17)),
        }
    }

    /// True while `--startup-delay` has not elapsed.
    pub(crate) fn is_starting(&self) -> bool {
        Instant::now() < self.ready_at
    }

    /// Refuses requests during start-up, as a server that is not up yet would.
    pub(crate) fn check_ready(&self) -> Result<(), ApiError> {
        match self.is_starting() {
            true => Err(ApiError::Starting),
            false => Ok(()),
        }
    }

    /// Draws this request's fate: pass, fail with 500, or hang forever.
    pub(crate) async fn draw(&self) -> Result<(), ApiError> {
        let (fail, hang) = (self.cfg.fail_rate, self.cfg.hang_rate);
        if fail <= 0.0 && hang <= 0.0 {
            return Ok(());
        }
        let u: f64 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random();
        if u < fail {
            return Err(ApiError::InjectedFailure);
        }
        if u < fail + hang {
            tracing::debug!("injected hang");
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    /// `--die-mid-stream-after`: how many tokens a generation may emit before its connection
    /// is dropped.
    pub(crate) fn die_after(&self) -> Option<u32> {
        self.cfg.die_mid_stream_after
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn outcomes(seed: u64) -> Vec<bool> {
        let cfg = FaultConfig {
            fail_rate: 0.5,
            ..FaultConfig::default()
        };
        let f = Faults::new(cfg, Clock::start(), seed);
        let mut v = Vec::new();
        for _ in 0..64 {
            v.push(f.draw().await.is_err());
        }
        v
    }

    #[tokio::test]
    async fn failures_repeat_with_the_seed() {
        let a = outcomes(7).await;
        assert_eq!(a, outcomes(7).await);
        let fails = a.iter().filter(|x| **x).count();
        assert!((16..=48).contains(&fails), "{fails} of 64");
    }

    #[tokio::test(start_paused = true)]
    async fn startup_window_closes_on_time() {
        let cfg = FaultConfig {
            startup_delay: Duration::from_secs(5),
            ..FaultConfig::default()
        };
        let f = Faults::new(cfg, Clock::start(), 0);
        assert!(f.check_ready().is_err());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(f.check_ready().is_ok());
    }
}
