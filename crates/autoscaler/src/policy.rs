//! A PodAutoscaler document resolved into what the algorithms read: strategy, bounds, sources
//! with their targets, the knobs with defaults filled in, and the decision period.

use brix_api::{GATEWAY_METRICS, MetricSourceType, PodAutoscaler, ScalingKnobs, ScalingStrategy};

use crate::capacity::{ReplicaProfile, SloTarget};

/// The algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Strategy {
    /// Kubernetes HPA semantics (`autoscaling/v2`).
    Hpa,
    /// Knative KPA semantics (stable and panic windows over totals).
    Kpa,
    /// AIBrix's APA (tolerance bands, rate limits).
    Apa,
    /// Brix's SLO-capacity policy: token demand against replica capacity at the SLO.
    Slo,
}

impl Strategy {
    /// As written in `scalingStrategy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hpa => "HPA",
            Self::Kpa => "KPA",
            Self::Apa => "APA",
            Self::Slo => "SLO",
        }
    }

    /// Seconds between decisions: HPA's sync period (15 s), Knative's tick (2 s), AIBrix's
    /// resync (10 s) for APA, and 5 s for the SLO policy.
    pub fn default_sync_s(self) -> f64 {
        match self {
            Self::Hpa => 15.0,
            Self::Kpa => 2.0,
            Self::Apa => 10.0,
            Self::Slo => 5.0,
        }
    }
}

/// How a source's readings are aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SourceKind {
    /// Each ready pod's own value ([`crate::Reading::Pods`]): a per-pod mean is recorded.
    PerPod,
    /// One value for the target ([`crate::Reading::Total`]): an external endpoint.
    Total,
    /// The gateway's own measure of the model (an `external` source with no `endpoint`,
    /// `targetMetric` one of [`brix_api::GATEWAY_METRICS`]): a total the autoscaler derives
    /// from [`crate::Autoscaler::observe_load`]; the driver reads nothing for it.
    Gateway,
}

/// One metric source, resolved.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Source {
    /// `targetMetric` as written.
    pub metric: String,
    /// Per pod or total.
    pub kind: SourceKind,
    /// `targetValue`: per pod for pod sources; per replica for total sources.
    pub target: f64,
}

/// Everything one autoscaler needs to decide.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The PodAutoscaler's `metadata.name`.
    pub name: String,
    /// The model it scales.
    pub target: String,
    /// The algorithm.
    pub strategy: Strategy,
    /// Fewest replicas (0 allows scale to zero).
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Metric sources, in document order; `observe` takes their index.
    pub sources: Vec<Source>,
    /// Rates, tolerances, windows, cooldowns (AIBrix's annotations and defaults).
    pub knobs: ScalingKnobs,
    /// Seconds between decisions.
    pub sync_s: f64,
    /// A source whose newest sample is older than this counts as missing.
    pub stale_after_s: f64,
    /// How long a zero recommendation must last before the target goes to zero (Knative's
    /// `scale-to-zero-grace-period`, 30 s).
    pub scale_to_zero_grace_s: f64,
    /// The SLO-capacity policy's latency targets.
    pub slo: SloTarget,
    /// What one replica can serve and how long it takes to start (the SLO policy needs it;
    /// the others use only its start-up time, if given).
    pub profile: Option<ReplicaProfile>,
}

/// Why a document cannot become a policy (validation normally catches these first).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    /// The knobs do not parse.
    #[error(transparent)]
    Field(#[from] brix_api::FieldError),
    /// A metric source this build cannot read (validation refuses these first).
    #[error("spec.metricsSources[{0}]: metricSourceType {1} is not available outside Kubernetes")]
    Unsupported(usize, String),
    /// The SLO policy needs a replica profile.
    #[error("scalingStrategy SLO needs the engine's profile (a sim engine, or capacity given)")]
    NoProfile,
}

impl Policy {
    /// Resolves `doc`; `profile` describes one replica of the target model, when known.
    pub fn from_document(
        doc: &PodAutoscaler,
        profile: Option<ReplicaProfile>,
    ) -> Result<Self, PolicyError> {
        let knobs = doc.knobs()?;
        let slo = SloTarget::from_knobs(&knobs);
        let strategy = match doc.spec.scaling_strategy {
            ScalingStrategy::Hpa => Strategy::Hpa,
            ScalingStrategy::Kpa => Strategy::Kpa,
            ScalingStrategy::Apa => Strategy::Apa,
            ScalingStrategy::Slo => Strategy::Slo,
        };
        let mut sources = Vec::new();
        for (i, s) in doc.spec.metrics_sources.iter().enumerate() {
            let kind = match s.source_type() {
                MetricSourceType::Pod => SourceKind::PerPod,
                MetricSourceType::External if s.endpoint.is_some() => SourceKind::Total,
                MetricSourceType::External
                    if GATEWAY_METRICS.contains(&s.target_metric.as_str()) =>
                {
                    SourceKind::Gateway
                }
                other => {
                    return Err(PolicyError::Unsupported(
                        i,
                        format!("{other:?}").to_lowercase(),
                    ));
                }
            };
            sources.push(Source {
                metric: s.target_metric.clone(),
                kind,
                target: s.target().unwrap_or(1.0),
            });
        }
        if strategy == Strategy::Slo && profile.is_none() {
            return Err(PolicyError::NoProfile);
        }
        Ok(Self {
            name: doc.metadata.name.clone(),
            target: doc.spec.scale_target_ref.name.clone(),
            strategy,
            min_replicas: doc.min_replicas(),
            max_replicas: doc.spec.max_replicas,
            sources,
            sync_s: knobs
                .sync_period
                .map_or(strategy.default_sync_s(), |d| d.as_secs_f64()),
            scale_to_zero_grace_s: knobs.scale_to_zero_grace.as_secs_f64(),
            knobs,
            stale_after_s: 30.0,
            slo,
            profile,
        })
    }
}
