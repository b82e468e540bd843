//! The Kubernetes pieces AIBrix documents are made of: object metadata, label selectors and
//! object references, with Kubernetes' own field names.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, fail};
use crate::names::{dns_label_problem, dns_subdomain_problem};

/// The pod label AIBrix discovery reads to know which model a pod serves.
pub const MODEL_NAME_LABEL: &str = "model.aibrix.ai/name";

/// The label `brix up` puts on each replica with its id, so a `podSelector` can pin one.
pub const REPLICA_LABEL: &str = "brix.dev/replica";

/// `metadata` of a resource document: the fields Brix reads.
///
/// Fields the Kubernetes API server fills in (`uid`, `resourceVersion`, `creationTimestamp`,
/// `managedFields`, ...) are accepted and dropped, so `kubectl get -o yaml` output loads;
/// any other key is an error, so a typo such as `annotation:` is not silently ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(from = "RawMeta")]
pub struct ObjectMeta {
    /// Object name, unique per kind in the file; a ModelAdapter's name is also the model name
    /// clients use for the adapter.
    pub name: String,
    /// Kubernetes namespace; informative locally.
    pub namespace: Option<String>,
    /// Labels; for a PodAutoscaler, legacy `*autoscaling.aibrix.ai/*` keys are read here too.
    pub labels: BTreeMap<String, String>,
    /// Annotations; for a PodAutoscaler, the `autoscaling.aibrix.ai/*` knobs.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "server-populated fields are parsed only to be dropped"
)]
struct RawMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    // Server-populated fields, accepted and dropped.
    #[serde(default)]
    uid: IgnoredAny,
    #[serde(default)]
    resource_version: IgnoredAny,
    #[serde(default)]
    generation: IgnoredAny,
    #[serde(default)]
    creation_timestamp: IgnoredAny,
    #[serde(default)]
    deletion_timestamp: IgnoredAny,
    #[serde(default)]
    deletion_grace_period_seconds: IgnoredAny,
    #[serde(default)]
    managed_fields: IgnoredAny,
    #[serde(default)]
    self_link: IgnoredAny,
    #[serde(default)]
    finalizers: IgnoredAny,
    #[serde(default)]
    owner_references: IgnoredAny,
    #[serde(default)]
    generate_name: IgnoredAny,
}

impl From<RawMeta> for ObjectMeta {
    fn from(raw: RawMeta) -> Self {
        Self {
            name: raw.name,
            namespace: raw.namespace,
            labels: raw.labels,
            annotations: raw.annotations,
        }
    }
}

impl ObjectMeta {
    /// Name and namespace syntax, as the Kubernetes API server would check them.
    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        if let Some(problem) = dns_subdomain_problem(&self.name) {
            return fail("metadata.name", problem);
        }
        if let Some(problem) = self.namespace.as_deref().and_then(dns_label_problem) {
            return fail("metadata.namespace", problem);
        }
        Ok(())
    }
}

/// A Kubernetes label selector (`matchLabels` AND every `matchExpressions` entry).
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels a pod must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements a pod must also meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based selector requirement.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// Label key the requirement is about.
    pub key: String,
    /// How the key's value is compared with `values`.
    pub operator: SelectorOperator,
    /// Values for `In` / `NotIn`; must be empty for `Exists` / `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub values: Vec<String>,
}

/// Operators of a set-based label requirement, as Kubernetes spells them.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub enum SelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// Whether a pod with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    SelectorOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// The selector in the API server's query syntax (`a=b,c in (d,e),!f`, values sorted): what
    /// a list call's `labelSelector` takes and a `/scale` subresource reports.
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            let mut values = r.values.clone();
            values.sort();
            let values = values.join(",");
            parts.push(match r.operator {
                SelectorOperator::In => format!("{} in ({values})", r.key),
                SelectorOperator::NotIn => format!("{} notin ({values})", r.key),
                SelectorOperator::Exists => r.key.clone(),
                SelectorOperator::DoesNotExist => format!("!{}", r.key),
            });
        }
        parts.join(",")
    }

    /// Kubernetes' rules for requirements: `In`/`NotIn` need values, `Exists`/`DoesNotExist`
    /// take none.
    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        for (i, r) in self.match_expressions.iter().enumerate() {
            let at = format!("matchExpressions[{i}]");
            if r.key.is_empty() {
                return fail(format!("{at}.key"), "must not be empty");
            }
            let wants_values = matches!(r.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if wants_values && r.values.is_empty() {
                return fail(
                    format!("{at}.values"),
                    format!("must not be empty for operator {:?}", r.operator),
                );
            }
            if !wants_values && !r.values.is_empty() {
                return fail(
                    format!("{at}.values"),
                    format!("must be empty for operator {:?}", r.operator),
                );
            }
        }
        Ok(())
    }
}

/// A reference to another object (Kubernetes `ObjectReference`); Brix reads `kind` and `name`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    /// Kind of the referent (`Deployment` for a Brix model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the referent: a model name in the fleet file.
    pub name: String,
    /// API version of the referent (`apps/v1` for a Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Namespace of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// UID of the referent; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Resource version of the referent; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Field path within the referent; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

/// A reference to an object in the same namespace, by name (a Secret, here).
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}
