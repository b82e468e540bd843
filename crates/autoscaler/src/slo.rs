//! Brix SLO-capacity policy: scale on what an LLM replica can serve at the latency SLO.
//!
//! Each decision:
//! 1. Demand from the gateway's counters ([`Load`]) over the panic (fast, 60 s) and stable
//!    (slow, 180 s) windows: arrival rate λ, mean prompt `I` (arrivals) and output `O`
//!    (finished) tokens, and the engines' queue and KV usage over the fast window.
//! 2. Capacity of one replica at the SLO ([`capacity`]) for that `I`/`O`, cached per
//!    log-spaced (I, O, corrections) bucket, times `target-utilization`.
//! 3. Online corrections, as Dynamo's planner: `d = measured TPOT / model T` and
//!    `p = measured TTFT / model TTFT`, means over the stable window against the model at the
//!    measured per-replica load, each clamped to [0.5, 3] and smoothed (EWMA 0.3 per
//!    decision), once ≥ 20 requests finished in the window, and only in steady state: the
//!    ready count unchanged for a window, none starting, and the fast rate within 15 % (plus
//!    3σ of Poisson noise) of the slow one. The model must then meet `tpot/d` and `ttft/p`
//!    (Dynamo's `itl* = ITL_SLA / d_corr`): λ_max is searched again rather than divided by
//!    the factor, since capacity is far from linear in latency, and the two errors differ
//!    (against brix-sim the model's TPOT is 15–35 % low while its TTFT is within 20 %).
//! 4. Look-ahead: least-squares trends of λ in 5 s buckets over the stable window, the fast
//!    window and the stable window's older part; when all rise (t ≥ 2 for the stable window,
//!    t ≥ 1 and at least half its slope for its two parts), the smallest slope less one
//!    standard error carries the fast mean forward by half a fast
//!    window plus the start-up time: `λ_up = max(λ_fast, λ_slow, λ_fast + slope·(fast/2 +
//!    startup_s))`. (A step reads as a ramp to one long least-squares fit; requiring the
//!    trend in both parts keeps a step from being extrapolated.)
//!    A burst counts at once: when the last 10 s of arrivals exceed what the replicas asked
//!    for serve by more than 4 Poisson standard deviations, `λ_up` is at least their rate
//!    (the 60 s fast window would take most of a minute to show a step; Knative's panic
//!    window is 6 s for the same reason).
//! 5. Replicas, with `current` the replicas already asked for (ready + starting):
//!    `up = ⌈λ_up / cap⌉`, taken only when `λ_up` exceeds
//!    `current·cap·(1 + scale-up-tolerance)` (at least one while anything is in flight; at
//!    least `ready + 1` when KV usage averages ≥ 0.9; at least the queue's, below); `down = ⌈λ_slow /
//!    (cap·(1 − scale-down-tolerance))⌉` from the slow view only; the recommendation is
//!    `max(up, min(down, current))`. Up is immediate and jumps straight to what is needed;
//!    down waits for the slow view to fall a tolerance below the current count (hysteresis
//!    on both sides, so a constant load settles), and the
//!    scale-down stabilization window applied after this (the max recommendation inside it)
//!    makes it slow. No one-replica-at-a-time step: under a max-over-window stabilization it
//!    would make every further step wait a whole window.
//! 6. The queue (`waiting`, now): the replicas already asked for drain it at their full
//!    λ_max, `surplus = current·λ_max − λ_up`; what is left after a start-up time,
//!    `rest = waiting − surplus·startup_s`, if any, must be drained within
//!    `H = max(startup_s, 30 s)`: at least `⌈(λ_up + rest/H) / λ_max⌉` replicas. A queue
//!    that builds while replicas start, and that they will drain, asks for nothing more.
//!
//! No load yet, under 10 s of it, or none for `stale_after_s`: hold (no recommendation). Zero arrivals over a
//! whole stable window with nothing in flight or queued: 0 (the caller applies `minReplicas`
//! and the scale-to-zero grace period).

