//! The prefix index's keys: a prompt cut into full blocks with chained hashes.
//!
//! The routing key is the whole conversation in order (every message, or the prompt), cut
//! into full blocks of `block` units; a trailing partial block is not hashed. Block `i`'s hash
//! is `h_i = xxh64(seed, LE64(h_{i−1}) ‖ block_i)` with `h_{−1} = seed`, so a hash names the
//! block *and everything before it*, and two prompts share exactly their common leading full
//! blocks. This is AIBrix's chain; Brix fixes its random per-process seed to [`DEFAULT_SEED`]
//! so gateway replicas agree on block ids.

use std::fmt;
use std::str::FromStr;

use xxhash_rust::xxh64::Xxh64;

/// The default chain seed, the same in every process ("brix" in ASCII), so replicas agree.
pub const DEFAULT_SEED: u64 = 0x6272_6978;

/// What a block's size counts: bytes of the UTF-8 text, or token ids. Bytes is the default:
/// it routes as well as tokens and costs 170–240× less CPU (docs/router.md, "Block unit").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BlockUnit {
    /// Bytes of the text: needs no tokenizer (AIBrix's default, block size 128 in its manifest).
    #[default]
    Bytes,
    /// Token ids, hashed as their little-endian bytes; the caller tokenizes.
    Tokens,
}

impl BlockUnit {
    /// Config and metric spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bytes => "bytes",
            Self::Tokens => "tokens",
        }
    }

    /// Block size used when none is configured: 128 bytes (AIBrix's manifest), or 32 tokens
    /// (about the same span of text, ~4 bytes a token).
    pub fn default_block(self) -> usize {
        match self {
            Self::Bytes => 128,
            Self::Tokens => 32,
        }
    }
}

impl fmt::Display for BlockUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A block unit other than `bytes` or `tokens`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown block unit '{0}': expected 'bytes' or 'tokens'")]
pub struct BlockUnitParseError(pub String);

impl FromStr for BlockUnit {
    type Err = BlockUnitParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "bytes" => Ok(Self::Bytes),
            "tokens" => Ok(Self::Tokens),
            other => Err(BlockUnitParseError(other.to_string())),
        }
    }
}

/// Chained hashes of the full `block`-byte blocks of `bytes` (none when `block` is 0).
pub fn hash_bytes(bytes: &[u8], block: usize, seed: u64) -> Vec<u64> {
    if block == 0 {
        return Vec::new();
    }
    let mut prev = seed;
    bytes
        .chunks_exact(block)
        .map(|chunk| {
            prev = link(prev, chunk, seed);
            prev
        })
        .collect()
}

/// Chained hashes of the full `block`-token blocks of `tokens`, each token id as its 4
/// little-endian bytes (none when `block` is 0).
pub fn hash_tokens(tokens: &[u32], block: usize, seed: u64) -> Vec<u64> {
    if block == 0 {
        return Vec::new();
    }
    let mut buf = Vec::with_capacity(block * 4);
    let mut prev = seed;
    tokens
        .chunks_exact(block)
        .map(|chunk| {
            prev = link_tokens(prev, chunk, seed, &mut buf);
            prev
        })
        .collect()
}

/// One link of the token chain after `prev` (`buf` is scratch space for the block's bytes).
pub(crate) fn link_tokens(prev: u64, block: &[u32], seed: u64, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    buf.extend(block.iter().flat_map(|t| t.to_le_bytes()));
    link(prev, buf, seed)
}

/// One link of the chain: `xxh64(seed, LE64(prev) ‖ block)`.
fn link(prev: u64, block: &[u8], seed: u64) -> u64 {
    let mut h = Xxh64::new(seed);
    h.update(&prev.to_le_bytes());
    h.update(block);
    h.digest()
}

#[cfg(test)]
#[path = "blocks_tests.rs"]
mod tests;
