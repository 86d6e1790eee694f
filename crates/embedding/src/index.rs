//! The id → slot index of a table: open addressing with linear probing over two flat
//! arrays (keys, slots), at most 80 % full.
//!
//! Why not `std::collections::HashMap`: a lookup's cost is its cache misses, and a batch
//! looks up thousands of ids at once. Here the bucket of an id is known before the
//! lookup, so callers fetch the buckets of the ids a few places ahead
//! ([`IdIndex::prefetch`]) and the misses overlap. It also takes 12 bytes a bucket
//! against hashbrown's 17.

/// Key of a free bucket. The id 0 itself is kept aside in `zero`.
const FREE: u64 = 0;

#[derive(Clone, Debug, Default)]
pub(crate) struct IdIndex {
    keys: Vec<u64>,
    slots: Vec<u32>,
    /// Bits of the bucket number (`keys.len() == 1 << bits`, or both 0).
    bits: u32,
    /// Entries in the buckets (id 0 not counted).
    used: usize,
    /// Slot of the id 0.
    zero: Option<u32>,
}

impl IdIndex {
    /// Entries (ids with a slot).
    pub fn len(&self) -> usize {
        self.used + usize::from(self.zero.is_some())
    }

    /// Heap bytes of the buckets.
    pub fn bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.slots.capacity() * 4
    }

    /// Home bucket of a (non-zero) id: the top bits of a multiplicative hash after a
    /// xor-shift, so ids that differ only in high or only in low bits still spread.
    #[inline]
    fn home(&self, id: u64) -> usize {
        let h = (id ^ (id >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (h >> (64 - self.bits)) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.keys.len() - 1
    }

    /// The bucket holding `id` (`true`), or the free bucket that ends its probe run
    /// (`false`). The buckets must not be empty; `id` must not be 0.
    #[inline]
    fn find(&self, id: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut b = self.home(id);
        loop {
            match self.keys[b] {
                k if k == id => return (b, true),
                FREE => return (b, false),
                _ => b = (b + 1) & mask,
            }
        }
    }

    /// The slot of `id`, if it has one.
    #[inline]
    pub fn get(&self, id: u64) -> Option<u32> {
        if id == FREE {
            return self.zero;
        }
        if self.used == 0 {
            return None;
        }
        let (b, found) = self.find(id);
        found.then(|| self.slots[b])
    }

    /// Asks the CPU to bring `id`'s home bucket into cache (a hint; never faults).
    #[inline]
    pub fn prefetch(&self, id: u64) {
        if self.used == 0 {
            return;
        }
        let b = self.home(id);
        prefetch_ptr(self.keys[b..].as_ptr().cast());
        prefetch_ptr(self.slots[b..].as_ptr().cast());
    }

    /// Sets the slot of `id` (replacing any it had).
    pub fn insert(&mut self, id: u64, slot: u32) {
        if id == FREE {
            self.zero = Some(slot);
            return;
        }
        if (self.used + 1) * 5 > self.keys.len() * 4 {
            self.grow_for(self.used + 1);
        }
        let (b, found) = self.find(id);
        if !found {
            self.keys[b] = id;
            self.used += 1;
        }
        self.slots[b] = slot;
    }

    /// Removes `id`; returns its slot. Later entries of the probe run shift back, so
    /// no tombstones are left.
    pub fn remove(&mut self, id: u64) -> Option<u32> {
        if id == FREE {
            return self.zero.take();
        }
        if self.used == 0 {
            return None;
        }
        let (mut hole, found) = self.find(id);
        if !found {
            return None;
        }
        let mask = self.mask();
        let slot = self.slots[hole];
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.keys[j];
            if k == FREE {
                break;
            }
            // The entry at j may fill the hole only if its home is not cyclically in
            // (hole, j]: otherwise a lookup from its home would stop at the hole.
            let home = self.home(k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.keys[hole] = k;
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.keys[hole] = FREE;
        self.used -= 1;
        Some(slot)
    }

    /// Makes room for `extra` more entries without growing on the way.
    pub fn reserve(&mut self, extra: usize) {
        let want = self.used + extra;
        if want * 5 > self.keys.len() * 4 {
            self.grow_for(want);
        }
    }

    /// Every (id, slot), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.zero.map(|s| (FREE, s)).into_iter().chain(
            self.keys
                .iter()
                .zip(&self.slots)
                .filter(|(&k, _)| k != FREE)
                .map(|(&k, &s)| (k, s)),
        )
    }

    /// Rebuilds the buckets with room for `n` entries at most 80 % full.
    fn grow_for(&mut self, n: usize) {
        let mut bits = self.bits.max(3);
        while n * 5 > (1usize << bits) * 4 {
            bits += 1;
        }
        let keys = std::mem::replace(&mut self.keys, vec![FREE; 1 << bits]);
        let slots = std::mem::replace(&mut self.slots, vec![0; 1 << bits]);
        self.bits = bits;
        let mask = self.mask();
        for (k, s) in keys.into_iter().zip(slots) {
            if k != FREE {
                let mut b = self.home(k);
                while self.keys[b] != FREE {
                    b = (b + 1) & mask;
                }
                self.keys[b] = k;
                self.slots[b] = s;
            }
        }
    }
}

/// Hints the CPU to bring the line at `p` into cache.
#[inline]
pub(crate) fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and never faults.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts, replacements and removals (ids clustered so probe runs collide
    /// and wrap) against a HashMap.
    #[test]
    fn matches_a_hash_map_through_inserts_and_removals() {
        let mut idx = IdIndex::default();
        let mut want: HashMap<u64, u32> = HashMap::new();
        let mut r = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r
        };
        for step in 0..60_000u32 {
            // A small id space (with 0) so removals hit and runs fill up.
            let id = next() % 3000;
            match next() % 4 {
                0 => assert_eq!(idx.remove(id), want.remove(&id), "remove {id}"),
                _ => {
                    idx.insert(id, step);
                    want.insert(id, step);
                }
            }
            if step % 997 == 0 {
                for probe in 0..3000 {
                    assert_eq!(idx.get(probe), want.get(&probe).copied(), "get {probe}");
                }
            }
            assert_eq!(idx.len(), want.len());
        }
        let mut all: Vec<(u64, u32)> = idx.iter().collect();
        all.sort_unstable();
        let mut expect: Vec<(u64, u32)> = want.into_iter().collect();
        expect.sort_unstable();
        assert_eq!(all, expect);
        assert!(idx.used * 5 <= idx.keys.len() * 4, "more than 80 % full");
    }

    #[test]
    fn reserve_avoids_growth_and_empty_lookups_miss() {
        let mut idx = IdIndex::default();
        assert_eq!(idx.get(7), None);
        assert_eq!(idx.remove(7), None);
        idx.prefetch(7);
        idx.reserve(1000);
        let cap = idx.keys.len();
        for id in 1..=1000u64 {
            idx.insert(id.wrapping_mul(0x9E37_79B9_7F4A_7C15), id as u32);
        }
        assert_eq!(idx.keys.len(), cap);
        assert_eq!(idx.len(), 1000);
        assert_eq!(idx.get(0x9E37_79B9_7F4A_7C15), Some(1));
    }
}
