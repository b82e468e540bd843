//! Every family `brix sim` exports, registered once with vLLM's names, help texts, labels
//! and buckets (vLLM 0.32, `vllm/v1/metrics/loggers.py` and `buckets.py`).

use std::collections::HashMap;

use brix_sim::FinishReason;
use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
};

use super::MetricsSpec;

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
/// `REQUEST_PARAMS_N_BUCKETS`.
const PARAMS_N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
/// `REQUEST_NUM_PREEMPTIONS_BUCKETS`.
const PREEMPTION_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0];
/// `PromptTokenStats.ALL_SOURCES`.
pub(super) const PROMPT_SOURCES: [&str; 3] =
    ["local_compute", "local_cache_hit", "external_kv_transfer"];
/// `CacheHitSource`, in its declaration order.
const CACHE_SOURCES: [&str; 5] = ["device", "host", "p2p", "disk", "external_unspecified"];
/// vLLM's `FinishReason` members (the simulator produces the first three).
const FINISH_REASONS: [&str; 5] = ["stop", "length", "abort", "error", "repetition"];
/// `ADMISSION_REASONS`.
const ADMISSION_REASONS: [&str; 2] = ["max_num_queued_reqs", "max_num_queued_tokens"];

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

/// The histograms, grouped so `record_*` reads like vLLM's logger.
#[derive(Clone)]
pub(super) struct Histograms {
    pub(super) tpot: Histogram,
    pub(super) preemptions: Histogram,
    pub(super) prefill_kv_computed: Histogram,
    pub(super) params_max_tokens: Histogram,
    pub(super) params_n: Histogram,
    pub(super) max_generation_tokens: Histogram,
    pub(super) ttft: Histogram,
    pub(super) itl: Histogram,
    pub(super) e2e: Histogram,
    pub(super) queue: Histogram,
    pub(super) inference: Histogram,
    pub(super) prefill: Histogram,
    pub(super) decode: Histogram,
    pub(super) iteration_tokens: Histogram,
    pub(super) prompt_tokens: Histogram,
    pub(super) generation_tokens: Histogram,
}

/// Gauges set from a snapshot at scrape time.
#[derive(Clone)]
pub(super) struct Gauges {
    pub(super) running: Gauge,
    pub(super) waiting: Gauge,
    /// `vllm:num_requests_waiting_by_reason` for `capacity` and `deferred`.
    pub(super) waiting_capacity: Gauge,
    pub(super) waiting_deferred: Gauge,
    pub(super) kv_usage: Gauge,
    /// The deprecated `vllm:gpu_cache_usage_perc`, only with `--show-hidden-metrics-for-version`.
    pub(super) gpu_cache_usage: Option<Gauge>,
    /// `vllm:lora_requests_info` and the `max_lora` label value; only with LoRA enabled.
    pub(super) lora_info: Option<(GaugeVec, String)>,
}

/// Counters fed from the engine's cumulative stats and finished requests.
#[derive(Clone)]
pub(super) struct Counters {
    pub(super) prefix_queries: IntCounter,
    pub(super) prefix_hits: IntCounter,
    pub(super) prompt_tokens: IntCounter,
    pub(super) generation_tokens: IntCounter,
    pub(super) preemptions: IntCounter,
    pub(super) success: IntCounterVec,
    pub(super) prompt_tokens_cached: IntCounter,
    /// `vllm:prompt_tokens_by_source`, one handle per [`PROMPT_SOURCES`] entry.
    pub(super) prompt_by_source: [IntCounter; 3],
    /// `vllm:prompt_tokens_cached_by_source{source="device"}`: local prefix-cache hits.
    pub(super) cached_on_device: IntCounter,
    /// `vllm:prompt_tokens_cached_by_source{source="external_unspecified"}`: KV-tier hits,
    /// the tier LMCache-style connectors report for a remote store.
    pub(super) cached_external: IntCounter,
    /// `vllm:external_prefix_cache_queries` (tokens).
    pub(super) external_queries: IntCounter,
    /// `vllm:external_prefix_cache_hits` (tokens).
    pub(super) external_hits: IntCounter,
}

/// Registers metrics on one registry with the common labels.
pub(super) struct Builder {
    pub(super) registry: Registry,
    pub(super) labels: HashMap<String, String>,
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

