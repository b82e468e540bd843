//! The PodAutoscaler controller against the mocked API (the exact calls, RBAC checked) and
//! real metric servers on 127.0.0.1 serving Prometheus text: scale up on a pod metric, no
//! change, a failed scrape, a conflict, API errors, a missing target, the StatefulSet,
//! RayClusterFleet and discovered-kind paths, an invalid spec, a deleted PA's state, and `run()`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod pa_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_k8s::podautoscaler::{error_policy, reconcile};
use brix_k8s::rbac::Rule;
use kube::runtime::controller::Action;
use pa_support::*;
use serde_json::{Value, json};
use support::{Call, list, mock, mock_rules};

#[tokio::test]
async fn scales_a_deployment_up_on_a_pod_metric() {
    let metrics = Metrics::start(&running(6.0)).await;
    let obj = deploy_pa();
    let status = Arc::new(Mutex::new(Value::Null));
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
            Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
            Call::get(PODS)
                .query("labelSelector=app=llama")
                .ok(pods(2, metrics.addr.port())),
            Call::patch(DEPLOY_SCALE)
                .expect_body(replicas_are(6))
                .ok(scale("llama", 6, "app=llama")),
            Call::patch(&format!("{PAS}/llama-pa/status"))
                .expect_body(keep(&status))
                .ok(obj.clone()),
        ],
    );
    let ctx = context(client);
    let action = reconcile(root(&obj), ctx.clone()).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    let st = status.lock().unwrap().clone();
    assert_eq!(
        (st["desiredScale"].clone(), st["actualScale"].clone()),
        (json!(6), json!(2))
    );
    assert_eq!(st["observedGeneration"], json!(1));
    let history = st["scalingHistory"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (
            history[0]["previousScale"].clone(),
            history[0]["newScale"].clone()
        ),
        (json!(2), json!(6))
    );
    assert_eq!(history[0]["success"], json!(true));
    assert!(
        history[0]["reason"].as_str().unwrap().starts_with("2 -> 6"),
        "{}",
        history[0]
    );
    assert_eq!(st["lastScaleTime"], json!("2026-05-28T20:26:40Z"));
    for kind in ["ValidSpec", "AbleToScale", "ScalingActive", "Ready"] {
        assert_eq!(condition(&st, kind).0, "True", "{kind}: {st}");
    }
    assert_eq!(condition(&st, "MultiPodAutoscalerConflict").0, "False");
    assert_eq!(st["scheduledBounds"], Value::Null);
}

