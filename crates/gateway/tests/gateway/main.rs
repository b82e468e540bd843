//! The gateway over real sockets: `brix sim` engines and the gateway on 127.0.0.1:0, spoken to
//! with reqwest.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod activator;
mod adapters;
mod admission;
mod errors;
mod faults;
mod health;
mod keepalive;
mod paths;
mod proxy;
mod resilience;
mod routing;
mod support;
