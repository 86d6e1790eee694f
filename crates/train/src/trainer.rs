//! The training loop: fit transforms on the train split, stream shuffled batches, step the
//! dense optimiser and the embedding rows, evaluate on the valid split each epoch (or every
//! N steps), keep the best model on disk, stop early when the metric stops improving.

use crate::checkpoint::{self, guard_params, Checkpointer, Progress};
use crate::engine::{Engine, LocalEngine, Optimizers};
use crate::schedule::learning_rate;
use crate::selection::Selection;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mfh_artifact::{fresh_state, load_model, EvalResult, ModelState, SaveInfo};
use mfh_config::Config;
use mfh_data::{Pipeline, StreamOptions};
use mfh_metrics::Report;
use mfh_model::ModelSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub model: Option<String>,
    pub out: PathBuf,
    pub seed: Option<u64>,
    /// Show progress bars (they also hide themselves when stderr is not a terminal).
    pub progress: bool,
    /// Also save the model at every evaluation, to `out/checkpoints/stepN` (for per-cell
    /// checkpoint selection).
    pub keep_checkpoints: bool,
    /// Continue from the newest intact checkpoint in `out/checkpoints` (see
    /// [`crate::checkpoint`]); train from the beginning when there is none.
    pub resume: bool,
    /// Warm start: begin from this trained model folder (dense weights, embedding rows
    /// and their optimizer state, fitted statistics unless `train.refit_transforms`).
    /// Ignored when `resume` finds a checkpoint (the run being resumed began warm).
    pub init_from: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub model_name: String,
    pub params: usize,
    pub steps: u64,
    pub best_step: u64,
    pub best_value: Option<f64>,
    pub metric: String,
    /// The selection split's metrics of the saved model.
    pub report: Report,
    pub train_rows: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
    pub skipped: mfh_data::SkipCounts,
    /// The selection split's metrics at every evaluation (step, report).
    pub history: Vec<(u64, Report)>,
}

/// What `mfh check` prints: the resolved grid, features and splits.
pub struct CheckSummary {
    pub text: String,
}

/// Parses the model section `name` (or the default) into a spec.
pub fn model_spec(cfg: &Config, name: Option<&str>) -> Result<(String, ModelSpec)> {
    let (name, table) = cfg.model_section(name)?;
    let spec: ModelSpec =
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                anyhow!(
                    "{}: key `models.{name}`: {}",
                    cfg.source_file.display(),
                    e.message()
                )
            })?;
    Ok((name.to_string(), spec))
}

