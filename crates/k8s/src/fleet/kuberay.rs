// Generated: KubeRay's RayCluster types (ray.io/v1), from KubeRay's published CRD schema.
// Source: github.com/ray-project/kuberay ray-operator/config/crd/bases/ray.io_rayclusters.yaml
// KubeRay commit: feeaf72facab4881ba2b179248bb67315634e229 (kopium version: 0.24.1)
// Command, run at this repository's root with ray.io_rayclusters.yaml of that commit copied there:
//   kopium -f ray.io_rayclusters.yaml --derive Default --derive JsonSchema --derive PartialEq --smart-derive-elision \
//     | scripts/kuberay-types ray-operator/config/crd/bases/ray.io_rayclusters.yaml feeaf72facab4881ba2b179248bb67315634e229 \
//     > crates/k8s/src/fleet/kuberay.rs && rustfmt --edition 2024 crates/k8s/src/fleet/kuberay.rs
// Embedded Kubernetes core types are k8s-openapi's (see scripts/kuberay-types). Regenerate;
// do not edit by hand.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::EnvFromSource;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::api::core::v1::EnvVarSource;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::core::v1::SecurityContext;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::VolumeMount;
use k8s_openapi::api::networking::v1::IngressTLS;
use k8s_openapi::api::networking::v1::NetworkPolicyEgressRule;
use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayCluster",
    plural = "rayclusters"
)]
#[kube(namespaced)]
#[kube(status = "RayClusterStatus")]
#[kube(schema = "disabled")]
#[kube(derive = "Default")]
#[kube(derive = "PartialEq")]
pub struct RayClusterSpec {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "authOptions"
    )]
    pub auth_options: Option<RayClusterAuthOptions>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "autoscalerOptions"
    )]
    pub autoscaler_options: Option<RayClusterAutoscalerOptions>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "enableInTreeAutoscaling"
    )]
    pub enable_in_tree_autoscaling: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "gcsFaultToleranceOptions"
    )]
    pub gcs_fault_tolerance_options: Option<RayClusterGcsFaultToleranceOptions>,
    #[serde(rename = "headGroupSpec")]
    pub head_group_spec: RayClusterHeadGroupSpec,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "headServiceAnnotations"
    )]
    pub head_service_annotations: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "historyServerOptions"
    )]
    pub history_server_options: Option<RayClusterHistoryServerOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "managedBy")]
    pub managed_by: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "networkPolicy"
    )]
    pub network_policy: Option<RayClusterNetworkPolicy>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "rayVersion"
    )]
    pub ray_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "tlsOptions"
    )]
    pub tls_options: Option<RayClusterTlsOptions>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "upgradeStrategy"
    )]
    pub upgrade_strategy: Option<RayClusterUpgradeStrategy>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "workerGroupSpecs"
    )]
    pub worker_group_specs: Option<Vec<RayClusterWorkerGroupSpecs>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterAuthOptions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "enableK8sTokenAuth"
    )]
    pub enable_k8s_token_auth: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RayClusterAuthOptionsMode>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "secretName"
    )]
    pub secret_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterAuthOptionsMode {
    #[serde(rename = "disabled")]
    Disabled,
    #[serde(rename = "token")]
    Token,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterAutoscalerOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::object_list")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "envFrom")]
    #[schemars(schema_with = "super::schema::object_list")]
    pub env_from: Option<Vec<EnvFromSource>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "idleTimeoutSeconds"
    )]
    pub idle_timeout_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "imagePullPolicy"
    )]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::object")]
    pub resources: Option<ResourceRequirements>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "securityContext"
    )]
    #[schemars(schema_with = "super::schema::object")]
    pub security_context: Option<SecurityContext>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "upscalingMode"
    )]
    pub upscaling_mode: Option<RayClusterAutoscalerOptionsUpscalingMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<RayClusterAutoscalerOptionsVersion>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "volumeMounts"
    )]
    #[schemars(schema_with = "super::schema::object_list")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterAutoscalerOptionsUpscalingMode {
    Default,
    Aggressive,
    Conservative,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterAutoscalerOptionsVersion {
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterGcsFaultToleranceOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<RayClusterGcsFaultToleranceOptionsBackend>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "externalStorageNamespace"
    )]
    pub external_storage_namespace: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "redisAddress"
    )]
    pub redis_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "redisPassword"
    )]
    pub redis_password: Option<RayClusterGcsFaultToleranceOptionsRedisPassword>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "redisUsername"
    )]
    pub redis_username: Option<RayClusterGcsFaultToleranceOptionsRedisUsername>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<RayClusterGcsFaultToleranceOptionsStorage>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterGcsFaultToleranceOptionsBackend {
    #[serde(rename = "redis")]
    Redis,
    #[serde(rename = "rocksdb")]
    Rocksdb,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterGcsFaultToleranceOptionsRedisPassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "valueFrom")]
    #[schemars(schema_with = "super::schema::object")]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterGcsFaultToleranceOptionsRedisUsername {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "valueFrom")]
    #[schemars(schema_with = "super::schema::object")]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterGcsFaultToleranceOptionsStorage {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "accessModes"
    )]
    pub access_modes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "claimName")]
    pub claim_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "deletionPolicy"
    )]
    pub deletion_policy: Option<RayClusterGcsFaultToleranceOptionsStorageDeletionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::int_or_string")]
    pub size: Option<IntOrString>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "storageClassName"
    )]
    pub storage_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "subPath")]
    pub sub_path: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterGcsFaultToleranceOptionsStorageDeletionPolicy {
    DeleteWithCluster,
    Retain,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterHeadGroupSpec {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "enableIngress"
    )]
    pub enable_ingress: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "headService"
    )]
    #[schemars(schema_with = "super::schema::object")]
    pub head_service: Option<Service>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "ingressOptions"
    )]
    pub ingress_options: Option<RayClusterHeadGroupSpecIngressOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "rayStartParams"
    )]
    pub ray_start_params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "serviceType"
    )]
    pub service_type: Option<String>,
    #[schemars(schema_with = "super::schema::object")]
    pub template: PodTemplateSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterHeadGroupSpecIngressOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "pathType")]
    pub path_type: Option<RayClusterHeadGroupSpecIngressOptionsPathType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::object_list")]
    pub tls: Option<Vec<IngressTLS>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterHeadGroupSpecIngressOptionsPathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterHistoryServerOptions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "collectorOptions"
    )]
    pub collector_options: Option<RayClusterHistoryServerOptionsCollectorOptions>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterHistoryServerOptionsCollectorOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::object_list")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "imagePullPolicy"
    )]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::object")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterNetworkPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<RayClusterNetworkPolicyHead>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RayClusterNetworkPolicyMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<RayClusterNetworkPolicyWorker>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "workerGroups"
    )]
    pub worker_groups: Option<Vec<RayClusterNetworkPolicyWorkerGroups>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterNetworkPolicyHead {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "egressRules"
    )]
    #[schemars(schema_with = "super::schema::object_list")]
    pub egress_rules: Option<Vec<NetworkPolicyEgressRule>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "ingressRules"
    )]
    #[schemars(schema_with = "super::schema::object_list")]
    pub ingress_rules: Option<Vec<NetworkPolicyIngressRule>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterNetworkPolicyMode {
    DenyAll,
    DenyAllIngress,
    DenyAllEgress,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterNetworkPolicyWorker {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "egressRules"
    )]
    #[schemars(schema_with = "super::schema::object_list")]
    pub egress_rules: Option<Vec<NetworkPolicyEgressRule>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "ingressRules"
    )]
    #[schemars(schema_with = "super::schema::object_list")]
    pub ingress_rules: Option<Vec<NetworkPolicyIngressRule>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterNetworkPolicyWorkerGroups {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "egressRules"
    )]
    #[schemars(schema_with = "super::schema::object_list")]
    pub egress_rules: Option<Vec<NetworkPolicyEgressRule>>,
    #[serde(rename = "groupName")]
    pub group_name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "ingressRules"
    )]
    #[schemars(schema_with = "super::schema::object_list")]
    pub ingress_rules: Option<Vec<NetworkPolicyIngressRule>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterTlsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterUpgradeStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub r#type: Option<RayClusterUpgradeStrategyType>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
