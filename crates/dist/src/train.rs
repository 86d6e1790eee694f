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
//! row caps (their counts would be per owner). Checkpoints: see [`crate::checkpoint`].

use crate::checkpoint;
use crate::comm::{Comm, CommStats};
use crate::evaluate::evaluate;
use crate::reader::{read_mode, RankReader, ReadMode};
use crate::shard::ShardedEmbeddings;
use anyhow::{bail, Context, Result};
use mfh_artifact::model_dir::{fresh_state, save_model, SaveInfo};
use mfh_artifact::ModelState;
use mfh_config::Config;
use mfh_data::{Batch, Pipeline, StreamOptions};
use mfh_embedding::{EmbeddingLayer, MultiIds, SparseInput};
use mfh_nn::{Adam, Module};
use mfh_train::{learning_rate, model_spec, Selection, TrainOptions, TrainSummary};
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

/// Runs the embedding forward for `batch` on the shards and fills the network input `x`
/// (embeddings, then numeric features); `totals` are summed over the ranks on the way
/// ([`ShardedEmbeddings::forward_summing`]). The batch's multi-valued ids are borrowed
/// into `multi` until [`give_back`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    comm: &mut dyn Comm,
    shard: &mut ShardedEmbeddings,
    n_dense: usize,
    batch: &mut Batch,
    multi: &mut Vec<MultiIds>,
    x: &mut Vec<f32>,
    train: bool,
    totals: &mut [u64],
) {
    let w = shard.layer.width();
    let n_in = w + n_dense;
    x.clear();
    x.resize(batch.n * n_in, 0.0);
    multi.clear();
    for m in &mut batch.multi {
        multi.push(MultiIds {
            offsets: std::mem::take(&mut m.offsets),
            ids: std::mem::take(&mut m.ids),
        });
    }
    let input = SparseInput {
        n: batch.n,
        single: &batch.single,
        multi,
    };
    shard.forward_summing(comm, &input, train, x, n_in, totals);
    if n_dense > 0 {
        for (row, d) in x
            .chunks_exact_mut(n_in)
            .zip(batch.dense.chunks_exact(n_dense))
        {
            row[w..].copy_from_slice(d);
        }
    }
}

