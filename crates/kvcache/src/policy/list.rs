//! Intrusive doubly linked FIFO queues over one slab of nodes, so every queue operation the
//! policies need (push at the head, unlink anywhere, pop at the tail) is O(1) and allocation
//! free after warm-up.

use rustc_hash::FxHashMap;

use crate::BlockKey;

const NIL: u32 = u32::MAX;

/// One tracked key.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub key: BlockKey,
    pub weight: u64,
    /// Access frequency (S3-FIFO, capped) — unused by LRU.
    pub freq: u8,
    /// Which queue the node is in (policy defined).
    pub queue: u8,
    prev: u32,
    next: u32,
}

/// A queue: head = newest, tail = oldest; `bytes` sums its nodes' weights.
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    head: u32,
    tail: u32,
    pub len: usize,
    pub bytes: u64,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
        }
    }
}

/// Nodes plus the key → slot map.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slab {
    nodes: Vec<Node>,
    free: Vec<u32>,
    slots: FxHashMap<BlockKey, u32>,
}

impl Slab {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slot(&self, key: BlockKey) -> Option<u32> {
        self.slots.get(&key).copied()
    }

    pub fn node(&self, slot: u32) -> &Node {
        &self.nodes[slot as usize]
    }

    pub fn node_mut(&mut self, slot: u32) -> &mut Node {
        &mut self.nodes[slot as usize]
    }

    /// Allocates a node for a new key (not linked into any queue yet).
    pub fn alloc(&mut self, key: BlockKey, weight: u64, queue: u8) -> u32 {
        let node = Node {
            key,
            weight,
            freq: 0,
            queue,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 keys")
            }
        };
        self.slots.insert(key, slot);
        slot
    }

    /// Frees an unlinked node's slot and forgets its key.
    pub fn release(&mut self, slot: u32) -> BlockKey {
        let key = self.nodes[slot as usize].key;
        self.slots.remove(&key);
        self.free.push(slot);
        key
    }

    /// Links `slot` at the head (newest end) of `q`.
    pub fn push_head(&mut self, q: &mut Queue, slot: u32) {
        let old = q.head;
        {
            let n = self.node_mut(slot);
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            q.tail = slot;
        } else {
            self.node_mut(old).prev = slot;
        }
        q.head = slot;
        q.len += 1;
        q.bytes += self.node(slot).weight;
    }

    /// Unlinks `slot` from `q` (which must hold it).
    pub fn unlink(&mut self, q: &mut Queue, slot: u32) {
        let (prev, next, weight) = {
            let n = self.node(slot);
            (n.prev, n.next, n.weight)
        };
        if prev == NIL {
            q.head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            q.tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
        q.len -= 1;
        q.bytes -= weight;
    }

    /// Unlinks and returns the tail (oldest) of `q`.
    pub fn pop_tail(&mut self, q: &mut Queue) -> Option<u32> {
        let slot = q.tail;
        if slot == NIL {
            return None;
        }
        self.unlink(q, slot);
        Some(slot)
    }
}
