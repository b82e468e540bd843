//! What `brix status` and `GET /brix/adapters` show of a ModelAdapter: AIBrix's phases and
//! conditions, with Brix's stricter meaning of ready (the engine's `/v1/models` lists it).

use serde::{Deserialize, Serialize};

/// One ModelAdapter's state.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct AdapterStatus {
    /// `metadata.name`: the model name clients send.
    pub name: String,
    /// The model whose replicas load it.
    pub base_model: String,
    /// `spec.artifactURL` without any query string.
    pub artifact: String,
    /// `Pending`, `Scheduled`, `Running`, `Failed` or `Deleting`.
    pub phase: String,
    /// Replicas the placement wants it on now (`spec.replicas`, more when hot).
    pub desired_replicas: u32,
    /// Replicas whose `/v1/models` lists it and that are not draining it.
    pub ready_replicas: u32,
    /// Those replicas' ids.
    pub instances: Vec<String>,
    /// Ready replicas its base model and selector allow.
    pub candidates: Vec<String>,
    /// Requests per second for it through the gateway (last minute).
    pub traffic_rps: f64,
    /// Content digest of the verified artifact (`sha256-…`), once fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `Initialized` (artifact verified), `Scheduled` (placed on as many replicas as wanted),
    /// `Ready` (loaded on all of them).
    pub conditions: Vec<Condition>,
}

/// A Kubernetes-style condition.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Condition {
    /// `Initialized`, `Scheduled` or `Ready`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    /// One CamelCase word.
    pub reason: String,
    /// Why, in a sentence (never a secret).
    pub message: String,
}

impl Condition {
    pub(crate) fn new(kind: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

impl AdapterStatus {
    /// The condition of `kind`, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// One line for `brix status`.
    pub fn line(&self) -> String {
        let why = self
            .conditions
            .iter()
            .find(|c| c.status == "False")
            .map(|c| format!("  {}: {}", c.reason, c.message))
            .unwrap_or_default();
        format!(
            "  adapter {} ({}): {} {}/{} on [{}]{}",
            self.name,
            self.artifact,
            self.phase,
            self.ready_replicas,
            self.desired_replicas,
            self.instances.join(", "),
            why
        )
    }
}

/// `url` without a query string or user info: what status and logs may show.
pub(crate) fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = no_query.split_once("://") else {
        return no_query.to_string();
    };
    // User info is whatever precedes an `@` in the authority (before the first `/`).
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{}", &rest[authority.len()..]),
        None => no_query.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_carry_no_secrets() {
        assert_eq!(shown_url("s3://b/k?X-Amz-Signature=s"), "s3://b/k");
        assert_eq!(shown_url("https://u:p@host/a/b"), "https://host/a/b");
        assert_eq!(shown_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(shown_url("/local/dir"), "/local/dir");
    }
}
