//! The gateway side of KV events: each pod's exact index (fed by its engine's events, see
//! [`brix_router::KvIndex`]), the request's token ids (the model's own tokenizer and chat
//! template, [`brix_tokenizer::Tokenizer::request_tokens`]), and how far the approximate index's guess was from the truth.
//!
//! Pods of a model listed under `kv_events` get an exact index; every request for that model
//! (or one of its adapters) on a tokenizing path (chat, completions) is tokenized once, and
//! each candidate's `cached_tokens` is read from its index at the decision
//! ([`crate::pool::Pool::decide_measured`]). Pods without events keep the approximate index.

pub(crate) mod config;
mod subscriber;

use std::collections::HashMap;
use std::sync::Arc;

use brix_router::{KvUpdate, Pod, PrefixIndex, PromptKeys, RouteRequest, StoreError};
use brix_tokenizer::{Api, Tokenizer};

pub use config::{KvEventsConfig, KvModelConfig};

use crate::discovery::{KvEndpoints, Targets};
use crate::parse::Endpoint;
use crate::pool::PodState;

/// The models whose engines publish KV events, with their tokenizers loaded once at start.
#[derive(Default)]
pub(crate) struct KvModels {
    models: HashMap<String, KvModel>,
}

/// One such model.
pub(crate) struct KvModel {
    pub(crate) cfg: KvModelConfig,
    tokenizer: Tokenizer,
}

impl KvModels {
    /// Loads every enabled model's tokenizer; a missing or broken one stops the start.
    pub(crate) fn load(cfg: &KvEventsConfig) -> Result<Self, String> {
        let mut models = HashMap::new();
        for m in cfg.models.iter().filter(|m| m.enabled) {
            let tokenizer = Tokenizer::load(m.tokenizer.as_deref())
                .map_err(|e| format!("kv_events model '{}': {e}", m.name))?;
            models.insert(
                m.name.clone(),
                KvModel {
                    cfg: m.clone(),
                    tokenizer,
                },
            );
        }
        Ok(Self { models })
    }

    /// `model`'s entry, when its engines publish KV events.
    pub(crate) fn get(&self, model: &str) -> Option<&KvModel> {
        self.models.get(model)
    }

    /// Where the engine of a pod of `model` at `address` publishes, when it does: the pod's
    /// own sockets from discovery, else the model's ports on the pod's host.
    pub(crate) fn endpoints(
        &self,
        model: &str,
        address: &str,
        own: Option<&KvEndpoints>,
    ) -> Option<KvEndpoints> {
        let m = self.get(model)?;
        if let Some(e) = own {
            return Some(e.clone());
        }
        let host = address.rsplit_once(':')?.0;
        Some(KvEndpoints {
            events: format!("tcp://{host}:{}", m.cfg.port?),
            replay: m.cfg.replay_port.map(|p| format!("tcp://{host}:{p}")),
        })
    }
}

/// The request's token ids for `model`, computed off the async workers (a 32 KiB chat takes
/// ~3 ms, docs/router.md); None when the model publishes no events or the path is not one
/// the engine prefills (chat, completions).
pub(crate) async fn request_tokens(
    kv: &Arc<KvModels>,
    model: &str,
    endpoint: Endpoint,
    body: bytes::Bytes,
) -> Option<Vec<u32>> {
    kv.get(model)?;
    if !matches!(endpoint, Endpoint::Chat | Endpoint::Completions) {
        return None;
    }
    let (kv, model) = (kv.clone(), model.to_string());
    tokio::task::spawn_blocking(move || kv.get(&model)?.tokens(endpoint, &body))
        .await
        .ok()
        .flatten()
}

impl KvModel {
    /// The token ids the engine will prefill for this request, None for other paths.
    pub(crate) fn tokens(&self, endpoint: Endpoint, body: &[u8]) -> Option<Vec<u32>> {
        let api = match endpoint {
            Endpoint::Chat => Api::Chat,
            Endpoint::Completions => Api::Completions,
            _ => return None,
        };
        self.tokenizer.request_tokens(api, body)
    }
}

/// How the approximate index's guess for one pod compared with its exact index, as shares of
/// the prompt (0..=1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Prediction {
    /// Leading blocks the approximate index credits the pod with / the prompt's blocks.
    pub(crate) approx: f64,
    /// Cached tokens the engine's events say it holds / the prompt's tokens.
    pub(crate) exact: f64,
}

impl Prediction {
    /// Within this share of the prompt, the two agree.
    pub(crate) const TOLERANCE: f64 = 0.1;

    /// `agree`, `over` (the approximate index promised more) or `under`.
    pub(crate) fn outcome(self) -> &'static str {
        let d = self.approx - self.exact;
        if d > Self::TOLERANCE {
            "over"
        } else if d < -Self::TOLERANCE {
            "under"
        } else {
            "agree"
        }
    }
}

/// What a decision learnt from the exact indexes, for the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct KvSeen {
    /// Per candidate: its exact cached tokens (None without events or tokens).
    pub(crate) cached: Vec<Option<u32>>,
    /// Per candidate with an exact figure: the approximate index's guess beside it.
    pub(crate) predictions: Vec<Prediction>,
}