/// Validates a config against its data without training.
pub fn check(cfg: &Config, count_rows: bool) -> Result<CheckSummary> {
    let mut p = Pipeline::new(cfg)?;
    let grid = cfg.grid();
    let mut s = String::new();
    use std::fmt::Write;
    writeln!(s, "config: {}", cfg.source_file.display())?;
    writeln!(
        s,
        "sources: {}",
        cfg.data
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for t in &cfg.data.side_tables {
        writeln!(
            s,
            "side table `{}`: {} joined on {} = {}",
            t.name,
            t.path.display(),
            t.join_column(),
            t.key
        )?;
    }
    writeln!(
        s,
        "task grid: {} behaviours × {} cells = {} tasks",
        grid.n_behaviours(),
        grid.n_cells(),
        grid.n_tasks()
    )?;
    for (b, bin) in grid.behaviours.iter().zip(&grid.binary) {
        writeln!(
            s,
            "  behaviour {b} ({})",
            if *bin {
                "binary, logloss"
            } else {
                "regression, MSE"
            }
        )?;
    }
    for (f, vals) in &grid.facets {
        writeln!(s, "  facet {f}: {}", vals.join(" | "))?;
    }
    writeln!(s, "  cells: {}", grid.cell_names().join("; "))?;
    let l = p.layout();
    let emb_width: usize =
        l.single.iter().map(|f| f.2).sum::<usize>() + l.multi.iter().map(|f| f.2).sum::<usize>();
    writeln!(
        s,
        "features: {} embedded ({} multi-valued), {} numeric; network input width {}",
        l.single.len() + l.multi.len(),
        l.multi.len(),
        l.dense.len(),
        emb_width + l.dense.len()
    )?;
    for f in &cfg.features {
        let what = match f {
            mfh_config::FeatureConfig::Categorical { dim, .. } => format!("categorical, dim {dim}"),
            mfh_config::FeatureConfig::Multi {
                dim,
                separator,
                pooling,
                ..
            } => {
                format!("multi-valued (`{separator}`), {pooling:?} pooling, dim {dim}")
            }
            mfh_config::FeatureConfig::Numeric { transform, .. } => {
                format!("numeric {transform:?}")
            }
            mfh_config::FeatureConfig::Bucketized { dim, .. } => format!("bucketized, dim {dim}"),
        };
        writeln!(s, "  {} ← {}: {what}", f.name(), f.column())?;
    }
    for name in cfg.models.keys() {
        let (_, spec) = model_spec(cfg, Some(name))?;
        writeln!(s, "model `{name}`: {spec:?}")?;
    }
    for (name, sp) in &cfg.splits {
        let how = sp
            .predicate
            .clone()
            .unwrap_or_else(|| format!("rows from {}", sp.rows.as_ref().unwrap().display()));
        if count_rows {
            let stats = p
                .fit(name)
                .with_context(|| format!("reading split `{name}`"))?;
            writeln!(s, "split {name}: {how}: {} rows", stats.rows_used)?;
            if stats.skipped.total() > 0 {
                write!(s, "{}", stats.skipped.report())?;
            }
        } else {
            writeln!(s, "split {name}: {how}")?;
        }
    }
    Ok(CheckSummary { text: s })
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
    let threads = tc.threads.resolve();
    mfh_nn::use_threads(threads);
    let (model_name, spec) = model_spec(cfg, opts.model.as_deref())?;
    let (rank, size) = (eng.rank(), eng.size());
    let lead = rank == 0;
    let r = if lead {
        prepare_out(&opts.out, tc.keep_last > 0)
    } else {
        Ok(())
    };
    eng.agree(r, "rank 0 could not prepare the output folder")?;
    let ckpt_root = checkpoint::root(&opts.out);
    let restored = if opts.resume {
        let r = checkpoint::latest(&ckpt_root, eng)?;
        if r.is_none() && lead {
            eprintln!(
                "no checkpoint in {}: training from the beginning",
                ckpt_root.display()
            );
        }
        r
    } else {
        let r = if lead {
            checkpoint::clear_finished(&ckpt_root)
        } else {
            Ok(())
        };
        eng.agree(
            r,
            "rank 0 refused to start over the checkpoints in the output folder",
        )?;
        None
    };
    // Setup reads files on every rank: a failure on any stops every rank together.
    let setup = (|| -> Result<_> {
        let seed = match &restored {
            Some(r) => check_resumable(cfg, &model_name, opts.seed, r)?,
            None => opts.seed.unwrap_or(tc.seed),
        };

        // Warm start (a resumed run already holds its warm-started state).
        let init = match (&opts.init_from, &restored) {
            (Some(dir), None) => {
                Some(load_model(dir).with_context(|| format!("--init-from {}", dir.display()))?)
            }
            _ => None,
        };
        let mut pipeline = Pipeline::new(cfg)?;
        let fit = pipeline
            .fit(&tc.train_split)
            .with_context(|| format!("reading the train split `{}`", tc.train_split))?;
        if let Some(m) = &init {
            if !tc.refit_transforms {
                // Yesterday's statistics, today's row and label counts.
                let mut t = pipeline.transforms.clone();
                t.features = m.transforms.features.clone();
                pipeline.set_transforms(t)?;
            }
        }
        let transforms = pipeline.transforms.clone();
        check_trainable(cfg, &transforms, fit.rows_read)?;
        let transforms_sum = checkpoint::transforms_sum(&transforms)?;
        let layout = pipeline.layout().clone();
        let pipeline = Arc::new(pipeline);
        let (mut state, opt, resumed) = match restored {
            Some(r) => {
                if r.trainer.transforms != transforms_sum {
                    bail!(
                        "{}: the train split `{}` no longer reads as it did when the checkpoint was written (its fitted statistics differ): the data changed; train again without --resume",
                        r.dir.display(),
                        tc.train_split
                    );
                }
                if lead {
                    eprintln!(
                        "resuming from {} (step {})",
                        r.dir.display(),
                        r.trainer.step
                    );
                    let e = &tc.embedding;
                    if e.admit_after > 1 || e.ttl_steps > 0 || e.max_rows > 0 {
                        // embeddings.bin holds the rows and their optimiser state, not the
                        // admission sketch or the rows' use counts and ages.
                        eprintln!(
                            "warning: with train.embedding admit_after, ttl_steps or max_rows the resumed run is close to, not bit for bit, an uninterrupted one (sighting counts and row ages start afresh)"
                        );
                    }
                    if r.trainer.world_size != size {
                        eprintln!(
                            "note: the checkpoint was written by {} rank(s), this run has {size}: its rows are re-sharded",
                            r.trainer.world_size.max(1)
                        );
                    }
                }
                (r.state, r.opt, Some((r.dir, r.trainer)))
            }
            None => (
                match init {
                    Some(m) => warm_state(cfg, &layout, spec, m)?,
                    None => fresh_state(cfg, &layout, spec, seed)?,
                },
                Optimizers::new(tc.weight_decay),
                None,
            ),
        };
        eng.check(cfg, &mut state)?;
        eng.adopt(&mut state)?;
        Ok((
            seed,
            transforms,
            transforms_sum,
            layout,
            pipeline,
            state,
            opt,
            resumed,
        ))
    })();
    let ok = eng.all_ok(setup.is_ok());
    let (seed, transforms, transforms_sum, layout, pipeline, mut state, mut opt, resumed) = setup?;
    if !ok {
        bail!("another rank could not set up the run (see its error)");
    }
    // From here on the checkpoints are this run's, unfinished until it ends.
    let r = if lead {
        checkpoint::mark_complete(&ckpt_root, false)
    } else {
        Ok(())
    };
    eng.agree(r, "rank 0 could not mark the checkpoints unfinished")?;
    let params = state.net_mut().num_params();
    let metric = tc.early_stopping.metric.clone();
    let steps_per_epoch = transforms.rows.div_ceil(tc.batch_size as u64);
    let total_steps = if tc.max_steps > 0 {
        tc.max_steps.min(steps_per_epoch * tc.epochs as u64)
    } else {
        steps_per_epoch * tc.epochs as u64
    };

    let mut sel = Selection::new(
        &metric,
        tc.early_stopping.patience,
        &opts.out,
        opts.keep_checkpoints.then(|| opts.out.join("checkpoints")),
    );
    sel.verbose = lead;
    let mut ck = Checkpointer {
        root: ckpt_root,
        keep_last: tc.keep_last,
        model_name: &model_name,
        seed,
        config: checkpoint::config_fingerprint(cfg),
        transforms: transforms_sum,
        last: None,
    };
    let mut p = Progress::default();
    let mut skipped = mfh_data::SkipCounts::default();
    // Where the resumed epoch picks up: batches to skip, and the loop's flags then.
    let mut resume_at: Option<(u64, bool, bool)> = None;
    if let Some((dir, t)) = resumed {
        sel.restore(&t.selection);
        for (k, n, ex) in &t.skipped {
            skipped.by_kind.insert(k.clone(), (*n, ex.clone()));
        }
        p = Progress {
            step: t.step,
            epoch: t.epoch,
            batches_done: t.batches_done,
            evaluated_now: t.evaluated_now,
            stop: t.stop,
            finished: t.finished,
            loss_ema: t.loss_ema.map(f64::from_bits),
            seen: t.seen,
        };
        // A stop recorded then holds now only if its reason still does: patience run
        // out, or `max_steps` reached under this run's config (a resume may train on).
        let max_steps_reached = tc.max_steps > 0 && t.step >= tc.max_steps;
        let stops = (sel.patience > 0 && sel.since_best >= sel.patience) || max_steps_reached;
        // Format 1 recorded an epoch cut short by a stop as finished: keep it stopped.
        if t.format_version >= 2 {
            p.stop = (p.stop && stops) || max_steps_reached;
            p.finished &= stops;
        }
        resume_at = Some((t.batches_done, t.evaluated_now, p.stop));
        ck.last = Some(dir);
    }
    let mut train_time = 0.0;
    let ctx = Ctx {
        cfg,
        model_name: &model_name,
        layout: &layout,
        transforms: &transforms,
        seed,
        metric: &metric,
        pipeline: &pipeline,
    };
    if lead {
        let ranks = if size > 1 {
            format!(
                " over {size} ranks ({} rows per rank per step)",
                tc.batch_size.div_ceil(size)
            )
        } else {
            String::new()
        };
        eprintln!(
            "training `{model_name}` ({params} dense parameters) on {} rows × {} epochs, {} tasks{ranks}; {} threads, kernel path {}",
            transforms.rows,
            tc.epochs,
            state.grid.n_tasks(),
            mfh_nn::threads(),
            mfh_cpu::path()
        );
    }
    let start_epoch = if p.finished { tc.epochs } else { p.epoch };
    'epochs: for epoch in start_epoch..tc.epochs {
        p.epoch = epoch;
        let (skip, mut evaluated_at, mut stop) = match resume_at.take() {
            Some((b, ev, stop)) => (b, if ev { p.step } else { u64::MAX }, stop),
            None => (0, u64::MAX, false),
        };
        p.batches_done = skip;
        let pb = bar(transforms.rows, opts.progress && lead);
        pb.set_prefix(format!("epoch {}/{}", epoch + 1, tc.epochs));
        let stream_opts = StreamOptions {
            batch_size: tc.batch_size,
            shuffle_buffer: tc.shuffle_buffer,
            seed: seed.wrapping_add(epoch as u64 * 0x9e37_79b9),
            prefetch: 4,
        };
        // A run resumed after its batch loop stopped early does not read the epoch again
        // (the uninterrupted run did not finish reading it either).
        let reading = !stop;
        if reading {
            let r = eng.open_epoch(&pipeline, &tc.train_split, stream_opts);
            eng.agree(r, "another rank could not open the train split")?;
        }
        let mut te = Instant::now();
        let mut to_skip = skip;
        // Whether the epoch was read to its end (else a stop cut it short).
        let mut exhausted = reading;
        while let Some(rows) = reading.then(|| eng.next_batch()).flatten() {
            let rows = rows?;
            if to_skip > 0 {
                // Already trained on before the checkpoint this run resumed from.
                to_skip -= 1;
                pb.inc(rows as u64);
                te = Instant::now();
                continue;
            }
            let step = p.step;
            let lr = learning_rate(&tc.schedule, tc.lr, step, total_steps) as f32;
            let loss = eng.step(&mut state, &mut opt, step + 1, lr)?;
            if !loss.is_finite() {
                bail!(
                    "training diverged at step {}: the loss became {loss} (try a lower train.lr or train.embedding.lr); {}",
                    step + 1,
                    ck.last_good()
                );
            }
            p.step += 1;
            p.batches_done += 1;
            p.seen += rows as u64;
            p.loss_ema = Some(match p.loss_ema {
                None => loss,
                Some(e) => 0.98 * e + 0.02 * loss,
            });
            let step = p.step;
            pb.inc(rows as u64);
            if step.is_multiple_of(20) {
                pb.set_message(format!("loss {:.4}", p.loss_ema.unwrap_or(0.0)));
            }
            p.evaluated_now = false;
            if tc.eval_every > 0 && step.is_multiple_of(tc.eval_every) {
                train_time += te.elapsed().as_secs_f64();
                let now = pb.suspend(|| {
                    eval_and_select(
                        &ctx, eng, &mut state, &mut sel, &ck, epoch, step, p.loss_ema,
                    )
                })?;
                stop = now;
                evaluated_at = step;
                p.evaluated_now = true;
                te = Instant::now();
            }
            if tc.max_steps > 0 && step >= tc.max_steps {
                stop = true;
            }
            let every = tc.checkpoint_every > 0 && step.is_multiple_of(tc.checkpoint_every);
            if every || p.evaluated_now {
                p.stop = stop;
                pb.suspend(|| ck.save(&ctx, eng, &mut state, &opt, &sel, &skipped, &p))?;
                te = Instant::now();
            }
            if stop {
                exhausted = false;
                break;
            }
        }
        if evaluated_at != p.step {
            train_time += te.elapsed().as_secs_f64();
        }
        // The skip counts of the completed epochs: a checkpoint of an epoch cut short
        // leaves this epoch's out (a resume reads it again).
        let before = skipped.clone();
        if reading {
            skipped.merge(&eng.close_epoch());
        }
        pb.finish_and_clear();
        if evaluated_at != p.step {
            stop |= eval_and_select(
                &ctx, eng, &mut state, &mut sel, &ck, epoch, p.step, p.loss_ema,
            )?;
            // Where a resume picks up: the next epoch, or this one's next batch when a
            // stop cut it short (a resume with a larger `max_steps` trains on).
            let after = if exhausted {
                Progress {
                    epoch: epoch + 1,
                    batches_done: 0,
                    evaluated_now: true,
                    stop: false,
                    finished: stop,
                    ..p.clone()
                }
            } else {
                Progress {
                    evaluated_now: true,
                    stop,
                    finished: stop,
                    ..p.clone()
                }
            };
            let counts = if exhausted { &skipped } else { &before };
            ck.save(&ctx, eng, &mut state, &opt, &sel, counts, &after)?;
        }
        if stop {
            break 'epochs;
        }
    }
    let (best_value, best_step, report, history) = sel.outcome();
    if lead && skipped.total() > 0 {
        eprintln!("skipped rows (on_error = \"skip\"):\n{}", skipped.report());
    }
    let lifecycle = lifecycle_report(&state.emb);
    if lead && !lifecycle.is_empty() {
        eprintln!("embedding lifecycle (this run):\n{lifecycle}");
    }
    let r = if lead && tc.keep_last > 0 {
        checkpoint::mark_complete(&ck.root, true)
    } else {
        Ok(())
    };
    eng.agree(r, "rank 0 could not mark the run finished")?;
    Ok(TrainSummary {
        model_name,
        params,
        steps: p.step,
        best_step,
        best_value,
        metric,
        report,
        train_rows: transforms.rows,
        seconds: t0.elapsed().as_secs_f64(),
        samples_per_sec: if train_time > 0.0 {
            p.seen as f64 / train_time
        } else {
            0.0
        },
        skipped,
        history,
    })
}