#[tokio::test]
async fn no_change_patches_no_scale_and_an_unchanged_status_is_not_written() {
    let metrics = Metrics::start(&running(2.0)).await;
    let mut obj = deploy_pa();
    obj["spec"]["schedules"] =
        json!([{"name": "allday", "startTime": "00:00", "endTime": "23:59", "maxReplicas": 8}]);
    let status = Arc::new(Mutex::new(Value::Null));
    let port = metrics.addr.port();
    let decision = |obj: &Value| {
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
            Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
            Call::get(PODS)
                .query("labelSelector=app=llama")
                .ok(pods(2, port)),
        ]
    };
    let mut script = decision(&obj);
    script.push(
        Call::patch(&format!("{PAS}/llama-pa/status"))
            .expect_body(keep(&status))
            .ok(obj.clone()),
    );
    // The second decision sees the status the first wrote: it writes nothing.
    let mut obj2 = obj.clone();
    script.extend(decision(&obj2));
    let (client, api) = mock(brix_k8s::podautoscaler::RULES, script);
    let ctx = context(client);
    reconcile(root(&obj), ctx.clone()).await.unwrap();
    let st = status.lock().unwrap().clone();
    assert_eq!(
        (st["desiredScale"].clone(), st["actualScale"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(st["scalingHistory"], Value::Null);
    assert_eq!(
        st["scheduledBounds"],
        json!({"activeSchedule": "allday", "effectiveMinReplicas": 1, "effectiveMaxReplicas": 8})
    );
    assert_eq!(condition(&st, "AbleToScale").1, "SucceededGetScale");
    obj2["status"] = without_nulls(&st);

    // Before the next decision: no call at all, a requeue for the rest of the period.
    let calls = api.seen().len();
    ctx.clock().advance(5.0);
    let action = reconcile(root(&obj2), ctx.clone()).await.unwrap();
    assert_eq!(api.seen().len(), calls, "{:?}", api.seen());
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));

    ctx.clock().advance(10.0);
    let action = reconcile(root(&obj2), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    api.done().await;
}

#[tokio::test]
async fn a_failed_scrape_holds_the_count_and_says_why() {
    let metrics = Metrics::start(&running(8.0)).await;
    metrics.set(500, "engine is restarting");
    let mut obj = deploy_pa();
    // A second source on an external endpoint with nothing listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    obj["spec"]["metricsSources"]
        .as_array_mut()
        .unwrap()
        .push(json!({
        "metricSourceType": "external", "endpoint": dead.to_string(), "path": "/metrics",
        "targetMetric": "queue", "targetValue": "4"}));
    let status = Arc::new(Mutex::new(Value::Null));
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
            Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
            Call::get(PODS)
                .query("labelSelector=app=llama")
                .ok(pods(2, metrics.addr.port())),
            // No PATCH of the scale: the count holds.
            Call::patch(&format!("{PAS}/llama-pa/status"))
                .expect_body(keep(&status))
                .ok(obj.clone()),
        ],
    );
    let ctx = context(client);
    reconcile(root(&obj), ctx).await.unwrap();
    api.done().await;
    let st = status.lock().unwrap().clone();
    assert_eq!(st["desiredScale"], json!(2));
    let (active, reason, message) = condition(&st, "ScalingActive");
    assert_eq!(
        (active.as_str(), reason.as_str()),
        ("False", "FailedGetMetrics")
    );
    assert!(
        message.contains("2 of 2 ready pods gave no value"),
        "{message}"
    );
    assert!(
        message.contains(&format!("queue: http://{dead}/metrics")),
        "{message}"
    );
    assert_eq!(condition(&st, "Ready").0, "False");
    assert_eq!(condition(&st, "AbleToScale").0, "True");
}

