//! The pure planner: scaling, rolling updates within surge and unavailability, Recreate, pause,
//! availability after `minReadySeconds`, status conditions, and spec validation.

use brix_k8s::fleet::plan::{Observed, Plan, plan, status, template_hash, validate};
use brix_k8s::fleet::{RayClusterFleet, RayClusterFleetStatus};
use jiff::Timestamp;
use serde_json::json;

/// The planner's clock in these tests.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn at(offset_s: i64) -> Timestamp {
    Timestamp::from_second(now().as_second() + offset_s).unwrap()
}

/// The AIBrix sample fleet with `replicas` and a strategy.
pub fn fleet(replicas: i32, strategy: serde_json::Value) -> RayClusterFleet {
    let mut v = super::sample("rayclusterfleet-vllm.yaml");
    v["spec"]["replicas"] = json!(replicas);
    v["spec"]["strategy"] = strategy;
    v["spec"]["minReadySeconds"] = json!(0);
    v["metadata"]["uid"] = json!("fleet-uid");
    v["metadata"]["generation"] = json!(2);
    serde_json::from_value(v).unwrap()
}

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// A RayCluster of `hash`, created `age_s` ago, ready (for an hour) or not.
fn cluster(name: &str, hash: &str, age_s: i64, ready: bool) -> Observed {
    Observed {
        name: name.into(),
        hash: Some(hash.into()),
        created: Some(at(-age_s)),
        ready,
        ready_since: ready.then(|| at(-3600)),
        deleting: false,
    }
}

fn current(f: &RayClusterFleet) -> String {
    template_hash(&f.spec.template)
}

fn run(f: &RayClusterFleet, clusters: &[Observed]) -> Plan {
    plan(f, clusters, now()).unwrap()
}

fn counts(s: &RayClusterFleetStatus) -> [i32; 5] {
    [
        s.replicas,
        s.updated_replicas,
        s.ready_replicas,
        s.available_replicas,
        s.unavailable_replicas,
    ]
}

