//! The autoscaler's state: windows per source, stabilization history, panic state, recent
//! decisions; `decide` runs the algorithm, then the steps every strategy shares.
//!
//! The shared steps, in order: missing metrics hold the count (never a scale-down, never to
//! zero); stabilization with Kubernetes semantics; HPA's rate policies (KPA, APA and the SLO
//! policy limit their own rates); the `[minReplicas, maxReplicas]` clamp; the scale-to-zero
//! grace period; activation (requests held for a model with no replica ask for one).

use crate::decision::{Decision, Limit, Recommendation};
use crate::hpa::SourceRecommendation;
use crate::kpa::PanicState;
use crate::schedule::Schedules;
use crate::slo::SloState;
use crate::sources::{Signal, SourceState};
use crate::stabilize::{RatePolicy, Stabilizer};
use crate::{FleetState, Load, Policy, Reading, Strategy, apa, hpa, kpa};

/// Decisions kept for `brix status`.
const HISTORY: usize = 20;
/// Seconds the SLO policy waits after a scale-down before the next (coalescing a decline).
const SLO_DOWN_SPACING_S: f64 = 30.0;
/// Weight of a new start-up time in its moving average.
const STARTUP_EWMA: f64 = 0.3;

/// One PodAutoscaler's state.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    policy: Policy,
    sources: Vec<SourceState>,
    slo: SloState,
    stabilizer: Stabilizer,
    rates: RatePolicy,
    panic: PanicState,
    zero_since: Option<f64>,
    startup_ewma: Option<f64>,
    last_at: Option<f64>,
    /// When the count last went down (the SLO policy spaces its scale-downs).
    last_down: Option<f64>,
    history: Vec<Decision>,
    schedules: Schedules,
}

