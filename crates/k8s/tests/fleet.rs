//! RayClusterFleet: KubeRay's generated types against a realistic RayCluster, the CRD's
//! subresources, the pure planner (fleet/plan.rs) and the reconciler against the mocked API
//! (fleet/reconcile.rs).
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

#[path = "fleet/plan.rs"]
mod plan;
#[path = "fleet/reconcile.rs"]
mod reconcile;

use brix_k8s::fleet::{RayCluster, RayClusterFleet, crd};
use serde_json::{Value, json};

/// A YAML file of tests/fleet as JSON.
pub fn sample(name: &str) -> Value {
    let path = format!("{}/tests/fleet/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first path where `a` and `b` differ, if any.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &format!("{at}.{k}")),
                    (u, v) => Some(format!("{at}.{k}: {u:?} vs {v:?}")),
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

#[test]
fn a_vllm_raycluster_round_trips_through_the_generated_types() {
    let original = sample("raycluster-vllm.yaml");
    let typed: RayCluster = serde_json::from_value(original.clone()).unwrap();
    // The parts the controller reads are where KubeRay puts them.
    let status = typed.status.as_ref().unwrap();
    assert_eq!(status.state.as_deref(), Some("ready"));
    assert_eq!(
        typed.spec.worker_group_specs.as_ref().unwrap()[0].replicas,
        Some(2)
    );
    let head = &typed.spec.head_group_spec.template;
    assert_eq!(
        head.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("vllm/vllm-openai:v0.11.0")
    );
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(first_difference(&original, &back, ""), None);
}

#[test]
fn the_aibrix_fleet_sample_round_trips() {
    let original = sample("rayclusterfleet-vllm.yaml");
    let typed: RayClusterFleet = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(typed.spec.replicas, Some(2));
    assert_eq!(typed.spec.min_ready_seconds, Some(30));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(first_difference(&original, &back, ""), None);
}

#[test]
fn the_crd_has_aibrix_names_and_the_scale_subresource() {
    let crd = serde_json::to_value(crd()).unwrap();
    assert_eq!(
        crd["metadata"]["name"],
        json!("rayclusterfleets.orchestration.aibrix.ai")
    );
    assert_eq!(crd["spec"]["scope"], json!("Namespaced"));
    assert_eq!(crd["spec"]["names"]["kind"], json!("RayClusterFleet"));
    assert_eq!(crd["spec"]["names"]["categories"], json!(["aibrix"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], json!("v1alpha1"));
    assert_eq!(version["subresources"]["status"], json!({}));
    assert_eq!(
        version["subresources"]["scale"],
        json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
               "labelSelectorPath": ".status.scalingTargetSelector"})
    );
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], json!(["selector", "template"]));
    // KubeRay's own structure is typed; the pod templates inside are kept as written.
    let ray = &spec["properties"]["template"]["properties"]["spec"];
    assert_eq!(ray["required"], json!(["headGroupSpec"]));
    let head = &ray["properties"]["headGroupSpec"]["properties"];
    assert_eq!(
        head["template"]["x-kubernetes-preserve-unknown-fields"],
        json!(true)
    );
    assert_eq!(
        head["rayStartParams"]["additionalProperties"]["type"],
        json!("string")
    );
    let strategy = &spec["properties"]["strategy"]["properties"];
    assert_eq!(
        strategy["type"]["enum"],
        json!(["RollingUpdate", "Recreate"])
    );
    assert_eq!(
        strategy["rollingUpdate"]["properties"]["maxSurge"]["x-kubernetes-int-or-string"],
        json!(true)
    );
    assert_eq!(spec["properties"]["replicas"]["default"], json!(1));
}