fn condition<'a>(s: &'a RayClusterFleetStatus, kind: &str) -> (&'a str, &'a str) {
    let c = s.conditions.iter().find(|c| c.kind == kind).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn scale_up_from_zero_creates_the_missing_with_the_current_hash() {
    let f = fleet(3, json!(null));
    let p = run(&f, &[]);
    assert_eq!((p.create, p.delete.len()), (3, 0));
    assert_eq!(p.hash, current(&f));
    assert_eq!(counts(&p.status), [3, 3, 0, 0, 3]);
    assert_eq!(p.status.observed_generation, 2);
    assert_eq!(
        p.status.scaling_target_selector,
        "model.aibrix.ai/name=facebook-opt-13b"
    );
    assert_eq!(
        condition(&p.status, "Available"),
        ("False", "MinimumReplicasUnavailable")
    );
    assert_eq!(
        condition(&p.status, "Progressing"),
        ("True", "RayClustersUpdated")
    );
}

#[test]
fn scale_down_deletes_unready_then_newest() {
    let f = fleet(2, json!(null));
    let h = current(&f);
    let clusters = [
        cluster("a", &h, 400, true),
        cluster("b", &h, 100, true),
        cluster("c", &h, 500, false),
        cluster("d", &h, 300, true),
    ];
    let p = run(&f, &clusters);
    assert_eq!(p.create, 0);
    assert_eq!(p.delete, ["c", "b"]);
    assert_eq!(counts(&p.status), [2, 2, 2, 2, 0]);
    assert_eq!(
        condition(&p.status, "Available"),
        ("True", "MinimumReplicasAvailable")
    );
}

#[test]
fn rolling_update_surges_then_waits_for_availability() {
    let f = fleet(4, rolling(json!(1), json!(1)));
    let h = current(&f);
    let old: Vec<Observed> = (0..4)
        .map(|i| cluster(&format!("old{i}"), "oldhash", 100 * i, true))
        .collect();
    // Step 1: one new (total 5 = 4 + maxSurge), one old goes (3 available = 4 - maxUnavailable).
    let p = run(&f, &old);
    assert_eq!(p.create, 1);
    assert_eq!(p.delete, ["old0"], "the newest old RayCluster goes first");
    // Step 2: the new one is not ready: one more may be created, no old one may go.
    let mut world: Vec<Observed> = old[1..].to_vec();
    world.push(cluster("new0", &h, 1, false));
    let p = run(&f, &world);
    assert_eq!((p.create, p.delete.len()), (1, 0));
    assert_eq!(counts(&p.status), [5, 2, 3, 3, 1]);
    // Step 3: the new ones are available: old ones go, two at a time.
    world.push(cluster("new1", &h, 1, true));
    world[3].ready = true;
    world[3].ready_since = Some(at(-60));
    let p = run(&f, &world);
    assert_eq!(p.create, 0);
    assert_eq!(p.delete, ["old1", "old2"]);
    // Step 4: done.
    world.retain(|c| c.name != "old1" && c.name != "old2");
    world.push(cluster("new2", &h, 1, true));
    world.push(cluster("new3", &h, 1, true));
    world.retain(|c| c.name != "old3");
    let p = run(&f, &world);
    assert_eq!((p.create, p.delete.len()), (0, 0));
    assert_eq!(counts(&p.status), [4, 4, 4, 4, 0]);
    assert_eq!(
        condition(&p.status, "Progressing"),
        ("True", "NewRayClustersAvailable")
    );
}

#[test]
fn max_unavailable_zero_keeps_every_old_cluster_until_a_new_one_is_available() {
    let f = fleet(2, rolling(json!(1), json!(0)));
    let h = current(&f);
    let world = [
        cluster("old0", "x", 10, true),
        cluster("old1", "x", 20, true),
        cluster("new0", &h, 1, false),
    ];
    let p = run(&f, &world);
    assert_eq!(
        (p.create, p.delete.len()),
        (0, 0),
        "at the surge bound, nothing available to lose"
    );
}

#[test]
fn percentages_round_surge_up_and_unavailability_down() {
    let f = fleet(10, rolling(json!("25%"), json!("25%")));
    let old: Vec<Observed> = (0..10)
        .map(|i| cluster(&format!("o{i}"), "x", i, true))
        .collect();
    let p = run(&f, &old);
    // maxSurge = ceil(2.5) = 3, maxUnavailable = floor(2.5) = 2.
    assert_eq!((p.create, p.delete.len()), (3, 2));
}

#[test]
fn unready_old_clusters_go_first_and_do_not_count_as_available() {
    let f = fleet(3, rolling(json!(0), json!(1)));
    let world = [
        cluster("old-ok1", "x", 30, true),
        cluster("old-ok2", "x", 20, true),
        cluster("old-bad", "x", 40, false),
    ];
    let p = run(&f, &world);
    assert_eq!(p.create, 0, "no surge allowed while 3 exist");
    assert_eq!(p.delete, ["old-bad"]);
    assert_eq!(counts(&p.status), [2, 0, 2, 2, 1]);
}

#[test]
fn recreate_deletes_all_old_then_waits_until_they_are_gone() {
    let f = fleet(2, json!({"type": "Recreate"}));
    let h = current(&f);
    let world = [
        cluster("old0", "x", 10, true),
        cluster("old1", "x", 20, true),
    ];
    let p = run(&f, &world);
    assert_eq!(
        (p.create, p.delete.clone()),
        (0, vec!["old0".to_string(), "old1".to_string()])
    );
    let mut terminating = world[0].clone();
    terminating.deleting = true;
    let p = run(&f, &[terminating]);
    assert_eq!(
        (p.create, p.delete.len()),
        (0, 0),
        "a terminating old RayCluster still blocks"
    );
    let p = run(&f, &[]);
    assert_eq!(p.create, 2);
    assert_eq!(p.hash, h);
}

#[test]
fn paused_changes_nothing_but_reports() {
    let mut f = fleet(3, json!(null));
    f.spec.paused = true;
    let world = [cluster("old0", "x", 10, true)];
    let p = run(&f, &world);
    assert_eq!((p.create, p.delete.len()), (0, 0));
    assert_eq!(counts(&p.status), [1, 0, 1, 1, 2]);
    assert_eq!(
        condition(&p.status, "Progressing"),
        ("Unknown", "FleetPaused")
    );
}

#[test]
fn a_cluster_is_available_only_after_min_ready_seconds() {
    let mut f = fleet(1, json!(null));
    f.spec.min_ready_seconds = Some(30);
    let h = current(&f);
    let mut c = cluster("new0", &h, 20, true);
    c.ready_since = Some(at(-10));
    let p = run(&f, std::slice::from_ref(&c));
    assert_eq!(counts(&p.status), [1, 1, 1, 0, 1]);
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(20)));
    c.ready_since = Some(at(-30));
    assert_eq!(counts(&run(&f, &[c]).status), [1, 1, 1, 1, 0]);
}

