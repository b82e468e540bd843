//! Seeded random snapshots and event sequences, checked against the policy's invariants and
//! against a plain re-derivation of how many pods each adapter wants.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use brix_adapters::{ActionKind, AdapterView, Config, Plan, PodView, Snapshot, plan};
use common::apply;
use rand::rngs::SmallRng;
use rand::seq::{IndexedMutRandom, SliceRandom};
use rand::{Rng, SeedableRng};

const BASES: [&str; 3] = ["m", "n", "z"]; // no pod serves "z"
const UNKNOWN: [&str; 2] = ["x0", "x1"];

fn random_pod(rng: &mut SmallRng, i: usize, known: &[String]) -> PodView {
    let mut p = PodView {
        name: format!("p{i}"),
        base_model: BASES[rng.random_range(0..2)].into(),
        ready: rng.random_bool(0.8),
        max_loras: rng.random_range(1..3),
        max_cpu_loras: rng.random_range(1..5),
        ..Default::default()
    };
    for a in known.iter().map(String::as_str).chain(UNKNOWN) {
        if rng.random_bool(0.25) {
            p.loaded.insert(a.into());
            if rng.random_bool(0.2) {
                p.draining.insert(a.into(), rng.random_bool(0.5));
            }
        }
    }
    p
}

fn random_adapter(rng: &mut SmallRng, name: String, npods: usize) -> AdapterView {
    AdapterView {
        name,
        base_model: BASES[rng.random_range(0..3)].into(),
        replicas: rng.random_bool(0.7).then(|| rng.random_range(0..4)),
        eligible: rng.random_bool(0.3).then(|| {
            (0..npods)
                .filter(|_| rng.random_bool(0.6))
                .map(|i| format!("p{i}"))
                .collect()
        }),
        traffic_rps: if rng.random_bool(0.3) {
            rng.random_range(0.0..50.0)
        } else {
            0.0
        },
        deleted: rng.random_bool(0.1),
    }
}

fn random_snapshot(rng: &mut SmallRng) -> Snapshot {
    let npods = rng.random_range(1..7);
    let names: Vec<String> = (0..rng.random_range(0..8))
        .map(|i| format!("a{i}"))
        .collect();
    let pods: Vec<PodView> = (0..npods).map(|i| random_pod(rng, i, &names)).collect();
    let adapters = names
        .iter()
        .map(|n| random_adapter(rng, n.clone(), npods))
        .collect();
    let mut previous = BTreeMap::new();
    for n in &names {
        let set: BTreeSet<String> = pods
            .iter()
            .filter(|_| rng.random_bool(0.3))
            .map(|p| p.name.clone())
            .collect();
        if !set.is_empty() {
            previous.insert(n.clone(), set);
        }
    }
    let config = Config {
        hot_rps_per_replica: rng.random_range(5.0..20.0),
        max_extra_replicas: rng.random_range(0..3),
    };
    Snapshot {
        pods,
        adapters,
        previous,
        config,
    }
}

fn placed_on(out: &Plan, a: &str) -> BTreeSet<String> {
    out.placement.get(a).cloned().unwrap_or_default()
}

fn may_use(a: &AdapterView, p: &PodView) -> bool {
    p.base_model == a.base_model && a.eligible.as_ref().is_none_or(|s| s.contains(&p.name))
}

