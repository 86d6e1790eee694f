//! The training loop: fit transforms on the train split, stream shuffled batches, step the
//! dense optimiser and the embedding rows, evaluate on the valid split each epoch (or every
//! N steps), keep the best model on disk, stop early when the metric stops improving.

use crate::checkpoint::{self, guard_params, Checkpointer, Progress};
use crate::schedule::learning_rate;
use crate::selection::Selection;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mfh_artifact::model_dir::{fresh_state, load_model, save_model, SaveInfo};
use mfh_artifact::scoring::{evaluate, EvalResult};
use mfh_config::Config;
use mfh_data::{Pipeline, StreamOptions};
use mfh_metrics::Report;
use mfh_model::ModelSpec;
use mfh_nn::{Adam, Module};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

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

/// Trains the chosen model section of `cfg` and saves the best model to `opts.out`;
/// with `opts.resume`, continues from the newest intact checkpoint in `out/checkpoints`.
pub fn train(cfg: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    let t0 = Instant::now();
    let tc = &cfg.train;
    let threads = tc.threads.resolve();
    mfh_nn::use_threads(threads);
    let (model_name, spec) = model_spec(cfg, opts.model.as_deref())?;
    prepare_out(&opts.out, tc.keep_last > 0)?;
    let ckpt_root = checkpoint::root(&opts.out);
    let restored = if opts.resume {
        let r = checkpoint::latest(&ckpt_root)?;
        if r.is_none() {
            eprintln!(
                "no checkpoint in {}: training from the beginning",
                ckpt_root.display()
            );
        }
        r
    } else {
        checkpoint::clear_finished(&ckpt_root)?;
        None
    };
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
    let transforms_sum = format!(
        "{:016x}",
        xxh3_64(serde_json::to_string(&transforms)?.as_bytes())
    );
    let layout = pipeline.layout().clone();
    let pipeline = Arc::new(pipeline);
    let (mut state, mut adam, mut adam_loss, resumed) = match restored {
        Some(r) => {
            if r.trainer.transforms != transforms_sum {
                bail!(
                    "{}: the train split `{}` no longer reads as it did when the checkpoint was written (its fitted statistics differ): the data changed; train again without --resume",
                    r.dir.display(),
                    tc.train_split
                );
            }
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
            (r.state, r.adam, r.adam_loss, Some((r.dir, r.trainer)))
        }
        None => (
            match init {
                Some(m) => warm_state(cfg, &layout, spec, m)?,
                None => fresh_state(cfg, &layout, spec, seed)?,
            },
            Adam::<f32>::new(0.9, 0.999, 1e-8, tc.weight_decay),
            Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0),
            None,
        ),
    };
    // From here on the checkpoints are this run's, unfinished until it ends.
    checkpoint::mark_complete(&ckpt_root, false)?;
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
        resume_at = Some((t.batches_done, t.evaluated_now, t.stop));
        ck.last = Some(dir);
    }
    let mut train_time = 0.0;
    let mut save = |state: &mut mfh_artifact::ModelState,
                    step: u64,
                    value: Option<f64>,
                    res: &EvalResult,
                    dir: &Path| {
        save_best(
            cfg,
            &model_name,
            &layout,
            &transforms,
            seed,
            step,
            &metric,
            value,
            res,
            state,
            dir,
        )
    };
    let checkpoint = |ck: &mut Checkpointer,
                      state: &mut mfh_artifact::ModelState,
                      adam: &Adam<f32>,
                      adam_loss: &Adam<f32>,
                      sel: &Selection,
                      skipped: &mfh_data::SkipCounts,
                      p: &Progress| {
        ck.save(
            cfg,
            &layout,
            &transforms,
            &metric,
            state,
            (adam, adam_loss),
            sel,
            skipped,
            p,
        )
    };
    eprintln!(
        "training `{model_name}` ({params} dense parameters) on {} rows × {} epochs, {} tasks; {} threads, kernel path {}",
        transforms.rows,
        tc.epochs,
        state.grid.n_tasks(),
        mfh_nn::threads(),
        mfh_cpu::path()
    );
    let start_epoch = if p.finished { tc.epochs } else { p.epoch };
    'epochs: for epoch in start_epoch..tc.epochs {
        p.epoch = epoch;
        let (skip, mut evaluated_at, mut stop) = match resume_at.take() {
            Some((b, ev, stop)) => (b, if ev { p.step } else { u64::MAX }, stop),
            None => (0, u64::MAX, false),
        };
        p.batches_done = skip;
        let pb = bar(transforms.rows, opts.progress);
        pb.set_prefix(format!("epoch {}/{}", epoch + 1, tc.epochs));
        let stream_opts = StreamOptions {
            batch_size: tc.batch_size,
            shuffle_buffer: tc.shuffle_buffer,
            seed: seed.wrapping_add(epoch as u64 * 0x9e37_79b9),
            prefetch: 4,
        };
        // A run resumed after its batch loop stopped early does not read the epoch again
        // (the uninterrupted run did not finish reading it either).
        let mut stream = if stop {
            None
        } else {
            Some(pipeline.stream(&tc.train_split, stream_opts)?)
        };
        let mut te = Instant::now();
        let mut to_skip = skip;
        for batch in stream.iter_mut().flatten() {
            let mut batch = batch?;
            if to_skip > 0 {
                // Already trained on before the checkpoint this run resumed from.
                to_skip -= 1;
                pb.inc(batch.n as u64);
                te = Instant::now();
                continue;
            }
            let step = p.step;
            let lr = learning_rate(&tc.schedule, tc.lr, step, total_steps) as f32;
            state.net_mut().zero_grad();
            state.loss.zero_grad();
            let lv = state.train_step(&mut batch, step + 1);
            if !lv.loss.is_finite() {
                bail!(
                    "training diverged at step {}: the loss became {} (try a lower train.lr or train.embedding.lr); {}",
                    step + 1,
                    lv.loss,
                    ck.last_good()
                );
            }
            adam.step(state.net_mut(), lr);
            // Uncertainty weighting's log-variances (no parameters otherwise).
            adam_loss.step(&mut state.loss, lr);
            p.step += 1;
            p.batches_done += 1;
            p.seen += batch.n as u64;
            p.loss_ema = Some(match p.loss_ema {
                None => lv.loss,
                Some(e) => 0.98 * e + 0.02 * lv.loss,
            });
            let step = p.step;
            pb.inc(batch.n as u64);
            if step.is_multiple_of(20) {
                pb.set_message(format!("loss {:.4}", p.loss_ema.unwrap_or(0.0)));
            }
            p.evaluated_now = false;
            if tc.eval_every > 0 && step.is_multiple_of(tc.eval_every) {
                train_time += te.elapsed().as_secs_f64();
                guard_params(&mut state, step, &ck)?;
                let res = evaluate(&mut state, &pipeline, &tc.valid_split, tc.batch_size)?;
                pb.suspend(|| {
                    log_eval(
                        epoch,
                        step,
                        p.loss_ema,
                        &tc.valid_split,
                        &res,
                        &metric,
                        &state.grid,
                    )
                });
                stop = sel
                    .update(&mut state, step, res, &mut save)
                    .map_err(|e| stopped(e, step, &ck))?;
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
                pb.suspend(|| {
                    checkpoint(&mut ck, &mut state, &adam, &adam_loss, &sel, &skipped, &p)
                })?;
                te = Instant::now();
            }
            if stop {
                break;
            }
        }
        if evaluated_at != p.step {
            train_time += te.elapsed().as_secs_f64();
        }
        if let Some(s) = stream.as_ref().and_then(|s| s.stats()) {
            skipped.merge(&s.skipped);
        }
        drop(stream);
        pb.finish_and_clear();
        if evaluated_at != p.step {
            guard_params(&mut state, p.step, &ck)?;
            let res = evaluate(&mut state, &pipeline, &tc.valid_split, tc.batch_size)?;
            log_eval(
                epoch,
                p.step,
                p.loss_ema,
                &tc.valid_split,
                &res,
                &metric,
                &state.grid,
            );
            stop |= sel
                .update(&mut state, p.step, res, &mut save)
                .map_err(|e| stopped(e, p.step, &ck))?;
            let after = Progress {
                epoch: epoch + 1,
                batches_done: 0,
                evaluated_now: true,
                stop: false,
                finished: stop,
                ..p.clone()
            };
            checkpoint(
                &mut ck, &mut state, &adam, &adam_loss, &sel, &skipped, &after,
            )?;
        }
        if stop {
            break 'epochs;
        }
    }
    let (best_value, best_step, report, history) = sel.outcome();
    if skipped.total() > 0 {
        eprintln!("skipped rows (on_error = \"skip\"):\n{}", skipped.report());
    }
    let lifecycle = lifecycle_report(&state.emb);
    if !lifecycle.is_empty() {
        eprintln!("embedding lifecycle (this run):\n{lifecycle}");
    }
    if tc.keep_last > 0 {
        checkpoint::mark_complete(&ck.root, true)?;
    }
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
            "{}: the checkpoint was trained with seed {}, not {s}",
            r.dir.display(),
            t.seed
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
            "{}: the config differs from the one the checkpoint was trained with ({diff}); only train.checkpoint_every and train.keep_last may change on resume",
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

#[allow(clippy::too_many_arguments)]
fn save_best(
    cfg: &Config,
    model_name: &str,
    layout: &mfh_data::FieldLayout,
    transforms: &mfh_data::FittedTransforms,
    seed: u64,
    step: u64,
    metric: &str,
    value: Option<f64>,
    res: &EvalResult,
    state: &mut mfh_artifact::ModelState,
    dir: &Path,
) -> Result<()> {
    let info = SaveInfo {
        cfg,
        model_name,
        layout,
        transforms,
        seed,
        step,
        selection_split: &cfg.train.valid_split,
        selection_metric: metric,
        selection_value: value,
        metrics_json: &res.report.to_json(),
    };
    save_model(dir, state, &info)
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
/// section; the loss and the tables' lifecycle settings come from this config.
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
