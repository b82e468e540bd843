//! The mocked API itself: a followed script passes; an unexpected, a missing or a refused call
//! fails.

#![allow(clippy::unwrap_used)]

mod support;

use brix_k8s::rbac::Rule;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;
use support::{Call, mock};

/// Rules for these tests alone: get, list and watch on pods.
const RULES: &[Rule] = &[Rule {
    group: "",
    resources: &["pods"],
    verbs: &["get", "list", "watch"],
}];

fn pod(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}})
}

#[tokio::test]
async fn a_followed_script_passes() {
    let (client, api) = mock(
        RULES,
        vec![Call::get("/api/v1/namespaces/default/pods/a").ok(pod("a"))],
    );
    let got = Api::<Pod>::default_namespaced(client)
        .get("a")
        .await
        .unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("a"));
    api.done().await;
}

#[tokio::test]
#[should_panic(expected = "unexpected call GET /api/v1/namespaces/default/pods/b")]
async fn an_unexpected_call_fails() {
    let (client, api) = mock(
        RULES,
        vec![Call::get("/api/v1/namespaces/default/pods/a").ok(pod("a"))],
    );
    let _ = Api::<Pod>::default_namespaced(client).get("b").await;
    api.done().await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "missing call GET /api/v1/namespaces/default/pods/a")]
async fn a_missing_call_fails() {
    let (_client, api) = mock(
        RULES,
        vec![Call::get("/api/v1/namespaces/default/pods/a").ok(pod("a"))],
    );
    api.done().await;
}

#[tokio::test]
#[should_panic(expected = "RBAC rules do not allow delete on /pods")]
async fn a_call_outside_the_rules_fails() {
    let (client, api) = mock(
        RULES,
        vec![Call::delete("/api/v1/namespaces/default/pods/a").ok(pod("a"))],
    );
    let _ = Api::<Pod>::default_namespaced(client)
        .delete("a", &Default::default())
        .await;
    api.done().await;
}
