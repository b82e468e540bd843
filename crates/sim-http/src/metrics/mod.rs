//! vLLM's Prometheus metrics (V1 names, labels and buckets), fed by the driver and rendered in
//! text format 0.0.4 at scrape time.
//!
//! Counters carry the `_total` suffix in their names because that is how vLLM's Python client
//! exposes them. Every series has the labels `model_name` (the served name) and `engine="0"`,
//! except the info gauges and `admission_rejections`, which follow vLLM's own label sets, and
//! `process_*`, which have none. Gauges are set from an engine snapshot when scraped; counters
//! and histograms grow as steps are delivered and requests finish. A request the client
//! abandoned is not booked as finished, as in vLLM.
//!
//! Modules: `families` (registration), `process` (`/proc/self`).

mod families;
mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use brix_sim::{EngineConfig, EngineSnapshot, EngineStats, Finished, StepOutput};
use prometheus::{IntCounter, Registry, TextEncoder};

use crate::kv_pool::PoolCounters;

use families::{Builder, Counters, Gauges, Histograms};
use process::Process;

/// What the metric set depends on besides the engine's running state.
#[derive(Clone, Debug)]
pub(crate) struct MetricsSpec<'a> {
    pub(crate) served_model_name: &'a str,
    pub(crate) engine: &'a EngineConfig,
    pub(crate) num_gpu_blocks: u32,
    pub(crate) show_hidden: bool,
    /// The live KV pool tier's counters, when `--kv-pool` is set.
    pub(crate) kv_pool: Option<Arc<PoolCounters>>,
}

/// The registry and typed handles to every series.
pub(crate) struct Metrics {
    registry: Registry,
    gauges: Gauges,
    counters: Counters,
    hist: Histograms,
    process: Option<Process>,
    /// `brix_sim_kv_pool_*` and where they are read from.
    pool: Option<(PoolFamilies, Arc<PoolCounters>)>,
}

/// The live pool tier's own counters (Brix's, not vLLM's).
struct PoolFamilies {
    lookup_errors: IntCounter,
    stored: IntCounter,
    dropped: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every series vLLM would expose for this configuration.
    pub(crate) fn new(spec: &MetricsSpec<'_>) -> Result<Self, prometheus::Error> {
        let labels = [("model_name", spec.served_model_name), ("engine", "0")];
        let b = Builder {
            registry: Registry::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        b.cache_config_info(spec)?;
        let pool = match &spec.kv_pool {
            Some(c) => {
                let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
                    let c = IntCounter::new(name, help)?;
                    b.registry.register(Box::new(c.clone()))?;
                    Ok(c)
                };
                let f = PoolFamilies {
                    lookup_errors: counter(
                        "brix_sim_kv_pool_lookup_errors_total",
                        "KV pool lookups that failed or timed out on a server (each a miss).",
                    )?,
                    stored: counter(
                        "brix_sim_kv_pool_stored_chunks_total",
                        "Chunks written to the KV pool by write-through.",
                    )?,
                    dropped: counter(
                        "brix_sim_kv_pool_dropped_chunks_total",
                        "Chunks offered to the KV pool but not written (queue full, server down or refused).",
                    )?,
                };
                Some((f, c.clone()))
            }
            None => None,
        };
        Ok(Self {
            pool,
            gauges: b.gauges(spec)?,
            counters: b.counters()?,
            hist: b.histograms(spec.engine.max_model_len)?,
            process: Process::register(&b.registry)?,
            registry: b.registry,
        })
    }

    /// Books one delivered step: its size, its tokens' latencies, and the counter deltas;
    /// `cached` is the prefix-cache and KV-tier share of the prompts whose first token it
    /// produced, `external` the KV tier's part of it.
    pub(crate) fn record_step(
        &self,
        out: &StepOutput,
        before: &EngineStats,
        after: &EngineStats,
        (cached, external): (u64, u64),
    ) {
        self.hist
            .iteration_tokens
            .observe(f64::from(out.num_tokens));
        for t in &out.tokens {
            match t.first {
                true => self.hist.ttft.observe(t.latency),
                false => self.hist.itl.observe(t.latency),
            }
        }
        let c = &self.counters;
        let delta = |a: u64, b: u64| a.saturating_sub(b);
        let prompt = delta(after.prompt_tokens, before.prompt_tokens);
        c.prompt_tokens.inc_by(prompt);
        let cached = cached.min(prompt);
        let external = external.min(cached);
        c.prompt_by_source[0].inc_by(prompt - cached);
        c.prompt_by_source[1].inc_by(cached - external);
        c.prompt_by_source[2].inc_by(external);
        c.prompt_tokens_cached.inc_by(cached);
        c.generation_tokens
            .inc_by(delta(after.generation_tokens, before.generation_tokens));
        c.prefix_queries
            .inc_by(delta(after.prefix_queries, before.prefix_queries));
        let hits = delta(after.prefix_hits, before.prefix_hits);
        c.prefix_hits.inc_by(hits);
        c.cached_on_device.inc_by(hits);
        // vLLM books the connector's queries and hits at admission, per scheduler step.
        let ext_hits = delta(after.external_hits, before.external_hits);
        c.external_queries
            .inc_by(delta(after.external_queries, before.external_queries));
        c.external_hits.inc_by(ext_hits);
        c.cached_external.inc_by(ext_hits);
        c.preemptions
            .inc_by(delta(after.preemptions, before.preemptions));
    }

