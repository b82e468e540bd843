//! The user record: a name and optional per-minute limits, stored as AIBrix's JSON.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted user name in bytes; the name is part of every Redis key of the user.
pub const MAX_USER_NAME_BYTES: usize = 256;

/// A user and its limits, stored as AIBrix's JSON `{"name","rpm","tpm"}` at
/// `aibrix-users/<name>`, so AIBrix's metadata service and Brix can share one Redis.
///
/// A limit of `None` is unlimited. `0` and `null` in JSON both read as `None`, and `None` is
/// written as `0` (AIBrix's Python model rejects `null`). Brix differs from AIBrix's gateway
/// here on purpose: AIBrix turns 0 into a default of 100 RPM and 100,000 TPM, which users found
/// surprising (issue #2747); in Brix limits are opt-in per user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The value of the `user` request header that selects this record.
    pub name: String,
    /// Requests per 60-second window; `None` (or 0) is unlimited.
    #[serde(default, serialize_with = "limit_out", deserialize_with = "limit_in")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per 60-second window; `None` (or 0) is unlimited.
    #[serde(default, serialize_with = "limit_out", deserialize_with = "limit_in")]
    pub tpm: Option<u64>,
}

impl User {
    /// Builds a record with the limits normalised (0 becomes `None`), as the store keeps them.
    pub fn new(name: impl Into<String>, rpm: Option<u64>, tpm: Option<u64>) -> Self {
        Self {
            name: name.into(),
            rpm: rpm.filter(|&v| v > 0),
            tpm: tpm.filter(|&v| v > 0),
        }
    }

    /// Checks the name before it becomes part of Redis keys: non-empty, at most
    /// [`MAX_USER_NAME_BYTES`], no whitespace or control characters (it travels in a header).
    pub fn validate_name(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            Err("the name is empty")
        } else if name.len() > MAX_USER_NAME_BYTES {
            Err("the name is longer than 256 bytes")
        } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Err("the name contains whitespace or control characters")
        } else {
            Ok(())
        }
    }

    /// The record with 0 limits turned into `None`, so equality and JSON are canonical.
    pub(crate) fn normalised(self) -> Self {
        Self::new(self.name, self.rpm, self.tpm)
    }
}

/// Writes `None` as 0, the form AIBrix's Go gateway and Python metadata service both read.
fn limit_out<S: Serializer>(limit: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(limit.unwrap_or(0))
}

/// Reads 0 and `null` as unlimited; a negative or fractional number is an error.
fn limit_in<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.filter(|&v| v > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_is_aibrix_shaped() {
        let u: User = serde_json::from_str(r#"{"name":"a","rpm":0,"tpm":null}"#).expect("parse");
        assert_eq!(u, User::new("a", None, None));
        let u: User = serde_json::from_str(r#"{"name":"b","rpm":5}"#).expect("parse");
        assert_eq!(u, User::new("b", Some(5), None));
        let json = serde_json::to_string(&User::new("c", Some(7), None)).expect("json");
        assert_eq!(json, r#"{"name":"c","rpm":7,"tpm":0}"#);
        assert!(serde_json::from_str::<User>(r#"{"name":"d","rpm":-1}"#).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(User::validate_name("alice@example.com").is_ok());
        assert!(User::validate_name("").is_err());
        assert!(User::validate_name("a b").is_err());
        assert!(User::validate_name("a\nb").is_err());
        assert!(User::validate_name(&"x".repeat(257)).is_err());
    }
}
