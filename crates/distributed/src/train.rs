//! Synchronous data-parallel training over a [`Comm`]: the global batch of
//! `train.batch_size` rows is split over the ranks, dense gradients are summed in one
//! fused all-reduce per step and every rank steps the same Adam, embedding rows live with
//! their owner ([`ShardedEmbeddings`]).
//!
//! Every rank scans the same seeded sequence of global batches (the reader, shuffle
//! buffer and seed of the single-process trainer) and trains on its contiguous slice of
//! each batch's rows, so a run over N ranks sees exactly the batches of a one-process run
//! with the same batch size, and its model equals that run's up to float summation
//! order. Reading is striped ([`crate::reader`]): a rank joins and decodes only its own
//! rows; the loss's global denominator is summed in the step's id exchange.
//!
//! Not supported across ranks (rejected with a message): batch norm (its statistics
//! would be per rank), `task_mean` reduction and uncertainty weighting (their
//! normalisation is per task, not a global rescaling), embedding admission, expiry and
//! row caps (their counts would be per owner). The loop, its checkpoints and their resume are
//! `mfh_train`'s, shared with the one-process trainer ([`mfh_train::train_with`]).

use crate::comm::{Comm, CommStats};
use crate::evaluate::evaluate;
use crate::exchange::{assemble, fail_exchange, give_back, others_failed};
use crate::reader::{read_mode, RankReader, ReadMode};
use crate::shard::{owner, ShardedEmbeddings};
use anyhow::{bail, Result};
use mfh_artifact::model_dir::{save_model, SaveInfo};
use mfh_artifact::ModelState;
use mfh_config::Config;
use mfh_data::{Batch, Pipeline, StreamOptions};
use mfh_embedding::{EmbeddingLayer, MultiIds, SparseInput};
use mfh_nn::{Adam, Module};
use mfh_train::{Engine, Optimizers, TrainOptions, TrainSummary};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Where the time of the training steps went (this rank), for the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTimes {
    pub steps: u64,
    /// Seconds in training steps (reading, compute and communication; not evaluation).
    pub train_s: f64,
    /// Of `train_s`: waiting for the next batch from the reader.
    pub read_s: f64,
    pub comm: CommStats,
    /// Global rows trained on.
    pub rows: u64,
    /// Of those, this rank's.
    pub rows_local: u64,
    /// How the train split was read.
    pub read_mode: Option<ReadMode>,
    /// Striped reading: rows this rank joined and decoded, seconds decoding them and
    /// seconds scanning (reading, splitting cells, split test) on the reader thread,
    /// which overlaps the steps.
    pub rows_decoded: u64,
    pub decode_s: f64,
    pub scan_s: f64,
}

/// A rank's part of one step's batch, with its buffers reused across steps.
struct Local {
    batch: Batch,
    x: Vec<f32>,
    dx: Vec<f32>,
    d_logits: Vec<f32>,
    multi: Vec<MultiIds>,
    fused: Vec<f32>,
}

/// This rank's part of the loss's denominator (summed over the ranks: the global
/// batch's): its rows, or its active (row, task) pairs.
fn denominator(state: &ModelState, batch: &Batch) -> usize {
    match state.loss.spec().reduction {
        mfh_loss::Reduction::BatchMean => batch.n,
        _ => {
            let (nb, nc) = (state.grid.n_behaviours(), state.grid.n_cells());
            batch
                .labels
                .chunks_exact(nb)
                .zip(&batch.cells)
                .filter(|(_, &c)| (c as usize) < nc)
                .map(|(row, _)| row.iter().filter(|y| y.is_finite()).count())
                .sum()
        }
    }
}

