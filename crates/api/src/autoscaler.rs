//! `PodAutoscaler` (`autoscaling.aibrix.ai/v1alpha1`): how a model's replica count follows load.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::adapter::known_model;
use crate::error::{Deprecation, FieldError, fail};
use crate::knobs::{ScalingKnobs, resolve};
use crate::meta::{ObjectMeta, ObjectReference};
use crate::model::MAX_REPLICAS;
use crate::names::dns_label_problem;

/// The `apiVersion` a PodAutoscaler document must carry.
pub const AUTOSCALER_API_VERSION: &str = "autoscaling.aibrix.ai/v1alpha1";

/// An autoscaler document, as AIBrix defines it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodAutoscaler {
    /// `apiVersion` as written; [`crate::validate_resources`] checks it.
    pub api_version: String,
    /// Name, labels and the `autoscaling.aibrix.ai/*` annotations (see [`Self::knobs`]).
    pub metadata: ObjectMeta,
    /// Target, bounds, metrics and algorithm.
    pub spec: PodAutoscalerSpec,
}

/// `spec` of a PodAutoscaler, with AIBrix's field names. With feature `kube` it is also the
/// custom resource's spec ([`crate::PodAutoscalerResource`]).
#[cfg_attr(feature = "kube", derive(kube::CustomResource))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "autoscaling.aibrix.ai",
        version = "v1alpha1",
        kind = "PodAutoscaler",
        root = "PodAutoscalerResource",
        namespaced,
        status = "crate::PodAutoscalerStatus",
        shortname = "pa",
        category = "aibrix",
        doc = "How the replica count of an object with a /scale subresource follows load (AIBrix's PodAutoscaler).",
        printcolumn = r#"{"name": "MINPODS", "type": "integer", "jsonPath": ".spec.minReplicas"}"#,
        printcolumn = r#"{"name": "MAXPODS", "type": "integer", "jsonPath": ".spec.maxReplicas"}"#,
        printcolumn = r#"{"name": "REPLICAS", "type": "integer", "jsonPath": ".status.actualScale"}"#,
        printcolumn = r#"{"name": "STRATEGY", "type": "string", "jsonPath": ".spec.scalingStrategy"}"#,
        printcolumn = r#"{"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
    )
)]
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(description = "The scale target, replica bounds, metric sources and algorithm.")]
pub struct PodAutoscalerSpec {
    /// What to scale: a model in the fleet file, by `name` (`kind: Deployment` if given).
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub scale_target_ref: ObjectReference,
    /// One role of a StormService; Brix models have no roles, so validation refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_target_selector: Option<SubTargetSelector>,
    /// Fewest replicas; unset means 1, as in Kubernetes HPA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Most replicas.
    #[schemars(range(min = 1))]
    pub max_replicas: u32,
    /// Time windows with other replica bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// Where the scaling metrics come from; the largest recommendation over them wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_sources: Vec<MetricSource>,
    /// Stable averaging window in seconds (1-3600, default 180).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub observe_window_seconds: Option<u32>,
    /// KPA panic window in seconds (1-3600, default 60, at most the stable window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub panic_window_seconds: Option<u32>,
    /// Trend-based recommendations; unset disables them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictive: Option<PredictiveSpec>,
    /// The algorithm.
    pub scaling_strategy: ScalingStrategy,
}

/// Selects a sub-component (a StormService role) of the scale target.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubTargetSelector {
    /// Role to scale (e.g. `prefill`).
    #[serde(default)]
    pub role_name: String,
}

/// The scaling algorithm, as AIBrix names it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub enum ScalingStrategy {
    /// Kubernetes HPA semantics (AIBrix generates a native HPA).
    #[serde(rename = "HPA")]
    Hpa,
    /// Knative-style stable and panic windows.
    #[serde(rename = "KPA")]
    Kpa,
    /// AIBrix's tolerance-band proportional scaler.
    #[serde(rename = "APA")]
    Apa,
    /// Brix's SLO-capacity policy: token demand against what a replica serves at the SLO
    /// (not an AIBrix strategy; docs/autoscaling.md).
    #[serde(rename = "SLO")]
    Slo,
}

/// What an `external` source without an `endpoint` may read: the gateway's own measures of
/// the target model (a total for the model, not per pod), which Brix serves in place of
/// Kubernetes' external metrics API.
pub const GATEWAY_METRICS: [&str; 4] = [
    "gateway_in_flight",
    "gateway_requests_per_second",
    "gateway_prompt_tokens_per_second",
    "gateway_output_tokens_per_second",
];

