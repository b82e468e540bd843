//! Routing policies for the gateway; pure: no I/O, no clock, no global state.
//!
//! A policy sees an immutable snapshot of the ready pods for one model ([`Pod`]), the request's
//! descriptor ([`RouteRequest`]), the prefix index, the time and a seeded RNG, and returns a
//! [`Decision`] (which pod, and whether it had to fall back) or a typed [`NoRoute`]. Weighted
//! mixes are filter → score → pick: every strategy scores all pods, scores are min-max
//! normalised, and the weighted sum picks. The caller (gateway, fleet simulator) books the
//! in-flight slot and updates the prefix index after the call.

mod pod;
mod prefix;
mod score;
mod select;
mod strategy;

pub use pod::{EngineMetrics, Pod, RouteRequest};
pub use prefix::{PrefixConfig, PrefixIndex};
pub use select::{Decision, Fallback, NoRoute, route};
pub use strategy::{Strategy, StrategyParseError, Weighted};
