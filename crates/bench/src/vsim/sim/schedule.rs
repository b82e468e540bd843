//! Scheduled replica counts (`brix bench sim --scale-at T:N,...`): at each time the platform
//! is told to run N engines, as an operator (or a node drain) would, with no autoscaler. The
//! surplus leaves by the live platform's rule (drained, then stopped); missing engines start
//! cold (empty prefix cache) and join after `startup_s`. Two steps at one time (`600:2,600:4`)
//! restart two engines: two drain, two fresh ones start. What a restart loses is exactly the
//! engines' local KV caches; a KV pool (`SimConfig::kv_pool`) is what lets them refill.

use super::Sim;
use super::slot::Event;
use crate::vsim::{ScaleSchedule, SimError};

impl Sim<'_> {
    /// Checks the schedule and queues its steps.
    pub(super) fn start_schedule(&mut self) -> Result<(), SimError> {
        let Some(s) = &self.cfg.schedule else {
            return Ok(());
        };
        check(s, self.cfg)?;
        let steps: Vec<f64> = s.steps.iter().map(|&(at, _)| at).collect();
        for (k, at) in steps.into_iter().enumerate() {
            self.push(at, Event::Scheduled(k));
        }
        Ok(())
    }

    /// Step `k` of the schedule is due: the replica count is set and the fleet converges.
    pub(super) fn scheduled(&mut self, k: usize, now: f64) {
        let Some(&(_, n)) = self.cfg.schedule.as_ref().and_then(|s| s.steps.get(k)) else {
            return;
        };
        if n != self.desired {
            self.scheduled_events += 1;
        }
        self.desired = n;
        self.reconcile(now);
    }

    /// Seconds a scheduled engine takes from being asked for to ready.
    pub(super) fn schedule_startup_s(&self) -> Option<f64> {
        self.cfg.schedule.as_ref().map(|s| s.startup_s)
    }
}

/// A schedule runs on a static, base-model fleet behind one gateway, with times in order and
/// at least one engine at every step.
fn check(s: &ScaleSchedule, cfg: &crate::vsim::SimConfig) -> Result<(), SimError> {
    let times_ok = s
        .steps
        .iter()
        .all(|&(at, n)| at.is_finite() && at >= 0.0 && n >= 1)
        && s.steps.is_sorted_by(|a, b| a.0 <= b.0);
    let startup_ok = s.startup_s.is_finite() && s.startup_s >= 0.0;
    let alone = cfg.autoscaler.is_none() && cfg.adapters.is_none() && cfg.replicas.gateways <= 1;
    if !(times_ok && startup_ok && alone) {
        return Err(SimError::Schedule);
    }
    Ok(())
}
