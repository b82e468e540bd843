//! API-key authentication: SHA-256 of the presented key compared in constant time with the
//! digests of the configured keys, as AIBrix does, so neither the content nor the length of a
//! key leaks through response timing.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The digests of a set of accepted bearer keys; empty accepts everything.
#[derive(Clone, Default)]
pub(crate) struct Keys {
    digests: Vec<[u8; 32]>,
}

impl Keys {
    /// Hashes the configured keys once at start-up.
    pub(crate) fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            digests: keys.into_iter().map(digest).collect(),
        }
    }

    /// Whether no key is required.
    pub(crate) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header value carries one of the keys. Every configured key
    /// is compared (no early exit), so timing does not tell which one matched.
    pub(crate) fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(bearer_token) else {
            return false;
        };
        let presented = digest(token);
        let matched = self.digests.iter().fold(Choice::from(0), |acc, known| {
            acc | known.as_slice().ct_eq(presented.as_slice())
        });
        matched.into()
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 7235) and surrounding
/// spaces are ignored. An empty token is no token.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The one admin-key check of every admin API on the gateway's port (the users API, `brix
/// up`'s fleet API): with no key configured the APIs are off (403), otherwise the caller must
/// present `Authorization: Bearer <key>` (scheme in any case, compared in constant time).
#[derive(Clone, Default)]
pub struct AdminGuard {
    key: Option<Keys>,
}

/// Why an admin call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminDenied {
    /// No admin key is configured: the admin APIs are off.
    #[error("the admin API is disabled; configure admin_key to enable it")]
    Disabled,
    /// The key is missing or wrong.
    #[error("Incorrect admin key provided")]
    Unauthorized,
}

impl AdminGuard {
    /// A guard for `key`; `None` (or an empty key) refuses every call.
    pub fn new(key: Option<&str>) -> Self {
        Self {
            key: key.filter(|k| !k.is_empty()).map(|k| Keys::new([k])),
        }
    }

    /// Whether an admin key is configured.
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), AdminDenied> {
        match &self.key {
            None => Err(AdminDenied::Disabled),
            Some(k) if k.accepts(authorization) => Ok(()),
            Some(_) => Err(AdminDenied::Unauthorized),
        }
    }

    /// [`check`](Self::check) on a request's headers.
    pub fn check_headers(&self, headers: &axum::http::HeaderMap) -> Result<(), AdminDenied> {
        self.check(
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
    }
}

impl AdminDenied {
    /// The HTTP status: 403 when the API is off, 401 for a bad key.
    pub fn status(self) -> axum::http::StatusCode {
        match self {
            Self::Disabled => axum::http::StatusCode::FORBIDDEN,
            Self::Unauthorized => axum::http::StatusCode::UNAUTHORIZED,
        }
    }
}

impl axum::response::IntoResponse for AdminDenied {
    /// The OpenAI error envelope.
    fn into_response(self) -> axum::response::Response {
        let (kind, code) = match self {
            Self::Disabled => ("permission_error", "admin_api_disabled"),
            Self::Unauthorized => ("authentication_error", "invalid_api_key"),
        };
        let body = brix_api::openai::ErrorEnvelope::new(self.to_string(), kind)
            .with_code(Some(code.into()));
        (self.status(), axum::Json(body)).into_response()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys() {
        let keys = Keys::new(["sk-one", "sk-two"]);
        let cases: &[(Option<&str>, bool)] = &[
            (Some("Bearer sk-one"), true),
            (Some("bearer sk-two"), true),
            (Some("BEARER   sk-two  "), true),
            (Some("Bearer sk-three"), false),
            (Some("Bearer sk-on"), false),
            (Some("Bearer "), false),
            (Some("sk-one"), false),
            (Some("Basic sk-one"), false),
            (None, false),
        ];
        for &(header, want) in cases {
            assert_eq!(keys.accepts(header), want, "{header:?}");
        }
        assert!(Keys::new([]).is_empty());
    }

    #[test]
    fn admin_guard() {
        assert_eq!(
            AdminGuard::new(None).check(Some("Bearer x")),
            Err(AdminDenied::Disabled)
        );
        assert_eq!(
            AdminGuard::new(Some("")).check(Some("Bearer ")),
            Err(AdminDenied::Disabled)
        );
        let g = AdminGuard::new(Some("adm"));
        assert_eq!(g.check(None), Err(AdminDenied::Unauthorized));
        assert_eq!(g.check(Some("Bearer nope")), Err(AdminDenied::Unauthorized));
        assert_eq!(g.check(Some("bearer adm")), Ok(()));
    }
}
