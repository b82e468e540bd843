//! vLLM's Prometheus metrics (V1 names, labels and buckets), fed by the driver and rendered in
//! text format 0.0.4 at scrape time.
//!
//! Counters carry the `_total` suffix in their names because that is how vLLM's Python client
//! exposes them. Every series has the labels `model_name` (the served name) and `engine="0"`,
//! except the two info gauges, which follow vLLM's own label sets. Gauges are set from an
//! engine snapshot when scraped; counters and histograms grow as steps are delivered.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use brix_sim::{EngineConfig, EngineSnapshot, EngineStats, FinishReason, Finished, StepOutput};
use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
const ITERATION_TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];

/// vLLM's `build_1_2_5_buckets(max)`: 1, 2, 5, 10, 20, 50, ... up to `max`.
fn buckets_1_2_5(max: u32) -> Vec<f64> {
    let max = f64::from(max);
    let mut out = Vec::new();
    let mut scale = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            let v = m * scale;
            if v > max {
                return out;
            }
            out.push(v);
        }
        scale *= 10.0;
    }
}

/// What the metric set depends on besides the engine's running state.
#[derive(Clone, Debug)]
pub(crate) struct MetricsSpec<'a> {
    pub(crate) served_model_name: &'a str,
    pub(crate) engine: &'a EngineConfig,
    pub(crate) num_gpu_blocks: u32,
    pub(crate) show_hidden: bool,
}

/// The histograms, grouped so `record_*` reads like vLLM's logger.
#[derive(Clone)]
struct Histograms {
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
    inference: Histogram,
    prefill: Histogram,
    decode: Histogram,
    iteration_tokens: Histogram,
    prompt_tokens: Histogram,
    generation_tokens: Histogram,
}

/// Gauges set from a snapshot at scrape time.
#[derive(Clone)]
struct Gauges {
    running: Gauge,
    waiting: Gauge,
    kv_usage: Gauge,
    /// The deprecated `vllm:gpu_cache_usage_perc`, only with `--show-hidden-metrics-for-version`.
    gpu_cache_usage: Option<Gauge>,
    /// `vllm:lora_requests_info` and the `max_lora` label value; only with LoRA enabled.
    lora_info: Option<(GaugeVec, String)>,
}

/// Counters fed from the engine's cumulative stats and finished requests.
#[derive(Clone)]
struct Counters {
    prefix_queries: IntCounter,
    prefix_hits: IntCounter,
    prompt_tokens: IntCounter,
    generation_tokens: IntCounter,
    preemptions: IntCounter,
    success: IntCounterVec,
}

