//! Scoring lanes over one loaded model: several requests scored at once, each by its own
//! [`Scorer`], while the model itself ([`ModelState`]) is only read.
//!
//! A scorer holds a copy of the dense network (its parameters, gradient buffers and
//! activations) and the scratch of one forward pass; the embedding tables — the bulk of
//! a recommender's parameters — are one copy, read by every scorer through
//! [`mfh_embedding::EmbeddingLayer::lookup`]. So `S` scorers cost `S` copies of the dense
//! network's parameters and gradients beyond the model, plus each one's scratch, which
//! [`ModelState::score`] bounds by scoring at most `chunk` rows per pass.

use crate::state::{copy_dense, grid_shape, lend_multi, return_multi, ModelState};
use anyhow::{anyhow, Result};
use mfh_data::Batch;
use mfh_embedding::{MultiIds, SparseInput};
use mfh_model::{DataParallel, MultiTaskModel};

/// One scoring lane: a copy of the dense network and its buffers.
pub struct Scorer {
    net: Box<dyn MultiTaskModel<f32>>,
    parallel: DataParallel<f32>,
    x: Vec<f32>,
    multi: Vec<MultiIds>,
    logits: Vec<f32>,
    /// Factor the columns rows share out of the first layers' products (default on).
    pub factored: bool,
    /// Run each tower on its own cell's rows only, where the model can (default on; see
    /// `MultiTaskModel::set_cell_towers`).
    pub cell_towers: bool,
}

impl ModelState {
    /// A new scorer holding a copy of the dense network's parameters and buffers.
    /// (Taking them needs `&mut self`: a server makes its scorers when it loads a
    /// version, before the state is shared.)
    pub fn scorer(&mut self) -> Result<Scorer> {
        let mut net = mfh_model::build_model_with_transfers::<f32>(
            &self.spec,
            &grid_shape(&self.grid),
            self.build.0,
            self.build.1,
            &self.build.2,
        )
        .map_err(|e| anyhow!("cannot build a scorer's network: {e}"))?;
        let mut params: Vec<Vec<f32>> = Vec::new();
        let mut buffers: Vec<Vec<f32>> = Vec::new();
        self.net
            .visit_params("", &mut |_, p, _| params.push(p.to_vec()));
        self.net
            .visit_buffers("", &mut |_, b| buffers.push(b.to_vec()));
        let (mut k, mut bad) = (0, false);
        net.visit_params("", &mut |_, p, _| {
            match params.get(k).filter(|s| s.len() == p.len()) {
                Some(s) => p.copy_from_slice(s),
                None => bad = true,
            }
            k += 1;
        });
        let mut j = 0;
        net.visit_buffers("", &mut |_, b| {
            match buffers.get(j).filter(|s| s.len() == b.len()) {
                Some(s) => b.copy_from_slice(s),
                None => bad = true,
            }
            j += 1;
        });
        if bad || k != params.len() || j != buffers.len() {
            return Err(anyhow!(
                "a scorer's network does not match the model's ({k} of {} parameter tensors, {j} of {} buffers)",
                params.len(),
                buffers.len()
            ));
        }
        Ok(Scorer {
            net,
            parallel: DataParallel::default(),
            x: Vec::new(),
            multi: Vec::new(),
            logits: Vec::new(),
            factored: true,
            cell_towers: true,
        })
    }

    /// Scores `batch` with `scorer`, at most `chunk` rows per forward pass (the scorer's
    /// activations stay those of `chunk` rows, however many the batch has): logits,
    /// rows × tasks, valid until the scorer's next use. Equal to [`ModelState::forward`]
    /// for networks that score rows independently (every network in eval mode).
    pub fn score<'s>(&self, scorer: &'s mut Scorer, batch: &mut Batch, chunk: usize) -> &'s [f32] {
        self.score_requests(scorer, batch, chunk, &[0])
    }

    /// [`ModelState::score`] for a batch of several requests, `starts` holding the first
    /// row of each (ascending; an unsorted one only factors less): each request's shared
    /// input columns (its user's side) are multiplied once per request in the first
    /// layers.
    pub fn score_requests<'s>(
        &self,
        scorer: &'s mut Scorer,
        batch: &mut Batch,
        chunk: usize,
        starts: &[usize],
    ) -> &'s [f32] {
        let n = batch.n;
        let n_in = self.n_in();
        let w = self.emb.width();
        let Scorer {
            net,
            parallel,
            x,
            multi,
            logits,
            factored,
            cell_towers,
        } = scorer;
        let (factored, cell_towers) = (*factored, *cell_towers);
        net.set_cell_towers(cell_towers);
        x.clear();
        x.resize(n * n_in, 0.0);
        lend_multi(batch, multi);
        let input = SparseInput {
            n,
            single: &batch.single,
            multi,
        };
        self.emb.lookup(&input, x, n_in);
        return_multi(batch, multi);
        copy_dense(x, &batch.dense, n_in, w);
        let nt = net.n_tasks();
        logits.clear();
        logits.reserve(n * nt);
        let chunk = chunk.max(1);
        let threads = mfh_nn::kernels::threads();
        let make = || {
            mfh_model::build_model_with_transfers::<f32>(
                &self.spec,
                &grid_shape(&self.grid),
                self.build.0,
                self.build.1,
                &self.build.2,
            )
            .map(|mut replica| {
                replica.set_cell_towers(cell_towers);
                replica
            })
        };
        let mut lo = 0;
        while lo < n {
            let rows = chunk.min(n - lo);
            let xs = &x[lo * n_in..(lo + rows) * n_in];
            let cells = &batch.cells[lo..lo + rows];
            let blocks = parallel.blocks_for(net.as_mut(), rows, threads);
            // Columns equal on every row (one user's side of a ranking request) are
            // multiplied once per first-layer product, not once per row; the input's
            // columns are sorted into shared and varying once for all of them.
            let mut pass = || {
                parallel
                    .forward(net.as_mut(), &make, xs, cells, rows, false, blocks)
                    .to_vec()
            };
            // The requests' first rows within this pass (ascending, repeats dropped).
            let mut firsts = vec![0];
            for &s in starts.iter().filter(|&&s| s > lo && s < lo + rows) {
                if s - lo > firsts[firsts.len() - 1] {
                    firsts.push(s - lo);
                }
            }
            let out = if factored {
                mfh_nn::product::with_factored_input_over_requests(
                    xs, rows, n_in, n_in, &firsts, pass,
                )
            } else {
                pass()
            };
            logits.extend_from_slice(&out[..rows * nt]);
            lo += rows;
        }
        logits
    }
}
