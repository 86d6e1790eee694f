//! Checkpoints of a distributed run, in `OUT/checkpoints/stepN/`: `dense.bin` (rank 0:
//! the dense parameters and Adam's moments), `shard-R.bin` (rank R: its rows and their
//! optimizer state, in the embedding layer's own format) and `manifest.json` (world
//! size, what the run must share to continue it, progress, the selection state, every
//! file's xxh3). All files are written to a temp folder that rank 0 renames once every
//! rank has synced its file and the manifest is written, so a folder named `stepN` is
//! always whole. The folder must be shared by the ranks (one machine, or a shared file
//! system).
//!
//! Resume with the world size that wrote the checkpoint reads this rank's shard. With
//! another world size every rank streams every shard and keeps the rows it owns now
//! (`owner(id, N')`, with their optimizer state): the global batches do not depend on
//! the world size (the global batch size is fixed), so the run continues from the same
//! batch, equal to the uninterrupted one up to float summation order.

use crate::comm::Comm;
use crate::reshard::{check_layout, check_sum, read_shard, reshard};
use anyhow::{anyhow, bail, Context, Result};
use mfh_artifact::ModelState;
use mfh_config::Config;
use mfh_embedding::EmbeddingLayer;
use mfh_nn::Adam;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 8] = b"MFHDCK01";

/// Where the run was when the checkpoint was written.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub step: u64,
    pub epoch: usize,
    /// Batches of `epoch` already trained on.
    pub batches_done: u64,
    pub loss_ema: Option<f64>,
    /// Best selection value and its step; evaluations since.
    pub best: Option<(f64, u64)>,
    pub since_best: usize,
    /// The whole selection state (best report, history); absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<mfh_train::SelectionState>,
}

/// What a run must share with a checkpoint to continue it; kept in the manifest.
pub(crate) struct RunIdentity {
    /// The model section trained.
    pub model: String,
    pub seed: u64,
    /// Rows per global batch (`train.batch_size`): the batches a resume skips are
    /// counted in it.
    pub batch_size: usize,
    /// [`config_fingerprint`] of the run's config.
    pub config: String,
    /// xxh3-64 (hex) of the fitted transforms: the train split reads as it did.
    pub transforms: String,
}

impl RunIdentity {
    pub fn new(
        cfg: &Config,
        model: &str,
        seed: u64,
        transforms: &mfh_data::FittedTransforms,
    ) -> Result<Self> {
        Ok(RunIdentity {
            model: model.to_string(),
            seed,
            batch_size: cfg.train.batch_size,
            config: config_fingerprint(cfg),
            transforms: format!("{:016x}", xxh3_64(&serde_json::to_vec(transforms)?)),
        })
    }
}

