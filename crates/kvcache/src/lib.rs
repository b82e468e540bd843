//! Brix's distributed KV cache pool.
//!
//! The pure core (no I/O, no clocks, no threads; time is passed in as milliseconds) is always
//! compiled and is what the simulator and the virtual-time fleet use:
//! - [`key`]: pool keys, chained xxh3-128 hashes of fixed-size token chunks under a
//!   [`Namespace`] root (model, adapter, tenant);
//! - [`policy`]: byte-weighted eviction behind [`EvictionPolicy`]: S3-FIFO (default), LRU;
//! - [`index`]: the pool's metadata — presence, weights, watermarks, pins and leases;
//! - [`ring`]: placement of keys on pool servers (consistent hashing or rendezvous);
//! - [`replay`]: trace replay through [`Index`] for eviction studies.
//!
//! The server, clients and shared-memory transport live behind the default feature `net`:
//! [`server`] (one port for the binary protocol of [`proto`] and RESP), [`store`] (index +
//! [`arena`] allocator over the [`shm`] memfd), [`blocking`] and [`client`] (one server, sync
//! and async), [`pool`] (several servers over the ring).
//!
//! ```
//! use brix_kvcache::{chunk_keys, Index, IndexConfig, Namespace};
//! let root = Namespace { model: "llama-3-8b", adapter: None, tenant: None }.root();
//! let prompt: Vec<u32> = (0..1024).collect();
//! let keys = chunk_keys(root, &prompt, 256);
//! let mut index = Index::new(IndexConfig::new(64 << 20));
//! for k in &keys[..2] {
//!     index.insert(*k, 1 << 20, 0).expect("fits");
//! }
//! assert_eq!(index.longest_prefix(&keys, 0), 2);
//! ```

pub mod index;
pub mod key;
pub mod policy;
pub mod replay;
pub mod ring;

pub use index::{Index, IndexConfig, IndexError, IndexStats};
pub use key::{BlockKey, KeyChain, Namespace, chunk_keys};
pub use policy::{EvictionPolicy, PolicyKind};
pub use ring::{DEFAULT_VNODES, Ring, rendezvous};

#[cfg(feature = "net")]
pub mod arena;
#[cfg(feature = "net")]
pub mod blocking;
#[cfg(feature = "net")]
pub mod client;
#[cfg(feature = "net")]
pub mod pool;
#[cfg(feature = "net")]
pub mod proto;
#[cfg(feature = "net")]
pub mod resp;
#[cfg(feature = "net")]
pub mod server;
#[cfg(feature = "net")]
pub mod shm;
#[cfg(feature = "net")]
pub mod store;
#[cfg(feature = "net")]
mod wire;
