//! `ModelAdapter` (`model.aibrix.ai/v1alpha1`): a LoRA adapter to load onto a model's replicas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, fail};
use crate::meta::{LabelSelector, LocalObjectReference, MODEL_NAME_LABEL, ObjectMeta};

/// The `apiVersion` a ModelAdapter document must carry.
pub const ADAPTER_API_VERSION: &str = "model.aibrix.ai/v1alpha1";

/// Adapter placement policies AIBrix's controller knows (`default` = the manager's choice,
/// `leastAdapters`).
pub const SCHEDULER_NAMES: [&str; 6] = [
    "default",
    "random",
    "leastAdapters",
    "binPack",
    "leastLatency",
    "leastThroughput",
];

/// A LoRA adapter document, as AIBrix defines it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelAdapter {
    /// `apiVersion` as written; [`crate::validate_resources`] checks it.
    pub api_version: String,
    /// Name (also the model name clients use for the adapter), labels, annotations.
    pub metadata: ObjectMeta,
    /// What to load and where.
    pub spec: ModelAdapterSpec,
}

/// `spec` of a ModelAdapter, with AIBrix's field names. With feature `kube` it is also the
/// custom resource's spec ([`crate::ModelAdapterResource`]).
#[cfg_attr(feature = "kube", derive(kube::CustomResource))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "model.aibrix.ai",
        version = "v1alpha1",
        kind = "ModelAdapter",
        root = "ModelAdapterResource",
        namespaced,
        status = "crate::ModelAdapterStatus",
        shortname = "ma",
        category = "aibrix",
        doc = "A LoRA adapter loaded onto the pods a selector picks (AIBrix's ModelAdapter).",
        printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
        printcolumn = r#"{"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"}"#,
        printcolumn = r#"{"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"}"#,
        printcolumn = r#"{"name": "Model Path", "type": "string", "jsonPath": ".spec.artifactURL"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
    )
)]
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(description = "What to load (artifactURL) and where (podSelector, replicas).")]
pub struct ModelAdapterSpec {
    /// The model the adapter was trained for; must be a model in the fleet file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Candidate replicas. AIBrix requires it; Brix accepts its absence and then selects the
    /// replicas of `baseModel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub pod_selector: Option<LabelSelector>,
    /// Placement policy, one of [`SCHEDULER_NAMES`].
    #[serde(default = "default_scheduler")]
    #[schemars(
        description = "Placement policy: default, random, leastAdapters, binPack, leastLatency or leastThroughput."
    )]
    pub scheduler_name: String,
    /// Where the adapter's weights are: `huggingface://`, `s3://`, `gcs://`, `tos://`,
    /// `http(s)://` or a local path.
    #[serde(rename = "artifactURL")]
    pub artifact_url: String,
    /// Secret holding the artifact store's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectReference>,
    /// Replicas to load the adapter on; unset loads it on every selected replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<u32>,
    /// Extra settings; key `api-key` becomes `Authorization: Bearer` to the engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_config: BTreeMap<String, String>,
}

fn default_scheduler() -> String {
    "default".into()
}

