//! Virtual-time mode of `brix bench` (`brix bench sim`): a discrete-event simulation of a fleet
//! of engines behind the gateway's routing policies. Pure: no I/O, no clock, no threads.
//!
//! N engines are [`brix_sim::Engine`]s (the model `brix sim` serves in real time), each stepping
//! on its own virtual clock. A workload's requests are released as the live client releases
//! them ([`Release`]), routed by `brix_router::route` with exactly the inputs the live gateway
//! gives it (its own in-flight counts; engine gauges as of the last scrape, refreshed every
//! scrape interval; measured TTFT/TPOT and token rates; the prefix index fed after every
//! decision), or by the [`SimStrategy::Oracle`], which sees the engines' true caches and queues.
//! Events (arrivals, step ends, scrape ticks) are processed in timestamp order from a binary
//! heap, ties in the order they were scheduled. The result is one [`RequestRecord`] per request,
//! the same records the live mode writes, so both modes share `Summary`.
//!
//! Same workload, config, strategy and seed → the same records, bit for bit.

pub mod adapters;
mod autoscale;
mod fleet_report;
mod mixed;
mod oracle;
mod plot;
mod pool;
mod release;
mod sim;

#[cfg(test)]
mod adapter_tests;
#[cfg(test)]
mod kvpool_tests;
#[cfg(test)]
mod mixed_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;

pub use autoscale::ScaleConfig;
/// The pool's eviction policies (`brix_kvcache`'s), for `--kv-pool-policy`.
pub use brix_kvcache::PolicyKind;
pub use fleet_report::{TimelineSample, decisions_jsonl, timeline_csv};
pub use mixed::{
    GroupConfig, GroupReport, MAX_GROUP_ENGINES, MixSpec, PlanReplay, ReplayError,
    attainment_by_group, plan_fleet, replay_plan, replay_routes, slo_met,
};
pub use plot::timeline_png;
pub use pool::{FleetPool, KvPoolConfig, PoolReport};
pub use sim::{Assign, ReplicaConfig};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use brix_router::{DEFAULT_SEED, PlanRoutes, PrefixConfig, Weighted};
use brix_sim::{ConfigError, EngineConfig, GpuProfile, ModelProfile};
use serde::Serialize;

use crate::report::{FleetSummary, RequestRecord};
use crate::workload::Workload;

/// Why a strategy list does not parse (the router's own error).
pub use brix_router::StrategyParseError;

/// How requests are chosen for a run: one of the gateway's strategies, or the oracle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimStrategy {
    /// `brix_router::route` with this strategy or weighted mix, fed as the gateway feeds it.
    Router(Weighted),
    /// Sees every engine's true prefix cache and queue: the upper bound for cache-aware
    /// routing (formula in the `oracle` module and docs/bench.md).
    Oracle,
    /// SGLang's `cache_aware` (sglang-router 0.3.2, the launcher's defaults) over the
    /// gateway's prefix index, as a baseline (`sglang-cache-aware`).
    SglangCacheAware,
}

impl SimStrategy {
    /// Parses a comma-separated list of strategies, each run on its own; a weighted mix joins
    /// its parts with `+` (`prefix-cache:2+least-request:1`), since `,` separates runs.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, StrategyParseError> {
        let list: Vec<Self> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(StrategyParseError::Empty(s.to_string()));
        }
        Ok(list)
    }
}

impl FromStr for SimStrategy {
    type Err = StrategyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "oracle" => Ok(Self::Oracle),
            "sglang-cache-aware" => Ok(Self::SglangCacheAware),
            other => other.replace('+', ",").parse().map(Self::Router),
        }
    }
}

impl fmt::Display for SimStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oracle => f.write_str("oracle"),
            Self::SglangCacheAware => f.write_str("sglang-cache-aware"),
            Self::Router(w) => f.write_str(&w.to_string().replace(',', "+")),
        }
    }
}

/// When requests are sent, as the live client sends them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Release {
    /// Open loop: first turns and single requests at their `at_s`.
    Open,
    /// Closed loop: `users` clients sharing one queue, each sending as soon as its previous
    /// request ends: a session's released turn first, else the next fresh request; `at_s` is
    /// ignored. After `stop_s` nothing new starts (the rest is not sent, not recorded).
    Closed {
        /// Concurrent clients.
        users: usize,
        /// Seconds after which no request starts.
        stop_s: Option<f64>,
    },
}

