//! The event loop's types: events and their heap order, and one engine's slot.

use std::cmp::Ordering;

use std::sync::Arc;

use brix_sim::{Engine, NewRequest, StepOutput};

use crate::vsim::{FleetPool, SimConfig, SimError};

/// What the loop processes, each at its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// Request (by position) is sent.
    Arrival(usize),
    /// The engine's running step ends.
    StepEnd(usize),
    /// The gateway scrapes the engine.
    Scrape(usize),
    /// Closed loop: a released turn's think time is over.
    Wake,
    /// The autoscaler's metrics are read (and the timeline sampled).
    Observe,
    /// The autoscaler decides; `tick`: the periodic one (else one triggered by a held request).
    Decide { tick: bool },
    /// An engine asked for is up: its first probe succeeds.
    Ready(usize),
    /// A held request's wait is over.
    HoldTimeout(usize),
    /// The adapter controller's placement round.
    Place,
    /// Engine (first) finished loading adapter (second).
    AdapterLoaded(usize, u32),
    /// A request held for its adapter waited long enough.
    AdapterHoldTimeout(usize),
    /// Gateway replica (by number) publishes its loads and bookings to the others.
    Sync(usize),
    /// Step (by position) of the replica schedule is due.
    Scheduled(usize),
}

impl Event {
    /// Whether the event keeps the run going (ticks, probes and timeouts do not).
    pub(super) fn live(self) -> bool {
        matches!(self, Self::Arrival(_) | Self::StepEnd(_) | Self::Wake)
    }
}

/// Where an engine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Asked for, loading: billed, not routable.
    Starting,
    /// In rotation.
    Ready,
    /// Scaled down: no new requests, stops when its last one ends.
    Draining,
    /// Stopped: no longer billed.
    Stopped,
}

/// A heap entry: earliest time first, then the order it was scheduled in.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timed {
    pub(super) at: f64,
    pub(super) seq: u64,
    pub(super) event: Event,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.total_cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}

/// One engine, its pending arrivals, and what the gateway and the oracle know of it.
pub(super) struct Slot {
    pub(super) engine: Engine,
    /// Sent while a step was running: (request, arrival), added when it ends.
    pub(super) pending: Vec<(NewRequest, f64)>,
    /// The running step; its outputs are visible at its end.
    pub(super) step: Option<StepOutput>,
    pub(super) requests: u64,
    // The oracle's bookkeeping (exact from the events; see `oracle`).
    pub(super) queued_prefill: u64,
    pub(super) decoding: u32,
    pub(super) decode_context: u64,
    pub(super) life: Life,
    /// When it was asked for (billed from then).
    pub(super) requested_at: f64,
    /// When it stopped (billed until then).
    pub(super) stopped_at: Option<f64>,
    /// The last scrape's (waiting, KV usage).
    pub(super) gauges: Option<(f64, f64)>,
    /// Prompt and generation token counters at the last observe tick.
    pub(super) counted: (u64, u64),
    /// Its group in a mixed fleet (0 otherwise).
    pub(super) group: usize,
}

impl Slot {
    /// Engine `i` of `cfg` (seeded `seed ^ i`), asked for at `now`, with the run's KV pool
    /// below its prefix cache when there is one.
    pub(super) fn new(
        cfg: &SimConfig,
        i: usize,
        life: Life,
        now: f64,
        pool: Option<&Arc<FleetPool>>,
    ) -> Result<Self, SimError> {
        let (engine_cfg, gpu) = cfg.engine_spec(i);
        let mut ec = engine_cfg.clone();
        ec.seed ^= i as u64;
        // A run with adapters serves them: LoRA on, with the flags' slots.
        ec.enable_lora |= cfg.adapters.is_some();
        ec.kv_events |= cfg.kv_events;
        let mut engine = Engine::new(ec, cfg.model.clone(), gpu.clone())?;
        // A pool of 0 bytes stores nothing: engines neither ask it nor copy chunks out for
        // it, so the run is prefix caching alone.
        if let (Some(p), Some(pc)) = (
            pool,
            cfg.kv_pool.as_ref().filter(|pc| pc.capacity_bytes > 0),
        ) {
            engine = engine.with_kv_tier(p.clone(), pc.tier_config(&cfg.model, &cfg.gpu));
        }
        Ok(Self {
            engine,
            pending: Vec::new(),
            step: None,
            requests: 0,
            queued_prefill: 0,
            decoding: 0,
            decode_context: 0,
            life,
            requested_at: now,
            stopped_at: None,
            gauges: None,
            counted: (0, 0),
            group: cfg.group_of(i).unwrap_or(0),
        })
    }
}
