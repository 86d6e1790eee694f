//! Resumable checkpoints: everything the training loop needs to continue exactly where it
//! stopped, so that a killed run resumed with `mfh train --resume` ends with the same model
//! as an uninterrupted one (same seed and thread count).
//!
//! A checkpoint is a folder `OUT/checkpoints/ckpt-<step>`, the same whichever engine
//! wrote it (one process or N ranks): a complete model folder (see
//! `mfh_artifact::model_dir`: dense parameters and buffers, every embedding row with its
//! row optimiser state — a sharded engine gathers them to rank 0, as for the best model),
//! plus `optimizer.bin` (the dense Adam moments and step counts), `trainer.json` (reader
//! position, world size, selection and early-stopping state, history, skip counts) and
//! `checkpoint.json` (the xxh3 of every other file: the manifest), written last. Rank 0
//! writes the folder under a temporary name, every file and the folder fsynced, then
//! renames it into place; only then are checkpoints beyond the last K removed, so a
//! crash or a failed write never touches the previous checkpoint. A run on N ranks and a
//! run on one process resume each other's checkpoints (each rank keeps the rows it
//! owns); the folder must be shared by the ranks.
//!
//! There is no random state to save besides the seed: embedding rows are initialised from
//! (seed, table, ID), and each epoch's shuffle from (seed, epoch). The reader position is
//! restored by streaming the epoch again and skipping the batches already trained on.

mod format;
mod writer;

pub(crate) use format::{config_fingerprint, transforms_sum, LoopState};
pub(crate) use writer::{guard_params, Checkpointer, Progress};

use crate::engine::{Engine, Optimizers};
use anyhow::{anyhow, bail, Context, Result};
use format::{optimizer_bytes, parse_optimizer, TRAINER_FORMAT};
use mfh_artifact::model_dir::{load_model, write_atomic, SaveInfo};
use mfh_artifact::ModelState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

const PREFIX: &str = "ckpt-";

/// Written when a run ends normally; a fresh run may then discard its checkpoints.
const COMPLETE: &str = "complete";

/// A checkpoint read back and verified.
pub(crate) struct Restored {
    pub dir: PathBuf,
    pub state: ModelState,
    pub opt: Optimizers,
    pub trainer: LoopState,
}

pub(crate) fn root(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn name(step: u64) -> String {
    format!("{PREFIX}{step:012}")
}

/// The step a checkpoint folder `ckpt-<step>` holds.
fn step_of(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .parse()
        .ok()
}

/// Refuses checkpoints of the distributed trainer before the one loop (`stepN/` with a
/// `manifest.json`): this mfh cannot continue them, and starting over would replace the
/// run's best model.
fn refuse_old_layout(root: &Path) -> Result<()> {
    let old = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.path().join("manifest.json").is_file());
    if let Some(e) = old {
        bail!(
            "{}: a checkpoint of an older mfh's distributed trainer, which this mfh cannot continue; train afresh into another --out",
            e.path().display()
        );
    }
    Ok(())
}

/// Checkpoint folders under `root`, oldest first.
pub(crate) fn list(root: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", root.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("{}: cannot list", root.display()))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(PREFIX) && e.path().is_dir() {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

/// Marks the run whose checkpoints are in `root` as finished (`done`) or not.
pub(crate) fn mark_complete(root: &Path, done: bool) -> Result<()> {
    let marker = root.join(COMPLETE);
    if done {
        return write_atomic(root, COMPLETE, b"training finished\n");
    }
    if marker.is_file() {
        std::fs::remove_file(&marker)
            .with_context(|| format!("{}: cannot remove", marker.display()))?;
    }
    Ok(())
}

/// Before a fresh run into the same folder: removes a finished earlier run's checkpoints,
/// and refuses to discard those of an interrupted one.
pub(crate) fn clear_finished(root: &Path) -> Result<()> {
    refuse_interrupted(root, list(root)?.last())?;
    clear(root)
}

/// Refuses to start afresh over the checkpoints of a run that did not finish (`newest`
/// is its newest checkpoint, if any).
fn refuse_interrupted(root: &Path, newest: Option<&PathBuf>) -> Result<()> {
    if let Some(newest) = newest {
        if !root.join(COMPLETE).exists() {
            bail!(
                "{}: an interrupted run's checkpoints are here (newest: {}); continue it with --resume, or delete the folder to start over",
                root.display(),
                newest.display()
            );
        }
    }
    Ok(())
}

/// Removes the checkpoints (and unfinished temporary ones) of an earlier run in `root`.
fn clear(root: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let ours = n.starts_with(PREFIX)
            || n.starts_with("unusable-ckpt-")
            || (n.starts_with(".ckpt-") && n.ends_with(".tmp"));
        if ours && e.path().is_dir() {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("{}: cannot remove", e.path().display()))?;
        }
    }
    Ok(())
}

