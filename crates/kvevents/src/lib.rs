//! vLLM's KV cache events on the wire, both ends.
//!
//! vLLM (`--kv-events-config`) publishes what its prefix cache gains and loses so a router
//! can track each engine's cache exactly. This crate speaks that protocol byte for byte
//! (checked against frames captured from a real vLLM 0.32, `tests/fixtures/`):
//! - [`KvEventsConfig`]: the `--kv-events-config` JSON, vLLM's keys and defaults;
//! - [`wire`]: [`Batch`] / [`Event`] and their msgpack [`encode`] / [`decode`];
//! - [`Publisher`]: PUB `(topic, seq: u64 BE, payload)` plus the ROUTER replay socket
//!   (`brix sim` uses it);
//! - [`Subscriber`]: the consumer side (the gateway uses it).
//!
//! # Subscriber
//! ```no_run
//! # async fn f() {
//! use brix_kvevents::{Event, Subscriber, SubscriberConfig, Update};
//! let cfg = SubscriberConfig::new("tcp://10.0.0.5:5557", Some("tcp://10.0.0.5:5558".into()));
//! let mut sub = Subscriber::spawn(cfg);
//! while let Some(u) = sub.next().await {
//!     match u {
//!         Update::Batch { seq, batch } => {
//!             for e in batch.events {
//!                 match e {
//!                     Event::BlockStored(s) => { /* s.parent_block_hash, s.block_hashes, s.token_ids */ }
//!                     Event::BlockRemoved(r) => { /* r.block_hashes */ }
//!                     Event::AllBlocksCleared => { /* forget the engine's blocks */ }
//!                 }
//!             }
//!         }
//!         // Some batches could not be recovered, or the engine restarted: clear its index.
//!         Update::Lost { .. } | Update::Reset { .. } => {}
//!     }
//! }
//! # }
//! ```
//! Updates arrive in sequence order; gaps are filled from the replay socket before later
//! batches are delivered. The task reconnects forever with capped back-off, every wait on the
//! peer has a timeout, and dropping the [`Subscriber`] stops it.

mod config;
mod msgpack;
mod publisher;
mod subscriber;
pub mod wire;

pub use config::{ConfigError, KvEventsConfig, bind_address, is_bind_endpoint};
pub use publisher::{END_SEQ, PublishError, Publisher};
pub use subscriber::{Subscriber, SubscriberConfig, Update};
pub use wire::{Batch, BlockRemoved, BlockStored, DecodeError, Event, decode, encode};
