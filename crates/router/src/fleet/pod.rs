//! One pod's routing state and its update rules.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::CoreConfig;
use super::health::{FailureKind, Health};
use super::remote::{Refused, RemoteLoad, RemoteLoads};
use crate::kvindex::{KvIndex, KvUpdate, PromptKeys, StoreError};
use crate::pod::{EngineMetrics, LoraState, Observed, Pod};

/// Smoothing of the measured TTFT and TPOT (weight of the newest sample).
pub const EWMA_ALPHA: f64 = 0.2;
/// Seconds of history behind the token-rate signals.
pub const RATE_WINDOW_S: usize = 10;

/// What one good `/metrics` scrape read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    /// The load gauges.
    pub metrics: EngineMetrics,
    /// `process_start_time_seconds`, when exported: a change means the engine restarted.
    pub start_time: Option<f64>,
    /// Prompt plus generation tokens served so far (`vllm:*_tokens_total`): a counter that
    /// goes down means the engine restarted.
    pub tokens_total: Option<f64>,
    /// The LoRA batch state (`vllm:lora_requests_info`, see [`crate::prom::lora_requests_info`]);
    /// None for an engine without LoRA.
    pub lora: Option<LoraState>,
}

/// A change in what the pod can be trusted with, for the driver to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The pod entered rotation.
    Joined,
    /// The pod left rotation (failed `/health` period or ejection): its engine may have lost
    /// its cache, so the driver purges its prefix-index claims.
    Left,
    /// The engine restarted (start time changed or counters went back): purge its claims.
    Restarted,
}

/// Tokens per one-second bucket over the last [`RATE_WINDOW_S`] seconds.
#[derive(Clone, Debug, Default, PartialEq)]
struct RateWindow {
    /// (second, prompt tokens, output tokens) per slot.
    slots: [(u64, f64, f64); RATE_WINDOW_S],
}

impl RateWindow {
    fn add(&mut self, now: f64, prompt: f64, output: f64) {
        let sec = now.max(0.0) as u64;
        let slot = &mut self.slots[sec as usize % RATE_WINDOW_S];
        if slot.0 != sec {
            *slot = (sec, 0.0, 0.0);
        }
        slot.1 += prompt;
        slot.2 += output;
    }

    /// (prompt, output) tokens per second over the window ending at `now`.
    fn rates(&self, now: f64) -> (f64, f64) {
        let sec = now.max(0.0) as u64;
        let (p, o) = self
            .slots
            .iter()
            .filter(|s| s.0 + RATE_WINDOW_S as u64 > sec && s.0 <= sec)
            .fold((0.0, 0.0), |(p, o), s| (p + s.1, o + s.2));
        let w = RATE_WINDOW_S as f64;
        (p / w, o / w)
    }
}

fn ewma(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(match old {
        Some(x) => x + EWMA_ALPHA * (sample - x),
        None => sample,
    })
}

/// Everything a router knows about one pod: its own in-flight count (exact), the engine's
/// gauges as of the last good scrape and when that was, TTFT/TPOT EWMAs and token rates
/// measured on finished responses, and its health.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodCore {
    in_flight: u32,
    metrics: EngineMetrics,
    scraped_at: Option<f64>,
    start_time: Option<f64>,
    tokens_total: Option<f64>,
    ttft_s: Option<f64>,
    tpot_s: Option<f64>,
    rates: RateWindow,
    health: Health,
    lora: Option<Arc<LoraState>>,
    /// LoRA adapters the engine holds (its `/v1/models` entries with a `parent`).
    adapters: Vec<String>,
    /// Adapters being drained here: no new request for them (the placement moves them away).
    draining: BTreeSet<String>,
    /// Requests in flight per adapter (entries at zero are removed).
    adapter_in_flight: BTreeMap<String, u32>,
    /// What other gateway replicas report they have on the pod.
    remote: RemoteLoads,
    /// The engine's cache as its KV events tell it; None until the first event (or
    /// [`Self::kv_enable`]): the pod publishes none.
    kv: Option<KvIndex>,
    /// Booked prefill tokens not yet answered by a first token, and how many requests hold them.
    pending_prefill: f64,
    prefilling: u32,
    /// Requests past their first token, and Σ their booked context tokens.
    decoding: u32,
    decode_context: f64,
    /// Smoothed measured and predicted TTFT of booked requests (the `ttft` correction is
    /// their ratio: a ratio of means, so near-zero predictions do not dominate it).
    ttft_measured: Option<f64>,
    ttft_predicted: Option<f64>,
    /// Smoothed prompt units per prompt token.
    units_per_token: Option<f64>,
}

