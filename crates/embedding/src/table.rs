//! One hashed embedding table: id → slot map, a flat slab of rows, per-row optimizer state.

use std::io::{self, Read, Write};

use crate::codec::{Decoder, Encoder};
use crate::hash::init_row;
use crate::index::IdIndex;
use crate::optimizer::RowOptimizer;

const MAGIC: [u8; 8] = *b"MFHEMBTB";
/// Version 2 added the lifecycle settings and FTRL; version 1 files still load.
const VERSION: u32 = 2;
/// Upper bounds used to reject corrupted headers before allocating from them.
const MAX_DIM: usize = 1 << 20;
const MAX_NAME: usize = 1 << 16;
/// Rows reserved up front when loading; beyond this the vectors grow as rows arrive,
/// so a corrupted row count cannot demand an absurd allocation.
const MAX_PRERESERVE_ROWS: u64 = 1 << 20;
/// The same bound in values (rows × (dim + state width)), since a corrupted dim times a
/// corrupted row count can ask for terabytes well under the row cap.
const MAX_PRERESERVE_VALUES: u64 = 1 << 24;

const TAG_ADAGRAD: u8 = 1;
const TAG_ADAM: u8 = 2;
const TAG_FTRL: u8 = 3;

/// The slot a lookup returns for an id that has no row yet (admission pending): it
/// reads the all-zero default row and receives no update.
pub const NO_ROW: u32 = u32::MAX;

/// Admission and expiry of rows; everything off by default.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Lifecycle {
    /// A new id gets a row only once training has looked it up this many times (counted
    /// in a count-min sketch, so a count may be overestimated, never under); until then
    /// it reads the default all-zero row. 0 or 1: a row at first sight.
    pub admit_after: u32,
    /// [`EmbeddingTable::evict`] removes rows not looked up in the last `ttl_steps`
    /// steps (0: never).
    pub ttl_steps: u64,
    /// [`EmbeddingTable::evict`] removes the least frequently looked-up rows (ties: the
    /// least recently) beyond this many (0: no cap).
    pub max_rows: u64,
}

impl Lifecycle {
    fn tracks_rows(&self) -> bool {
        self.ttl_steps > 0 || self.max_rows > 0
    }
}

/// Count-min sketch over ids: `DEPTH` rows of saturating u16 counters.
#[derive(Clone, Debug)]
struct CountMin {
    counters: Vec<u16>,
    width_bits: u32,
}

const SKETCH_DEPTH: usize = 4;
const SKETCH_WIDTH_BITS: u32 = 18;

impl CountMin {
    fn new() -> Self {
        CountMin {
            counters: vec![0; SKETCH_DEPTH << SKETCH_WIDTH_BITS],
            width_bits: SKETCH_WIDTH_BITS,
        }
    }

    /// Counts one more sighting of `id` and returns its estimated count.
    fn add(&mut self, id: u64) -> u32 {
        let mut est = u16::MAX;
        for d in 0..SKETCH_DEPTH {
            // Ids are already hashes; a multiply per row decorrelates the rows.
            let h = (id ^ (d as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xD6E8_FEB8_6659_FD93);
            let at = (d << self.width_bits) + (h >> (64 - self.width_bits)) as usize;
            let c = &mut self.counters[at];
            *c = c.saturating_add(1);
            est = est.min(*c);
        }
        u32::from(est)
    }
}

/// Per-row bookkeeping for expiry and the row cap.
#[derive(Clone, Debug, Default)]
struct RowMeta {
    /// Slot → id.
    ids: Vec<u64>,
    /// Slot → step of the last lookup.
    last: Vec<u64>,
    /// Slot → lookups.
    freq: Vec<u32>,
}

/// Lifecycle counters of a table since it was created or loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifecycleStats {
    /// Rows created by admission (ids that reached `admit_after`).
    pub admitted: u64,
    /// Lookups of ids still waiting for admission (they read the default row).
    pub pending_lookups: u64,
    /// Rows removed by [`EmbeddingTable::evict`].
    pub evicted: u64,
}