fn check_supported(cfg: &Config, state: &mut ModelState) -> Result<()> {
    let lc = &cfg.train.loss;
    if lc.uncertainty || lc.reduction == mfh_config::Reduction::TaskMean {
        bail!(
            "{}: `train.loss`: distributed training supports the `active_mean` and `batch_mean` reductions without uncertainty weighting (their gradients are a global rescaling of each rank's); train on one process, or change the reduction",
            cfg.source_file.display()
        );
    }
    let e = &cfg.train.embedding;
    for (key, on) in [
        ("admit_after", e.admit_after > 1),
        ("ttl_steps", e.ttl_steps > 0),
        ("max_rows", e.max_rows > 0),
    ] {
        if on {
            bail!(
                "{}: `train.embedding.{key}`: embedding admission, expiry and row caps are not supported by distributed training (each rank would count sightings and ages of its own shard only); remove it, or train on one process",
                cfg.source_file.display()
            );
        }
    }
    let mut buffers = 0;
    state.net_mut().visit_buffers("", &mut |_, _| buffers += 1);
    if buffers > 0 {
        bail!("the model uses batch norm, whose batch statistics would differ per rank: set `batch_norm = false` in the model section, or train on one process");
    }
    Ok(())
}

/// Trains like [`mfh_train::train`] on every rank of `comm` (collective: all ranks call
/// it with the same config and options): the one training loop
/// ([`mfh_train::train_with`]) over a [`DistEngine`]. Rank 0 writes the model folder and
/// the checkpoints, with every shard's rows gathered into them.
pub fn train(
    cfg: &Config,
    opts: &TrainOptions,
    comm: &mut dyn Comm,
) -> Result<(TrainSummary, StepTimes)> {
    let mut eng = DistEngine::new(comm);
    let mut summary = mfh_train::train_with(cfg, opts, &mut eng)?;
    // Global rows over the steps' time, as distributed.json says.
    let t = &eng.times;
    if t.train_s > 0.0 {
        summary.samples_per_sec = t.rows as f64 / t.train_s;
    }
    Ok((summary, eng.times))
}

/// The sharded engine: each rank trains on its contiguous slice of every global batch,
/// owns the embedding rows `owner(id, N) = rank`, and sums the dense gradients with the
/// other ranks once per step.
pub struct DistEngine<'c> {
    comm: &'c mut dyn Comm,
    shard: Option<ShardedEmbeddings>,
    local: Local,
    pipeline: Option<Arc<Pipeline>>,
    reader: Option<RankReader>,
    mode: Option<ReadMode>,
    /// The global rows and reading time of the batch read last.
    read: (usize, f64),
    pub times: StepTimes,
}

impl<'c> DistEngine<'c> {
    pub fn new(comm: &'c mut dyn Comm) -> Self {
        DistEngine {
            comm,
            shard: None,
            local: Local {
                batch: Batch::default(),
                x: Vec::new(),
                dx: Vec::new(),
                d_logits: Vec::new(),
                multi: Vec::new(),
                fused: Vec::new(),
            },
            pipeline: None,
            reader: None,
            mode: None,
            read: (0, 0.0),
            times: StepTimes::default(),
        }
    }
}