#[test]
fn terminating_clusters_are_counted_nowhere() {
    let f = fleet(1, json!(null));
    let h = current(&f);
    let mut gone = cluster("going", &h, 50, true);
    gone.deleting = true;
    let p = run(&f, &[gone, cluster("stay", &h, 5, true)]);
    assert_eq!((p.create, p.delete.len()), (0, 0));
    assert_eq!(counts(&p.status), [1, 1, 1, 1, 0]);
}

#[test]
fn an_unchanged_world_gives_an_identical_status() {
    let mut f = fleet(2, json!(null));
    let h = current(&f);
    let world = [cluster("a", &h, 10, true), cluster("b", &h, 20, false)];
    let first = run(&f, &world);
    f.status = Some(first.status.clone());
    let later = plan(&f, &world, at(120)).unwrap();
    assert_eq!(
        later.status, first.status,
        "condition times are kept when nothing changed"
    );
    assert_eq!(status(&f, &world, false, at(120)).unwrap(), first.status);
}

#[test]
fn no_progress_past_the_deadline_turns_progressing_false() {
    let mut f = fleet(2, json!(null));
    f.spec.progress_deadline_seconds = Some(600);
    let h = current(&f);
    let world = [cluster("a", &h, 10, true), cluster("b", &h, 700, false)];
    f.status = Some(run(&f, &world).status);
    let p = plan(&f, &world, at(601)).unwrap();
    assert_eq!(
        condition(&p.status, "Progressing"),
        ("False", "ProgressDeadlineExceeded")
    );
    let p = plan(&f, &world, at(599)).unwrap();
    assert_eq!(
        condition(&p.status, "Progressing"),
        ("True", "RayClustersUpdated")
    );
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(2)));
}

#[test]
fn the_template_hash_follows_the_template() {
    let a = fleet(2, json!(null));
    let mut b = fleet(5, rolling(json!(2), json!(0)));
    assert_eq!(
        current(&a),
        current(&b),
        "replicas and strategy are not part of the template"
    );
    b.spec.template.spec.ray_version = Some("2.52.0".into());
    assert_ne!(current(&a), current(&b));
    assert_eq!(current(&a).len(), 10);
    // Pinned: a change rolls every fleet's RayClusters on upgrade, so it must be deliberate.
    assert_eq!(current(&a), "6cb65lr54p");
}

#[test]
fn invalid_specs_are_refused_with_the_field() {
    let mut f = fleet(2, json!(null));
    f.spec.selector.match_labels =
        Some([("model.aibrix.ai/name".to_string(), "other".to_string())].into());
    assert!(validate(&f).unwrap_err().contains("spec.selector"));
    f.spec.selector.match_labels = None;
    assert!(validate(&f).unwrap_err().contains("must not be empty"));
    let f = fleet(2, rolling(json!("lots"), json!(1)));
    assert!(validate(&f).unwrap_err().contains("maxSurge"));
    let f = fleet(-1, json!(null));
    assert!(plan(&f, &[], now()).unwrap_err().contains("spec.replicas"));
}