/// Configuration of one embedding table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSpec {
    pub name: String,
    pub dim: usize,
    /// New rows start uniform in `[-init_scale, init_scale)`.
    pub init_scale: f32,
    pub optimizer: RowOptimizer,
    /// Keys row initialisation together with the id.
    pub seed: u64,
    /// Admission and expiry (off by default).
    pub lifecycle: Lifecycle,
}

impl TableSpec {
    /// A spec with the defaults: init scale 0.05, row-wise Adagrad, seed 0.
    pub fn new(name: impl Into<String>, dim: usize) -> Self {
        TableSpec {
            name: name.into(),
            dim,
            init_scale: 0.05,
            optimizer: RowOptimizer::default_adagrad(),
            seed: 0,
            lifecycle: Lifecycle::default(),
        }
    }
}

/// Hashed embedding table. Rows are created on first sight during training and only
/// rows passed to [`EmbeddingTable::apply_gradients`] are ever modified.
#[derive(Clone, Debug)]
pub struct EmbeddingTable {
    spec: TableSpec,
    state_width: usize,
    index: IdIndex,
    /// `slot · dim ..` is the row of a slot.
    rows: Vec<f32>,
    /// `slot · state_width ..` is the optimizer state of a slot.
    state: Vec<f32>,
    /// Scratch for `apply_gradients`: (slot, batch position) sorted to group duplicates.
    order: Vec<(u32, u32)>,
    /// Scratch for `apply_gradients`: the summed gradient of a duplicated slot.
    grad_sum: Vec<f32>,
    /// Admission counts (when `admit_after > 1`).
    sketch: Option<CountMin>,
    /// Expiry / cap bookkeeping (when `ttl_steps` or `max_rows` is set).
    meta: Option<RowMeta>,
    /// The current step, set by [`EmbeddingTable::set_clock`].
    now: u64,
    stats: LifecycleStats,
}

/// Makes room for `add` more floats, growing large slabs by a quarter rather than
/// doubling them: a table of millions of rows then carries at most 25 % slack (doubling
/// leaves up to 100 %), at the price of more, still amortised, copies.
fn grow(v: &mut Vec<f32>, add: usize) {
    if v.len() + add > v.capacity() {
        v.reserve_exact((v.len() / 4).max(add * 1024));
    }
}

impl EmbeddingTable {
    /// An empty table. Errors on a zero or absurd dim or a non-finite init scale.
    pub fn new(spec: TableSpec) -> Result<Self, String> {
        if spec.dim == 0 || spec.dim > MAX_DIM {
            return Err(format!(
                "embedding table '{}': dim {} must be in 1..={MAX_DIM}",
                spec.name, spec.dim
            ));
        }
        if !spec.init_scale.is_finite() || spec.init_scale < 0.0 {
            return Err(format!(
                "embedding table '{}': init_scale {} must be finite and non-negative",
                spec.name, spec.init_scale
            ));
        }
        spec.optimizer
            .validate()
            .map_err(|e| format!("embedding table '{}': {e}", spec.name))?;
        Ok(EmbeddingTable {
            state_width: spec.optimizer.state_width(spec.dim),
            grad_sum: Vec::with_capacity(spec.dim),
            sketch: (spec.lifecycle.admit_after > 1).then(CountMin::new),
            meta: spec.lifecycle.tracks_rows().then(RowMeta::default),
            now: 0,
            stats: LifecycleStats::default(),
            spec,
            index: IdIndex::default(),
            rows: Vec::new(),
            state: Vec::new(),
            order: Vec::new(),
        })
    }

    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    pub fn dim(&self) -> usize {
        self.spec.dim
    }
    /// Floats of optimizer state per row.
    pub fn state_width(&self) -> usize {
        self.state_width
    }

