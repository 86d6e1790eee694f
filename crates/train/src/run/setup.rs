//! Setting a run up: the output folder, the checkpoint to resume or the folder to start
//! afresh in, the train split's statistics, and the model state (fresh, warm-started or
//! restored), agreed on by every rank.

use crate::checkpoint::{self, Restored};
use crate::engine::{Engine, Optimizers};
use crate::options::TrainOptions;
use anyhow::{anyhow, bail, Context, Result};
use mfh_artifact::{fresh_state, load_model, ModelState};
use mfh_config::{Config, OnError};
use mfh_data::{FieldLayout, FitPart, FittedTransforms, Pipeline, ReadStats};
use mfh_model::ModelSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A run ready to train.
pub(crate) struct Setup {
    pub seed: u64,
    pub transforms: FittedTransforms,
    /// xxh3 of the transforms, as checkpoints record it.
    pub transforms_sum: String,
    pub layout: FieldLayout,
    pub pipeline: Arc<Pipeline>,
    pub state: ModelState,
    pub opt: Optimizers,
    /// The checkpoint resumed from: its folder and the loop's state then.
    pub resumed: Option<(PathBuf, checkpoint::LoopState)>,
    pub ckpt_root: PathBuf,
    /// Seconds the statistics pass over the train split took.
    pub fit_s: f64,
}

/// Prepares the output folder, finds the checkpoint to resume (or clears a finished
/// run's), and builds the state (collective).
pub(crate) fn setup(
    cfg: &Config,
    opts: &TrainOptions,
    eng: &mut dyn Engine,
    model_name: &str,
    spec: ModelSpec,
) -> Result<Setup> {
    let tc = &cfg.train;
    let lead = eng.rank() == 0;
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
    // Building reads files on every rank: a failure on any stops every rank together.
    let built = build(
        cfg,
        opts,
        eng,
        model_name,
        spec,
        restored,
        ckpt_root.clone(),
    );
    let ok = eng.all_ok(built.is_ok());
    let built = built?;
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
    Ok(built)
}

/// The statistics pass over the train split: on several ranks each decodes its share of
/// the rows and the ranks merge their parts (collective), giving the statistics one
/// process would fit, bit for bit ([`mfh_data::FitPart`]). With `on_error = "skip"` every
/// rank fits every row (which rows a pass skips is each rank's to count), and so it does
/// with `MFH_DIST_FIT=whole` (to measure the difference).
fn fit_statistics(p: &mut Pipeline, split: &str, eng: &mut dyn Engine) -> Result<ReadStats> {
    let size = eng.size();
    let whole = std::env::var("MFH_DIST_FIT").is_ok_and(|v| v == "whole");
    if size == 1 || whole || p.config().data.on_error == OnError::Skip {
        return Ok(p.fit(split)?);
    }
    let part = p.fit_part(split, eng.rank(), size);
    let ok = eng.all_ok(part.is_ok());
    let (part, stats) = part?;
    if !ok {
        bail!("another rank failed reading the split (see its error)");
    }
    let words = eng.gather_f64(&part.to_words());
    let parts = words
        .iter()
        .map(|w| FitPart::from_words(p, w))
        .collect::<Result<Vec<_>, _>>()?;
    let rows_read = p.finish_fit(parts)?;
    Ok(ReadStats {
        rows_read,
        rows_used: p.transforms.rows,
        ..stats
    })
}

/// The statistics and the state (collective: the ranks agree on what they read, and
/// merge the statistics' parts).
fn build(
    cfg: &Config,
    opts: &TrainOptions,
    eng: &mut dyn Engine,
    model_name: &str,
    spec: ModelSpec,
    restored: Option<Restored>,
    ckpt_root: PathBuf,
) -> Result<Setup> {
    let tc = &cfg.train;
    // What each rank reads alone; every rank learns whether all of them could, before the
    // statistics pass exchanges its parts.
    let prelude = (|| -> Result<_> {
        let seed = match &restored {
            Some(r) => check_resumable(cfg, model_name, opts.seed, r)?,
            None => opts.seed.unwrap_or(tc.seed),
        };
        // Warm start (a resumed run already holds its warm-started state).
        let init = match (&opts.init_from, &restored) {
            (Some(dir), None) => {
                Some(load_model(dir).with_context(|| format!("--init-from {}", dir.display()))?)
            }
            _ => None,
        };
        let pipeline = Pipeline::with_tables(cfg, &opts.hooks.tables)?;
        Ok((seed, init, pipeline))
    })();
    let ok = eng.all_ok(prelude.is_ok());
    let (seed, init, mut pipeline) = prelude?;
    if !ok {
        bail!("another rank could not set up the run (see its error)");
    }
    let fit_start = std::time::Instant::now();
    let fit = fit_statistics(&mut pipeline, &tc.train_split, eng)
        .with_context(|| format!("reading the train split `{}`", tc.train_split))?;
    let fit_s = fit_start.elapsed().as_secs_f64();
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
    let (mut state, opt, resumed) = match restored {
        Some(r) => {
            if r.trainer.transforms != transforms_sum {
                bail!(
                    "{}: the train split `{}` no longer reads as it did when the checkpoint was written (its fitted statistics differ): the data changed; train again without --resume",
                    r.dir.display(),
                    tc.train_split
                );
            }
            if eng.rank() == 0 {
                announce_resume(cfg, &r, eng.size());
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
    Ok(Setup {
        seed,
        transforms,
        transforms_sum,
        layout,
        pipeline: Arc::new(pipeline),
        state,
        opt,
        resumed,
        ckpt_root,
        fit_s,
    })
}

/// What rank 0 says of the checkpoint it resumes from.
fn announce_resume(cfg: &Config, r: &Restored, size: usize) {
    eprintln!(
        "resuming from {} (step {})",
        r.dir.display(),
        r.trainer.step
    );
    let e = &cfg.train.embedding;
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

/// The state of a warm start: the initial model's network and embedding tables (rows and
/// their optimizer state), checked against this config's grid, features and model
/// section; the loss, the row optimiser's settings (its kind must match the rows' state)
/// and the tables' lifecycle settings come from this config.
fn warm_state(
    cfg: &Config,
    layout: &mfh_data::FieldLayout,
    mut spec: ModelSpec,
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
    // The section as the model holds it: with what it names resolved in the input.
    mfh_artifact::bind_spec(&mut spec, &m.state.emb)?;
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
