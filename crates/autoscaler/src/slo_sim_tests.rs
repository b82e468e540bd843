//! The SLO policy driving a fleet of simulated vLLM engines (brix-sim, virtual time): the
//! whole loop, with the engine's own latencies feeding the online corrections.

use std::collections::VecDeque;

use brix_sim::{Catalog, Engine, EngineConfig, NewRequest};

use super::*;
use crate::capacity::tests::profile;

/// One replica: its engine, when it is ready, when its current step ends.
struct Replica {
    engine: Engine,
    ready_at: f64,
    free_at: f64,
    in_flight: usize,
    draining: bool,
}

fn uniform(s: &mut u64) -> f64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    ((*s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Standard normal (Box-Muller).
fn normal(s: &mut u64) -> f64 {
    (-2.0 * uniform(s).ln()).sqrt() * (std::f64::consts::TAU * uniform(s)).cos()
}

/// What a run measured after warm-up.
#[derive(Debug, Default)]
struct Outcome {
    finished: usize,
    mean_ttft: f64,
    mean_tpot: f64,
    /// Finished requests within both targets, fraction.
    attainment: f64,
    replica_seconds: f64,
    changes: usize,
    max_replicas: u32,
    last: Recommendation,
}

/// Arrivals at `rate(t)` (at most `peak`), prompts 1024 ± 696 and outputs 43 ± 34 tokens
/// (AIBrix's harness), for `seconds` on 1–8 llama-3-8b / A100-80GB replicas, starting from
/// one.
fn run(rate: impl Fn(f64) -> f64, peak: f64, seconds: f64, warmup: f64) -> Outcome {
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("profiles"),
    };
    let mut policy = super::world::policy(1, 8);
    policy.profile = Some(profile("llama-3-8b", "A100-80GB"));
    let startup = policy.profile.as_ref().map_or(0.0, |p| p.startup_s);
    let mut state = SloState::new(&policy);
    let new_engine = || {
        Engine::new(EngineConfig::vllm_defaults(&m, &g), m.clone(), g.clone())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut fleet = vec![Replica {
        engine: new_engine(),
        ready_at: 0.0,
        free_at: 0.0,
        in_flight: 0,
        draining: false,
    }];
    let mut rng = 0x1234_5678_9abc_def1_u64;
    let mut next_arrival = 0.0;
    let mut next_tick = 1.0;
    let mut id = 0u64;
    let mut held: VecDeque<(f64, NewRequest)> = VecDeque::new();
    let mut load = Load::default();
    let mut desired = 1u32;
    let mut recs: VecDeque<(f64, u32)> = VecDeque::new();
    let mut out = Outcome::default();
    let mut history = Vec::new();
    let (mut ttft_sum, mut tpot_sum, mut good) = (0.0, 0.0, 0usize);
    let slo = policy.slo.clone();
    loop {
        // The next event: a replica's step, an arrival, or the 1 s tick.
        let step = fleet
            .iter()
            .enumerate()
            .filter(|(_, r)| r.engine.has_work())
            .map(|(i, r)| (r.free_at, i))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let t = [step.map_or(f64::INFINITY, |s| s.0), next_arrival, next_tick]
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        if t > seconds {
            break;
        }
        if let Some((at, i)) = step
            && at <= t
        {
            let r = &mut fleet[i];
            let Some(o) = r.engine.step(at) else {
                r.free_at = f64::INFINITY;
                continue;
            };
            r.free_at = o.end;
            for f in o.finished {
                r.in_flight -= 1;
                load.completed += 1;
                load.output_tokens += u64::from(f.output_tokens);
                let ttft = f.ttft().unwrap_or(f.e2e());
                load.ttft_sum_s += ttft;
                load.ttft_count += 1;
                let tpot = f
                    .decode_time()
                    .filter(|_| f.output_tokens > 1)
                    .map(|d| d / f64::from(f.output_tokens - 1));
                if let Some(tp) = tpot {
                    load.tpot_sum_s += tp;
                    load.tpot_count += 1;
                }
                if f.arrival >= warmup {
                    out.finished += 1;
                    ttft_sum += ttft;
                    tpot_sum += tpot.unwrap_or(0.0);
                    if ttft <= slo.ttft_s && tpot.unwrap_or(0.0) <= slo.tpot_s {
                        good += 1;
                    }
                }
            }
        } else if next_arrival <= t {
            let prompt_len = (1024.0 + 696.0 * normal(&mut rng)).clamp(16.0, 4096.0) as u32;
            let output = (43.0 + 34.0 * normal(&mut rng)).clamp(1.0, 512.0) as u32;
            let prompt = (0..prompt_len)
                .map(|k| (k.wrapping_mul(2_654_435_761) ^ (id as u32)) % 100_000)
                .collect();
            held.push_back((
                t,
                NewRequest {
                    id,
                    prompt,
                    max_tokens: Some(output),
                    ignore_eos: true,
                    ..NewRequest::default()
                },
            ));
            id += 1;
            load.requests += 1;
            load.prompt_tokens += u64::from(prompt_len);
            // Thinning: candidates at the peak rate, kept with rate(t) / peak.
            loop {
                next_arrival += -uniform(&mut rng).ln() / peak;
                if uniform(&mut rng) * peak <= rate(next_arrival) {
                    break;
                }
            }
        } else {
            next_tick += 1.0;
            let ready = fleet
                .iter()
                .filter(|r| r.ready_at <= t && !r.draining)
                .count();
            let snaps: Vec<_> = fleet
                .iter()
                .filter(|r| r.ready_at <= t)
                .map(|r| r.engine.snapshot())
                .collect();
            load.waiting =
                Some(snaps.iter().map(|s| s.num_waiting as f64).sum::<f64>() + held.len() as f64);
            load.kv_usage = (!snaps.is_empty())
                .then(|| snaps.iter().map(|s| s.kv_usage).sum::<f64>() / snaps.len() as f64);
            load.in_flight =
                fleet.iter().map(|r| r.in_flight as u32).sum::<u32>() + held.len() as u32;
            state.observe_load(&load, t);
            if (t as u64).is_multiple_of(5) {
                let fs = FleetState {
                    desired,
                    ready: ready as u32,
                    starting: desired.saturating_sub(ready as u32),
                    held: 0,
                };
                let rec = state.recommend(&policy, &fs, startup, t);
                let r = rec.replicas.unwrap_or(desired).clamp(1, 8);
                recs.push_back((t, r));
                while recs.front().is_some_and(|(at, _)| *at <= t - 300.0) {
                    recs.pop_front();
                }
                let new = if r < desired {
                    recs.iter().map(|x| x.1).max().unwrap_or(r).min(desired)
                } else {
                    r
                };
                for _ in desired..new {
                    fleet.push(Replica {
                        engine: new_engine(),
                        ready_at: t + startup,
                        free_at: t + startup,
                        in_flight: 0,
                        draining: false,
                    });
                }
                for _ in new..desired {
                    // Drain the ready replica with the least in flight; never a starting one.
                    if let Some(r) = fleet
                        .iter_mut()
                        .filter(|r| r.ready_at <= t && !r.draining)
                        .min_by_key(|r| r.in_flight)
                    {
                        r.draining = true;
                    }
                }
                fleet.retain(|r| !(r.draining && r.in_flight == 0));
                if t >= warmup && new != desired {
                    out.changes += 1;
                }
                desired = new;
                out.max_replicas = out.max_replicas.max(new);
                out.last = rec;
                history.push((t, desired));
            }
            if t >= warmup {
                out.replica_seconds += f64::from(desired);
            }
        }
        // Route what the gateway holds to the ready replica with the least in flight.
        while let Some((arrived, _)) = held.front() {
            let arrived = *arrived;
            let now = t.max(arrived);
            let Some(r) = fleet
                .iter_mut()
                .filter(|r| r.ready_at <= now && !r.draining)
                .min_by_key(|r| r.in_flight)
            else {
                break;
            };
            let Some((at, req)) = held.pop_front() else {
                break;
            };
            let idle = !r.engine.has_work();
            if r.engine.add_request(req, at).is_ok() {
                r.in_flight += 1;
                if idle {
                    r.free_at = now;
                }
            }
        }
    }
    let n = out.finished.max(1) as f64;
    out.mean_ttft = ttft_sum / n;
    out.mean_tpot = tpot_sum / n;
    out.attainment = good as f64 / n;
    let changes: Vec<_> = history
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| w[1])
        .collect();
    eprintln!("changes {changes:?}");
    out
}

#[test]
fn aibrix_sinusoid_on_simulated_engines_meets_the_slo() {
    // AIBrix's sinusoid: 12 ± 3.6 req/s, period 120 s.
    let rate = |t: f64| 12.0 + 3.6 * (t * std::f64::consts::TAU / 120.0).sin();
    let o = run(rate, 15.6, 900.0, 300.0);
    eprintln!("{o:?}");
    assert!(o.finished > 6000, "{o:?}");
    assert!(o.mean_tpot <= 0.1 && o.mean_ttft <= 1.0, "{o:?}");
    assert!(o.attainment > 0.95, "{o:?}");
    assert!(o.max_replicas <= 4 && o.changes <= 2, "{o:?}");
}

#[test]
fn on_off_bursts_on_simulated_engines() {
    // 40 req/s for 2 minutes, 4 for 6: each burst queues while its replicas start (68 s);
    // the fleet follows the bursts and costs less than static provisioning at its peak.
    let rate = |t: f64| {
        if t.rem_euclid(480.0) < 120.0 {
            40.0
        } else {
            4.0
        }
    };
    let o = run(rate, 40.0, 1920.0, 0.0);
    eprintln!("{o:?}");
    assert!(o.max_replicas >= 4, "{o:?}");
    assert!(
        o.replica_seconds < f64::from(o.max_replicas) * 1920.0,
        "{o:?}"
    );
}
