//! The fleet file's types (models, engines, AIBrix resource documents) and the error bodies
//! every Brix server answers with; pure: no I/O.
//!
//! `brix up` reads one YAML file describing what the fleet is. This crate owns the parts that
//! are not the gateway's: the [`ModelSpec`] list (what each model is and how its replicas run)
//! and the [`Resource`] documents in AIBrix's own schema ([`ModelAdapter`],
//! `model.aibrix.ai/v1alpha1`; [`PodAutoscaler`], `autoscaling.aibrix.ai/v1alpha1`), so a team
//! can bring its AIBrix manifests unchanged. The OpenAI error envelope (and Anthropic's) that
//! the gateway, `brix sim`, the admin APIs and the bench mock send is built in [`openai`] only.
//!
//! Parsing is `serde` (with `serde_yaml_ng` the errors already carry the field path and the
//! line); checks that need more than one field, or more than one document, run once in
//! [`validate_models`] and [`validate_resources`], and fail with a [`FieldError`] that names
//! the field path (`models[1].engine.command: must contain {port}`). Where AIBrix reads a field
//! in a known-broken way, the types here follow the Brix decision in
//! `shared/reference/aibrix.md` and `docs/resources.md` says which.
//!
//! ```
//! let models: Vec<brix_api::ModelSpec> = serde_yaml_ng::from_str(
//!     "- name: llama-3-8b\n  engine: {command: {command: 'vllm serve x --port {port}'}}\n",
//! )?;
//! brix_api::validate_models(&models)?;
//! let resources: Vec<brix_api::Resource> = serde_yaml_ng::from_str(
//!     "- apiVersion: autoscaling.aibrix.ai/v1alpha1
//!   kind: PodAutoscaler
//!   metadata: {name: llama-kpa}
//!   spec:
//!     scaleTargetRef: {name: llama-3-8b}
//!     maxReplicas: 4
//!     scalingStrategy: KPA
//!     metricsSources: [{metricSourceType: pod, targetMetric: num_requests_running, targetValue: '8'}]
//! ",
//! )?;
//! let err = brix_api::validate_resources(&resources, &["mistral"]).err();
//! assert_eq!(err.map(|e| e.field).as_deref(), Some("resources[0].spec.scaleTargetRef.name"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adapter;
mod autoscaler;
mod error;
mod knobs;
mod meta;
mod model;
mod names;
pub mod openai;
mod optimizer;
mod resource;
mod sidecar;
mod status;

#[cfg(feature = "kube")]
pub use adapter::ModelAdapterResource;
pub use adapter::{ADAPTER_API_VERSION, Artifact, ModelAdapter, ModelAdapterSpec, SCHEDULER_NAMES};
#[cfg(feature = "kube")]
pub use autoscaler::PodAutoscalerResource;
pub use autoscaler::{
    AUTOSCALER_API_VERSION, DayOfWeek, GATEWAY_METRICS, MetricSource, MetricSourceType,
    PodAutoscaler, PodAutoscalerSpec, PredictiveMode, PredictiveSpec, ProtocolType,
    ScalingStrategy, Schedule, SubTargetSelector,
};
pub use error::{Deprecation, FieldError};
pub use knobs::{ANNOTATION_PREFIX, GoDurationError, ScalingKnobs, parse_go_duration};
pub use meta::{
    LabelSelector, LabelSelectorRequirement, LocalObjectReference, MODEL_NAME_LABEL, ObjectMeta,
    ObjectReference, REPLICA_LABEL, SelectorOperator,
};
pub use model::{
    ColdStart, CommandEngine, EngineSpec, MAX_REPLICAS, MIN_REPLICAS_LABEL, ModelSpec, SimEngine,
    validate_models,
};
pub use optimizer::{HysteresisSpec, OptimizedDeployment, OptimizedModel, OptimizerSpec, SloSpec};
pub use resource::{Resource, deprecations, validate_resources};
pub use sidecar::{MetricsMode, RuntimeEngine, RuntimeSpec, cuda_visible_devices};
pub use status::{
    Condition, ModelAdapterStatus, PodAutoscalerStatus, ScalingDecision, ScheduledBounds,
};
