//! The training loop: fit transforms on the train split, stream shuffled batches, step the
//! dense optimiser and the embedding rows, evaluate on the valid split each epoch (or every
//! N steps), keep the best model on disk, checkpoint, stop early when the metric stops
//! improving. One loop for every [`Engine`]; setting up is [`setup`]'s.

mod follow;
mod hooks;
mod setup;

use crate::check::model_spec;
use crate::checkpoint::{self, guard_params, Checkpointer, LoopState, Progress};
use crate::ctx::Ctx;
use crate::engine::{Engine, LocalEngine, Optimizers};
use crate::options::{TrainOptions, TrainSummary};
use crate::schedule::learning_rate;
use crate::selection::Selection;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mfh_artifact::{EvalResult, ModelState};
use mfh_config::Config;
use mfh_data::{SkipCounts, StreamOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Trains the chosen model section of `cfg` on this process and saves the best model to
/// `opts.out`; with `opts.resume`, continues from the newest intact checkpoint in
/// `out/checkpoints`.
pub fn train(cfg: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    train_with(cfg, opts, &mut LocalEngine::default())
}

/// The training loop, on any [`Engine`] (collective for a distributed one: every rank
/// calls it with the same config and options; rank 0 writes the files and the logs).
pub fn train_with(cfg: &Config, opts: &TrainOptions, eng: &mut dyn Engine) -> Result<TrainSummary> {
    let t0 = Instant::now();
    let tc = &cfg.train;
    // Before the first thread: S3 reads want one malloc arena (mfh_data::store).
    let side = cfg.data.side_tables.iter().map(|t| t.path.as_path());
    let follow = opts.follow.as_ref().map(|f| f.dir.as_path());
    mfh_data::store::before_threads(
        cfg.data
            .sources
            .iter()
            .map(|p| p.as_path())
            .chain(side)
            .chain(follow),
    );
    mfh_nn::use_threads(tc.threads.resolve());
    mfh_nn::set_precision(precision(tc.precision));
    let (model_name, spec) = model_spec(cfg, opts.model.as_deref())?;
    let setup::Setup {
        seed,
        transforms,
        transforms_sum,
        layout,
        pipeline,
        state,
        opt,
        resumed,
        ckpt_root,
        fit_s,
    } = setup::setup(cfg, opts, eng, &model_name, spec)?;
    let metric = tc.early_stopping.metric.clone();
    let ctx = Ctx {
        cfg,
        model_name: &model_name,
        layout: &layout,
        transforms: &transforms,
        seed,
        metric: &metric,
        pipeline: &pipeline,
        tensorboard: std::cell::RefCell::new(match &opts.tensorboard {
            Some(dir) if eng.rank() == 0 => Some(crate::tensorboard::Scalars::open(dir)?),
            _ => None,
        }),
    };
    let mut run = Loop::new(
        &ctx,
        opts,
        eng.rank() == 0,
        state,
        opt,
        transforms_sum,
        ckpt_root,
    );
    if let Some((dir, t)) = resumed {
        run.resume_from(dir, &t);
    }
    let params = run.state.net_mut().num_params();
    if run.lead {
        announce(
            &ctx,
            params,
            &run.state,
            eng.size(),
            (t0.elapsed().as_secs_f64(), fit_s),
        );
    }
    if let Some(f) = &opts.follow {
        // Before the epochs, not after them.
        if eng.size() > 1 {
            bail!("--follow trains on one process (the ranks would each need the same view of the folder)");
        }
        // A prefix of objects is listed as it is (it may be empty yet).
        if !f.dir.is_dir() && !mfh_data::store::is_object_url(&f.dir) {
            bail!("--follow {}: not a folder", f.dir.display());
        }
    }
    let start_epoch = if run.p.finished {
        tc.epochs
    } else {
        run.p.epoch
    };
    // A run resumed while following files goes on following (its epochs are over).
    if run.p.follow_first.is_some() && opts.follow.is_none() {
        bail!("the checkpoint resumed was following a folder: resume with --follow");
    }
    if run.p.follow_first.is_none() {
        for epoch in start_epoch..tc.epochs {
            if run.epoch(eng, epoch)? {
                break;
            }
        }
    }
    if let Some(f) = &opts.follow {
        run.follow(eng, f)?;
    }
    run.finish(eng, t0, params)
}

/// The "training `…`" line, with the seconds set-up took (and its statistics pass).
fn announce(ctx: &Ctx, params: usize, state: &ModelState, size: usize, setup_s: (f64, f64)) {
    let tc = &ctx.cfg.train;
    let ranks = if size > 1 {
        format!(
            " over {size} ranks ({} rows per rank per step)",
            tc.batch_size.div_ceil(size)
        )
    } else {
        String::new()
    };
    eprintln!(
        "training `{}` ({params} dense parameters) on {} rows × {} epochs, {} tasks{ranks}; {} threads, kernel path {}, {} products; set up in {:.2} s (statistics pass {:.2} s)",
        ctx.model_name,
        ctx.transforms.rows,
        tc.epochs,
        state.grid.n_tasks(),
        mfh_nn::threads(),
        mfh_cpu::path(),
        mfh_nn::precision(),
        setup_s.0,
        setup_s.1
    );
}

/// The products' precision for `train.precision`.
pub fn precision(p: mfh_config::Precision) -> mfh_nn::Precision {
    match p {
        mfh_config::Precision::F32 => mfh_nn::Precision::F32,
        mfh_config::Precision::Bf16 => mfh_nn::Precision::Bf16,
    }
}

/// The loop's state across epochs.
struct Loop<'a> {
    ctx: &'a Ctx<'a>,
    opts: &'a TrainOptions,
    lead: bool,
    state: ModelState,
    opt: Optimizers,
    sel: Selection,
    ck: Checkpointer<'a>,
    p: Progress,
    skipped: SkipCounts,
    /// Where the resumed epoch picks up: batches to skip, and the loop's flags then.
    resume_at: Option<(u64, bool, bool)>,
    /// Seconds in training steps (not evaluation, not checkpoints).
    train_time: f64,
    total_steps: u64,
    /// The step of the last version published to `opts.publish` (none yet: `None`).
    published_at: Option<u64>,
}

