//! Which pods are targets, and the task that publishes them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use brix_gateway::{Target, Targets};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use super::{Follower, PodIndex};

/// Label naming the pod's serving port.
pub const PORT_LABEL: &str = "model.aibrix.ai/port";
/// Serving port when [`PORT_LABEL`] is absent.
pub const DEFAULT_PORT: u16 = 8000;
const RAY_NODE_TYPE: &str = "ray.io/node-type";
const POD_GROUP_INDEX: &str = "stormservice.orchestration.aibrix.ai/pod-group-index";

/// The model a pod serves, if discovery tracks it: label or annotation
/// `model.aibrix.ai/name`, and not a non-leader worker (Ray worker, StormService pod group
/// index > 0), which AIBrix never routes to.
pub fn model_of(pod: &Pod) -> Option<String> {
    let meta = &pod.metadata;
    let labels = meta.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let name = label(brix_api::MODEL_NAME_LABEL)
        .or_else(|| {
            meta.annotations
                .as_ref()?
                .get(brix_api::MODEL_NAME_LABEL)
                .map(String::as_str)
        })
        .filter(|n| !n.is_empty())?;
    if label(RAY_NODE_TYPE) == Some("worker") {
        return None;
    }
    if label(POD_GROUP_INDEX).is_some_and(|i| i.parse::<u64>().map_or(true, |i| i > 0)) {
        return None;
    }
    Some(name.to_string())
}

/// The pod as a gateway target, when it can take requests now: tracked ([`model_of`]), Ready,
/// not terminating, with a `podIP` and a valid port label. Returns the model with it.
pub fn target_of(pod: &Pod) -> Option<(String, Target)> {
    let model = model_of(pod)?;
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    if !ready {
        return None;
    }
    let port = port_of(pod)?;
    let name = pod.metadata.name.clone()?;
    let address = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    Some((
        model,
        Target {
            name,
            address,
            kv_events: None,
            metrics: None,
        },
    ))
}

/// The port label's value, [`DEFAULT_PORT`] without it; None (the pod is skipped) when it is
/// not a port number.
fn port_of(pod: &Pod) -> Option<u16> {
    match pod.metadata.labels.as_ref().and_then(|l| l.get(PORT_LABEL)) {
        None => Some(DEFAULT_PORT),
        Some(v) => v.parse::<u16>().ok().filter(|p| *p > 0),
    }
}

/// Targets and the pod index from the pods now.
/// `bad_ports` collects the tracked pods skipped for a port label that is not a port.
fn collect(pods: &[Arc<Pod>], bad_ports: &mut BTreeSet<(String, String)>) -> (Targets, PodIndex) {
    let mut targets: Targets = BTreeMap::new();
    let mut index = PodIndex::new();
    for pod in pods {
        let Some(model) = model_of(pod) else { continue };
        if port_of(pod).is_none() {
            bad_ports.insert(key(pod));
        }
        let target = target_of(pod).map(|(_, t)| t);
        let list = targets.entry(model.clone()).or_default();
        if let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) {
            index.insert(
                (ns.clone(), name.clone()),
                (model, target.as_ref().map(|t| t.address.clone())),
            );
        }
        list.extend(target);
    }
    for list in targets.values_mut() {
        list.sort();
    }
    (targets, index)
}

