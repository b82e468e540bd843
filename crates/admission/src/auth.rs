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
}