/// How an epoch's batch loop ended.
struct Batches {
    stop: bool,
    /// The step of the last evaluation in the loop (`u64::MAX`: none).
    evaluated_at: u64,
    /// The epoch was read to its end (else a stop cut it short).
    exhausted: bool,
}

impl<'a> Loop<'a> {
    fn new(
        ctx: &'a Ctx<'a>,
        opts: &'a TrainOptions,
        lead: bool,
        state: ModelState,
        opt: Optimizers,
        transforms_sum: String,
        ckpt_root: PathBuf,
    ) -> Self {
        let tc = &ctx.cfg.train;
        let mut sel = Selection::new(
            ctx.metric,
            tc.early_stopping.patience,
            &opts.out,
            opts.keep_checkpoints.then(|| opts.out.join("checkpoints")),
        );
        sel.verbose = lead;
        let steps_per_epoch = ctx.transforms.rows.div_ceil(tc.batch_size as u64);
        let total_steps = if tc.max_steps > 0 {
            tc.max_steps.min(steps_per_epoch * tc.epochs as u64)
        } else {
            steps_per_epoch * tc.epochs as u64
        };
        Loop {
            ctx,
            opts,
            lead,
            state,
            opt,
            sel,
            ck: Checkpointer {
                root: ckpt_root,
                keep_last: tc.keep_last,
                model_name: ctx.model_name,
                seed: ctx.seed,
                config: checkpoint::config_fingerprint(ctx.cfg),
                transforms: transforms_sum,
                last: None,
            },
            p: Progress::default(),
            skipped: SkipCounts::default(),
            resume_at: None,
            train_time: 0.0,
            total_steps,
            published_at: None,
        }
    }

    /// Publishes the current model to `opts.publish` (collective), once per step.
    fn publish(&mut self, eng: &mut dyn Engine) -> Result<()> {
        let (Some(p), step) = (&self.opts.publish, self.p.step) else {
            return Ok(());
        };
        if self.published_at == Some(step) {
            return Ok(());
        }
        let v = crate::publish::publish(self.ctx, eng, &mut self.state, step, p)?;
        self.published_at = Some(step);
        if self.lead && self.opts.progress {
            eprintln!(
                "published version {v} (step {step}) to {}",
                p.root.display()
            );
        }
        Ok(())
    }