/// One request's share of a pod's booked work, held by the driver from the decision to the
/// end: [`PodCore::book`] makes it, [`PodCore::first_token`] moves it from prefill to
/// decoding, [`PodCore::release`] gives back whichever part it holds (also for a request that
/// never produced a token).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Booking {
    /// Uncached prompt tokens booked as pending prefill.
    pub prefill: f64,
    /// Prompt tokens the request's decode steps will read (its context).
    pub context: f64,
    /// The TTFT predicted at the decision (seconds, uncorrected; 0: none, no correction).
    pub predicted_s: f64,
    /// Where the booking is now.
    pub stage: Stage,
}

/// Where a [`Booking`] is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// Routed, no first token yet: counted in `pending_prefill`.
    #[default]
    Prefill,
    /// First token out: counted in `decoding`.
    Decoding,
    /// Released: counted nowhere.
    Released,
}

impl PodCore {
    /// Requests routed to the pod and not yet ended.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// This router's own load on the pod, as it publishes it to its peers.
    pub fn own_load(&self) -> RemoteLoad {
        RemoteLoad {
            in_flight: self.in_flight,
            pending_prefill: self.pending_prefill,
            decoding: self.decoding,
            decode_context: self.decode_context,
        }
    }

    /// Peer gateway `gateway` reported `load` on the pod, received at `now`; it counts in
    /// snapshots for [`CoreConfig::remote_ttl_s`] unless a newer one replaces it.
    pub fn set_remote(
        &mut self,
        gateway: &str,
        load: RemoteLoad,
        now: f64,
        cfg: &CoreConfig,
    ) -> Result<(), Refused> {
        self.remote.set(gateway, load, now, cfg.remote_ttl_s)
    }

    /// The live peers' load on the pod at `now`, summed.
    pub fn remote_load(&self, now: f64, cfg: &CoreConfig) -> RemoteLoad {
        self.remote.sum(now, cfg.remote_ttl_s)
    }

    /// Peers whose load on the pod is live at `now`.
    pub fn remote_peers(&self, now: f64, cfg: &CoreConfig) -> usize {
        self.remote.peers(now, cfg.remote_ttl_s)
    }

    /// A request was sent to the pod (book it right after the decision, before the next one).
    pub fn begin(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// A request to the pod ended, however it ended.
    pub fn end(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// [`Self::begin`] for a request naming `adapter` (None: a base-model request), counted
    /// per adapter too so a drain knows when its last request ended.
    pub fn begin_for(&mut self, adapter: Option<&str>) {
        self.begin();
        if let Some(a) = adapter {
            *self.adapter_in_flight.entry(a.to_string()).or_default() += 1;
        }
    }

    /// [`Self::end`] for a request begun with [`Self::begin_for`] with the same `adapter`.
    pub fn end_for(&mut self, adapter: Option<&str>) {
        self.end();
        if let Some(a) = adapter
            && let Some(n) = self.adapter_in_flight.get_mut(a)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.adapter_in_flight.remove(a);
            }
        }
    }

    /// Books a request's estimated work at the decision (with [`Self::begin`]): `prefill`
    /// uncached prompt tokens pending until its first token, `context` prompt tokens decoded
    /// on afterwards, and the TTFT predicted for it (0 when none was).
    pub fn book(&mut self, prefill: f64, context: f64, predicted_s: f64) -> Booking {
        let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        let b = Booking {
            prefill: clean(prefill),
            context: clean(context),
            predicted_s: clean(predicted_s),
            stage: Stage::Prefill,
        };
        self.pending_prefill += b.prefill;
        self.prefilling = self.prefilling.saturating_add(1);
        b
    }

    /// The booked request produced its first token `ttft_s` after it was sent (None when not
    /// measured): its prefill leaves the queue, it counts as decoding, and the measured over
    /// predicted TTFT feed the correction (each its own EWMA). A second call does nothing.
    pub fn first_token(&mut self, b: &mut Booking, ttft_s: Option<f64>) {
        if b.stage != Stage::Prefill {
            return;
        }
        self.unbook_prefill(b.prefill);
        self.decoding = self.decoding.saturating_add(1);
        self.decode_context += b.context;
        b.stage = Stage::Decoding;
        if let Some(t) = ttft_s.filter(|t| t.is_finite() && *t >= 0.0)
            && b.predicted_s > 0.0
        {
            self.ttft_measured = ewma(self.ttft_measured, t);
            self.ttft_predicted = ewma(self.ttft_predicted, b.predicted_s);
        }
    }

    /// The booked request ended, however it ended: what it still holds is given back.
    pub fn release(&mut self, b: &mut Booking) {
        match b.stage {
            Stage::Prefill => self.unbook_prefill(b.prefill),
            Stage::Decoding => {
                self.decoding = self.decoding.saturating_sub(1);
                self.decode_context = if self.decoding == 0 {
                    0.0
                } else {
                    (self.decode_context - b.context).max(0.0)
                };
            }
            Stage::Released => {}
        }
        b.stage = Stage::Released;
    }