/// What the loop's helpers need of the run.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a Config,
    pub model_name: &'a str,
    pub layout: &'a mfh_data::FieldLayout,
    pub transforms: &'a mfh_data::FittedTransforms,
    pub seed: u64,
    pub metric: &'a str,
    pub pipeline: &'a Arc<Pipeline>,
}

impl Ctx<'_> {
    /// What a model saved at `step` records about the run.
    pub fn save_info<'b>(
        &'b self,
        step: u64,
        value: Option<f64>,
        metrics_json: &'b str,
    ) -> SaveInfo<'b> {
        SaveInfo {
            cfg: self.cfg,
            model_name: self.model_name,
            layout: self.layout,
            transforms: self.transforms,
            seed: self.seed,
            step,
            selection_split: &self.cfg.train.valid_split,
            selection_metric: self.metric,
            selection_value: value,
            metrics_json,
        }
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

/// Creates the output folder (and the checkpoint folder) and checks that both take files,
/// so that a bad `--out` fails before the first pass over the data.
fn prepare_out(out: &Path, checkpoints: bool) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    probe_writable(out)?;
    if checkpoints {
        let root = checkpoint::root(out);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("{}: cannot create the checkpoint folder", root.display()))?;
        probe_writable(&root)?;
    }
    Ok(())
}