/// One metric feed for the autoscaler.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSource {
    /// Where the value is read.
    pub metric_source_type: MetricSourceType,
    /// Scheme for `pod` and `external` sources; unset means `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_type: Option<ProtocolType>,
    /// `host:port` of an external source (e.g. the GPU optimizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// URL path of the Prometheus text (`metrics` for vLLM); unset means `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port of a `pod` source, as a string like AIBrix's; unset means the serving port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*[0-9]{1,5}\s*$"))]
    pub port: Option<String>,
    /// Metric name (`gpu_cache_usage_perc`, `num_requests_running`, `vllm:deployment_replicas`).
    pub target_metric: String,
    /// Per-pod target value, a decimal number in a string (`"0.5"`, `"100"`).
    #[schemars(regex(pattern = r"^\s*\+?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"))]
    pub target_value: String,
}

/// Where a metric is read from.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricSourceType {
    /// Each pod's own `/metrics`, averaged over pods.
    Pod,
    /// Kubernetes resource metrics (`cpu`, `memory`).
    Resource,
    /// Kubernetes custom metrics API.
    Custom,
    /// One global value from an external endpoint (the GPU optimizer) or the external
    /// metrics API.
    External,
    /// Deprecated AIBrix spelling of `external`; read as `external` with a deprecation.
    Domain,
}

/// URL scheme of a metric source.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolType {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

/// A recurring daily window with its own replica bounds.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// Unique within the autoscaler, DNS-label style.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// IANA time zone; unset means UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Days the window applies; empty means every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days_of_week: Vec<DayOfWeek>,
    /// Inclusive start, `HH:MM`.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start_time: String,
    /// Exclusive end, `HH:MM`, later than the start (no window crosses midnight).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end_time: String,
    /// `minReplicas` while the window is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// `maxReplicas` while the window is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
}

/// A weekday, written `Mon` ... `Sun` (case-insensitive) as AIBrix does.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(try_from = "String")]
#[schemars(extend(
    "pattern" = "^([Mm][Oo][Nn]|[Tt][Uu][Ee]|[Ww][Ee][Dd]|[Tt][Hh][Uu]|[Ff][Rr][Ii]|[Ss][Aa][Tt]|[Ss][Uu][Nn])$"
))]
pub enum DayOfWeek {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// Predictive scaling settings.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictiveSpec {
    /// How the projection is used; unset means `Preview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PredictiveMode>,
    /// How far ahead the trend is projected, 1-3600 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub horizon_seconds: Option<u32>,
}

/// How predictive recommendations are applied.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub enum PredictiveMode {
    /// Recorded in status only.
    Preview,
    /// May raise the replica floor.
    Auto,
}

impl FromStr for DayOfWeek {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "mon" => Self::Mon,
            "tue" => Self::Tue,
            "wed" => Self::Wed,
            "thu" => Self::Thu,
            "fri" => Self::Fri,
            "sat" => Self::Sat,
            "sun" => Self::Sun,
            _ => return Err(format!("'{s}' is not a day: expected Mon, Tue, ... Sun")),
        })
    }
}

impl TryFrom<String> for DayOfWeek {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for ScalingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hpa => "HPA",
            Self::Kpa => "KPA",
            Self::Apa => "APA",
            Self::Slo => "SLO",
        })
    }
}

impl Schedule {
    /// Start and end as minutes after midnight, or `None` if either is not strict `HH:MM`.
    pub fn window_minutes(&self) -> Option<(u16, u16)> {
        Some((hh_mm(&self.start_time)?, hh_mm(&self.end_time)?))
    }
}

