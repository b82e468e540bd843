//! A KV tier below the engine's own prefix cache: a pool that engines share (what vLLM reaches
//! through a KV connector such as LMCache's remote backend).
//!
//! At admission, after the local prefix-cache lookup, the scheduler computes the request's pool
//! keys (chained over `chunk_tokens`-token chunks of the prompt, scoped by model, adapter and
//! tenant) and asks the tier for the longest run of chunks present beyond the local hit. It
//! loads them when the transfer (`latency + bytes / bandwidth`) is quicker than prefilling
//! those tokens ([`StepCost::prefill_time`]); loaded tokens count as computed: their blocks are
//! allocated and cached locally once the step ends, like computed ones. As everywhere in vLLM,
//! the prompt's last token is never a hit.
//!
//! Time model: synchronous, as LMCache's default (non-layer-wise) retrieve, which reads the
//! whole hit in `start_load_kv` before the forward pass: the step that admits a request is
//! longer by its load time (so the batch's decodes wait too). Write-through: each full prompt
//! chunk is offered to the tier ([`KvTier::store`]) in the step that computes it, and that
//! step pays its device-to-host copy at the host-link bandwidth (LMCache's `wait_for_save`);
//! the transfer to the pool itself is the tier's business (a background writer).
//!
//! Counting follows vLLM 0.32's scheduler: external queries are the prompt tokens beyond the
//! local hit, external hits the tokens loaded, both only for requests never preempted.

use std::fmt::Debug;
use std::str::FromStr;
use std::sync::Arc;

use brix_kvcache::{BlockKey, Namespace, chunk_keys};

use crate::config::ConfigError;
use crate::engine::{Engine, EngineStats};
use crate::latency::{BatchItem, StepCost};
use crate::lora::LoraManager;
use crate::profile::{GpuProfile, ModelProfile};
use crate::request::{Request, RequestId};

/// A KV tier below the engine's prefix cache (a pool). `&self` + interior mutability so
/// engines stay `Clone` and several engines can share one tier.
pub trait KvTier: Send + Sync + Debug {
    /// Leading keys of `keys` the tier holds now (the scheduler's lookup at admission).
    fn lookup(&self, keys: &[BlockKey], now: f64) -> usize;
    /// Offers computed chunks for storage (write-through after prefill), `bytes` each.
    fn store(&self, keys: &[BlockKey], bytes: u64, now: f64);
}

/// How chunks move between the pool and the GPU; picks the tier's default bandwidth and
/// latency ([`TierConfig::new`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// A pool on the engine's host sharing memory with it: the GPU copies straight from pool
    /// memory, so each GPU's host link (PCIe, `GpuProfile::pcie_gbps`) is the limit.
    #[default]
    Shm,
    /// A pool on another host over TCP: the NIC is the limit (and the host link behind it).
    Tcp,
}

impl Transport {
    /// Its command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shm => "shm",
            Self::Tcp => "tcp",
        }
    }
}

impl FromStr for Transport {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "shm" => Ok(Self::Shm),
            "tcp" => Ok(Self::Tcp),
            _ => Err(ConfigError::Invalid(format!(
                "unknown KV pool transport '{s}' (known: shm, tcp)"
            ))),
        }
    }
}

/// Default TCP bandwidth into one replica, GB/s: 80 % of a 100 GbE NIC, the cross-host TCP
/// target of the pool (reference kvcache.md §8: ≥ 80 % of line rate with ≥ 4 streams).
pub const TCP_GBPS: f64 = 10.0;
/// Default latency of one TCP load, seconds: a datacenter round trip (50–100 µs) plus the
/// pool's lookup and the first bytes (an assumption; `brix kvcache bench` measures one).
pub const TCP_LATENCY_S: f64 = 200e-6;
/// Default latency of one shared-memory load, seconds: a local IPC round trip and the copy
/// launch (an assumption of the same kind).
pub const SHM_LATENCY_S: f64 = 50e-6;

/// How an engine uses its tier: key scope, chunk size and transfer speed.
#[derive(Clone, Debug, PartialEq)]
pub struct TierConfig {
    /// The model part of the key namespace: engines share chunks only under equal names
    /// (`brix sim` uses the served model name).
    pub model: String,
    /// The tenant part of the key namespace (None: shared by all).
    pub tenant: Option<String>,
    /// Tokens per pool chunk; a multiple of the engine's block size (LMCache's 256 default).
    pub chunk_tokens: u32,
    /// Bytes per second a load moves into one replica (all its GPUs together).
    pub bandwidth_bytes_per_s: f64,
    /// Fixed seconds of one load (a round trip), paid once per admitted hit.
    pub latency_s: f64,
}