/// The registry and typed handles to every series.
pub(crate) struct Metrics {
    registry: Registry,
    gauges: Gauges,
    counters: Counters,
    hist: Histograms,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers metrics on one registry with the common labels.
struct Builder {
    registry: Registry,
    labels: HashMap<String, String>,
}

impl Builder {
    fn opts(&self, name: &str, help: &str) -> Opts {
        Opts::new(name, help).const_labels(self.labels.clone())
    }
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> Result<C, prometheus::Error> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }
    fn gauge(&self, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
        self.add(Gauge::with_opts(self.opts(name, help))?)
    }
    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add(IntCounter::with_opts(self.opts(name, help))?)
    }
    fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, prometheus::Error> {
        let opts = HistogramOpts::new(name, help)
            .const_labels(self.labels.clone())
            .buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts)?)
    }

    fn histograms(&self, max_model_len: u32) -> Result<Histograms, prometheus::Error> {
        let lat = REQUEST_LATENCY_BUCKETS;
        let tokens = buckets_1_2_5(max_model_len);
        Ok(Histograms {
            ttft: self.histogram(
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                TTFT_BUCKETS,
            )?,
            itl: self.histogram(
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                ITL_BUCKETS,
            )?,
            e2e: self.histogram(
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                lat,
            )?,
            queue: self.histogram(
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                lat,
            )?,
            inference: self.histogram(
                "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
                lat,
            )?,
            prefill: self.histogram(
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                lat,
            )?,
            decode: self.histogram(
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
                lat,
            )?,
            iteration_tokens: self.histogram(
                "vllm:iteration_tokens_total",
                "Histogram of number of tokens per engine_step.",
                ITERATION_TOKEN_BUCKETS,
            )?,
            prompt_tokens: self.histogram(
                "vllm:request_prompt_tokens",
                "Number of prefill tokens processed.",
                &tokens,
            )?,
            generation_tokens: self.histogram(
                "vllm:request_generation_tokens",
                "Number of generation tokens processed.",
                &tokens,
            )?,
        })
    }

    fn gauges(&self, spec: &MetricsSpec<'_>) -> Result<Gauges, prometheus::Error> {
        let gpu_cache_usage = match spec.show_hidden {
            true => Some(self.gauge(
                "vllm:gpu_cache_usage_perc",
                "GPU KV-cache usage. 1 means 100 percent usage.(DEPRECATED: Use vllm:kv_cache_usage_perc instead.)",
            )?),
            false => None,
        };
        let lora_info = match spec.engine.enable_lora {
            // vLLM's label set for this one: no model_name, no engine.
            true => {
                let opts = Opts::new("vllm:lora_requests_info", "Running stats on lora requests.");
                let names = ["max_lora", "waiting_lora_adapters", "running_lora_adapters"];
                let vec = self.add(GaugeVec::new(opts, &names)?)?;
                Some((vec, spec.engine.max_loras.to_string()))
            }
            false => None,
        };
        Ok(Gauges {
            running: self.gauge(
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
            )?,
            waiting: self.gauge(
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
            )?,
            kv_usage: self.gauge(
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
            )?,
            gpu_cache_usage,
            lora_info,
        })
    }

    fn counters(&self) -> Result<Counters, prometheus::Error> {
        let success = self.add(IntCounterVec::new(
            self.opts(
                "vllm:request_success_total",
                "Count of successfully processed requests.",
            ),
            &["finished_reason"],
        )?)?;
        // vLLM creates every reason's series up front, so they read 0 before the first one.
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::Abort,
        ] {
            success.with_label_values(&[reason.as_str()]);
        }
        Ok(Counters {
            prefix_queries: self.counter(
                "vllm:prefix_cache_queries_total",
                "Prefix cache queries, in terms of number of queried tokens.",
            )?,
            prefix_hits: self.counter(
                "vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.",
            )?,
            prompt_tokens: self.counter(
                "vllm:prompt_tokens_total",
                "Number of prefill tokens processed.",
            )?,
            generation_tokens: self.counter(
                "vllm:generation_tokens_total",
                "Number of generation tokens processed.",
            )?,
            preemptions: self.counter(
                "vllm:num_preemptions_total",
                "Cumulative number of preemption from the engine.",
            )?,
            success,
        })
    }

    /// `vllm:cache_config_info`: vLLM's CacheConfig fields as labels (Python spellings), value 1.
    fn cache_config_info(&self, spec: &MetricsSpec<'_>) -> Result<(), prometheus::Error> {
        let py_bool = |b: bool| if b { "True" } else { "False" }.to_string();
        let e = spec.engine;
        let labels: HashMap<String, String> = [
            ("block_size", e.block_size.to_string()),
            ("cache_dtype", "auto".into()),
            ("calculate_kv_scales", py_bool(false)),
            ("cpu_offload_gb", "0".into()),
            ("enable_prefix_caching", py_bool(e.enable_prefix_caching)),
            ("engine", "0".into()),
            (
                "gpu_memory_utilization",
                e.gpu_memory_utilization.to_string(),
            ),
            ("is_attention_free", py_bool(false)),
            ("num_cpu_blocks", "None".into()),
            ("num_gpu_blocks", spec.num_gpu_blocks.to_string()),
            (
                "num_gpu_blocks_override",
                e.num_gpu_blocks_override
                    .map_or("None".into(), |n| n.to_string()),
            ),
            ("prefix_caching_hash_algo", "sha256".into()),
            ("sliding_window", "None".into()),
            ("swap_space", "4".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let help = "Information of the LLMEngine CacheConfig";
        self.add(Gauge::with_opts(
            Opts::new("vllm:cache_config_info", help).const_labels(labels),
        )?)?
        .set(1.0);
        Ok(())
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
        Ok(Self {
            gauges: b.gauges(spec)?,
            counters: b.counters()?,
            hist: b.histograms(spec.engine.max_model_len)?,
            registry: b.registry,
        })
    }

    /// Books one delivered step: its size, its tokens' latencies, and the counter deltas.
    pub(crate) fn record_step(&self, out: &StepOutput, before: &EngineStats, after: &EngineStats) {
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
        c.prompt_tokens
            .inc_by(delta(after.prompt_tokens, before.prompt_tokens));
        c.generation_tokens
            .inc_by(delta(after.generation_tokens, before.generation_tokens));
        c.prefix_queries
            .inc_by(delta(after.prefix_queries, before.prefix_queries));
        c.prefix_hits
            .inc_by(delta(after.prefix_hits, before.prefix_hits));
        c.preemptions
            .inc_by(delta(after.preemptions, before.preemptions));
    }

    /// Books one request that left the engine, aborted ones included.
    pub(crate) fn record_finished(&self, f: &Finished) {
        self.counters
            .success
            .with_label_values(&[f.reason.as_str()])
            .inc();
        let h = &self.hist;
        h.e2e.observe(f.e2e());
        let optional = [
            (&h.queue, f.queue_time()),
            (&h.inference, f.inference_time()),
            (&h.prefill, f.prefill_time()),
            (&h.decode, f.decode_time()),
        ];
        for (hist, value) in optional {
            if let Some(v) = value {
                hist.observe(v);
            }
        }
        h.prompt_tokens.observe(f64::from(f.prompt_tokens));
        h.generation_tokens.observe(f64::from(f.output_tokens));
    }

    /// Sets the gauges from `snap` and renders the registry in Prometheus text format 0.0.4.
    pub(crate) fn render(&self, snap: &EngineSnapshot) -> Result<String, prometheus::Error> {
        self.gauges.running.set(snap.num_running as f64);
        self.gauges.waiting.set(snap.num_waiting as f64);
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

/// The content type of [`Metrics::render`]'s output, spelled as Python's client spells it.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_five_buckets_stop_at_the_limit() {
        assert_eq!(
            buckets_1_2_5(100),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(buckets_1_2_5(8192).last(), Some(&5000.0));
        assert_eq!(buckets_1_2_5(1), vec![1.0]);
    }
}
