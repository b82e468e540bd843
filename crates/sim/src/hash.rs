//! Chained block hashes, as vLLM's automatic prefix caching computes them.
//!
//! `hash_i = H(hash_{i-1}, tokens of block i, extra keys)`; the first block chains from a
//! seed (vLLM's `NONE_HASH`). The one extra key modelled is the LoRA adapter, so the same text
//! under two adapters never shares KV. Three algorithms ([`HashAlgo`]):
//! - `Builtin`: the simulator's own fast deterministic hash (used for vLLM's default
//!   `sha256`, which hashes a Python pickle and cannot be reproduced outside Python);
//! - `Sha256Cbor` and `XxhashCbor`: vLLM's `sha256_cbor` and `xxhash_cbor`, bit for bit:
//!   `H(cbor_canonical((parent_digest, tuple(tokens), extra_keys)))` with
//!   `NONE_HASH = H(cbor(seed))`, the seed being `PYTHONHASHSEED` when set.
//!
//! The engine keys its cache by the last 8 bytes of a digest read big-endian: the `u64` vLLM
//! publishes in its KV events (`VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1`, the default).

use std::hash::{DefaultHasher, Hash, Hasher};

use sha2::{Digest as _, Sha256};

/// Identity of one full KV block's contents and everything before it (vLLM's event hash).
pub type BlockHash = u64;

const BUILTIN_NONE_HASH: BlockHash = 0x9e37_79b9_7f4a_7c15;

/// vLLM's seed for `NONE_HASH` with a cryptographic hash when `PYTHONHASHSEED` is unset.
pub const DEFAULT_NONE_HASH_SEED: &str = "vllm-none-hash";

/// `--prefix-caching-hash-algo`: how block hashes are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashAlgo {
    /// The simulator's own hash (for vLLM's pickle-based `sha256` and `xxhash`).
    #[default]
    Builtin,
    /// vLLM's `sha256_cbor`.
    Sha256Cbor,
    /// vLLM's `xxhash_cbor` (xxh3-128).
    XxhashCbor,
}

impl HashAlgo {
    /// Parses vLLM's flag value; `sha256` and `xxhash` (pickle-based) map to `Builtin`.
    pub fn from_vllm(name: &str) -> Option<Self> {
        match name {
            "sha256" | "xxhash" => Some(Self::Builtin),
            "sha256_cbor" => Some(Self::Sha256Cbor),
            "xxhash_cbor" => Some(Self::XxhashCbor),
            _ => None,
        }
    }
}

/// A block's full digest: what the next block chains from (32 bytes for SHA-256, 16 for
/// xxh3-128, 8 for the builtin hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    bytes: [u8; 32],
    len: u8,
}

impl Digest {
    fn new(b: &[u8]) -> Self {
        let mut bytes = [0; 32];
        bytes[..b.len()].copy_from_slice(b);
        Self {
            bytes,
            len: b.len() as u8,
        }
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The last 8 bytes big-endian: vLLM's integer block hash and the engine's cache key.
    pub fn key(&self) -> BlockHash {
        let b = self.as_bytes();
        let mut last = [0u8; 8];
        let n = b.len().min(8);
        last[8 - n..].copy_from_slice(&b[b.len() - n..]);
        u64::from_be_bytes(last)
    }
}

/// The LoRA adapter a block was computed under: vLLM hashes `("lora", name, path)`; the
/// builtin hash uses the engine's adapter id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraKey<'a> {
    /// Engine-local adapter id.
    pub id: u32,
    /// Adapter name (`lora_name`).
    pub name: &'a str,
    /// Adapter path (`lora_path`).
    pub path: &'a str,
}

/// Computes chained block hashes with one algorithm and seed.
#[derive(Clone, Debug)]
pub struct BlockHasher {
    algo: HashAlgo,
    none: Digest,
}

impl Default for BlockHasher {
    fn default() -> Self {
        Self::new(HashAlgo::Builtin, None)
    }
}