use std::collections::{HashMap, VecDeque};

use crate::capacity::{Capacity, ReplicaProfile, SloTarget, capacity, steady_state};
use crate::decision::{Limit, Recommendation};
use crate::{FleetState, Load, Policy};

/// Load snapshots closer than this are merged (the newest replaces the last).
const BUCKET_S: f64 = 1.0;
/// The burst view: arrivals over the last this many seconds...
const BURST_S: f64 = 10.0;
/// ... count when this many standard deviations above the capacity asked for.
const BURST_Z: f64 = 4.0;
/// Bucket of the trend's least-squares fit.
const TREND_BUCKET_S: f64 = 5.0;
/// Finished requests in the stable window before the correction moves.
const MIN_CORRECTION_SAMPLES: u64 = 20;
/// EWMA weight of a new correction sample (one per decision).
const CORRECTION_ALPHA: f64 = 0.3;
/// Bounds of the correction factor.
const CORRECTION_RANGE: (f64, f64) = (0.5, 3.0);
/// Mean KV usage at which replicas count as memory-bound.
const KV_PRESSURE: f64 = 0.9;
/// Shortest horizon a backlog is drained within.
const MIN_DRAIN_S: f64 = 30.0;
/// Mean prompt and output before any request arrived or finished (tokens).
const PRIOR_IN: f64 = 1024.0;
const PRIOR_OUT: f64 = 128.0;
/// Buckets per doubling of the capacity cache's keys (≈ 2 % apart).
const CACHE_STEPS: f64 = 32.0;
/// Entries the capacity cache holds before it starts over.
const CACHE_MAX: usize = 4096;

/// One observed [`Load`].
#[derive(Clone, Copy, Debug)]
struct Snap {
    t: f64,
    load: Load,
}

/// Counter differences over one window.
#[derive(Clone, Copy, Debug, Default)]
struct Delta {
    span: f64,
    requests: f64,
    prompt: f64,
    completed: f64,
    output: f64,
    tpot_sum: f64,
    tpot_count: u64,
    ttft_sum: f64,
    ttft_count: u64,
}

impl Delta {
    fn rate(&self) -> f64 {
        self.requests / self.span
    }
}

/// λ_max per (I, O, TPOT correction, TTFT correction) bucket, for one SLO and profile.
#[derive(Clone, Debug, Default)]
struct CapacityCache {
    slo: Option<SloTarget>,
    map: HashMap<(i32, i32, i32, i32), Capacity>,
}

/// A value's log-spaced bucket.
fn bucket(x: f64) -> i32 {
    (x.max(1e-9).log2() * CACHE_STEPS).round() as i32
}

/// A bucket's representative value.
fn unbucket(k: i32) -> f64 {
    (f64::from(k) / CACHE_STEPS).exp2()
}

impl CapacityCache {
    /// λ_max at `slo` with the targets divided by the corrections, for prompts `i` and
    /// outputs `o`.
    fn get(&mut self, p: &ReplicaProfile, slo: &SloTarget, i: f64, o: f64, c: Corr) -> f64 {
        if self.slo.as_ref() != Some(slo) || self.map.len() >= CACHE_MAX {
            self.map.clear();
            self.slo = Some(slo.clone());
        }
        let key = (bucket(i), bucket(o), bucket(c.tpot), bucket(c.ttft));
        let c = self.map.entry(key).or_insert_with(|| {
            let tight = SloTarget {
                ttft_s: slo.ttft_s / unbucket(key.3),
                tpot_s: slo.tpot_s / unbucket(key.2),
                utilization: slo.utilization,
            };
            capacity(p, &tight, unbucket(key.0), unbucket(key.1))
        });
        c.lambda_max
    }
}

/// Measured / modelled latency.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Corr {
    tpot: f64,
    ttft: f64,
}