impl Engine for DistEngine<'_> {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn size(&self) -> usize {
        self.comm.size()
    }

    fn all_ok(&mut self, ok: bool) -> bool {
        let mut failed = [(!ok) as u64 as f64];
        self.comm.all_reduce_sum_f64(&mut failed);
        failed[0] == 0.0
    }

    fn sum_f64(&mut self, v: &mut [f64]) {
        self.comm.all_reduce_sum_f64(v);
    }

    fn check(&mut self, cfg: &Config, state: &mut ModelState) -> Result<()> {
        check_supported(cfg, state)
    }

    /// Keeps the rows this rank owns (of a fresh, warm-started or restored model: every
    /// rank held them all), so a resume may change the number of ranks.
    fn adopt(&mut self, state: &mut ModelState) -> Result<()> {
        let (rank, size) = (self.comm.rank(), self.comm.size());
        let empty = empty_like(&state.emb)?;
        let all = std::mem::replace(&mut state.emb, empty);
        let mut tables = Vec::new();
        for t in all.tables() {
            let mut table = mfh_embedding::EmbeddingTable::new(t.spec().clone())
                .map_err(|e| anyhow::anyhow!("embedding table: {e}"))?;
            let mut ids: Vec<(u64, u32)> =
                t.ids().filter(|&(id, _)| owner(id, size) == rank).collect();
            ids.sort_unstable();
            for (id, slot) in ids {
                table.insert_row(id, t.row(slot), t.row_state(slot));
            }
            tables.push(table);
        }
        let mine = EmbeddingLayer::from_tables(tables, all.fields().to_vec())
            .map_err(|e| anyhow::anyhow!("embedding layer: {e}"))?;
        self.shard = Some(ShardedEmbeddings::new(mine));
        Ok(())
    }

    fn open_epoch(
        &mut self,
        pipeline: &Arc<Pipeline>,
        split: &str,
        opts: StreamOptions,
    ) -> Result<()> {
        let (rank, size) = (self.comm.rank(), self.comm.size());
        let mode = match self.mode {
            Some(m) => m,
            None => {
                let (mode, why_whole) = read_mode(pipeline, split);
                if let (Some(why), 0) = (why_whole, rank) {
                    eprintln!("note: every rank decodes whole batches ({why}); striped reading needs `on_error = \"fail\"` and no negative down-sampling");
                }
                self.mode = Some(mode);
                self.times.read_mode = Some(mode);
                mode
            }
        };
        self.reader = Some(RankReader::open(pipeline, split, opts, mode, rank, size)?);
        self.pipeline = Some(pipeline.clone());
        Ok(())
    }

    fn next_batch(&mut self) -> Option<Result<usize>> {
        let ts = Instant::now();
        let r = self.reader.as_mut()?.next_into(&mut self.local.batch)?;
        Some(match r {
            Ok(n) => {
                self.read = (n, ts.elapsed().as_secs_f64());
                Ok(n)
            }
            // The other ranks learn of it in their next id exchange, and stop too.
            Err(e) => {
                let Some(p) = self.pipeline.clone() else {
                    return Some(Err(e.into()));
                };
                match self.shard.as_mut() {
                    Some(shard) => Err(fail_exchange(self.comm, shard, p.layout(), e)),
                    None => Err(e.into()),
                }
            }
        })
    }

    fn step(
        &mut self,
        state: &mut ModelState,
        opt: &mut Optimizers,
        step: u64,
        lr: f32,
    ) -> Result<f64> {
        let ts = Instant::now();
        let c0 = self.comm.stats();
        let shard = self
            .shard
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the sharded engine has no embedding rows yet"))?;
        let loss = train_step(
            state,
            shard,
            self.comm,
            &mut self.local,
            &mut opt.dense,
            step,
            lr,
        )?;
        let (rows, read) = self.read;
        let t = &mut self.times;
        t.steps += 1;
        t.rows += rows as u64;
        t.rows_local += self.local.batch.n as u64;
        t.read_s += read;
        t.train_s += read + ts.elapsed().as_secs_f64();
        let c1 = self.comm.stats().since(&c0);
        add_stats(&mut t.comm, &c1);
        Ok(loss)
    }

    fn close_epoch(&mut self) -> mfh_data::SkipCounts {
        let Some(reader) = self.reader.take() else {
            return Default::default();
        };
        let skipped = reader
            .stats()
            .map(|s| s.skipped.clone())
            .unwrap_or_default();
        if let Some(c) = reader.close() {
            self.times.rows_decoded += c.rows_decoded;
            self.times.decode_s += c.decode_s;
            self.times.scan_s += c.scan_s;
        }
        skipped
    }

    fn evaluate(
        &mut self,
        state: &mut ModelState,
        pipeline: &Arc<Pipeline>,
        split: &str,
        batch_size: usize,
    ) -> Result<mfh_artifact::EvalResult> {
        let shard = self
            .shard
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the sharded engine has no embedding rows yet"))?;
        evaluate(state, shard, self.comm, pipeline, split, batch_size)
    }

    fn save_model(&mut self, state: &mut ModelState, dir: &Path, info: &SaveInfo) -> Result<()> {
        let shard = self
            .shard
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the sharded engine has no embedding rows yet"))?;
        save_gathered(state, shard, self.comm, dir, info)
    }
}

/// Every rank learns whether any rank failed (collective): this rank's error, or
/// `others` when only another rank's result was an error.
fn agree(comm: &mut dyn Comm, r: Result<()>, others: &str) -> Result<()> {
    let mut failed = [r.is_err() as u64 as f64];
    comm.all_reduce_sum_f64(&mut failed);
    r?;
    if failed[0] > 0.0 {
        bail!("{others} (see its error)");
    }
    Ok(())
}