/// Writes a checkpoint of `step` under `root` and keeps the newest `keep_last`
/// (collective: the engine saves the model, rank 0 writes the rest). Returns its folder.
/// On failure the previous checkpoints are left as they were.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    root: &Path,
    eng: &mut dyn Engine,
    state: &mut ModelState,
    info: &SaveInfo,
    opt: &Optimizers,
    trainer: &LoopState,
    keep_last: usize,
) -> Result<PathBuf> {
    let lead = eng.rank() == 0;
    let name = name(trainer.step);
    let tmp = root.join(format!(".{name}.tmp"));
    let dst = root.join(&name);
    let r = if lead && tmp.is_dir() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))
    } else {
        Ok(())
    };
    let res = eng
        .agree(r, "rank 0 could not prepare the checkpoint folder")
        .and_then(|_| eng.save_model(state, &tmp, info))
        .and_then(|_| {
            let r = if lead {
                finish(root, &tmp, &dst, opt, trainer)
            } else {
                Ok(())
            };
            eng.agree(r, "rank 0 could not write the checkpoint")
        });
    if let Err(e) = res {
        if lead && tmp.is_dir() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        return Err(e.context(format!(
            "cannot write the checkpoint of step {} to {}",
            trainer.step,
            dst.display()
        )));
    }
    let r = if lead { prune(root, keep_last) } else { Ok(()) };
    eng.agree(r, "rank 0 could not remove an old checkpoint")?;
    Ok(dst)
}

/// Adds the optimiser state, the loop state and the manifest to the model in `tmp`, and
/// renames it to `dst`.
fn finish(
    root: &Path,
    tmp: &Path,
    dst: &Path,
    opt: &Optimizers,
    trainer: &LoopState,
) -> Result<()> {
    write_atomic(
        tmp,
        "optimizer.bin",
        &optimizer_bytes(&opt.dense, &opt.loss),
    )?;
    write_atomic(tmp, "trainer.json", &serde_json::to_vec_pretty(trainer)?)?;
    let mut sums = BTreeMap::new();
    for f in [
        "config.toml",
        "transforms.json",
        "dense.bin",
        "embeddings.bin",
        "metrics.json",
        "model.json",
        "optimizer.bin",
        "trainer.json",
    ] {
        let p = tmp.join(f);
        let b = std::fs::read(&p).with_context(|| format!("{}: cannot read back", p.display()))?;
        sums.insert(f.to_string(), format!("{:016x}", xxh3_64(&b)));
    }
    write_atomic(tmp, "checkpoint.json", &serde_json::to_vec_pretty(&sums)?)?;
    if dst.is_dir() {
        std::fs::remove_dir_all(dst)
            .with_context(|| format!("{}: cannot replace", dst.display()))?;
    }
    std::fs::rename(tmp, dst)
        .with_context(|| format!("{}: cannot rename to {}", tmp.display(), dst.display()))?;
    sync_dir(root);
    Ok(())
}