    /// Takes up where the checkpoint in `dir` left off.
    fn resume_from(&mut self, dir: PathBuf, t: &LoopState) {
        let tc = &self.ctx.cfg.train;
        self.sel.restore(&t.selection);
        for (k, n, ex) in &t.skipped {
            self.skipped.by_kind.insert(k.clone(), (*n, ex.clone()));
        }
        let p = &mut self.p;
        *p = Progress {
            step: t.step,
            epoch: t.epoch,
            batches_done: t.batches_done,
            evaluated_now: t.evaluated_now,
            stop: t.stop,
            finished: t.finished,
            loss_ema: t.loss_ema.map(f64::from_bits),
            seen: t.seen,
            follow: t.follow_files.clone(),
            follow_first: t.follow_first,
        };
        // A stop recorded then holds now only if its reason still does: patience run
        // out, or `max_steps` reached under this run's config (a resume may train on).
        let sel = &self.sel;
        let max_steps_reached = tc.max_steps > 0 && t.step >= tc.max_steps;
        let stops = (sel.patience > 0 && sel.since_best >= sel.patience) || max_steps_reached;
        // Format 1 recorded an epoch cut short by a stop as finished: keep it stopped.
        if t.format_version >= 2 {
            p.stop = (p.stop && stops) || max_steps_reached;
            p.finished &= stops;
        }
        self.resume_at = Some((t.batches_done, t.evaluated_now, p.stop));
        self.ck.last = Some(dir);
    }

    /// One epoch: its batches, then (unless the loop just did) an evaluation and a
    /// checkpoint. Returns whether training stops.
    fn epoch(&mut self, eng: &mut dyn Engine, epoch: usize) -> Result<bool> {
        let tc = &self.ctx.cfg.train;
        self.p.epoch = epoch;
        let (skip, evaluated_at, stop) = match self.resume_at.take() {
            Some((b, ev, stop)) => (b, if ev { self.p.step } else { u64::MAX }, stop),
            None => (0, u64::MAX, false),
        };
        self.p.batches_done = skip;
        let pb = bar(self.ctx.transforms.rows, self.opts.progress && self.lead);
        if let Some(live) = &self.opts.hooks.progress {
            live.epoch.store(epoch as u64, Relaxed);
            live.epochs.store(tc.epochs as u64, Relaxed);
            live.rows_per_epoch.store(self.ctx.transforms.rows, Relaxed);
            live.rows_done.store(0, Relaxed);
        }
        pb.set_prefix(format!("epoch {}/{}", epoch + 1, tc.epochs));
        let stream_opts = StreamOptions {
            batch_size: tc.batch_size,
            shuffle_buffer: tc.shuffle_buffer,
            seed: self.ctx.seed.wrapping_add(epoch as u64 * 0x9e37_79b9),
            prefetch: 4,
        };
        // A run resumed after its batch loop stopped early does not read the epoch again
        // (the uninterrupted run did not finish reading it either).
        let reading = !stop;
        let b = if reading {
            let r = eng.open_epoch(self.ctx.pipeline, &tc.train_split, stream_opts);
            eng.agree(r, "another rank could not open the train split")?;
            self.batches(eng, epoch, &pb, skip, evaluated_at)?
        } else {
            Batches {
                stop,
                evaluated_at,
                exhausted: false,
            }
        };
        // The skip counts of the completed epochs: a checkpoint of an epoch cut short
        // leaves this epoch's out (a resume reads it again).
        let before = self.skipped.clone();
        if reading {
            self.skipped.merge(&eng.close_epoch());
        }
        pb.finish_and_clear();
        let mut stop = b.stop;
        if b.evaluated_at != self.p.step {
            stop |= self.evaluate(eng, epoch, self.p.step)?;
            // Where a resume picks up: the next epoch, or this one's next batch when a
            // stop cut it short (a resume with a larger `max_steps` trains on).
            let after = if b.exhausted {
                Progress {
                    epoch: epoch + 1,
                    batches_done: 0,
                    evaluated_now: true,
                    stop: false,
                    finished: stop,
                    ..self.p.clone()
                }
            } else {
                Progress {
                    evaluated_now: true,
                    stop,
                    finished: stop,
                    ..self.p.clone()
                }
            };
            let counts = if b.exhausted { &self.skipped } else { &before };
            let (ctx, sel) = (self.ctx, &self.sel);
            self.ck
                .save(ctx, eng, &mut self.state, &self.opt, sel, counts, &after)?;
        }
        Ok(stop)
    }

