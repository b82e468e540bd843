//! Brix on Kubernetes: the same resources on a cluster.
//!
//! - [`crd`]: the CustomResourceDefinitions, generated from the Rust types that the fleet file
//!   also reads (`brix-api`), with AIBrix's groups, versions, kinds and field names.
//! - Controllers (kube-rs runtime: reconcilers, finalizers, error policies), each calling the
//!   same policy code as `brix up`: [`podautoscaler`] (`brix-autoscaler`), [`modeladapter`]
//!   (`brix-adapters`), [`fleet`] (RayClusterFleet over KubeRay's `RayCluster`).
//! - [`discovery`]: the gateway's pods from a Kubernetes watch, behind the gateway's
//!   `Discovery` trait.
//! - [`lease`]: leader election over a `coordination.k8s.io` Lease, so several controller
//!   replicas run one active manager.
//! - [`rbac`]: the verbs each component uses, the single source the Helm chart's roles are
//!   checked against.
//!
//! No API server can run in tests here, so every reconciler is tested against kube's mocked
//! API (`tower-test`), asserting the exact calls (tests/support).

pub mod crd;
pub mod discovery;
pub mod fleet;
pub mod lease;
pub mod manager;
pub mod modeladapter;
pub mod podautoscaler;
pub mod rbac;

/// Why a controller, the discovery or the manager failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A resource's spec is invalid; the text names the field.
    #[error("invalid spec: {0}")]
    Spec(String),
    /// A pod or engine did not answer as expected (HTTP to a pod).
    #[error("{0}")]
    Pod(String),
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

/// Where the controllers look: one namespace, or all (`None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Namespace to watch; `None` watches every namespace.
    pub namespace: Option<String>,
}
