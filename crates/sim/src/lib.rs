//! The vLLM engine model in virtual time; pure: no I/O, no clocks, no threads.
//!
//! [`Engine`] reproduces vLLM V1's scheduler (token budget, chunked prefill, running-first,
//! tail preemption by recompute), its paged KV cache with automatic prefix caching, LoRA batch
//! slots, and prices every step with a roofline model over [`GpuProfile`] and
//! [`ModelProfile`] data. Callers own the clock: they pass `now` in seconds and advance it by
//! the duration each [`Engine::step`] returns. `brix sim` drives it in real time; the fleet
//! simulator drives many of them in virtual time.

mod calibration;
mod calibration_data;
mod config;
mod drive;
mod engine;
mod events;
mod hash;
mod kv;
mod latency;
mod lora;
mod outcome;
mod outlen;
mod profile;
mod request;
mod settings;

pub use calibration::{BurstMetrics, CalibrationRow, calibration_table, sharegpt_burst};
pub use config::{ConfigError, EngineConfig};
pub use drive::{run_closed_loop, run_open_loop};
pub use engine::{
    AddError, Engine, EngineSnapshot, EngineStats, FinishReason, Finished, KvTier, SHM_LATENCY_S,
    StepOutput, TCP_GBPS, TCP_LATENCY_S, TierConfig, TokenOut, Transport,
};
pub use events::KvEvent;
pub use hash::{BlockHash, BlockHasher, DEFAULT_NONE_HASH_SEED, Digest, HashAlgo, LoraKey};
pub use kv::BlockPool;
pub use latency::{BatchItem, LoraItem, StepCost};
pub use lora::{LoraError, LoraWeights};
pub use outlen::{OutputLen, OutputLenParseError};
pub use profile::{
    Catalog, DEFAULT_ENGINE_INIT_S, DEFAULT_LOAD_GBPS, GpuProfile, ModelProfile, ProfileError,
};
pub use request::{NewRequest, RequestId};
pub use settings::EngineSettings;
