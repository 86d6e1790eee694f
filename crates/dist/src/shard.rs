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
        let steps = layer.tables().iter().map(|_| TableStep::default()).collect();
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
    pub fn forward(
        &mut self,
        comm: &mut dyn Comm,
        input: &SparseInput,
        train: bool,
        out: &mut [f32],
        row_stride: usize,
    ) {
        if let Err(e) = self.layer.check_input(input) {
            panic!("ShardedEmbeddings::forward: {e}");
        }
        let size = comm.size();
        let mut ids = std::mem::take(&mut self.scratch);
        for t in 0..self.steps.len() {
            self.occurrences(t, input, &mut ids);
            let dim = self.layer.tables()[t].dim();
            let st = &mut self.steps[t];
            plan(&ids, size, st);
            let (recv_ids, recv_counts) = comm.all_to_all_v_u64(&st.send_ids, &st.send_counts);
            // Owner side: the requested rows, in request order.
            let table: &mut EmbeddingTable = &mut self.layer.tables_mut()[t];
            let mut reply = vec![0.0f32; recv_ids.len() * dim];
            if train {
                table.lookup_train(&recv_ids, &mut st.owned_slots);
                for (dst, &s) in reply.chunks_exact_mut(dim).zip(&st.owned_slots) {
                    if s != NO_ROW {
                        dst.copy_from_slice(table.row(s));
                    }
                }
            } else {
                st.owned_slots.clear();
                for (dst, &id) in reply.chunks_exact_mut(dim).zip(&recv_ids) {
                    if let Some(s) = table.lookup_eval(id) {
                        dst.copy_from_slice(table.row(s));
                    }
                }
            }
            let counts: Vec<usize> = recv_counts.iter().map(|c| c * dim).collect();
            st.recv_counts = recv_counts;
            // Each owner answers in the order it was asked, so the rows arrive grouped by
            // owner in `send_ids` order.
            st.rows = comm.all_to_all_v_f32(&reply, &counts).0;
        }
        self.scratch = ids;
        self.fill(input, out, row_stride);
        self.trained = train.then_some(input.n);
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
        for t in 0..self.steps.len() {
            let dim = self.layer.tables()[t].dim();
            let st = &self.steps[t];
            let counts: Vec<usize> = st.send_counts.iter().map(|c| c * dim).collect();
            let (grads, _) = comm.all_to_all_v_f32(&st.grads, &counts);
            if !st.owned_slots.is_empty() {
                let slots = &self.steps[t].owned_slots;
                self.layer.tables_mut()[t].apply_gradients(slots, &grads, step);
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

    fn slice(single: &[u64], multi: &[MultiIds], rows: std::ops::Range<usize>) -> (Vec<u64>, Vec<MultiIds>) {
        let s = single[rows.start * 2..rows.end * 2].to_vec();
        let m = multi
            .iter()
            .map(|m| {
                let (a, b) = (m.offsets[rows.start], m.offsets[rows.end]);
                MultiIds {
                    offsets: m.offsets[rows.start..=rows.end].iter().map(|o| o - a).collect(),
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
        let input = SparseInput { n: 6, single: &single, multi: &multi };
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
                    let input = SparseInput { n: rows.len(), single: &s, multi: &m };
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
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn one_rank_matches_the_plain_layer_bit_for_bit() {
        let (want, want_eval) = reference(3);
        let mut sh = ShardedEmbeddings::new(layer());
        let mut comm = LocalComm::new();
        let (single, multi) = batch();
        let input = SparseInput { n: 6, single: &single, multi: &multi };
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
