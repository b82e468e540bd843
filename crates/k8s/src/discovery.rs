//! TODO(discovery): being written.

use crate::rbac::Rule;

/// The API calls this component makes.
pub const RULES: &[Rule] = &[Rule {
    group: "",
    resources: &["pods"],
    verbs: &["get", "list", "watch"],
}];
