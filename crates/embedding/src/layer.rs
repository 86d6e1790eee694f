//! Embedding layer: turns a batch of categorical ids into the dense network input and
//! routes the input's gradient back into the touched rows.

use std::io::{self, Read, Write};

use crate::codec::{Decoder, Encoder};
use crate::index::prefetch_ptr;
use crate::table::{EmbeddingTable, TableSpec, NO_ROW};

const MAGIC: [u8; 8] = *b"MFHEMBLY";
const VERSION: u32 = 1;
const MAX_NAME: usize = 1 << 16;
const MAX_COUNT: u32 = 1 << 20;

/// Divides a summed pool by its length for [`Pooling::Mean`] (an empty list stays zero).
fn finish_pool(pooling: Pooling, len: usize, dst: &mut [f32]) {
    if pooling == Pooling::Mean && len > 0 {
        let k = len as f32;
        for o in dst.iter_mut() {
            *o /= k;
        }
    }
}

/// How a multi-valued field's embeddings are combined into one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Sum,
    /// Sum divided by the number of ids; an empty list gives zeros.
    Mean,
}

/// One categorical input feature and the table it reads.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    /// Index into the layer's tables. Several fields may share a table (and its rows).
    pub table: usize,
    /// Embedding width the field expects; must equal the table's dim.
    pub dim: usize,
    /// `None` for single-valued fields, the pooling for multi-valued ones.
    pub pooling: Option<Pooling>,
}

impl FieldSpec {
    /// A single-valued field.
    pub fn single(name: impl Into<String>, table: usize, dim: usize) -> Self {
        FieldSpec {
            name: name.into(),
            table,
            dim,
            pooling: None,
        }
    }

    /// A multi-valued field pooled with `pooling`.
    pub fn multi(name: impl Into<String>, table: usize, dim: usize, pooling: Pooling) -> Self {
        FieldSpec {
            name: name.into(),
            table,
            dim,
            pooling: Some(pooling),
        }
    }
}

/// The ids of one multi-valued field for a batch: example `i` owns
/// `ids[offsets[i] as usize..offsets[i + 1] as usize]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MultiIds {
    /// `n + 1` non-decreasing offsets starting at 0 and ending at `ids.len()`.
    pub offsets: Vec<u32>,
    pub ids: Vec<u64>,
}

/// A batch of categorical ids.
#[derive(Clone, Copy, Debug)]
pub struct SparseInput<'a> {
    /// Batch size.
    pub n: usize,
    /// `n × n_single_fields`, row-major, columns in field order among single-valued fields.
    pub single: &'a [u64],
    /// One entry per multi-valued field, in field order.
    pub multi: &'a [MultiIds],
}

/// A field's position in the batch and in the output row.
#[derive(Clone, Copy, Debug)]
struct FieldLayout {
    /// Column in `SparseInput::single` or index in `SparseInput::multi`.
    input: usize,
    /// First output column.
    col: usize,
}

/// A table's fields (index, slot buffer) for one train-mode lookup pass.
type FieldSlots<'a> = Vec<(usize, &'a mut Vec<u32>)>;
/// A table with its fields, one parallel job of [`EmbeddingLayer::lookup_train_fields`].
type TableJob<'a> = (&'a mut EmbeddingTable, FieldSlots<'a>);

/// Embedding tables plus the fields that read them.
#[derive(Clone, Debug)]
pub struct EmbeddingLayer {
    tables: Vec<EmbeddingTable>,
    fields: Vec<FieldSpec>,
    layout: Vec<FieldLayout>,
    n_single: usize,
    n_multi: usize,
    width: usize,
    /// Per field: slots resolved by the last train-mode forward, kept for backward.
    slots: Vec<Vec<u32>>,
    /// Batch size of the last train-mode forward; `None` after an eval forward.
    train_batch: Option<usize>,
    /// Scratch: ids of one single-valued column.
    column_ids: Vec<u64>,
    /// Scratch per table: slots and gradients gathered from every field using it, so a
    /// row shared by two fields gets one update with the summed gradient.
    table_slots: Vec<Vec<u32>>,
    table_grads: Vec<Vec<f32>>,
    /// Eviction cadence in steps (see [`EmbeddingLayer::maintain`]).
    evict_every: u64,
}

