//! A small fluid model of a fleet for the SLO policy's tests: replicas that take the
//! profile's start-up time to become ready, a queue that grows when arrivals exceed what the
//! ready replicas serve at the SLO, and the caller's clamp and scale-down stabilization.

use std::collections::VecDeque;

use brix_api::ScalingKnobs;

use super::*;
use crate::Strategy;
use crate::capacity::capacity;
use crate::capacity::tests::profile;

pub(super) fn policy(min: u32, max: u32) -> Policy {
    let p = profile("llama-3-8b", "A100-80GB");
    Policy {
        name: "slo".into(),
        target: "m".into(),
        strategy: Strategy::Slo,
        min_replicas: min,
        max_replicas: max,
        sources: Vec::new(),
        knobs: ScalingKnobs::default(),
        sync_s: 5.0,
        stale_after_s: 30.0,
        scale_to_zero_grace_s: 30.0,
        slo: SloTarget::default(),
        profile: Some(p),
    }
}

/// Deterministic xorshift uniform in (0, 1).
pub(super) fn uniform(s: &mut u64) -> f64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    ((*s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Poisson draw (Knuth; λ per draw stays small here).
pub(super) fn poisson(s: &mut u64, mean: f64) -> u64 {
    let (limit, mut k, mut p) = ((-mean).exp(), 0, 1.0);
    loop {
        p *= uniform(s);
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// One replica-set and its load, second by second.
pub(super) struct World {
    pub(super) policy: Policy,
    pub(super) state: SloState,
    /// Arrival rate at a time.
    pub(super) rate: Box<dyn Fn(f64) -> f64>,
    pub(super) mean_in: f64,
    pub(super) mean_out: f64,
    /// Measured TPOT = model step time × this.
    pub(super) tpot_factor: f64,
    /// Measured TTFT = model TTFT × this; `None` reports no TTFT.
    pub(super) ttft_factor: Option<f64>,
    /// Seconds a request stays in flight.
    pub(super) service_s: f64,
    pub(super) startup_s: f64,
    /// Passed to `recommend` (0 disables the look-ahead).
    pub(super) lookahead_s: f64,
    /// Report engine queue and KV usage.
    pub(super) gauges: bool,
    pub(super) kv: Option<f64>,
    pub(super) rng: u64,
    pub(super) t: f64,
    pub(super) load: Load,
    pub(super) fleet: FleetState,
    pub(super) ready_at: Vec<f64>,
    pub(super) in_flight: VecDeque<(f64, u64, u64)>,
    pub(super) queue: f64,
    pub(super) recs: VecDeque<(f64, u32)>,
    /// (time, desired) after each decision.
    pub(super) desired: Vec<(f64, u32)>,
    /// Largest queue seen, requests, and when.
    pub(super) peak_queue: f64,
    pub(super) peak_at: f64,
    /// Request-seconds spent queued.
    pub(super) queue_s: f64,
    pub(super) last: Recommendation,
    /// λ_max cached for (mean_in, mean_out).
    pub(super) lmax: Option<((f64, f64), f64)>,
}

impl World {
    pub(super) fn new(replicas: u32, rate: impl Fn(f64) -> f64 + 'static) -> Self {
        let policy = policy(0, 64);
        let startup_s = policy.profile.as_ref().map_or(0.0, |p| p.startup_s);
        Self {
            state: SloState::new(&policy),
            policy,
            rate: Box::new(rate),
            mean_in: 1024.0,
            mean_out: 43.0,
            tpot_factor: 1.0,
            ttft_factor: None,
            service_s: 5.0,
            startup_s,
            lookahead_s: startup_s,
            gauges: true,
            kv: None,
            rng: 0x2545_F491_4F6C_DD1D,
            t: 0.0,
            load: Load::default(),
            fleet: FleetState {
                desired: replicas,
                ready: replicas,
                ..FleetState::default()
            },
            ready_at: Vec::new(),
            in_flight: VecDeque::new(),
            queue: 0.0,
            recs: VecDeque::new(),
            desired: Vec::new(),
            peak_queue: 0.0,
            peak_at: 0.0,
            queue_s: 0.0,
            last: Recommendation::default(),
            lmax: None,
        }
    }

    /// λ_max of one replica at the SLO for this world's shape (what it truly serves).
    pub(super) fn lambda_max(&mut self) -> f64 {
        let key = (self.mean_in, self.mean_out);
        if let Some((k, v)) = self.lmax
            && k == key
        {
            return v;
        }
        let p = self
            .policy
            .profile
            .as_ref()
            .unwrap_or_else(|| panic!("no profile"));
        let v = capacity(p, &self.policy.slo, key.0, key.1).lambda_max;
        self.lmax = Some((key, v));
        v
    }

    pub(super) fn second(&mut self) {
        self.t += 1.0;
        let t = self.t;
        let started = self.ready_at.iter().filter(|r| **r <= t).count() as u32;
        self.ready_at.retain(|r| *r > t);
        self.fleet.ready += started;
        self.fleet.starting -= started;
        let k = poisson(&mut self.rng, (self.rate)(t).max(0.0));
        let prompt: u64 = (0..k)
            .map(|_| (self.mean_in * (0.5 + uniform(&mut self.rng))).round() as u64)
            .sum();
        self.load.requests += k;
        self.load.prompt_tokens += prompt;
        self.in_flight.push_back((t, k, prompt));
        let lmax = self.lambda_max();
        let serve = f64::from(self.fleet.ready) * lmax;
        self.queue = (self.queue + k as f64 - serve).max(0.0);
        self.queue_s += self.queue;
        if self.queue > self.peak_queue {
            (self.peak_queue, self.peak_at) = (self.queue, t);
        }
        while let Some(&(at, n, _)) = self.in_flight.front() {
            if at + self.service_s > t {
                break;
            }
            self.in_flight.pop_front();
            self.load.completed += n;
            // Outputs spread over [0.2, 1.8] × the mean (AIBrix's 43 ± 34 is that wide).
            let out: f64 = (0..n)
                .map(|_| self.mean_out * (0.2 + 1.6 * uniform(&mut self.rng)))
                .sum();
            self.load.output_tokens += out.round() as u64;
            // Its TPOT and TTFT: the model's at the load it arrived into; an overloaded engine
            // runs a full batch at about the SLO's step time and queues the rest.
            let per = (self.rate)(at) / f64::from(self.fleet.ready.max(1));
            let p = self
                .policy
                .profile
                .as_ref()
                .unwrap_or_else(|| panic!("no profile"));
            let (step, ttft) = steady_state(p, per.min(lmax), self.mean_in, self.mean_out)
                .map_or((self.policy.slo.tpot_s, self.policy.slo.ttft_s), |s| {
                    (s.step_s, s.ttft_s)
                });
            self.load.tpot_sum_s += n as f64 * step * self.tpot_factor;
            self.load.tpot_count += n;
            if let Some(f) = self.ttft_factor {
                self.load.ttft_sum_s += n as f64 * ttft * f;
                self.load.ttft_count += n;
            }
        }
        self.load.in_flight = self.in_flight.iter().map(|f| f.1 as u32).sum();
        if self.gauges {
            self.load.waiting = Some(self.queue.round());
            self.load.kv_usage = self.kv;
        }
        self.state.observe_load(&self.load, t);
        if (t as u64).is_multiple_of(5) {
            self.decide();
        }
    }

    /// What the core does around `recommend`: hold on None, clamp, and the K8s scale-down
    /// stabilization (the max recommendation inside the 300 s window).
    pub(super) fn decide(&mut self) {
        let t = self.t;
        let rec = self
            .state
            .recommend(&self.policy, &self.fleet, self.lookahead_s, t);
        let cur = self.fleet.desired;
        let r = rec
            .replicas
            .unwrap_or(cur)
            .clamp(self.policy.min_replicas, self.policy.max_replicas);
        self.recs.push_back((t, r));
        let window = self.policy.knobs.scale_down_cooldown.as_secs_f64();
        while self.recs.front().is_some_and(|(at, _)| *at <= t - window) {
            self.recs.pop_front();
        }
        let new = if r < cur {
            self.recs.iter().map(|x| x.1).max().unwrap_or(r).min(cur)
        } else {
            r
        };
        if new > cur {
            self.fleet.starting += new - cur;
            self.ready_at.extend((cur..new).map(|_| t + self.startup_s));
        } else if new < cur {
            let drop = cur - new;
            let from_ready = drop.min(self.fleet.ready);
            self.fleet.ready -= from_ready;
            let rest = drop - from_ready;
            self.fleet.starting -= rest;
            self.ready_at.truncate(self.ready_at.len() - rest as usize);
        }
        self.fleet.desired = new;
        self.desired.push((t, new));
        self.last = rec;
    }

    pub(super) fn run(&mut self, seconds: u32) {
        for _ in 0..seconds {
            self.second();
        }
    }

    /// Changes of the desired count after `from` seconds.
    pub(super) fn changes_after(&self, from: f64) -> usize {
        let d: Vec<u32> = self
            .desired
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|x| x.1)
            .collect();
        d.windows(2).filter(|w| w[0] != w[1]).count()
    }

    pub(super) fn input(&self, name: &str) -> Option<f64> {
        self.last
            .inputs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|x| x.1)
    }
}