/// Moves `corr` towards `measured / model` (clamped), if both are usable.
fn ewma(corr: &mut f64, measured: f64, model: f64) {
    if measured.is_finite() && measured > 0.0 && model > 0.0 {
        let raw = (measured / model).clamp(CORRECTION_RANGE.0, CORRECTION_RANGE.1);
        *corr += CORRECTION_ALPHA * (raw - *corr);
    }
}

/// The SLO policy's own state: the load window, the online correction, the capacity cache.
#[derive(Clone, Debug)]
pub(crate) struct SloState {
    snaps: VecDeque<Snap>,
    corr: Corr,
    last_in: Option<f64>,
    last_out: Option<f64>,
    /// Ready replicas at the last decision, and since when.
    ready: (u32, f64),
    cache: CapacityCache,
}

impl SloState {
    pub(crate) fn new(_policy: &Policy) -> Self {
        Self {
            snaps: VecDeque::new(),
            corr: Corr {
                tpot: 1.0,
                ttft: 1.0,
            },
            last_in: None,
            last_out: None,
            ready: (0, f64::NEG_INFINITY),
            cache: CapacityCache::default(),
        }
    }

    /// Records the gateway's counters and gauges at `now`; a counter going backwards (the
    /// driver restarted) starts the window over; out-of-order or non-finite times are ignored.
    pub(crate) fn observe_load(&mut self, load: &Load, now: f64) {
        if !now.is_finite() {
            return;
        }
        if let Some(last) = self.snaps.back() {
            if now < last.t {
                return;
            }
            let l = &last.load;
            if load.requests < l.requests
                || load.prompt_tokens < l.prompt_tokens
                || load.completed < l.completed
                || load.output_tokens < l.output_tokens
                || load.tpot_count < l.tpot_count
            {
                self.snaps.clear();
            }
        }
        let snap = Snap {
            t: now,
            load: *load,
        };
        let n = self.snaps.len();
        if n >= 2 && now - self.snaps[n - 2].t < BUCKET_S {
            self.snaps[n - 1] = snap;
        } else {
            self.snaps.push_back(snap);
        }
    }

    /// Drops snapshots older than what a window of `keep` seconds needs.
    fn prune(&mut self, keep: f64) {
        let Some(newest) = self.snaps.back().map(|s| s.t) else {
            return;
        };
        while self.snaps.len() > 2 && self.snaps[1].t <= newest - keep {
            self.snaps.pop_front();
        }
    }

    /// Counter differences over the last `w` seconds (from the newest snapshot back to the
    /// latest one at least `w` older, or the oldest).
    fn delta(&self, w: f64) -> Option<Delta> {
        let newest = self.snaps.back()?;
        let base = self
            .snaps
            .iter()
            .rev()
            .find(|s| s.t <= newest.t - w)
            .or(self.snaps.front())?;
        let span = newest.t - base.t;
        if span < BUCKET_S {
            return None;
        }
        let (a, b) = (&base.load, &newest.load);
        let d = |x: u64, y: u64| y.saturating_sub(x) as f64;
        Some(Delta {
            span,
            requests: d(a.requests, b.requests),
            prompt: d(a.prompt_tokens, b.prompt_tokens),
            completed: d(a.completed, b.completed),
            output: d(a.output_tokens, b.output_tokens),
            tpot_sum: (b.tpot_sum_s - a.tpot_sum_s).max(0.0),
            tpot_count: b.tpot_count.saturating_sub(a.tpot_count),
            ttft_sum: (b.ttft_sum_s - a.ttft_sum_s).max(0.0),
            ttft_count: b.ttft_count.saturating_sub(a.ttft_count),
        })
    }

