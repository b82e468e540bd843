//! What `brix status` and `/metrics` show of each autoscaler. Metric labels are the
//! autoscaler's name and its model, both from the fleet file: bounded, never from clients.

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use serde::{Deserialize, Serialize};

/// One decision as `brix status` shows it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DecisionStatus {
    /// Seconds since `brix up` started.
    pub at_s: f64,
    /// The count before.
    pub current: u32,
    /// The count decided.
    pub desired: u32,
    /// One line: inputs, recommendation, what limited it.
    pub reason: String,
}

/// One autoscaler now.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct AutoscalerStatus {
    /// `metadata.name`.
    pub name: String,
    /// The model it scales.
    pub model: String,
    /// `HPA`, `KPA`, `APA` or `SLO`.
    pub strategy: String,
    /// Each source's metric and per-replica target, `metric=target`.
    pub targets: Vec<String>,
    /// `minReplicas`.
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// Seconds between decisions.
    pub sync_s: f64,
    /// The count last set.
    pub desired: u32,
    /// Replicas the platform runs that are not draining.
    pub current: u32,
    /// Ready replicas.
    pub ready: u32,
    /// Replicas starting.
    pub starting: u32,
    /// Requests the activator holds (scale from zero).
    pub held: u32,
    /// KPA panic mode at the last decision.
    pub panic: bool,
    /// Changes of the desired count so far.
    pub scale_events: u64,
    /// The last failure to read a source or to scale, if any.
    pub last_error: Option<String>,
    /// The most recent decisions, newest last.
    pub decisions: Vec<DecisionStatus>,
}

/// The autoscalers' series on the gateway's `/metrics`.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub(crate) desired: IntGaugeVec,
    pub(crate) current: IntGaugeVec,
    pub(crate) decisions: IntCounterVec,
    pub(crate) scale_events: IntCounterVec,
    pub(crate) panic: IntGaugeVec,
}

const LABELS: &[&str] = &["autoscaler", "model"];

impl Series {
    /// The families, unregistered.
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let gauge = |n: &str, h: &str| IntGaugeVec::new(Opts::new(n, h), LABELS);
        let counter = |n: &str, h: &str| IntCounterVec::new(Opts::new(n, h), LABELS);
        Ok(Self {
            desired: gauge(
                "brix_autoscaler_desired_replicas",
                "Replicas the autoscaler last asked the platform for.",
            )?,
            current: gauge(
                "brix_autoscaler_current_replicas",
                "Replicas of the target model the platform runs (ready or starting, not draining).",
            )?,
            decisions: counter(
                "brix_autoscaler_decisions_total",
                "Decisions the autoscaler made (one every sync period, and on activation).",
            )?,
            scale_events: counter(
                "brix_autoscaler_scale_events_total",
                "Decisions that changed the desired replica count.",
            )?,
            panic: gauge(
                "brix_autoscaler_panic",
                "1 while the autoscaler is in KPA panic mode, else 0.",
            )?,
        })
    }

    /// Every family, to register with the gateway's registry.
    pub(crate) fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.desired.clone()),
            Box::new(self.current.clone()),
            Box::new(self.decisions.clone()),
            Box::new(self.scale_events.clone()),
            Box::new(self.panic.clone()),
        ]
    }
}
