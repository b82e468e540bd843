//! `/metrics` has vLLM's names, types, labels and buckets, and its numbers follow the traffic.

use serde_json::json;

use crate::support::{Exposition, MODEL, Server, config, start};

const GAUGES: &[&str] = &[
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:num_requests_waiting_by_reason",
    "vllm:kv_cache_usage_perc",
    "vllm:engine_sleep_state",
];
const COUNTERS: &[&str] = &[
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:external_prefix_cache_queries_total",
    "vllm:external_prefix_cache_hits_total",
    "vllm:prompt_tokens_total",
    "vllm:prompt_tokens_by_source_total",
    "vllm:prompt_tokens_cached_total",
    "vllm:prompt_tokens_cached_by_source_total",
    "vllm:generation_tokens_total",
    "vllm:num_preemptions_total",
    "vllm:request_success_total",
];
/// Families with their own label sets (no `model_name`/`engine` pair).
const OWN_LABELS: &[&str] = &[
    "vllm:cache_config_info",
    "vllm:lora_requests_info",
    "vllm:admission_rejections_total",
];
/// Python's process collector: no labels (Linux only).
const PROCESS: &[(&str, &str)] = &[
    ("process_virtual_memory_bytes", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
];
const TTFT: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const LATENCY: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
const ITERATION: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
/// 1-2-5 up to max_model_len = 2048.
const TOKENS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];
const PARAMS_N: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
const PREEMPTIONS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0];

fn histograms() -> Vec<(&'static str, &'static [f64])> {
    vec![
        ("vllm:time_to_first_token_seconds", TTFT),
        ("vllm:inter_token_latency_seconds", ITL),
        ("vllm:e2e_request_latency_seconds", LATENCY),
        ("vllm:request_queue_time_seconds", LATENCY),
        ("vllm:request_inference_time_seconds", LATENCY),
        ("vllm:request_prefill_time_seconds", LATENCY),
        ("vllm:request_decode_time_seconds", LATENCY),
        ("vllm:iteration_tokens_total", ITERATION),
        ("vllm:request_prompt_tokens", TOKENS),
        ("vllm:request_generation_tokens", TOKENS),
        ("vllm:request_time_per_output_token_seconds", ITL),
        ("vllm:request_num_preemptions", PREEMPTIONS),
        ("vllm:request_prefill_kv_computed_tokens", TOKENS),
        ("vllm:request_params_max_tokens", TOKENS),
        ("vllm:request_params_n", PARAMS_N),
        ("vllm:request_max_num_generation_tokens", TOKENS),
    ]
}

const COMMON: &[(&str, &str)] = &[("model_name", MODEL), ("engine", "0")];

/// HELP and TYPE for every family, every sample belongs to one, and the engine series carry
/// `model_name` and `engine`.
fn check_families(m: &Exposition) {
    let typed = GAUGES
        .iter()
        .map(|n| (*n, "gauge"))
        .chain(COUNTERS.iter().map(|n| (*n, "counter")));
    let typed = typed.chain(histograms().into_iter().map(|(n, _)| (n, "histogram")));
    let typed = typed.chain([("vllm:admission_rejections_total", "counter")]);
    let process = PROCESS
        .iter()
        .copied()
        .filter(|_| cfg!(target_os = "linux"));
    for (name, kind) in typed
        .chain([("vllm:cache_config_info", "gauge")])
        .chain(process)
    {
        assert_eq!(
            m.types.get(name).map(String::as_str),
            Some(kind),
            "TYPE of {name}"
        );
        assert!(
            m.help.get(name).is_some_and(|h| !h.is_empty()),
            "HELP of {name}"
        );
    }
    for s in &m.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|sfx| {
                s.name
                    .strip_suffix(sfx)
                    .filter(|f| m.types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&s.name);
        assert!(
            m.types.contains_key(family),
            "sample {} has no TYPE",
            s.name
        );
        if !OWN_LABELS.contains(&family) && !family.starts_with("process_") {
            for (k, v) in COMMON {
                assert_eq!(
                    s.labels.get(*k).map(String::as_str),
                    Some(*v),
                    "{} lacks {k}",
                    s.name
                );
            }
        }
    }
}

