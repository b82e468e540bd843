//! One table test per placement rule.

mod common;

use brix_adapters::ActionKind::{Drain, Load, Resume, Unload};
use brix_adapters::{Config, PlanError, Reason, Shortfall, Snapshot, plan};
use common::{adapter, apply, finish_drains, on, pod, steps};

fn snap(pods: Vec<brix_adapters::PodView>, adapters: Vec<brix_adapters::AdapterView>) -> Snapshot {
    Snapshot {
        pods,
        adapters,
        ..Default::default()
    }
}

#[test]
fn cold_adapters_pack_densely_best_fit_ties_by_name() {
    // p2 already holds two adapters: new cold ones go there until it is full, then to the
    // fullest pod left (ties by name), keeping p3 empty for hot ones.
    let cases: &[(&[&str], &str)] = &[
        (&["c"], "p2"),
        (&["c", "d"], "p2"),
        (&["c", "d", "e"], "p1"),
    ];
    for &(new, third) in cases {
        let mut adapters = vec![adapter("a", "m", Some(1)), adapter("b", "m", Some(1))];
        adapters.extend(new.iter().map(|n| adapter(n, "m", Some(1))));
        let s = snap(
            vec![
                pod("p3", "m", 4, &[]),
                pod("p1", "m", 4, &[]),
                pod("p2", "m", 4, &["a", "b"]),
            ],
            adapters,
        );
        let out = plan(&s).expect("plan");
        assert_eq!(on(&out, "a"), ["p2"]);
        assert_eq!(on(&out, "c"), ["p2"], "{new:?}");
        assert_eq!(on(&out, new[new.len() - 1]), [third], "{new:?}");
        assert!(
            out.placement.values().all(|s| !s.contains("p3")),
            "{:?}",
            out.placement
        );
        assert!(
            out.actions
                .iter()
                .all(|a| a.kind == Load && a.reason == Reason::Spec)
        );
    }
}

#[test]
fn replicas_none_means_every_eligible_pod_some_means_that_many() {
    let pods = || {
        vec![
            pod("p1", "m", 4, &[]),
            pod("p2", "m", 4, &[]),
            pod("p3", "m", 4, &[]),
            pod("q1", "other", 4, &[]),
        ]
    };
    let mut selected = adapter("sel", "m", None);
    selected.eligible = Some(["p1".to_string(), "p3".to_string(), "q1".to_string()].into());
    let cases = [
        (adapter("all", "m", None), vec!["p1", "p2", "p3"], 3, None),
        (selected, vec!["p1", "p3"], 2, None),
        (adapter("two", "m", Some(2)), vec!["p1", "p2"], 2, None),
        (adapter("zero", "m", Some(0)), vec![], 0, None),
        (
            adapter("five", "m", Some(5)),
            vec!["p1", "p2", "p3"],
            5,
            Some(Shortfall::TooFewEligiblePods),
        ),
        (
            adapter("nobase", "none", Some(1)),
            vec![],
            1,
            Some(Shortfall::NoEligiblePod),
        ),
    ];
    for (a, want_on, wanted, shortfall) in cases {
        let name = a.name.clone();
        let out = plan(&snap(pods(), vec![a])).expect("plan");
        assert_eq!(on(&out, &name), want_on, "{name}");
        let st = &out.status[&name];
        assert_eq!(
            (st.wanted, st.placed as usize, st.shortfall),
            (wanted, want_on.len(), shortfall),
            "{name}"
        );
    }
}

#[test]
fn capacity_counts_every_resident_adapter_and_is_never_exceeded() {
    // Each pod holds 2; p1 carries someone else's adapter `x`. Four adapters want one replica
    // each: only three fit.
    let s = snap(
        vec![pod("p1", "m", 2, &["x"]), pod("p2", "m", 2, &[])],
        ["a", "b", "c", "d"]
            .iter()
            .map(|n| adapter(n, "m", Some(1)))
            .collect(),
    );
    let out = plan(&s).expect("plan");
    assert_eq!(
        out.placement.values().filter(|s| s.contains("p1")).count(),
        1
    );
    assert_eq!(
        out.placement.values().filter(|s| s.contains("p2")).count(),
        2
    );
    assert_eq!(
        out.status["d"].shortfall,
        Some(Shortfall::CapacityExhausted)
    );
    assert_eq!(out.status["d"].placed, 0);
    // max_loras above max_cpu_loras raises the capacity (vLLM's floor).
    let mut big = s.clone();
    big.pods[1].max_loras = 3;
    assert_eq!(plan(&big).expect("plan").status["d"].shortfall, None);
}

