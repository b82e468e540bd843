//! The gateway's own Prometheus metrics (text format 0.0.4 on `/metrics`): what clients got,
//! as the gateway saw it, and why routing decided as it did.
//!
//! Label policy: every label value comes from a bounded set, never from what a client sent.
//! `model` is a model some pod serves, else `unknown`; `strategy` is a canonical strategy
//! name (a mix: its names sorted, joined by `+`, weights dropped), else `invalid`; `pod` is a
//! pod discovery lists, and its series are removed when it leaves ([`Metrics::forget_pod`]).

use std::collections::HashMap;

use brix_router::Weighted;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 320.0, 640.0,
];
const SHARE_BUCKETS: &[f64] = &[0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0];
const TPOT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// Every series the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by model, status and strategy.
    pub requests: IntCounterVec,
    /// Requests the gateway refused or lost, by model and reason.
    pub errors: IntCounterVec,
    /// Requests in flight, by model and pod.
    pub in_flight: IntGaugeVec,
    /// Time to first token, as the client sees it through the gateway.
    pub ttft: HistogramVec,
    /// Time per output token after the first.
    pub tpot: HistogramVec,
    /// Request start to last byte.
    pub e2e: HistogramVec,
    /// Tokens in and out, from the engines' usage reports.
    pub tokens: IntCounterVec,
    /// Routing decisions by strategy, chosen pod and fallback (`none` when the strategy decided).
    pub decisions: IntCounterVec,
    /// Upstream attempts retried on another pod.
    pub retries: IntCounterVec,
    /// Retries refused because the retry budget was spent.
    pub retry_budget_exhausted: IntCounterVec,
    /// Engine failures reported to passive health, by pod and kind.
    pub upstream_failures: IntCounterVec,
    /// 1 while a pod is in the candidate set.
    pub pod_healthy: IntGaugeVec,
    /// Requests the activator holds for a model scaling from zero (models from the fleet
    /// file only).
    pub activator_held: IntGaugeVec,
    /// Requests held for adapters being placed (all adapters together).
    pub adapter_held: IntGauge,
    /// The optimizer's plan stage, by model (optimized models only) and outcome.
    pub plan_routing: IntCounterVec,
    /// Exact-index metrics (KV events).
    pub kv: KvMetrics,
}

/// What the KV-event subscribers applied per pod, and how the approximate index compared
/// with the exact one (docs/gateway.md, "KV events").
#[derive(Debug)]
pub struct KvMetrics {
    /// Events applied, by pod and kind (`stored`, `removed`, `cleared`).
    pub events: IntCounterVec,
    /// Gaps by pod and kind: `seq` (batches the replay could not supply), `parent` (a stored
    /// block whose parent the index never saw).
    pub gaps: IntCounterVec,
    /// Event batches lost for good, by pod.
    pub lost: IntCounterVec,
    /// Exact indexes cleared by the gateway, by pod and reason (`lost`: a gap not filled;
    /// `reset`: the sequence went back, the engine restarted).
    pub clears: IntCounterVec,
    /// Blocks refused because the pod's index was full.
    pub full: IntCounterVec,
    /// Blocks in each pod's exact index.
    pub blocks: IntGaugeVec,
    /// Prompt tokens routed to pods with an exact index, by model and whether the chosen
    /// pod held them (`cached`) or must compute them (`uncached`).
    pub routed_tokens: IntCounterVec,
    /// Approximate-index guesses compared with the exact index, by model and outcome
    /// (`agree` within 10 % of the prompt, `over`, `under`).
    pub predictions: IntCounterVec,
    /// |approximate − exact| cached share of the prompt, per candidate with an exact index.
    pub prediction_error: HistogramVec,
}

/// The metric label of a model: itself when known, else `unknown`.
pub fn model_label(model: &str, known: bool) -> String {
    if known {
        model.to_string()
    } else {
        "unknown".to_string()
    }
}

