//! Where replicas run: the [`Platform`] trait that the Kubernetes platform will implement, the
//! local platform (simulated engines in process, engine commands as child processes), and the
//! controller that keeps each model's replicas at the desired count and feeds the gateway.

pub mod adapters;
pub mod admin;
pub mod autoscale;
mod fleet;
pub mod gate;
mod kvpool;
mod local;
pub mod optimizer;
pub mod optimizer_api;
mod platform;
pub mod process;
mod runner;
pub mod sidecar;
mod supervisor;

pub use fleet::{FleetError, FleetFile, check_adapter};
pub use kvpool::{ByteSize, KV_POOL_PLACEHOLDER, KvCacheSpec, kv_pool_flags};
pub use local::{InFlightFn, LocalConfig, LocalPlatform, MAX_REPLICAS};
pub use platform::{Platform, PlatformError, Replica, ReplicaState};
pub use runner::{KV_EVENTS_PLACEHOLDER, kv_events_config, sim_config};