/// One prediction per pod with an exact figure, when the request has a token count.
pub(crate) fn predictions(
    req: &RouteRequest<'_>,
    pods: &[Pod],
    index: &PrefixIndex,
    now: f64,
) -> Vec<Prediction> {
    let Some(prompt) = req.prompt_token_count().filter(|&t| t > 0) else {
        return Vec::new();
    };
    if pods.iter().all(|p| p.cached_tokens.is_none()) {
        return Vec::new();
    }
    let matched = index.matched(req.blocks, pods, now);
    let blocks = req.blocks.len().max(1) as f64;
    pods.iter()
        .zip(matched)
        .filter_map(|(p, m)| {
            Some(Prediction {
                approx: m as f64 / blocks,
                exact: (f64::from(p.cached_tokens?) / f64::from(prompt)).min(1.0),
            })
        })
        .collect()
}

impl PodState {
    /// The routing view at `now`, with this request's cached tokens when the pod has an exact
    /// index and `keys` is given (one lock for both).
    pub(crate) fn snapshot_for(&self, now: f64, keys: Option<&mut PromptKeys<'_>>) -> Pod {
        let cfg = self.config();
        let core = self.core();
        let mut pod = core.snapshot(&self.name, &self.address, now, &cfg);
        if let Some(keys) = keys {
            pod.cached_tokens = core.cached_tokens(keys);
        }
        pod
    }

    /// The engine publishes KV events: give the pod an exact index of `capacity` blocks.
    pub(crate) fn kv_enable(&self, capacity: usize) {
        self.core().kv_enable(capacity);
    }

    /// Applies one of the engine's KV events.
    pub(crate) fn kv_event(&self, update: KvUpdate<'_>) -> Result<(), StoreError> {
        self.core().kv_event(update)
    }

    /// Forgets the exact index (events lost for good).
    pub(crate) fn kv_clear(&self) {
        self.core().kv_clear();
    }

    /// Blocks in the exact index; None without events.
    pub(crate) fn kv_blocks(&self) -> Option<usize> {
        self.core().kv_index().map(brix_router::KvIndex::len)
    }
}

/// Applies one of `pod`'s engine events to its exact index and counts it (a gap or a full
/// index too); the caller replays or clears on a gap.
pub(crate) fn apply(
    pod: &PodState,
    m: &crate::metrics::KvMetrics,
    update: KvUpdate<'_>,
) -> Result<(), StoreError> {
    let kind = match update {
        KvUpdate::Stored { .. } => "stored",
        KvUpdate::Removed { .. } => "removed",
        KvUpdate::Cleared => "cleared",
    };
    let r = pod.kv_event(update);
    match r {
        Ok(()) => m.events.with_label_values(&[&pod.name, kind]).inc(),
        Err(StoreError::Gap(_)) => m.gaps.with_label_values(&[&pod.name, "parent"]).inc(),
        Err(StoreError::Full) => m.full.with_label_values(&[&pod.name]).inc(),
        Err(StoreError::Malformed) => {
            tracing::debug!(pod = %pod.name, "kv_events: a stored event whose token ids do not cover its blocks; skipped");
        }
    }
    m.blocks
        .with_label_values(&[&pod.name])
        .set(i64::try_from(pod.kv_blocks().unwrap_or(0)).unwrap_or(i64::MAX));
    r
}

/// Counts what one decision saw: the chosen pod's cached and uncached prompt tokens, and
/// each approximate guess against the exact figure.
pub(crate) fn record(
    gw: &crate::Gateway,
    model: &str,
    req: &RouteRequest<'_>,
    seen: &KvSeen,
    chosen: usize,
) {
    let kv = &gw.metrics.kv;
    if let (Some(Some(cached)), Some(prompt)) = (seen.cached.get(chosen), req.prompt_token_count())
    {
        let cached = (*cached).min(prompt);
        let c = &kv.routed_tokens;
        c.with_label_values(&[model, "cached"])
            .inc_by(u64::from(cached));
        c.with_label_values(&[model, "uncached"])
            .inc_by(u64::from(prompt - cached));
    }
    for p in &seen.predictions {
        kv.predictions
            .with_label_values(&[model, p.outcome()])
            .inc();
        kv.prediction_error
            .with_label_values(&[model])
            .observe((p.approx - p.exact).abs());
    }
}

/// A pod discovery just added: if a model it serves is listed under `kv_events`, it gets an
/// exact index and a subscriber to its engine's events (abort the handle when it leaves).
pub(crate) fn watch_pod(
    gw: &Arc<crate::Gateway>,
    targets: &Targets,
    pod: &Arc<PodState>,
) -> Option<tokio::task::AbortHandle> {
    let model = targets.iter().find_map(|(model, ts)| {
        ts.iter()
            .any(|t| t.address == pod.address)
            .then_some(model)
            .filter(|m| gw.kv.get(m).is_some())
    });
    let model = model?;
    let Some(endpoints) = gw.kv.endpoints(model, &pod.address, pod.kv_events.as_ref()) else {
        tracing::warn!(pod = %pod.name, model, "kv_events: no events endpoint for this pod (no port configured); routing it on the approximate index");
        return None;
    };
    let kv = &gw.cfg.kv_events;
    pod.kv_enable(kv.capacity_blocks);
    gw.metrics.kv.blocks.with_label_values(&[&pod.name]).set(0);
    tracing::info!(pod = %pod.name, model, events = %endpoints.events, "kv_events: exact index on; subscribing");
    let topic = gw
        .kv
        .get(model)
        .map(|m| m.cfg.topic.clone())
        .unwrap_or_default();
    Some(subscriber::spawn(
        pod.clone(),
        endpoints,
        topic,
        std::time::Duration::from_millis(kv.timeout_ms),
        gw.metrics.clone(),
    ))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "subscriber_tests.rs"]
mod subscriber_tests;