fn key(pod: &Pod) -> (String, String) {
    let m = &pod.metadata;
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// Follows the pods in `scope` until the task is aborted, publishing on each change.
pub(super) async fn follow(
    client: kube::Client,
    scope: crate::Scope,
    targets: watch::Sender<Arc<Targets>>,
    index: watch::Sender<Arc<PodIndex>>,
) {
    let api = super::api::<Pod>(client, &scope);
    let mut pods = Follower::new("pods", api, |p: &mut Pod| {
        // Discovery reads metadata and status only.
        p.metadata.managed_fields = None;
        p.spec = None;
    });
    // Pods already warned about (a bad port label), so each is logged once while it stays.
    let mut warned = BTreeSet::new();
    while let Some(synced) = pods.next_batch().await {
        if !synced {
            continue;
        }
        let mut bad = BTreeSet::new();
        let (next, next_index) = collect(&pods.state(), &mut bad);
        for (ns, name) in bad.difference(&warned) {
            tracing::warn!(namespace = %ns, pod = %name, "pod skipped: label {PORT_LABEL} is not a port number");
        }
        warned = bad;
        targets.send_if_modified(|cur| {
            if **cur == next {
                return false;
            }
            tracing::info!(
                models = next.len(),
                pods = next.values().map(Vec::len).sum::<usize>(),
                "kubernetes discovery: targets changed"
            );
            *cur = Arc::new(next);
            true
        });
        index.send_if_modified(|cur| {
            if **cur == next_index {
                return false;
            }
            *cur = Arc::new(next_index);
            true
        });
    }
    tracing::warn!("kubernetes pod watch ended");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ready(labels: serde_json::Value) -> Pod {
        pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": labels},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
    }

    #[test]
    fn a_labelled_ready_pod_is_a_target_on_its_port() {
        let (model, t) = target_of(&ready(json!({"model.aibrix.ai/name": "llama"}))).unwrap();
        assert_eq!(
            (model.as_str(), t.address.as_str(), t.name.as_str()),
            ("llama", "10.0.0.1:8000", "p")
        );
        let (_, t) = target_of(&ready(
            json!({"model.aibrix.ai/name": "llama", "model.aibrix.ai/port": "9000"}),
        ))
        .unwrap();
        assert_eq!(t.address, "10.0.0.1:9000");
    }

    #[test]
    fn the_annotation_names_the_model_too() {
        let p = pod(json!({
            "metadata": {"name": "p", "annotations": {"model.aibrix.ai/name": "org/model"}},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        assert_eq!(target_of(&p).unwrap().0, "org/model");
    }

    #[test]
    fn workers_bad_ports_and_unlabelled_pods_are_skipped() {
        let m = |extra: serde_json::Value| {
            let mut l = json!({"model.aibrix.ai/name": "llama"});
            l.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            ready(l)
        };
        assert!(model_of(&m(json!({"ray.io/node-type": "worker"}))).is_none());
        assert!(model_of(&m(json!({"ray.io/node-type": "head"}))).is_some());
        assert!(model_of(&m(json!({POD_GROUP_INDEX: "1"}))).is_none());
        assert!(model_of(&m(json!({POD_GROUP_INDEX: "0"}))).is_some());
        assert!(target_of(&m(json!({PORT_LABEL: "http"}))).is_none());
        let mut bad = BTreeSet::new();
        let (targets, _) = collect(&[Arc::new(m(json!({PORT_LABEL: "http"})))], &mut bad);
        assert_eq!(targets.get("llama"), Some(&vec![]), "the model stays known");
        assert_eq!(bad, BTreeSet::from([("ns".to_string(), "p".to_string())]));
        assert!(target_of(&m(json!({PORT_LABEL: "0"}))).is_none());
        assert!(model_of(&ready(json!({"app": "x"}))).is_none());
    }

    #[test]
    fn not_ready_terminating_or_ipless_pods_are_known_but_not_targets() {
        let base = json!({"model.aibrix.ai/name": "llama"});
        let mut p = ready(base.clone());
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(target_of(&p).is_none());
        let mut p = ready(base.clone());
        p.status.as_mut().unwrap().pod_ip = None;
        assert!(target_of(&p).is_none());
        let mut p = ready(base);
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        assert!(target_of(&p).is_none());
        let (targets, index) = collect(&[Arc::new(p)], &mut BTreeSet::new());
        assert_eq!(targets.get("llama"), Some(&vec![]));
        assert_eq!(
            index.get(&("ns".into(), "p".into())),
            Some(&("llama".into(), None))
        );
    }
}