/// Exact bucket bounds, cumulative counts, and `_count` equal to the `+Inf` bucket.
fn check_buckets(m: &Exposition) {
    for (name, want) in histograms() {
        let bucket = format!("{name}_bucket");
        let buckets: Vec<_> = m.find(&bucket, COMMON).collect();
        let bounds: Vec<f64> = buckets
            .iter()
            .map(|s| s.labels["le"].parse::<f64>().unwrap())
            .collect();
        let mut expected = want.to_vec();
        expected.push(f64::INFINITY);
        assert_eq!(bounds, expected, "buckets of {name}");
        let counts: Vec<f64> = buckets.iter().map(|s| s.value).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{name} buckets are cumulative"
        );
        assert_eq!(
            m.value(&format!("{name}_count"), COMMON),
            counts.last().copied(),
            "{name}_count"
        );
        assert!(
            m.value(&format!("{name}_sum"), COMMON).is_some(),
            "{name}_sum"
        );
    }
}

#[tokio::test]
async fn exposition_has_vllms_families_and_buckets() {
    let s = start(config()).await;
    let m = s.metrics().await;
    check_families(&m);
    check_buckets(&m);
    for reason in ["stop", "length", "abort", "error", "repetition"] {
        assert_eq!(
            m.value("vllm:request_success_total", &[("finished_reason", reason)]),
            Some(0.0),
            "{reason}"
        );
    }
    for reason in ["capacity", "deferred"] {
        assert_eq!(
            m.value("vllm:num_requests_waiting_by_reason", &[("reason", reason)]),
            Some(0.0),
            "{reason}"
        );
    }
    for (state, v) in [
        ("awake", 1.0),
        ("weights_offloaded", 0.0),
        ("discard_all", 0.0),
    ] {
        assert_eq!(
            m.value("vllm:engine_sleep_state", &[("sleep_state", state)]),
            Some(v)
        );
    }
    if cfg!(target_os = "linux") {
        assert!(m.value("process_resident_memory_bytes", &[]) > Some(1e6));
        assert!(m.value("process_open_fds", &[]) >= Some(3.0));
    }
    let info = m.find("vllm:cache_config_info", &[]).next().unwrap();
    for (k, v) in [
        ("block_size", "16"),
        ("num_gpu_blocks", "512"),
        ("enable_prefix_caching", "True"),
        ("engine", "0"),
    ] {
        assert_eq!(
            info.labels.get(k).map(String::as_str),
            Some(v),
            "cache_config_info {k}"
        );
    }
    assert_eq!(info.value, 1.0);
    assert!(
        !m.types.contains_key("vllm:gpu_cache_usage_perc"),
        "hidden unless asked for"
    );
    assert!(
        !m.types.contains_key("vllm:lora_requests_info"),
        "only with LoRA enabled"
    );

    let mut cfg = config();
    cfg.show_hidden_metrics_for_version = Some("0.10".into());
    let hidden = start(cfg).await.metrics().await;
    assert_eq!(
        hidden
            .types
            .get("vllm:gpu_cache_usage_perc")
            .map(String::as_str),
        Some("gauge")
    );
}

#[tokio::test]
async fn counters_and_histograms_follow_a_request() {
    let s = start(config()).await;
    let body =
        json!({"model": MODEL, "prompt": [5, 6, 7, 8, 9], "max_tokens": 3, "ignore_eos": true});
    let (status, _) = s.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200);
    let m = s.metrics().await;
    check_families(&m);
    check_buckets(&m);
    let v = |name: &str| m.value(name, COMMON).unwrap();
    assert_eq!(
        (
            v("vllm:prompt_tokens_total"),
            v("vllm:generation_tokens_total")
        ),
        (5.0, 3.0)
    );
    assert_eq!(
        m.value(
            "vllm:request_success_total",
            &[("finished_reason", "length")]
        ),
        Some(1.0)
    );
    assert_eq!(v("vllm:time_to_first_token_seconds_count"), 1.0);
    assert_eq!(v("vllm:inter_token_latency_seconds_count"), 2.0);
    assert_eq!(v("vllm:e2e_request_latency_seconds_count"), 1.0);
    assert_eq!(v("vllm:request_prompt_tokens_sum"), 5.0);
    assert_eq!(v("vllm:request_generation_tokens_sum"), 3.0);
    assert_eq!(
        v("vllm:iteration_tokens_total_sum"),
        5.0 + 2.0,
        "prefill of 5, then 2 decodes"
    );
    // The per-request families vLLM added: TPOT is the mean of the two gaps after the first
    // token, so it lies between the smallest and largest inter-token latency.
    let tpot = v("vllm:request_time_per_output_token_seconds_sum");
    let itl = v("vllm:inter_token_latency_seconds_sum");
    assert_eq!(v("vllm:request_time_per_output_token_seconds_count"), 1.0);
    assert!((tpot - itl / 2.0).abs() < 1e-9, "{tpot} vs {itl}");
    assert_eq!(v("vllm:request_num_preemptions_sum"), 0.0);
    assert_eq!(v("vllm:request_num_preemptions_count"), 1.0);
    assert_eq!(v("vllm:request_prefill_kv_computed_tokens_sum"), 5.0);
    assert_eq!(v("vllm:request_params_max_tokens_sum"), 3.0);
    assert_eq!(v("vllm:request_params_n_sum"), 1.0);
    assert_eq!(v("vllm:request_max_num_generation_tokens_sum"), 3.0);
    let source = |s: &str| m.value("vllm:prompt_tokens_by_source_total", &[("source", s)]);
    assert_eq!(
        (source("local_compute"), source("local_cache_hit")),
        (Some(5.0), Some(0.0))
    );
    assert_eq!(
        (
            v("vllm:num_requests_running"),
            v("vllm:kv_cache_usage_perc")
        ),
        (0.0, 0.0)
    );
}

