//! Tests of adapters in virtual time: the popularity mixes, placement through the policy crate,
//! routing to holders only, held requests, and determinism. Nothing here reads a clock.

use std::collections::BTreeMap;

use brix_sim::Catalog;

use super::adapters::{
    AdapterEventKind, AdapterMix, AdapterReport, AdapterSim, AdapterSpec, AdapterSpecError,
};
use super::*;
use crate::workload::WorkRequest;

/// `n` requests at `rate`/s, 300-word prompts (distinct), 16–40 output tokens.
fn workload(n: usize, rate: f64) -> Workload {
    let requests = (0..n)
        .map(|i| WorkRequest {
            id: i as u64,
            at_s: i as f64 / rate,
            session: None,
            prompt: (0..300u32)
                .map(|j| (j.wrapping_mul(2_654_435_761) ^ i as u32) % 2000)
                .collect(),
            output_tokens: 16 + (i as u32 % 7) * 4,
        })
        .collect();
    Workload { requests }
}

fn config(engines: usize, max_loras: u32, max_cpu_loras: u32, adapters: AdapterSim) -> SimConfig {
    let c = Catalog::builtin();
    let mut cfg = match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => SimConfig::new(engines, m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    cfg.engine.max_loras = max_loras;
    cfg.engine.max_cpu_loras = max_cpu_loras;
    cfg.adapters = Some(adapters);
    cfg
}

fn mix(spec: &str) -> AdapterMix {
    match AdapterSpec::parse(spec) {
        Ok(AdapterSpec::Mix(m)) => m,
        other => panic!("{spec}: {other:?}"),
    }
}

fn run_it(w: &Workload, cfg: &SimConfig, strategy: &str) -> SimRun {
    let keys = route_keys(w, 128);
    let s: SimStrategy = strategy.parse().unwrap_or_else(|e| panic!("{e}"));
    run(w, &keys, Release::Open, cfg, &s).unwrap_or_else(|e| panic!("{e}"))
}

fn report(r: &SimRun) -> &AdapterReport {
    r.adapters
        .as_ref()
        .unwrap_or_else(|| panic!("no adapter report"))
}

#[test]
fn specs_parse_and_bad_ones_say_why() {
    let u = mix("uniform:3");
    assert_eq!(u.names, vec!["lora-0", "lora-1", "lora-2"]);
    assert_eq!(u.weights, vec![1.0; 3]);
    let z = mix("zipf:4:1");
    assert_eq!(z.weights, vec![1.0, 0.5, 1.0 / 3.0, 0.25]);
    assert_eq!(
        AdapterSpec::parse("file:/tmp/a,b.csv"),
        Ok(AdapterSpec::File("/tmp/a,b.csv".into()))
    );
    for (bad, want) in [
        ("zipf:0:1", AdapterSpecError::Count("0".into())),
        ("uniform:x", AdapterSpecError::Count("x".into())),
        ("zipf:10:-1", AdapterSpecError::Exponent("-1".into())),
        ("zipf:10:nan", AdapterSpecError::Exponent("nan".into())),
        ("zipf:10", AdapterSpecError::Form("zipf:10".into())),
        ("file:", AdapterSpecError::Form("file:".into())),
        ("poisson:3", AdapterSpecError::Form("poisson:3".into())),
    ] {
        assert_eq!(AdapterSpec::parse(bad), Err(want), "{bad}");
    }
    let f = AdapterMix::parse_file("# popular first\nsql-lora, 3\n\nchat-lora\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.names, vec!["sql-lora", "chat-lora"]);
    assert_eq!(f.shares(), vec![0.75, 0.25]);
    for (bad, line) in [
        ("a\na\n", 2),
        ("a,0\n", 1),
        ("a,-2\n", 1),
        ("ok\nbad name\n", 2),
    ] {
        match AdapterMix::parse_file(bad) {
            Err(AdapterSpecError::Line { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(
        AdapterMix::parse_file("# nothing\n"),
        Err(AdapterSpecError::Empty)
    );
}

#[test]
fn request_counts_follow_the_mix_and_the_seed_fixes_them() {
    let n = 40_000;
    for spec in ["zipf:10:1", "uniform:5", "zipf:50:1.2"] {
        let m = mix(spec);
        let got = m.assign(n, 7);
        assert_eq!(got, m.assign(n, 7), "{spec}: same seed, same draw");
        assert_ne!(got, m.assign(n, 8), "{spec}: another seed, another draw");
        let mut counts = vec![0u64; m.names.len()];
        for &a in &got {
            counts[a as usize] += 1;
        }
        for (k, (&c, p)) in counts.iter().zip(m.shares()).enumerate() {
            // Binomial: within 4 standard deviations (plus one request for tiny shares).
            let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
            assert!(
                (c as f64 - mean).abs() <= 4.0 * sd + 1.0,
                "{spec}: adapter {k} got {c}, expected {mean:.0} ± {sd:.0}"
            );
        }
    }
}

/// Whether engine `pod` listed `adapter` (loaded, not drained) at `t`, from the event log.
fn held_at(r: &AdapterReport, pod: &str, adapter: &str, t: f64) -> bool {
    let mut serving = false;
    for e in r
        .events
        .iter()
        .filter(|e| e.pod == pod && e.adapter == adapter && e.t <= t)
    {
        serving = match e.kind {
            AdapterEventKind::Loaded | AdapterEventKind::Resume => true,
            AdapterEventKind::Drain | AdapterEventKind::Unload => false,
            AdapterEventKind::Load => serving,
        };
    }
    serving
}

#[test]
fn requests_go_only_to_holders_and_placement_respects_capacity() {
    let w = workload(600, 40.0);
    let m = mix("zipf:20:1");
    let mut a = AdapterSim::new(&m, w.requests.len(), 3);
    a.policy.hot_rps_per_replica = 3.0; // lora-0 (≈ 11 req/s) grows to more pods
    let cfg = config(3, 2, 8, a.clone());
    for strategy in [
        "least-request",
        "random",
        "prefix-cache",
        "lora-affinity",
        "lora-affinity:2+least-request:1",
        "oracle",
    ] {
        let run = run_it(&w, &cfg, strategy);
        let rep = report(&run);
        assert!(
            run.records.iter().all(|r| r.status == 200),
            "{strategy}: {:?}",
            run.records.iter().find(|r| r.status != 200)
        );
        for r in &run.records {
            let adapter = &m.names[a.of_request[r.id as usize] as usize];
            let pod = r.target_pod.as_deref().unwrap_or("");
            assert!(
                held_at(rep, pod, adapter, r.sent_s),
                "{strategy}: request {} for {adapter} went to {pod}, which did not serve it",
                r.id
            );
        }
        assert!(rep.max_resident.iter().all(|&n| n <= 8), "{rep:?}");
        if strategy.starts_with("lora-affinity") {
            // The engines' LoRA state reaches the core with each scrape: only a request sent
            // before the first one (t = 0) may fall back.
            let fallbacks: u64 = run.fallbacks.values().sum();
            assert!(fallbacks <= 1, "{strategy}: {:?}", run.fallbacks);
        }
        // 20 adapters, one replica each, then hot growth: all placed, none above capacity.
        let placed = rep.per_adapter.values().filter(|c| c.max_replicas >= 1);
        assert_eq!(placed.count(), 20, "{strategy}");
        assert!(
            rep.per_adapter["lora-0"].max_replicas >= 2,
            "{strategy}: hot"
        );
        let total: u64 = rep.per_adapter.values().map(|c| c.requests).sum();
        assert_eq!(total, 600);
        let ok: u64 = rep.per_adapter.values().map(|c| c.ok).sum();
        assert_eq!(ok, 600);
    }
}

#[test]
fn adapters_without_room_wait_then_fail_with_the_reason() {
    // 3 pods × 2 resident adapters = 6 places for 10 adapters of equal popularity.
    let w = workload(200, 20.0);
    let m = mix("uniform:10");
    let mut a = AdapterSim::new(&m, w.requests.len(), 5);
    a.hold_s = 3.0;
    let run = run_it(&w, &config(3, 2, 2, a.clone()), "least-request");
    let rep = report(&run);
    assert!(rep.max_resident.iter().all(|&n| n <= 2), "{rep:?}");
    let unplaced: Vec<&String> = rep
        .per_adapter
        .iter()
        .filter(|(_, c)| c.max_replicas == 0)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(unplaced.len(), 4, "{rep:?}");
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &run.records {
        *by_status.entry(r.status).or_default() += 1;
        let adapter = &m.names[a.of_request[r.id as usize] as usize];
        let placed = !unplaced.contains(&adapter);
        assert_eq!(r.status == 200, placed, "{r:?}");
        if !placed {
            let why = r.error.as_deref().unwrap_or("");
            assert!(why.contains(adapter.as_str()), "{why}");
            // Held for hold_s of virtual time, then the 503.
            assert!((r.e2e_ms.unwrap_or(0.0) - 3000.0).abs() < 1e-6, "{r:?}");
        }
    }
    assert_eq!(rep.held as usize, by_status[&503]);
    assert_eq!(rep.held_timed_out, rep.held);
}

#[test]
fn fewer_lora_slots_mean_longer_queues_and_runs_repeat_exactly() {
    // One engine, 8 adapters, enough traffic that batches mix adapters.
    let w = workload(400, 12.0);
    let m = mix("uniform:8");
    let a = AdapterSim::new(&m, w.requests.len(), 1);
    let mean_ttft = |r: &SimRun| {
        let t: Vec<f64> = r.records.iter().filter_map(|x| x.ttft_ms).collect();
        t.iter().sum::<f64>() / t.len() as f64
    };
    let one = run_it(&w, &config(1, 1, 8, a.clone()), "least-request");
    let eight = run_it(&w, &config(1, 8, 8, a.clone()), "least-request");
    assert!(
        mean_ttft(&one) > 2.0 * mean_ttft(&eight),
        "max_loras 1: {} ms, 8: {} ms",
        mean_ttft(&one),
        mean_ttft(&eight)
    );
    let again = run_it(&w, &config(1, 1, 8, a), "least-request");
    assert_eq!(again, one, "same inputs, same run");
    let rep = report(&one);
    assert_eq!(rep.count(AdapterEventKind::Load), 8);
    assert_eq!(rep.count(AdapterEventKind::Unload), 0);
}

#[test]
fn a_bad_assignment_is_refused() {
    let w = workload(10, 1.0);
    let m = mix("uniform:2");
    let mut a = AdapterSim::new(&m, 9, 1);
    let keys = route_keys(&w, 128);
    let s = SimStrategy::Oracle;
    let cfg = config(1, 1, 2, a.clone());
    assert!(matches!(
        run(&w, &keys, Release::Open, &cfg, &s),
        Err(SimError::AdapterMismatch { assigned: 9, .. })
    ));
    a.of_request = vec![5; 10];
    let cfg = config(1, 1, 2, a.clone());
    assert!(run(&w, &keys, Release::Open, &cfg, &s).is_err());
    a.of_request = vec![0; 10];
    a.tick_s = 0.0;
    let cfg = config(1, 1, 2, a);
    assert_eq!(
        run(&w, &keys, Release::Open, &cfg, &s),
        Err(SimError::AdapterTiming)
    );
}

#[test]
fn a_cooled_adapter_is_drained_then_unloaded_and_never_routed_while_draining() {
    // 10 s of one hot adapter at 30 req/s, then 10 s of two others.
    let w = workload(600, 30.0);
    let mix = AdapterMix::parse_file("hot\ncold-1\ncold-2\n").unwrap_or_else(|e| panic!("{e}"));
    let mut a = AdapterSim::new(&mix, w.requests.len(), 1);
    a.of_request = (0..600)
        .map(|i| if i < 300 { 0 } else { 1 + i % 2 })
        .collect();
    a.policy.hot_rps_per_replica = 5.0;
    a.tick_s = 1.0;
    a.traffic_window_s = 3.0;
    let run = run_it(&w, &config(3, 2, 4, a.clone()), "least-request");
    let rep = report(&run);
    assert!(run.records.iter().all(|r| r.status == 200));
    let hot = &rep.per_adapter["hot"];
    assert_eq!(hot.max_replicas, 3, "{hot:?}");
    // Two extra copies while hot, both drained and unloaded once it cooled; one stays.
    assert_eq!((hot.loads, hot.unloads), (3, 2), "{hot:?}");
    let kinds: Vec<AdapterEventKind> = rep
        .events
        .iter()
        .filter(|e| e.adapter == "hot")
        .map(|e| e.kind)
        .collect();
    let drains = kinds
        .iter()
        .filter(|k| **k == AdapterEventKind::Drain)
        .count();
    assert_eq!(drains, 2, "{kinds:?}");
    for e in rep
        .events
        .iter()
        .filter(|e| e.kind == AdapterEventKind::Unload)
    {
        let drained_at = rep
            .events
            .iter()
            .filter(|d| d.kind == AdapterEventKind::Drain && d.pod == e.pod)
            .map(|d| d.t)
            .fold(f64::NAN, f64::max);
        assert!(drained_at <= e.t, "unloaded before its drain: {e:?}");
    }
    for r in &run.records {
        let adapter = &mix.names[a.of_request[r.id as usize] as usize];
        let pod = r.target_pod.as_deref().unwrap_or("");
        assert!(held_at(rep, pod, adapter, r.sent_s), "{r:?}");
    }
}