    fn unbook_prefill(&mut self, tokens: f64) {
        self.prefilling = self.prefilling.saturating_sub(1);
        // Sums of floats drift: the queue is exactly empty when no request holds any of it.
        self.pending_prefill = if self.prefilling == 0 {
            0.0
        } else {
            (self.pending_prefill - tokens).max(0.0)
        };
    }

    /// A finished response's prompt was `units` long in the prefix index's unit and
    /// `tokens` long by the engine's count (its usage): teaches the units-per-token ratio.
    pub fn prompt_size(&mut self, units: f64, tokens: f64) {
        if units.is_finite() && tokens.is_finite() && units > 0.0 && tokens >= 1.0 {
            self.units_per_token = ewma(self.units_per_token, units / tokens);
        }
    }

    /// Prefill tokens booked and not yet answered by a first token.
    pub fn pending_prefill(&self) -> f64 {
        self.pending_prefill
    }

    /// Requests past their first token and not ended.
    pub fn decoding(&self) -> u32 {
        self.decoding
    }

    /// Requests for `adapter` routed to the pod and not yet ended.
    pub fn adapter_in_flight(&self, adapter: &str) -> u32 {
        self.adapter_in_flight.get(adapter).copied().unwrap_or(0)
    }

    /// The adapters the engine holds now (from its `/v1/models`, or the controller that just
    /// loaded or unloaded one). A drain mark ends when its adapter leaves the list (unloaded).
    pub fn set_adapters(&mut self, adapters: Vec<String>) {
        self.draining.retain(|a| adapters.contains(a));
        self.adapters = adapters;
    }

    /// The adapters the engine holds.
    pub fn adapters(&self) -> &[String] {
        &self.adapters
    }

    /// Whether the engine holds `adapter`.
    pub fn has_adapter(&self, adapter: &str) -> bool {
        self.adapters.iter().any(|a| a == adapter)
    }

    /// Marks `adapter` as draining here (no new requests for it) or serving again. Only an
    /// adapter the pod holds can be marked.
    pub fn set_draining(&mut self, adapter: &str, draining: bool) {
        if !draining {
            self.draining.remove(adapter);
        } else if self.has_adapter(adapter) {
            self.draining.insert(adapter.to_string());
        }
    }

    /// Whether `adapter` is draining here.
    pub fn is_draining(&self, adapter: &str) -> bool {
        self.draining.contains(adapter)
    }

    /// Whether a request for `adapter` (None: the base model) may be routed here, health
    /// aside: the pod holds the adapter and is not draining it. One rule for both drivers.
    pub fn serves(&self, adapter: Option<&str>) -> bool {
        adapter.is_none_or(|a| self.has_adapter(a) && !self.is_draining(a))
    }

    /// A response finished at `now` with these token counts and measured latencies.
    pub fn response(
        &mut self,
        now: f64,
        prompt_tokens: u64,
        output_tokens: u64,
        ttft_s: Option<f64>,
        tpot_s: Option<f64>,
    ) {
        self.rates
            .add(now, prompt_tokens as f64, output_tokens as f64);
        if let Some(t) = ttft_s {
            self.ttft_s = ewma(self.ttft_s, t);
        }
        if let Some(t) = tpot_s {
            self.tpot_s = ewma(self.tpot_s, t);
        }
    }

    /// Applies one of the engine's KV events to its exact index (created on the first one).
    /// A gap or a full index is the driver's to count and act on (replay, or
    /// [`Self::kv_clear`]).
    pub fn kv_event(&mut self, update: KvUpdate<'_>) -> Result<(), StoreError> {
        self.kv.get_or_insert_with(KvIndex::default).apply(update)
    }

    /// Declares that the engine publishes KV events, with an index of at most `capacity`
    /// blocks (an index already there is kept if it has that capacity, else replaced empty).
    pub fn kv_enable(&mut self, capacity: usize) {
        if self.kv.as_ref().is_none_or(|k| k.capacity() != capacity) {
            self.kv = Some(KvIndex::new(capacity));
        }
    }

    /// Forgets every block of the exact index (the engine restarted, left rotation, or its
    /// events were lost for good); the pod still counts as publishing events.
    pub fn kv_clear(&mut self) {
        if let Some(k) = &mut self.kv {
            k.cleared();
        }
    }

    /// The exact index; None when the engine publishes no KV events.
    pub fn kv_index(&self) -> Option<&KvIndex> {
        self.kv.as_ref()
    }

    /// Prompt tokens of the request behind `keys` the engine holds; None without events.
    pub fn cached_tokens(&self, keys: &mut PromptKeys<'_>) -> Option<u32> {
        self.kv.as_ref().map(|k| keys.cached_tokens(k))
    }

