//! Health checks and engine metric scrapes, one loop per pod.
//!
//! Each round (every `scrape.interval_ms`, ±10 % jitter so pods are not hit in lockstep; one
//! request at a time per pod, so a slow pod never has overlapping probes) asks `/health`, which
//! alone decides rotation (a pod still starting answers 503 there while its `/metrics` may
//! already answer), then reads `/metrics`. A slow or failed scrape changes nothing but the
//! age of the gauges the router already has (the core weighs and finally drops old gauges).
//! The rules (`unhealthy_after` failed probes in a row take the pod out; one good probe brings
//! it back, after any ejection time) are the routing core's, `brix_router::fleet`. Every
//! `models_every` rounds `/v1/models` refreshes the adapters the pod serves.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use brix_metrics::{Combine, Rules, names};
use brix_router::EngineMetrics;
use brix_router::fleet::Scrape;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rand::Rng;
use serde::Deserialize;

use crate::config::ScrapeConfig;
use crate::metrics::Metrics;
use crate::pool::PodState;

/// The pooled upstream client every part of the gateway shares.
pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// GETs `path` on `address` within `timeout`; any failure is a string for the log.
pub async fn get(
    client: &Client,
    address: &str,
    path: &str,
    timeout: Duration,
) -> Result<Bytes, String> {
    let uri: http::Uri = format!("http://{address}{path}")
        .parse()
        .map_err(|e| format!("bad uri: {e}"))?;
    let fut = async {
        let resp = client.get(uri).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        resp.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Runs the probe loop for `pod` until the task is aborted.
pub async fn run(pod: Arc<PodState>, client: Client, cfg: ScrapeConfig, metrics: Arc<Metrics>) {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let healthy_gauge = metrics
        .pod_healthy
        .with_label_values(&[&pod.name, &pod.address]);
    let mut round = 0u64;
    loop {
        let ok = match get(&client, &pod.address, "/health", timeout).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(pod = %pod.name, error = %e, "health check failed");
                false
            }
        };
        pod.probe_health(ok);
        match get(&client, &pod.metrics_address, "/metrics", timeout).await {
            Ok(text) => pod.set_scrape(parse_scrape(&String::from_utf8_lossy(&text))),
            Err(e) => {
                tracing::debug!(pod = %pod.name, error = %e, age_s = ?pod.metrics_age(), "metrics scrape failed; keeping the last gauges");
            }
        }
        if ok && round.is_multiple_of(u64::from(cfg.models_every)) {
            let generation = pod.adapters_generation();
            match get(&client, &pod.address, "/v1/models", timeout).await {
                Ok(body) => {
                    if !pod.set_adapters_if(adapters(&body), Some(generation)) {
                        tracing::debug!(pod = %pod.name, "model list overtaken by a newer update; dropped");
                    }
                }
                Err(e) => tracing::debug!(pod = %pod.name, error = %e, "model list failed"),
            }
        }
        round += 1;
        healthy_gauge.set(i64::from(pod.is_healthy()));
        let jitter = rand::rng().random_range(0.9..1.1);
        tokio::time::sleep(Duration::from_millis(cfg.interval_ms).mul_f64(jitter)).await;
    }
}

/// The rules of every engine Brix knows: the probe reads a pod without knowing its engine.
static RULES: LazyLock<Rules> = LazyLock::new(Rules::all_builtin);

/// What the probe reads, by standard name: one source per quantity (the standard series when
/// the pod is a runtime sidecar that has it, else the engine's own), so a pod scraped directly
/// (vLLM or SGLang names) or through `brix runtime` gives the same numbers.
const WANTED: [(&str, Combine); 5] = [
    (names::RUNNING, Combine::Sum),
    (names::QUEUE_SIZE, Combine::Sum),
    (names::KV_USAGE, Combine::Max),
    (names::PROMPT_TOKENS, Combine::Sum),
    (names::GENERATION_TOKENS, Combine::Sum),
];

/// Reads a scrape: the load gauges (series summed over label sets, KV usage as the largest;
/// vLLM, SGLang or standard names; missing series stay `None`), and the signals of an engine
/// restart (its process start time, its token counters).
pub fn parse_scrape(text: &str) -> Scrape {
    let [running, waiting, kv_usage, prompt, generation] = read(text);
    let tokens_total = match (prompt, generation) {
        (None, None) => None,
        (p, g) => Some(p.unwrap_or(0.0) + g.unwrap_or(0.0)),
    };
    let start_time = text
        .lines()
        .filter_map(brix_router::prom::sample)
        .filter(|s| s.name == "process_start_time_seconds" && s.value.is_finite())
        .map(|s| s.value)
        .next_back();
    Scrape {
        metrics: EngineMetrics {
            running,
            waiting,
            kv_usage,
        },
        start_time,
        tokens_total,
        lora: brix_router::prom::lora_requests_info(text),
    }
}