/// The fleet and the gateway settings a run simulates.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Engines (replicas) of the one model.
    pub engines: usize,
    /// Every engine's settings (engine `i` is seeded with `seed ^ i`).
    pub engine: EngineConfig,
    /// The model profile.
    pub model: ModelProfile,
    /// The GPU profile.
    pub gpu: GpuProfile,
    /// The gateway's prefix-index and `prefix-cache`/`kv-cost` knobs (its defaults: 128-byte
    /// blocks of the prompt text).
    pub prefix: PrefixConfig,
    /// Seconds between scrapes of an engine's gauges (the gateway's default 0.5), each
    /// interval jittered ±10 % as its probe loop does.
    pub scrape_interval_s: f64,
    /// Seeds routing decisions (as the gateway's `routing.seed`) and the scrape jitter.
    pub seed: u64,
    /// The autoscaler, if the fleet is autoscaled (`engines` is then the start count, 0
    /// allowed); `None`: `engines` for the whole run.
    pub autoscaler: Option<ScaleConfig>,
    /// LoRA adapters the requests name and how they are placed (engines then run with
    /// LoRA on); `None`: every request is for the base model.
    pub adapters: Option<adapters::AdapterSim>,
    /// Gateway replicas routing the requests and how they sync (default: one gateway).
    pub replicas: ReplicaConfig,
    /// Engines publish KV events (`Engine::take_kv_events` after every step) into each
    /// gateway's exact per-pod index, and requests carry their token ids, so routing sees
    /// each pod's exact cached tokens (`Pod::cached_tokens`) instead of the approximate
    /// index.
    pub kv_events: bool,
    /// Replica counts set at fixed times (a restart, a scale-down and back), on a static
    /// fleet; `None`: `engines` for the whole run.
    pub schedule: Option<ScaleSchedule>,
    /// A KV pool every engine of the run shares below its prefix cache (`--kv-pool-gib`);
    /// `None`: prefix caching alone.
    pub kv_pool: Option<KvPoolConfig>,
    /// A mixed fleet's groups (GPU types), `engines` in all, in order ([`SimConfig::mixed`]);
    /// empty: one group of `engines` × `engine` on `gpu`, named `engine-i`.
    pub groups: Vec<GroupConfig>,
    /// The optimizer's routes over `groups` (by name): the gateway picks a group by the
    /// plan's shares, then the strategy an engine in it.
    pub plan: Option<Arc<PlanRoutes>>,
}

/// Replica counts an operator sets at fixed times (`--scale-at`): engines beyond the count
/// drain and stop, missing ones start cold (empty caches) and join after `startup_s`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleSchedule {
    /// (seconds, engines from then on), in time order; two steps at one time restart engines.
    pub steps: Vec<(f64, u32)>,
    /// Seconds from asking for an engine to its first good probe.
    pub startup_s: f64,
}

impl FromStr for ScaleSchedule {
    type Err = String;

    /// `T:N,T:N,...` (seconds:engines); `startup_s` is 0 (set it after parsing).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let steps = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (t, n) = p
                    .split_once(':')
                    .ok_or_else(|| format!("'{p}' is not SECONDS:ENGINES"))?;
                let at: f64 = t
                    .parse()
                    .ok()
                    .filter(|t: &f64| t.is_finite() && *t >= 0.0)
                    .ok_or_else(|| format!("'{t}' is not seconds ≥ 0"))?;
                let n: u32 = n
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("'{n}' is not a count ≥ 1"))?;
                Ok((at, n))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if steps.is_empty() {
            return Err("no SECONDS:ENGINES step".into());
        }
        if !steps.is_sorted_by(|a, b| a.0 <= b.0) {
            return Err("steps must be in time order".into());
        }
        Ok(Self {
            steps,
            startup_s: 0.0,
        })
    }
}

impl SimConfig {
    /// `engines` replicas with vLLM's defaults for `model` on `gpu` and the gateway's defaults.
    pub fn new(engines: usize, model: ModelProfile, gpu: GpuProfile) -> Self {
        Self {
            engines,
            engine: EngineConfig::vllm_defaults(&model, &gpu),
            model,
            gpu,
            prefix: PrefixConfig::default(),
            scrape_interval_s: 0.5,
            seed: 0,
            autoscaler: None,
            adapters: None,
            replicas: ReplicaConfig::default(),
            kv_events: false,
            schedule: None,
            kv_pool: None,
            groups: Vec::new(),
            plan: None,
        }
    }
}

