//! Pool keys: chained xxh3-128 hashes of fixed-size token chunks under a namespace root.
//!
//! `key[i] = xxh3_128(key[i-1].to_bytes() ‖ chunk i's token ids as u32 LE)` with
//! `key[-1] = Namespace::root()`, so a key names a whole prefix, not just its own chunk, and
//! nothing is shared between models, adapters or tenants (their roots differ).

use xxhash_rust::xxh3::xxh3_128;

/// A pool key: a 128-bit chained prefix hash (xxh3-128), so a key identifies its whole prefix.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct BlockKey(pub u128);

impl BlockKey {
    /// The key on the wire and in the chain: 16 bytes, little endian.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// Inverse of [`BlockKey::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_le_bytes(bytes))
    }
}

impl std::fmt::Display for BlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What a key is scoped to, so nothing is shared between models, adapters or tenants.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Namespace<'a> {
    /// Model id (with revision, dtype and layout signature if producers can differ in them).
    pub model: &'a str,
    /// LoRA adapter name, if the KV was computed with one.
    pub adapter: Option<&'a str>,
    /// Tenant (or a tenant secret), so tenants cannot probe each other's prefixes.
    pub tenant: Option<&'a str>,
}

/// Version tag of the root encoding: bump it when the encoding changes so old keys never match.
const ROOT_TAG: &[u8] = b"brix-kv/v1";

