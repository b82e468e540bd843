//! `brix bench`: the tools that measure what a hop through the gateway costs on loopback — a
//! fast OpenAI-compatible mock upstream ([`mock`]) and a closed-loop load generator ([`load`]).
//!
//! The mock answers in microseconds with no artificial delay, so that in a run of
//! load generator → gateway → mock, nearly all the time beyond "load generator → mock" is the
//! gateway's. `scripts/bench-gateway` drives both against `brix gateway` and peer routers and
//! writes the table to `bench/results/`; `docs/bench.md` explains the method.

pub mod live;
pub mod load;
pub mod mock;
pub mod profiling;
pub mod prompts;
pub mod report;
pub mod sse;
pub mod stats;
pub mod vsim;
pub mod workload;

pub use load::{LoadConfig, LoadError, LoadReport, Stop};
pub use mock::{MockConfig, MockError, MockHandle, MockServer};