/// Refuses a checkpoint that would not continue the same run; returns its seed.
fn check_resumable(
    cfg: &Config,
    model_name: &str,
    seed: Option<u64>,
    r: &checkpoint::Restored,
) -> Result<u64> {
    let t = &r.trainer;
    if t.model_name != model_name {
        bail!(
            "{}: the checkpoint trains model section `{}`, not `{model_name}` (pass --model {})",
            r.dir.display(),
            t.model_name,
            t.model_name
        );
    }
    if let Some(s) = seed.filter(|&s| s != t.seed) {
        bail!(
            "{}: the checkpoint was trained with seed {}, not {s}: resume with --seed {}",
            r.dir.display(),
            t.seed,
            t.seed
        );
    }
    let b = cfg.train.batch_size;
    if t.batch_size > 0 && t.batch_size != b {
        bail!(
            "{}: the checkpoint was trained with a global batch of {} rows, this run has `train.batch_size = {b}`: the batches it skips on resume would not be the ones trained on; set `train.batch_size = {}` (the number of ranks may change, the global batch size may not)",
            r.dir.display(),
            t.batch_size,
            t.batch_size
        );
    }
    let now = checkpoint::config_fingerprint(cfg);
    if now != t.config {
        let diff = now
            .lines()
            .zip(t.config.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("now `{a}`, then `{b}`"))
            .unwrap_or_else(|| "a key was added or removed".into());
        bail!(
            "{}: the config differs from the one the checkpoint was trained with ({diff}); on resume only the number of ranks and train.epochs, max_steps, checkpoint_every, keep_last and threads may change",
            r.dir.display()
        );
    }
    Ok(t.seed)
}

