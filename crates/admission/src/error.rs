//! Typed errors: why a request was refused ([`Reject`]), why start-up failed
//! ([`AdmissionError`]), and why the shared store failed ([`StoreError`], [`UserError`]).

/// Why a request was not admitted; the gateway turns it into the OpenAI error envelope with
/// [`Reject::status`], [`Reject::error_type`], [`Reject::code`], [`Reject::param`], the
/// debug header and `Retry-After`. `Display` is the envelope's `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Keys are configured and the `Authorization: Bearer` key is missing or wrong.
    #[error("Incorrect API key provided")]
    InvalidApiKey,
    /// The `user` header names no stored user while `require_known_user` is set (the name
    /// is cut to [`crate::MAX_USER_NAME_BYTES`]: no stored user has a longer one).
    #[error("user {0:?} does not exist")]
    UnknownUser(String),
    /// No `user` header (or one that is not UTF-8) while `require_known_user` is set.
    #[error("a `user` header naming a known user is required")]
    MissingUser,
    /// The user's requests-per-minute window is full.
    #[error("requests per minute limit exceeded for this user; retry after {retry_after_s} s")]
    RpmExceeded {
        /// Seconds until the current 60-second window ends.
        retry_after_s: u64,
    },
    /// The user's tokens-per-minute window cannot hold this request's reservation.
    #[error("tokens per minute limit exceeded for this user; retry after {retry_after_s} s")]
    TpmExceeded {
        /// Seconds until the current 60-second window ends.
        retry_after_s: u64,
    },
    /// The model's requests-per-second window is full.
    #[error("requests per second limit exceeded for this model; retry after {retry_after_s} s")]
    ModelRpsExceeded {
        /// Seconds until the current 1-second window ends.
        retry_after_s: u64,
    },
    /// The store (Redis) failed; admission fails closed. The detail is for logs, not clients.
    #[error("the rate-limit store is unavailable; retry later")]
    Store(String),
}

impl Reject {
    /// HTTP status: 401 for identity, 429 for limits, 503 when the store is down.
    pub fn status(&self) -> u16 {
        match self {
            Reject::InvalidApiKey | Reject::UnknownUser(_) | Reject::MissingUser => 401,
            Reject::RpmExceeded { .. }
            | Reject::TpmExceeded { .. }
            | Reject::ModelRpsExceeded { .. } => 429,
            Reject::Store(_) => 503,
        }
    }

    /// The envelope's `type`, by status as AIBrix and OpenAI do.
    pub fn error_type(&self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            429 => "rate_limit_error",
            _ => "overloaded_error",
        }
    }

    /// The envelope's `code`: AIBrix's codes, plus `invalid_user` for Brix's 401.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::InvalidApiKey => "invalid_api_key",
            Reject::UnknownUser(_) | Reject::MissingUser => "invalid_user",
            Reject::RpmExceeded { .. }
            | Reject::TpmExceeded { .. }
            | Reject::ModelRpsExceeded { .. } => "rate_limit_exceeded",
            Reject::Store(_) => "service_unavailable",
        }
    }

    /// The envelope's `param`: only a bad key names one (`api_key`), as in AIBrix.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Reject::InvalidApiKey => Some("api_key"),
            _ => None,
        }
    }

    /// AIBrix's `x-error-*` debug header for this rejection, so clients and tests that read
    /// it keep working.
    pub fn debug_header(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Reject::UnknownUser(_) | Reject::MissingUser => Some(("x-error-user", "true")),
            Reject::RpmExceeded { .. } => Some(("x-error-rpm-exceeded", "true")),
            Reject::TpmExceeded { .. } => Some(("x-error-tpm-exceeded", "true")),
            Reject::ModelRpsExceeded { .. } => Some(("x-error-model-rps-exceeded", "true")),
            Reject::InvalidApiKey | Reject::Store(_) => None,
        }
    }

    /// Value for `Retry-After` on a 429: seconds to the end of the full window.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Reject::RpmExceeded { retry_after_s }
            | Reject::TpmExceeded { retry_after_s }
            | Reject::ModelRpsExceeded { retry_after_s } => Some(*retry_after_s),
            _ => None,
        }
    }

    /// Stable metric label for the rejection reason.
    pub fn as_label(&self) -> &'static str {
        match self {
            Reject::InvalidApiKey => "invalid_api_key",
            Reject::UnknownUser(_) => "unknown_user",
            Reject::MissingUser => "missing_user",
            Reject::RpmExceeded { .. } => "rpm_exceeded",
            Reject::TpmExceeded { .. } => "tpm_exceeded",
            Reject::ModelRpsExceeded { .. } => "model_rps_exceeded",
            Reject::Store(_) => "store_unavailable",
        }
    }
}

