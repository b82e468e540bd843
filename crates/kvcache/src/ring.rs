//! Placement of keys on pool servers: a consistent-hash ring with virtual nodes (AIBrix uses
//! 100 per node), or rendezvous (highest random weight) hashing.
//!
//! Both depend only on node *names*, so every client that knows the same membership places a
//! key on the same server, and a joining server takes keys only from the others' share — no
//! key moves between two servers that stay.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::BlockKey;

/// Virtual nodes per server by default (AIBrix's value): max/mean load ≈ 1.1–1.2 for a few nodes.
pub const DEFAULT_VNODES: u32 = 100;

/// Where a key lands on the ring or in rendezvous scoring: a rehash of the key, so keys that
/// are not uniformly random themselves (tests, RESP names) still spread.
fn key_point(key: BlockKey) -> u64 {
    xxh3_64(&key.to_bytes())
}

fn vnode_point(name: &str, v: u32) -> u64 {
    let mut buf = Vec::with_capacity(name.len() + 5);
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    buf.extend_from_slice(&v.to_le_bytes());
    xxh3_64(&buf)
}

/// Placement of keys on pool servers by consistent hashing with virtual nodes.
#[derive(Clone, Debug)]
pub struct Ring {
    nodes: Vec<String>,
    /// (point, node index), sorted by point then node name (ties resolve the same everywhere).
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over `nodes` (order only fixes the indices [`Ring::node_for`] returns) with
    /// `vnodes` points per node (0 counts as 1).
    pub fn new(nodes: &[String], vnodes: u32) -> Self {
        let vnodes = vnodes.max(1);
        let mut points: Vec<(u64, usize)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| (0..vnodes).map(move |v| (vnode_point(n, v), i)))
            .collect();
        points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| nodes[a.1].cmp(&nodes[b.1])));
        Self {
            nodes: nodes.to_vec(),
            points,
        }
    }

    /// Index (into [`Ring::nodes`]) of the server that owns `key`: the first point clockwise of
    /// the key's point. `None` for an empty ring.
    pub fn node_for(&self, key: BlockKey) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let p = key_point(key);
        let i = self.points.partition_point(|&(q, _)| q < p);
        Some(self.points[i % self.points.len()].1)
    }

    /// The servers, in the order given to [`Ring::new`].
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }
}

/// Placement by rendezvous (highest random weight) hashing: the node with the highest
/// `hash(key, node name)` wins. O(nodes) per key, no state; `None` when `nodes` is empty.
/// Equal names tie to the lower index.
pub fn rendezvous(nodes: &[String], key: BlockKey) -> Option<usize> {
    let k = key.to_bytes();
    let mut best: Option<(u64, usize)> = None;
    for (i, n) in nodes.iter().enumerate() {
        let score = xxh3_64_with_seed(&k, xxh3_64(n.as_bytes()));
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests;
