//! The `status` of the custom resources, in AIBrix's shape: what the Kubernetes controllers
//! write and `kubectl get -o yaml` shows. (The local platform's richer views for `brix status`
//! live in `brix-platform`.)

use serde::{Deserialize, Serialize};

/// A Kubernetes condition (`metav1.Condition`'s fields).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Scheduled`, `ScalingActive`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// One CamelCase word.
    #[serde(default)]
    pub reason: String,
    /// Why, in a sentence (never a secret).
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
    /// `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `status` of a ModelAdapter.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAdapterStatus {
    /// `Pending`, `Scheduled`, `Bound`, `ResourceCreated`, `Running`, `Failed`, `Unknown`,
    /// `Scaled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Pods the selector and readiness allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// Pods whose `/v1/models` lists the adapter.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods the placement wants it on.
    #[serde(default)]
    pub desired_replicas: i32,
    /// `Initialized`, `Scheduled`, `Bound`, `ResourceCreated`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Names of the pods holding it (what the gateway routes the adapter to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `status` of a PodAutoscaler.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodAutoscalerStatus {
    /// RFC 3339 time of the last change of the target's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_scale_time: Option<String>,
    /// The count last decided.
    #[serde(default)]
    pub desired_scale: i32,
    /// The target's `status.replicas` when last read.
    #[serde(default)]
    pub actual_scale: i32,
    /// `Ready`, `ValidSpec`, `MultiPodAutoscalerConflict`, `ScalingActive`, `AbleToScale`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last decisions that changed (or tried to change) the scale, newest last, at most 5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub scaling_history: Vec<ScalingDecision>,
    /// The schedule in force and its bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_bounds: Option<ScheduledBounds>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One entry of `status.scalingHistory`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecision {
    /// RFC 3339 time of the decision.
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: String,
    /// Replicas before.
    pub previous_scale: i32,
    /// Replicas decided.
    pub new_scale: i32,
    /// Inputs, recommendation and what limited it, in one line.
    #[serde(default)]
    pub reason: String,
    /// Whether the target accepted the new scale.
    pub success: bool,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `status.scheduledBounds` of a PodAutoscaler.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledBounds {
    /// The schedule in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_schedule: Option<String>,
    /// The minimum in force.
    #[serde(rename = "effectiveMinReplicas")]
    pub effective_min: i32,
    /// The maximum in force.
    #[serde(rename = "effectiveMaxReplicas")]
    pub effective_max: i32,
}
