//! Sharded embeddings: rank `r` owns the rows of every id with `owner(id) = r`
//! (`hash(id) mod N`), keeps their optimizer state, and serves them to the other ranks.
//!
//! Per step and per table: each rank dedups the ids of its own rows, sends each distinct
//! id to its owner (all-to-all-v), the owner looks the rows up (creating them in train
//! mode) and sends them back (all-to-all-v); the rank then assembles the network input as
//! [`EmbeddingLayer::forward`] would. Backward: each rank sums the gradient of every
//! distinct id over its rows and sends it to the owner, which applies all ranks'
//! gradients in one [`EmbeddingTable::apply_gradients`] call, in rank order: one update
//! per distinct row, the ranks' partial sums summed in a fixed order.

use crate::comm::Comm;
use mfh_embedding::{EmbeddingLayer, EmbeddingTable, FieldSpec, Pooling, SparseInput, NO_ROW};
use std::collections::HashMap;

/// The rank that owns `id` in a world of `size`.
pub fn owner(id: u64, size: usize) -> usize {
    // A mixing step first: ids are hashes already, but the tables' own index hashes
    // them too, and an owner taken from the same low bits would leave every shard's
    // index with correlated keys.
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % size as u64) as usize
}

/// One table's exchange for the current batch.
#[derive(Default)]
struct TableStep {
    /// Distinct id → its position in `send_ids`.
    pos: HashMap<u64, u32>,
    /// Distinct ids grouped by owner (rank 0's first), first-seen order within a group.
    send_ids: Vec<u64>,
    send_counts: Vec<usize>,
    /// Rows of `send_ids`, same order (`dim` each).
    rows: Vec<f32>,
    /// Owner side: how many ids each rank asked for, and the slots of those ids in
    /// request order (train mode), kept for backward.
    recv_counts: Vec<usize>,
    owned_slots: Vec<u32>,
    /// Summed gradient per entry of `send_ids`.
    grads: Vec<f32>,
    /// Owner side: every rank's gradients for `owned_slots`.
    owned_grads: Vec<f32>,
}

/// This rank's shard of every table plus the fields that read them.
pub struct ShardedEmbeddings {
    /// Tables holding only the rows this rank owns; fields as in the single-process
    /// layer.
    pub layer: EmbeddingLayer,
    steps: Vec<TableStep>,
    /// Per field: its column in `single` or index in `multi`.
    inputs: Vec<usize>,
    scratch: Vec<u64>,
    trained: Option<usize>,
}

impl ShardedEmbeddings {
    /// Wraps a layer (normally empty) as this rank's shard.
    pub fn new(layer: EmbeddingLayer) -> Self {
        let mut inputs = Vec::new();
        let (mut s, mut m) = (0, 0);
        for f in layer.fields() {
            if f.pooling.is_none() {
                inputs.push(s);
                s += 1;
            } else {
                inputs.push(m);
                m += 1;
            }
        }
        let steps = layer
            .tables()
            .iter()
            .map(|_| TableStep::default())
            .collect();
        ShardedEmbeddings {
            layer,
            steps,
            inputs,
            scratch: Vec::new(),
            trained: None,
        }
    }