/// The [`WANTED`] quantities in `text`.
fn read(text: &str) -> [Option<f64>; 5] {
    let v = brix_metrics::values(&RULES, text, &WANTED);
    std::array::from_fn(|i| v[i])
}

/// Adapter ids in a `/v1/models` reply: entries with a `parent` (vLLM's LoRA listing).
pub fn adapters(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct List {
        data: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: String,
        #[serde(default)]
        parent: Option<String>,
    }
    serde_json::from_slice::<List>(body)
        .map(|l| {
            l.data
                .into_iter()
                .filter(|e| e.parent.is_some())
                .map(|e| e.id)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load gauges of a scrape.
    fn parse_metrics(text: &str) -> EngineMetrics {
        parse_scrape(text).metrics
    }

    #[test]
    fn metrics_table() {
        let text = "# HELP vllm:num_requests_running x\n\
            vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3\n\
            vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 2\n\
            vllm:num_requests_waiting{model_name=\"m\"} 7.0\n\
            vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n\
            vllm:kv_cache_usage_perc{model_name=\"m\"} 0.5\n\
            vllm:num_requests_waiting_bogus 1\n\
            vllm:kv_cache_usage_perc{model_name=\"x\"} NaN\n";
        let m = parse_metrics(text);
        assert_eq!(m.running, Some(5.0));
        assert_eq!(m.waiting, Some(7.0));
        assert_eq!(m.kv_usage, Some(0.5));
        assert_eq!(parse_metrics("other_metric 1\n"), EngineMetrics::default());
    }

    #[test]
    fn scrape_reads_restart_signals() {
        let text = "vllm:prompt_tokens_total{model_name=\"m\"} 100\n\
            vllm:generation_tokens_total{model_name=\"m\"} 20\n\
            process_start_time_seconds 1.7e9\n";
        let s = parse_scrape(text);
        assert_eq!((s.tokens_total, s.start_time), (Some(120.0), Some(1.7e9)));
        assert_eq!(parse_scrape("").tokens_total, None);
        assert_eq!(parse_scrape(text).lora, None, "LoRA off");
        let lora = "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"sql\",waiting_lora_adapters=\"\"} 1.7e9\n";
        let got = parse_scrape(lora).lora.map(|l| (l.max_lora, l.running));
        assert_eq!(got, Some((2, vec!["sql".to_string()])));
    }

    #[test]
    fn sglang_and_the_runtime_sidecar_read_the_same() {
        use brix_metrics::{Mode, standardise};
        let recorded = [
            (
                "vllm",
                include_str!("../../metrics/tests/data/vllm-0.32-cpu.prom"),
                (Some(0.0), Some(0.0), Some(0.0), Some(73.0)),
            ),
            (
                "sglang",
                include_str!("../../metrics/tests/data/sglang.prom"),
                (
                    Some(162.0),
                    Some(2826.0),
                    Some(0.28),
                    Some(8.128902e6 + 7.557572e6),
                ),
            ),
        ];
        let read = |text: &str| {
            let s = parse_scrape(text);
            (
                s.metrics.running,
                s.metrics.waiting,
                s.metrics.kv_usage,
                s.tokens_total,
            )
        };
        for (engine, text, want) in recorded {
            assert_eq!(read(text), want, "{engine} scraped directly");
            let rules = Rules::builtin(engine).expect("builtin");
            for keep_original in [false, true] {
                let sidecar = standardise(&rules, text, Mode::Transform { keep_original });
                assert_eq!(
                    read(&sidecar),
                    want,
                    "{engine} via the runtime, keep {keep_original}"
                );
            }
        }
        // One source per quantity: a sidecar's standard series win over the engine's, never added.
        let mixed = "aibrix:num_requests_running 4\nvllm:num_requests_running 4\nsglang:num_running_reqs 9\n\
            aibrix:kv_cache_usage_perc 0.25\naibrix:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.9\n";
        let m = parse_metrics(mixed);
        assert_eq!((m.running, m.kv_usage), (Some(4.0), Some(0.25)));
    }

    #[test]
    fn adapters_are_the_entries_with_a_parent() {
        let body = br#"{"object":"list","data":[{"id":"base","parent":null},{"id":"sql","parent":"base"}]}"#;
        assert_eq!(adapters(body), vec!["sql".to_string()]);
        assert!(adapters(b"garbage").is_empty());
    }
}