fn add_stats(acc: &mut CommStats, d: &CommStats) {
    acc.all_reduce_s += d.all_reduce_s;
    acc.all_reduce_bytes += d.all_reduce_bytes;
    acc.all_reduce_calls += d.all_reduce_calls;
    acc.all_to_all_s += d.all_to_all_s;
    acc.all_to_all_bytes += d.all_to_all_bytes;
    acc.all_to_all_calls += d.all_to_all_calls;
    acc.other_s += d.other_s;
}

/// One synchronous step on this rank's rows of the global batch (`l.batch`); returns
/// the global loss.
fn train_step(
    state: &mut ModelState,
    shard: &mut ShardedEmbeddings,
    comm: &mut dyn Comm,
    l: &mut Local,
    adam: &mut Adam<f32>,
    step: u64,
    lr: f32,
) -> Result<f64> {
    // Summed in the id exchange: the global denominator, and ranks that failed to read.
    let mut totals = [denominator(state, &l.batch) as u64, 0];
    state.net_mut().zero_grad();
    state.loss.zero_grad();
    let n_dense = state.n_dense;
    assemble(
        comm,
        shard,
        n_dense,
        &mut l.batch,
        &mut l.multi,
        &mut l.x,
        true,
        &mut totals,
    );
    let [denom, failed] = totals;
    if failed > 0 {
        give_back(&mut l.batch, &mut l.multi);
        return Err(others_failed(failed));
    }
    let n = l.batch.n;
    let n_in = shard.layer.width() + n_dense;
    let mut loss = 0.0;
    l.dx.clear();
    l.dx.resize(l.x.len(), 0.0);
    if n > 0 {
        let (net, grid_loss) = state.net_and_loss_mut();
        let logits = net.forward(&l.x, &l.batch.cells, n, true);
        l.d_logits.resize(logits.len(), 0.0);
        let lv = grid_loss.compute(logits, &l.batch.labels, &l.batch.cells, &mut l.d_logits);
        // The local loss is a mean over this rank's denominator; rescaled to the global
        // one, the ranks' gradients sum to the one-process gradient of the whole batch.
        let local = match state.loss.spec().reduction {
            mfh_loss::Reduction::BatchMean => n,
            _ => lv.active,
        };
        let scale = if denom > 0 {
            local as f32 / denom as f32
        } else {
            0.0
        };
        l.d_logits.iter_mut().for_each(|g| *g *= scale);
        loss = lv.loss * scale as f64;
        state
            .net_mut()
            .backward(&l.x, &l.batch.cells, &l.d_logits, Some(&mut l.dx), n);
    }
    // Row gradients go to their owners, which update the rows now (as the one-process
    // trainer does before stepping the dense optimiser).
    {
        let input = SparseInput {
            n,
            single: &l.batch.single,
            multi: &l.multi,
        };
        shard.backward(comm, &input, &l.dx, n_in, step);
    }
    give_back(&mut l.batch, &mut l.multi);
    // One fused all-reduce: every dense gradient, then the loss.
    l.fused.clear();
    state
        .net_mut()
        .visit_params("", &mut |_, _, g| l.fused.extend_from_slice(g));
    l.fused.push(loss as f32);
    comm.all_reduce_sum(&mut l.fused);
    let mut at = 0;
    state.net_mut().visit_params("", &mut |_, _, g| {
        g.copy_from_slice(&l.fused[at..at + g.len()]);
        at += g.len();
    });
    adam.step(state.net_mut(), lr);
    Ok(l.fused[at] as f64)
}

/// A layer with the tables and fields of `layer` and no rows.
fn empty_like(layer: &EmbeddingLayer) -> Result<EmbeddingLayer> {
    let specs = layer.tables().iter().map(|t| t.spec().clone()).collect();
    EmbeddingLayer::new(specs, layer.fields().to_vec())
        .map_err(|e| anyhow::anyhow!("embedding layer: {e}"))
}