/// Where an adapter's weights live, parsed from `artifactURL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact<'a> {
    /// `huggingface://org/repo`: the repository id (`org/repo`), which is what vLLM's
    /// `lora_path` takes.
    HuggingFace(&'a str),
    /// `s3://bucket/key`: everything after the scheme.
    S3(&'a str),
    /// `gcs://bucket/key`: everything after the scheme.
    Gcs(&'a str),
    /// `tos://bucket/key` (Volcano Engine object storage): everything after the scheme.
    Tos(&'a str),
    /// `http://` or `https://`: the whole URL (a directory holding `adapter_config.json` and
    /// the weights).
    Http(&'a str),
    /// A path on the machine (or in the pod) running the engine.
    Local(&'a str),
}

impl<'a> Artifact<'a> {
    /// Parses an `artifactURL`; the error says which schemes are known.
    pub fn parse(url: &'a str) -> Result<Self, String> {
        if url.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if url.chars().any(char::is_whitespace) {
            return Err(format!("'{url}' contains whitespace"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(Self::Local(url));
        };
        let artifact = match scheme {
            "huggingface" => Self::HuggingFace(rest),
            "s3" => Self::S3(rest),
            "gcs" => Self::Gcs(rest),
            "tos" => Self::Tos(rest),
            "http" | "https" => Self::Http(url),
            other => {
                return Err(format!(
                    "unknown scheme '{other}://'; use huggingface://, s3://, gcs://, tos://, \
                     http(s):// or a local path"
                ));
            }
        };
        if rest.trim_matches('/').is_empty() {
            return Err(format!("'{url}' names no repository or object"));
        }
        Ok(artifact)
    }
}

impl ModelAdapter {
    /// The model whose replicas take the adapter: `baseModel`, else the selector's
    /// `model.aibrix.ai/name` label.
    pub fn target_model(&self) -> Option<&str> {
        self.spec.base_model.as_deref().or_else(|| {
            self.spec
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.get(MODEL_NAME_LABEL))
                .map(String::as_str)
        })
    }

    /// The adapter's own rules; paths are relative to the document (`spec.artifactURL`).
    pub(crate) fn validate(&self, model_names: &[&str]) -> Result<(), FieldError> {
        let spec = &self.spec;
        if model_names.contains(&self.metadata.name.as_str()) {
            return fail(
                "metadata.name",
                format!(
                    "'{}' is also a model name; clients pick an adapter by its name, so it must \
                     differ from every model's",
                    self.metadata.name
                ),
            );
        }
        if let Err(problem) = Artifact::parse(&spec.artifact_url) {
            return fail("spec.artifactURL", problem);
        }
        if !SCHEDULER_NAMES.contains(&spec.scheduler_name.as_str()) {
            return fail(
                "spec.schedulerName",
                format!(
                    "unknown scheduler '{}'; expected one of {}",
                    spec.scheduler_name,
                    SCHEDULER_NAMES.join(", ")
                ),
            );
        }
        if spec.replicas == Some(0) {
            return fail(
                "spec.replicas",
                "must be at least 1 (leave it out to load on every replica)",
            );
        }
        if let Some(secret) = &spec.credentials_secret_ref
            && secret.name.is_empty()
        {
            return fail("spec.credentialsSecretRef.name", "must not be empty");
        }
        let selected = match &spec.pod_selector {
            Some(selector) => {
                selector
                    .validate()
                    .map_err(|e| e.under("spec.podSelector"))?;
                selector.match_labels.get(MODEL_NAME_LABEL)
            }
            None => None,
        };
        match (&spec.base_model, selected) {
            (Some(base), Some(label)) if base != label => fail(
                "spec.podSelector.matchLabels",
                format!(
                    "selects {MODEL_NAME_LABEL}={label} but baseModel is '{base}'; \
                     the adapter must go on its base model's replicas"
                ),
            ),
            (Some(base), _) => known_model("spec.baseModel", base, model_names),
            (None, Some(label)) => known_model(
                format!("spec.podSelector.matchLabels[{MODEL_NAME_LABEL}]"),
                label,
                model_names,
            ),
            (None, None) => fail(
                "spec.baseModel",
                format!(
                    "set baseModel (or podSelector.matchLabels[{MODEL_NAME_LABEL}]) to the \
                     model the adapter loads onto"
                ),
            ),
        }
    }
}

/// `Ok` when `name` is one of the fleet's models, else an error at `field` listing them.
pub(crate) fn known_model(
    field: impl Into<String>,
    name: &str,
    model_names: &[&str],
) -> Result<(), FieldError> {
    if model_names.contains(&name) {
        Ok(())
    } else {
        fail(
            field,
            format!(
                "'{name}' is not a model in this file (models: {})",
                model_names.join(", ")
            ),
        )
    }
}