#[test]
fn a_pod_that_restarts_is_re_placed_and_gets_adapters_back_only_if_needed() {
    let mut s = snap(
        vec![pod("p1", "m", 4, &["one"]), pod("p2", "m", 4, &[])],
        vec![adapter("one", "m", Some(1)), adapter("all", "m", None)],
    );
    s.pods[0].loaded.insert("all".into());
    s.pods[1].loaded.insert("all".into());
    let out = plan(&s).expect("plan");
    assert!(out.actions.is_empty(), "{:?}", out.actions);
    apply(&mut s, &out);

    // p1 dies: its engine reports nothing and it is not ready.
    s.pods[0].ready = false;
    s.pods[0].loaded.clear();
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Load, "one", "p2")]);
    assert_eq!(out.status["all"].shortfall, Some(Shortfall::PodNotReady));
    assert_eq!((out.status["all"].placed, out.status["all"].wanted), (1, 2));
    apply(&mut s, &out);

    // p1 is back, empty: `all` wants every pod so it returns; `one` stays on p2.
    s.pods[0].ready = true;
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Load, "all", "p1")]);
    assert_eq!(on(&out, "one"), ["p2"]);

    // p2 leaves for good: `one` comes back to p1 (the count needs it), `all` is whole again.
    apply(&mut s, &out);
    s.pods.remove(1);
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Load, "one", "p1")]);
    assert_eq!(out.status["all"].shortfall, None);

    // A restart quicker than a plan: ready, empty, but the last plan put `one` there.
    let mut quick = snap(
        vec![pod("p1", "m", 4, &[]), pod("p2", "m", 4, &[])],
        vec![adapter("one", "m", Some(1))],
    );
    quick
        .previous
        .insert("one".into(), ["p2".to_string()].into());
    let out = plan(&quick).expect("plan");
    assert_eq!(steps(&out), [(Load, "one", "p2")]);
    assert_eq!(out.actions[0].reason, Reason::Reload);
}

#[test]
fn deletion_drains_everywhere_then_unloads_once_drained() {
    let mut s = snap(
        vec![pod("p1", "m", 4, &["a", "b"]), pod("p2", "m", 4, &["a"])],
        vec![adapter("a", "m", None), adapter("b", "m", Some(1))],
    );
    assert!(plan(&s).expect("plan").actions.is_empty());
    s.adapters[0].deleted = true;
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Drain, "a", "p1"), (Drain, "a", "p2")]);
    assert!(out.actions.iter().all(|a| a.reason == Reason::Deleted));
    assert!(!out.placement.contains_key("a"));
    apply(&mut s, &out);
    // Requests still in flight: nothing to do yet, and the status still shows the copies.
    let out = plan(&s).expect("plan");
    assert!(out.actions.is_empty(), "{:?}", out.actions);
    assert_eq!(out.status["a"].resident_on, ["p1", "p2"]);
    finish_drains(&mut s);
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Unload, "a", "p1"), (Unload, "a", "p2")]);
    apply(&mut s, &out);
    let out = plan(&s).expect("plan");
    assert!(out.actions.is_empty());
    assert!(out.status["a"].resident_on.is_empty());
    assert_eq!(on(&out, "b"), ["p1"]);
}

#[test]
fn adapters_no_modeladapter_names_are_left_alone() {
    let s = snap(
        vec![
            pod("p1", "m", 2, &["mine", "theirs"]),
            pod("p2", "m", 2, &["stray"]),
        ],
        vec![adapter("mine", "m", Some(1))],
    );
    let out = plan(&s).expect("plan");
    assert!(out.actions.is_empty(), "{:?}", out.actions);
    assert!(!out.status.contains_key("theirs"));
    // Even when p1 goes away, `theirs` is not touched, only `mine` is drained and moved.
    let mut s = s;
    s.pods[0].ready = false;
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Drain, "mine", "p1"), (Load, "mine", "p2")]);
    assert_eq!(out.actions[0].reason, Reason::NotEligible);
}