/// Gathers every shard's rows (and their optimizer state) on rank 0, which saves the
/// whole model to `dir`; the other ranks only send. Collective.
pub fn save_gathered(
    state: &mut ModelState,
    shard: &ShardedEmbeddings,
    comm: &mut dyn Comm,
    dir: &std::path::Path,
    info: &SaveInfo,
) -> Result<()> {
    let size = comm.size();
    // Rank 0 keeps its first error and goes on through every collective, so that no
    // rank is left waiting in one; the result is agreed at the end.
    let mut err: Option<anyhow::Error> = None;
    let mut tables = Vec::new();
    for t in shard.layer.tables() {
        let (dim, sw) = (t.dim(), t.state_width());
        let mut ids: Vec<(u64, u32)> = t.ids().collect();
        ids.sort_unstable();
        let mut vals = Vec::with_capacity(ids.len() * (dim + sw));
        for &(_, s) in &ids {
            vals.extend_from_slice(t.row(s));
            vals.extend_from_slice(t.row_state(s));
        }
        let ids: Vec<u64> = ids.into_iter().map(|(id, _)| id).collect();
        let to_root = |len: usize| {
            let mut c = vec![0; size];
            c[0] = len;
            c
        };
        let (all_ids, _) = comm.all_to_all_v_u64(&ids, &to_root(ids.len()));
        let (all_vals, _) = comm.all_to_all_v_f32(&vals, &to_root(vals.len()));
        if comm.rank() == 0 && err.is_none() {
            match mfh_embedding::EmbeddingTable::new(t.spec().clone()) {
                Ok(mut table) => {
                    for (id, v) in all_ids.iter().zip(all_vals.chunks_exact(dim + sw)) {
                        table.insert_row(*id, &v[..dim], &v[dim..]);
                    }
                    tables.push(table);
                }
                Err(e) => err = Some(anyhow::anyhow!("embedding table: {e}")),
            }
        }
    }
    let ok = if comm.rank() != 0 {
        Ok(())
    } else if let Some(e) = err {
        Err(e)
    } else {
        (|| -> Result<()> {
            let fields = shard.layer.fields().to_vec();
            state.emb = EmbeddingLayer::from_tables(tables, fields)
                .map_err(|e| anyhow::anyhow!("embedding layer: {e}"))?;
            let r = save_model(dir, state, info);
            // The full tables are only for saving: drop them again.
            state.emb = empty_like(&shard.layer)?;
            r
        })()
    };
    // Rank 0's result reaches every rank, so a failed write stops them all.
    agree(
        comm,
        ok,
        &format!("rank 0 could not save the model to {}", dir.display()),
    )
}

/// Writes `distributed.json` (world size, per-step time split, rank 0's reading) to the
/// model folder. `decode_ms` and `scan_ms` are per step on the reader thread, which runs
/// alongside the steps; `read_ms` is the time a step waited for it.
pub fn write_step_times(dir: &std::path::Path, size: usize, t: &StepTimes) -> Result<()> {
    let per_step = |s: f64| 1e3 * s / t.steps.max(1) as f64;
    let v = serde_json::json!({
        "world_size": size,
        "steps": t.steps,
        "rows": t.rows,
        "samples_per_sec": if t.train_s > 0.0 { t.rows as f64 / t.train_s } else { 0.0 },
        "step_ms": per_step(t.train_s),
        "read_ms": per_step(t.read_s),
        "all_reduce_ms": per_step(t.comm.all_reduce_s),
        "all_reduce_bytes_per_step": t.comm.all_reduce_bytes / t.steps.max(1),
        "all_to_all_ms": per_step(t.comm.all_to_all_s),
        "all_to_all_bytes_per_step": t.comm.all_to_all_bytes / t.steps.max(1),
        "all_to_all_calls_per_step": t.comm.all_to_all_calls / t.steps.max(1),
        "read_mode": t.read_mode.map(ReadMode::name),
        "rows_local": t.rows_local,
        "rows_decoded": t.rows_decoded,
        "decode_ms": per_step(t.decode_s),
        "scan_ms": per_step(t.scan_s),
    });
    mfh_artifact::model_dir::write_atomic(
        dir,
        "distributed.json",
        serde_json::to_string_pretty(&v)?.as_bytes(),
    )
}