/// Minutes after midnight for a strict `HH:MM` (`00:00` to `23:59`).
fn hh_mm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl MetricSource {
    /// The source type with the deprecated `domain` read as `external`.
    pub fn source_type(&self) -> MetricSourceType {
        match self.metric_source_type {
            MetricSourceType::Domain => MetricSourceType::External,
            other => other,
        }
    }

    /// `targetValue` as a number (validation guarantees it parses and is positive).
    pub fn target(&self) -> Option<f64> {
        self.target_value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.target_metric.trim().is_empty() {
            return fail("targetMetric", "must not be empty");
        }
        if self.target().is_none() {
            return fail(
                "targetValue",
                format!(
                    "'{}' is not a positive decimal number (write e.g. \"0.5\" or \"100\")",
                    self.target_value
                ),
            );
        }
        if let Some(port) = &self.port
            && !port.trim().parse::<u16>().is_ok_and(|p| p > 0)
        {
            return fail("port", format!("'{port}' is not a port number"));
        }
        match self.source_type() {
            // AIBrix reads these through the Kubernetes metrics APIs (metrics.k8s.io,
            // custom.metrics.k8s.io), which Brix does not have outside Kubernetes.
            MetricSourceType::Resource | MetricSourceType::Custom => {
                let kind = if self.metric_source_type == MetricSourceType::Resource {
                    "resource"
                } else {
                    "custom"
                };
                return fail(
                    "metricSourceType",
                    format!(
                        "'{kind}' reads the Kubernetes metrics API, which Brix does not have \
                         outside Kubernetes; use pod (the engines' /metrics) or external"
                    ),
                );
            }
            MetricSourceType::External => match &self.endpoint {
                Some(endpoint) => {
                    if endpoint.trim().is_empty() || endpoint.contains("://") {
                        return fail(
                            "endpoint",
                            format!("'{endpoint}' should be host:port, without a scheme"),
                        );
                    }
                    if self.path.as_deref().is_none_or(|p| p.trim().is_empty()) {
                        return fail("path", "required for an external source with an endpoint");
                    }
                }
                // Without an endpoint AIBrix asks external.metrics.k8s.io; Brix answers the
                // gateway's own measures of the model instead.
                None => {
                    if !GATEWAY_METRICS.contains(&self.target_metric.as_str()) {
                        return fail(
                            "targetMetric",
                            format!(
                                "'{}': an external source without an endpoint reads the \
                                 gateway's own measure of the model, one of {}",
                                self.target_metric,
                                GATEWAY_METRICS.join(", ")
                            ),
                        );
                    }
                    for (field, set) in [
                        ("path", self.path.is_some()),
                        ("port", self.port.is_some()),
                        ("protocolType", self.protocol_type.is_some()),
                    ] {
                        if set {
                            return fail(
                                field,
                                "not used by a gateway source (an external source without an \
                                 endpoint); remove it",
                            );
                        }
                    }
                }
            },
            MetricSourceType::Pod | MetricSourceType::Domain => {}
        }
        Ok(())
    }
}

impl PodAutoscaler {
    /// Fewest replicas: `minReplicas`, or 1 when unset.
    pub fn min_replicas(&self) -> u32 {
        self.spec.min_replicas.unwrap_or(1)
    }

    /// The algorithm's tunables from annotations (legacy names included) and the window
    /// fields, with AIBrix's defaults; errors name the annotation at fault.
    pub fn knobs(&self) -> Result<ScalingKnobs, FieldError> {
        resolve(&self.metadata, &self.spec).map(|(knobs, _)| knobs)
    }

    /// Legacy spellings this document uses, relative to the document.
    pub(crate) fn deprecations(&self) -> Vec<Deprecation> {
        let mut out = match resolve(&self.metadata, &self.spec) {
            Ok((_, deprecations)) => deprecations,
            Err(_) => Vec::new(),
        };
        for (i, source) in self.spec.metrics_sources.iter().enumerate() {
            if source.metric_source_type == MetricSourceType::Domain {
                out.push(Deprecation {
                    field: format!("spec.metricsSources[{i}].metricSourceType"),
                    message: "'domain' is deprecated in AIBrix; read as 'external', write \
                              external"
                        .into(),
                });
            }
        }
        out
    }

    /// The autoscaler's own rules; paths are relative to the document (`spec.maxReplicas`).
    pub(crate) fn validate(&self, model_names: &[&str]) -> Result<(), FieldError> {
        let spec = &self.spec;
        validate_target(spec, model_names)?;
        validate_bounds("spec", spec.min_replicas, spec.max_replicas)?;
        validate_sources(&spec.metrics_sources, spec.scaling_strategy)?;
        for (field, value) in [
            ("spec.observeWindowSeconds", spec.observe_window_seconds),
            ("spec.panicWindowSeconds", spec.panic_window_seconds),
            (
                "spec.predictive.horizonSeconds",
                spec.predictive.as_ref().and_then(|p| p.horizon_seconds),
            ),
        ] {
            if value.is_some_and(|v| !(1..=3600).contains(&v)) {
                return fail(field, "must be between 1 and 3600 seconds");
            }
        }
        let mut names = BTreeSet::new();
        for (i, schedule) in spec.schedules.iter().enumerate() {
            let at = format!("spec.schedules[{i}]");
            schedule.validate(&at, spec)?;
            if !names.insert(schedule.name.as_str()) {
                return fail(
                    format!("{at}.name"),
                    format!("'{}' is used twice", schedule.name),
                );
            }
        }
        resolve(&self.metadata, spec).map(|_| ())
    }
}