    /// Mean of a gauge over the snapshots of the last `w` seconds that have it.
    fn gauge(&self, w: f64, f: impl Fn(&Load) -> Option<f64>) -> Option<f64> {
        let newest = self.snaps.back()?.t;
        let v: Vec<f64> = self
            .snaps
            .iter()
            .filter(|s| s.t >= newest - w)
            .filter_map(|s| f(&s.load))
            .filter(|x| x.is_finite())
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Requests arrived by `t`, interpolated between snapshots.
    fn requests_at(&self, t: f64) -> f64 {
        let i = self.snaps.partition_point(|s| s.t <= t);
        let req = |s: &Snap| s.load.requests as f64;
        match (i.checked_sub(1).map(|j| &self.snaps[j]), self.snaps.get(i)) {
            (Some(a), Some(b)) if b.t > a.t => req(a) + (req(b) - req(a)) * (t - a.t) / (b.t - a.t),
            (Some(a), _) => req(a),
            (None, Some(b)) => req(b),
            (None, None) => 0.0,
        }
    }

    /// Least-squares slope of the arrival rate over the `w` seconds that end `back` seconds
    /// before the newest snapshot (5 s buckets), req/s², and its t statistic; `None` under
    /// three buckets.
    fn trend(&self, back: f64, w: f64) -> Option<(f64, f64)> {
        let newest = self.snaps.back()?.t - back;
        let oldest = self.snaps.front()?.t;
        let nb = ((newest - oldest).min(w) / TREND_BUCKET_S).floor() as usize;
        if nb < 3 {
            return None;
        }
        let pts: Vec<(f64, f64)> = (0..nb)
            .map(|k| {
                let end = newest - TREND_BUCKET_S * (nb - 1 - k) as f64;
                let start = end - TREND_BUCKET_S;
                let rate = (self.requests_at(end) - self.requests_at(start)) / TREND_BUCKET_S;
                (end - TREND_BUCKET_S / 2.0 - newest, rate)
            })
            .collect();
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = sxy / sxx;
        let resid: f64 = pts
            .iter()
            .map(|p| (p.1 - my - slope * (p.0 - mx)).powi(2))
            .sum();
        let se = (resid / (n - 2.0) / sxx).sqrt();
        let t = if se > 0.0 {
            slope / se
        } else {
            f64::INFINITY * slope.signum()
        };
        slope.is_finite().then_some((slope, t))
    }

    /// The arrival rate expected `ahead` seconds from now: the fast window's mean (centred
    /// half a window ago) carried forward by a rising trend. The trend must hold over the
    /// whole stable window: the stable window's slope rising at t ≥ 2, those of its two parts
    /// (the fast window, and the older part before it) rising at t ≥ 1 and at least half as
    /// steep; the slope used is the smallest of the three, each less one standard error. A ramp rises in all three; a step rises in the older part
    /// only once the fast window is past it, when the fast one is flat again, so a step is
    /// not extrapolated into a ramp.
    fn forecast(&self, stable_w: f64, fast_w: f64, lambda_fast: f64, ahead: f64) -> f64 {
        let slopes = (
            self.trend(0.0, stable_w),
            self.trend(0.0, fast_w),
            self.trend(fast_w, stable_w - fast_w),
        );
        let slope = match slopes {
            (Some((s, ts)), Some((f, tf)), Some((o, to)))
                if ts >= 2.0 && to >= 1.0 && tf >= 1.0 && f.min(o) >= 0.5 * s =>
            {
                // Each slope less one standard error: a noisy fit that just passes its test
                // adds little.
                let low = |x: f64, t: f64| x * (1.0 - 1.0 / t);
                low(s, ts).min(low(f, tf)).min(low(o, to))
            }
            _ => 0.0,
        };
        lambda_fast + slope * (fast_w / 2.0 + ahead)
    }

    /// Moves the corrections towards measured TPOT / the model's step time and measured
    /// TTFT / the model's, at the measured per-replica load.
    fn correct(&mut self, profile: &ReplicaProfile, slow: &Delta, ready: u32, i: f64, o: f64) {
        if ready == 0 {
            return;
        }
        let per_replica = slow.rate() / f64::from(ready);
        let Some(model) = steady_state(profile, per_replica, i, o) else {
            return;
        };
        if slow.tpot_count >= MIN_CORRECTION_SAMPLES {
            let measured = slow.tpot_sum / slow.tpot_count as f64;
            ewma(&mut self.corr.tpot, measured, model.step_s);
        }
        if slow.ttft_count >= MIN_CORRECTION_SAMPLES {
            let measured = slow.ttft_sum / slow.ttft_count as f64;
            ewma(&mut self.corr.ttft, measured, model.ttft_s);
        }
    }

    pub(crate) fn recommend(
        &mut self,
        policy: &Policy,
        fleet: &FleetState,
        startup_s: f64,
        now: f64,
    ) -> Recommendation {
        let hold = |why: &str| Recommendation {
            limit: Some(Limit::MissingMetrics(why.to_string())),
            ..Recommendation::default()
        };
        let Some(profile) = policy.profile.as_ref() else {
            return hold("no replica profile");
        };
        let stable_w = policy.knobs.stable_window.as_secs_f64().max(BUCKET_S);
        let fast_w = policy
            .knobs
            .panic_window
            .as_secs_f64()
            .clamp(BUCKET_S, stable_w);
        self.prune(stable_w + TREND_BUCKET_S);
        let Some(newest) = self.snaps.back().copied() else {
            return hold("no load observed");
        };
        let age = now - newest.t;
        if age.is_nan() || age > policy.stale_after_s {
            return hold("load stale");
        }
        let (Some(slow), Some(fast)) = (self.delta(stable_w), self.delta(fast_w)) else {
            return hold("load window not filled yet");
        };
        if slow.span < BURST_S.min(fast_w) {
            // A rate over a second or two (just started, or counters reset) is noise.
            return hold("load window under 10 s");
        }
        let startup = if startup_s.is_finite() {
            startup_s.max(0.0)
        } else {
            0.0
        };
        // The queue to drain is the one there is now; memory pressure is an average.
        let waiting = newest.load.waiting.filter(|w| w.is_finite());
        let kv = self.gauge(fast_w, |l| l.kv_usage);
        let busy = newest.load.in_flight > 0 || newest.load.waiting.is_some_and(|w| w > 0.0);
        if slow.requests == 0.0 && !busy {
            if slow.span + BUCKET_S >= stable_w {
                return Recommendation {
                    replicas: Some(0),
                    inputs: vec![("lambda", 0.0)],
                    ..Recommendation::default()
                };
            }
            return hold("no arrivals yet and the stable window not filled");
        }
        if slow.requests > 0.0 {
            self.last_in = Some(slow.prompt / slow.requests);
        }
        if slow.completed > 0.0 {
            self.last_out = Some(slow.output / slow.completed);
        }
        let (i, o) = (
            self.last_in.unwrap_or(PRIOR_IN),
            self.last_out.unwrap_or(PRIOR_OUT),
        );
        if fleet.ready != self.ready.0 {
            self.ready = (fleet.ready, now);
        }
        // The window's TPOT must come from the fleet and load it is compared with: not while
        // replicas start, nor before a whole window has passed with the same ready count, nor
        // while the load moves (the fast rate more than 15 % plus noise off the slow one).
        let noise = 3.0 * (slow.rate() / fast.span).sqrt();
        let steady = (fast.rate() - slow.rate()).abs() <= 0.15 * slow.rate() + noise;
        if steady && fleet.starting == 0 && now - self.ready.1 >= stable_w {
            self.correct(profile, &slow, fleet.ready, i, o);
        }
        let slo = &policy.slo;
        let lambda_max = self.cache.get(profile, slo, i, o, self.corr);
        let cap = lambda_max * slo.utilization;
        let (lambda_slow, lambda_fast) = (slow.rate(), fast.rate());
        let forecast = self.forecast(stable_w, fast_w, lambda_fast, startup);
        let mut lambda_up = lambda_fast.max(lambda_slow).max(forecast);
        let current = fleet.desired;
        // A burst: the last few seconds' arrivals far above what the replicas asked for serve
        // (z > 4 against a Poisson count at that capacity) count at once, not when the fast
        // window's mean has caught up with them.
        let burst = self.delta(BURST_S.min(fast_w)).filter(|d| {
            let expected = f64::from(current) * cap * d.span;
            (d.requests - expected) > BURST_Z * expected.max(1.0).sqrt()
        });
        if let Some(b) = burst {
            lambda_up = lambda_up.max(b.rate());
        }
        let mut inputs = vec![
            ("lambda", lambda_slow),
            ("lambda_fast", lambda_fast),
            ("lambda_forecast", forecast),
            ("mean_in", i),
            ("mean_out", o),
            ("capacity_rps", cap),
            ("correction", self.corr.tpot),
            ("correction_ttft", self.corr.ttft),
        ];
        inputs.extend(waiting.map(|w| ("waiting", w)));
        inputs.extend(kv.map(|k| ("kv_usage", k)));
        inputs.extend(burst.map(|b| ("lambda_burst", b.rate())));
        if !(cap > 0.0 && cap.is_finite()) {
            // No replica can hold one such request (it outgrows the KV cache): more replicas
            // would not help; keep what there is.
            inputs.push(("needed", f64::from(current)));
            return Recommendation {
                replicas: Some(current.max(1)),
                inputs,
                ..Recommendation::default()
            };
        }
        let count = |demand: f64, per: f64| -> u32 {
            let n = (demand / per - 1e-9).ceil();
            if n.is_finite() {
                n.clamp(0.0, f64::from(u32::MAX)) as u32
            } else {
                u32::MAX
            }
        };
        // Up only past the scale-up tolerance over what is there (noise in the fast view and
        // the trend must not add a replica), then straight to the target utilization.
        let up_tol = policy.knobs.scale_up_tolerance.max(0.0);
        let mut up = count(lambda_up, cap);
        if up > current && lambda_up <= f64::from(current) * cap * (1.0 + up_tol) {
            up = current;
        }
        // The queue: what the replicas asked for (starting ones included) cannot drain in a
        // start-up time, at full speed, must be drained within the horizon by more.
        let surplus = (f64::from(current) * lambda_max - lambda_up).max(0.0);
        let rest = waiting.unwrap_or(0.0).max(0.0) - surplus * startup;
        if rest > 0.0 {
            up = up.max(count(
                lambda_up + rest / startup.max(MIN_DRAIN_S),
                lambda_max,
            ));
        }
        if busy || lambda_fast > 0.0 {
            up = up.max(1);
        }
        if kv.is_some_and(|k| k >= KV_PRESSURE) && fleet.ready > 0 {
            up = up.max(fleet.ready.saturating_add(1));
        }
        let tol = policy.knobs.scale_down_tolerance.clamp(0.0, 0.99);
        // The fast view: the scale-down stabilization window (the highest recommendation in
        // its 300 s) is the guard against noise; smoothing here as well would stretch one
        // decline over the slow window, one replica at a time (a scale event each).
        let down = count(lambda_fast, cap * (1.0 - tol));
        let replicas = up.max(down.min(current));
        inputs.push(("needed", f64::from(up)));
        let limit = if fleet.starting > 0 && up <= current && up > fleet.ready {
            Some(Limit::Starting)
        } else if replicas == current && count(lambda_slow, cap) < current {
            Some(Limit::Tolerance)
        } else {
            None
        };
        Recommendation {
            replicas: Some(replicas),
            inputs,
            limit,
            panic: false,
        }
    }
}

#[cfg(test)]
#[path = "slo_world.rs"]
mod world;

#[cfg(test)]
#[path = "slo_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "slo_sim_tests.rs"]
mod sim_tests;
