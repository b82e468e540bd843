//! TODO(crd): the CRDs generated from the Rust types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Every CRD Brix installs.
pub fn all() -> Vec<CustomResourceDefinition> {
    Vec::new()
}

/// [`all`] as one multi-document YAML stream (what `brix kubernetes crds` prints and the
/// chart's `crds/` holds).
pub fn yaml() -> String {
    String::new()
}
