//! The admission configuration: parsed once, validated once, then used to build [`crate::Admission`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::AdmissionError;

/// What admission enforces; part of the gateway's configuration file.
///
/// Everything defaults to off: no key, no admin API, in-memory counters, no model limits,
/// and users without a stored record are not limited.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Accepted `Authorization: Bearer <key>` keys; empty means no key is required.
    pub api_keys: Vec<String>,
    /// Key for the admin (users) API; `None` disables that API (every call answers 403).
    pub admin_key: Option<String>,
    /// `redis://host:port/db` to share counters and users between gateway replicas and with
    /// AIBrix tools; `None` keeps them in this process's memory.
    pub redis_url: Option<String>,
    /// Requests per second per model name (AIBrix's profile `requestsPerSecond`); a model not
    /// listed is unlimited.
    pub model_rps: BTreeMap<String, u64>,
    /// When set, a `user` header naming no stored user is refused with 401 instead of being
    /// admitted without per-user limits.
    pub require_known_user: bool,
}

impl AdmissionConfig {
    /// Refuses settings that would silently weaken or break admission.
    pub fn validate(&self) -> Result<(), AdmissionError> {
        if let Some(i) = self.api_keys.iter().position(|k| k.trim().is_empty()) {
            return Err(AdmissionError::EmptyApiKey(i));
        }
        if self
            .admin_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(AdmissionError::EmptyAdminKey);
        }
        if let Some((model, _)) = self.model_rps.iter().find(|(_, rps)| **rps == 0) {
            return Err(AdmissionError::ZeroModelRps(model.clone()));
        }
        Ok(())
    }
}

/// Keys and the Redis password never reach logs.
impl fmt::Debug for AdmissionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionConfig")
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("model_rps", &self.model_rps)
            .field("require_known_user", &self.require_known_user)
            .finish()
    }
}

/// The URL with the password part of `user:password@` replaced by `***`, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_catches_footguns() {
        assert!(AdmissionConfig::default().validate().is_ok());
        let cfg = AdmissionConfig {
            api_keys: vec!["k".into(), " ".into()],
            ..Default::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(AdmissionError::EmptyApiKey(1))
        ));
        let cfg = AdmissionConfig {
            admin_key: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(AdmissionError::EmptyAdminKey)));
        let cfg = AdmissionConfig {
            model_rps: BTreeMap::from([("m".to_owned(), 0)]),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(AdmissionError::ZeroModelRps(m)) if m == "m"));
    }

    #[test]
    fn parses_and_redacts() {
        let cfg: AdmissionConfig = serde_json::from_str(
            r#"{"api_keys":["sk-1"],"admin_key":"adm","redis_url":"redis://u:pw@h:6379/0",
                "model_rps":{"llama":5},"require_known_user":true}"#,
        )
        .expect("parse");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("sk-1") && !debug.contains("adm\"") && !debug.contains("pw"));
        assert!(debug.contains("redis://u:***@h:6379/0"), "{debug}");
        assert!(serde_json::from_str::<AdmissionConfig>(r#"{"api_key":["x"]}"#).is_err());
        assert_eq!(redact_url("redis://:secret@h/0"), "redis://:***@h/0");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
    }
}
