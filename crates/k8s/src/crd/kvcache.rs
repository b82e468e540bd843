//! `KVCache` (`orchestration.aibrix.ai/v1alpha1`): AIBrix's distributed KV cache pool, in its
//! shape, so AIBrix manifests apply. Brix's pool server is `brix kvcache serve`; there is no
//! controller for this resource yet (docs/kubernetes.md, "Resources", says how the fields map).
//!
//! Embedded core/v1 objects (`env`, `resources`, `template`, service ports' `targetPort`) are
//! kept as JSON with Kubernetes' own escape hatches (`x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-int-or-string`): their full schemas would need k8s-openapi's `schemars`
//! feature, a rebuild of the largest crate for fields no Brix code reads.

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `spec` of a KVCache, with AIBrix's field names and defaults.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "orchestration.aibrix.ai",
    version = "v1alpha1",
    kind = "KVCache",
    root = "KvCache",
    namespaced,
    status = "KvCacheStatus",
    shortname = "kvc",
    category = "aibrix",
    doc = "A KV cache pool shared by engines (AIBrix's KVCache); Brix's pool server is `brix kvcache serve`.",
    printcolumn = r#"{"name": "Mode", "type": "string", "jsonPath": ".spec.mode"}"#,
    printcolumn = r#"{"name": "Replicas", "type": "integer", "jsonPath": ".spec.cache.replicas"}"#,
    printcolumn = r#"{"name": "Ready", "type": "integer", "jsonPath": ".status.current"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "The pool's mode, metadata store, cache servers, watcher and Service.")]
pub struct KvCacheSpec {
    /// `distributed` (a hash ring over the cache pods, metadata in Redis or etcd) or
    /// `centralized` (one server).
    #[serde(default)]
    pub mode: KvCacheMode,
    /// Where the ring's metadata lives (Redis or etcd), run by the operator or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataSpec>,
    /// The cache servers (Brix: `brix kvcache serve` pods).
    #[serde(default)]
    pub cache: RuntimeSpec,
    /// The member-registration pod (AIBrix's `kvcache-watcher`); Brix engines hash over the
    /// servers client-side, so it has no Brix counterpart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher: Option<RuntimeSpec>,
    /// The Service in front of the cache servers.
    #[serde(default)]
    pub service: ServiceSpec,
}

/// How the pool is laid out.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KvCacheMode {
    /// One server (or one Service) every engine talks to.
    Centralized,
    /// A consistent-hash ring over several servers (AIBrix's default).
    #[default]
    Distributed,
}

/// The metadata store of a distributed pool.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataSpec {
    /// Redis, run by the operator or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<MetadataConfig>,
    /// etcd, run by the operator or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<MetadataConfig>,
}

/// One metadata store: an external address or pods to run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataConfig {
    /// An existing store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_connection: Option<ExternalConnectionConfig>,
    /// Pods to run the store in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,
}

/// How to reach an existing metadata store.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalConnectionConfig {
    /// `host:port`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Name of the Secret holding the password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_secret_ref: String,
}

/// Pods of one pool component (cache servers, watcher, metadata store).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// Pods to run.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Container image (Brix: the `brix` image, command `brix kvcache serve`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default = "if_not_present")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: String,
    /// Container environment (core/v1 `EnvVar` objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Container resources (core/v1 `ResourceRequirements`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub resources: Option<Value>,
    /// A full pod template (core/v1 `PodTemplateSpec`) that overrides the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub template: Option<Value>,
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        Self {
            replicas: one(),
            image: String::new(),
            image_pull_policy: if_not_present(),
            env: Vec::new(),
            resources: None,
            template: None,
        }
    }
}

/// One environment variable (core/v1 `EnvVar`): a literal `value` or a `valueFrom` source.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A Secret, ConfigMap, field or resource reference (core/v1 `EnvVarSource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub value_from: Option<Value>,
}

/// The pool's Service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]))]
    pub kind: Option<String>,
    /// Ports (Brix: the `--listen` port of `brix kvcache serve`, binary and RESP on one port).
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

/// One Service port (core/v1 `ServicePort`'s fields).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name, unique in the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port the Service listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Pod port, by number or container port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub target_port: Option<Value>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["TCP", "UDP", "SCTP"]))]
    pub protocol: Option<String>,
    /// Node port for `NodePort` and `LoadBalancer` Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
    /// Application protocol hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// `status` of a KVCache.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KvCacheStatus {
    /// Cache servers ready (AIBrix names the field `current`).
    #[serde(rename = "current", default)]
    pub ready_replicas: i32,
    /// Conditions of the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<brix_api::Condition>,
}

fn one() -> i32 {
    1
}

fn if_not_present() -> String {
    "IfNotPresent".into()
}

/// An object whose fields Kubernetes keeps as written (a core/v1 type Brix does not read).
fn preserved_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// A port number or name, as Kubernetes' `IntOrString`.
fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"x-kubernetes-int-or-string": true})
}