/// A request's routing key, computed once and shared by every strategy of a run: the chained
/// block hashes of the text the gateway would key it by, and that text's length in units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteKey {
    /// `brix_router::hash_bytes` of the key text.
    pub blocks: Vec<u64>,
    /// Key length in bytes.
    pub units: u32,
}

impl RouteKey {
    /// The key of `text` in `block`-byte blocks, as the gateway cuts it (`DEFAULT_SEED`).
    pub fn of_text(text: &str, block: usize) -> Self {
        Self {
            blocks: brix_router::hash_bytes(text.as_bytes(), block, DEFAULT_SEED),
            units: u32::try_from(text.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Every request's key: its prompt as the live client sends it (the vocabulary words, a
/// `/v1/completions` prompt, which the gateway keys by its text), in `block`-byte blocks.
pub fn route_keys(w: &Workload, block: usize) -> Vec<RouteKey> {
    w.requests
        .iter()
        .map(|r| RouteKey::of_text(&crate::workload::vocab::text(&r.prompt), block))
        .collect()
}

/// Shortens prompts so that prompt + output fits in `max_model_len` (vLLM refuses the rest
/// with a 400), keeping the head so shared prefixes stay shared; an output of `max_model_len`
/// or more is cut to leave one prompt token. Returns how many requests it changed.
pub fn fit_context(w: &mut Workload, max_model_len: u32) -> usize {
    let max = max_model_len as usize;
    let mut changed = 0;
    for r in &mut w.requests {
        if max < 2 || r.output_tokens == 0 {
            continue;
        }
        let out = (r.output_tokens as usize).min(max - 1);
        if r.prompt.len() + out > max || out < r.output_tokens as usize {
            r.prompt.truncate(max - out);
            r.output_tokens = out as u32;
            changed += 1;
        }
    }
    changed
}

/// One engine at the end of a run: the engine model's own counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EngineReport {
    /// `engine-i`, the `target_pod` of its records.
    pub name: String,
    /// Requests routed to it.
    pub requests: u64,
    /// Prompt tokens looked up in its prefix cache (admissions, re-admissions included).
    pub prefix_queries: u64,
    /// Of those, tokens served from the cache.
    pub prefix_hits: u64,
    /// Requests preempted (recomputed).
    pub preemptions: u64,
    /// Engine iterations.
    pub steps: u64,
    /// Virtual seconds spent in steps.
    pub busy_s: f64,
    /// Prompt tokens beyond the local hit looked up in the KV pool
    /// (`external_prefix_cache_queries`).
    pub external_queries: u64,
    /// Of those, tokens loaded from the pool (`external_prefix_cache_hits`,
    /// `prompt_tokens_by_source{source=external_kv_transfer}`).
    pub external_hits: u64,
    /// Bytes loaded from the pool.
    pub external_loaded_bytes: u64,
    /// Bytes offered to the pool (write-through).
    pub external_stored_bytes: u64,
    /// Virtual seconds steps waited for pool loads.
    pub external_load_s: f64,
}

impl EngineReport {
    /// Engine `name`'s report from its own counters.
    pub(crate) fn of(name: &str, requests: u64, st: &brix_sim::EngineStats) -> Self {
        Self {
            name: name.to_string(),
            requests,
            prefix_queries: st.prefix_queries,
            prefix_hits: st.prefix_hits,
            preemptions: st.preemptions,
            steps: st.steps,
            busy_s: st.busy_time,
            external_queries: st.external_queries,
            external_hits: st.external_hits,
            external_loaded_bytes: st.external_loaded_bytes,
            external_stored_bytes: st.external_stored_bytes,
            external_load_s: st.external_load_time,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimRun {
    /// One record per request sent, in workload order.
    pub records: Vec<RequestRecord>,
    /// Per engine.
    pub engines: Vec<EngineReport>,
    /// Decisions where the strategy fell back to least-request, by reason.
    pub fallbacks: BTreeMap<String, u64>,
    /// Virtual time when the last request ended.
    pub end_s: f64,
    /// Engines billed, their GPU time and cost, scale events.
    pub fleet: FleetSummary,
    /// The fleet once per observe period (1 s).
    pub timeline: Vec<TimelineSample>,
    /// The autoscaler's decisions, in order.
    pub decisions: Vec<brix_autoscaler::Decision>,
    /// What the run could not do as asked (a metric the engine does not export).
    pub warnings: Vec<String>,
    /// Per-adapter counts and placement events, in a run with adapters.
    pub adapters: Option<adapters::AdapterReport>,
    /// What the KV pool did, in a run with one.
    pub pool: Option<PoolReport>,
    /// Per group of a mixed fleet, in its order (empty for a single-group fleet).
    pub groups: Vec<GroupReport>,
}

impl SimRun {
    /// Prompt tokens served from the engines' prefix caches over all tokens looked up.
    pub fn prefix_hit_rate(&self) -> f64 {
        let (h, q) = self.engines.iter().fold((0, 0), |(h, q), e| {
            (h + e.prefix_hits, q + e.prefix_queries)
        });
        if q == 0 { 0.0 } else { h as f64 / q as f64 }
    }

    /// Prompt tokens loaded from the KV pool over all prompt tokens looked up locally: the
    /// share of prompts the pool served (0 without a pool).
    pub fn external_hit_rate(&self) -> f64 {
        let (h, q) = self.engines.iter().fold((0, 0), |(h, q), e| {
            (h + e.external_hits, q + e.prefix_queries)
        });
        if q == 0 { 0.0 } else { h as f64 / q as f64 }
    }
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    /// A static fleet needs at least one engine.
    #[error("the fleet needs at least one engine")]
    NoEngines,
    /// A closed loop needs at least one user.
    #[error("a closed loop needs at least one user")]
    NoUsers,
    /// The engine settings would not start vLLM.
    #[error("engine settings: {0}")]
    Engine(#[from] ConfigError),
    /// `keys` does not match the workload.
    #[error("{keys} route keys for {requests} requests")]
    KeysMismatch {
        /// Keys given.
        keys: usize,
        /// Requests in the workload.
        requests: usize,
    },
    /// The scrape interval is not a positive number of seconds.
    #[error("scrape interval must be positive seconds, got {0}")]
    ScrapeInterval(f64),
    /// The adapter assignment does not match the workload.
    #[error("{assigned} adapter assignments for {requests} requests (or one names no adapter)")]
    AdapterMismatch {
        /// Assignments given.
        assigned: usize,
        /// Requests in the workload.
        requests: usize,
    },
    /// The placement tick, hold time or traffic window is not a usable number of seconds.
    #[error("adapter tick and traffic window must be positive seconds, hold time 0 or more")]
    AdapterTiming,
    /// Several gateway replicas are simulated for a static, base-model fleet only, with a
    /// positive sync interval.
    #[error("--gateways above 1 needs a positive --sync-ms and no autoscaler or adapters")]
    Replicas,
    /// A replica schedule needs a static, base-model fleet behind one gateway, times in order,
    /// counts of 1 or more and a start-up time of 0 or more seconds.
    #[error(
        "--scale-at needs no autoscaler, adapters or extra gateways; times in order, counts ≥ 1"
    )]
    Schedule,
    /// A mixed fleet is static behind one gateway (no autoscaler, adapters, schedule or KV
    /// pool), its groups non-empty with distinct names and `engines` in all; a plan needs one.
    #[error(
        "a mixed fleet needs distinct, non-empty groups, no autoscaler, adapters, --scale-at, KV pool or extra gateways; a plan needs a mixed fleet"
    )]
    Mixed,
    /// Events ran out with requests unfinished (a simulator bug, reported rather than hung).
    #[error("simulation stalled with {stuck} requests unfinished ({done} done)")]
    Stalled {
        /// Requests sent and never ended.
        stuck: usize,
        /// Requests done.
        done: usize,
    },
}

/// Runs `w` on the fleet `cfg` describes with `strategy`; `keys` are [`route_keys`] of `w`.
pub fn run(
    w: &Workload,
    keys: &[RouteKey],
    release: Release,
    cfg: &SimConfig,
    strategy: &SimStrategy,
) -> Result<SimRun, SimError> {
    let decider = cfg.autoscaler.as_ref().map(|sc| {
        Box::new(brix_autoscaler::Autoscaler::new(sc.policy.clone())) as Box<dyn autoscale::Decide>
    });
    sim::Sim::new(w, keys, release, cfg, strategy, decider)?.run()
}

/// [`run`] with `decider` in place of the policy's autoscaler (tests script decisions).
#[cfg(test)]
fn run_with(
    w: &Workload,
    keys: &[RouteKey],
    release: Release,
    cfg: &SimConfig,
    strategy: &SimStrategy,
    decider: Box<dyn autoscale::Decide>,
) -> Result<SimRun, SimError> {
    sim::Sim::new(w, keys, release, cfg, strategy, Some(decider))?.run()
}
