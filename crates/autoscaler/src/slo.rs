//! Brix SLO-capacity policy (placeholder seam: h/slo replaces this file).

use crate::decision::Recommendation;
use crate::{FleetState, Load, Policy};

/// The SLO policy's own state (windows of the gateway's load, the online correction).
#[derive(Clone, Debug, Default)]
pub(crate) struct SloState {}

impl SloState {
    pub(crate) fn new(_policy: &Policy) -> Self {
        Self {}
    }

    pub(crate) fn observe_load(&mut self, _load: &Load, _now: f64) {}

    pub(crate) fn recommend(
        &mut self,
        _policy: &Policy,
        _fleet: &FleetState,
        _startup_s: f64,
        _now: f64,
    ) -> Recommendation {
        Recommendation::default()
    }
}
