//! LoRA adapter placement (which ModelAdapter goes on which replica); pure: no I/O, no clock,
//! no threads.
//!
//! A driver (the adapter controller, not built yet) reads the fleet into a [`Snapshot`]: the
//! replicas ([`PodView`]: ready or not, capacity, the adapters the engine reports in
//! `/v1/models`, the adapters being drained), the ModelAdapter documents ([`AdapterView`]:
//! base model, `replicas`, the pods their `podSelector` allows, traffic from the gateway),
//! and the placement it applied last time. [`plan`] turns that into a [`Plan`]: the desired
//! placement, a status per adapter (placed on N of M wanted, and why fewer), and the
//! [`Action`]s that move the fleet there, in a fixed order. The same snapshot always gives
//! the same plan, and a snapshot that already matches its plan gives no actions.
//!
//! Adapters the engine has loaded that no ModelAdapter names are someone else's (loaded by
//! hand or by another controller): they count against the pod's capacity and are never
//! drained or unloaded. A deleted ModelAdapter stays in the snapshot (with
//! [`AdapterView::deleted`]) until its status shows no pod holds it; only then may the driver
//! forget it.
//!
//! The rules are in `docs/lora.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

mod place;

pub use place::plan;

/// Adapter name → the pods it is (or should be) on; ordered so plans are deterministic.
pub type Placement = BTreeMap<String, BTreeSet<String>>;

/// Knobs of the policy, so the hot-adapter growth can be tuned per fleet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Requests/s one replica of an adapter carries before the adapter is hot and gets
    /// another replica (only for adapters with `replicas: Some(n)`).
    pub hot_rps_per_replica: f64,
    /// Most replicas a hot adapter gets beyond its spec's `replicas`.
    pub max_extra_replicas: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            hot_rps_per_replica: 10.0,
            max_extra_replicas: 2,
        }
    }
}

/// One serving replica as the driver saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodView {
    /// Pod (replica) name; unique in a snapshot.
    pub name: String,
    /// The base model it serves.
    pub base_model: String,
    /// Ready to serve; adapters are only placed on ready pods.
    pub ready: bool,
    /// Distinct adapters in one batch (`--max-loras`); vLLM pages resident adapters in and
    /// out of these GPU slots, so it does not limit placement beyond `max_cpu_loras`.
    pub max_loras: u32,
    /// Adapters the engine keeps resident (`--max-cpu-loras`); the pod's placement capacity
    /// is the larger of the two (vLLM requires `max_cpu_loras >= max_loras`).
    pub max_cpu_loras: u32,
    /// Adapters the engine reports loaded (its `/v1/models`), known or not.
    pub loaded: BTreeSet<String>,
    /// Loaded adapters the driver stopped routing to; `true` once their in-flight requests
    /// on this pod ended (then they may be unloaded).
    pub draining: BTreeMap<String, bool>,
}

impl PodView {
    /// Resident adapters this pod may hold.
    pub fn capacity(&self) -> u32 {
        self.max_cpu_loras.max(self.max_loras)
    }
}

/// One ModelAdapter document, reduced to what placement needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdapterView {
    /// Adapter name (`metadata.name`); unique in a snapshot.
    pub name: String,
    /// `spec.baseModel`: only pods serving it may load the adapter.
    pub base_model: String,
    /// `spec.replicas`: `None` = every eligible pod (AIBrix), `Some(n)` = n pods.
    pub replicas: Option<u32>,
    /// Pods `spec.podSelector` matches, precomputed by the driver; `None` = no selector
    /// (every pod of the base model).
    pub eligible: Option<BTreeSet<String>>,
    /// Requests/s for this adapter, from the gateway's counts.
    pub traffic_rps: f64,
    /// The document was deleted: drain and unload it everywhere.
    pub deleted: bool,
}

/// What [`plan`] works from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The replicas, in any order.
    pub pods: Vec<PodView>,
    /// The ModelAdapter documents, in any order.
    pub adapters: Vec<AdapterView>,
    /// The placement of the last plan the driver applied (loads still in flight are in it).
    pub previous: Placement,
    /// Policy knobs.
    pub config: Config,
}

/// Why an adapter sits on fewer pods than wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Shortfall {
    /// No pod of the base model matches the adapter's selector.
    NoEligiblePod,
    /// Eligible pods exist but too few are ready.
    PodNotReady,
    /// Every eligible pod holds it and there are fewer than wanted.
    TooFewEligiblePods,
    /// Ready eligible pods exist but all that could take it are full.
    CapacityExhausted,
}

/// Per-adapter outcome, for the ModelAdapter's status.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterStatus {
    /// Pods wanted: the spec's count (every eligible pod when unset), plus hot replicas.
    pub wanted: u32,
    /// Pods in the desired placement.
    pub placed: u32,
    /// Extra replicas granted because traffic is above the hot threshold.
    pub hot_extra: u32,
    /// Why `placed < wanted`; `None` when the adapter got all it wanted (or is deleted).
    pub shortfall: Option<Shortfall>,
    /// Pods that still hold a copy (loaded or draining): a deleted adapter is gone when empty.
    pub resident_on: Vec<String>,
}

/// What an action does to one adapter on one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionKind {
    /// Unload (`/v1/unload_lora_adapter`): it was drained and nothing is in flight.
    Unload,
    /// Stop routing requests for it to this pod; unload comes once the driver reports it
    /// drained.
    Drain,
    /// Route to it again: it was draining but is wanted here after all.
    Resume,
    /// Load (`/v1/load_lora_adapter`); the driver treats "already loaded" as done.
    Load,
}

/// Why an action was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// The ModelAdapter was deleted.
    Deleted,
    /// The pod left the adapter's eligible set (selector, base model) or is not ready.
    NotEligible,
    /// More copies than wanted (spec lowered, traffic cooled down).
    Surplus,
    /// Drained: nothing is in flight for it on this pod.
    Drained,
    /// It was draining here and is wanted here again.
    Wanted,
    /// A replica the spec asks for.
    Spec,
    /// An extra replica for a hot adapter.
    Hot,
    /// The last plan put it here but the engine does not report it (restart, load lost).
    Reload,
}

/// One step towards the desired placement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// The adapter.
    pub adapter: String,
    /// The pod.
    pub pod: String,
    /// Why.
    pub reason: Reason,
}

/// The outcome of [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Desired placement (pass it back as [`Snapshot::previous`] next time).
    pub placement: Placement,
    /// Status per known adapter, deleted ones included.
    pub status: BTreeMap<String, AdapterStatus>,
    /// Unloads, then drains, resumes and loads; each by pod then adapter.
    pub actions: Vec<Action>,
}

/// A snapshot [`plan`] refuses.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// `hot_rps_per_replica` must be finite and above zero.
    #[error("hot_rps_per_replica must be finite and > 0, got {0}")]
    HotThreshold(f64),
    /// Two pods share a name.
    #[error("duplicate pod {0:?}")]
    DuplicatePod(String),
    /// Two adapters share a name.
    #[error("duplicate adapter {0:?}")]
    DuplicateAdapter(String),
}