#[tokio::test]
async fn of_two_autoscalers_on_one_target_the_older_scales() {
    let metrics = Metrics::start(&running(6.0)).await;
    let older = deploy_pa();
    // The same object, its apiVersion left to the default.
    let mut newer = pa(
        "llama-pa-2",
        "uid-b",
        "2026-02-01T00:00:00Z",
        ["apps/v1", "Deployment", "llama"],
    );
    newer["spec"]["scaleTargetRef"] = json!({"name": "llama"});
    // The oldest of all is invalid: it scales nothing, and blocks nothing.
    let mut invalid = pa(
        "llama-pa-0",
        "uid-0",
        "2025-01-01T00:00:00Z",
        ["apps/v1", "Deployment", "llama"],
    );
    invalid["spec"]["maxReplicas"] = json!(0);
    let both = list(
        "PodAutoscalerList",
        vec![newer.clone(), invalid, older.clone()],
    );
    let status = Arc::new(Mutex::new(Value::Null));
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::get(PAS).ok(both.clone()),
            Call::patch(&format!("{PAS}/llama-pa-2/status"))
                .expect_body(keep(&status))
                .ok(newer.clone()),
            Call::get(PAS).ok(both),
            Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
            Call::get(PODS)
                .query("labelSelector=app=llama")
                .ok(pods(2, metrics.addr.port())),
            Call::patch(DEPLOY_SCALE)
                .expect_body(replicas_are(6))
                .ok(scale("llama", 6, "app=llama")),
            Call::patch(&format!("{PAS}/llama-pa/status")).ok(older.clone()),
        ],
    );
    let ctx = context(client);
    let action = reconcile(root(&newer), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    let st = status.lock().unwrap().clone();
    let (conflict, reason, message) = condition(&st, "MultiPodAutoscalerConflict");
    assert_eq!(
        (conflict.as_str(), reason.as_str()),
        ("True", "MultiplePodAutoscalers")
    );
    assert!(message.contains("'llama-pa'"), "{message}");
    assert_eq!(condition(&st, "Ready").0, "False");
    reconcile(root(&older), ctx).await.unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_refused_scale_is_recorded_and_retried_with_backoff() {
    for (code, reason) in [(409, "Conflict"), (500, "InternalError")] {
        let metrics = Metrics::start(&running(6.0)).await;
        let obj = deploy_pa();
        let status = Arc::new(Mutex::new(Value::Null));
        let (client, api) = mock(
            brix_k8s::podautoscaler::RULES,
            vec![
                Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
                Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
                Call::get(PODS)
                    .query("labelSelector=app=llama")
                    .ok(pods(2, metrics.addr.port())),
                Call::patch(DEPLOY_SCALE).expect_body(replicas_are(6)).fail(
                    code,
                    reason,
                    "the object has been modified",
                ),
                Call::patch(&format!("{PAS}/llama-pa/status"))
                    .expect_body(keep(&status))
                    .ok(obj.clone()),
            ],
        );
        let ctx = context(client);
        let err = reconcile(root(&obj), ctx.clone())
            .await
            .expect_err("a refused scale fails the reconcile");
        api.done().await;
        assert!(
            err.to_string().contains("the object has been modified"),
            "{err}"
        );
        let st = status.lock().unwrap().clone();
        let h = &st["scalingHistory"][0];
        assert_eq!(
            (h["newScale"].clone(), h["success"].clone()),
            (json!(6), json!(false)),
            "{st}"
        );
        assert!(
            h["error"]
                .as_str()
                .unwrap()
                .contains("the object has been modified"),
            "{h}"
        );
        assert_eq!(st["lastScaleTime"], Value::Null);
        let (able, why, _) = condition(&st, "AbleToScale");
        assert_eq!(
            (able.as_str(), why.as_str()),
            ("False", "FailedUpdateScale")
        );
        let waits: Vec<Action> = (0..3)
            .map(|_| error_policy(root(&obj), &err, ctx.clone()))
            .collect();
        assert_eq!(
            waits,
            [5, 10, 20]
                .map(|s| Action::requeue(Duration::from_secs(s)))
                .to_vec()
        );
    }
}

#[tokio::test]
async fn a_missing_target_is_not_able_to_scale() {
    let obj = deploy_pa();
    let status = Arc::new(Mutex::new(Value::Null));
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
            Call::get(DEPLOY_SCALE).fail(404, "NotFound", "deployments.apps \"llama\" not found"),
            Call::patch(&format!("{PAS}/llama-pa/status"))
                .expect_body(keep(&status))
                .ok(obj.clone()),
        ],
    );
    let ctx = context(client);
    let action = reconcile(root(&obj), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    // Within the period: no call.
    ctx.clock().advance(1.0);
    reconcile(root(&obj), ctx).await.unwrap();
    api.done().await;
    let st = status.lock().unwrap().clone();
    let (able, reason, message) = condition(&st, "AbleToScale");
    assert_eq!(
        (able.as_str(), reason.as_str()),
        ("False", "FailedGetScale")
    );
    assert!(
        message.contains("Deployment 'llama' not found"),
        "{message}"
    );
}

/// One decision against a target at `scale_path` (scaled from 2 to 6).
async fn scales_at(
    obj: Value,
    rules: Vec<Rule>,
    mut calls: Vec<Call>,
    scale_path: &str,
    name: &str,
) {
    let metrics = Metrics::start(&running(6.0)).await;
    calls.insert(
        0,
        Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
    );
    calls.extend([
        Call::get(scale_path).ok(scale(name, 2, "app=llama")),
        Call::get(PODS)
            .query("labelSelector=app=llama")
            .ok(pods(2, metrics.addr.port())),
        Call::patch(scale_path)
            .expect_body(replicas_are(6))
            .ok(scale(name, 6, "app=llama")),
        Call::patch(&format!("{PAS}/llama-pa/status")).ok(obj.clone()),
    ]);
    let (client, api) = mock_rules(rules, calls);
    reconcile(root(&obj), context(client)).await.unwrap();
    api.done().await;
}

#[tokio::test]
async fn scales_a_statefulset_and_a_rayclusterfleet() {
    let rules = brix_k8s::podautoscaler::RULES.to_vec();
    let sts = pa(
        "llama-pa",
        "uid-a",
        "2026-01-01T00:00:00Z",
        ["apps/v1", "StatefulSet", "llama"],
    );
    scales_at(
        sts,
        rules.clone(),
        vec![],
        "/apis/apps/v1/namespaces/default/statefulsets/llama/scale",
        "llama",
    )
    .await;
    let mut fleet = pa(
        "llama-pa",
        "uid-a",
        "2026-01-01T00:00:00Z",
        ["", "RayClusterFleet", "fleet"],
    );
    fleet["spec"]["scaleTargetRef"]
        .as_object_mut()
        .unwrap()
        .remove("apiVersion");
    scales_at(
        fleet,
        rules,
        vec![],
        "/apis/orchestration.aibrix.ai/v1alpha1/namespaces/default/rayclusterfleets/fleet/scale",
        "fleet",
    )
    .await;
}

