//! The gateway's pool and the virtual-time simulator's [`Fleet`] are two drivers of one routing
//! core: fed one scripted event list, they make the same decisions.

use std::sync::Arc;
use std::time::Instant;

use brix_router::fleet::{Booking, CoreConfig, EjectionConfig, FailureKind, Fleet, Scrape};
use brix_router::{EngineMetrics, PrefixConfig, RouteRequest, Weighted};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{InFlight, Pool};
use crate::discovery::Target;

const PODS: usize = 4;

#[derive(Clone, Debug)]
enum Ev {
    Probe(usize, bool),
    Route(Vec<u64>, u32),
    End(usize),
    Response(usize, u64, u64, f64, f64),
    Scrape(usize, f64, f64, f64),
    Fail(usize, FailureKind),
    Success(usize),
    /// The oldest open request on the pod produced its first token this long after its send.
    First(usize, f64),
    /// A finished response's prompt: units and tokens.
    Size(usize, f64, f64),
}

fn script(seed: u64) -> Vec<(f64, Ev)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut now = 0.0;
    let mut out: Vec<(f64, Ev)> = (0..PODS).map(|i| (0.0, Ev::Probe(i, true))).collect();
    let kinds = [
        FailureKind::Connect,
        FailureKind::Status5xx,
        FailureKind::Timeout,
    ];
    for _ in 0..600 {
        now += rng.random_range(0.0..0.8);
        let p = rng.random_range(0..PODS);
        let ev = match rng.random_range(0..20) {
            0..=7 => {
                let conv = rng.random_range(0..5u64);
                let len = rng.random_range(0..6u64);
                Ev::Route(
                    (0..len).map(|i| conv * 100 + i).collect(),
                    rng.random_range(1..300),
                )
            }
            8..=9 => Ev::End(p),
            10..=11 => Ev::Response(
                p,
                rng.random_range(1..2000),
                rng.random_range(1..300),
                rng.random_range(0.01..2.0),
                rng.random_range(0.005..0.1),
            ),
            12..=14 => Ev::Scrape(
                p,
                rng.random_range(0.0..20.0),
                rng.random_range(0.0..1.0),
                // A counter that sometimes goes back: an engine restart.
                rng.random_range(0.0..1e6),
            ),
            15..=16 => Ev::Fail(p, kinds[rng.random_range(0..3)]),
            17 => Ev::Success(p),
            18 => {
                if rng.random_range(0..2) == 0 {
                    Ev::First(p, rng.random_range(0.01..3.0))
                } else {
                    Ev::Size(
                        p,
                        rng.random_range(100.0..9000.0),
                        rng.random_range(20.0..2000.0),
                    )
                }
            }
            _ => Ev::Probe(p, rng.random_range(0..4) > 0),
        };
        out.push((now, ev));
    }
    out
}

fn core_cfg() -> CoreConfig {
    CoreConfig {
        ejection: EjectionConfig {
            consecutive_failures: 2,
            base_ejection_s: 5.0,
            ..EjectionConfig::default()
        },
        ..CoreConfig::default()
    }
}

fn scrape(waiting: f64, kv: f64, total: f64) -> Scrape {
    Scrape {
        metrics: EngineMetrics {
            running: Some(1.0),
            waiting: Some(waiting),
            kv_usage: Some(kv),
        },
        tokens_total: Some(total),
        ..Scrape::default()
    }
}

fn request(blocks: &[u64], max_tokens: u32) -> RouteRequest<'_> {
    RouteRequest {
        blocks,
        prompt_units: blocks.len() as u32 * 128,
        max_tokens: Some(max_tokens),
        ..RouteRequest::default()
    }
}

/// A pool with `PODS` pods `p0`… serving model `m`.
fn pool_of_pods() -> Pool {
    let pool = Pool::new(PrefixConfig::default(), core_cfg(), Instant::now());
    let targets = [(
        "m".to_string(),
        (0..PODS)
            .map(|i| Target {
                name: format!("p{i}"),
                address: format!("p{i}"),
                kv_events: None,
                metrics: None,
            })
            .collect(),
    )]
    .into_iter()
    .collect();
    pool.apply(&targets);
    pool
}

