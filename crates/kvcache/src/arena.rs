//! Space in the shared arena for variable-size values: a best-fit allocator over free extents
//! with coalescing, in page units (4 KiB), O(log n) per operation.
//!
//! Why not a crate: `offset-allocator` (TLSF) keeps u32 offsets and a fixed node count, and a
//! buddy allocator wastes up to half of each value; KV chunks are few and large (MiBs), so two
//! ordered maps (free extents by offset for coalescing, by size for best fit) are simple and
//! waste at most one page per value. Pure: no I/O, tested against an invariant checker.

use std::collections::{BTreeMap, BTreeSet};

/// Allocation granule: values start on page boundaries so the pages of an evicted value can be
/// returned to the kernel (hole punching) without touching a neighbour.
pub const PAGE: u64 = 4096;

/// Rounds a value length up to the bytes it occupies in the arena (at least one page).
pub fn footprint(len: u64) -> u64 {
    len.max(1).div_ceil(PAGE) * PAGE
}

/// Free-extent allocator over `0..capacity` (bytes, page aligned).
#[derive(Debug, Clone)]
pub struct Allocator {
    by_offset: BTreeMap<u64, u64>,
    by_size: BTreeSet<(u64, u64)>,
    capacity: u64,
    used: u64,
}

impl Allocator {
    /// An allocator with all of `capacity` (rounded down to pages) free.
    pub fn new(capacity: u64) -> Self {
        let capacity = capacity / PAGE * PAGE;
        let mut a = Self {
            by_offset: BTreeMap::new(),
            by_size: BTreeSet::new(),
            capacity,
            used: 0,
        };
        if capacity > 0 {
            a.insert_free(0, capacity);
        }
        a
    }

    /// Bytes handed out (page rounded).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Managed bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Size of the largest free extent: a value of this footprint fits without eviction.
    pub fn largest_free(&self) -> u64 {
        self.by_size.last().map_or(0, |&(size, _)| size)
    }

    /// Number of free extents (a fragmentation gauge).
    pub fn free_extents(&self) -> usize {
        self.by_offset.len()
    }

    /// Allocates `footprint(len)` bytes; the smallest free extent that fits is split.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let size = footprint(len);
        let &(extent, offset) = self.by_size.range((size, 0)..).next()?;
        self.remove_free(offset, extent);
        if extent > size {
            self.insert_free(offset + size, extent - size);
        }
        self.used += size;
        Some(offset)
    }

    /// Returns the allocation at `offset` of a value of `len` bytes, merging with free
    /// neighbours. Freeing what was not allocated is a caller bug (debug-asserted).
    pub fn free(&mut self, offset: u64, len: u64) {
        let mut start = offset;
        let mut size = footprint(len);
        debug_assert!(start + size <= self.capacity, "free outside the arena");
        self.used -= size;
        if let Some((&prev, &prev_size)) = self.by_offset.range(..start).next_back() {
            debug_assert!(prev + prev_size <= start, "double free");
            if prev + prev_size == start {
                self.remove_free(prev, prev_size);
                start = prev;
                size += prev_size;
            }
        }
        if let Some(&next_size) = self.by_offset.get(&(start + size)) {
            self.remove_free(start + size, next_size);
            size += next_size;
        }
        self.insert_free(start, size);
    }

    fn insert_free(&mut self, offset: u64, size: u64) {
        self.by_offset.insert(offset, size);
        self.by_size.insert((size, offset));
    }

    fn remove_free(&mut self, offset: u64, size: u64) {
        self.by_offset.remove(&offset);
        self.by_size.remove(&(size, offset));
    }

    /// Checks the invariants (tests): extents disjoint, not adjacent, inside the arena, the two
    /// maps agree, and free + used = capacity.
    #[cfg(test)]
    fn check(&self) {
        let mut end = 0;
        let mut free = 0;
        for (i, (&off, &size)) in self.by_offset.iter().enumerate() {
            assert!(size > 0 && off % PAGE == 0 && size % PAGE == 0);
            assert!(
                i == 0 || off > end,
                "extents overlap or touch: {off} after {end}"
            );
            assert!(self.by_size.contains(&(size, off)));
            end = off + size;
            free += size;
        }
        assert!(end <= self.capacity);
        assert_eq!(self.by_size.len(), self.by_offset.len());
        assert_eq!(free + self.used, self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    #[test]
    fn best_fit_splits_and_free_coalesces_back_to_one_extent() {
        let mut a = Allocator::new(16 * PAGE);
        let x = a.alloc(1).expect("fits");
        let y = a.alloc(3 * PAGE).expect("fits");
        let z = a.alloc(PAGE + 1).expect("fits");
        assert_eq!((x, y, z), (0, PAGE, 4 * PAGE));
        assert_eq!(a.used(), 6 * PAGE);
        a.free(y, 3 * PAGE);
        // A one-page value goes into the 3-page hole, not the big tail (best fit).
        assert_eq!(a.alloc(10), Some(PAGE));
        assert_eq!(a.alloc(11 * PAGE), None);
        assert_eq!(a.alloc(10 * PAGE), Some(6 * PAGE));
        a.check();
        for (off, len) in [(PAGE, 10), (x, 1), (z, PAGE + 1), (6 * PAGE, 10 * PAGE)] {
            a.free(off, len);
            a.check();
        }
        assert_eq!(
            (a.used(), a.free_extents(), a.largest_free()),
            (0, 1, 16 * PAGE)
        );
    }

    #[test]
    fn random_alloc_free_keeps_the_invariants_and_never_overlaps() {
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut a = Allocator::new(512 * PAGE);
            let mut live: Vec<(u64, u64)> = Vec::new();
            for _ in 0..2000 {
                if live.is_empty() || rng.random_bool(0.55) {
                    let len = rng.random_range(1..40 * PAGE);
                    match a.alloc(len) {
                        Some(off) => {
                            let end = off + footprint(len);
                            assert!(end <= a.capacity());
                            for &(o, l) in &live {
                                assert!(end <= o || o + footprint(l) <= off, "overlap");
                            }
                            live.push((off, len));
                        }
                        None => assert!(a.largest_free() < footprint(len)),
                    }
                } else {
                    let (off, len) = live.swap_remove(rng.random_range(0..live.len()));
                    a.free(off, len);
                }
                a.check();
            }
            for (off, len) in live.drain(..) {
                a.free(off, len);
            }
            assert_eq!((a.used(), a.free_extents()), (0, 1));
        }
    }
}