/// The config as a resume compares it. How long the run goes (`epochs`, `max_steps`),
/// how often it checkpoints (`checkpoint_every`, `keep_last`) and a rank's threads may
/// change; the model section and the batch size are compared on their own, for a
/// clearer message; the world size is not in the config.
pub(crate) fn config_fingerprint(cfg: &Config) -> String {
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

#[derive(Serialize, Deserialize)]
struct Manifest {
    world_size: usize,
    seed: u64,
    /// Absent from checkpoints written before these were recorded: then not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transforms: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<String>,
    progress: Progress,
    /// xxh3-64 (hex) of `dense.bin`, then of `shard-0.bin`, `shard-1.bin`, …
    checksums: Vec<String>,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .with_context(|| format!("{}: cannot write", path.display()))
}

fn dense_bytes(state: &mut ModelState, adam: &Adam<f32>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let (steps, m, v) = adam.state();
    out.extend_from_slice(&steps.to_le_bytes());
    let mut params = Vec::new();
    state
        .net_mut()
        .visit_params("", &mut |_, p, _| params.push(p.to_vec()));
    out.extend_from_slice(&(params.len() as u64).to_le_bytes());
    let empty = Vec::new();
    for (i, p) in params.iter().enumerate() {
        for slice in [p, m.get(i).unwrap_or(&empty), v.get(i).unwrap_or(&empty)] {
            out.extend_from_slice(&(slice.len() as u64).to_le_bytes());
            slice
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }
    out
}

/// The contents of a checkpoint's `dense.bin`: Adam's step count, then per parameter
/// tensor its values, first and second moments, in the network's parameter order.
pub fn parse_dense(bytes: &[u8]) -> Result<(u64, Vec<[Vec<f32>; 3]>)> {
    let bad = || anyhow!("dense.bin: not a distributed checkpoint");
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(bad());
    }
    let mut at = 8;
    let u64_at = |at: &mut usize| -> Result<u64> {
        let v = bytes.get(*at..*at + 8).ok_or_else(bad)?;
        *at += 8;
        Ok(u64::from_le_bytes(v.try_into().unwrap()))
    };
    let steps = u64_at(&mut at)?;
    let n = u64_at(&mut at)? as usize;
    let slice = |at: &mut usize| -> Result<Vec<f32>> {
        let len = u64_at(at)? as usize;
        let raw = bytes.get(*at..*at + 4 * len).ok_or_else(bad)?;
        *at += 4 * len;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    };
    let mut tensors = Vec::with_capacity(n);
    for _ in 0..n {
        tensors.push([slice(&mut at)?, slice(&mut at)?, slice(&mut at)?]);
    }
    if at != bytes.len() {
        return Err(anyhow!(
            "dense.bin: {} bytes after the last tensor",
            bytes.len() - at
        ));
    }
    Ok((steps, tensors))
}

fn load_dense(bytes: &[u8], state: &mut ModelState, adam: &mut Adam<f32>) -> Result<()> {
    let bad = || anyhow!("dense.bin: not a distributed checkpoint of this model");
    let (steps, tensors) = parse_dense(bytes).map_err(|_| bad())?;
    let n = tensors.len();
    let mut it = tensors.into_iter();
    let mut ok = true;
    let (mut m, mut v) = (Vec::new(), Vec::new());
    state
        .net_mut()
        .visit_params("", &mut |_, p, _| match it.next() {
            Some([sp, sm, sv]) if sp.len() == p.len() => {
                p.copy_from_slice(&sp);
                m.push(sm);
                v.push(sv);
            }
            _ => ok = false,
        });
    if !ok || m.len() != n {
        return Err(bad());
    }
    if steps > 0 {
        adam.set_state(state.net_mut(), steps, m, v)
            .map_err(|e| anyhow!("dense.bin: {e}"))?;
    }
    Ok(())
}

/// Writes checkpoint `stepN` (collective) and keeps the newest `keep_last` (0: all).
#[allow(clippy::too_many_arguments)]
pub fn save(
    root: &Path,
    comm: &mut dyn Comm,
    run: &RunIdentity,
    p: &Progress,
    state: &mut ModelState,
    adam: &Adam<f32>,
    shard: &EmbeddingLayer,
    keep_last: usize,
) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let tmp = root.join(format!(".step{}.tmp", p.step));
    let dir = root.join(format!("step{}", p.step));
    let mut err: Option<anyhow::Error> = None;
    if rank == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(e) = std::fs::create_dir_all(&tmp) {
            err = Some(anyhow!("{}: cannot create: {e}", tmp.display()));
        }
    }
    comm.barrier();
    let mut sum = 0u64;
    if err.is_none() {
        let mut bytes = Vec::new();
        let r = shard
            .save(&mut bytes)
            .map_err(|e| anyhow!("cannot serialise the shard: {e}"))
            .and_then(|_| write_synced(&tmp.join(format!("shard-{rank}.bin")), &bytes));
        sum = xxh3_64(&bytes);
        err = r.err();
    }
    let sums = comm.all_gather_u64(&[sum]);
    let mut failed = [err.is_some() as u64 as f64];
    comm.all_reduce_sum_f64(&mut failed);
    if rank == 0 && failed[0] == 0.0 {
        let r = (|| -> Result<()> {
            let dense = dense_bytes(state, adam);
            write_synced(&tmp.join("dense.bin"), &dense)?;
            let mut checksums = vec![format!("{:016x}", xxh3_64(&dense))];
            checksums.extend(sums.iter().map(|s| format!("{s:016x}")));
            let m = Manifest {
                world_size: size,
                seed: run.seed,
                model: Some(run.model.clone()),
                batch_size: Some(run.batch_size),
                transforms: Some(run.transforms.clone()),
                config: Some(run.config.clone()),
                progress: p.clone(),
                checksums,
            };
            write_synced(
                &tmp.join("manifest.json"),
                serde_json::to_string_pretty(&m)?.as_bytes(),
            )?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).with_context(|| {
                format!("{}: cannot rename to {}", tmp.display(), dir.display())
            })?;
            if let Ok(d) = std::fs::File::open(root) {
                let _ = d.sync_all();
            }
            if keep_last > 0 {
                let all = list(root);
                for old in all.iter().take(all.len().saturating_sub(keep_last)) {
                    let _ = std::fs::remove_dir_all(&old.1);
                }
            }
            Ok(())
        })();
        err = r.err();
    }
    let mut failed2 = [err.is_some() as u64 as f64 + failed[0]];
    comm.all_reduce_sum_f64(&mut failed2);
    if let Some(e) = err {
        return Err(e.context(format!("writing checkpoint {}", dir.display())));
    }
    if failed2[0] > 0.0 {
        bail!("another rank failed to write checkpoint {}", dir.display());
    }
    Ok(())
}