impl BlockHasher {
    /// A hasher for `algo`; `seed` is `PYTHONHASHSEED` (None: vLLM's fixed default seed).
    pub fn new(algo: HashAlgo, seed: Option<&str>) -> Self {
        let none = match algo {
            HashAlgo::Builtin => Digest::new(&BUILTIN_NONE_HASH.to_be_bytes()),
            _ => {
                let mut buf = Vec::new();
                cbor_text(&mut buf, seed.unwrap_or(DEFAULT_NONE_HASH_SEED));
                digest(algo, &buf)
            }
        };
        Self { algo, none }
    }

    /// The algorithm.
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// vLLM's `NONE_HASH`: what the first block chains from.
    pub fn none_hash(&self) -> Digest {
        self.none
    }

    /// Digest of a full block given its parent's digest (None for the first block).
    pub fn hash(&self, parent: Option<&Digest>, tokens: &[u32], lora: Option<LoraKey>) -> Digest {
        if self.algo == HashAlgo::Builtin {
            let p = parent.map_or(BUILTIN_NONE_HASH, Digest::key);
            return Digest::new(&builtin(p, tokens, lora).to_be_bytes());
        }
        let parent = parent.unwrap_or(&self.none).as_bytes();
        let mut buf = Vec::with_capacity(16 + parent.len() + tokens.len() * 5);
        cbor_head(&mut buf, 4, 3);
        cbor_head(&mut buf, 2, parent.len() as u64);
        buf.extend_from_slice(parent);
        cbor_head(&mut buf, 4, tokens.len() as u64);
        for &t in tokens {
            cbor_head(&mut buf, 0, u64::from(t));
        }
        match lora {
            None => buf.push(0xf6),
            Some(l) => {
                cbor_head(&mut buf, 4, 1);
                cbor_head(&mut buf, 4, 3);
                cbor_text(&mut buf, "lora");
                cbor_text(&mut buf, l.name);
                cbor_text(&mut buf, l.path);
            }
        }
        digest(self.algo, &buf)
    }

    /// Extends `hashes` (and `last`, the digest of its last block; left alone by the builtin
    /// hash, whose parent is the key itself) to cover every full block of `tokens`.
    pub fn extend(
        &self,
        hashes: &mut Vec<BlockHash>,
        last: &mut Option<Digest>,
        tokens: &[u32],
        block_size: usize,
        lora: Option<LoraKey>,
    ) {
        let full = tokens.len() / block_size;
        if self.algo == HashAlgo::Builtin {
            // The parent is the previous key itself: no digest to carry (the hot path).
            while hashes.len() < full {
                let i = hashes.len();
                let p = hashes.last().copied().unwrap_or(BUILTIN_NONE_HASH);
                hashes.push(builtin(
                    p,
                    &tokens[i * block_size..(i + 1) * block_size],
                    lora,
                ));
            }
            return;
        }
        while hashes.len() < full {
            let i = hashes.len();
            let d = self.hash(
                last.as_ref(),
                &tokens[i * block_size..(i + 1) * block_size],
                lora,
            );
            hashes.push(d.key());
            *last = Some(d);
        }
    }
}

fn builtin(parent: BlockHash, tokens: &[u32], lora: Option<LoraKey>) -> BlockHash {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    lora.map(|l| l.id).hash(&mut h);
    h.finish()
}

fn digest(algo: HashAlgo, input: &[u8]) -> Digest {
    match algo {
        HashAlgo::XxhashCbor => Digest::new(&xxhash_rust::xxh3::xxh3_128(input).to_be_bytes()),
        _ => Digest::new(&Sha256::digest(input)),
    }
}

/// A canonical (shortest) CBOR item head.
fn cbor_head(buf: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    if v < 24 {
        buf.push(m | v as u8);
    } else if v <= 0xff {
        buf.extend_from_slice(&[m | 24, v as u8]);
    } else if v <= 0xffff {
        buf.push(m | 25);
        buf.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        buf.push(m | 26);
        buf.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        buf.push(m | 27);
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

fn cbor_text(buf: &mut Vec<u8>, s: &str) {
    cbor_head(buf, 3, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