impl Autoscaler {
    /// A fresh autoscaler for `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            sources: policy
                .sources
                .iter()
                .map(|s| SourceState::new(s, &policy))
                .collect(),
            slo: SloState::new(&policy),
            stabilizer: Stabilizer::default(),
            rates: RatePolicy::default(),
            panic: PanicState::default(),
            zero_since: None,
            startup_ewma: None,
            last_at: None,
            last_down: None,
            history: Vec::new(),
            schedules: Schedules::default(),
            policy,
        }
    }

    /// Applies the document's `spec.schedules` (those in UTC; see [`Schedules::new`], which
    /// takes the Unix time of the driver's clock zero). Without this call schedules are not
    /// applied (virtual time has no date unless the driver gives it one).
    pub fn with_schedules(mut self, schedules: Schedules) -> Self {
        self.schedules = schedules;
        self
    }

    /// The policy it runs.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Records a reading of source `source` (index in `policy.sources`) taken at `now`. A
    /// `Reading::Failed` records nothing (its text goes into the next decision's reason); an
    /// index out of range and readings for gateway sources (computed from
    /// [`Self::observe_load`]) are ignored.
    pub fn observe(&mut self, source: usize, reading: Reading, now: f64) {
        let Some(spec) = self.policy.sources.get(source) else {
            return;
        };
        if spec.kind != crate::SourceKind::Gateway {
            self.sources[source].observe(reading, now);
        }
    }

    /// Records the gateway's view of the model at `now` (the gateway sources' values and the
    /// SLO policy's load); call it about once a second.
    pub fn observe_load(&mut self, load: &Load, now: f64) {
        for state in &mut self.sources {
            state.observe_load(load, now);
        }
        self.slo.observe_load(load, now);
    }

    /// A replica took `seconds` from being asked for to ready.
    pub fn observe_startup(&mut self, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        self.startup_ewma = Some(match self.startup_ewma {
            None => seconds,
            Some(avg) => avg + STARTUP_EWMA * (seconds - avg),
        });
    }

    /// Best estimate of a replica's start-up time: the larger of the profile's and the
    /// moving average of the measured ones (0 if neither is known).
    pub fn startup_s(&self) -> f64 {
        let profile = self.policy.profile.as_ref().map_or(0.0, |p| p.startup_s);
        profile.max(self.startup_ewma.unwrap_or(0.0))
    }

    /// When the next decision is due: `policy.sync_s` after the last one (negative infinity
    /// before the first). Drivers call [`Self::decide`] once `now` reaches it.
    pub fn next_decision_at(&self) -> f64 {
        self.last_at
            .map_or(f64::NEG_INFINITY, |t| t + self.policy.sync_s)
    }

    /// The most recent decisions, oldest first (at most 20).
    pub fn history(&self) -> &[Decision] {
        &self.history
    }

    /// The replica count for `fleet` at `now`, with its reasons.
    pub fn decide(&mut self, fleet: &FleetState, now: f64) -> Decision {
        let current = fleet.desired;
        let signals: Vec<Signal> = self
            .policy
            .sources
            .iter()
            .zip(&self.sources)
            .map(|(spec, state)| state.signal(spec, &self.policy, now))
            .collect();
        let (rec, named) = self.recommend(&signals, fleet, now);
        let mut limits = Vec::new();
        // The SLO policy reads the gateway's load, not the sources: theirs do not hold it.
        let missing: Vec<&str> = signals
            .iter()
            .filter(|_| self.policy.strategy != Strategy::Slo)
            .filter_map(|s| s.missing.as_deref())
            .collect();
        let mut desired = match rec.replicas {
            None => {
                let why = match (&rec.limit, missing.is_empty()) {
                    (Some(Limit::MissingMetrics(why)), _) => why.clone(),
                    (_, false) => missing.join("; "),
                    (_, true) => "no sample in the window".into(),
                };
                limits.push(Limit::MissingMetrics(why));
                self.stabilizer.note_hold(now, current);
                current
            }
            // Kubernetes: with some metrics missing, never scale down on the others.
            Some(r) if r < current && !missing.is_empty() => {
                limits.extend(rec.limit.clone());
                limits.push(Limit::MissingMetrics(missing.join("; ")));
                self.stabilizer.note_hold(now, current);
                current
            }
            Some(r) => {
                limits.extend(rec.limit.clone());
                let (up_s, down_s) = self.windows();
                let stable = self.stabilizer.stabilize(now, current, r, up_s, down_s);
                if stable != r {
                    limits.push(Limit::Stabilization);
                }
                self.rate_limit(now, current, stable, &mut limits)
            }
        };
        desired = self.bounds(desired, now, &mut limits);
        desired =
            self.zero_and_activation(fleet, desired, rec.replicas.is_some(), now, &mut limits);
        self.rates.record(now, current, desired);
        let decision = Decision {
            at: now,
            current,
            desired,
            recommendation: rec.replicas,
            inputs: named.unwrap_or_else(|| {
                rec.inputs
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect()
            }),
            limits,
            panic: rec.panic,
        };
        self.last_at = Some(now);
        if desired < current {
            self.last_down = Some(now);
        }
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(decision.clone());
        decision
    }

    /// The strategy's raw recommendation, and its inputs named per source when there are
    /// several.
    fn recommend(
        &mut self,
        signals: &[Signal],
        fleet: &FleetState,
        now: f64,
    ) -> (Recommendation, Option<Vec<(String, f64)>>) {
        let knobs = &self.policy.knobs;
        match self.policy.strategy {
            Strategy::Hpa => combine(&self.policy, signals, |s| {
                hpa::recommend(
                    s,
                    fleet,
                    knobs.scale_up_tolerance,
                    knobs.scale_down_tolerance,
                )
            }),
            Strategy::Apa => combine(&self.policy, signals, |s| apa::recommend(s, fleet, knobs)),
            Strategy::Kpa => {
                let present: Vec<&Signal> =
                    signals.iter().filter(|s| s.missing.is_none()).collect();
                let rec = kpa::recommend(&present, fleet, knobs, &mut self.panic, now);
                (rec, None)
            }
            Strategy::Slo => {
                let startup = self.startup_s();
                (self.slo.recommend(&self.policy, fleet, startup, now), None)
            }
        }
    }

    /// Stabilization windows `(up, down)` in seconds for the strategy.
    fn windows(&self) -> (f64, f64) {
        let k = &self.policy.knobs;
        let down = k.scale_down_cooldown.as_secs_f64();
        match self.policy.strategy {
            // The SLO policy scales up as fast as it decides; only scale-down is held.
            Strategy::Slo => (0.0, down),
            _ => (k.scale_up_cooldown.as_secs_f64(), down),
        }
    }

    /// HPA's rate policies (Kubernetes defaults); the other strategies limit themselves.
    fn rate_limit(&self, now: f64, current: u32, desired: u32, limits: &mut Vec<Limit>) -> u32 {
        if self.policy.strategy == Strategy::Slo {
            // The SLO policy coalesces a decline into few steps: after a scale-down, the next
            // waits `SLO_DOWN_SPACING_S`, and then goes as far as the window allows.
            if desired < current && self.last_down.is_some_and(|t| now - t < SLO_DOWN_SPACING_S) {
                limits.push(Limit::ScaleDownRate);
                return current;
            }
            return desired;
        }
        if self.policy.strategy != Strategy::Hpa {
            return desired;
        }
        let (limited, which) = self.rates.limit(now, current, desired);
        match which {
            Some(true) => limits.push(Limit::ScaleUpRate),
            Some(false) => limits.push(Limit::ScaleDownRate),
            None => {}
        }
        limited
    }

    /// `desired` clamped to `[minReplicas, maxReplicas]`, or to the active schedule's.
    fn bounds(&self, desired: u32, now: f64, limits: &mut Vec<Limit>) -> u32 {
        let (mut min, mut max) = (self.policy.min_replicas, self.policy.max_replicas);
        if let Some((_, smin, smax)) = self.schedules.active(now) {
            max = smax.unwrap_or(max);
            min = smin.unwrap_or(min).min(max);
        }
        if desired < min {
            limits.push(Limit::MinReplicas);
            min
        } else if desired > max {
            limits.push(Limit::MaxReplicas);
            max
        } else {
            desired
        }
    }

    /// Scale to zero only after the zero recommendation lasted the grace period (and only
    /// on metrics: a held count never reaches here as a new zero); held requests ask for one
    /// replica.
    fn zero_and_activation(
        &mut self,
        fleet: &FleetState,
        mut desired: u32,
        measured: bool,
        now: f64,
        limits: &mut Vec<Limit>,
    ) -> u32 {
        if desired > 0 {
            self.zero_since = None;
        } else if fleet.desired > 0 {
            let since = *self.zero_since.get_or_insert(now);
            if !measured || now - since < self.policy.scale_to_zero_grace_s {
                limits.push(Limit::ScaleToZeroGrace);
                desired = 1;
            }
        }
        if desired == 0 && fleet.held > 0 {
            limits.push(Limit::Activation);
            self.zero_since = None;
            desired = 1;
        }
        desired
    }
}

/// The largest of the per-source recommendations (sources without one are skipped); its
/// limit is the decision's; inputs are named `metric.name` when there are several sources.
fn combine(
    policy: &Policy,
    signals: &[Signal],
    mut per_source: impl FnMut(&Signal) -> Option<SourceRecommendation>,
) -> (Recommendation, Option<Vec<(String, f64)>>) {
    let mut out = Recommendation::default();
    let several = signals.len() > 1;
    let mut named = Vec::new();
    for (i, signal) in signals.iter().enumerate() {
        if signal.missing.is_some() {
            continue;
        }
        let Some(r) = per_source(signal) else {
            continue;
        };
        if out.replicas.is_none_or(|best| r.replicas > best) {
            out.replicas = Some(r.replicas);
            out.limit = r.limit.clone();
        }
        for (k, v) in r.inputs {
            if several {
                named.push((format!("{}.{k}", policy.sources[i].metric), v));
            } else {
                out.inputs.push((k, v));
            }
        }
    }
    (out, several.then_some(named))
}