/// Checkpoint folders with a manifest, oldest first.
fn list(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step")?.parse().ok()?;
            e.path()
                .join("manifest.json")
                .is_file()
                .then(|| (step, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Whether `root` holds a distributed checkpoint (a `stepN` folder with a manifest).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) fn exists(root: &Path) -> bool {
    !list(root).is_empty()
}

/// Before a fresh run: refuses to discard an interrupted run's checkpoints, removes a
/// finished run's (and unfinished temp folders). Rank 0 only.
pub(crate) fn clear_finished(root: &Path) -> Result<()> {
    let all = list(root);
    mfh_train::refuse_interrupted(root, all.last().map(|(_, d)| d))?;
    for (_, d) in &all {
        std::fs::remove_dir_all(d).with_context(|| format!("{}: cannot remove", d.display()))?;
    }
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".step") && n.ends_with(".tmp") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

pub(crate) use mfh_train::mark_complete;

/// Checkpoint folders under `root`, newest first (the order a resume tries them in).
pub(crate) fn newest_first(root: &Path) -> Vec<PathBuf> {
    list(root).into_iter().rev().map(|(_, d)| d).collect()
}

/// A checkpoint read back into this rank.
pub(crate) struct Restored {
    pub dir: PathBuf,
    pub progress: Progress,
    /// This rank's rows (with their optimizer state) under this run's world size.
    pub layer: EmbeddingLayer,
    /// The world size that wrote the checkpoint, when it is not this run's: every shard
    /// was read and its rows re-sharded.
    pub resharded_from: Option<usize>,
    /// Rows in every shard of the checkpoint (counted when re-sharding, else 0).
    pub rows_read: u64,
}

/// Why a checkpoint could not be restored: it belongs to another run (`Refused`: no
/// other checkpoint of the folder will do either), or it is damaged (`Damaged`: an older
/// one may be intact).
pub(crate) enum RestoreError {
    Refused(anyhow::Error),
    Damaged(anyhow::Error),
}

/// Restores the checkpoint in `dir` into `state`, `adam` and this rank's shard. Refuses a
/// checkpoint of another model, seed, config, global batch size or train data;
/// `template` is this run's empty embedding layer, which the checkpoint's must match.
pub(crate) fn restore(
    dir: &Path,
    (rank, size): (usize, usize),
    run: &RunIdentity,
    template: &EmbeddingLayer,
    state: &mut ModelState,
    adam: &mut Adam<f32>,
) -> Result<Restored, RestoreError> {
    let dir = dir.to_path_buf();
    let path = dir.join("manifest.json");
    let m: Manifest = std::fs::read(&path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .and_then(|b| {
            serde_json::from_slice(&b).with_context(|| format!("{}: bad manifest", path.display()))
        })
        .map_err(RestoreError::Damaged)?;
    check_identity(&dir, &m, run).map_err(RestoreError::Refused)?;
    (|| -> Result<Restored> {
        if m.world_size == 0 || m.checksums.len() != 1 + m.world_size {
            bail!(
                "{}: {} checksums for a world of {}: the checkpoint is damaged",
                path.display(),
                m.checksums.len(),
                m.world_size
            );
        }
        let dense_path = dir.join("dense.bin");
        let dense = std::fs::read(&dense_path)
            .with_context(|| format!("{}: cannot read", dense_path.display()))?;
        check_sum(&dense_path, &m.checksums[0], xxh3_64(&dense))?;
        load_dense(&dense, state, adam)?;
        drop(dense);
        let (layer, resharded_from, rows_read) = if m.world_size == size {
            let (layer, _) = read_shard(&dir, &m.checksums, m.world_size, rank, None)?;
            (layer, None, 0)
        } else {
            let (layer, rows) = reshard(&dir, &m.checksums, m.world_size, rank, size)?;
            (layer, Some(m.world_size), rows)
        };
        check_layout(&dir, &layer, template)?;
        Ok(Restored {
            dir: dir.clone(),
            progress: m.progress.clone(),
            layer,
            resharded_from,
            rows_read,
        })
    })()
    .map_err(RestoreError::Damaged)
}

/// Refuses to continue another run: model section, seed, global batch size, config,
/// train data. The world size may differ.
fn check_identity(dir: &Path, m: &Manifest, run: &RunIdentity) -> Result<()> {
    let d = dir.display();
    if let Some(model) = m.model.as_ref().filter(|&x| *x != run.model) {
        bail!(
            "{d}: the checkpoint trains model section `{model}`, not `{}` (pass --model {model})",
            run.model
        );
    }
    if m.seed != run.seed {
        bail!(
            "{d}: the checkpoint was trained with seed {}, this run has {}: resume with --seed {}",
            m.seed,
            run.seed,
            m.seed
        );
    }
    if let Some(b) = m.batch_size.filter(|&b| b != run.batch_size) {
        bail!(
            "{d}: the checkpoint was trained with a global batch of {b} rows, this run has `train.batch_size = {}`: the batches it skips on resume would not be the ones trained on; set `train.batch_size = {b}` (the number of ranks may change, the global batch size may not)",
            run.batch_size
        );
    }
    if let Some(then) = m.config.as_ref().filter(|&c| *c != run.config) {
        let diff = run
            .config
            .lines()
            .zip(then.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("now `{a}`, then `{b}`"))
            .unwrap_or_else(|| "a key was added or removed".into());
        bail!(
            "{d}: the config differs from the one the checkpoint was trained with ({diff}); on resume only the number of ranks and train.epochs, max_steps, checkpoint_every, keep_last and threads may change"
        );
    }
    if m.transforms.as_ref().is_some_and(|t| *t != run.transforms) {
        bail!(
            "{d}: the train split no longer reads as it did when the checkpoint was written (its fitted statistics differ): the data changed; train again without --resume"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> RunIdentity {
        RunIdentity {
            model: "mmoe".into(),
            seed: 3,
            batch_size: 64,
            config: "a = 1\nb = 2\n".into(),
            transforms: "00000000000000aa".into(),
        }
    }

    fn manifest(world_size: usize, run: &RunIdentity) -> Manifest {
        Manifest {
            world_size,
            seed: run.seed,
            model: Some(run.model.clone()),
            batch_size: Some(run.batch_size),
            transforms: Some(run.transforms.clone()),
            config: Some(run.config.clone()),
            progress: Progress::default(),
            checksums: Vec::new(),
        }
    }

    #[test]
    fn a_resume_may_change_the_world_size_but_not_the_run() {
        let dir = Path::new("ck/step5");
        let run = identity();
        check_identity(dir, &manifest(2, &run), &run).unwrap();
        let refused = |edit: &dyn Fn(&mut RunIdentity)| {
            let mut other = identity();
            edit(&mut other);
            check_identity(dir, &manifest(2, &run), &other)
                .unwrap_err()
                .to_string()
        };
        let e = refused(&|r| r.batch_size = 32);
        assert!(
            e.contains("global batch of 64 rows") && e.contains("train.batch_size = 32"),
            "{e}"
        );
        assert!(refused(&|r| r.seed = 4).contains("--seed 3"));
        assert!(refused(&|r| r.model = "ple".into()).contains("--model mmoe"));
        let e = refused(&|r| r.config = "a = 1\nb = 3\n".into());
        assert!(e.contains("now `b = 3`, then `b = 2`"), "{e}");
        assert!(refused(&|r| r.transforms = "1".into()).contains("the data changed"));
        // A manifest written before these were recorded checks the seed only.
        let old: Manifest =
            serde_json::from_str(r#"{"world_size": 2, "seed": 3, "progress": {"step": 5, "epoch": 0, "batches_done": 5, "loss_ema": null, "best": null, "since_best": 0}, "checksums": []}"#)
                .unwrap();
        check_identity(dir, &old, &identity()).unwrap();
        let e = check_identity(
            dir,
            &old,
            &RunIdentity {
                seed: 9,
                ..identity()
            },
        );
        assert!(e.is_err());
    }

    #[test]
    fn the_fingerprint_ignores_run_length_and_batch_size_only() {
        let text = r#"
[data]
sources = ["log.csv"]
[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[models.mmoe]
type = "mmoe"
experts = 2
expert_layers = [8]
tower = [4]
[train]
batch_size = 64
epochs = 2
max_steps = 25
lr = 0.01
"#;
        let tmp = tempfile::tempdir().unwrap();
        let load = |t: &str| {
            let p = tmp.path().join("c.toml");
            std::fs::write(&p, t).unwrap();
            mfh_config::Config::load(&p).unwrap()
        };
        let base = config_fingerprint(&load(text));
        let longer = text
            .replace(
                "max_steps = 25",
                "max_steps = 50\ncheckpoint_every = 5\nthreads = 2",
            )
            .replace("epochs = 2", "epochs = 3")
            .replace("batch_size = 64", "batch_size = 32");
        assert_eq!(config_fingerprint(&load(&longer)), base);
        let other = text.replace("lr = 0.01", "lr = 0.02");
        assert_ne!(config_fingerprint(&load(&other)), base);
    }
}
