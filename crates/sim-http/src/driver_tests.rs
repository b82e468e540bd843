use std::sync::Arc;

use brix_sim::{Catalog, EngineConfig, FinishReason, NewRequest};

use super::*;
use crate::metrics::{Metrics, MetricsSpec};

fn start() -> (EngineHandle, Clock) {
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
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::new(cfg, model, gpu).unwrap_or_else(|e| panic!("{e}"));
    let clock = Clock::start();
    (EngineHandle::spawn(engine, Arc::new(metrics), clock), clock)
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
