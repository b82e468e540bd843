//! The scale target: any object with a `/scale` subresource. The kinds Brix knows
//! (Deployment, StatefulSet, ReplicaSet, RayClusterFleet) resolve from a table; any other
//! `apiVersion` + `kind` through API discovery (one `GET /apis/<group>/<version>`), which also
//! checks the kind has `/scale`. The scale is then read and written as a raw subresource
//! request on `<plural>/<name>/scale`.

use brix_api::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::oneshot::pinned_kind;
use kube::{Client, core::Status};

use crate::Error;

/// `(apiVersion, kind, plural)` of the targets resolved without discovery.
const KNOWN: [(&str, &str, &str); 4] = [
    ("apps/v1", "Deployment", "deployments"),
    ("apps/v1", "StatefulSet", "statefulsets"),
    ("apps/v1", "ReplicaSet", "replicasets"),
    (
        "orchestration.aibrix.ai/v1alpha1",
        "RayClusterFleet",
        "rayclusterfleets",
    ),
];

/// `scaleTargetRef` with its defaults: kind `Deployment`; the table's apiVersion for a known
/// kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TargetRef {
    /// `group/version`, or `version` for the core group.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name` of the target, in the PodAutoscaler's namespace.
    pub name: String,
}

impl TargetRef {
    /// The reference `r` names; `Err` says what is missing.
    pub(super) fn of(r: &ObjectReference) -> Result<Self, String> {
        let kind = r.kind.clone().unwrap_or_else(|| "Deployment".into());
        let api_version = match r.api_version.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => v.to_string(),
            None => KNOWN
                .iter()
                .find(|(_, k, _)| *k == kind)
                .map(|(v, _, _)| v.to_string())
                .ok_or_else(|| {
                    format!(
                        "spec.scaleTargetRef.apiVersion: required for kind {kind} (Brix knows {} without it)",
                        KNOWN.map(|(_, k, _)| k).join(", ")
                    )
                })?,
        };
        Ok(Self {
            api_version,
            kind,
            name: r.name.clone(),
        })
    }

    /// The API group (`""` for core).
    pub(super) fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or("", |(group, _)| group)
    }

    /// Whether two references name the same object (versions of one group are one object).
    pub(super) fn same_object(&self, other: &Self) -> bool {
        self.group() == other.group() && self.kind == other.kind && self.name == other.name
    }

    /// `Kind/name`, for messages.
    pub(super) fn describe(&self) -> String {
        format!("{} '{}'", self.kind, self.name)
    }
}

/// The API resource of `target`: from the table, else by discovery. `Ok(Err(why))` when the
/// API server has no such kind or the kind has no `/scale`.
pub(super) async fn resolve(
    client: &Client,
    target: &TargetRef,
) -> Result<Result<ApiResource, String>, Error> {
    let (group, version) = match target.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), target.api_version.clone()),
    };
    if let Some((_, _, plural)) = KNOWN
        .iter()
        .find(|(v, k, _)| *v == target.api_version && *k == target.kind)
    {
        return Ok(Ok(ApiResource {
            group,
            version,
            api_version: target.api_version.clone(),
            kind: target.kind.clone(),
            plural: (*plural).to_string(),
        }));
    }
    let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
    match pinned_kind(client, &gvk).await {
        Ok((resource, caps)) => {
            if caps.subresources.iter().any(|(s, _)| s.plural == "scale") {
                Ok(Ok(resource))
            } else {
                Ok(Err(format!(
                    "{} {} has no /scale subresource",
                    target.api_version, target.kind
                )))
            }
        }
        Err(kube::Error::Discovery(_)) => Ok(Err(format!(
            "the API server has no kind {} in {}",
            target.kind, target.api_version
        ))),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Err(format!(
            "the API server does not serve {}",
            target.api_version
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The target's `/scale` API in `namespace`.
pub(super) fn api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Sets the target's `spec.replicas` (a merge patch of the scale subresource).
pub(super) async fn set_replicas(
    api: &Api<DynamicObject>,
    name: &str,
    replicas: u32,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// The API server's status of an error, when it answered one.
pub(super) fn api_status(e: &kube::Error) -> Option<&Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(api_version: Option<&str>, kind: Option<&str>) -> ObjectReference {
        serde_json::from_value(serde_json::json!({
            "apiVersion": api_version, "kind": kind, "name": "llama"
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn references_take_the_known_defaults_and_compare_by_group() {
        let plain = TargetRef::of(&reference(None, None)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (plain.api_version.as_str(), plain.kind.as_str()),
            ("apps/v1", "Deployment")
        );
        let fleet = TargetRef::of(&reference(None, Some("RayClusterFleet")));
        assert_eq!(
            fleet.map(|t| t.api_version),
            Ok("orchestration.aibrix.ai/v1alpha1".to_string())
        );
        let e = TargetRef::of(&reference(None, Some("Widget"))).expect_err("needs apiVersion");
        assert!(e.starts_with("spec.scaleTargetRef.apiVersion"), "{e}");
        let beta =
            TargetRef::of(&reference(Some("apps/v1beta2"), None)).unwrap_or_else(|e| panic!("{e}"));
        assert!(plain.same_object(&beta));
        let sts =
            TargetRef::of(&reference(None, Some("StatefulSet"))).unwrap_or_else(|e| panic!("{e}"));
        assert!(!plain.same_object(&sts));
    }
}