    pub(super) fn histograms(&self, max_model_len: u32) -> Result<Histograms, prometheus::Error> {
        let lat = REQUEST_LATENCY_BUCKETS;
        let tokens = buckets_1_2_5(max_model_len);
        Ok(Histograms {
            tpot: self.histogram(
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                ITL_BUCKETS,
            )?,
            preemptions: self.histogram(
                "vllm:request_num_preemptions",
                "Histogram of the number of times a request was preempted.",
                PREEMPTION_BUCKETS,
            )?,
            prefill_kv_computed: self.histogram(
                "vllm:request_prefill_kv_computed_tokens",
                "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
                &tokens,
            )?,
            params_max_tokens: self.histogram(
                "vllm:request_params_max_tokens",
                "Histogram of the max_tokens request parameter.",
                &tokens,
            )?,
            params_n: self.histogram(
                "vllm:request_params_n",
                "Histogram of the n request parameter.",
                PARAMS_N_BUCKETS,
            )?,
            max_generation_tokens: self.histogram(
                "vllm:request_max_num_generation_tokens",
                "Histogram of maximum number of requested generation tokens.",
                &tokens,
            )?,
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

    pub(super) fn gauges(&self, spec: &MetricsSpec<'_>) -> Result<Gauges, prometheus::Error> {
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
        let by_reason = self.add(GaugeVec::new(
            self.opts(
                "vllm:num_requests_waiting_by_reason",
                "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            ),
            &["reason"],
        )?)?;
        let sleep = self.add(GaugeVec::new(
            self.opts(
                "vllm:engine_sleep_state",
                "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            ),
            &["sleep_state"],
        )?)?;
        for (state, v) in [
            ("awake", 1.0),
            ("weights_offloaded", 0.0),
            ("discard_all", 0.0),
        ] {
            sleep.with_label_values(&[state]).set(v);
        }
        Ok(Gauges {
            waiting_capacity: by_reason.with_label_values(&["capacity"]),
            waiting_deferred: by_reason.with_label_values(&["deferred"]),
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

    pub(super) fn counters(&self) -> Result<Counters, prometheus::Error> {
        let success = self.add(IntCounterVec::new(
            self.opts(
                "vllm:request_success_total",
                "Count of successfully processed requests.",
            ),
            &["finished_reason"],
        )?)?;
        // vLLM creates every reason's series up front, so they read 0 before the first one.
        for reason in FINISH_REASONS {
            success.with_label_values(&[reason]);
        }
        debug_assert!(
            [
                FinishReason::Stop,
                FinishReason::Length,
                FinishReason::Abort
            ]
            .iter()
            .all(|r| FINISH_REASONS.contains(&r.as_str()))
        );
        let by_source = self.add(IntCounterVec::new(
            self.opts(
                "vllm:prompt_tokens_by_source_total",
                "Number of prompt tokens by source.",
            ),
            &["source"],
        )?)?;
        let cached_by_source = self.add(IntCounterVec::new(
            self.opts(
                "vllm:prompt_tokens_cached_by_source_total",
                "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
            ),
            &["source"],
        )?)?;
        for source in CACHE_SOURCES {
            cached_by_source.with_label_values(&[source]);
        }
        let external_queries = self.counter(
            "vllm:external_prefix_cache_queries_total",
            "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
        )?;
        let external_hits = self.counter(
            "vllm:external_prefix_cache_hits_total",
            "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
        )?;
        // vLLM's label set for this one: model_name and reason, no engine.
        let model = self.labels.get("model_name").cloned().unwrap_or_default();
        let rejections = self.add(IntCounterVec::new(
            Opts::new(
                "vllm:admission_rejections_total",
                "Number of admission attempts rejected by a queue limit, by reason.",
            ),
            &["model_name", "reason"],
        )?)?;
        for reason in ADMISSION_REASONS {
            rejections.with_label_values(&[model.as_str(), reason]);
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
            prompt_tokens_cached: self.counter(
                "vllm:prompt_tokens_cached_total",
                "Number of cached prompt tokens (local + external).",
            )?,
            prompt_by_source: PROMPT_SOURCES.map(|s| by_source.with_label_values(&[s])),
            cached_on_device: cached_by_source.with_label_values(&["device"]),
            cached_external: cached_by_source.with_label_values(&["external_unspecified"]),
            external_queries,
            external_hits,
        })
    }

    /// `vllm:cache_config_info`: vLLM's CacheConfig fields as labels (Python spellings), value 1.
    pub(super) fn cache_config_info(
        &self,
        spec: &MetricsSpec<'_>,
    ) -> Result<(), prometheus::Error> {
        let py_bool = |b: bool| if b { "True" } else { "False" }.to_string();
        let e = spec.engine;
        let none = || "None".to_string();
        let block = e.block_size.to_string();
        let kv_tokens = u64::from(spec.num_gpu_blocks) * u64::from(e.block_size);
        let concurrency = kv_tokens as f64 / f64::from(e.max_model_len.max(1));
        // vLLM 0.32's `CacheConfig.metrics_info()`: every field, Python spellings; the values
        // a dense attention model without offloading has once its KV cache is sized.
        let labels: HashMap<String, String> = [
            ("_block_size_resolved", py_bool(true)),
            ("block_size", block.clone()),
            ("cache_dtype", "auto".into()),
            ("cache_hit_alignment_tokens", block.clone()),
            ("effective_attention_block_size", block.clone()),
            ("enable_mamba_shared_prefix_checkpoint", py_bool(false)),
            ("enable_prefix_caching", py_bool(e.enable_prefix_caching)),
            ("engine", "0".into()),
            (
                "gpu_memory_utilization",
                e.gpu_memory_utilization.to_string(),
            ),
            ("hash_block_size", block),
            ("is_attention_free", py_bool(false)),
            ("kv_cache_dtype_skip_layers", "[]".into()),
            ("kv_cache_layout", none()),
            ("kv_cache_max_concurrency", concurrency.to_string()),
            ("kv_cache_memory_bytes", none()),
            ("kv_cache_size_tokens", kv_tokens.to_string()),
            ("kv_offloading_backend", "native".into()),
            ("kv_offloading_size", none()),
            ("kv_sharing_fast_prefill", py_bool(false)),
            ("mamba_block_size", none()),
            ("mamba_cache_dtype", "auto".into()),
            ("mamba_cache_mode", "none".into()),
            ("mamba_page_size_padded", none()),
            ("mamba_ssm_cache_dtype", "auto".into()),
            ("num_cpu_blocks", none()),
            ("num_gpu_blocks", spec.num_gpu_blocks.to_string()),
            (
                "num_gpu_blocks_override",
                e.num_gpu_blocks_override
                    .map_or_else(none, |n| n.to_string()),
            ),
            ("prefix_cache_retention_interval", "0".into()),
            ("prefix_caching_hash_algo", "sha256".into()),
            ("prefix_match_unit", none()),
            ("replayssm_buffer_len", "16".into()),
            ("skip_page_size_padded", none()),
            ("sliding_window", none()),
            ("swa_bounded_replay", py_bool(true)),
            ("use_kda_recoverssm", py_bool(false)),
            ("use_replayssm", py_bool(false)),
            ("user_specified_block_size", py_bool(false)),
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