    /// A scrape succeeded at `now`; returns [`Transition::Restarted`] when it shows the engine
    /// restarted since the last one (the exact index is cleared then).
    pub fn scraped(&mut self, now: f64, scrape: Scrape) -> Option<Transition> {
        let restarted = matches!((self.start_time, scrape.start_time), (Some(a), Some(b)) if a != b)
            || matches!((self.tokens_total, scrape.tokens_total), (Some(a), Some(b)) if b < a);
        self.metrics = scrape.metrics;
        self.lora = scrape.lora.map(Arc::new);
        self.scraped_at = Some(now);
        self.start_time = scrape.start_time.or(self.start_time);
        self.tokens_total = scrape.tokens_total.or(self.tokens_total);
        if restarted {
            self.kv_clear();
        }
        restarted.then_some(Transition::Restarted)
    }

    /// Seconds since the last good scrape; None before any. A failed or slow scrape changes
    /// nothing: the gauges stay, older.
    pub fn metrics_age(&self, now: f64) -> Option<f64> {
        self.scraped_at.map(|t| (now - t).max(0.0))
    }

    /// The pod's health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether requests may go to the pod.
    pub fn in_rotation(&self) -> bool {
        self.health.in_rotation()
    }

    /// A `/health` probe answered at `now` (leaving rotation clears the exact index).
    pub fn probe(&mut self, ok: bool, now: f64, cfg: &CoreConfig) -> Option<Transition> {
        let t = self
            .health
            .probe(ok, now, &cfg.ejection)
            .then(|| self.rotation_transition());
        if t == Some(Transition::Left) {
            self.kv_clear();
        }
        t
    }

    /// An upstream attempt failed at `now`; `allowed` is [`super::may_eject`]'s answer for
    /// this fleet now. An ejection clears the exact index.
    pub fn failure(
        &mut self,
        kind: FailureKind,
        now: f64,
        allowed: bool,
        cfg: &CoreConfig,
    ) -> Option<Transition> {
        let ejected = self.health.failure(kind, now, allowed, &cfg.ejection);
        if ejected {
            self.kv_clear();
        }
        ejected.then_some(Transition::Left)
    }

    /// An upstream attempt succeeded (response headers, not 5xx).
    pub fn success(&mut self) {
        self.health.success();
    }

    fn rotation_transition(&self) -> Transition {
        if self.in_rotation() {
            Transition::Joined
        } else {
            Transition::Left
        }
    }

    /// Writes the routing view at `now` into `pod` (whose name and address stay): gauges
    /// weighed by their age ([`CoreConfig::trust`]), dropped once stale. `cached_tokens` is
    /// per request: reset here, the driver fills it ([`Self::cached_tokens`]). The load
    /// (in flight, booked prefill, decoding) is this router's plus its live peers'.
    pub fn fill(&self, pod: &mut Pod, now: f64, cfg: &CoreConfig) {
        let (prompt_tps, output_tps) = self.rates.rates(now);
        let load = self.own_load().plus(self.remote_load(now, cfg));
        pod.in_flight = load.in_flight;
        pod.cached_tokens = None;
        pod.pending_prefill = load.pending_prefill;
        pod.decoding = load.decoding;
        pod.decode_context = load.decode_context;
        let trust = self.metrics_age(now).map(|a| cfg.trust(a));
        // The LoRA batch state is kept as is until stale, like KV usage.
        pod.lora = match trust {
            Some(t) if t > 0.0 => self.lora.clone(),
            _ => None,
        };
        pod.metrics = match trust {
            None => EngineMetrics::default(),
            Some(t) if t <= 0.0 => EngineMetrics::default(),
            Some(t) if t >= 1.0 => self.metrics.clone(),
            Some(t) => EngineMetrics {
                running: self.metrics.running.map(|x| x * t),
                waiting: self.metrics.waiting.map(|x| x * t),
                kv_usage: self.metrics.kv_usage,
            },
        };
        pod.observed = Observed {
            prompt_tps,
            output_tps,
            ttft_s: self.ttft_s,
            tpot_s: self.tpot_s,
            ttft_ratio: match (self.ttft_measured, self.ttft_predicted) {
                (Some(m), Some(p)) if p > 0.0 => Some(m / p),
                _ => None,
            },
            units_per_token: self.units_per_token,
        };
    }

    /// The routing view of the pod at `now`.
    pub fn snapshot(&self, name: &str, address: &str, now: f64, cfg: &CoreConfig) -> Pod {
        let mut pod = Pod {
            name: name.to_string(),
            address: address.to_string(),
            ..Pod::default()
        };
        self.fill(&mut pod, now, cfg);
        pod
    }
}