impl TierConfig {
    /// LMCache's chunk size (`LMCACHE_CHUNK_SIZE`), also HiCache- and Mooncake-friendly.
    pub const DEFAULT_CHUNK_TOKENS: u32 = 256;

    /// Defaults for `transport` with this model on this GPU: shared memory runs at every GPU
    /// of the replica's host link in parallel; TCP at [`TCP_GBPS`], or the host links when
    /// slower.
    pub fn new(transport: Transport, model: &ModelProfile, gpu: &GpuProfile) -> Self {
        let host_link = gpu.pcie_gbps * 1e9 * f64::from(model.tensor_parallel_size);
        let (bandwidth_bytes_per_s, latency_s) = match transport {
            Transport::Shm => (host_link, SHM_LATENCY_S),
            Transport::Tcp => ((TCP_GBPS * 1e9).min(host_link), TCP_LATENCY_S),
        };
        Self {
            model: model.hf_id.clone(),
            tenant: None,
            chunk_tokens: Self::DEFAULT_CHUNK_TOKENS,
            bandwidth_bytes_per_s,
            latency_s,
        }
    }

    /// Checks the settings against the engine's block size (the CLI calls it before serving;
    /// [`Engine::with_kv_tier`] repairs what it must instead of failing).
    pub fn validate(&self, block_size: u32) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.chunk_tokens == 0
            || block_size == 0
            || !self.chunk_tokens.is_multiple_of(block_size)
        {
            return invalid(format!(
                "KV pool chunk tokens ({}) must be a positive multiple of the block size ({block_size})",
                self.chunk_tokens
            ));
        }
        if !(self.bandwidth_bytes_per_s > 0.0 && self.bandwidth_bytes_per_s.is_finite()) {
            return invalid("KV pool bandwidth must be positive".into());
        }
        if !(self.latency_s >= 0.0 && self.latency_s.is_finite()) {
            return invalid("KV pool latency must be a non-negative number".into());
        }
        Ok(())
    }
}

/// The engine's handle on its tier, with the constants its decisions use.
#[derive(Clone, Debug)]
pub(crate) struct Tier {
    tier: Arc<dyn KvTier>,
    cfg: TierConfig,
    /// Chunk tokens, rounded to a multiple of the block size.
    chunk: u32,
    /// KV bytes of one chunk across the replica's GPUs (what the pool stores).
    chunk_bytes: u64,
    /// Host-link bytes per second of the replica: prices the write-through copy.
    d2h_bytes_per_s: f64,
}

/// What the tier gives one admission.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Admission {
    /// Prompt tokens beyond the local hit the scheduler asked about (vLLM's queries).
    pub(crate) queried: u32,
    /// Tokens loaded instead of computed (vLLM's hits, `external_kv_transfer`).
    pub(crate) tokens: u32,
    /// Bytes the load moves (whole chunks).
    pub(crate) bytes: u64,
    /// Seconds the load adds to the step.
    pub(crate) load_s: f64,
}

impl Admission {
    /// Books an admitted request's tier use in `stats` (vLLM counts the connector's queries
    /// and hits only for requests never preempted); returns the seconds its load takes.
    pub(crate) fn book(&self, r: &mut Request, stats: &mut EngineStats, tiered: bool) -> f64 {
        if tiered && r.num_preemptions == 0 {
            stats.external_queries += u64::from(self.queried);
            stats.external_hits += u64::from(self.tokens);
        }
        if r.first_scheduled.is_none() {
            r.external_tokens = self.tokens;
        }
        stats.external_loaded_bytes += self.bytes;
        self.load_s
    }
}

/// Chunks one scheduled request will have computed by the end of the step, to offer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offer {
    id: RequestId,
    from: usize,
    to: usize,
}

impl Tier {
    fn new(
        tier: Arc<dyn KvTier>,
        cfg: TierConfig,
        model: &ModelProfile,
        gpu: &GpuProfile,
        block: u32,
    ) -> Self {
        let block = block.max(1);
        let chunk = cfg.chunk_tokens.max(1).div_ceil(block) * block;
        let per_token = model.kv_bytes_per_token_per_gpu() * f64::from(model.tensor_parallel_size);
        Self {
            tier,
            chunk,
            chunk_bytes: (per_token * f64::from(chunk)).round() as u64,
            d2h_bytes_per_s: gpu.pcie_gbps * 1e9 * f64::from(model.tensor_parallel_size),
            cfg,
        }
    }

