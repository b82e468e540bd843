//! vLLM's KV event batches in msgpack, as `msgspec` writes and reads them.
//!
//! A batch (`KVEventBatch`, `array_like`) is `[ts, events, data_parallel_rank]`; each event
//! is a map whose first key `"type"` names it (`BlockStored`, `BlockRemoved`,
//! `AllBlocksCleared`), then its fields in vLLM's declaration order, fields at their default
//! (None) left out unless vLLM declares them required. [`encode`] writes exactly those bytes,
//! so vLLM's own decoder accepts them and a batch decoded from vLLM re-encodes to the bytes it
//! came from; [`decode`] ignores fields it does not know and folds byte-string block hashes
//! to the `u64` vLLM's integer mode publishes (their last 8 bytes, big-endian).

use crate::msgpack::{Reader, Writer};

/// The payload a decoder refuses outright (vLLM's batches are a few KiB to a few MiB).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// One published batch: the events of one engine step.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Wall-clock seconds when the step's events were collected.
    pub ts: f64,
    /// The events, in the order the engine recorded them.
    pub events: Vec<Event>,
    /// The data-parallel rank of the engine (vLLM's publisher sets it; None omits it).
    pub data_parallel_rank: Option<i64>,
}

/// One KV cache event (vLLM's `KVCacheEvent` union).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Full blocks were cached.
    BlockStored(BlockStored),
    /// Cached blocks were evicted.
    BlockRemoved(BlockRemoved),
    /// The whole prefix cache was reset.
    AllBlocksCleared,
}

/// vLLM's `BlockStored`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockStored {
    /// Hash of each stored block, in chain order.
    pub block_hashes: Vec<u64>,
    /// Hash of the block before the first (None: the first is a prompt's first block).
    pub parent_block_hash: Option<u64>,
    /// Token ids of the stored blocks.
    pub token_ids: Vec<u32>,
    /// Tokens per block.
    pub block_size: u32,
    /// vLLM's adapter id (deprecated upstream in favour of `lora_name`).
    pub lora_id: Option<i64>,
    /// Storage medium (`"GPU"`, `"CPU"`, ...).
    pub medium: Option<String>,
    /// Adapter name the blocks were computed under.
    pub lora_name: Option<String>,
    /// Per-block extra hash keys when they are plain strings (the LoRA name); other shapes
    /// (multimodal) are not kept.
    pub extra_keys: Option<Vec<Option<Vec<String>>>>,
    /// KV cache group.
    pub group_idx: Option<i64>,
    /// The group's cache kind (`"full_attention"`, ...).
    pub kv_cache_spec_kind: Option<String>,
    /// The group's sliding window, for sliding-window groups.
    pub kv_cache_spec_sliding_window: Option<i64>,
}

/// vLLM's `BlockRemoved`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockRemoved {
    /// Hashes of the evicted blocks.
    pub block_hashes: Vec<u64>,
    /// Storage medium.
    pub medium: Option<String>,
    /// KV cache group.
    pub group_idx: Option<i64>,
}

/// Why a payload is not a vLLM event batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Larger than [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD} byte limit")]
    TooLarge(usize),
    /// Not valid msgpack, or not the batch's shape.
    #[error("malformed event batch: {0}")]
    Malformed(&'static str),
}

/// The batch's msgpack bytes, as vLLM's publisher writes them.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let mut w = Writer::default();
    w.array(2 + usize::from(batch.data_parallel_rank.is_some()));
    w.f64(batch.ts);
    w.array(batch.events.len());
    for e in &batch.events {
        match e {
            Event::BlockStored(s) => {
                let opt = usize::from(s.extra_keys.is_some())
                    + usize::from(s.group_idx.is_some())
                    + usize::from(s.kv_cache_spec_kind.is_some())
                    + usize::from(s.kv_cache_spec_sliding_window.is_some());
                w.map(8 + opt);
                w.str("type");
                w.str("BlockStored");
                w.str("block_hashes");
                w.array(s.block_hashes.len());
                s.block_hashes.iter().for_each(|&h| w.uint(h));
                w.str("parent_block_hash");
                w.opt_uint(s.parent_block_hash);
                w.str("token_ids");
                w.array(s.token_ids.len());
                s.token_ids.iter().for_each(|&t| w.uint(u64::from(t)));
                w.str("block_size");
                w.uint(u64::from(s.block_size));
                w.str("lora_id");
                w.opt_int(s.lora_id);
                w.str("medium");
                w.opt_str(s.medium.as_deref());
                w.str("lora_name");
                w.opt_str(s.lora_name.as_deref());
                if let Some(keys) = &s.extra_keys {
                    w.str("extra_keys");
                    w.array(keys.len());
                    for k in keys {
                        match k {
                            None => w.nil(),
                            Some(k) => {
                                w.array(k.len());
                                k.iter().for_each(|s| w.str(s));
                            }
                        }
                    }
                }
                if let Some(g) = s.group_idx {
                    w.str("group_idx");
                    w.int(g);
                }
                if let Some(k) = &s.kv_cache_spec_kind {
                    w.str("kv_cache_spec_kind");
                    w.str(k);
                }
                if let Some(n) = s.kv_cache_spec_sliding_window {
                    w.str("kv_cache_spec_sliding_window");
                    w.int(n);
                }
            }
            Event::BlockRemoved(r) => {
                w.map(3 + usize::from(r.group_idx.is_some()));
                w.str("type");
                w.str("BlockRemoved");
                w.str("block_hashes");
                w.array(r.block_hashes.len());
                r.block_hashes.iter().for_each(|&h| w.uint(h));
                w.str("medium");
                w.opt_str(r.medium.as_deref());
                if let Some(g) = r.group_idx {
                    w.str("group_idx");
                    w.int(g);
                }
            }
            Event::AllBlocksCleared => {
                w.map(1);
                w.str("type");
                w.str("AllBlocksCleared");
            }
        }
    }
    if let Some(r) = batch.data_parallel_rank {
        w.int(r);
    }
    w.into_bytes()
}