/// Refuses a train split that cannot be learned from: empty, a behaviour without labels,
/// a funnel the data contradicts.
fn check_trainable(
    cfg: &Config,
    transforms: &mfh_data::FittedTransforms,
    rows_read: u64,
) -> Result<()> {
    let tc = &cfg.train;
    if transforms.rows == 0 {
        bail!(
            "the train split `{}` is empty: no row matches it ({} rows read)",
            tc.train_split,
            rows_read
        );
    }
    for b in &cfg.behaviours {
        let c = transforms.label_counts.get(b.name()).copied().unwrap_or(0);
        if c == 0 {
            bail!(
                "behaviour `{}` has no {} in the train split `{}`: it cannot be learned",
                b.name(),
                if b.is_binary() {
                    "positive label"
                } else {
                    "label"
                },
                tc.train_split
            );
        }
    }
    for (pair, &bad) in &transforms.funnel_violations {
        if bad > 0 {
            let (from, to) = pair.split_once("->").unwrap_or((pair, pair));
            let total = transforms.label_counts.get(to).copied().unwrap_or(0);
            bail!(
                "funnel {from} → {to} assumes every `{to}` implies `{from}`, but {bad} of the {total} `{to}` positives in the train split have no `{from}`: refusing the pair (remove it from train.loss.funnels)"
            );
        }
    }
    Ok(())
}

