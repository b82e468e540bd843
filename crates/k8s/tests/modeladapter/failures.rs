//! Failure paths: engines refusing loads (retried or not), artifacts the engine cannot load,
//! and an API conflict.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_k8s::modeladapter::{error_policy, reconcile};
use k8s_openapi::jiff::SignedDuration;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::{Call, list, mock};

#[tokio::test]
async fn an_engine_refusing_the_load_fails_the_adapter_after_five_tries_without_the_key() {
    let (addr, loads, auth) = refusing_engine(503).await;
    let pods = vec![pod("p0", addr.port(), T0)];
    let got = Arc::new(Mutex::new(None));
    let listing = || {
        Call::get(PODS)
            .query(SELECTOR)
            .ok(list("PodList", pods.clone()))
    };
    let mut script = Vec::new();
    for attempt in 1..=5u32 {
        if attempt > 1 {
            // One second before the back-off ends: nothing sent, the status unchanged.
            script.push(listing());
        }
        script.push(listing());
        let into = got.clone();
        script.push(
            Call::patch(STATUS)
                .expect_body(move |b| {
                    let s = &b["status"];
                    *into.lock().unwrap() = Some(s.clone());
                    let ready = condition(s, "Ready");
                    let msg = ready["message"].as_str().unwrap_or_default();
                    if b.to_string().contains("sekrit") {
                        return Err("the api key is in the status".into());
                    }
                    let (phase, reason) = if attempt == 5 {
                        ("Failed", "LoadFailed")
                    } else {
                        ("Scheduled", "LoadRetrying")
                    };
                    let ok = s["phase"] == phase
                        && ready["status"] == "False"
                        && ready["reason"] == reason
                        && msg.contains("p0: 503: engine busy: no free LoRA slot")
                        && msg.contains(&format!("attempt {attempt} of 5"));
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("attempt {attempt}: {s}"))
                    }
                })
                .ok(echo()),
        );
    }
    // An hour later: Failed stays Failed (the status unchanged), no load.
    script.push(listing());
    let (client, api) = mock(brix_k8s::modeladapter::RULES, script);
    let (ctx, now) = context(client);
    let mut obj = adapter(
        "huggingface://org/sql-lora",
        json!({"api-key": "sekrit"}),
        Value::Null,
    );
    for (attempt, wait) in [(1u32, 0i64), (2, 5), (3, 10), (4, 20), (5, 40)] {
        if wait > 0 {
            *now.lock().unwrap() += SignedDuration::from_secs(wait - 1);
            reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
            assert_eq!(
                loads.load(Ordering::SeqCst),
                attempt - 1,
                "a load within the back-off"
            );
            *now.lock().unwrap() += SignedDuration::from_secs(1);
        }
        let action = reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(10)));
        assert_eq!(loads.load(Ordering::SeqCst), attempt);
        obj = written(&obj, &got);
    }
    assert_eq!(*auth.lock().unwrap(), "Bearer sekrit");
    *now.lock().unwrap() += SignedDuration::from_secs(3600);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(loads.load(Ordering::SeqCst), 5, "no load after Failed");
}

#[tokio::test]
async fn an_engine_rejecting_the_request_fails_at_once() {
    // 4xx will not pass by retrying: Failed after one try.
    let (addr, loads, _) = refusing_engine(400).await;
    let pods = vec![pod("p0", addr.port(), T0)];
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            Call::patch(STATUS)
                .expect_body(check_status(|s| {
                    let ok =
                        s["phase"] == "Failed" && condition(s, "Ready")["reason"] == "LoadFailed";
                    if ok { Ok(()) } else { Err("not Failed".into()) }
                }))
                .ok(echo()),
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            Call::patch(STATUS).ok(echo()),
        ],
    );
    let (ctx, now) = context(client);
    let obj = adapter("huggingface://org/sql-lora", json!({}), Value::Null);
    reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
    *now.lock().unwrap() += SignedDuration::from_secs(3600);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_object_artifact_without_the_sidecar_fails_with_a_clear_reason() {
    let a = engine().await;
    let pods = vec![pod("p0", a.addr.port(), T0)];
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS).query(SELECTOR).ok(list("PodList", pods)),
            Call::patch(STATUS)
                .expect_body(check_status(|s| {
                    let msg = condition(s, "Ready")["message"]
                        .as_str()
                        .unwrap_or_default();
                    let ok = s["phase"] == "Failed"
                        && msg.contains("s3:// needs the aibrix-runtime sidecar")
                        && !msg.contains("bucket");
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("no clear reason: {msg}"))
                    }
                }))
                .ok(echo()),
        ],
    );
    let (ctx, _) = context(client);
    let obj = adapter("s3://bucket/sql", json!({}), Value::Null);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert!(loaded(a.addr).await.is_empty());
}

#[tokio::test]
async fn a_conflict_on_the_status_patch_is_returned_to_the_error_policy() {
    let a = engine().await;
    let pods = vec![pod("p0", a.addr.port(), T0)];
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS).query(SELECTOR).ok(list("PodList", pods)),
            Call::patch(STATUS).fail(409, "Conflict", "the object has been modified"),
        ],
    );
    let (ctx, _) = context(client);
    let obj = Arc::new(adapter(
        "huggingface://org/sql-lora",
        json!({}),
        Value::Null,
    ));
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    api.done().await;
    assert!(
        matches!(&err, brix_k8s::Error::Kube(kube::Error::Api(e)) if e.code == 409),
        "{err:?}"
    );
    assert_eq!(
        error_policy(obj, &err, ctx),
        Action::requeue(Duration::from_secs(5))
    );
}