    /// The epoch's batch loop: steps, and the evaluations and checkpoints due on the way.
    fn batches(
        &mut self,
        eng: &mut dyn Engine,
        epoch: usize,
        pb: &ProgressBar,
        skip: u64,
        mut evaluated_at: u64,
    ) -> Result<Batches> {
        let tc = &self.ctx.cfg.train;
        let mut stop = false;
        let mut te = Instant::now();
        let mut to_skip = skip;
        let mut exhausted = true;
        while let Some(rows) = eng.next_batch() {
            let rows = rows?;
            if to_skip > 0 {
                // Already trained on before the checkpoint this run resumed from.
                to_skip -= 1;
                pb.inc(rows as u64);
                self.report(rows);
                te = Instant::now();
                continue;
            }
            self.step(eng, rows)?;
            let step = self.p.step;
            pb.inc(rows as u64);
            self.report(rows);
            if step.is_multiple_of(20) {
                pb.set_message(format!("loss {:.4}", self.p.loss_ema.unwrap_or(0.0)));
            }
            self.p.evaluated_now = false;
            if tc.eval_every > 0 && step.is_multiple_of(tc.eval_every) {
                self.train_time += te.elapsed().as_secs_f64();
                stop = pb.suspend(|| self.evaluate(eng, epoch, step))?;
                evaluated_at = step;
                self.p.evaluated_now = true;
                te = Instant::now();
            }
            if tc.max_steps > 0 && step >= tc.max_steps {
                stop = true;
            }
            let every = tc.checkpoint_every > 0 && step.is_multiple_of(tc.checkpoint_every);
            if every || self.p.evaluated_now {
                self.p.stop = stop;
                pb.suspend(|| {
                    let (ctx, sel, skipped) = (self.ctx, &self.sel, &self.skipped);
                    self.ck
                        .save(ctx, eng, &mut self.state, &self.opt, sel, skipped, &self.p)
                })?;
                te = Instant::now();
            }
            if let Some(p) = &self.opts.publish {
                if p.every > 0 && step.is_multiple_of(p.every) {
                    pb.suspend(|| self.publish(eng))?;
                    te = Instant::now();
                }
            }
            if stop {
                exhausted = false;
                break;
            }
            if self.stop_requested() {
                return Err(self.interrupt(eng, every || self.p.evaluated_now)?.into());
            }
        }
        if evaluated_at != self.p.step {
            self.train_time += te.elapsed().as_secs_f64();
        }
        Ok(Batches {
            stop,
            evaluated_at,
            exhausted,
        })
    }

    /// One training step on the batch just read (`rows` of the global batch).
    fn step(&mut self, eng: &mut dyn Engine, rows: usize) -> Result<()> {
        let tc = &self.ctx.cfg.train;
        let step = self.p.step;
        // Followed files train at a constant rate (the schedule is the epochs').
        let lr = if self.p.follow_first.is_some() {
            tc.lr as f32
        } else {
            learning_rate(&tc.schedule, tc.lr, step, self.total_steps) as f32
        };
        let loss = eng.step(&mut self.state, &mut self.opt, step + 1, lr)?;
        if !loss.is_finite() {
            bail!(
                "training diverged at step {}: the loss became {loss} (try a lower train.lr or train.embedding.lr); {}",
                step + 1,
                self.ck.last_good()
            );
        }
        let p = &mut self.p;
        p.step += 1;
        p.batches_done += 1;
        p.seen += rows as u64;
        p.loss_ema = Some(match p.loss_ema {
            None => loss,
            Some(e) => 0.98 * e + 0.02 * loss,
        });
        if let (Some(tb), Some(l)) = (self.ctx.tensorboard.borrow_mut().as_mut(), p.loss_ema) {
            tb.train_loss(p.step, l);
        }
        Ok(())
    }

    fn evaluate(&mut self, eng: &mut dyn Engine, epoch: usize, step: u64) -> Result<bool> {
        if let Some(live) = &self.opts.hooks.progress {
            live.evaluations.fetch_add(1, Relaxed);
        }
        eval_and_select(
            self.ctx,
            eng,
            &mut self.state,
            &mut self.sel,
            &self.ck,
            epoch,
            step,
            self.p.loss_ema,
        )
    }