    /// Number of rows (distinct ids seen in training or loaded).
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Approximate heap bytes: row slab, state slab, hash map buckets, lifecycle
    /// bookkeeping and scratch.
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        (self.rows.capacity() + self.grad_sum.capacity()) * f
            + self.state_bytes()
            + self.index_bytes()
            + self.order.capacity() * std::mem::size_of::<(u32, u32)>()
    }

    /// Heap bytes of the rows' optimizer state.
    pub fn state_bytes(&self) -> usize {
        self.state.capacity() * std::mem::size_of::<f32>()
    }

    /// Heap bytes of the id → row index, the admission sketch and the expiry
    /// bookkeeping.
    pub fn index_bytes(&self) -> usize {
        self.index.bytes()
            + self.sketch.as_ref().map_or(0, |s| s.counters.len() * 2)
            + self.meta.as_ref().map_or(0, |m| {
                m.ids.capacity() * 8 + m.last.capacity() * 8 + m.freq.capacity() * 4
            })
    }

    /// Replaces the row optimiser's hyper-parameters (a warm start under a new config:
    /// its learning rate, not the trained model's). The rows keep their optimizer state,
    /// so the optimiser must be of the same kind.
    pub fn set_optimizer(&mut self, optimizer: RowOptimizer) -> Result<(), String> {
        if std::mem::discriminant(&optimizer) != std::mem::discriminant(&self.spec.optimizer) {
            return Err(format!(
                "embedding table '{}': its rows carry {:?} state; the config asks for {optimizer:?}",
                self.spec.name, self.spec.optimizer
            ));
        }
        optimizer
            .validate()
            .map_err(|e| format!("embedding table '{}': {e}", self.spec.name))?;
        self.spec.optimizer = optimizer;
        Ok(())
    }

    /// Replaces the admission and expiry settings (a warm start under a new config).
    /// Existing rows count as seen at the current clock, zero times.
    pub fn set_lifecycle(&mut self, lifecycle: Lifecycle) {
        self.sketch = match (lifecycle.admit_after > 1, self.sketch.take()) {
            (true, Some(s)) => Some(s),
            (true, None) => Some(CountMin::new()),
            (false, _) => None,
        };
        self.meta = lifecycle.tracks_rows().then(|| {
            let mut ids = vec![0; self.index.len()];
            for (id, slot) in self.index.iter() {
                ids[slot as usize] = id;
            }
            RowMeta {
                last: vec![self.now; ids.len()],
                freq: vec![0; ids.len()],
                ids,
            }
        });
        self.spec.lifecycle = lifecycle;
    }

    /// Sets the current step (for expiry): lookups after this are stamped with it.
    pub fn set_clock(&mut self, step: u64) {
        self.now = step;
    }

    /// Admission and eviction counters.
    pub fn lifecycle_stats(&self) -> LifecycleStats {
        self.stats
    }

    /// Removes expired rows (not looked up in `ttl_steps`) and, over `max_rows`, the
    /// least frequently used (ties: least recently used); returns how many. Call between
    /// steps: slots of surviving rows may change, so slots from an earlier lookup are
    /// invalid afterwards.
    pub fn evict(&mut self) -> usize {
        let Some(meta) = &self.meta else { return 0 };
        let (ttl, cap) = (self.spec.lifecycle.ttl_steps, self.spec.lifecycle.max_rows);
        let n = meta.ids.len();
        let mut doomed = vec![false; n];
        let mut count = 0;
        if ttl > 0 {
            for (slot, &last) in meta.last.iter().enumerate() {
                if self.now.saturating_sub(last) > ttl {
                    doomed[slot] = true;
                    count += 1;
                }
            }
        }
        if cap > 0 && (n - count) as u64 > cap {
            let excess = (n - count) - cap as usize;
            let mut alive: Vec<u32> = (0..n as u32).filter(|&s| !doomed[s as usize]).collect();
            // Least frequent first; among equals the least recent, then the lower id
            // (a total order, so the choice does not depend on the slab layout).
            let key = |s: &u32| {
                let s = *s as usize;
                (meta.freq[s], meta.last[s], meta.ids[s])
            };
            alive.select_nth_unstable_by_key(excess - 1, key);
            for &s in &alive[..excess] {
                doomed[s as usize] = true;
            }
            count += excess;
        }
        for slot in (0..n).rev().filter(|&s| doomed[s]) {
            self.remove_slot(slot);
        }
        self.stats.evicted += count as u64;
        count
    }

    /// Removes one row by moving the last row into its slot.
    fn remove_slot(&mut self, slot: usize) {
        let (dim, sw) = (self.spec.dim, self.state_width);
        let meta = self.meta.as_mut().expect("eviction bookkeeping");
        let last = meta.ids.len() - 1;
        self.index.remove(meta.ids[slot]);
        if slot != last {
            self.rows
                .copy_within(last * dim..(last + 1) * dim, slot * dim);
            self.state
                .copy_within(last * sw..(last + 1) * sw, slot * sw);
            meta.ids[slot] = meta.ids[last];
            meta.last[slot] = meta.last[last];
            meta.freq[slot] = meta.freq[last];
            self.index.insert(meta.ids[slot], slot as u32);
        }
        meta.ids.pop();
        meta.last.pop();
        meta.freq.pop();
        self.rows.truncate(last * dim);
        self.state.truncate(last * sw);
    }

    /// Slot of every id, creating (and initialising) rows for ids seen for the first
    /// time. `slots` is cleared and refilled, one slot per id.
    pub fn lookup_train(&mut self, ids: &[u64], slots: &mut Vec<u32>) {
        let EmbeddingTable {
            spec,
            state_width,
            index,
            rows,
            state,
            sketch,
            meta,
            now,
            stats,
            ..
        } = self;
        let dim = spec.dim;
        slots.clear();
        slots.reserve(ids.len());
        const AHEAD: usize = 8;
        for (i, &id) in ids.iter().enumerate() {
            if let Some(&next) = ids.get(i + AHEAD) {
                index.prefetch(next);
            }
            let slot = match index.get(id) {
                Some(slot) => slot,
                None => {
                    if let Some(sk) = sketch.as_mut() {
                        if sk.add(id) < spec.lifecycle.admit_after {
                            stats.pending_lookups += 1;
                            slots.push(NO_ROW);
                            continue;
                        }
                        stats.admitted += 1;
                    }
                    // 2^32 − 1 rows (NO_ROW is reserved) is far beyond any memory this
                    // table could hold.
                    let slot = u32::try_from(index.len())
                        .ok()
                        .filter(|&s| s != NO_ROW)
                        .expect("embedding table exceeds 2^32 − 1 rows");
                    let start = rows.len();
                    grow(rows, dim);
                    rows.resize(start + dim, 0.0);
                    init_row(spec.seed, id, spec.init_scale, &mut rows[start..]);
                    let s0 = state.len();
                    grow(state, *state_width);
                    state.resize(s0 + *state_width, 0.0);
                    spec.optimizer
                        .init_state(&mut state[s0..], &rows[start..start + dim]);
                    index.insert(id, slot);
                    if let Some(m) = meta.as_mut() {
                        m.ids.push(id);
                        m.last.push(*now);
                        m.freq.push(0);
                    }
                    slot
                }
            };
            if let Some(m) = meta.as_mut() {
                let s = slot as usize;
                m.last[s] = *now;
                m.freq[s] = m.freq[s].saturating_add(1);
            }
            slots.push(slot);
        }
    }

    /// Slot of an id if it has a row; never creates one. Callers treat `None` as the
    /// default all-zero row.
    #[inline]
    pub fn lookup_eval(&self, id: u64) -> Option<u32> {
        self.index.get(id)
    }

    /// Starts fetching what a lookup of `id` will read (a hint, for batches: issued a
    /// few ids ahead, the cache misses of several lookups overlap).
    #[inline]
    pub fn prefetch(&self, id: u64) {
        self.index.prefetch(id);
    }

    /// The row of a slot returned by a lookup.
    #[inline]
    pub fn row(&self, slot: u32) -> &[f32] {
        let d = self.spec.dim;
        &self.rows[slot as usize * d..(slot as usize + 1) * d]
    }

    /// Optimizer state of a slot (Adagrad: `[acc]`; Adam: `m` then `v`).
    #[inline]
    pub fn row_state(&self, slot: u32) -> &[f32] {
        let w = self.state_width;
        &self.state[slot as usize * w..(slot as usize + 1) * w]
    }

    /// Updates the rows of `slots` with their gradients (`grads` is `slots.len() × dim`,
    /// row-major). Gradients of repeated slots are summed first, in batch order, and each
    /// distinct row then gets exactly one optimizer update. `step` is the 1-based global
    /// step (Adam's bias correction).
    ///
    /// Panics if `grads` has the wrong length or a slot is not in this table: both mean
    /// the caller mixed up buffers, not that the data is bad.
    pub fn apply_gradients(&mut self, slots: &[u32], grads: &[f32], step: u64) {
        // Row updates in the version compiled for this CPU (same bits on every path).
        mfh_cpu::dispatch!(mfh_cpu::path(), self.apply_gradients_on(slots, grads, step))
    }

    #[inline(always)]
    fn apply_gradients_on(&mut self, slots: &[u32], grads: &[f32], step: u64) {
        let dim = self.spec.dim;
        assert_eq!(
            grads.len(),
            slots.len() * dim,
            "apply_gradients on '{}': {} grads for {} slots of dim {dim}",
            self.spec.name,
            grads.len(),
            slots.len()
        );
        assert!(
            u32::try_from(slots.len()).is_ok(),
            "apply_gradients: batch of 2^32 or more rows"
        );
        let n_rows = self.len();
        let step_size = self.spec.optimizer.step_size(step);
        let EmbeddingTable {
            spec,
            state_width,
            rows,
            state,
            order,
            grad_sum,
            ..
        } = self;
        let sw = *state_width;

        // Sorting (slot, position) groups duplicates and, within a group, keeps batch
        // order, so sums are reproducible; it also walks the slab in memory order.
        order.clear();
        order.extend(slots.iter().enumerate().map(|(p, &s)| (s, p as u32)));
        order.sort_unstable();

        let mut i = 0;
        while i < order.len() {
            let slot = order[i].0;
            if slot == NO_ROW {
                // Pending ids sort last; they have no row to update.
                break;
            }
            assert!(
                (slot as usize) < n_rows,
                "apply_gradients on '{}': slot {slot} but the table has {n_rows} rows",
                spec.name
            );
            let mut j = i + 1;
            while j < order.len() && order[j].0 == slot {
                j += 1;
            }
            let grad_of = |k: usize| {
                let p = order[k].1 as usize;
                &grads[p * dim..(p + 1) * dim]
            };
            let g: &[f32] = if j - i == 1 {
                grad_of(i)
            } else {
                grad_sum.clear();
                grad_sum.extend_from_slice(grad_of(i));
                for k in i + 1..j {
                    for (acc, g) in grad_sum.iter_mut().zip(grad_of(k)) {
                        *acc += g;
                    }
                }
                grad_sum
            };
            let s = slot as usize;
            spec.optimizer.update_row(
                step_size,
                &mut rows[s * dim..(s + 1) * dim],
                &mut state[s * sw..(s + 1) * sw],
                g,
            );
            i = j;
        }
    }

    /// Every id with a row and its slot, in no particular order (for moving rows between
    /// shards of a distributed table).
    pub fn ids(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.index.iter()
    }

    /// Every `(slot, id)`, in slot (row) order: how the tables are listed outside mfh
    /// (the ONNX export's row maps, the Python package's embeddings and safetensors).
    pub fn slots_in_order(&self) -> Vec<(u32, u64)> {
        let mut ids: Vec<(u32, u64)> = self.ids().map(|(id, slot)| (slot, id)).collect();
        ids.sort_unstable();
        ids
    }

    /// Sets the row of `id` and its optimizer state, creating the row if needed (for
    /// assembling a table from the shards of a distributed one).
    ///
    /// Panics if `row` or `state` has the wrong width.
    pub fn insert_row(&mut self, id: u64, row: &[f32], state: &[f32]) {
        let (dim, sw) = (self.spec.dim, self.state_width);
        assert!(
            row.len() == dim && state.len() == sw,
            "insert_row: wrong width"
        );
        let slot = match self.index.get(id) {
            Some(s) => s as usize,
            None => {
                let s = self.index.len();
                self.index.insert(id, s as u32);
                self.rows.resize((s + 1) * dim, 0.0);
                self.state.resize((s + 1) * sw, 0.0);
                if let Some(m) = self.meta.as_mut() {
                    m.ids.push(id);
                    m.last.push(self.now);
                    m.freq.push(0);
                }
                s
            }
        };
        self.rows[slot * dim..(slot + 1) * dim].copy_from_slice(row);
        self.state[slot * sw..(slot + 1) * sw].copy_from_slice(state);
    }

    /// Raw row slab, for finite-difference tests that perturb single values.
    #[cfg(test)]
    pub(crate) fn rows_mut_for_test(&mut self) -> &mut [f32] {
        &mut self.rows
    }

    /// Streams the table: header, then every row in ascending id order, then an
    /// xxh3-64 checksum of all preceding bytes. All values little-endian.
    pub fn save(&self, w: &mut dyn Write) -> io::Result<()> {
        let dim = self.spec.dim;
        let sw = self.state_width;
        let mut enc = Encoder::new(w);
        enc.bytes(&MAGIC);
        enc.u32(VERSION);
        enc.str(&self.spec.name)?;
        // `new` caps dim at MAX_DIM, so it fits in u32.
        enc.u32(dim as u32);
        enc.f32(self.spec.init_scale);
        enc.u64(self.spec.seed);
        match self.spec.optimizer {
            RowOptimizer::Adagrad {
                lr,
                eps,
                initial_accumulator,
            } => {
                enc.u8(TAG_ADAGRAD);
                enc.f32s(&[lr, eps, initial_accumulator]);
            }
            RowOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                enc.u8(TAG_ADAM);
                enc.f32s(&[lr, beta1, beta2, eps]);
            }
            RowOptimizer::Ftrl {
                alpha,
                beta,
                l1,
                l2,
            } => {
                enc.u8(TAG_FTRL);
                enc.f32s(&[alpha, beta, l1, l2]);
            }
        }
        let lc = &self.spec.lifecycle;
        enc.u32(lc.admit_after);
        enc.u64(lc.ttl_steps);
        enc.u64(lc.max_rows);
        enc.u32(sw as u32);
        enc.u64(self.len() as u64);

        // Ascending id order makes the file independent of insertion history.
        let mut by_id: Vec<(u64, u32)> = self.index.iter().collect();
        by_id.sort_unstable();
        for (id, slot) in by_id {
            enc.u64(id);
            enc.f32s(self.row(slot));
            enc.f32s(self.row_state(slot));
            enc.maybe_flush()?;
        }
        enc.finish()
    }

    /// Reads a table written by [`EmbeddingTable::save`], checking magic, version,
    /// header consistency and the checksum. Reads exactly the saved bytes, so tables
    /// can be concatenated; wrap files in a `BufReader`.
    pub fn load(r: &mut dyn Read) -> Result<EmbeddingTable, String> {
        Self::read_rows(r, None)
    }

    /// [`EmbeddingTable::load`], keeping only the rows whose id passes `keep` (moving a
    /// distributed table's rows to other shards on load). Rows are read one at a time, so
    /// those left out are never held; every row is still checked (order, checksum).
    pub fn load_filtered(
        r: &mut dyn Read,
        keep: &mut dyn FnMut(u64) -> bool,
    ) -> Result<EmbeddingTable, String> {
        Self::read_rows(r, Some(keep))
    }

    fn read_rows(
        r: &mut dyn Read,
        mut keep: Option<&mut dyn FnMut(u64) -> bool>,
    ) -> Result<EmbeddingTable, String> {
        let mut dec = Decoder::new(r, "embedding table");
        let mut magic = [0u8; 8];
        dec.bytes(&mut magic, "magic")?;
        if magic != MAGIC {
            return Err(format!(
                "not an embedding table file: magic {:?} != expected {:?}",
                String::from_utf8_lossy(&magic),
                String::from_utf8_lossy(&MAGIC)
            ));
        }
        let version = dec.u32("version")?;
        if version != VERSION && version != 1 {
            return Err(format!(
                "embedding table: unsupported format version {version} (this build reads {VERSION})"
            ));
        }
        let name = dec.str("name", MAX_NAME)?;
        dec.set_what(format!("embedding table '{name}'"));
        let dim = dec.u32("dim")? as usize;
        if dim == 0 || dim > MAX_DIM {
            return Err(format!(
                "{}: dim {dim} out of range 1..={MAX_DIM} (corrupted file?)",
                dec.what()
            ));
        }
        let init_scale = dec.f32("init_scale")?;
        let seed = dec.u64("seed")?;
        let optimizer = match dec.u8("optimizer tag")? {
            TAG_ADAGRAD => RowOptimizer::Adagrad {
                lr: dec.f32("adagrad lr")?,
                eps: dec.f32("adagrad eps")?,
                initial_accumulator: dec.f32("adagrad initial_accumulator")?,
            },
            TAG_ADAM => RowOptimizer::Adam {
                lr: dec.f32("adam lr")?,
                beta1: dec.f32("adam beta1")?,
                beta2: dec.f32("adam beta2")?,
                eps: dec.f32("adam eps")?,
            },
            TAG_FTRL if version >= 2 => RowOptimizer::Ftrl {
                alpha: dec.f32("ftrl alpha")?,
                beta: dec.f32("ftrl beta")?,
                l1: dec.f32("ftrl l1")?,
                l2: dec.f32("ftrl l2")?,
            },
            tag => {
                return Err(format!(
                    "{}: unknown optimizer tag {tag} (expected {TAG_ADAGRAD} = Adagrad, \
                     {TAG_ADAM} = Adam or {TAG_FTRL} = FTRL)",
                    dec.what()
                ))
            }
        };
        let lifecycle = if version >= 2 {
            Lifecycle {
                admit_after: dec.u32("admit_after")?,
                ttl_steps: dec.u64("ttl_steps")?,
                max_rows: dec.u64("max_rows")?,
            }
        } else {
            Lifecycle::default()
        };
        let sw = dec.u32("state width")? as usize;
        let expected_sw = optimizer.state_width(dim);
        if sw != expected_sw {
            return Err(format!(
                "{}: state width {sw} in file does not match {expected_sw} for {optimizer:?} \
                 with dim {dim}",
                dec.what()
            ));
        }
        let n_rows = dec.u64("row count")?;
        if n_rows > u64::from(u32::MAX) {
            return Err(format!(
                "{}: row count {n_rows} exceeds the 2^32 slot limit (corrupted file?)",
                dec.what()
            ));
        }
        let spec = TableSpec {
            name,
            dim,
            init_scale,
            optimizer,
            seed,
            lifecycle,
        };
        let mut table = EmbeddingTable::new(spec).map_err(|e| format!("loading: {e}"))?;
        // A filtered load keeps an unknown share of the rows: let the vectors grow.
        let pre = if keep.is_some() {
            0
        } else {
            n_rows
                .min(MAX_PRERESERVE_ROWS)
                .min(MAX_PRERESERVE_VALUES / (dim + sw) as u64) as usize
        };
        table.index.reserve(pre);
        table.rows.reserve(pre * dim);
        table.state.reserve(pre * sw);

        let record = 8 + 4 * (dim + sw);
        let mut buf = vec![0u8; record];
        // An out-of-order id is reported only after the checksum passes: a flipped bit
        // should be blamed on corruption, not on the writer.
        let mut order_error: Option<String> = None;
        let mut prev: Option<u64> = None;
        for k in 0..n_rows {
            dec.bytes(&mut buf, "rows")?;
            let id = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
            if order_error.is_none() && prev.is_some_and(|p| p >= id) {
                order_error = Some(format!(
                    "{}: row {k} has id {id} not above the previous id {} (ids must be \
                     strictly ascending)",
                    dec.what(),
                    prev.unwrap_or(0)
                ));
            }
            prev = Some(id);
            if keep.as_mut().is_some_and(|keep| !keep(id)) {
                continue;
            }
            let mut floats = buf[8..]
                .chunks_exact(4)
                .map(|c| f32::from_bits(u32::from_le_bytes(c.try_into().expect("4 bytes"))));
            table.rows.extend(floats.by_ref().take(dim));
            table.state.extend(floats);
            // Rows are kept in file order: the slot is the count kept so far (`k` when
            // every row is kept).
            let slot = table.index.len() as u32;
            table.index.insert(id, slot);
            if let Some(m) = table.meta.as_mut() {
                // Recency and frequency restart at load.
                m.ids.push(id);
                m.last.push(0);
                m.freq.push(0);
            }
        }
        dec.finish()?;
        if let Some(e) = order_error {
            return Err(e);
        }
        Ok(table)
    }
}