/// Decisions (pod names, or "none") the gateway's pool makes on `events`.
fn through_pool(strategy: &Weighted, events: &[(f64, Ev)], seed: u64) -> Vec<String> {
    let pool = pool_of_pods();
    let pod = |i: usize| {
        pool.all()
            .into_iter()
            .find(|p| p.address == format!("p{i}"))
            .unwrap_or_else(|| panic!("pod {i}"))
    };
    let mut slots: Vec<Vec<InFlight>> = (0..PODS).map(|_| Vec::new()).collect();
    let mut out = Vec::new();
    for (n, (now, ev)) in events.iter().enumerate() {
        match ev {
            Ev::Probe(i, ok) => {
                pod(*i).probe_health_at(*ok, *now);
            }
            Ev::Route(blocks, max_tokens) => {
                let candidates = pool.candidates("m");
                let req = request(blocks, *max_tokens);
                let mut rng = SmallRng::seed_from_u64(seed ^ n as u64);
                match pool.decide("m", &candidates, strategy, &req, *now, &mut rng) {
                    Ok(d) => {
                        let chosen: &Arc<_> = &candidates[d.pod];
                        let i: usize = chosen.address[1..].parse().unwrap_or(0);
                        let e = pool.estimate("m", chosen, &req, *now);
                        slots[i].push(chosen.acquire_booked(None, &e, f64::from(req.prompt_units)));
                        pool.accepted("m", blocks, &chosen.address, *now);
                        out.push(chosen.name.clone());
                    }
                    Err(_) => out.push("none".into()),
                }
            }
            Ev::End(i) => {
                slots[*i].pop();
            }
            Ev::Response(i, p, o, ttft, tpot) => {
                pod(*i).observe(*now, *p, *o, Some(*ttft), Some(*tpot))
            }
            Ev::Scrape(i, w, kv, total) => pod(*i).set_scrape_at(scrape(*w, *kv, *total), *now),
            Ev::Fail(i, kind) => {
                pod(*i).record_failure_at(*kind, *now);
            }
            Ev::Success(i) => pod(*i).record_success(),
            Ev::First(i, t) => {
                if let Some(s) = slots[*i].first_mut() {
                    s.first_token(Some(*t));
                }
            }
            Ev::Size(i, units, tokens) => pod(*i).core().prompt_size(*units, *tokens),
        }
    }
    for i in 0..PODS {
        let p = pod(i).snapshot(events.last().map_or(0.0, |e| e.0));
        out.push(format!(
            "{} {} {:?}",
            p.pending_prefill, p.decoding, p.observed
        ));
    }
    out
}

/// The same through the simulator's driver type.
fn through_fleet(strategy: &Weighted, events: &[(f64, Ev)], seed: u64) -> Vec<String> {
    let names: Vec<(String, String)> = (0..PODS)
        .map(|i| (format!("p{i}"), format!("p{i}")))
        .collect();
    let mut f = Fleet::new(&names, PrefixConfig::default(), core_cfg());
    let mut open: Vec<Vec<Booking>> = (0..PODS).map(|_| Vec::new()).collect();
    let mut out = Vec::new();
    for (n, (now, ev)) in events.iter().enumerate() {
        match ev {
            Ev::Probe(i, ok) => {
                f.probe(*i, *ok, *now);
            }
            Ev::Route(blocks, max_tokens) => {
                let req = request(blocks, *max_tokens);
                let mut rng = SmallRng::seed_from_u64(seed ^ n as u64);
                match f.decide(strategy, &req, *now, &mut rng) {
                    Ok(d) => {
                        let e = f.estimate(d.pod, &req, *now);
                        f.begin(d.pod);
                        open[d.pod].push(f.book(
                            d.pod,
                            e.uncached_tokens,
                            e.prompt_tokens,
                            e.predicted_s,
                        ));
                        f.accepted(d.pod, blocks, *now);
                        out.push(f.name(d.pod).to_string());
                    }
                    Err(_) => out.push("none".into()),
                }
            }
            Ev::End(i) => {
                if let Some(mut b) = open[*i].pop() {
                    f.release(*i, &mut b);
                    f.end(*i);
                }
            }
            Ev::Response(i, p, o, ttft, tpot) => {
                f.response(*i, *now, *p, *o, Some(*ttft), Some(*tpot))
            }
            Ev::Scrape(i, w, kv, total) => {
                f.scraped(*i, *now, scrape(*w, *kv, *total));
            }
            Ev::Fail(i, kind) => {
                f.failure(*i, *kind, *now);
            }
            Ev::Success(i) => f.success(*i),
            Ev::First(i, t) => {
                if let Some(b) = open[*i].first_mut() {
                    f.first_token(*i, b, Some(*t));
                }
            }
            Ev::Size(i, units, tokens) => f.prompt_size(*i, *units, *tokens),
        }
    }
    for i in 0..PODS {
        let p = f.snapshot(i, events.last().map_or(0.0, |e| e.0));
        out.push(format!(
            "{} {} {:?}",
            p.pending_prefill, p.decoding, p.observed
        ));
    }
    out
}

