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

use crate::engine::{Engine, Optimizers};
use crate::selection::SelectionState;
use crate::trainer::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use mfh_artifact::model_dir::{load_model, write_atomic, SaveInfo};
use mfh_artifact::ModelState;
use mfh_nn::Adam;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

const PREFIX: &str = "ckpt-";
/// Written when a run ends normally; a fresh run may then discard its checkpoints.
const COMPLETE: &str = "complete";
const OPT_MAGIC: &[u8; 8] = b"MFHOPTS1";
/// 2: the end-of-epoch checkpoint of an epoch cut short by a stop records that epoch's
/// position (1 recorded the next epoch), so a resume may lift the stop.
pub(crate) const TRAINER_FORMAT: u32 = 2;

/// Where the training loop stands, and what model selection has seen so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoopState {
    pub format_version: u32,
    pub model_name: String,
    pub seed: u64,
    /// The resolved config with the checkpoint keys blanked: a resume under another
    /// config would not continue the same run.
    pub config: String,
    /// xxh3 of the fitted transforms' JSON: the train split must read the same.
    pub transforms: String,
    /// Rows per global batch: the batches a resume skips are counted in it (0 in
    /// checkpoints written before it was recorded: then not checked).
    #[serde(default)]
    pub batch_size: usize,
    /// Ranks that trained (1 on one process, and in older checkpoints).
    #[serde(default = "one")]
    pub world_size: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// The epoch being trained, and how many of its batches were trained on.
    pub epoch: usize,
    pub batches_done: u64,
    /// The valid split was evaluated after the last step.
    pub evaluated_now: bool,
    /// The epoch's batch loop stops here (early stop or `max_steps`).
    pub stop: bool,
    /// Training is over (early stop at an end-of-epoch evaluation).
    pub finished: bool,
    /// Train-loss moving average (for the logs), as f64 bits.
    pub loss_ema: Option<u64>,
    /// Rows seen (for samples/s).
    pub seen: u64,
    /// Rows skipped (`on_error = "skip"`) in the completed epochs: kind, count, example.
    pub skipped: Vec<(String, u64, String)>,
    pub selection: SelectionState,
}

fn one() -> usize {
    1
}

/// The resolved config as a resume compares it. How long the run goes (`epochs`,
/// `max_steps`), how often it checkpoints (`checkpoint_every`, `keep_last`) and the
/// threads may change (a run may resume on a machine with other cores; only float
/// rounding then differs from an uninterrupted run); the model section and the batch
/// size are compared on their own, for a clearer message; the number of ranks is not in
/// the config.
pub(crate) fn config_fingerprint(cfg: &mfh_config::Config) -> String {
    let mut c = cfg.clone();
    let t = &mut c.train;
    t.epochs = 0;
    t.max_steps = 0;
    t.checkpoint_every = 0;
    t.keep_last = 0;
    t.threads = mfh_config::Threads::Auto;
    t.batch_size = 0;
    t.model = None;
    c.to_toml_string()
}

/// xxh3-64 (hex) of the fitted transforms' JSON, as `trainer.json` records it.
pub(crate) fn transforms_sum(t: &mfh_data::FittedTransforms) -> Result<String> {
    Ok(format!(
        "{:016x}",
        xxh3_64(serde_json::to_string(t)?.as_bytes())
    ))
}

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

