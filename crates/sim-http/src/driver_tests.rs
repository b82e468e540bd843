use std::sync::Arc;

use brix_sim::{Catalog, EngineConfig, FinishReason, GpuProfile, ModelProfile, NewRequest};

use super::*;
use crate::metrics::{Metrics, MetricsSpec};

/// The small engine these tests run: its config, profiles and metrics.
fn parts() -> (EngineConfig, ModelProfile, GpuProfile, Arc<Metrics>) {
    let catalog = Catalog::builtin();
    let model = catalog
        .model("llama-3-8b")
        .cloned()
        .unwrap_or_else(|e| panic!("{e}"));
    let gpu = catalog
        .gpu("H200")
        .cloned()
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = EngineConfig {
        num_gpu_blocks_override: Some(512),
        max_model_len: 2048,
        ..EngineConfig::vllm_defaults(&model, &gpu)
    };
    let metrics = Metrics::new(&MetricsSpec {
        served_model_name: "m",
        engine: &cfg,
        num_gpu_blocks: 512,
        show_hidden: false,
        kv_pool: None,
    })
    .map(Arc::new)
    .unwrap_or_else(|e| panic!("{e}"));
    (cfg, model, gpu, metrics)
}

fn start() -> (EngineHandle, Clock) {
    let (cfg, model, gpu, metrics) = parts();
    let engine = Engine::new(cfg, model, gpu).unwrap_or_else(|e| panic!("{e}"));
    let clock = Clock::start();
    (EngineHandle::spawn(engine, metrics, clock), clock)
}

fn request(max_tokens: u32) -> NewRequest {
    NewRequest {
        prompt: (0..100).collect(),
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..NewRequest::default()
    }
}

#[tokio::test(start_paused = true)]
async fn tokens_arrive_when_their_step_ends_in_virtual_time() {
    let (h, clock) = start();
    let mut g = h.submit(request(5)).await.unwrap_or_else(|e| panic!("{e}"));
    let mut tokens = 0;
    let finished = loop {
        match g.recv().await {
            Some(Event::Token(_)) => tokens += 1,
            Some(Event::Done { last, finished }) => {
                tokens += usize::from(last.is_some());
                break finished;
            }
            None => panic!("driver stopped"),
        }
    };
    assert_eq!((tokens, finished.reason), (5, FinishReason::Length));
    // Paused time only moves to the driver's deadlines (rounded up to the timer's 1 ms), and
    // chained steps keep the engine's own times, so the clock sits within a tick of the end.
    let lag = clock.now() - finished.end;
    assert!(
        (0.0..=0.001).contains(&lag),
        "{} vs {}",
        clock.now(),
        finished.end
    );
    assert!(finished.end > 0.0);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_generation_aborts_it_and_frees_its_blocks() {
    let (h, _clock) = start();
    let mut g = h
        .submit(request(1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(g.recv().await, Some(Event::Token(_))));
    drop(g);
    let mut snap = h.snapshot().await.unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..100 {
        if snap.engine.num_running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        snap = h.snapshot().await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!((snap.engine.num_running, snap.engine.num_waiting), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn refusals_come_back_typed() {
    let (h, _clock) = start();
    let lora = NewRequest {
        lora: Some("nope".into()),
        ..request(5)
    };
    assert!(matches!(
        h.submit(lora).await,
        Err(DriverError::Rejected(AddError::UnknownLora(_)))
    ));
    let long = NewRequest {
        prompt: vec![1; 4000],
        ..request(5)
    };
    assert!(matches!(
        h.submit(long).await,
        Err(DriverError::Rejected(AddError::PromptTooLong { .. }))
    ));
}

/// A pool in memory that two engines share.
#[derive(Debug, Default)]
struct MemTier(std::sync::Mutex<std::collections::HashSet<brix_kvcache::BlockKey>>);

impl brix_sim::KvTier for MemTier {
    fn lookup(&self, keys: &[brix_kvcache::BlockKey], _now: f64) -> usize {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().take_while(|k| held.contains(k)).count()
    }
    fn store(&self, keys: &[brix_kvcache::BlockKey], _bytes: u64, _now: f64) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(keys.iter().copied());
    }
}

/// An engine on `tier` with its metrics.
fn tiered(tier: &Arc<MemTier>) -> (EngineHandle, Arc<Metrics>) {
    let (cfg, model, gpu, metrics) = parts();
    let tier_cfg = brix_sim::TierConfig::new(brix_sim::Transport::Shm, &model, &gpu);
    let engine = Engine::new(cfg, model, gpu)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_kv_tier(tier.clone(), tier_cfg);
    (
        EngineHandle::spawn(engine, metrics.clone(), Clock::start()),
        metrics,
    )
}

/// `family{labels} value` of a rendered exposition (0 when absent).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(start_paused = true)]
async fn pool_hits_show_under_vllm_external_names() {
    let tier = Arc::new(MemTier::default());
    let prompt: Vec<u32> = (0..1500).map(|i| (i * 7919) % 50_000).collect();
    let run = |h: EngineHandle| {
        let prompt = prompt.clone();
        async move {
            let req = NewRequest {
                prompt,
                ..request(2)
            };
            let mut g = h.submit(req).await.unwrap_or_else(|e| panic!("{e}"));
            while !matches!(g.recv().await, Some(Event::Done { .. }) | None) {}
            h.snapshot().await.unwrap_or_else(|e| panic!("{e}")).engine
        }
    };
    let (a, ma) = tiered(&tier);
    let snap = run(a).await;
    let (b, mb) = tiered(&tier);
    run(b).await;
    let labels = "{engine=\"0\",model_name=\"m\"";
    let ta = ma.render(&snap).unwrap_or_else(|e| panic!("{e}"));
    let tb = mb.render(&snap).unwrap_or_else(|e| panic!("{e}"));
    let q = format!("vllm:external_prefix_cache_queries_total{labels}}}");
    let h = format!("vllm:external_prefix_cache_hits_total{labels}}}");
    let src = |s: &str| format!("vllm:prompt_tokens_by_source_total{labels},source=\"{s}\"}}");
    let cached =
        |s: &str| format!("vllm:prompt_tokens_cached_by_source_total{labels},source=\"{s}\"}}");
    // Engine a computed everything and wrote 5 chunks through; b loaded them (1280 tokens).
    assert_eq!((value(&ta, &q), value(&ta, &h)), (1500.0, 0.0));
    assert_eq!(value(&ta, &src("local_compute")), 1500.0);
    assert_eq!((value(&tb, &q), value(&tb, &h)), (1500.0, 1280.0));
    assert_eq!(value(&tb, &src("external_kv_transfer")), 1280.0);
    assert_eq!(value(&tb, &src("local_compute")), 220.0);
    assert_eq!(value(&tb, &src("local_cache_hit")), 0.0);
    assert_eq!(value(&tb, &cached("external_unspecified")), 1280.0);
    assert_eq!(value(&tb, &cached("device")), 0.0);
    assert_eq!(
        value(&tb, &format!("vllm:prompt_tokens_cached_total{labels}}}")),
        1280.0
    );
}