pub enum RayClusterUpgradeStrategyType {
    Recreate,
    None,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterWorkerGroupSpecs {
    #[serde(rename = "groupName")]
    pub group_name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "idleTimeoutSeconds"
    )]
    pub idle_timeout_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "maxReplicas")]
    pub max_replicas: i32,
    #[serde(rename = "minReplicas")]
    pub min_replicas: i32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "numOfHosts"
    )]
    pub num_of_hosts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "rayStartParams"
    )]
    pub ray_start_params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "scaleStrategy"
    )]
    pub scale_strategy: Option<RayClusterWorkerGroupSpecsScaleStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[schemars(schema_with = "super::schema::object")]
    pub template: PodTemplateSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct RayClusterWorkerGroupSpecsScaleStrategy {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "workersToDelete"
    )]
    pub workers_to_delete: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RayClusterStatus {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "availableWorkerReplicas"
    )]
    pub available_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "desiredCPU"
    )]
    pub desired_cpu: Option<IntOrString>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "desiredGPU"
    )]
    pub desired_gpu: Option<IntOrString>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "desiredMemory"
    )]
    pub desired_memory: Option<IntOrString>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "desiredTPU"
    )]
    pub desired_tpu: Option<IntOrString>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "desiredWorkerReplicas"
    )]
    pub desired_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<RayClusterStatusHead>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "lastUpdateTime"
    )]
    pub last_update_time: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "maxWorkerReplicas"
    )]
    pub max_worker_replicas: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "minWorkerReplicas"
    )]
    pub min_worker_replicas: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "observedGeneration"
    )]
    pub observed_generation: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "readyWorkerReplicas"
    )]
    pub ready_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "stateTransitionTimes"
    )]
    pub state_transition_times: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RayClusterStatusHead {
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "podName")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "serviceIP")]
    pub service_ip: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "serviceName"
    )]
    pub service_name: Option<String>,
}