/// Why [`crate::Admission::connect`] refused the configuration or could not reach Redis.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// An entry of `api_keys` is empty, which would make a bare `Bearer ` header valid.
    #[error("api_keys[{0}] is empty")]
    EmptyApiKey(usize),
    /// `admin_key` is set but empty.
    #[error("admin_key is empty; leave it out to disable the admin API")]
    EmptyAdminKey,
    /// A `model_rps` entry is 0, which would refuse every request to the model.
    #[error("model_rps[{0:?}] is 0; remove the entry to leave the model unlimited")]
    ZeroModelRps(String),
    /// The Redis URL does not parse or names an unsupported scheme.
    #[error("redis_url {url:?} is invalid: {source}")]
    RedisUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
    /// Redis did not answer the connection or the start-up `PING`.
    #[error("cannot reach redis at {url:?}: {source}")]
    RedisConnect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
}

/// A failure of the shared store behind limits and users.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis refused, timed out or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored user record is not the JSON `{"name","rpm","tpm"}`.
    #[error("stored user record {key:?} is not valid: {source}")]
    CorruptUser {
        /// The Redis key holding the record.
        key: String,
        /// Why it did not parse.
        source: serde_json::Error,
    },
}

/// Why a user could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name cannot be used as part of Redis keys and headers.
    #[error("invalid user name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_table() {
        type Row = (
            Reject,
            u16,
            &'static str,
            &'static str,
            Option<&'static str>,
        );
        let rows: &[Row] = &[
            (
                Reject::InvalidApiKey,
                401,
                "authentication_error",
                "invalid_api_key",
                None,
            ),
            (
                Reject::UnknownUser("u".into()),
                401,
                "authentication_error",
                "invalid_user",
                Some("x-error-user"),
            ),
            (
                Reject::RpmExceeded { retry_after_s: 7 },
                429,
                "rate_limit_error",
                "rate_limit_exceeded",
                Some("x-error-rpm-exceeded"),
            ),
            (
                Reject::TpmExceeded { retry_after_s: 7 },
                429,
                "rate_limit_error",
                "rate_limit_exceeded",
                Some("x-error-tpm-exceeded"),
            ),
            (
                Reject::ModelRpsExceeded { retry_after_s: 1 },
                429,
                "rate_limit_error",
                "rate_limit_exceeded",
                Some("x-error-model-rps-exceeded"),
            ),
            (
                Reject::Store("redis: refused".into()),
                503,
                "overloaded_error",
                "service_unavailable",
                None,
            ),
        ];
        let mut labels = std::collections::BTreeSet::new();
        for (reject, status, kind, code, header) in rows {
            assert_eq!(
                (reject.status(), reject.error_type(), reject.code()),
                (*status, *kind, *code)
            );
            assert_eq!(reject.debug_header().map(|(name, _)| name), *header);
            assert_eq!(reject.retry_after_s().is_some(), *status == 429);
            assert_eq!(reject.param().is_some(), *reject == Reject::InvalidApiKey);
            assert!(labels.insert(reject.as_label()), "labels are distinct");
            assert!(
                !reject.to_string().contains("redis"),
                "no internals in messages"
            );
        }
    }
}