#[tokio::test]
async fn a_repeated_long_prompt_hits_the_prefix_cache() {
    let s = start(config()).await;
    let body = json!({"model": MODEL, "prompt": "The same long system prompt, again and again. ".repeat(30), "max_tokens": 1});
    let hits = |m: &Exposition| m.value("vllm:prefix_cache_hits_total", COMMON).unwrap();
    let (_, first) = s.post_json("/v1/completions", &body).await;
    let after_first = s.metrics().await;
    assert_eq!(hits(&after_first), 0.0);
    let n = first["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(n > 200, "{n} tokens");
    s.post_json("/v1/completions", &body).await;
    let after_second = s.metrics().await;
    // Every full block but the one holding the last prompt token, which vLLM recomputes.
    assert_eq!(hits(&after_second), (16 * ((n - 1) / 16)) as f64);
    let queries = |m: &Exposition| m.value("vllm:prefix_cache_queries_total", COMMON).unwrap();
    assert_eq!(queries(&after_second), 2.0 * n as f64);
    let hit = hits(&after_second);
    let m = &after_second;
    assert_eq!(
        m.value("vllm:prompt_tokens_cached_total", COMMON),
        Some(hit)
    );
    assert_eq!(
        m.value(
            "vllm:prompt_tokens_cached_by_source_total",
            &[("source", "device")]
        ),
        Some(hit)
    );
    assert_eq!(
        m.value(
            "vllm:prompt_tokens_by_source_total",
            &[("source", "local_cache_hit")]
        ),
        Some(hit)
    );
    assert_eq!(
        m.value(
            "vllm:prompt_tokens_by_source_total",
            &[("source", "local_compute")]
        ),
        Some(2.0 * n as f64 - hit)
    );
    // The second request computed only what the cache did not hold.
    assert_eq!(
        m.value("vllm:request_prefill_kv_computed_tokens_sum", COMMON),
        Some(2.0 * n as f64 - hit)
    );
}

/// Waits until the engine is idle again, then checks the abandoned request was booked
/// nowhere: vLLM counts neither a success (of any reason) nor an e2e latency for it.
async fn abandoned_and_not_counted(s: &Server) -> Exposition {
    let m = s
        .metrics_eventually("the engine idle again", |m| {
            m.value("vllm:num_requests_running", COMMON) == Some(0.0)
                && m.value("vllm:kv_cache_usage_perc", COMMON) == Some(0.0)
        })
        .await;
    for reason in ["stop", "length", "abort"] {
        assert_eq!(
            m.value("vllm:request_success_total", &[("finished_reason", reason)]),
            Some(0.0),
            "{reason}"
        );
    }
    assert_eq!(
        m.value("vllm:e2e_request_latency_seconds_count", COMMON),
        Some(0.0)
    );
    m
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_aborts_its_request() {
    let s = start(config()).await;
    let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 2000, "ignore_eos": true, "stream": true});
    let mut r = s.post("/v1/completions", &body).await;
    assert!(r.chunk().await.unwrap().is_some(), "the stream started");
    drop(r);
    let m = abandoned_and_not_counted(&s).await;
    assert!(m.value("vllm:generation_tokens_total", COMMON) >= Some(1.0));
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_plain_request_aborts_it() {
    let s = start(config()).await;
    let http = s.http.clone();
    let url = s.url("/v1/completions");
    let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 2000, "ignore_eos": true});
    let waiting = tokio::spawn(async move { http.post(url).json(&body).send().await });
    s.metrics_eventually("the request running", |m| {
        m.value("vllm:num_requests_running", COMMON) == Some(1.0)
    })
    .await;
    waiting.abort();
    abandoned_and_not_counted(&s).await;
}
