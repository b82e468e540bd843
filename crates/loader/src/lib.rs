//! Streaming safetensors loader: reads a `.safetensors` file from a local path, an HTTP(S) URL
//! or S3-compatible storage as a stream of tensors into a [`Sink`], without downloading it
//! first.
//!
//! The header (8-byte length + JSON) is read and validated first (dtype × shape = byte length,
//! offsets contiguous and in bounds, header and data size limits). The data section is then
//! cut into `chunk_bytes` ranges fetched in parallel (at most `concurrency` at once: positioned
//! reads of a file on the blocking pool, or ranged GETs through brix-artifacts' client and S3
//! signing) while earlier chunks are copied into the sink in file order, so download, parse and
//! copy overlap. Chunks fetched ahead but not yet copied are the only buffers: at most
//! `max_buffered_bytes` (backpressure; the loader counts its own peak). Each tensor's bytes are
//! hashed (xxh64) as they are copied, so a load can be compared with the file's tensors.

mod error;
mod header;
mod pipeline;
mod reader;
mod sink;

use std::path::PathBuf;
use std::time::Duration;

pub use brix_artifacts::{Credentials, Limits};
pub use error::LoadError;
pub use header::{Dtype, Header, TensorMeta};
pub use pipeline::load;
pub use sink::{DiscardSink, HostSink, Sink};

/// Where the file is.
#[derive(Clone, Debug)]
pub enum Source {
    /// A local file.
    File(PathBuf),
    /// An `http://` or `https://` URL of a server that honours `Range`.
    Http(String),
    /// `s3://bucket/key` on AWS or any S3-compatible server (`AWS_ENDPOINT_URL` in
    /// `credentials`), read with signed ranged GETs.
    S3 {
        /// `s3://bucket/key`.
        url: String,
        /// Keys, region and endpoint (brix-artifacts' names: `AWS_ACCESS_KEY_ID`, ...).
        credentials: Credentials,
    },
}

/// How to load: chunking, parallelism, memory bound and guardrails.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Bytes per ranged read. Default 16 MiB (AIBrix's S3 downloader uses 64 MiB parts).
    pub chunk_bytes: usize,
    /// Reads in flight at once. Default 8 (AIBrix: 32 threads).
    pub concurrency: usize,
    /// Most bytes held in chunk buffers (fetched, not yet copied into the sink); reads wait
    /// for the sink when it is reached. A chunk larger than this is cut to it. Default 256 MiB.
    pub max_buffered_bytes: usize,
    /// Largest JSON header accepted. Default 100 MB (the safetensors crate's limit).
    pub max_header_bytes: u64,
    /// Largest data section accepted. Default 1 TiB.
    pub max_data_bytes: u64,
    /// Connect and per-read idle timeouts for remote sources (a stalled server fails after
    /// `read_idle_timeout`).
    pub limits: Limits,
    /// Hash every tensor while copying ([`LoadReport::digests`]). Default on.
    pub digest: bool,
    /// Times a chunk is read again after a retryable error (100 ms backoff, doubling).
    /// Default 2.
    pub retries: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            chunk_bytes: 16 << 20,
            concurrency: 8,
            max_buffered_bytes: 256 << 20,
            max_header_bytes: 100_000_000,
            max_data_bytes: 1 << 40,
            limits: Limits::default(),
            digest: true,
            retries: 2,
        }
    }
}

/// One tensor's digest, taken over the bytes handed to the sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDigest {
    /// The tensor's name.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// xxh64 (seed 0) of its bytes.
    pub xxh64: u64,
}

/// What a load did.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    /// Tensors loaded.
    pub tensors: usize,
    /// Data bytes handed to the sink (equals the header's data length on success).
    pub bytes: u64,
    /// Bytes before the data: the 8-byte length and the JSON.
    pub header_bytes: u64,
    /// Ranged reads of the data section.
    pub chunks: usize,
    /// Wall time from start to the sink's `finish`.
    pub elapsed: Duration,
    /// Most bytes held in chunk buffers at once (never above `max_buffered_bytes`).
    pub peak_buffered_bytes: usize,
    /// Per-tensor digests in file order (empty when `digest` is off).
    pub digests: Vec<TensorDigest>,
}

impl LoadReport {
    /// Data throughput in GB/s (10⁹ bytes per second).
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// xxh64 (seed 0) of `bytes`: what [`TensorDigest::xxh64`] holds, for checking a load against
/// another reader of the same file.
pub fn digest(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}