#[test]
fn hot_adapters_grow_spread_over_least_loaded_pods_and_shrink_back() {
    let cfg = Config {
        hot_rps_per_replica: 10.0,
        max_extra_replicas: 2,
    };
    let mut warm = adapter("warm", "m", Some(1));
    warm.traffic_rps = 8.0;
    let mut hot = adapter("hot", "m", Some(1));
    let pods = vec![
        pod("p1", "m", 4, &["hot", "warm"]),
        pod("p2", "m", 4, &["c1", "c2"]),
        pod("p3", "m", 4, &[]),
        pod("p4", "m", 4, &[]),
    ];
    let mut adapters = vec![
        warm,
        adapter("c1", "m", Some(1)),
        adapter("c2", "m", Some(1)),
    ];
    // (traffic, wanted, hot extra)
    for (rps, wanted, extra) in [(5.0, 1, 0), (15.0, 2, 1), (25.0, 3, 2), (1000.0, 3, 2)] {
        hot.traffic_rps = rps;
        let mut all = adapters.clone();
        all.push(hot.clone());
        let s = Snapshot {
            pods: pods.clone(),
            adapters: all,
            previous: Default::default(),
            config: cfg.clone(),
        };
        let out = plan(&s).expect("plan");
        let st = &out.status["hot"];
        assert_eq!(
            (st.wanted, st.hot_extra, st.shortfall),
            (wanted, extra, None),
            "{rps}"
        );
        let got = on(&out, "hot");
        assert_eq!(got[0], "p1", "kept where loaded");
        // Extra replicas go to pods without traffic before the dense pod p2, empty-first.
        let expect: &[&str] = &["p1", "p3", "p4"];
        assert_eq!(got, expect[..wanted as usize], "{rps}");
        assert!(
            out.actions
                .iter()
                .all(|a| a.kind == Load && a.reason == Reason::Hot)
        );
    }
    // Cooling down drains the extra copies, keeping the first.
    adapters.push(hot.clone());
    let mut s = Snapshot {
        pods,
        adapters,
        previous: Default::default(),
        config: cfg,
    };
    let out = plan(&s).expect("plan");
    apply(&mut s, &out);
    s.adapters[3].traffic_rps = 0.0;
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Drain, "hot", "p3"), (Drain, "hot", "p4")]);
    assert!(out.actions.iter().all(|a| a.reason == Reason::Surplus));
    // Heating up again before the drains finished resumes them instead of loading anew.
    apply(&mut s, &out);
    s.adapters[3].traffic_rps = 30.0;
    let out = plan(&s).expect("plan");
    assert_eq!(steps(&out), [(Resume, "hot", "p3"), (Resume, "hot", "p4")]);
}

#[test]
fn the_same_snapshot_twice_gives_no_actions_and_nothing_moves_to_rebalance() {
    let mut s = snap(
        vec![pod("p1", "m", 3, &[]), pod("p2", "m", 3, &[])],
        ["a", "b", "c", "d"]
            .iter()
            .map(|n| adapter(n, "m", Some(1)))
            .collect(),
    );
    let first = plan(&s).expect("plan");
    assert_eq!(first, plan(&s).expect("plan"), "deterministic");
    apply(&mut s, &first);
    let again = plan(&s).expect("plan");
    assert!(again.actions.is_empty(), "{:?}", again.actions);
    assert_eq!(again.placement, first.placement);
    // A new empty pod does not pull anything over to it.
    s.pods.push(pod("p0", "m", 3, &[]));
    let out = plan(&s).expect("plan");
    assert!(out.actions.is_empty(), "{:?}", out.actions);
    // Order of the input does not matter.
    let mut shuffled = s.clone();
    shuffled.pods.reverse();
    shuffled.adapters.reverse();
    assert_eq!(plan(&shuffled).expect("plan"), out);
}

#[test]
fn bad_snapshots_are_refused() {
    let mut s = snap(vec![pod("p", "m", 1, &[]), pod("p", "m", 1, &[])], vec![]);
    assert_eq!(plan(&s), Err(PlanError::DuplicatePod("p".into())));
    s.pods.pop();
    s.adapters = vec![adapter("a", "m", None), adapter("a", "m", None)];
    assert_eq!(plan(&s), Err(PlanError::DuplicateAdapter("a".into())));
    s.adapters.pop();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        s.config.hot_rps_per_replica = bad;
        assert!(matches!(plan(&s), Err(PlanError::HotThreshold(_))), "{bad}");
    }
    // Garbage traffic is treated as none, not as hot.
    s.config = Config::default();
    s.adapters[0].replicas = Some(1);
    s.adapters[0].traffic_rps = f64::NAN;
    assert_eq!(plan(&s).expect("plan").status["a"].wanted, 1);
}

#[test]
fn status_serializes_with_the_resource_style_field_names() {
    let s = snap(
        vec![pod("p1", "m", 1, &["x"])],
        vec![adapter("a", "m", Some(1))],
    );
    let out = plan(&s).expect("plan");
    let json = serde_json::to_value(&out.status["a"]).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"wanted": 1, "placed": 0, "hotExtra": 0,
            "shortfall": "capacityExhausted", "residentOn": []})
    );
}