impl EmbeddingLayer {
    /// Creates empty tables from `tables` and checks the fields against them.
    pub fn new(tables: Vec<TableSpec>, fields: Vec<FieldSpec>) -> Result<Self, String> {
        let tables = tables
            .into_iter()
            .map(EmbeddingTable::new)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_tables(tables, fields)
    }

    /// Builds a layer over existing (e.g. loaded) tables.
    pub fn from_tables(
        tables: Vec<EmbeddingTable>,
        fields: Vec<FieldSpec>,
    ) -> Result<Self, String> {
        let mut layout = Vec::with_capacity(fields.len());
        let (mut n_single, mut n_multi, mut width) = (0, 0, 0);
        for f in &fields {
            let table = tables.get(f.table).ok_or_else(|| {
                format!(
                    "field '{}' references table {} but there are only {} tables",
                    f.name,
                    f.table,
                    tables.len()
                )
            })?;
            if table.dim() != f.dim {
                return Err(format!(
                    "field '{}' has dim {} but its table '{}' has dim {}",
                    f.name,
                    f.dim,
                    table.name(),
                    table.dim()
                ));
            }
            let input = match f.pooling {
                None => {
                    n_single += 1;
                    n_single - 1
                }
                Some(_) => {
                    n_multi += 1;
                    n_multi - 1
                }
            };
            layout.push(FieldLayout { input, col: width });
            width += f.dim;
        }
        let n_tables = tables.len();
        Ok(EmbeddingLayer {
            slots: vec![Vec::new(); fields.len()],
            tables,
            fields,
            layout,
            n_single,
            n_multi,
            width,
            train_batch: None,
            column_ids: Vec::new(),
            table_slots: vec![Vec::new(); n_tables],
            table_grads: vec![Vec::new(); n_tables],
            evict_every: 0,
        })
    }