pub(crate) fn give_back(batch: &mut Batch, multi: &mut Vec<MultiIds>) {
    for (m, ids) in batch.multi.iter_mut().zip(multi.drain(..)) {
        m.offsets = ids.offsets;
        m.ids = ids.ids;
    }
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
/// it with the same config and options). Rank 0 writes the model folder, with every
/// shard's rows gathered into it, each time the selection metric improves.
pub fn train(
    cfg: &Config,
    opts: &TrainOptions,
    comm: &mut dyn Comm,
) -> Result<(TrainSummary, StepTimes)> {
    let t0 = Instant::now();
    let tc = &cfg.train;
    let threads = tc.threads.resolve();
    mfh_nn::use_threads(threads);
    let (model_name, spec) = model_spec(cfg, opts.model.as_deref())?;
    let seed = opts.seed.unwrap_or(tc.seed);
    let (rank, size) = (comm.rank(), comm.size());
    if rank == 0 {
        std::fs::create_dir_all(&opts.out)
            .with_context(|| format!("{}: cannot create the model folder", opts.out.display()))?;
    }

    let mut pipeline = Pipeline::new(cfg)?;
    let fit = pipeline
        .fit(&tc.train_split)
        .with_context(|| format!("reading the train split `{}`", tc.train_split))?;
    if pipeline.transforms.rows == 0 {
        bail!(
            "the train split `{}` is empty ({} rows read)",
            tc.train_split,
            fit.rows_read
        );
    }
    let transforms = pipeline.transforms.clone();
    let layout = pipeline.layout().clone();
    let pipeline = Arc::new(pipeline);
    let mut state = fresh_state(cfg, &layout, spec, seed)?;
    check_supported(cfg, &mut state)?;
    let mut shard = ShardedEmbeddings::new(state.emb.clone());
    let mut adam = Adam::<f32>::new(0.9, 0.999, 1e-8, tc.weight_decay);
    let params = state.net_mut().num_params();
    let metric = tc.early_stopping.metric.clone();
    let steps_per_epoch = transforms.rows.div_ceil(tc.batch_size as u64);
    let total_steps = if tc.max_steps > 0 {
        tc.max_steps.min(steps_per_epoch * tc.epochs as u64)
    } else {
        steps_per_epoch * tc.epochs as u64
    };
    if rank == 0 {
        eprintln!(
            "training `{model_name}` ({params} dense parameters) on {} rows × {} epochs, {} tasks, over {size} ranks ({} rows per rank per step)",
            transforms.rows,
            tc.epochs,
            state.grid.n_tasks(),
            tc.batch_size.div_ceil(size)
        );
    }

    let mut local = Local {
        batch: Batch::default(),
        x: Vec::new(),
        dx: Vec::new(),
        d_logits: Vec::new(),
        multi: Vec::new(),
        fused: Vec::new(),
    };
    let mut times = StepTimes::default();
    let (mode, why_whole) = read_mode(&pipeline, &tc.train_split);
    times.read_mode = Some(mode);
    if let (Some(why), 0) = (why_whole, rank) {
        eprintln!("note: every rank decodes whole batches ({why}); striped reading needs `on_error = \"fail\"` and no negative down-sampling");
    }
    let mut sel = Selection::new(
        &metric,
        tc.early_stopping.patience,
        &opts.out,
        opts.keep_checkpoints.then(|| opts.out.join("checkpoints")),
    );
    sel.verbose = rank == 0;
    let mut step = 0u64;
    let mut loss_ema: Option<f64> = None;
    // Where a resumed run picks up: epoch and batches of it already trained on.
    let ck_root = opts.out.join("checkpoints");
    let mut resume_at = (0usize, 0u64);
    let run = checkpoint::RunIdentity::new(cfg, &model_name, seed, &transforms)?;
    let restored = if opts.resume {
        // Newest first; a damaged checkpoint (on any rank) falls back to the one before,
        // as in the one-process trainer; one of another run stops every rank.
        let mut found = None;
        let mut problems = Vec::new();
        for dir in checkpoint::newest_first(&ck_root) {
            let r = checkpoint::restore(
                &dir,
                (rank, size),
                &run,
                &shard.layer,
                &mut state,
                &mut adam,
            );
            let (refused, damaged) = match &r {
                Ok(_) => (0.0, 0.0),
                Err(checkpoint::RestoreError::Refused(_)) => (1.0, 0.0),
                Err(checkpoint::RestoreError::Damaged(_)) => (0.0, 1.0),
            };
            let mut votes = [refused, damaged];
            comm.all_reduce_sum_f64(&mut votes);
            match r {
                Err(checkpoint::RestoreError::Refused(e)) => return Err(e),
                _ if votes[0] > 0.0 => bail!(
                    "another rank refused the checkpoint in {} (see its error)",
                    dir.display()
                ),
                Ok(r) if votes[1] == 0.0 => {
                    if !problems.is_empty() && rank == 0 {
                        eprintln!("resuming from the previous checkpoint {}", dir.display());
                    }
                    found = Some(r);
                    break;
                }
                Ok(_) => problems.push(format!("{}: damaged on another rank", dir.display())),
                Err(checkpoint::RestoreError::Damaged(e)) => {
                    if rank == 0 || problems.is_empty() {
                        eprintln!("warning: checkpoint {} is unusable: {e:#}", dir.display());
                    }
                    problems.push(format!("{}: {e:#}", dir.display()));
                }
            }
        }
        if found.is_none() && !problems.is_empty() {
            bail!(
                "no usable checkpoint in {}:\n  {}",
                ck_root.display(),
                problems.join("\n  ")
            );
        }
        found
    } else {
        // A fresh run discards a finished run's checkpoints and refuses to discard an
        // interrupted one's (as the one-process trainer does); rank 0 decides for all.
        let r = if rank == 0 {
            checkpoint::clear_finished(&ck_root)
        } else {
            Ok(())
        };
        agree(
            comm,
            r,
            "rank 0 refused to start over the checkpoints in the output folder",
        )?;
        None
    };
    let r = if rank == 0 && tc.keep_last > 0 {
        std::fs::create_dir_all(&ck_root)
            .with_context(|| format!("{}: cannot create", ck_root.display()))
            .and_then(|_| checkpoint::mark_complete(&ck_root, false))
    } else {
        Ok(())
    };
    agree(comm, r, "rank 0 could not prepare the checkpoint folder")?;
    if opts.resume && restored.is_none() && rank == 0 {
        eprintln!(
            "warning: no checkpoint in {}; training from the beginning",
            ck_root.display()
        );
    }
    if let Some(r) = restored {
        let p = r.progress;
        shard = ShardedEmbeddings::new(r.layer);
        step = p.step;
        loss_ema = p.loss_ema;
        match &p.selection {
            Some(st) => sel.restore(st),
            // Written before the selection state was kept: its best value and step only.
            None => {
                sel.best = p.best.map(|(v, s)| (v, s, mfh_metrics::Report::default()));
                sel.since_best = p.since_best;
            }
        }
        resume_at = (p.epoch, p.batches_done);
        if rank == 0 {
            eprintln!("resuming from step {step}");
            if let Some(from) = r.resharded_from {
                eprintln!(
                    "note: {} was written by {from} ranks, this run has {size}: its {} embedding rows were re-sharded from {from} to {size} ranks (each rank read all {from} shards and kept the rows it owns now)",
                    r.dir.display(),
                    r.rows_read
                );
            }
        }
    }
    comm.barrier();
    let mut skipped = mfh_data::SkipCounts::default();
    let eval_and_select = |state: &mut ModelState,
                           shard: &mut ShardedEmbeddings,
                           comm: &mut dyn Comm,
                           sel: &mut Selection,
                           step: u64,
                           loss_ema: Option<f64>|
     -> Result<bool> {
        let res = evaluate(
            state,
            shard,
            comm,
            &pipeline,
            &tc.valid_split,
            tc.batch_size,
        )?;
        let (value, _) = res.metric(&metric, &state.grid);
        if comm.rank() == 0 {
            eprintln!(
                "step {step}: train loss {}, {} {metric} {}",
                loss_ema
                    .map(|l| format!("{l:.4}"))
                    .unwrap_or_else(|| "-".into()),
                tc.valid_split,
                value
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
        // Every rank has the same metrics (predictions are all-gathered), so every rank
        // takes the same branch of the selection and joins the same collectives.
        let mut save = |state: &mut ModelState,
                        step: u64,
                        value: Option<f64>,
                        res: &mfh_artifact::EvalResult,
                        dir: &std::path::Path| {
            let info = SaveInfo {
                cfg,
                model_name: &model_name,
                layout: &layout,
                transforms: &transforms,
                seed,
                step,
                selection_split: &tc.valid_split,
                selection_metric: &metric,
                selection_value: value,
                metrics_json: &res.report.to_json(),
            };
            save_gathered(state, shard, comm, dir, &info)
        };
        sel.update(state, step, res, &mut save)
    };

    #[allow(clippy::too_many_arguments)]
    let checkpoint = |comm: &mut dyn Comm,
                      state: &mut ModelState,
                      adam: &Adam<f32>,
                      shard: &ShardedEmbeddings,
                      sel: &Selection,
                      step: u64,
                      loss_ema: Option<f64>,
                      (epoch, batches_done): (usize, u64)| {
        let p = checkpoint::Progress {
            step,
            epoch,
            batches_done,
            loss_ema,
            best: sel.best.as_ref().map(|b| (b.0, b.1)),
            since_best: sel.since_best,
            selection: Some(sel.snapshot()),
        };
        if tc.keep_last == 0 {
            // As in the one-process trainer: no checkpoints at all.
            return Ok(());
        }
        checkpoint::save(
            &ck_root,
            comm,
            &run,
            &p,
            state,
            adam,
            &shard.layer,
            tc.keep_last,
        )
    };
    'epochs: for epoch in resume_at.0..tc.epochs {
        let stream_opts = StreamOptions {
            batch_size: tc.batch_size,
            shuffle_buffer: tc.shuffle_buffer,
            seed: seed.wrapping_add(epoch as u64 * 0x9e37_79b9),
            prefetch: 4,
        };
        let mut reader =
            RankReader::open(&pipeline, &tc.train_split, stream_opts, mode, rank, size)?;
        let mut evaluated_at = u64::MAX;
        let mut stop = false;
        let mut batches_done = 0u64;
        let skip = if epoch == resume_at.0 { resume_at.1 } else { 0 };
        let mut exhausted = false;
        loop {
            let ts = Instant::now();
            let global_rows = match reader.next_into(&mut local.batch) {
                None => {
                    exhausted = true;
                    break;
                }
                Some(Ok(n)) => n,
                // The other ranks learn of it in their next id exchange, and stop too.
                Some(Err(e)) => return Err(fail_exchange(comm, &mut shard, &layout, e)),
            };
            batches_done += 1;
            if batches_done <= skip {
                // Trained on before the checkpoint this run resumed from.
                continue;
            }
            let read = ts.elapsed().as_secs_f64();
            let c0 = comm.stats();
            let lr = learning_rate(&tc.schedule, tc.lr, step, total_steps) as f32;
            let loss = train_step(
                &mut state,
                &mut shard,
                comm,
                &mut local,
                &mut adam,
                step + 1,
                lr,
            )?;
            if !loss.is_finite() {
                bail!("training diverged at step {}: the loss became {loss} (try a lower train.lr or train.embedding.lr)", step + 1);
            }
            step += 1;
            times.steps += 1;
            times.rows += global_rows as u64;
            times.rows_local += local.batch.n as u64;
            times.read_s += read;
            times.train_s += ts.elapsed().as_secs_f64();
            let c1 = comm.stats().since(&c0);
            add_stats(&mut times.comm, &c1);
            loss_ema = Some(match loss_ema {
                None => loss,
                Some(e) => 0.98 * e + 0.02 * loss,
            });
            if tc.eval_every > 0 && step.is_multiple_of(tc.eval_every) {
                stop = eval_and_select(&mut state, &mut shard, comm, &mut sel, step, loss_ema)?;
                evaluated_at = step;
            }
            if tc.max_steps > 0 && step >= tc.max_steps {
                stop = true;
            }
            let every = tc.checkpoint_every > 0 && step.is_multiple_of(tc.checkpoint_every);
            if every || evaluated_at == step {
                let at = (epoch, batches_done);
                checkpoint(comm, &mut state, &adam, &shard, &sel, step, loss_ema, at)?;
            }
            if stop {
                break;
            }
        }
        if let Some(s) = reader.stats() {
            skipped.merge(&s.skipped);
        }
        if let Some(c) = reader.close() {
            times.rows_decoded += c.rows_decoded;
            times.decode_s += c.decode_s;
            times.scan_s += c.scan_s;
        }
        if evaluated_at != step {
            stop |= eval_and_select(&mut state, &mut shard, comm, &mut sel, step, loss_ema)?;
            let at = if exhausted {
                (epoch + 1, 0)
            } else {
                (epoch, batches_done)
            };
            checkpoint(comm, &mut state, &adam, &shard, &sel, step, loss_ema, at)?;
        }
        if stop {
            break 'epochs;
        }
    }
    let r = if rank == 0 && tc.keep_last > 0 {
        checkpoint::mark_complete(&ck_root, true)
    } else {
        Ok(())
    };
    agree(comm, r, "rank 0 could not mark the run finished")?;
    let (best_value, best_step, report, history) = sel.outcome();
    let summary = TrainSummary {
        model_name,
        params,
        steps: step,
        best_step,
        best_value,
        metric,
        report,
        train_rows: transforms.rows,
        seconds: t0.elapsed().as_secs_f64(),
        samples_per_sec: if times.train_s > 0.0 {
            times.rows as f64 / times.train_s
        } else {
            0.0
        },
        skipped,
        history,
    };
    Ok((summary, times))
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

/// Tells the other ranks, in the id exchange they make next, that this rank could not
/// read its rows (they then stop too), and returns the error. `layout` gives the empty
/// batch's shape.
pub(crate) fn fail_exchange(
    comm: &mut dyn Comm,
    shard: &mut ShardedEmbeddings,
    layout: &mfh_data::FieldLayout,
    e: mfh_data::DataError,
) -> anyhow::Error {
    let empty = vec![
        MultiIds {
            offsets: vec![0],
            ids: Vec::new()
        };
        layout.multi.len()
    ];
    let input = SparseInput {
        n: 0,
        single: &[],
        multi: &empty,
    };
    let mut totals = [0, 1];
    shard.forward_summing(comm, &input, false, &mut [], 0, &mut totals);
    anyhow::Error::new(e).context(format!("rank {} could not read its rows", comm.rank()))
}

/// The error of a rank whose batch read fine when `failed` others' did not.
pub(crate) fn others_failed(failed: u64) -> anyhow::Error {
    anyhow::anyhow!("{failed} other rank(s) could not read their rows of this batch (see their error); stopping")
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