    /// Looks the request up beyond its `local` hit and decides whether to load.
    pub(crate) fn admit(
        &self,
        r: &mut Request,
        local: u32,
        block: u32,
        cost: &StepCost,
        lora: &LoraManager,
        now: f64,
    ) -> Admission {
        let prompt = r.prompt_len;
        let mut out = Admission {
            queried: r.num_tokens().saturating_sub(local),
            ..Admission::default()
        };
        if r.pool_keys.is_empty() && prompt >= self.chunk {
            let adapter = r.lora.and_then(|l| lora.name(l));
            let root = Namespace {
                model: &self.cfg.model,
                adapter,
                tenant: self.cfg.tenant.as_deref(),
            }
            .root();
            r.pool_keys = chunk_keys(root, &r.tokens[..prompt as usize], self.chunk as usize);
        }
        // Chunks the local hit covers were offered when they were computed.
        let first = (local / self.chunk) as usize;
        r.pool_offered = r.pool_offered.max(first.min(r.pool_keys.len()));
        // Never the last token, and whole blocks only, as with local hits.
        let cap = (r.num_tokens().saturating_sub(1) / block) * block;
        if local >= cap {
            return out;
        }
        let last = (cap.div_ceil(self.chunk) as usize).min(r.pool_keys.len());
        if first >= last {
            return out;
        }
        let present = self.tier.lookup(&r.pool_keys[first..last], now);
        let found = first + present.min(last - first);
        // What the pool already holds needs no write-through.
        r.pool_offered = r.pool_offered.max(found);
        let end = (found as u32 * self.chunk).min(cap);
        if end <= local {
            return out;
        }
        let tokens = end - local;
        let chunks = end.div_ceil(self.chunk) as usize - first;
        let bytes = chunks as u64 * self.chunk_bytes;
        let load_s = self.cfg.latency_s + bytes as f64 / self.cfg.bandwidth_bytes_per_s;
        // Load only when it beats recomputing (a NaN or infinite load time never does).
        if load_s < cost.prefill_time(tokens, local) {
            out.tokens = tokens;
            out.bytes = bytes;
            out.load_s = load_s;
        }
        out
    }
}

impl Engine {
    /// Puts `tier` below the prefix cache (see the module docs). A chunk size that is not a
    /// multiple of the block size is rounded up to one; a tier whose loads never beat
    /// recompute (zero bandwidth) is only written to. [`TierConfig::validate`] reports both.
    pub fn with_kv_tier(mut self, tier: Arc<dyn KvTier>, cfg: TierConfig) -> Self {
        let block = self.cfg.block_size;
        self.tier = Some(Tier::new(tier, cfg, &self.model, &self.gpu, block));
        self
    }

    /// (cached, external) prompt tokens of a live request when first scheduled: all that was
    /// not computed, and the KV tier's part of it (None when unknown or finished); vLLM's
    /// `prompt_tokens_by_source` splits the prompt this way at the first token.
    pub fn prompt_sources_of(&self, id: RequestId) -> Option<(u32, u32)> {
        self.reqs
            .get(&id)
            .map(|r| (r.cached_tokens, r.external_tokens))
    }

    /// The tier's settings, when the engine has one.
    pub fn kv_tier_config(&self) -> Option<&TierConfig> {
        self.tier.as_ref().map(|t| &t.cfg)
    }

    /// The prompt chunks each scheduled request completes in this step, and the seconds their
    /// device-to-host copies add to it.
    pub(crate) fn tier_offers(&self, sched: &[(RequestId, BatchItem)]) -> (Vec<Offer>, f64) {
        let Some(t) = &self.tier else {
            return (Vec::new(), 0.0);
        };
        let mut offers = Vec::new();
        let mut chunks = 0usize;
        for (id, item) in sched {
            let Some(r) = self.reqs.get(id) else { continue };
            let computed = (r.num_computed + item.new_tokens).min(r.prompt_len);
            let to = ((computed / t.chunk) as usize).min(r.pool_keys.len());
            if to > r.pool_offered {
                chunks += to - r.pool_offered;
                offers.push(Offer {
                    id: *id,
                    from: r.pool_offered,
                    to,
                });
            }
        }
        let bytes = chunks as u64 * t.chunk_bytes;
        (offers, bytes as f64 / t.d2h_bytes_per_s)
    }

    /// Hands this step's computed chunks to the tier at `end`, when they exist.
    pub(crate) fn tier_store(&mut self, offers: &[Offer], end: f64) {
        let Some(t) = &self.tier else { return };
        for o in offers {
            let Some(r) = self.reqs.get_mut(&o.id) else {
                continue;
            };
            t.tier.store(&r.pool_keys[o.from..o.to], t.chunk_bytes, end);
            r.pool_offered = o.to;
            self.stats.external_stored_bytes += (o.to - o.from) as u64 * t.chunk_bytes;
        }
    }
}

#[cfg(test)]
#[path = "tier_tests.rs"]
mod tests;