/// Decodes one published payload; unknown fields and event types are skipped.
pub fn decode(payload: &[u8]) -> Result<Batch, DecodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    let mut r = Reader::new(payload);
    let n = r.array()?;
    if !(2..=3).contains(&n) {
        return Err(DecodeError::Malformed("a batch is [ts, events, dp_rank?]"));
    }
    let ts = r.number()?;
    let count = r.array()?;
    let mut events = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        if let Some(e) = event(&mut r)? {
            events.push(e);
        }
    }
    let data_parallel_rank = if n == 3 { r.opt_int()? } else { None };
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed("trailing bytes after the batch"));
    }
    Ok(Batch {
        ts,
        events,
        data_parallel_rank,
    })
}

fn event(r: &mut Reader) -> Result<Option<Event>, DecodeError> {
    let fields = r.map()?;
    let (mut kind, mut s, mut rm) = (None, BlockStored::default(), BlockRemoved::default());
    for _ in 0..fields {
        match r.str()? {
            "type" => kind = Some(r.str()?),
            "block_hashes" => {
                let n = r.array()?;
                let mut v = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    v.push(r.hash()?);
                }
                rm.block_hashes.clone_from(&v);
                s.block_hashes = v;
            }
            "parent_block_hash" => s.parent_block_hash = r.opt_hash()?,
            "token_ids" => {
                let n = r.array()?;
                let mut v = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    let t = r.uint()?;
                    v.push(u32::try_from(t).map_err(|_| DecodeError::Malformed("token id"))?);
                }
                s.token_ids = v;
            }
            "block_size" => {
                s.block_size =
                    u32::try_from(r.uint()?).map_err(|_| DecodeError::Malformed("block size"))?;
            }
            "lora_id" => s.lora_id = r.opt_int()?,
            "medium" => {
                s.medium = r.opt_str()?.map(str::to_string);
                rm.medium.clone_from(&s.medium);
            }
            "lora_name" => s.lora_name = r.opt_str()?.map(str::to_string),
            "extra_keys" => s.extra_keys = extra_keys(r)?,
            "kv_cache_spec_kind" => s.kv_cache_spec_kind = r.opt_str()?.map(str::to_string),
            "kv_cache_spec_sliding_window" => s.kv_cache_spec_sliding_window = r.opt_int()?,
            "group_idx" => {
                s.group_idx = r.opt_int()?;
                rm.group_idx = s.group_idx;
            }
            _ => r.skip()?,
        }
    }
    Ok(match kind {
        Some("BlockStored") => Some(Event::BlockStored(s)),
        Some("BlockRemoved") => Some(Event::BlockRemoved(rm)),
        Some("AllBlocksCleared") => Some(Event::AllBlocksCleared),
        Some(_) => None,
        None => return Err(DecodeError::Malformed("an event without a type")),
    })
}

/// Per-block lists of strings, or None (the value skipped) for any other shape.
fn extra_keys(r: &mut Reader<'_>) -> Result<Option<Vec<Option<Vec<String>>>>, DecodeError> {
    let start = r.clone();
    type Keys = Option<Vec<Option<Vec<String>>>>;
    let parsed = (|| -> Result<Keys, DecodeError> {
        if r.try_nil() {
            return Ok(None);
        }
        let n = r.array()?;
        let mut out = Vec::with_capacity(n.min(r.remaining()));
        for _ in 0..n {
            if r.try_nil() {
                out.push(None);
                continue;
            }
            let m = r.array()?;
            let mut k = Vec::with_capacity(m.min(r.remaining()));
            for _ in 0..m {
                k.push(r.str()?.to_string());
            }
            out.push(Some(k));
        }
        Ok(Some(out))
    })();
    match parsed {
        Ok(v) => Ok(v),
        Err(_) => {
            *r = start;
            r.skip()?;
            Ok(None)
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