impl Namespace<'_> {
    /// The chain's first parent: xxh3-128 of a versioned, length-prefixed encoding of the fields
    /// (length prefixes so `("ab", "c")` and `("a", "bc")` differ; a presence byte per option).
    pub fn root(&self) -> BlockKey {
        let mut buf = Vec::with_capacity(ROOT_TAG.len() + 32 + self.model.len());
        buf.extend_from_slice(ROOT_TAG);
        put_str(&mut buf, self.model);
        for field in [self.adapter, self.tenant] {
            match field {
                None => buf.push(0),
                Some(s) => {
                    buf.push(1);
                    put_str(&mut buf, s);
                }
            }
        }
        BlockKey(xxh3_128(&buf))
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Key of one chunk given its parent's key (the chain step shared by [`chunk_keys`] and
/// [`KeyChain`]); `buf` is scratch space reused across calls.
fn next_key(parent: BlockKey, chunk: &[u32], buf: &mut Vec<u8>) -> BlockKey {
    // Sized once, then filled in place: this loop compiles to a plain copy on little-endian
    // machines (appending token by token ran ~3× slower).
    buf.resize(16 + 4 * chunk.len(), 0);
    buf[..16].copy_from_slice(&parent.to_bytes());
    for (dst, t) in buf[16..].chunks_exact_mut(4).zip(chunk) {
        dst.copy_from_slice(&t.to_le_bytes());
    }
    BlockKey(xxh3_128(buf))
}

/// Keys of the full `chunk_tokens`-token chunks of `tokens` (a partial tail chunk gets no key):
/// `key[i] = xxh3_128(key[i-1] bytes ‖ chunk i's token ids as u32 LE)`, `key[-1] = root`.
/// `chunk_tokens == 0` yields no keys.
pub fn chunk_keys(root: BlockKey, tokens: &[u32], chunk_tokens: usize) -> Vec<BlockKey> {
    if chunk_tokens == 0 {
        return Vec::new();
    }
    let mut buf = Vec::with_capacity(16 + 4 * chunk_tokens);
    let mut parent = root;
    tokens
        .chunks_exact(chunk_tokens)
        .map(|chunk| {
            parent = next_key(parent, chunk, &mut buf);
            parent
        })
        .collect()
}

/// Incremental form of [`chunk_keys`] for engines that extend a prompt token by token or turn
/// by turn: keeps the keys so far and the tokens of the unfinished chunk.
#[derive(Clone, Debug)]
pub struct KeyChain {
    root: BlockKey,
    chunk_tokens: usize,
    keys: Vec<BlockKey>,
    pending: Vec<u32>,
    buf: Vec<u8>,
}

impl KeyChain {
    /// An empty chain under `root` (`chunk_tokens == 0` never completes a chunk).
    pub fn new(root: BlockKey, chunk_tokens: usize) -> Self {
        Self {
            root,
            chunk_tokens,
            keys: Vec::new(),
            pending: Vec::with_capacity(chunk_tokens),
            buf: Vec::with_capacity(16 + 4 * chunk_tokens),
        }
    }

    /// Appends `tokens` and returns the keys of the chunks this call completed.
    pub fn extend(&mut self, mut tokens: &[u32]) -> &[BlockKey] {
        let before = self.keys.len();
        if self.chunk_tokens == 0 {
            return &[];
        }
        while !tokens.is_empty() {
            let take = (self.chunk_tokens - self.pending.len()).min(tokens.len());
            let (head, rest) = tokens.split_at(take);
            tokens = rest;
            // Whole chunks straight from the input, without copying through `pending`.
            if self.pending.is_empty() && head.len() == self.chunk_tokens {
                let key = next_key(self.last(), head, &mut self.buf);
                self.keys.push(key);
                continue;
            }
            self.pending.extend_from_slice(head);
            if self.pending.len() == self.chunk_tokens {
                let key = next_key(self.last(), &self.pending, &mut self.buf);
                self.keys.push(key);
                self.pending.clear();
            }
        }
        &self.keys[before..]
    }

    /// All keys completed so far.
    pub fn keys(&self) -> &[BlockKey] {
        &self.keys
    }

    /// Tokens seen so far (including the unfinished chunk).
    pub fn tokens(&self) -> usize {
        self.keys.len() * self.chunk_tokens + self.pending.len()
    }

    fn last(&self) -> BlockKey {
        self.keys.last().copied().unwrap_or(self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(model: &str) -> Namespace<'_> {
        Namespace {
            model,
            adapter: None,
            tenant: None,
        }
    }

    #[test]
    fn roots_separate_models_adapters_tenants_and_encodings() {
        let roots = [
            ns("m").root(),
            ns("m2").root(),
            Namespace {
                model: "m",
                adapter: Some("a"),
                tenant: None,
            }
            .root(),
            Namespace {
                model: "m",
                adapter: None,
                tenant: Some("a"),
            }
            .root(),
            Namespace {
                model: "m",
                adapter: Some(""),
                tenant: None,
            }
            .root(),
            Namespace {
                model: "ma",
                adapter: None,
                tenant: None,
            }
            .root(),
        ];
        for i in 0..roots.len() {
            for j in 0..i {
                assert_ne!(roots[i], roots[j], "roots {i} and {j} collide");
            }
        }
        assert_eq!(ns("m").root(), ns("m").root());
    }

    #[test]
    fn chunk_keys_chain_and_drop_the_partial_tail() {
        let root = ns("m").root();
        let tokens: Vec<u32> = (0..40).collect();
        let keys = chunk_keys(root, &tokens, 16);
        assert_eq!(keys.len(), 2);
        // A prefix's keys are a prefix of the longer prompt's keys.
        assert_eq!(chunk_keys(root, &tokens[..16], 16), keys[..1]);
        // The second key depends on the first chunk: change token 0, both keys change.
        let mut other = tokens.clone();
        other[0] = 999;
        let k2 = chunk_keys(root, &other, 16);
        assert_ne!(k2[0], keys[0]);
        assert_ne!(k2[1], keys[1]);
        // Same chunk under another root gives another key.
        assert_ne!(chunk_keys(ns("x").root(), &tokens, 16)[0], keys[0]);
        assert!(chunk_keys(root, &tokens, 0).is_empty());
        // The documented formula, spelled out.
        let mut bytes = root.to_bytes().to_vec();
        for t in 0..16u32 {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        assert_eq!(keys[0], BlockKey(xxh3_128(&bytes)));
    }

    #[test]
    fn key_chain_matches_chunk_keys_for_any_split() {
        let root = ns("m").root();
        let tokens: Vec<u32> = (0..100).map(|i| i * 7 + 3).collect();
        let want = chunk_keys(root, &tokens, 16);
        for split in [1usize, 5, 16, 17, 33, 99] {
            let mut chain = KeyChain::new(root, 16);
            let mut got = Vec::new();
            for piece in tokens.chunks(split) {
                got.extend_from_slice(chain.extend(piece));
            }
            assert_eq!(got, want, "split {split}");
            assert_eq!(chain.keys(), want.as_slice());
            assert_eq!(chain.tokens(), 100);
        }
    }

    #[test]
    fn bytes_round_trip() {
        let k = BlockKey(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        assert_eq!(BlockKey::from_bytes(k.to_bytes()), k);
        assert_eq!(k.to_bytes()[0], 0x10);
    }
}