    fn fields_of(&self, t: usize) -> impl Iterator<Item = (usize, &FieldSpec)> {
        self.layer
            .fields()
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.table == t)
    }

    /// The ids of table `t` in this batch: every field using it, in field order, rows in
    /// order (single) or list order (multi).
    fn occurrences(&self, t: usize, input: &SparseInput, out: &mut Vec<u64>) {
        out.clear();
        let ns = self.layer.n_single_fields();
        for (f, field) in self.fields_of(t) {
            let k = self.inputs[f];
            match field.pooling {
                None => out.extend((0..input.n).map(|i| input.single[i * ns + k])),
                Some(_) => out.extend_from_slice(&input.multi[k].ids),
            }
        }
    }

    /// Fetches the rows of this batch's ids from their owners and writes the embedding
    /// columns `0..width()` of `out` (row stride `row_stride`), like
    /// [`EmbeddingLayer::forward`]. Collective: every rank calls it once per step. In
    /// train mode owners create missing rows and keep the slots for [`Self::backward`];
    /// in eval mode unseen ids read zeros.
    ///
    /// All tables travel together: one all-to-all of ids (each rank's message to an
    /// owner starts with its id count per table) and one of rows.
    pub fn forward(
        &mut self,
        comm: &mut dyn Comm,
        input: &SparseInput,
        train: bool,
        out: &mut [f32],
        row_stride: usize,
    ) {
        self.forward_summing(comm, input, train, out, row_stride, &mut []);
    }

    /// [`Self::forward`], summing `totals` over the ranks on the way: each rank's values
    /// ride in the header of its id messages, so per-step counts (the loss's global
    /// denominator, a rank's read error) cost no collective of their own. Integers: the
    /// sum is exact and the same on every rank. Every rank passes as many values.
    pub fn forward_summing(
        &mut self,
        comm: &mut dyn Comm,
        input: &SparseInput,
        train: bool,
        out: &mut [f32],
        row_stride: usize,
        totals: &mut [u64],
    ) {
        if let Err(e) = self.layer.check_input(input) {
            panic!("ShardedEmbeddings::forward: {e}");
        }
        let size = comm.size();
        let n_tables = self.steps.len();
        let mut ids = std::mem::take(&mut self.scratch);
        for t in 0..n_tables {
            self.occurrences(t, input, &mut ids);
            plan(&ids, size, &mut self.steps[t]);
        }
        self.scratch = ids;
        // Message to owner r: [count of table 0, …, count of table T−1, totals…, ids of
        // table 0, …].
        let n_totals = totals.len();
        let mut send = Vec::new();
        let mut counts = vec![0; size];
        for (r, count) in counts.iter_mut().enumerate() {
            let at = send.len();
            send.extend(self.steps.iter().map(|st| st.send_counts[r] as u64));
            send.extend_from_slice(totals);
            for st in &self.steps {
                let lo = st.send_counts[..r].iter().sum::<usize>();
                send.extend_from_slice(&st.send_ids[lo..lo + st.send_counts[r]]);
            }
            *count = send.len() - at;
        }
        let (recv, recv_counts) = comm.all_to_all_v_u64(&send, &counts);
        // Owner side: per table, the ids every rank asked for, rank 0's first.
        let mut asked: Vec<Vec<u64>> = vec![Vec::new(); n_tables];
        let mut at = 0;
        for st in &mut self.steps {
            st.recv_counts.clear();
        }
        let mut sums = vec![0u64; n_totals];
        for &len in &recv_counts {
            let msg = &recv[at..at + len];
            let (head, body) = msg.split_at(n_tables);
            let (theirs, mut body) = body.split_at(n_totals);
            for (s, v) in sums.iter_mut().zip(theirs) {
                *s += v;
            }
            for (t, &c) in head.iter().enumerate() {
                let c = c as usize;
                asked[t].extend_from_slice(&body[..c]);
                self.steps[t].recv_counts.push(c);
                body = &body[c..];
            }
            at += len;
        }
        totals.copy_from_slice(&sums);
        let mut table_rows: Vec<Vec<f32>> = Vec::with_capacity(n_tables);
        for (t, asked) in asked.iter().enumerate() {
            let table: &mut EmbeddingTable = &mut self.layer.tables_mut()[t];
            let dim = table.dim();
            let st = &mut self.steps[t];
            let mut rows = vec![0.0f32; asked.len() * dim];
            if train {
                table.lookup_train(asked, &mut st.owned_slots);
                for (dst, &s) in rows.chunks_exact_mut(dim).zip(&st.owned_slots) {
                    if s != NO_ROW {
                        dst.copy_from_slice(table.row(s));
                    }
                }
            } else {
                st.owned_slots.clear();
                for (dst, &id) in rows.chunks_exact_mut(dim).zip(asked) {
                    if let Some(s) = table.lookup_eval(id) {
                        dst.copy_from_slice(table.row(s));
                    }
                }
            }
            table_rows.push(rows);
        }
        // Each owner answers in the order it was asked: to rank s, table by table.
        let dims: Vec<usize> = self.layer.tables().iter().map(|t| t.dim()).collect();
        let reply = self.by_rank(size, &dims, &table_rows, |st| &st.recv_counts);
        let (rows, _) = comm.all_to_all_v_f32(&reply.0, &reply.1);
        self.scatter(size, &dims, &rows, |st| &st.send_counts, |st| &mut st.rows);
        self.fill(input, out, row_stride);
        self.trained = train.then_some(input.n);
    }

    /// Packs per-table payloads (`dim` floats per id, grouped by rank as `counts` says)
    /// into one buffer grouped by rank, table by table within a rank.
    fn by_rank(
        &self,
        size: usize,
        dims: &[usize],
        per_table: &[Vec<f32>],
        counts: impl Fn(&TableStep) -> &Vec<usize>,
    ) -> (Vec<f32>, Vec<usize>) {
        let mut out = Vec::with_capacity(per_table.iter().map(Vec::len).sum());
        let mut sizes = vec![0; size];
        let mut offset = vec![0usize; per_table.len()];
        for (r, sz) in sizes.iter_mut().enumerate() {
            let at = out.len();
            for (t, st) in self.steps.iter().enumerate() {
                let len = counts(st)[r] * dims[t];
                out.extend_from_slice(&per_table[t][offset[t]..offset[t] + len]);
                offset[t] += len;
            }
            *sz = out.len() - at;
        }
        (out, sizes)
    }

    /// Unpacks a buffer made by [`Self::by_rank`] on the other side into per-table
    /// buffers (`dst`), rank by rank.
    fn scatter(
        &mut self,
        size: usize,
        dims: &[usize],
        buf: &[f32],
        counts: impl Fn(&TableStep) -> &Vec<usize>,
        dst: impl Fn(&mut TableStep) -> &mut Vec<f32>,
    ) {
        for st in &mut self.steps {
            dst(st).clear();
        }
        let mut at = 0;
        for r in 0..size {
            for (t, st) in self.steps.iter_mut().enumerate() {
                let len = counts(st)[r] * dims[t];
                dst(st).extend_from_slice(&buf[at..at + len]);
                at += len;
            }
        }
        debug_assert_eq!(at, buf.len());
    }

    /// Writes every field's embedding (pooled for multi-valued fields) from the fetched
    /// rows.
    fn fill(&self, input: &SparseInput, out: &mut [f32], row_stride: usize) {
        let ns = self.layer.n_single_fields();
        for (f, field) in self.layer.fields().iter().enumerate() {
            let st = &self.steps[field.table];
            let (k, col, dim) = (self.inputs[f], self.layer.field_offset(f), field.dim);
            let row_of = |id: u64| {
                let p = st.pos[&id] as usize;
                &st.rows[p * dim..(p + 1) * dim]
            };
            for i in 0..input.n {
                let dst = &mut out[i * row_stride + col..][..dim];
                match field.pooling {
                    None => dst.copy_from_slice(row_of(input.single[i * ns + k])),
                    Some(pooling) => {
                        let m = &input.multi[k];
                        let (a, b) = (m.offsets[i] as usize, m.offsets[i + 1] as usize);
                        dst.fill(0.0);
                        for &id in &m.ids[a..b] {
                            for (o, v) in dst.iter_mut().zip(row_of(id)) {
                                *o += v;
                            }
                        }
                        if pooling == Pooling::Mean && b > a {
                            let n = (b - a) as f32;
                            dst.iter_mut().for_each(|o| *o /= n);
                        }
                    }
                }
            }
        }
    }

    /// Sends the gradient of every fetched row to its owner, which updates the row.
    /// `d_out` has the layout of `forward`'s output; `step` is the 1-based global step.
    /// Collective, after a train-mode `forward` on the same batch.
    pub fn backward(
        &mut self,
        comm: &mut dyn Comm,
        input: &SparseInput,
        d_out: &[f32],
        row_stride: usize,
        step: u64,
    ) {
        assert_eq!(
            self.trained,
            Some(input.n),
            "ShardedEmbeddings::backward needs a train-mode forward on the same batch"
        );
        self.sum_gradients(input, d_out, row_stride);
        let size = comm.size();
        let dims: Vec<usize> = self.layer.tables().iter().map(|t| t.dim()).collect();
        let grads: Vec<Vec<f32>> = self
            .steps
            .iter_mut()
            .map(|st| std::mem::take(&mut st.grads))
            .collect();
        let (send, counts) = self.by_rank(size, &dims, &grads, |st| &st.send_counts);
        for (st, g) in self.steps.iter_mut().zip(grads) {
            st.grads = g;
        }
        let (recv, _) = comm.all_to_all_v_f32(&send, &counts);
        // Per table, every rank's gradients in rank order: the order of `owned_slots`.
        self.scatter(
            size,
            &dims,
            &recv,
            |st| &st.recv_counts,
            |st| &mut st.owned_grads,
        );
        let (tables, steps) = (self.layer.tables_mut(), &self.steps);
        for (table, st) in tables.iter_mut().zip(steps) {
            if !st.owned_slots.is_empty() {
                table.apply_gradients(&st.owned_slots, &st.owned_grads, step);
            }
        }
        self.trained = None;
    }

    /// Per table, the summed gradient of each distinct id over this rank's rows, summed
    /// in the order [`EmbeddingLayer::backward`] sums occurrences (field, then row).
    fn sum_gradients(&mut self, input: &SparseInput, d_out: &[f32], row_stride: usize) {
        let ns = self.layer.n_single_fields();
        for (t, st) in self.steps.iter_mut().enumerate() {
            let dim = self.layer.tables()[t].dim();
            st.grads.clear();
            st.grads.resize(st.send_ids.len() * dim, 0.0);
            for (f, field) in self.layer.fields().iter().enumerate() {
                if field.table != t {
                    continue;
                }
                let (k, col) = (self.inputs[f], self.layer.field_offset(f));
                for i in 0..input.n {
                    let d = &d_out[i * row_stride + col..][..dim];
                    let mut add = |id: u64, scale: Option<f32>| {
                        let p = st.pos[&id] as usize;
                        let g = &mut st.grads[p * dim..(p + 1) * dim];
                        match scale {
                            None => g.iter_mut().zip(d).for_each(|(a, x)| *a += x),
                            Some(k) => g.iter_mut().zip(d).for_each(|(a, x)| *a += x / k),
                        }
                    };
                    match field.pooling {
                        None => add(input.single[i * ns + k], None),
                        Some(pooling) => {
                            let m = &input.multi[k];
                            let (a, b) = (m.offsets[i] as usize, m.offsets[i + 1] as usize);
                            let scale = (pooling == Pooling::Mean).then_some((b - a) as f32);
                            for &id in &m.ids[a..b] {
                                add(id, scale);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Dedups `ids` and groups the distinct ones by owner.
fn plan(ids: &[u64], size: usize, st: &mut TableStep) {
    st.pos.clear();
    let mut distinct: Vec<(usize, u64)> = Vec::new();
    for &id in ids {
        if let std::collections::hash_map::Entry::Vacant(e) = st.pos.entry(id) {
            e.insert(0);
            distinct.push((owner(id, size), id));
        }
    }
    // Stable: first-seen order within each owner's group.
    distinct.sort_by_key(|&(r, _)| r);
    st.send_counts.clear();
    st.send_counts.resize(size, 0);
    st.send_ids.clear();
    for (p, &(r, id)) in distinct.iter().enumerate() {
        st.send_counts[r] += 1;
        st.send_ids.push(id);
        st.pos.insert(id, p as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::LocalComm;
    use crate::thread_comm::ThreadComm;
    use mfh_embedding::{MultiIds, RowOptimizer, TableSpec};

    fn layer() -> EmbeddingLayer {
        let spec = |name: &str, dim| TableSpec {
            optimizer: RowOptimizer::Adagrad {
                lr: 0.1,
                eps: 1e-8,
                initial_accumulator: 0.0,
            },
            init_scale: 0.1,
            seed: 7,
            ..TableSpec::new(name, dim)
        };
        EmbeddingLayer::new(
            vec![spec("user", 3), spec("tag", 2)],
            vec![
                FieldSpec::single("user", 0, 3),
                FieldSpec::single("author", 0, 3),
                FieldSpec::multi("tags", 1, 2, Pooling::Mean),
            ],
        )
        .unwrap()
    }

    /// A batch of 6 rows with repeated ids within and across rows and fields.
    fn batch() -> (Vec<u64>, Vec<MultiIds>) {
        let single = vec![1, 2, 3, 1, 1, 5, 2, 2, 7, 8, 9, 1];
        let multi = vec![MultiIds {
            offsets: vec![0, 2, 2, 5, 6, 8, 9],
            ids: vec![10, 11, 10, 12, 13, 11, 14, 10, 15],
        }];
        (single, multi)
    }

    fn slice(
        single: &[u64],
        multi: &[MultiIds],
        rows: std::ops::Range<usize>,
    ) -> (Vec<u64>, Vec<MultiIds>) {
        let s = single[rows.start * 2..rows.end * 2].to_vec();
        let m = multi
            .iter()
            .map(|m| {
                let (a, b) = (m.offsets[rows.start], m.offsets[rows.end]);
                MultiIds {
                    offsets: m.offsets[rows.start..=rows.end]
                        .iter()
                        .map(|o| o - a)
                        .collect(),
                    ids: m.ids[a as usize..b as usize].to_vec(),
                }
            })
            .collect();
        (s, m)
    }

    fn d_out(n: usize, w: usize, step: u64) -> Vec<f32> {
        (0..n * w)
            .map(|k| ((k as f32 * 0.37 + step as f32).sin()) * 0.5)
            .collect()
    }

    /// Three train steps with the plain layer: outputs per step and the final eval output.
    fn reference(steps: u64) -> (Vec<Vec<f32>>, Vec<f32>) {
        let mut l = layer();
        let (single, multi) = batch();
        let input = SparseInput {
            n: 6,
            single: &single,
            multi: &multi,
        };
        let w = l.width();
        let mut outs = Vec::new();
        for step in 1..=steps {
            let mut out = vec![0.0; 6 * w];
            l.forward(&input, true, &mut out, w);
            l.backward(&input, &d_out(6, w, step), w, step);
            outs.push(out);
        }
        let mut out = vec![0.0; 6 * w];
        l.forward(&input, false, &mut out, w);
        (outs, out)
    }

    /// The same steps on `size` threaded ranks, each with its slice of the rows.
    fn sharded(size: usize, steps: u64) -> (Vec<Vec<f32>>, Vec<f32>) {
        let handles: Vec<_> = ThreadComm::world(size)
            .into_iter()
            .map(|mut comm| {
                std::thread::spawn(move || {
                    let mut sh = ShardedEmbeddings::new(layer());
                    let (single, multi) = batch();
                    let w = sh.layer.width();
                    let rows = crate::comm::row_range(6, comm.rank(), comm.size());
                    let (s, m) = slice(&single, &multi, rows.clone());
                    let input = SparseInput {
                        n: rows.len(),
                        single: &s,
                        multi: &m,
                    };
                    let mut outs = Vec::new();
                    for step in 1..=steps {
                        let mut out = vec![0.0; rows.len() * w];
                        sh.forward(&mut comm, &input, true, &mut out, w);
                        let d = d_out(6, w, step);
                        sh.backward(&mut comm, &input, &d[rows.start * w..rows.end * w], w, step);
                        outs.push(comm.all_gather_f32(&out));
                    }
                    let mut out = vec![0.0; rows.len() * w];
                    sh.forward(&mut comm, &input, false, &mut out, w);
                    // Each id's row lives on its owner only.
                    for t in sh.layer.tables() {
                        for (id, _) in t.ids() {
                            assert_eq!(owner(id, comm.size()), comm.rank());
                        }
                    }
                    (outs, comm.all_gather_f32(&out))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        results.into_iter().next().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn one_rank_matches_the_plain_layer_bit_for_bit() {
        let (want, want_eval) = reference(3);
        let mut sh = ShardedEmbeddings::new(layer());
        let mut comm = LocalComm::new();
        let (single, multi) = batch();
        let input = SparseInput {
            n: 6,
            single: &single,
            multi: &multi,
        };
        let w = sh.layer.width();
        for (step, want) in (1..=3).zip(&want) {
            let mut out = vec![0.0; 6 * w];
            sh.forward(&mut comm, &input, true, &mut out, w);
            assert_eq!(&out, want);
            sh.backward(&mut comm, &input, &d_out(6, w, step), w, step);
        }
        let mut out = vec![0.0; 6 * w];
        sh.forward(&mut comm, &input, false, &mut out, w);
        assert_eq!(out, want_eval);
    }

    #[test]
    fn two_and_three_ranks_match_the_plain_layer() {
        let (want, want_eval) = reference(3);
        for size in [2, 3] {
            let (got, got_eval) = sharded(size, 3);
            for (g, w) in got.iter().zip(&want) {
                assert!(max_diff(g, w) < 1e-6, "size {size}: {}", max_diff(g, w));
            }
            assert!(max_diff(&got_eval, &want_eval) < 1e-6);
        }
    }

    #[test]
    fn owners_spread_ids_over_ranks() {
        let mut per = [0usize; 4];
        for id in 0..4000u64 {
            per[owner(id, 4)] += 1;
        }
        assert!(per.iter().all(|&n| (900..1100).contains(&n)), "{per:?}");
    }
}
