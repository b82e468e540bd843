//! Differential test: seeded random operations against a naive reference pool.

use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The obvious, slow model: a Vec as the LRU queue and linear scans.
struct Naive {
    ref_cnt: Vec<u32>,
    hash: Vec<Option<u64>>,
    queue: Vec<u32>,
}

impl Naive {
    fn new(n: u32) -> Self {
        Self {
            ref_cnt: vec![0; n as usize],
            hash: vec![None; n as usize],
            queue: (0..n).collect(),
        }
    }
    fn lookup(&self, h: u64) -> Option<u32> {
        // The first block registered under h that still carries it.
        (0..self.hash.len() as u32).find(|&b| self.hash[b as usize] == Some(h))
    }
    fn touch(&mut self, b: u32) {
        self.queue.retain(|&x| x != b);
        self.ref_cnt[b as usize] += 1;
    }
    fn allocate(&mut self, n: u32) -> Option<Vec<u32>> {
        if n as usize > self.queue.len() {
            return None;
        }
        let got: Vec<u32> = self.queue.drain(..n as usize).collect();
        for &b in &got {
            self.hash[b as usize] = None;
            self.ref_cnt[b as usize] = 1;
        }
        Some(got)
    }
    fn free(&mut self, blocks: &[u32]) {
        for &b in blocks.iter().rev() {
            self.ref_cnt[b as usize] -= 1;
            if self.ref_cnt[b as usize] == 0 {
                self.queue.push(b);
            }
        }
    }
    fn cache(&mut self, b: u32, h: u64) {
        if self.hash[b as usize].is_none() && self.lookup(h).is_none() {
            self.hash[b as usize] = Some(h);
        }
    }
}

#[test]
fn matches_naive_reference_on_random_operations() {
    for seed in 0..20 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = rng.random_range(4..40);
        let mut pool = BlockPool::new(n, true);
        let mut naive = Naive::new(n);
        let mut owners: Vec<Vec<u32>> = Vec::new();
        for step in 0..2000 {
            match rng.random_range(0..4) {
                0 => {
                    let k = rng.random_range(1..6);
                    let mut got = Vec::new();
                    let ok = pool.allocate(k, &mut got);
                    let want = naive.allocate(k);
                    assert_eq!(ok.then_some(got.clone()), want, "seed {seed} step {step}");
                    if ok {
                        owners.push(got);
                    }
                }
                1 if !owners.is_empty() => {
                    let i = rng.random_range(0..owners.len());
                    let blocks = owners.swap_remove(i);
                    pool.free(&blocks);
                    naive.free(&blocks);
                }
                2 if !owners.is_empty() => {
                    let i = rng.random_range(0..owners.len());
                    let b = owners[i][rng.random_range(0..owners[i].len())];
                    let h = rng.random_range(0..8u64);
                    pool.cache(b, h);
                    naive.cache(b, h);
                }
                _ => {
                    let h = rng.random_range(0..8u64);
                    assert_eq!(pool.lookup(h), naive.lookup(h), "seed {seed} step {step}");
                    if let Some(b) = pool.lookup(h) {
                        pool.touch(b);
                        naive.touch(b);
                        owners.push(vec![b]);
                    }
                }
            }
            assert_eq!(pool.num_free() as usize, naive.queue.len());
        }
    }
}

#[test]
fn freed_blocks_stay_hittable_until_reallocated_tail_first() {
    let mut pool = BlockPool::new(4, true);
    let mut a = Vec::new();
    assert!(pool.allocate(2, &mut a));
    pool.cache(a[0], 10);
    pool.cache(a[1], 11);
    pool.free(&a);
    assert_eq!(pool.usage(), 0.0);
    assert_eq!(pool.lookup(10), Some(a[0]));
    // Two untouched blocks go first, then the freed tail block (11), then the head (10).
    let mut b = Vec::new();
    assert!(pool.allocate(3, &mut b));
    assert_eq!(pool.lookup(11), None);
    assert_eq!(pool.lookup(10), Some(a[0]));
    pool.touch(a[0]);
    assert_eq!(pool.num_free(), 0);
    assert_eq!(pool.usage(), 1.0);
    assert!(!pool.allocate(1, &mut b));
}

#[test]
fn caching_off_never_hits() {
    let mut pool = BlockPool::new(2, false);
    let mut a = Vec::new();
    assert!(pool.allocate(1, &mut a));
    pool.cache(a[0], 1);
    assert_eq!(pool.lookup(1), None);
}