#[test]
fn the_gateway_and_the_simulator_decide_alike() {
    for strategy in [
        "least-request",
        "prefix-cache",
        "kv-cost",
        "least-kv-cache",
        "least-latency",
        "throughput",
        "random",
        "power-of-two",
        "prefix-cache:2,least-request:1",
        "ttft",
        "ttft:2,prefix-cache:1",
    ] {
        let s: Weighted = strategy.parse().unwrap_or_else(|e| panic!("{e}"));
        for seed in 0..4 {
            let events = script(seed);
            let live = through_pool(&s, &events, seed);
            let virt = through_fleet(&s, &events, seed);
            assert!(live.len() > 200, "{strategy}: the script routes");
            let mut used = live.clone();
            used.sort();
            used.dedup();
            assert!(
                used.len() > 2,
                "{strategy}: decisions spread over pods: {used:?}"
            );
            assert_eq!(live, virt, "{strategy}, seed {seed}");
        }
    }
}

/// Events of an adapter fleet: lists, drains, LoRA batch states, adapter requests.
#[derive(Clone, Debug)]
enum Lv {
    Probe(usize, bool),
    Lists(usize, Vec<String>),
    Drain(usize, String, bool),
    Batch(usize, u32, Vec<String>, f64),
    Route(String),
    End(usize),
}

const ADAPTERS: [&str; 4] = ["a0", "a1", "a2", "a3"];

fn adapter_script(seed: u64) -> Vec<(f64, Lv)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let pick = |rng: &mut SmallRng, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| ADAPTERS[rng.random_range(0..ADAPTERS.len())].to_string())
            .collect()
    };
    let mut now = 0.0;
    let mut out: Vec<(f64, Lv)> = (0..PODS).map(|i| (0.0, Lv::Probe(i, true))).collect();
    for _ in 0..600 {
        now += rng.random_range(0.0..0.5);
        let p = rng.random_range(0..PODS);
        let ev = match rng.random_range(0..20) {
            0..=8 => Lv::Route(ADAPTERS[rng.random_range(0..ADAPTERS.len())].to_string()),
            9..=11 => Lv::End(p),
            12..=13 => {
                let n = rng.random_range(0..4);
                Lv::Lists(p, pick(&mut rng, n))
            }
            14 => Lv::Drain(
                p,
                ADAPTERS[rng.random_range(0..ADAPTERS.len())].to_string(),
                rng.random_range(0..3) > 0,
            ),
            15..=18 => {
                let n = rng.random_range(0..3);
                Lv::Batch(
                    p,
                    rng.random_range(1..3),
                    pick(&mut rng, n),
                    rng.random_range(0.0..4.0),
                )
            }
            _ => Lv::Probe(p, rng.random_range(0..5) > 0),
        };
        out.push((now, ev));
    }
    out
}

fn lora_scrape(max_lora: u32, running: &[String], waiting: f64) -> Scrape {
    Scrape {
        lora: Some(brix_router::LoraState {
            max_lora,
            running: running.to_vec(),
            waiting: Vec::new(),
        }),
        ..scrape(waiting, 0.5, 0.0)
    }
}

fn adapter_request(adapter: &str) -> RouteRequest<'_> {
    RouteRequest {
        adapter: Some(adapter),
        ..RouteRequest::default()
    }
}

