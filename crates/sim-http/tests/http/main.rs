//! `brix sim` over real sockets: a server on 127.0.0.1:0 per test, spoken to with reqwest.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod errors;
mod faults;
mod kv_events;
mod kv_pool;
mod lora;
mod metrics;
mod openai;
mod support;
mod vllm;
