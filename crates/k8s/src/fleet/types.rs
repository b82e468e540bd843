//! The RayClusterFleet custom resource (`orchestration.aibrix.ai/v1alpha1`), with AIBrix's field
//! names: a Deployment's spec and status over KubeRay `RayCluster`s instead of pods.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::kuberay::RayClusterSpec;

/// `spec` of a RayClusterFleet: how many RayClusters of which template, and how to replace them
/// when the template changes (AIBrix's `RayClusterFleetSpec`, a Deployment's fields).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "orchestration.aibrix.ai",
    version = "v1alpha1",
    kind = "RayClusterFleet",
    plural = "rayclusterfleets",
    namespaced,
    category = "aibrix",
    status = "RayClusterFleetStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.scalingTargetSelector"
    ),
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct RayClusterFleetSpec {
    /// Desired RayClusters (the `/scale` subresource's spec path); unset means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    pub replicas: Option<i32>,
    /// Selects the fleet's RayClusters; must match the template's labels.
    #[schemars(schema_with = "super::schema::label_selector")]
    pub selector: LabelSelector,
    /// The RayClusters to create.
    pub template: RayClusterTemplateSpec,
    /// How a template change replaces the RayClusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<FleetStrategy>,
    /// Seconds a RayCluster must have been `ready` to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Old revisions to keep (AIBrix's field; Brix keeps no old revisions, RayClusters of an
    /// old template are deleted as the rollout proceeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 10))]
    pub revision_history_limit: Option<i32>,
    /// While true the controller creates and deletes nothing; status is still reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Seconds without progress before `Progressing` turns False (`ProgressDeadlineExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 600))]
    pub progress_deadline_seconds: Option<i32>,
}

/// One RayCluster as the fleet creates it: labels and annotations, and KubeRay's spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct RayClusterTemplateSpec {
    /// Labels and annotations copied onto each RayCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::object")]
    pub metadata: Option<ObjectMeta>,
    /// KubeRay's RayCluster spec, as generated from KubeRay's CRD.
    pub spec: RayClusterSpec,
}

/// A Deployment strategy (`appsv1.DeploymentStrategy`'s wire shape).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetStrategy {
    /// `RollingUpdate` (the default) or `Recreate`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StrategyType>,
    /// Surge and unavailability bounds of a rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// How old RayClusters are replaced.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum StrategyType {
    /// New RayClusters come up while old ones go, within `maxSurge` / `maxUnavailable`.
    #[default]
    RollingUpdate,
    /// Every old RayCluster is deleted, and gone, before any new one is created.
    Recreate,
}

/// Bounds of a rolling update, each a count or a percentage of `replicas`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// RayClusters that may exist above `replicas` (percentages round up); default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::int_or_string")]
    pub max_surge: Option<IntOrString>,
    /// RayClusters that may be unavailable below `replicas` (percentages round down); default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::int_or_string")]
    pub max_unavailable: Option<IntOrString>,
}

/// `status` of a RayClusterFleet: a Deployment's status, counted in RayClusters. Every count is
/// written, zeros included, so a merge patch never leaves a stale number behind.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RayClusterFleetStatus {
    /// `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// RayClusters of the fleet not being deleted (the `/scale` subresource's status path).
    #[serde(default)]
    pub replicas: i32,
    /// Of those, the ones with the current template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Of those, the ones whose KubeRay state is `ready`.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Of those, the ones ready for at least `minReadySeconds`.
    #[serde(default)]
    pub available_replicas: i32,
    /// `replicas` wanted minus `availableReplicas`, at least 0.
    #[serde(default)]
    pub unavailable_replicas: i32,
    /// `Available` and `Progressing`, as a Deployment has them.
    #[serde(default)]
    pub conditions: Vec<FleetCondition>,
    /// AIBrix's field; Brix names RayClusters by `generateName`, so it stays unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// The selector as a string (`a=b,c in (d)`): the `/scale` subresource's selector, which a
    /// PodAutoscaler uses to find the fleet's pods.
    #[serde(default)]
    pub scaling_target_selector: String,
}

/// A Deployment-style condition (`DeploymentCondition`'s fields).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetCondition {
    /// `Available` or `Progressing`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// RFC 3339 time the condition was last updated (progress, a new reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    /// RFC 3339 time `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// One CamelCase word.
    #[serde(default)]
    pub reason: String,
    /// Why, in a sentence.
    #[serde(default)]
    pub message: String,
}