/// The metric label of a strategy: canonical names only (a mix's names sorted and joined by
/// `+`, weights dropped), so client-chosen weights cannot mint new series.
pub fn strategy_label(w: &Weighted) -> String {
    let mut names: Vec<&str> = w.0.iter().map(|(s, _)| s.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join("+")
}

/// Removes every series of `vec` whose `label` is `value`.
fn remove_where<B: MetricVecBuilder>(vec: &MetricVec<B>, label: &str, value: &str) {
    for family in vec.collect() {
        for m in family.get_metric() {
            let pairs = m.get_label();
            if !pairs
                .iter()
                .any(|p| p.name() == label && p.value() == value)
            {
                continue;
            }
            let labels: HashMap<&str, &str> = pairs.iter().map(|p| (p.name(), p.value())).collect();
            let _ = vec.remove(&labels);
        }
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["model"],
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        Ok(Self {
            requests: counter(
                "brix_gateway_requests_total",
                "Requests answered, by model, HTTP status and routing strategy.",
                &["model", "status", "strategy"],
            )?,
            errors: counter(
                "brix_gateway_errors_total",
                "Requests the gateway refused or lost, by model and reason.",
                &["model", "reason"],
            )?,
            in_flight: gauge(
                "brix_gateway_in_flight_requests",
                "Requests in flight through the gateway, by model and pod.",
                &["model", "pod"],
            )?,
            ttft: histogram(
                "brix_gateway_time_to_first_token_seconds",
                "Time from request arrival to the first response byte from the engine.",
                LATENCY_BUCKETS,
            )?,
            tpot: histogram(
                "brix_gateway_time_per_output_token_seconds",
                "Mean time per output token after the first, per request.",
                TPOT_BUCKETS,
            )?,
            e2e: histogram(
                "brix_gateway_e2e_request_latency_seconds",
                "Time from request arrival to the last response byte.",
                LATENCY_BUCKETS,
            )?,
            tokens: counter(
                "brix_gateway_tokens_total",
                "Tokens in (prompt) and out (completion), from engine usage reports.",
                &["model", "kind"],
            )?,
            decisions: counter(
                "brix_gateway_routing_decisions_total",
                "Routing decisions by strategy, chosen pod and fallback (none = the strategy decided).",
                &["strategy", "pod", "fallback"],
            )?,
            retries: counter(
                "brix_gateway_upstream_retries_total",
                "Upstream attempts that failed before any response byte and were retried on another pod.",
                &["model"],
            )?,
            retry_budget_exhausted: counter(
                "brix_gateway_retry_budget_exhausted_total",
                "Failed attempts not retried because the retry budget was spent.",
                &["model"],
            )?,
            upstream_failures: counter(
                "brix_gateway_upstream_failures_total",
                "Engine failures reported to passive health: connect, status_5xx, first_byte_timeout, stream_stalled.",
                &["pod", "kind"],
            )?,
            pod_healthy: gauge(
                "brix_gateway_pod_healthy",
                "1 while the pod is in the candidate set, 0 while it is out.",
                &["pod", "address"],
            )?,
            activator_held: gauge(
                "brix_activator_held_requests",
                "Requests held for a model with no ready replica while one starts (scale from zero).",
                &["model"],
            )?,
            plan_routing: counter(
                "brix_gateway_plan_routing_total",
                "Requests of optimized models by plan-stage outcome: group (narrowed to the deployment the plan drew), fallback (no share for the shape or no ready pod in a planned group: all pods).",
                &["model", "outcome"],
            )?,
            adapter_held: {
                let g = IntGauge::new(
                    "brix_gateway_adapter_held_requests",
                    "Requests held for LoRA adapters whose placement is in progress, all adapters together.",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            kv: KvMetrics {
                events: counter(
                    "brix_gateway_kv_events_total",
                    "KV events applied to the pod's exact index, by kind (stored, removed, cleared).",
                    &["pod", "kind"],
                )?,
                gaps: counter(
                    "brix_gateway_kv_event_gaps_total",
                    "KV event gaps: seq (batches the replay could not supply), parent (a stored block with an unknown parent).",
                    &["pod", "kind"],
                )?,
                lost: counter(
                    "brix_gateway_kv_batches_lost_total",
                    "KV event batches lost for good (not replayed).",
                    &["pod"],
                )?,
                clears: counter(
                    "brix_gateway_kv_index_clears_total",
                    "Exact indexes cleared by the gateway, by reason (lost: a gap not filled; reset: the engine restarted).",
                    &["pod", "reason"],
                )?,
                full: counter(
                    "brix_gateway_kv_index_full_total",
                    "Stored blocks refused because the pod's exact index was full.",
                    &["pod"],
                )?,
                blocks: gauge(
                    "brix_gateway_kv_index_blocks",
                    "Blocks in the pod's exact index (its engine's prefix cache as its events tell).",
                    &["pod"],
                )?,
                routed_tokens: counter(
                    "brix_gateway_kv_routed_prompt_tokens_total",
                    "Prompt tokens routed to pods with an exact index: cached there, or uncached.",
                    &["model", "kind"],
                )?,
                predictions: counter(
                    "brix_gateway_kv_predictions_total",
                    "Approximate prefix-index guesses per candidate with an exact index: agree (within 10% of the prompt), over, under.",
                    &["model", "outcome"],
                )?,
                prediction_error: histogram(
                    "brix_gateway_kv_prediction_error_ratio",
                    "|approximate - exact| cached share of the prompt, per candidate with an exact index.",
                    SHARE_BUCKETS,
                )?,
            },
            registry,
        })
    }

    /// Adds a collector from code beside the gateway (the autoscalers).
    pub fn register(&self, c: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(c)
    }

    /// A gauge handle for one (model, pod) pair, incremented now and decremented on drop.
    pub fn in_flight_guard(&self, model: &str, pod: &str) -> GaugeGuard {
        let g = self.in_flight.with_label_values(&[model, pod]);
        g.inc();
        GaugeGuard(g)
    }

    /// Drops every series of a pod that left, so `/metrics` lists live pods only.
    pub fn forget_pod(&self, pod: &str) {
        remove_where(&self.decisions, "pod", pod);
        remove_where(&self.in_flight, "pod", pod);
        remove_where(&self.upstream_failures, "pod", pod);
        remove_where(&self.pod_healthy, "pod", pod);
        for vec in [
            &self.kv.events,
            &self.kv.gaps,
            &self.kv.lost,
            &self.kv.clears,
        ] {
            remove_where(vec, "pod", pod);
        }
        remove_where(&self.kv.full, "pod", pod);
        remove_where(&self.kv.blocks, "pod", pod);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

/// Decrements its gauge when dropped, so cancelled requests leave the in-flight count too.
#[derive(Debug)]
pub struct GaugeGuard(IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
