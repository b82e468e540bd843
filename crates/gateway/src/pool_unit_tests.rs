//! Table tests of the pool: discovery changes and adapter candidates.

use super::*;
use crate::discovery::targets;

#[test]
fn apply_keeps_state_of_pods_that_stay() {
    let pool = Pool::new(
        PrefixConfig::default(),
        CoreConfig::default(),
        Instant::now(),
    );
    let c = pool.apply(&targets(&[("m", &["a:1", "b:1"])]));
    assert_eq!((c.added.len(), c.removed.len()), (2, 0));
    assert!(pool.candidates("m").is_empty(), "unprobed pods wait");
    for p in pool.all() {
        p.probe_health(true);
    }
    let a = pool
        .candidates("m")
        .into_iter()
        .find(|p| p.address == "a:1");
    let slot = a.as_ref().map(|p| p.acquire());
    let c = pool.apply(&targets(&[("m", &["a:1", "c:1"])]));
    assert_eq!(c.added.len(), 1);
    assert_eq!(c.removed.len(), 1);
    assert_eq!(c.removed[0].address, "b:1");
    let kept: Vec<_> = pool.candidates("m");
    assert_eq!(kept.len(), 1, "c:1 is not probed yet");
    assert_eq!(kept[0].in_flight(), 1);
    drop(slot);
    assert_eq!(kept[0].in_flight(), 0);

    // A removed pod still answering counts until its last request ends.
    let c_slot = pool
        .all()
        .into_iter()
        .find(|p| p.address == "c:1")
        .map(|p| p.acquire());
    pool.apply(&targets(&[("m", &["a:1"])]));
    assert_eq!(pool.in_flight_at("c:1"), 1);
    drop(c_slot);
    assert_eq!(pool.in_flight_at("c:1"), 0);
}

#[test]
fn adapters_route_to_the_pods_that_list_them() {
    let pool = Pool::new(
        PrefixConfig::default(),
        CoreConfig::default(),
        Instant::now(),
    );
    pool.apply(&targets(&[("base", &["a:1", "b:1"])]));
    for p in pool.all() {
        p.probe_health(true);
        if p.address == "b:1" {
            p.set_adapters(vec!["sql".into()]);
        }
    }
    assert!(pool.knows("sql"));
    assert!(!pool.knows("other"));
    let c = pool.candidates("sql");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].address, "b:1");
    assert_eq!(
        pool.routable(),
        vec![("base".into(), None), ("sql".into(), Some("base".into()))]
    );
}

#[test]
fn adapters_that_exist_are_known_and_draining_pods_are_not_candidates() {
    let pool = Pool::new(
        PrefixConfig::default(),
        CoreConfig::default(),
        Instant::now(),
    );
    pool.apply(&targets(&[
        ("base", &["a:1", "b:1", "c:1"]),
        ("other", &["d:1"]),
    ]));
    for p in pool.all() {
        p.probe_health(true);
        p.set_adapters(vec!["sql".into()]);
    }
    assert!(!pool.knows("chat"));
    pool.set_routes(vec![AdapterRoute {
        name: "chat".into(),
        base_model: "base".into(),
        pending: true,
    }]);
    assert!(pool.knows("chat") && pool.is_adapter("chat") && !pool.is_adapter("base"));
    assert!(pool.candidates("chat").is_empty(), "known, held by nobody");
    let addrs = |model: &str| -> Vec<String> {
        pool.candidates(model)
            .iter()
            .map(|p| p.address.clone())
            .collect()
    };
    // Not declared: every model's pods, in discovery order.
    assert_eq!(addrs("sql"), ["a:1", "b:1", "c:1", "d:1"]);
    pool.set_routes(vec![AdapterRoute {
        name: "sql".into(),
        base_model: "base".into(),
        pending: false,
    }]);
    assert_eq!(
        addrs("sql"),
        ["a:1", "b:1", "c:1"],
        "only its base model's pods"
    );
    assert!(!pool.knows("chat"), "no longer declared, listed by nobody");
    let b = pool.pod("b:1").unwrap_or_else(|| panic!("b"));
    b.set_draining("sql", true);
    assert_eq!(addrs("sql"), ["a:1", "c:1"]);
    let slot = b.acquire_for(Some("sql"));
    assert_eq!(pool.adapter_in_flight_at("b:1", "sql"), 1);
    drop(slot);
    assert_eq!(pool.adapter_in_flight_at("b:1", "sql"), 0);
    b.set_draining("sql", false);
    assert_eq!(addrs("sql"), ["a:1", "b:1", "c:1"]);
    // A probe's list read before the controller's newer word is dropped.
    let read_at = b.adapters_generation();
    b.set_adapters(vec!["sql".into(), "chat".into()]);
    assert!(!b.set_adapters_if(vec!["sql".into()], Some(read_at)));
    assert!(b.has_adapter("chat"));
    let read_at = b.adapters_generation();
    assert!(b.set_adapters_if(vec![], Some(read_at)));
    assert_eq!(addrs("sql"), ["a:1", "c:1"]);
}
