//! Per-model load as the gateway sees it, for the autoscaler: monotonic counters (requests and
//! prompt tokens at arrival; completions, output tokens and latency sums at the end) and the
//! number in flight. Keys are models some pod serves (checked before a request is counted),
//! so a client cannot grow the map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// One model's counters. Latency sums are kept in microseconds.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    completed: AtomicU64,
    output_tokens: AtomicU64,
    ttft_us: AtomicU64,
    ttft_count: AtomicU64,
    tpot_us: AtomicU64,
    tpot_count: AtomicU64,
    in_flight: AtomicU32,
}

/// Every model's counters.
#[derive(Debug, Default)]
pub(crate) struct Loads {
    by_model: RwLock<HashMap<String, Arc<Counters>>>,
}

impl Loads {
    /// The counters of `model` (a known model), made on first use.
    pub(crate) fn of(&self, model: &str) -> Arc<Counters> {
        if let Some(c) = self
            .by_model
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
        {
            return c.clone();
        }
        self.by_model
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(model.to_string())
            .or_default()
            .clone()
    }

    /// The counters of `model` if any request for it arrived.
    pub(crate) fn get(&self, model: &str) -> Option<Arc<Counters>> {
        self.by_model
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned()
    }
}

impl Counters {
    /// A request arrived with about `prompt_tokens` (the estimate TPM reserves); it counts in
    /// flight until the guard drops.
    pub(crate) fn arrived(self: &Arc<Self>, prompt_tokens: u64) -> Arrival {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt_tokens, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Arrival(self.clone())
    }

    /// A request finished with an answer: its output tokens and measured latencies.
    pub(crate) fn finished(&self, output_tokens: u64, ttft_s: Option<f64>, tpot_s: Option<f64>) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.output_tokens
            .fetch_add(output_tokens, Ordering::Relaxed);
        let us = |s: f64| (s.max(0.0) * 1e6) as u64;
        if let Some(t) = ttft_s {
            self.ttft_us.fetch_add(us(t), Ordering::Relaxed);
            self.ttft_count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t) = tpot_s {
            self.tpot_us.fetch_add(us(t), Ordering::Relaxed);
            self.tpot_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now, with the engines' gauges left empty.
    pub(crate) fn read(&self) -> ModelLoad {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ModelLoad {
            requests: r(&self.requests),
            prompt_tokens: r(&self.prompt_tokens),
            completed: r(&self.completed),
            output_tokens: r(&self.output_tokens),
            ttft_sum_s: r(&self.ttft_us) as f64 / 1e6,
            ttft_count: r(&self.ttft_count),
            tpot_sum_s: r(&self.tpot_us) as f64 / 1e6,
            tpot_count: r(&self.tpot_count),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            waiting: None,
            kv_usage: None,
        }
    }
}

/// A request counted in flight for its model; dropping it ends that.
#[derive(Debug)]
pub(crate) struct Arrival(Arc<Counters>);

impl Arrival {
    /// The model's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.0
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One model's load as the gateway sees it: the autoscaler's own input type, so the gateway
/// fills exactly what the policy reads (requests and prompt tokens counted at arrival, held
/// ones included; prompt tokens as the gateway estimates them, 4 bytes a token; TTFT of
/// streaming requests; engine gauges from the probe's scrapes of the pods in rotation).
pub use brix_autoscaler::Load as ModelLoad;