fn adapters_through_pool(strategy: &Weighted, events: &[(f64, Lv)], seed: u64) -> Vec<String> {
    let pool = pool_of_pods();
    let pod = |i: usize| {
        pool.pod(&format!("p{i}"))
            .unwrap_or_else(|| panic!("pod {i}"))
    };
    let mut slots: Vec<Vec<InFlight>> = (0..PODS).map(|_| Vec::new()).collect();
    let mut out = Vec::new();
    for (n, (now, ev)) in events.iter().enumerate() {
        match ev {
            Lv::Probe(i, ok) => {
                pod(*i).probe_health_at(*ok, *now);
            }
            Lv::Lists(i, list) => pod(*i).set_adapters(list.clone()),
            Lv::Drain(i, a, d) => pod(*i).set_draining(a, *d),
            Lv::Batch(i, max, running, w) => {
                pod(*i).set_scrape_at(lora_scrape(*max, running, *w), *now)
            }
            Lv::Route(a) => {
                let candidates = pool.candidates(a);
                let req = adapter_request(a);
                let mut rng = SmallRng::seed_from_u64(seed ^ n as u64);
                match pool.decide(a, &candidates, strategy, &req, *now, &mut rng) {
                    Ok(d) => {
                        let chosen: &Arc<_> = &candidates[d.pod];
                        let i: usize = chosen.address[1..].parse().unwrap_or(0);
                        slots[i].push(chosen.acquire_for(Some(a)));
                        out.push(format!("{a}@{}", chosen.name));
                    }
                    Err(_) => out.push("none".into()),
                }
            }
            Lv::End(i) => {
                slots[*i].pop();
            }
        }
    }
    out
}

fn adapters_through_fleet(strategy: &Weighted, events: &[(f64, Lv)], seed: u64) -> Vec<String> {
    let names: Vec<(String, String)> = (0..PODS)
        .map(|i| (format!("p{i}"), format!("p{i}")))
        .collect();
    let mut f = Fleet::new(&names, PrefixConfig::default(), core_cfg());
    let mut open: Vec<Vec<String>> = vec![Vec::new(); PODS];
    let mut out = Vec::new();
    for (n, (now, ev)) in events.iter().enumerate() {
        match ev {
            Lv::Probe(i, ok) => {
                f.probe(*i, *ok, *now);
            }
            Lv::Lists(i, list) => f.set_adapters(*i, list.clone()),
            Lv::Drain(i, a, d) => f.set_draining(*i, a, *d),
            Lv::Batch(i, max, running, w) => {
                f.scraped(*i, *now, lora_scrape(*max, running, *w));
            }
            Lv::Route(a) => {
                let req = adapter_request(a);
                let mut rng = SmallRng::seed_from_u64(seed ^ n as u64);
                match f.decide(strategy, &req, *now, &mut rng) {
                    Ok(d) => {
                        f.begin_for(d.pod, Some(a));
                        open[d.pod].push(a.clone());
                        out.push(format!("{a}@{}", f.name(d.pod)));
                    }
                    Err(_) => out.push("none".into()),
                }
            }
            Lv::End(i) => {
                if let Some(a) = open[*i].pop() {
                    f.end_for(*i, Some(&a));
                }
            }
        }
    }
    out
}

#[test]
fn adapter_routing_decides_alike_in_the_gateway_and_the_simulator() {
    for strategy in ["lora-affinity", "least-request", "lora-affinity:2,random:1"] {
        let s: Weighted = strategy.parse().unwrap_or_else(|e| panic!("{e}"));
        for seed in 0..4 {
            let events = adapter_script(seed);
            let live = adapters_through_pool(&s, &events, seed);
            let virt = adapters_through_fleet(&s, &events, seed);
            let routed = live.iter().filter(|d| *d != "none").count();
            assert!(routed > 100, "{strategy}: the script routes ({routed})");
            let mut used: Vec<&str> = live.iter().filter_map(|d| d.split('@').nth(1)).collect();
            used.sort();
            used.dedup();
            assert!(used.len() > 2, "{strategy}: decisions spread: {used:?}");
            assert_eq!(live, virt, "{strategy}, seed {seed}");
        }
    }
}
