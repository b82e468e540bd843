//! OpenAPI schemas for fields whose Rust type is a k8s-openapi type. k8s-openapi's `schemars`
//! feature stays off (it would rebuild the whole dependency tree for every crate), so these
//! fields get a schema by hand: KubeRay's embedded core types (pod templates, Services, env vars)
//! as open objects the API server keeps as written, the rest in their exact shape.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// An embedded Kubernetes object (a pod template, a Service, ...): kept as written; the API
/// server validates it when KubeRay creates the object it describes.
pub(crate) fn object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of embedded Kubernetes objects (env vars, volume mounts, network-policy rules).
pub(crate) fn object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

/// `metav1.LabelSelector`: the same wire shape as brix-api's selector, whose schema it reuses.
pub(crate) fn label_selector(generator: &mut SchemaGenerator) -> Schema {
    brix_api::LabelSelector::json_schema(generator)
}

/// `intstr.IntOrString` (`maxSurge: 1` or `maxSurge: "25%"`).
pub(crate) fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
    })
}
