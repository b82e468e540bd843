//! `brix up` and the local platform with real engines: in-process `brix sim` replicas and
//! `brix sim` child processes started from this package's own binary.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod adapters;
mod admin;
mod autoscale;
mod binary;
mod gate;
mod kvevents;
mod kvpool;
mod listener;
mod neighbours;
mod neighbours_s3;
mod optimizer;
mod platform;
mod support;