/// Checks every invariant of one plan against its snapshot.
fn check(s: &Snapshot, out: &Plan, ctx: &str) {
    let pods: BTreeMap<&str, &PodView> = s.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let adapters: BTreeMap<&str, &AdapterView> =
        s.adapters.iter().map(|a| (a.name.as_str(), a)).collect();
    let resident = |p: &PodView, a: &str| p.loaded.contains(a) || p.draining.contains_key(a);

    // Determinism, whatever the input order.
    let mut shuffled = s.clone();
    let mut rng = SmallRng::seed_from_u64(out.actions.len() as u64);
    shuffled.pods.shuffle(&mut rng);
    shuffled.adapters.shuffle(&mut rng);
    assert_eq!(
        &plan(&shuffled).expect("plan"),
        out,
        "{ctx}: order changed the plan"
    );

    // Only eligible ready pods, only live adapters.
    for (a, set) in &out.placement {
        let av = adapters[a.as_str()];
        assert!(!av.deleted, "{ctx}: deleted {a} placed");
        for p in set {
            let pv = pods[p.as_str()];
            assert!(pv.ready && may_use(av, pv), "{ctx}: {a} on ineligible {p}");
        }
    }
    // Wanted counts, re-derived; placed never above; short only when no pod could take more.
    let mut after: BTreeMap<&str, BTreeSet<&str>> = pods
        .iter()
        .map(|(&n, p)| {
            (
                n,
                p.loaded
                    .iter()
                    .chain(p.draining.keys())
                    .map(String::as_str)
                    .collect(),
            )
        })
        .collect();
    for act in out.actions.iter().filter(|a| a.kind == ActionKind::Load) {
        after
            .get_mut(act.pod.as_str())
            .expect("pod")
            .insert(&act.adapter);
    }
    for (&name, &a) in &adapters {
        let st = &out.status[name];
        let placed = out.placement.get(name).map_or(0, BTreeSet::len);
        assert_eq!(st.placed as usize, placed, "{ctx}: {name}");
        let eligible = s.pods.iter().filter(|p| may_use(a, p)).count() as u32;
        let wanted = match (a.deleted, a.replicas) {
            (true, _) | (false, Some(0)) => 0,
            (false, None) => eligible,
            (false, Some(n)) => {
                let t = if a.traffic_rps.is_finite() {
                    a.traffic_rps.max(0.0)
                } else {
                    0.0
                };
                let need = (t / s.config.hot_rps_per_replica).ceil() as u32;
                n + need.saturating_sub(n).min(s.config.max_extra_replicas)
            }
        };
        assert_eq!(st.wanted, wanted, "{ctx}: {name} wanted");
        assert!(placed as u32 <= wanted, "{ctx}: {name} over");
        assert_eq!(
            st.shortfall.is_some(),
            (placed as u32) < wanted,
            "{ctx}: {name} shortfall"
        );
        if (placed as u32) < wanted {
            for p in s.pods.iter().filter(|p| p.ready && may_use(a, p)) {
                let held = placed_on(out, name).contains(&p.name);
                assert!(
                    held || after[p.name.as_str()].len() >= p.capacity() as usize,
                    "{ctx}: {name} could go on {}",
                    p.name
                );
            }
        }
        // Stability: serving copies on still-eligible ready pods are kept when not surplus.
        if !a.deleted {
            let serving: Vec<&PodView> = s
                .pods
                .iter()
                .filter(|p| {
                    p.ready
                        && may_use(a, p)
                        && p.loaded.contains(name)
                        && !p.draining.contains_key(name)
                })
                .collect();
            if serving.len() as u32 <= wanted {
                assert!(
                    serving
                        .iter()
                        .all(|p| placed_on(out, name).contains(&p.name)),
                    "{ctx}: {name} moved"
                );
            }
        }
    }
    // Capacity: a pod that gets a load stays within it.
    for act in out.actions.iter().filter(|a| a.kind == ActionKind::Load) {
        let p = pods[act.pod.as_str()];
        assert!(
            after[act.pod.as_str()].len() <= p.capacity() as usize,
            "{ctx}: {} over capacity",
            p.name
        );
    }
    // Each action is legal from the current state; unknown adapters never appear.
    for act in &out.actions {
        let p = pods[act.pod.as_str()];
        let a = adapters
            .get(act.adapter.as_str())
            .unwrap_or_else(|| panic!("{ctx}: unknown {}", act.adapter));
        let desired = out
            .placement
            .get(&act.adapter)
            .is_some_and(|s| s.contains(&p.name));
        let ok = match act.kind {
            ActionKind::Load => desired && !resident(p, &a.name),
            ActionKind::Resume => desired && p.draining.contains_key(&a.name),
            ActionKind::Drain => {
                !desired && resident(p, &a.name) && !p.draining.contains_key(&a.name)
            }
            ActionKind::Unload => !desired && p.draining.get(&a.name) == Some(&true),
        };
        assert!(ok, "{ctx}: illegal {act:?}");
    }
    let mut sorted = out.actions.clone();
    sorted.sort_by(|x, y| (x.kind, &x.pod, &x.adapter).cmp(&(y.kind, &y.pod, &y.adapter)));
    assert_eq!(sorted, out.actions, "{ctx}: order");

    // Idempotence: once applied (drains still running), the plan asks for nothing more.
    if out.actions.iter().all(|a| a.kind != ActionKind::Unload) {
        let mut s2 = s.clone();
        apply(&mut s2, out);
        let again = plan(&s2).expect("plan");
        assert!(
            again.actions.is_empty(),
            "{ctx}: not idempotent: {:?}",
            again.actions
        );
        assert_eq!(again.placement, out.placement, "{ctx}: placement moved");
    }
}