    /// Books one request that finished (by stop, length or a stop string), as vLLM's logger
    /// books `finished_requests`: every phase, its TPOT, preemptions and parameters.
    pub(crate) fn record_finished(&self, f: &Finished) {
        self.counters
            .success
            .with_label_values(&[f.reason.as_str()])
            .inc();
        let h = &self.hist;
        h.e2e.observe(f.e2e());
        h.queue.observe(f.queue_time().unwrap_or(0.0));
        h.prefill.observe(f.prefill_time().unwrap_or(0.0));
        h.inference.observe(f.inference_time().unwrap_or(0.0));
        h.decode.observe(f.decode_time().unwrap_or(0.0));
        h.preemptions.observe(f64::from(f.num_preemptions));
        let computed = f.prompt_tokens.saturating_sub(f.cached_tokens);
        h.prefill_kv_computed.observe(f64::from(computed));
        h.prompt_tokens.observe(f64::from(f.prompt_tokens));
        h.generation_tokens.observe(f64::from(f.output_tokens));
        // The first token comes from prefill; TPOT averages the gaps after it.
        let tpot = match (f.output_tokens, f.decode_time()) {
            (n, Some(d)) if n > 1 => d / f64::from(n - 1),
            _ => 0.0,
        };
        h.tpot.observe(tpot);
        if f.max_tokens > 0 {
            h.params_max_tokens.observe(f64::from(f.max_tokens));
        }
    }

    /// Books one client request (a prompt and its `n` choices) once all its choices ended:
    /// `request_params_n` and the longest choice (`request_max_num_generation_tokens`).
    pub(crate) fn record_parent(&self, n: u32, max_generation_tokens: u32) {
        self.hist.params_n.observe(f64::from(n));
        self.hist
            .max_generation_tokens
            .observe(f64::from(max_generation_tokens));
    }

    /// Sets the gauges from `snap` and renders the registry in Prometheus text format 0.0.4.
    pub(crate) fn render(&self, snap: &EngineSnapshot) -> Result<String, prometheus::Error> {
        self.gauges.running.set(snap.num_running as f64);
        self.gauges.waiting.set(snap.num_waiting as f64);
        // The simulator never defers a waiting request for a transient constraint.
        self.gauges.waiting_capacity.set(snap.num_waiting as f64);
        self.gauges.waiting_deferred.set(0.0);
        if let Some(p) = &self.process {
            p.update();
        }
        if let Some((f, c)) = &self.pool {
            let catch_up = |m: &IntCounter, v: &AtomicU64| {
                m.inc_by(v.load(Ordering::Relaxed).saturating_sub(m.get()));
            };
            catch_up(&f.lookup_errors, &c.lookup_errors);
            catch_up(&f.stored, &c.stored_chunks);
            catch_up(&f.dropped, &c.dropped_chunks);
        }
        self.gauges.kv_usage.set(snap.kv_usage);
        if let Some(g) = &self.gauges.gpu_cache_usage {
            g.set(snap.kv_usage);
        }
        if let Some((info, max_lora)) = &self.gauges.lora_info {
            // vLLM stamps the series with the time of the update; readers take the newest.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let waiting = snap.waiting_loras.join(",");
            let running = snap.running_loras.join(",");
            info.reset();
            info.with_label_values(&[max_lora.as_str(), &waiting, &running])
                .set(now);
        }
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// The content type vLLM 0.32's `/metrics` answers with (its Python client's
/// `CONTENT_TYPE_LATEST`); the body is the classic text format either way.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=1.0.0; charset=utf-8";