impl Schedule {
    /// One schedule's rules; `at` is its path, `spec` gives the bounds it overrides.
    fn validate(&self, at: &str, spec: &PodAutoscalerSpec) -> Result<(), FieldError> {
        if let Some(problem) = dns_label_problem(&self.name) {
            return fail(format!("{at}.name"), problem);
        }
        if let Some(tz) = &self.timezone {
            let ok = !tz.is_empty()
                && tz
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
            if !ok {
                return fail(
                    format!("{at}.timezone"),
                    format!("'{tz}' is not an IANA time zone name like Europe/Paris"),
                );
            }
        }
        let mut days = BTreeSet::new();
        for (d, day) in self.days_of_week.iter().enumerate() {
            if !days.insert(*day) {
                return fail(format!("{at}.daysOfWeek[{d}]"), "listed twice");
            }
        }
        for (field, value) in [("startTime", &self.start_time), ("endTime", &self.end_time)] {
            if hh_mm(value).is_none() {
                return fail(
                    format!("{at}.{field}"),
                    format!("'{value}' is not HH:MM (00:00 to 23:59)"),
                );
            }
        }
        if let Some((start, end)) = self.window_minutes()
            && end <= start
        {
            return fail(
                format!("{at}.endTime"),
                "must be later than startTime (windows cannot cross midnight)",
            );
        }
        if self.min_replicas.is_none() && self.max_replicas.is_none() {
            return fail(at, "set minReplicas, maxReplicas or both");
        }
        validate_bounds(
            at,
            self.min_replicas.or(spec.min_replicas),
            self.max_replicas.unwrap_or(spec.max_replicas),
        )
    }
}

/// `scaleTargetRef` names a model (a Deployment, if it says), and no sub-target.
fn validate_target(spec: &PodAutoscalerSpec, model_names: &[&str]) -> Result<(), FieldError> {
    let target = &spec.scale_target_ref;
    known_model("spec.scaleTargetRef.name", &target.name, model_names)?;
    if let Some(kind) = target.kind.as_deref().filter(|k| *k != "Deployment") {
        return fail(
            "spec.scaleTargetRef.kind",
            format!("'{kind}': Brix scales models, which are Deployments; use kind: Deployment"),
        );
    }
    if let Some(version) = target.api_version.as_deref().filter(|v| *v != "apps/v1") {
        return fail(
            "spec.scaleTargetRef.apiVersion",
            format!("'{version}': a Deployment is apps/v1"),
        );
    }
    if spec.sub_target_selector.is_some() {
        return fail(
            "spec.subTargetSelector",
            "Brix models have no roles (StormService); remove it",
        );
    }
    Ok(())
}

/// At least one source (none is fine for the SLO policy, which reads the gateway's load),
/// each valid, each metric once.
fn validate_sources(sources: &[MetricSource], strategy: ScalingStrategy) -> Result<(), FieldError> {
    if sources.is_empty() && strategy != ScalingStrategy::Slo {
        return fail(
            "spec.metricsSources",
            "at least one metric source is required (only scalingStrategy SLO may have none)",
        );
    }
    let mut metrics = BTreeSet::new();
    for (i, source) in sources.iter().enumerate() {
        let at = format!("spec.metricsSources[{i}]");
        source.validate().map_err(|e| e.under(&at))?;
        if !metrics.insert(source.target_metric.as_str()) {
            return fail(
                format!("{at}.targetMetric"),
                format!(
                    "'{}' is already used by another source (AIBrix would keep only the last)",
                    source.target_metric
                ),
            );
        }
    }
    Ok(())
}

/// `1 ≤ max ≤ MAX_REPLICAS` and `min ≤ max`, for the bounds under `at`.
fn validate_bounds(at: &str, min: Option<u32>, max: u32) -> Result<(), FieldError> {
    if max == 0 {
        return fail(format!("{at}.maxReplicas"), "must be at least 1");
    }
    if max > MAX_REPLICAS {
        return fail(
            format!("{at}.maxReplicas"),
            format!("{max} is more than {MAX_REPLICAS}, the most replicas of one model"),
        );
    }
    if let Some(min) = min.filter(|m| *m > max) {
        return fail(
            format!("{at}.minReplicas"),
            format!("{min} is greater than maxReplicas ({max})"),
        );
    }
    Ok(())
}