    /// The end of the run: what was skipped and evicted, the checkpoints marked finished,
    /// the summary.
    fn finish(mut self, eng: &mut dyn Engine, t0: Instant, params: usize) -> Result<TrainSummary> {
        // The last state, published whatever the cadence.
        self.publish(eng)?;
        let tc = &self.ctx.cfg.train;
        let lead = self.lead;
        let (best_value, best_step, report, history) = self.sel.outcome();
        let skipped = self.skipped;
        if lead && skipped.total() > 0 {
            eprintln!("skipped rows (on_error = \"skip\"):\n{}", skipped.report());
        }
        let lifecycle = lifecycle_report(&self.state.emb);
        if lead && !lifecycle.is_empty() {
            eprintln!("embedding lifecycle (this run):\n{lifecycle}");
        }
        let r = if lead && tc.keep_last > 0 {
            checkpoint::mark_complete(&self.ck.root, true)
        } else {
            Ok(())
        };
        eng.agree(r, "rank 0 could not mark the run finished")?;
        let p = &self.p;
        Ok(TrainSummary {
            model_name: self.ctx.model_name.to_string(),
            params,
            steps: p.step,
            best_step,
            best_value,
            metric: self.ctx.metric.to_string(),
            report,
            train_rows: self.ctx.transforms.rows,
            seconds: t0.elapsed().as_secs_f64(),
            samples_per_sec: if self.train_time > 0.0 {
                p.seen as f64 / self.train_time
            } else {
                0.0
            },
            skipped,
            history,
        })
    }
}

/// Evaluates the valid split, logs it (rank 0), and lets the selection save the model
/// when it improved; returns whether to stop early.
#[allow(clippy::too_many_arguments)]
fn eval_and_select(
    ctx: &Ctx,
    eng: &mut dyn Engine,
    state: &mut ModelState,
    sel: &mut Selection,
    ck: &Checkpointer,
    epoch: usize,
    step: u64,
    loss_ema: Option<f64>,
) -> Result<bool> {
    let tc = &ctx.cfg.train;
    guard_params(state, step, ck)?;
    let res = eng.evaluate(state, ctx.pipeline, &tc.valid_split, tc.batch_size)?;
    if let Some(tb) = ctx.tensorboard.borrow_mut().as_mut() {
        tb.evaluation(step, &tc.valid_split, &res);
    }
    if eng.rank() == 0 {
        log_eval(
            epoch,
            step,
            loss_ema,
            &tc.valid_split,
            &res,
            ctx.metric,
            &state.grid,
        );
    }
    // Every rank has the same metrics, so every rank takes the same branch of the
    // selection and joins the same collectives in the save.
    let mut save =
        |state: &mut ModelState, step: u64, value: Option<f64>, res: &EvalResult, dir: &Path| {
            let json = res.report.to_json();
            eng.save_model(state, dir, &ctx.save_info(step, value, &json))
        };
    sel.update(state, step, res, &mut save)
        .map_err(|e| stopped(e, step, ck))
}

/// A failure to save the model at an evaluation, with where training can resume from.
fn stopped(e: anyhow::Error, step: u64, ck: &Checkpointer) -> anyhow::Error {
    e.context(format!(
        "training stopped at step {step}: cannot save the model; {}",
        ck.last_good()
    ))
}

fn log_eval(
    epoch: usize,
    step: u64,
    loss: Option<f64>,
    split: &str,
    res: &EvalResult,
    metric: &str,
    grid: &mfh_config::TaskGrid,
) {
    let (value, _) = res.metric(metric, grid);
    eprintln!(
        "epoch {} step {step}: train loss {:.4}, {split} loss {:.4}, {metric} {}",
        epoch + 1,
        loss.unwrap_or(f64::NAN),
        res.loss,
        value
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into())
    );
}

fn bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} rows {per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// Per table with admission, expiry or a cap: rows now, rows admitted, lookups still
/// pending admission, rows evicted (empty when no table has any of these).
fn lifecycle_report(emb: &mfh_embedding::EmbeddingLayer) -> String {
    let mut s = String::new();
    for t in emb.tables() {
        let lc = &t.spec().lifecycle;
        if lc.admit_after <= 1 && lc.ttl_steps == 0 && lc.max_rows == 0 {
            continue;
        }
        let st = t.lifecycle_stats();
        s.push_str(&format!(
            "  {:<24} rows {:>9}  admitted {:>9}  pending lookups {:>9}  evicted {:>9}\n",
            t.name(),
            t.len(),
            st.admitted,
            st.pending_lookups,
            st.evicted
        ));
    }
    s
}
