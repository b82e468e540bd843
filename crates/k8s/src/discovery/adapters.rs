//! ModelAdapters for the gateway: each CR declares an adapter (its name is what requests send
//! in `model`), pending (requests for it wait for a holder) until its phase is `Running` or
//! `Failed`; `status.instances` names the pods
//! holding it. The pods' holdings are a hint sent when they change: the gateway's probes read
//! each pod's `/v1/models` and the newest word wins.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use brix_api::ModelAdapterResource;
use brix_gateway::{AdapterRoute, GatewayHandle};
use tokio::sync::watch;

use super::{Follower, PodIndex};

/// Adapter holdings by pod address.
type ByPod = BTreeMap<String, Vec<String>>;

/// The adapters to declare and the adapters each routable pod holds, from the ModelAdapters
/// and the pods now. An adapter whose base model cannot be told (no `baseModel`, no
/// `model.aibrix.ai/name` in its selector, no instance pod known) is left out; of two with one
/// name in different namespaces, the first namespace's wins.
pub(crate) fn plan(
    adapters: &[Arc<ModelAdapterResource>],
    pods: &PodIndex,
) -> (Vec<AdapterRoute>, ByPod) {
    let mut sorted: Vec<&ModelAdapterResource> = adapters.iter().map(AsRef::as_ref).collect();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let mut seen = BTreeSet::new();
    let mut routes = Vec::new();
    let mut by_pod = ByPod::new();
    for a in sorted {
        let (Some(name), ns) = (
            &a.metadata.name,
            a.metadata.namespace.clone().unwrap_or_default(),
        ) else {
            continue;
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        let status = a.status.clone().unwrap_or_default();
        let holders: Vec<&(String, Option<String>)> = status
            .instances
            .iter()
            .filter_map(|pod| pods.get(&(ns.clone(), pod.clone())))
            .collect();
        let base = a
            .spec
            .base_model
            .clone()
            .or_else(|| {
                a.spec
                    .pod_selector
                    .as_ref()?
                    .match_labels
                    .get(brix_api::MODEL_NAME_LABEL)
                    .cloned()
            })
            .or_else(|| holders.first().map(|(model, _)| model.clone()));
        let Some(base_model) = base else { continue };
        for (_, address) in holders {
            if let Some(address) = address {
                by_pod
                    .entry(address.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
        routes.push(AdapterRoute {
            name: name.clone(),
            base_model,
            // Placement in progress: not yet Running, and not given up on (Failed).
            pending: !matches!(status.phase.as_deref(), Some("Running" | "Failed")),
        });
    }
    for list in by_pod.values_mut() {
        list.sort();
        list.dedup();
    }
    (routes, by_pod)
}

/// Follows the ModelAdapters in `scope` until the task is aborted, telling `handle` what
/// changed (after the first complete list; again when pods move).
pub(super) async fn follow(
    client: kube::Client,
    scope: crate::Scope,
    mut pods: watch::Receiver<Arc<PodIndex>>,
    handle: GatewayHandle,
) {
    let api = super::api::<ModelAdapterResource>(client, &scope);
    let mut adapters = Follower::new("modeladapters", api, |a: &mut ModelAdapterResource| {
        a.metadata.managed_fields = None;
    });
    let mut synced = false;
    let mut last_routes: Option<Vec<AdapterRoute>> = None;
    let mut last_pods = ByPod::new();
    loop {
        tokio::select! {
            batch = adapters.next_batch() => match batch {
                Some(s) => synced = s,
                None => break,
            },
            changed = pods.changed() => if changed.is_err() { break },
        }
        if !synced {
            continue;
        }
        let index = pods.borrow_and_update().clone();
        let (routes, by_pod) = plan(&adapters.state(), &index);
        if last_routes.as_ref() != Some(&routes) {
            tracing::info!(
                adapters = routes.len(),
                "kubernetes discovery: adapters changed"
            );
            handle.set_adapters(routes.clone());
            last_routes = Some(routes);
        }
        let addresses: BTreeSet<&String> = last_pods.keys().chain(by_pod.keys()).collect();
        for address in addresses {
            let now = by_pod.get(address);
            if now != last_pods.get(address) {
                handle.set_pod_adapters(address, now.cloned().unwrap_or_default());
            }
        }
        last_pods = by_pod;
    }
    tracing::warn!("kubernetes ModelAdapter watch ended");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn adapter(
        ns: &str,
        name: &str,
        spec: serde_json::Value,
        status: serde_json::Value,
    ) -> Arc<ModelAdapterResource> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "model.aibrix.ai/v1alpha1", "kind": "ModelAdapter",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec, "status": status,
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn instances_map_to_pod_addresses_and_phase_sets_pending() {
        let mut pods = PodIndex::new();
        pods.insert(
            ("ns".into(), "a".into()),
            ("llama".into(), Some("10.0.0.1:8000".into())),
        );
        pods.insert(("ns".into(), "b".into()), ("llama".into(), None));
        let ads = vec![
            adapter(
                "ns",
                "sql",
                json!({"artifactURL": "/x"}),
                json!({"phase": "Running", "instances": ["a", "b", "gone"]}),
            ),
            adapter(
                "ns",
                "chat",
                json!({"artifactURL": "/y", "baseModel": "llama"}),
                json!({"phase": "Pending"}),
            ),
            adapter(
                "ns",
                "broken",
                json!({"artifactURL": "/b", "baseModel": "llama"}),
                json!({"phase": "Failed"}),
            ),
            adapter("ns", "orphan", json!({"artifactURL": "/z"}), json!({})),
            adapter(
                "other",
                "sql",
                json!({"artifactURL": "/x", "baseModel": "m"}),
                json!({"phase": "Running"}),
            ),
        ];
        let (routes, by_pod) = plan(&ads, &pods);
        let r = |n: &str, b: &str, p| AdapterRoute {
            name: n.into(),
            base_model: b.into(),
            pending: p,
        };
        assert_eq!(
            routes,
            vec![
                r("broken", "llama", false),
                r("chat", "llama", true),
                r("sql", "llama", false)
            ]
        );
        assert_eq!(
            by_pod,
            ByPod::from([("10.0.0.1:8000".into(), vec!["sql".into()])])
        );
    }
}
