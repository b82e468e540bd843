//! Credentials and endpoints for artifact stores, from a Secret's data or the environment.

use std::collections::BTreeMap;
use std::fmt;

/// Keys read, in the names AWS and Hugging Face tools use (a Secret's `data` uses the same).
const KEYS: [&str; 8] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "HF_TOKEN",
    "HF_ENDPOINT",
    "HF_REVISION",
];

/// Which keys are secret: [`Credentials`]' `Debug` prints only whether they are set.
const SECRET: [&str; 3] = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN"];

/// Credentials and endpoints for artifact stores: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION` (default `us-east-1`), `AWS_ENDPOINT_URL` (any
/// S3-compatible server, path-style), `HF_TOKEN`, `HF_ENDPOINT` (a hub mirror), `HF_REVISION`.
/// A Secret's values are merged over the environment with [`Credentials::or`]. `Debug` never
/// prints a secret value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    values: BTreeMap<&'static str, String>,
}

impl Credentials {
    /// The keys from the process environment (call it once, at start-up).
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The keys from a Secret's data (same key names); unknown keys are ignored.
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        Self::from_lookup(|k| map.get(k).cloned())
    }

    /// Per key: this value, else `fallback`'s (a Secret over the environment).
    pub fn or(mut self, fallback: Self) -> Self {
        for (k, v) in fallback.values {
            self.values.entry(k).or_insert(v);
        }
        self
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let values = KEYS
            .iter()
            .filter_map(|&k| {
                let v = get(k)?;
                let v = v.trim();
                (!v.is_empty()).then(|| (k, v.to_owned()))
            })
            .collect();
        Self { values }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub(crate) fn region(&self) -> &str {
        self.get("AWS_REGION").unwrap_or("us-east-1")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.values {
            if SECRET.contains(k) {
                map.entry(k, &"<redacted>");
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secret_values_override_per_key_and_never_print() {
        let secret = Credentials::from_map(&map(&[
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("HF_TOKEN", "hf_abc"),
            ("other", "x"),
        ]));
        let env = Credentials::from_map(&map(&[
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_REGION", ""),
        ]));
        let merged = secret.or(env);
        assert_eq!(merged.get("AWS_SECRET_ACCESS_KEY"), Some("s3cr3t"));
        assert_eq!(merged.get("AWS_ACCESS_KEY_ID"), Some("AKIAENV"));
        assert_eq!(merged.region(), "us-east-1", "empty values count as unset");
        assert_eq!(merged.get("other"), None);
        let shown = format!("{merged:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("hf_abc"),
            "{shown}"
        );
        assert!(
            shown.contains("AKIAENV") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