fn probe_writable(dir: &std::path::Path) -> Result<()> {
    let probe = dir.join(".mfh-write-probe");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| format!("{}: the output folder is not writable", dir.display()))
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

/// The state of a warm start: the initial model's network and embedding tables (rows and
/// their optimizer state), checked against this config's grid, features and model
/// section; the loss, the row optimiser's settings (its kind must match the rows' state)
/// and the tables' lifecycle settings come from this config.
fn warm_state(
    cfg: &Config,
    layout: &mfh_data::FieldLayout,
    spec: ModelSpec,
    m: mfh_artifact::LoadedModel,
) -> Result<mfh_artifact::ModelState> {
    let from = m.dir.display().to_string();
    let grid = cfg.grid();
    if grid != m.meta.grid {
        bail!("--init-from {from}: the model's task grid differs from this config's");
    }
    if layout.single != m.meta.single_fields
        || layout.multi != m.meta.multi_fields
        || layout.dense != m.meta.dense_features
    {
        bail!("--init-from {from}: the model's features differ from this config's");
    }
    if spec != m.meta.spec {
        bail!(
            "--init-from {from}: the model section differs from the one it was trained with ({})",
            serde_json::to_string(&m.meta.spec)?
        );
    }
    let mut state = m.state;
    state.loss = mfh_artifact::grid_loss(cfg, &grid)?;
    let e = &cfg.train.embedding;
    // This config's row optimiser settings (its learning rate), over the rows' state.
    let optimizer = mfh_artifact::row_optimizer(e);
    for t in state.emb.tables_mut() {
        t.set_optimizer(optimizer.clone())
            .map_err(|msg| anyhow!("--init-from {from}: `train.embedding.optimizer`: {msg}"))?;
    }
    state.emb.set_lifecycle(
        &mfh_embedding::Lifecycle {
            admit_after: e.admit_after,
            ttl_steps: e.ttl_steps,
            max_rows: e.max_rows,
        },
        e.evict_every,
    );
    Ok(state)
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
