//! What validation reports: an error that stops start-up, or a deprecation to log.

use std::fmt;

/// A fleet file field that failed validation, named by its path so the user can find it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the offending field, as the file spells it: `models[1].engine.command`.
    pub field: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl FieldError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix` put in front of its path (`spec.x` → `resources[0].spec.x`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = join(prefix, &self.field);
        self
    }
}

/// A legacy spelling Brix accepted but the user should change; the caller logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deprecation {
    /// Path of the legacy field: `resources[0].metadata.annotations[kpa.autoscaling.aibrix.ai/scale-down-delay]`.
    pub field: String,
    /// What it was read as and what to write instead.
    pub message: String,
}

impl fmt::Display for Deprecation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// `prefix.field`, or `prefix[..]` when the field is an index or a map key.
pub(crate) fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else if field.is_empty() {
        prefix.to_string()
    } else if field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

/// Shorthand for building an `Err(FieldError)`.
pub(crate) fn fail<T>(
    field: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, FieldError> {
    Err(FieldError::new(field, message))
}
