//! TODO(manager): being written.

use crate::rbac::Rule;

/// The API calls this component makes.
pub const RULES: &[Rule] = &[];
