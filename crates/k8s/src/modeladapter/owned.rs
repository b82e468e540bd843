//! The objects a ModelAdapter owns, as AIBrix makes them: a headless Service named after the
//! adapter (selecting its base model's pods, not-ready addresses published) and an
//! EndpointSlice for that Service listing the pods that hold the adapter, so in-cluster
//! clients can reach `<adapter>.<namespace>.svc` directly. Both carry an owner reference to
//! the ModelAdapter (the garbage collector removes them with it) and are written by
//! server-side apply, only when what they would say changed.

use std::collections::BTreeMap;

use brix_api::{MODEL_NAME_LABEL, ModelAdapterResource};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::pods::PodInfo;

/// The field manager of the controller's server-side applies.
pub const FIELD_MANAGER: &str = "brix-modeladapter";
/// `endpointslice.kubernetes.io/managed-by` on the adapter's EndpointSlice, so Kubernetes'
/// own EndpointSlice controller leaves it alone.
pub const MANAGED_BY: &str = "brix.dev/modeladapter";

/// What the owned objects say: the Service's selector and port, the instances' addresses.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Owned {
    selector: BTreeMap<String, String>,
    port: u16,
    /// (pod name, IP), by pod name.
    endpoints: Vec<(String, String)>,
}

impl Owned {
    /// From the adapter and this round's instances.
    pub(crate) fn of(obj: &ModelAdapterResource, pods: &[PodInfo], instances: &[String]) -> Self {
        let selector = match &obj.spec.pod_selector {
            Some(s) if !s.match_labels.is_empty() => s.match_labels.clone(),
            _ => obj
                .spec
                .base_model
                .iter()
                .map(|b| (MODEL_NAME_LABEL.to_string(), b.clone()))
                .collect(),
        };
        let held: Vec<&PodInfo> = pods
            .iter()
            .filter(|p| instances.contains(&p.name))
            .collect();
        let port = held
            .first()
            .copied()
            .or(pods.first())
            .map_or(super::DEFAULT_PORT, |p| p.port);
        let endpoints = held
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.ip.clone()?)))
            .collect();
        Self {
            selector,
            port,
            endpoints,
        }
    }
}

/// Applies the Service and the EndpointSlice.
pub(crate) async fn apply(
    client: &kube::Client,
    ns: &str,
    obj: &ModelAdapterResource,
    owned: &Owned,
) -> Result<(), crate::Error> {
    let name = obj.name_any();
    let owner = owner(obj);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner],
            "labels": {MODEL_NAME_LABEL: name}},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
            "selector": owned.selector,
            "ports": [{"name": "http", "port": owned.port, "targetPort": owned.port,
                "protocol": "TCP"}]}
    });
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(&name, &pp, &Patch::Apply(&svc))
        .await?;
    let v6 = owned.endpoints.iter().any(|(_, ip)| ip.contains(':'));
    let endpoints: Vec<Value> = owned
        .endpoints
        .iter()
        .filter(|(_, ip)| ip.contains(':') == v6)
        .map(|(pod, ip)| {
            json!({"addresses": [ip], "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}})
        })
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner],
            "labels": {"kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
        "addressType": if v6 { "IPv6" } else { "IPv4" },
        "ports": [{"name": "http", "port": owned.port, "protocol": "TCP"}],
        "endpoints": endpoints
    });
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .patch(&name, &pp, &Patch::Apply(&slice))
        .await?;
    Ok(())
}

/// A controller reference to the adapter, without `blockOwnerDeletion` (that would need
/// update on `modeladapters/finalizers`).
fn owner(obj: &ModelAdapterResource) -> Value {
    json!({
        "apiVersion": ModelAdapterResource::api_version(&()),
        "kind": ModelAdapterResource::kind(&()),
        "name": obj.name_any(),
        "uid": obj.uid().unwrap_or_default(),
        "controller": true,
    })
}