#[tokio::test]
async fn scales_any_kind_with_a_scale_subresource_through_discovery() {
    let obj = pa(
        "llama-pa",
        "uid-a",
        "2026-01-01T00:00:00Z",
        ["example.com/v1", "Widget", "w"],
    );
    let resources = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "example.com/v1",
        "resources": [
            {"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget",
             "verbs": ["get", "list", "patch"]},
            {"name": "widgets/scale", "singularName": "", "namespaced": true, "kind": "Scale",
             "group": "autoscaling", "version": "v1", "verbs": ["get", "patch"]}]});
    let mut rules = brix_k8s::podautoscaler::RULES.to_vec();
    rules.push(Rule {
        group: "example.com",
        resources: &["widgets/scale"],
        verbs: &["get", "patch"],
    });
    let discovery = vec![Call::get("/apis/example.com/v1").ok(resources)];
    scales_at(
        obj,
        rules,
        discovery,
        "/apis/example.com/v1/namespaces/default/widgets/w/scale",
        "w",
    )
    .await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_scales() {
    let mut obj = deploy_pa();
    obj["spec"]["maxReplicas"] = json!(0);
    let status = Arc::new(Mutex::new(Value::Null));
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::patch(&format!("{PAS}/llama-pa/status"))
                .expect_body(keep(&status))
                .ok(obj.clone()),
        ],
    );
    let ctx = context(client);
    let action = reconcile(root(&obj), ctx.clone()).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::await_change());
    assert!(ctx.tracked().is_empty());
    let st = status.lock().unwrap().clone();
    let (valid, reason, message) = condition(&st, "ValidSpec");
    assert_eq!((valid.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.starts_with("spec.maxReplicas:"), "{message}");
}

#[tokio::test]
async fn a_deleted_autoscaler_forgets_its_state_and_a_new_generation_starts_afresh() {
    let metrics = Metrics::start(&running(2.0)).await;
    let obj = deploy_pa();
    let port = metrics.addr.port();
    let decision = |obj: &Value| {
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
            Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
            Call::get(PODS)
                .query("labelSelector=app=llama")
                .ok(pods(2, port)),
            Call::patch(&format!("{PAS}/llama-pa/status")).ok(obj.clone()),
        ]
    };
    let mut changed = obj.clone();
    changed["metadata"]["generation"] = json!(2);
    let mut script = decision(&obj);
    script.extend(decision(&changed));
    script.extend(decision(&obj));
    let (client, api) = mock(brix_k8s::podautoscaler::RULES, script);
    let ctx = context(client);
    reconcile(root(&obj), ctx.clone()).await.unwrap();
    assert_eq!(ctx.tracked(), ["uid-a"]);
    // Same time, same generation: the decision is not due, no call.
    let calls = api.seen().len();
    reconcile(root(&obj), ctx.clone()).await.unwrap();
    assert_eq!(api.seen().len(), calls);
    // A new generation: a fresh autoscaler decides at once.
    reconcile(root(&changed), ctx.clone()).await.unwrap();
    assert_eq!(api.seen().len(), calls + 4);
    // Deleted (gone from the controller's store): its state goes; back, it starts afresh.
    ctx.prune(&[]);
    assert!(ctx.tracked().is_empty());
    reconcile(root(&obj), ctx.clone()).await.unwrap();
    assert_eq!(ctx.tracked(), ["uid-a"]);
    ctx.prune(&[root(&obj)]);
    assert_eq!(ctx.tracked(), ["uid-a"]);
    api.done().await;
}