    /// Output columns written by `forward`: the sum of field dims.
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }
    /// First output column of field `f`.
    pub fn field_offset(&self, f: usize) -> usize {
        self.layout[f].col
    }
    pub fn n_single_fields(&self) -> usize {
        self.n_single
    }
    pub fn n_multi_fields(&self) -> usize {
        self.n_multi
    }
    pub fn tables(&self) -> &[EmbeddingTable] {
        &self.tables
    }
    pub fn tables_mut(&mut self) -> &mut [EmbeddingTable] {
        &mut self.tables
    }
    /// Gives every table `lifecycle` (see [`EmbeddingTable::set_lifecycle`]) and sets
    /// the eviction cadence: for a warm start under a new config.
    pub fn set_lifecycle(&mut self, lifecycle: &crate::Lifecycle, evict_every: u64) {
        for t in &mut self.tables {
            t.set_lifecycle(lifecycle.clone());
        }
        self.evict_every = evict_every;
    }

    /// Evict every this many steps in [`EmbeddingLayer::maintain`] (0: never).
    pub fn set_evict_every(&mut self, steps: u64) {
        self.evict_every = steps;
    }

    /// Sets every table's clock (lookups from now on are stamped with `step`).
    pub fn set_clock(&mut self, step: u64) {
        for t in &mut self.tables {
            t.set_clock(step);
        }
    }

    /// Between steps: at every `evict_every`-th step, each table drops its expired and
    /// over-cap rows (tables without expiry or cap do nothing). Returns the rows removed.
    /// Slots of the last forward are invalid afterwards, so call it after `backward`.
    pub fn maintain(&mut self, step: u64) -> usize {
        if self.evict_every == 0 || !step.is_multiple_of(self.evict_every) {
            return 0;
        }
        self.train_batch = None;
        use rayon::prelude::*;
        self.tables.par_iter_mut().map(EmbeddingTable::evict).sum()
    }

    /// Runs every table's eviction now (between steps); returns the rows removed.
    pub fn evict_now(&mut self) -> usize {
        self.train_batch = None;
        self.tables.iter_mut().map(EmbeddingTable::evict).sum()
    }

    /// Approximate heap bytes of all tables.
    pub fn bytes(&self) -> usize {
        self.tables.iter().map(EmbeddingTable::bytes).sum()
    }

    /// Checks a batch's shape against the fields: single-valued id count, number of
    /// multi-valued lists, and every offsets array. Readers can call this to turn a
    /// malformed batch into an error instead of the panic `forward` would raise.
    pub fn check_input(&self, input: &SparseInput) -> Result<(), String> {
        let n = input.n;
        if input.single.len() != n * self.n_single {
            return Err(format!(
                "batch of {n} with {} single-valued fields needs {} ids, got {}",
                self.n_single,
                n * self.n_single,
                input.single.len()
            ));
        }
        if input.multi.len() != self.n_multi {
            return Err(format!(
                "layer has {} multi-valued fields but the batch has {} id lists",
                self.n_multi,
                input.multi.len()
            ));
        }
        for (f, spec) in self.fields.iter().enumerate() {
            if spec.pooling.is_none() {
                continue;
            }
            let m = &input.multi[self.layout[f].input];
            if m.offsets.len() != n + 1 {
                return Err(format!(
                    "field '{}': {} offsets for a batch of {n} (need {})",
                    spec.name,
                    m.offsets.len(),
                    n + 1
                ));
            }
            if m.offsets[0] != 0 || m.offsets.windows(2).any(|w| w[0] > w[1]) {
                return Err(format!(
                    "field '{}': offsets must start at 0 and never decrease",
                    spec.name
                ));
            }
            if m.offsets[n] as usize != m.ids.len() {
                return Err(format!(
                    "field '{}': last offset {} but {} ids",
                    spec.name,
                    m.offsets[n],
                    m.ids.len()
                ));
            }
        }
        Ok(())
    }

    fn check_out(&self, what: &str, n: usize, len: usize, row_stride: usize) {
        assert!(
            row_stride >= self.width,
            "{what}: row_stride {row_stride} < embedding width {}",
            self.width
        );
        let need = if n == 0 {
            0
        } else {
            (n - 1) * row_stride + self.width
        };
        assert!(
            len >= need,
            "{what}: buffer of {len} floats, batch of {n} with stride {row_stride} needs {need}"
        );
    }

    /// Writes each example's field embeddings, concatenated in field order, to columns
    /// `0..width()` of `out[i · row_stride ..]`. In train mode unseen ids get new rows
    /// and the slots are kept for [`EmbeddingLayer::backward`]; in eval mode nothing is
    /// created and unseen ids read zeros.
    ///
    /// Panics on a malformed batch (see [`EmbeddingLayer::check_input`]) or a too-small
    /// `out`.
    pub fn forward(
        &mut self,
        input: &SparseInput,
        train: bool,
        out: &mut [f32],
        row_stride: usize,
    ) {
        if let Err(e) = self.check_input(input) {
            panic!("EmbeddingLayer::forward: {e}");
        }
        let n = input.n;
        self.check_out("EmbeddingLayer::forward", n, out.len(), row_stride);
        self.train_batch = None;
        if !train {
            self.lookup(input, out, row_stride);
            return;
        }
        self.lookup_train_fields(input);
        // Rows into the output, in row blocks over the threads (read-only from here).
        let slots = &self.slots;
        self.gather(
            input,
            out,
            row_stride,
            |f, pos, _| {
                let s = slots[f][pos];
                (s != NO_ROW).then_some(s)
            },
            |_, _| {},
        );
        self.train_batch = Some(n);
    }

    /// Eval-mode [`EmbeddingLayer::forward`] through a shared reference: every field's
    /// embedding of every row, unseen ids reading zeros; nothing is created or kept, so
    /// several scorers may read one layer at once.
    ///
    /// Panics as `forward` does on a malformed batch or a too-small `out`.
    pub fn lookup(&self, input: &SparseInput, out: &mut [f32], row_stride: usize) {
        if let Err(e) = self.check_input(input) {
            panic!("EmbeddingLayer::lookup: {e}");
        }
        self.check_out("EmbeddingLayer::lookup", input.n, out.len(), row_stride);
        self.gather(
            input,
            out,
            row_stride,
            |f, _, id| self.tables[self.fields[f].table].lookup_eval(id),
            |f, id| self.tables[self.fields[f].table].prefetch(id),
        );
    }

    /// Train-mode lookups of every field (rows created or admitted as the lifecycle
    /// says), into `slots`. Tables are independent, so they run in parallel, each
    /// table's fields in field order, as one thread would: the result does not depend
    /// on the thread count.
    fn lookup_train_fields(&mut self, input: &SparseInput) {
        let n = input.n;
        let EmbeddingLayer {
            tables,
            fields,
            layout,
            n_single,
            slots,
            column_ids,
            ..
        } = self;
        let n_single = *n_single;
        // Each table with its fields' slot buffers (every field belongs to one table).
        let mut slot_refs: Vec<Option<&mut Vec<u32>>> = slots.iter_mut().map(Some).collect();
        let mut jobs: Vec<TableJob> = tables.iter_mut().map(|t| (t, Vec::new())).collect();
        for (f, field) in fields.iter().enumerate() {
            if let Some(s) = slot_refs[f].take() {
                jobs[field.table].1.push((f, s));
            }
        }
        let lookup =
            |table: &mut EmbeddingTable, fs: Vec<(usize, &mut Vec<u32>)>, ids: &mut Vec<u64>| {
                for (f, s) in fs {
                    let k = layout[f].input;
                    match fields[f].pooling {
                        None => {
                            ids.clear();
                            ids.extend((0..n).map(|i| input.single[i * n_single + k]));
                            table.lookup_train(ids, s);
                        }
                        Some(_) => table.lookup_train(&input.multi[k].ids, s),
                    }
                }
            };
        let busy = jobs.iter().filter(|(_, fs)| !fs.is_empty()).count();
        if rayon::current_num_threads() <= 1 || busy < 2 || n * fields.len() < 1 << 13 {
            for (table, fs) in jobs {
                lookup(table, fs, column_ids);
            }
        } else {
            use rayon::prelude::*;
            jobs.into_par_iter()
                .for_each_init(Vec::new, |ids, (table, fs)| lookup(table, fs, ids));
        }
    }

    /// Writes every field's embedding of every row into `out`, in row blocks over
    /// rayon's threads (each row written by one thread, so the result does not depend on
    /// the split). `slot_of(field, position, id)` is the row of an id occurrence: its
    /// position is the row index for a single-valued field, the index into the field's
    /// id list for a multi-valued one; `None` reads zeros. `hint(field, id)` is called a
    /// few rows before `slot_of` for the same single-valued id (to start its fetch).
    fn gather(
        &self,
        input: &SparseInput,
        out: &mut [f32],
        row_stride: usize,
        slot_of: impl Fn(usize, usize, u64) -> Option<u32> + Sync,
        hint: impl Fn(usize, u64) + Sync,
    ) {
        let n = input.n;
        let threads = rayon::current_num_threads();
        // Row copies and pooled sums in the version compiled for this CPU.
        let path = mfh_cpu::path();
        if threads <= 1 || n * self.fields.len() < 1 << 13 || row_stride == 0 {
            mfh_cpu::dispatch!(
                path,
                self.gather_rows(input, 0, n, out, row_stride, &slot_of, &hint)
            );
            return;
        }
        use rayon::prelude::*;
        let chunk = n.div_ceil(threads);
        let used = (n - 1) * row_stride + self.width;
        out[..used]
            .par_chunks_mut(chunk * row_stride)
            .enumerate()
            .for_each(|(b, block)| {
                let lo = b * chunk;
                let len = chunk.min(n - lo);
                mfh_cpu::dispatch!(
                    path,
                    self.gather_rows(input, lo, len, block, row_stride, &slot_of, &hint)
                )
            });
    }

    /// [`Self::gather`] for rows `lo..lo + len` into `out` (whose row 0 is row `lo`).
    #[allow(clippy::too_many_arguments)] // the gather's row range plus its two lookups
    #[inline(always)]
    fn gather_rows(
        &self,
        input: &SparseInput,
        lo: usize,
        len: usize,
        out: &mut [f32],
        row_stride: usize,
        slot_of: &impl Fn(usize, usize, u64) -> Option<u32>,
        hint: &impl Fn(usize, u64),
    ) {
        for (f, field) in self.fields.iter().enumerate() {
            let table = &self.tables[field.table];
            let FieldLayout { input: k, col } = self.layout[f];
            let dim = field.dim;
            let Some(pooling) = field.pooling else {
                // Single-valued: the slots of a chunk of rows first (independent lookups
                // the CPU overlaps), then the rows, each fetched a few rows ahead.
                const CHUNK: usize = 64;
                const AHEAD: usize = 8;
                let mut slots = [None; CHUNK];
                let id_of = |i: usize| input.single[i * self.n_single + k];
                for c0 in (0..len).step_by(CHUNK) {
                    let cl = CHUNK.min(len - c0);
                    for (j, s) in slots[..cl].iter_mut().enumerate() {
                        let i = lo + c0 + j;
                        if i + AHEAD < lo + len {
                            hint(f, id_of(i + AHEAD));
                        }
                        *s = slot_of(f, i, id_of(i));
                    }
                    for j in 0..cl {
                        if let Some(Some(s)) = slots[..cl].get(j + AHEAD) {
                            prefetch_ptr(table.row(*s).as_ptr().cast());
                        }
                        let dst = &mut out[(c0 + j) * row_stride + col..][..dim];
                        match slots[j] {
                            Some(s) => copy_row(dst, table.row(s)),
                            None => dst.fill(0.0),
                        }
                    }
                }
                continue;
            };
            for r in 0..len {
                let i = lo + r;
                let dst = &mut out[r * row_stride + col..][..dim];
                let m = &input.multi[k];
                let (a, b) = (m.offsets[i] as usize, m.offsets[i + 1] as usize);
                dst.fill(0.0);
                for (pos, &id) in (a..b).zip(&m.ids[a..b]) {
                    if let Some(s) = slot_of(f, pos, id) {
                        for (o, v) in dst.iter_mut().zip(table.row(s)) {
                            *o += v;
                        }
                    }
                }
                finish_pool(pooling, b - a, dst);
            }
        }
    }

    /// Gathers the slot and gradient of every id occurrence of table `t`'s fields in the
    /// batch into `t_slots` and `t_grads`, field by field in order.
    #[allow(clippy::too_many_arguments)] // the layer's parts that one table's task reads
    fn collect_table(
        t: usize,
        fields: &[FieldSpec],
        layout: &[FieldLayout],
        slots: &[Vec<u32>],
        input: &SparseInput,
        d_out: &[f32],
        row_stride: usize,
        t_slots: &mut Vec<u32>,
        t_grads: &mut Vec<f32>,
    ) {
        let n = input.n;
        t_slots.clear();
        t_grads.clear();
        for (f, field) in fields.iter().enumerate().filter(|(_, fl)| fl.table == t) {
            let FieldLayout { input: k, col } = layout[f];
            let dim = field.dim;
            match field.pooling {
                None => {
                    t_slots.extend_from_slice(&slots[f]);
                    for i in 0..n {
                        t_grads.extend_from_slice(&d_out[i * row_stride + col..][..dim]);
                    }
                }
                Some(pooling) => {
                    let m = &input.multi[k];
                    assert_eq!(
                        slots[f].len(),
                        m.ids.len(),
                        "EmbeddingLayer::backward: field '{}' has {} ids but the forward \
                         batch had {}",
                        field.name,
                        m.ids.len(),
                        slots[f].len()
                    );
                    t_slots.extend_from_slice(&slots[f]);
                    for i in 0..n {
                        let (a, b) = (m.offsets[i] as usize, m.offsets[i + 1] as usize);
                        let d = &d_out[i * row_stride + col..][..dim];
                        let k = (b - a) as f32;
                        for _ in a..b {
                            match pooling {
                                Pooling::Sum => t_grads.extend_from_slice(d),
                                Pooling::Mean => t_grads.extend(d.iter().map(|g| g / k)),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Applies the gradient of the loss w.r.t. `forward`'s output (same layout) to the
    /// rows the last train-mode forward touched; a pooled gradient reaches every id in
    /// the list (divided by the list length for Mean). Each table gets one update per
    /// distinct row, even when fields share the table. `step` is the 1-based global step.
    ///
    /// Panics if the last forward was not in train mode on a batch of the same shape.
    pub fn backward(&mut self, input: &SparseInput, d_out: &[f32], row_stride: usize, step: u64) {
        assert_eq!(
            self.train_batch,
            Some(input.n),
            "EmbeddingLayer::backward needs a train-mode forward on the same batch first"
        );
        if let Err(e) = self.check_input(input) {
            panic!("EmbeddingLayer::backward: {e}");
        }
        self.check_out("EmbeddingLayer::backward", input.n, d_out.len(), row_stride);
        // Tables are independent: one task per table gathers its fields' gradients and
        // applies them, each in its own fixed order (the result does not depend on the
        // threads).
        let EmbeddingLayer {
            fields,
            layout,
            slots,
            tables,
            table_slots,
            table_grads,
            ..
        } = self;
        use rayon::prelude::*;
        tables
            .par_iter_mut()
            .zip(table_slots.par_iter_mut())
            .zip(table_grads.par_iter_mut())
            .enumerate()
            .for_each(|(t, ((table, t_slots), t_grads))| {
                Self::collect_table(
                    t, fields, layout, slots, input, d_out, row_stride, t_slots, t_grads,
                );
                if !t_slots.is_empty() {
                    table.apply_gradients(t_slots, t_grads, step);
                }
            });
    }

    /// Streams the field list (with its own checksum) followed by every table.
    pub fn save(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut enc = Encoder::new(&mut *w);
        enc.bytes(&MAGIC);
        enc.u32(VERSION);
        enc.u32(self.tables.len() as u32);
        enc.u32(self.fields.len() as u32);
        for f in &self.fields {
            enc.str(&f.name)?;
            enc.u32(f.table as u32);
            enc.u32(f.dim as u32);
            enc.u8(match f.pooling {
                None => 0,
                Some(Pooling::Sum) => 1,
                Some(Pooling::Mean) => 2,
            });
        }
        enc.finish()?;
        for t in &self.tables {
            t.save(w)?;
        }
        Ok(())
    }

    /// Reads a layer written by [`EmbeddingLayer::save`].
    pub fn load(r: &mut dyn Read) -> Result<EmbeddingLayer, String> {
        Self::read_tables(r, None)
    }

    /// [`EmbeddingLayer::load`], keeping only the rows for which `keep(table, id)` holds
    /// (re-sharding a distributed layer on load); see [`EmbeddingTable::load_filtered`].
    pub fn load_filtered(
        r: &mut dyn Read,
        keep: &mut dyn FnMut(usize, u64) -> bool,
    ) -> Result<EmbeddingLayer, String> {
        Self::read_tables(r, Some(keep))
    }

    fn read_tables(
        r: &mut dyn Read,
        mut keep: Option<&mut dyn FnMut(usize, u64) -> bool>,
    ) -> Result<EmbeddingLayer, String> {
        let mut dec = Decoder::new(&mut *r, "embedding layer");
        let mut magic = [0u8; 8];
        dec.bytes(&mut magic, "magic")?;
        if magic != MAGIC {
            return Err(format!(
                "not an embedding layer file: magic {:?} != expected {:?}",
                String::from_utf8_lossy(&magic),
                String::from_utf8_lossy(&MAGIC)
            ));
        }
        let version = dec.u32("version")?;
        if version != VERSION {
            return Err(format!(
                "embedding layer: unsupported format version {version} (this build reads {VERSION})"
            ));
        }
        let n_tables = dec.u32("table count")?;
        let n_fields = dec.u32("field count")?;
        if n_tables > MAX_COUNT || n_fields > MAX_COUNT {
            return Err(format!(
                "embedding layer: {n_tables} tables / {n_fields} fields is implausible (corrupted file?)"
            ));
        }
        let mut fields = Vec::with_capacity(n_fields as usize);
        for _ in 0..n_fields {
            let name = dec.str("field name", MAX_NAME)?;
            let table = dec.u32("field table")? as usize;
            let dim = dec.u32("field dim")? as usize;
            let pooling = match dec.u8("field pooling")? {
                0 => None,
                1 => Some(Pooling::Sum),
                2 => Some(Pooling::Mean),
                p => {
                    return Err(format!(
                        "embedding layer: field '{name}' has unknown pooling tag {p}"
                    ))
                }
            };
            fields.push(FieldSpec {
                name,
                table,
                dim,
                pooling,
            });
        }
        dec.finish()?;
        let tables = (0..n_tables as usize)
            .map(|t| match keep.as_mut() {
                None => EmbeddingTable::load(&mut *r),
                Some(keep) => EmbeddingTable::load_filtered(&mut *r, &mut |id| keep(t, id)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_tables(tables, fields).map_err(|e| format!("embedding layer: {e}"))
    }
}

/// `dst.copy_from_slice(src)`, inlined for 16-wide rows instead of a call to `memcpy`.
#[inline]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (
        <&mut [f32; 16]>::try_from(&mut *dst),
        <&[f32; 16]>::try_from(src),
    ) {
        *d = *s;
        return;
    }
    dst.copy_from_slice(src);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quadratic_loss(out: &[f32], target: &[f32]) -> f64 {
        out.iter()
            .zip(target)
            .map(|(&o, &t)| 0.5 * (o as f64 - t as f64).powi(2))
            .sum()
    }

    /// The gradient `backward` would apply to each row matches a central finite
    /// difference of `forward` under a quadratic loss, for single, Sum and Mean fields
    /// sharing one table (so an id can appear in several places).
    #[test]
    fn backward_gradient_matches_finite_difference() {
        let dim = 3;
        let mut spec = TableSpec::new("shared", dim);
        spec.init_scale = 0.5;
        let mut layer = EmbeddingLayer::new(
            vec![spec],
            vec![
                FieldSpec::single("user", 0, dim),
                FieldSpec::multi("hist_sum", 0, dim, Pooling::Sum),
                FieldSpec::multi("hist_mean", 0, dim, Pooling::Mean),
            ],
        )
        .unwrap();
        let single = [1u64, 2, 3];
        let multi = [
            MultiIds {
                offsets: vec![0, 2, 2, 5],
                ids: vec![2, 4, 1, 1, 5],
            },
            MultiIds {
                offsets: vec![0, 3, 4, 6],
                ids: vec![4, 4, 1, 6, 2, 3],
            },
        ];
        let input = SparseInput {
            n: 3,
            single: &single,
            multi: &multi,
        };
        let stride = layer.width() + 2;
        let mut out = vec![0.0f32; 3 * stride];
        layer.forward(&input, true, &mut out, stride);
        let target: Vec<f32> = (0..out.len()).map(|i| (i as f32 * 0.37).sin()).collect();
        // Columns past width() belong to the caller: zero gradient there.
        let mut d_out: Vec<f32> = out.iter().zip(&target).map(|(o, t)| o - t).collect();
        for i in 0..3 {
            d_out[i * stride + layer.width()..(i + 1) * stride].fill(0.0);
        }
        {
            let EmbeddingLayer {
                fields,
                layout,
                slots,
                table_slots,
                table_grads,
                ..
            } = &mut layer;
            EmbeddingLayer::collect_table(
                0,
                fields,
                layout,
                slots,
                &input,
                &d_out,
                stride,
                &mut table_slots[0],
                &mut table_grads[0],
            );
        }

        let table = &layer.tables[0];
        let mut analytic = vec![0.0f64; table.len() * dim];
        for (p, &s) in layer.table_slots[0].iter().enumerate() {
            for c in 0..dim {
                analytic[s as usize * dim + c] += layer.table_grads[0][p * dim + c] as f64;
            }
        }

        let h = 1e-2f32;
        let mut probe = layer.clone();
        let mut buf = vec![0.0f32; out.len()];
        let mut loss_at = |probe: &mut EmbeddingLayer| {
            probe.forward(&input, false, &mut buf, stride);
            for i in 0..3 {
                buf[i * stride + probe.width()..(i + 1) * stride].fill(0.0);
            }
            quadratic_loss(&buf, &target)
        };
        for slot in 0..table.len() {
            for c in 0..dim {
                let idx = slot * dim + c;
                let orig = probe.tables[0].rows_mut_for_test()[idx];
                probe.tables[0].rows_mut_for_test()[idx] = orig + h;
                let up = loss_at(&mut probe);
                probe.tables[0].rows_mut_for_test()[idx] = orig - h;
                let down = loss_at(&mut probe);
                probe.tables[0].rows_mut_for_test()[idx] = orig;
                let numeric = (up - down) / (2.0 * h as f64);
                assert!(
                    (numeric - analytic[idx]).abs() < 2e-3,
                    "slot {slot} col {c}: numeric {numeric} vs analytic {}",
                    analytic[idx]
                );
            }
        }
    }
}