/// Removes all but the newest `keep_last` checkpoints.
fn prune(root: &Path, keep_last: usize) -> Result<()> {
    let all = list(root)?;
    if all.len() > keep_last {
        for old in &all[..all.len() - keep_last] {
            std::fs::remove_dir_all(old)
                .with_context(|| format!("{}: cannot remove an old checkpoint", old.display()))?;
        }
        sync_dir(root);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads and verifies one checkpoint folder.
pub(crate) fn read(dir: &Path) -> Result<Restored> {
    let sums_path = dir.join("checkpoint.json");
    let sums: BTreeMap<String, String> = serde_json::from_slice(
        &std::fs::read(&sums_path)
            .with_context(|| format!("{}: cannot read", sums_path.display()))?,
    )
    .with_context(|| format!("{}: cannot parse", sums_path.display()))?;
    for (f, want) in &sums {
        let p = dir.join(f);
        let b = std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?;
        let got = format!("{:016x}", xxh3_64(&b));
        if &got != want {
            bail!(
                "{}: checksum {got} does not match checkpoint.json's {want}",
                p.display()
            );
        }
    }
    for f in ["optimizer.bin", "trainer.json"] {
        if !sums.contains_key(f) {
            bail!("{}: does not list {f}", sums_path.display());
        }
    }
    let trainer: LoopState = serde_json::from_slice(&std::fs::read(dir.join("trainer.json"))?)
        .with_context(|| format!("{}: cannot parse", dir.join("trainer.json").display()))?;
    if !(1..=TRAINER_FORMAT).contains(&trainer.format_version) {
        bail!(
            "{}: format version {} but this mfh reads version {TRAINER_FORMAT}",
            dir.join("trainer.json").display(),
            trainer.format_version
        );
    }
    let mut m = load_model(dir)?;
    let opt_path = dir.join("optimizer.bin");
    let (a, b) = parse_optimizer(&std::fs::read(&opt_path)?)
        .map_err(|e| anyhow!("{}: {e}", opt_path.display()))?;
    let mut opt = Optimizers::new(m.config.train.weight_decay);
    if a.0 > 0 {
        opt.dense
            .set_state(m.state.net_mut(), a.0, a.1, a.2)
            .map_err(|e| anyhow!("{}: {e}", opt_path.display()))?;
    }
    if b.0 > 0 {
        opt.loss
            .set_state(&mut m.state.loss, b.0, b.1, b.2)
            .map_err(|e| anyhow!("{}: {e}", opt_path.display()))?;
    }
    Ok(Restored {
        dir: dir.to_path_buf(),
        state: m.state,
        opt,
        trainer,
    })
}

/// A checkpoint folder read back and verified, for tools and tests: the model (every
/// embedding row), both optimisers, and where the loop stood.
pub struct Checkpoint {
    pub state: ModelState,
    pub opt: Optimizers,
    pub step: u64,
    /// Ranks of the run that wrote it.
    pub world_size: usize,
}

impl Checkpoint {
    /// The dense state, flat: Adam's step count, then every parameter value and both
    /// moments, in parameter order (to compare two runs' checkpoints).
    pub fn dense_state(&mut self) -> (u64, Vec<f32>) {
        let mut vals = Vec::new();
        self.state
            .net_mut()
            .visit_params("", &mut |_, p, _| vals.extend_from_slice(p));
        let (steps, m, v) = self.opt.dense.state();
        vals.extend(m.iter().chain(v).flatten().copied());
        (steps, vals)
    }
}

/// Reads and verifies the checkpoint folder `dir` (`OUT/checkpoints/ckpt-<step>`).
pub fn load_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let r = read(dir)?;
    Ok(Checkpoint {
        state: r.state,
        opt: r.opt,
        step: r.trainer.step,
        world_size: r.trainer.world_size,
    })
}

/// The folder name of the checkpoint of `step`.
pub fn checkpoint_name(step: u64) -> String {
    name(step)
}

/// The newest checkpoint under `root` that verifies on every rank, falling back to older
/// ones (and saying why); `None` when there is none. Fails when every checkpoint is
/// unusable. Collective.
pub(crate) fn latest(root: &Path, eng: &mut dyn Engine) -> Result<Option<Restored>> {
    let lead = eng.rank() == 0;
    // Rank 0's listing, on every rank, so that all try the same checkpoints in turn.
    let listed = if lead {
        list(root).and_then(|all| {
            refuse_old_layout(root)?;
            Ok(all)
        })
    } else {
        Ok(Vec::new())
    };
    let mut steps: Vec<u64> = match &listed {
        Ok(all) => all.iter().filter_map(|d| step_of(d)).collect(),
        Err(_) => Vec::new(),
    };
    eng.agree(listed.map(|_| ()), "rank 0 could not list the checkpoints")?;
    eng.broadcast_u64(&mut steps);
    let all: Vec<PathBuf> = steps.iter().map(|&s| root.join(name(s))).collect();
    let mut problems = Vec::new();
    for (i, dir) in all.iter().enumerate().rev() {
        let r = read(dir);
        let everywhere = eng.all_ok(r.is_ok());
        match r {
            Ok(r) if everywhere => {
                // Set the unusable newer ones aside (kept for inspection), so that they
                // neither count among the last K nor are tried again.
                let mut moved = Ok(());
                if lead {
                    for bad in &all[i + 1..] {
                        let name = bad.file_name().unwrap_or_default().to_string_lossy();
                        let aside = root.join(format!("unusable-{name}"));
                        let _ = std::fs::remove_dir_all(&aside);
                        if let Err(e) = std::fs::rename(bad, &aside) {
                            moved = Err(anyhow!(
                                "{}: cannot rename to {}: {e}",
                                bad.display(),
                                aside.display()
                            ));
                            break;
                        }
                        eprintln!("set aside as {}", aside.display());
                    }
                    if !problems.is_empty() {
                        eprintln!("resuming from the previous checkpoint {}", dir.display());
                    }
                }
                eng.agree(moved, "rank 0 could not set an unusable checkpoint aside")?;
                return Ok(Some(r));
            }
            Ok(_) => problems.push(format!("{}: unusable on another rank", dir.display())),
            Err(e) => {
                let who = if eng.size() > 1 {
                    format!("rank {}: ", eng.rank())
                } else {
                    String::new()
                };
                eprintln!(
                    "{who}warning: checkpoint {} is unusable: {e:#}",
                    dir.display()
                );
                problems.push(format!("{}: {e:#}", dir.display()));
            }
        }
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        bail!(
            "no usable checkpoint in {}:\n  {}",
            root.display(),
            problems.join("\n  ")
        )
    }
}