fn put_adam(out: &mut Vec<u8>, a: &Adam<f32>) {
    let (step, m, v) = a.state();
    out.extend_from_slice(&step.to_le_bytes());
    out.extend_from_slice(&(m.len() as u64).to_le_bytes());
    for (m, v) in m.iter().zip(v) {
        out.extend_from_slice(&(m.len() as u64).to_le_bytes());
        for x in m.iter().chain(v) {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn optimizer_bytes(adam: &Adam<f32>, adam_loss: &Adam<f32>) -> Vec<u8> {
    let mut out = OPT_MAGIC.to_vec();
    put_adam(&mut out, adam);
    put_adam(&mut out, adam_loss);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

type AdamState = (u64, Vec<Vec<f32>>, Vec<Vec<f32>>);

fn parse_optimizer(bytes: &[u8]) -> Result<(AdamState, AdamState), String> {
    if bytes.len() < 16 || &bytes[..8] != OPT_MAGIC {
        return Err("not an mfh optimizer-state file (bad magic)".into());
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(body).to_le_bytes() != tail {
        return Err("checksum mismatch: the file is corrupt or truncated".into());
    }
    let mut pos = 8;
    let u64_at = |pos: &mut usize| -> Result<u64, String> {
        let b = body.get(*pos..*pos + 8).ok_or("truncated")?;
        *pos += 8;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    };
    let one = |pos: &mut usize| -> Result<AdamState, String> {
        let step = u64_at(pos)?;
        let n = u64_at(pos)? as usize;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let len = u64_at(pos)? as usize;
            let bytes = len.checked_mul(8).ok_or("bad length")?;
            let raw = body.get(*pos..*pos + bytes).ok_or("truncated")?;
            *pos += bytes;
            let f: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            m.push(f[..len].to_vec());
            v.push(f[len..].to_vec());
        }
        Ok((step, m, v))
    };
    let a = one(&mut pos)?;
    let b = one(&mut pos)?;
    if pos != body.len() {
        return Err("trailing bytes".into());
    }
    Ok((a, b))
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

/// The first non-finite dense parameter, by name.
pub(crate) fn non_finite_param(state: &mut ModelState) -> Option<String> {
    use mfh_nn::Module;
    let mut bad = None;
    let mut check = |name: &str, p: &[f32]| {
        if bad.is_none() && !p.iter().all(|x| x.is_finite()) {
            bad = Some(name.to_string());
        }
    };
    state.net_mut().visit_params("", &mut |n, p, _| check(n, p));
    state.loss.visit_params("loss.", &mut |n, p, _| check(n, p));
    bad
}

/// Stops a run whose dense parameters are no longer finite, before it is evaluated or
/// checkpointed.
pub(crate) fn guard_params(state: &mut ModelState, step: u64, ck: &Checkpointer) -> Result<()> {
    if let Some(name) = non_finite_param(state) {
        bail!(
            "training diverged by step {step}: dense parameter `{name}` is no longer finite (try a lower train.lr or train.embedding.lr); {}",
            ck.last_good()
        );
    }
    Ok(())
}

/// Where the loop stands, as a checkpoint records it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub step: u64,
    pub epoch: usize,
    pub batches_done: u64,
    pub evaluated_now: bool,
    pub stop: bool,
    pub finished: bool,
    pub loss_ema: Option<f64>,
    pub seen: u64,
}

/// Writes resumable checkpoints and remembers the last good one.
pub(crate) struct Checkpointer<'a> {
    pub root: PathBuf,
    pub keep_last: usize,
    pub model_name: &'a str,
    pub seed: u64,
    pub config: String,
    pub transforms: String,
    /// The newest checkpoint written or resumed from.
    pub last: Option<PathBuf>,
}

impl Checkpointer<'_> {
    pub fn last_good(&self) -> String {
        match &self.last {
            Some(d) => format!(
                "the last good checkpoint, {}, is intact (`mfh eval --model-dir` loads it)",
                d.display()
            ),
            None => "no checkpoint had been written yet".into(),
        }
    }

    /// Writes a checkpoint of where the loop stands `p` (collective), unless `keep_last`
    /// is 0; remembers it as the last good one.
    #[allow(clippy::too_many_arguments)]
    pub fn save(
        &mut self,
        ctx: &Ctx,
        eng: &mut dyn Engine,
        state: &mut ModelState,
        opt: &Optimizers,
        sel: &crate::Selection,
        skipped: &mfh_data::SkipCounts,
        p: &Progress,
    ) -> Result<()> {
        if self.keep_last == 0 {
            return Ok(());
        }
        guard_params(state, p.step, self)?;
        let cfg = ctx.cfg;
        let loop_state = LoopState {
            format_version: TRAINER_FORMAT,
            model_name: self.model_name.to_string(),
            seed: self.seed,
            config: self.config.clone(),
            transforms: self.transforms.clone(),
            batch_size: cfg.train.batch_size,
            world_size: eng.size(),
            step: p.step,
            epoch: p.epoch,
            batches_done: p.batches_done,
            evaluated_now: p.evaluated_now,
            stop: p.stop,
            finished: p.finished,
            loss_ema: p.loss_ema.map(f64::to_bits),
            seen: p.seen,
            skipped: skipped
                .by_kind
                .iter()
                .map(|(k, (n, ex))| (k.clone(), *n, ex.clone()))
                .collect(),
            selection: sel.snapshot(),
        };
        let metrics_json = sel.last_report.to_json();
        let info = ctx.save_info(p.step, None, &metrics_json);
        let dir = write(
            &self.root,
            eng,
            state,
            &info,
            opt,
            &loop_state,
            self.keep_last,
        )
        .map_err(|e| {
            let prev = match &self.last {
                Some(d) => format!("the previous checkpoint, {}, is intact", d.display()),
                None => "there is no previous checkpoint".into(),
            };
            e.context(format!("training stopped at step {}; {prev}", p.step))
        })?;
        self.last = Some(dir);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mfh_metrics::MetricRecord;

    #[test]
    fn optimizer_state_round_trips_and_detects_corruption() {
        let mut a = Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0);
        let b = Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0);
        let mut lin = mfh_nn::Linear::<f32>::new(
            3,
            2,
            mfh_nn::Activation::Identity,
            &mut mfh_nn::Rng::new(1),
        );
        use mfh_nn::Module;
        lin.visit_params("", &mut |_, _, g| g.fill(0.5));
        a.step(&mut lin, 0.1);
        let bytes = optimizer_bytes(&a, &b);
        let ((s, m, v), (s2, m2, _)) = parse_optimizer(&bytes).unwrap();
        let (s0, m0, v0) = a.state();
        assert_eq!((s, m.as_slice(), v.as_slice()), (s0, m0, v0));
        assert_eq!((s2, m2.len()), (0, 0));
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(parse_optimizer(&bad).unwrap_err().contains("checksum"));
        assert!(parse_optimizer(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn reports_round_trip_exactly_through_json() {
        let r = MetricRecord {
            split: "valid".into(),
            behaviour: "click".into(),
            cell: "all".into(),
            metric: "auc".into(),
            value: Some(0.123_456_789_012_345_68),
            n: 3,
            positives: 1,
            missing: 0,
        };
        let mut recs = vec![r.clone()];
        for i in 0..200u64 {
            let mut r = r.clone();
            r.value = Some(f64::from_bits(0x3fe0_0000_0000_0000 + i * 0x0001_2345_6789));
            recs.push(r);
        }
        let json = serde_json::to_string(&recs).unwrap();
        let back: Vec<MetricRecord> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, recs);
    }
}