#[test]
fn random_snapshots_keep_every_invariant() {
    for seed in 0..3000 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let s = random_snapshot(&mut rng);
        let out = plan(&s).expect("plan");
        check(&s, &out, &format!("seed {seed}"));
    }
}

#[test]
fn random_event_sequences_keep_every_invariant_and_settle() {
    for seed in 0..300 {
        let mut rng = SmallRng::seed_from_u64(1_000_000 + seed);
        let mut s = random_snapshot(&mut rng);
        let mut next_name = s.adapters.len();
        let mut next_pod = s.pods.len();
        for step in 0..40 {
            let ctx = format!("seed {seed} step {step}");
            let npods = s.pods.len();
            match rng.random_range(0..9) {
                8 if npods > 1 => {
                    // A pod leaves for good.
                    let i = rng.random_range(0..npods);
                    s.pods.remove(i);
                }
                0 => {
                    let p = s.pods.choose_mut(&mut rng).expect("pods");
                    p.ready = !p.ready;
                }
                1 => {
                    // Restart: the engine comes back empty (ready or not yet).
                    let p = s.pods.choose_mut(&mut rng).expect("pods");
                    p.loaded.clear();
                    p.draining.clear();
                    p.ready = rng.random_bool(0.5);
                }
                2 => {
                    if let Some(a) = s.adapters.choose_mut(&mut rng) {
                        a.traffic_rps = rng.random_range(0.0..60.0);
                    }
                }
                3 => {
                    if let Some(a) = s.adapters.choose_mut(&mut rng) {
                        a.replicas = rng.random_bool(0.8).then(|| rng.random_range(0..4));
                    }
                }
                4 => {
                    if let Some(a) = s.adapters.choose_mut(&mut rng) {
                        a.deleted = true;
                    }
                }
                5 => {
                    let mut a = random_adapter(&mut rng, format!("a{next_name}"), npods);
                    a.deleted = false;
                    next_name += 1;
                    s.adapters.push(a);
                }
                6 => {
                    for d in s.pods.iter_mut().flat_map(|p| p.draining.values_mut()) {
                        *d |= rng.random_bool(0.5);
                    }
                }
                _ => {
                    let i = next_pod;
                    next_pod += 1;
                    s.pods.push(random_pod(&mut rng, i, &[]));
                }
            }
            let out = plan(&s).expect("plan");
            check(&s, &out, &ctx);
            // The driver applies the plan; now and then a load fails.
            let mut applied = out.clone();
            applied
                .actions
                .retain(|a| a.kind != ActionKind::Load || rng.random_bool(0.9));
            apply(&mut s, &applied);
            // A deleted adapter with no copy left is forgotten.
            s.adapters
                .retain(|a| !(a.deleted && out.status[&a.name].resident_on.is_empty()));
        }
        // With nothing changing and drains finishing, it settles within a few rounds.
        let mut rounds = 0;
        loop {
            common::finish_drains(&mut s);
            let out = plan(&s).expect("plan");
            if out.actions.is_empty() {
                break;
            }
            apply(&mut s, &out);
            rounds += 1;
            assert!(
                rounds < 6,
                "seed {seed}: does not settle: {:?}",
                out.actions
            );
        }
    }
}
