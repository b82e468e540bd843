//! Routing policies for the gateway; pure: no I/O, no clock, no global state.
//!
//! A policy sees an immutable snapshot of the ready pods for one model ([`Pod`]), the request's
//! descriptor ([`RouteRequest`]), the prefix index, the time and a seeded RNG, and returns a
//! [`Decision`] (which pod, and whether it had to fall back) or a typed [`NoRoute`]. Each
//! strategy is one type behind a narrow scorer trait; weighted mixes are filter → score →
//! pick: every strategy scores all pods, scores are min-max normalised, and the weighted sum
//! picks. The caller (gateway, fleet simulator) books the in-flight slot and updates the prefix
//! index and the token window after the call. Where a pod's engine publishes KV events, its
//! [`KvIndex`] knows exactly which prompt tokens it holds ([`Pod::cached_tokens`]). [`fleet`] holds what routing knows about each pod
//! and the rules that update it, driven alike by the gateway and the virtual-time simulator.

mod blocks;
mod decision;
pub mod fleet;
mod kvindex;
mod plan;
mod pod;
mod prefix;
pub mod prom;
mod score;
mod select;
mod strategies;
mod strategy;
mod vtc;

#[cfg(test)]
mod testing;

pub use blocks::{BlockUnit, BlockUnitParseError, DEFAULT_SEED, hash_bytes, hash_tokens};
pub use decision::{Decision, Fallback, NoRoute};
pub use kvindex::{
    DEFAULT_KV_CAPACITY, KvIndex, KvUpdate, PromptKeys, RequestKeys, StoreError, kv_seed,
};
pub use plan::{
    BYTES_PER_TOKEN, OutputHint, PlanRoutes, nearest as nearest_log2_tick, plan_tokens,
};
pub use pod::{EngineMetrics, LoraState, Observed, Pod, RouteRequest, VtcView};
pub use prefix::{PrefixConfig, PrefixIndex};
pub use select::route;
pub use strategies::ttft::{Borrowed, Estimate, TtftProfile, estimate, estimate_among};
pub use strategy::{Strategy, StrategyParseError, Weighted};
pub use vtc::{DEFAULT_WINDOW_S, TokenWindow};