#[tokio::test]
async fn an_external_source_scales_as_brix_up_s_policy_decides() {
    let metrics =
        Metrics::start("# TYPE queue gauge\nqueue{shard=\"a\"} 7\nqueue{shard=\"b\"} 5\n").await;
    let mut obj = deploy_pa();
    obj["spec"]["scalingStrategy"] = json!("APA");
    obj["spec"]["metricsSources"] = json!([{"metricSourceType": "external",
        "endpoint": metrics.addr.to_string(), "path": "/metrics",
        "targetMetric": "queue", "targetValue": "2"}]);
    // What the policy crate decides for the same document and reading.
    let cr = root(&obj);
    let doc = brix_api::PodAutoscaler {
        api_version: "autoscaling.aibrix.ai/v1alpha1".into(),
        metadata: brix_api::ObjectMeta {
            name: "llama-pa".into(),
            ..Default::default()
        },
        spec: cr.spec.clone(),
    };
    let policy = brix_autoscaler::Policy::from_document(&doc, None).unwrap();
    let mut scaler = brix_autoscaler::Autoscaler::new(policy);
    scaler.observe(0, brix_autoscaler::Reading::Total(12.0), 0.0);
    let fleet = brix_autoscaler::FleetState {
        desired: 2,
        ready: 2,
        starting: 0,
        held: 0,
    };
    let want = scaler.decide(&fleet, 0.0).desired;
    assert!(want > 2, "the load asks for more than 2 replicas: {want}");
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
            Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
            Call::get(PODS)
                .query("labelSelector=app=llama")
                .ok(pods(2, 1)),
            Call::patch(DEPLOY_SCALE)
                .expect_body(replicas_are(want))
                .ok(scale("llama", want as i32, "app=llama")),
            Call::patch(&format!("{PAS}/llama-pa/status")).ok(obj.clone()),
        ],
    );
    let action = reconcile(cr, context(client)).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
}

#[tokio::test]
async fn a_status_that_could_not_be_written_is_written_at_the_next_reconcile() {
    let metrics = Metrics::start(&running(6.0)).await;
    let obj = deploy_pa();
    let status = Arc::new(Mutex::new(Value::Null));
    let status_path = format!("{PAS}/llama-pa/status");
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![obj.clone()])),
            Call::get(DEPLOY_SCALE).ok(scale("llama", 2, "app=llama")),
            Call::get(PODS)
                .query("labelSelector=app=llama")
                .ok(pods(2, metrics.addr.port())),
            Call::patch(DEPLOY_SCALE)
                .expect_body(replicas_are(6))
                .ok(scale("llama", 6, "app=llama")),
            Call::patch(&status_path).fail(503, "ServiceUnavailable", "etcd is busy"),
            // The retry (before the next decision) writes the same status, the scale in it.
            Call::patch(&status_path)
                .expect_body(keep(&status))
                .ok(obj.clone()),
        ],
    );
    let ctx = context(client);
    let err = reconcile(root(&obj), ctx.clone())
        .await
        .expect_err("the status write failed");
    assert!(err.to_string().contains("etcd is busy"), "{err}");
    ctx.clock().advance(5.0);
    let action = reconcile(root(&obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    let st = status.lock().unwrap().clone();
    assert_eq!(st["scalingHistory"][0]["newScale"], json!(6), "{st}");
    assert_eq!(st["lastScaleTime"], json!("2026-05-28T20:26:40Z"));
}

#[tokio::test]
async fn the_controller_reconciles_what_its_watch_sees() {
    let mut obj = deploy_pa();
    obj["spec"]["maxReplicas"] = json!(0);
    let status = Arc::new(Mutex::new(Value::Null));
    let (client, api) = mock(
        brix_k8s::podautoscaler::RULES,
        vec![
            Call::get(PAS).ok(list("PodAutoscalerList", vec![])),
            Call::get(PAS)
                .query("watch=true")
                .events(vec![json!({"type": "ADDED", "object": obj})]),
            Call::patch(&format!("{PAS}/llama-pa/status"))
                .expect_body(keep(&status))
                .ok(obj.clone()),
        ],
    );
    let scope = brix_k8s::Scope {
        namespace: Some("default".into()),
    };
    let controller = tokio::spawn(brix_k8s::podautoscaler::run(
        client,
        scope,
        Default::default(),
    ));
    api.done().await;
    controller.abort();
    let st = status.lock().unwrap().clone();
    assert_eq!(condition(&st, "ValidSpec").0, "False", "{st}");
}
