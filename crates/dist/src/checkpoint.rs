//! Checkpoints of a distributed run, in `OUT/checkpoints/stepN/`: `dense.bin` (rank 0:
//! the dense parameters and Adam's moments), `shard-R.bin` (rank R: its rows and their
//! optimizer state, in the embedding layer's own format) and `manifest.json` (world
//! size, progress, the selection state, every file's xxh3). All files are written to a
//! temp folder that rank 0 renames once every rank has synced its file and the manifest
//! is written, so a folder named `stepN` is always whole. The folder must be shared by
//! the ranks (one machine, or a shared file system). Resume needs the same world size.

use crate::comm::Comm;
use anyhow::{anyhow, bail, Context, Result};
use mfh_embedding::EmbeddingLayer;
use mfh_nn::Adam;
use mfh_train::ModelState;
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
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    world_size: usize,
    seed: u64,
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
        .net
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

fn load_dense(bytes: &[u8], state: &mut ModelState, adam: &mut Adam<f32>) -> Result<()> {
    let bad = || anyhow!("dense.bin: not a distributed checkpoint of this model");
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
    let mut slices = Vec::with_capacity(3 * n);
    for _ in 0..3 * n {
        let len = u64_at(&mut at)? as usize;
        let raw = bytes.get(at..at + 4 * len).ok_or_else(bad)?;
        at += 4 * len;
        slices.push(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<f32>>(),
        );
    }
    let mut it = slices.chunks_exact(3);
    let mut ok = true;
    let (mut m, mut v) = (Vec::new(), Vec::new());
    state.net.visit_params("", &mut |_, p, _| match it.next() {
        Some([sp, sm, sv]) if sp.len() == p.len() => {
            p.copy_from_slice(sp);
            m.push(sm.clone());
            v.push(sv.clone());
        }
        _ => ok = false,
    });
    if !ok || m.len() != n {
        return Err(bad());
    }
    if steps > 0 {
        adam.set_state(state.net.as_mut(), steps, m, v)
            .map_err(|e| anyhow!("dense.bin: {e}"))?;
    }
    Ok(())
}

/// Writes checkpoint `stepN` (collective) and keeps the newest `keep_last` (0: all).
#[allow(clippy::too_many_arguments)]
pub fn save(
    root: &Path,
    comm: &mut dyn Comm,
    seed: u64,
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
                seed,
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

/// Restores the newest whole checkpoint under `root` into `state`, `adam` and this
/// rank's shard; `None` when there is none.
pub fn restore(
    root: &Path,
    rank: usize,
    size: usize,
    state: &mut ModelState,
    adam: &mut Adam<f32>,
) -> Result<Option<(Progress, u64, EmbeddingLayer)>> {
    let Some((_, dir)) = list(root).pop() else {
        return Ok(None);
    };
    let read = |name: &str| -> Result<Vec<u8>> {
        std::fs::read(dir.join(name))
            .with_context(|| format!("{}: cannot read", dir.join(name).display()))
    };
    let m: Manifest = serde_json::from_slice(&read("manifest.json")?)
        .with_context(|| format!("{}: bad manifest", dir.display()))?;
    if m.world_size != size {
        bail!(
            "{}: written by {} ranks, this run has {size}: resume with `mpirun -np {}`",
            dir.display(),
            m.world_size,
            m.world_size
        );
    }
    let check = |i: usize, bytes: &[u8], name: &str| -> Result<()> {
        if m.checksums.get(i) != Some(&format!("{:016x}", xxh3_64(bytes))) {
            bail!(
                "{}: checksum mismatch: the checkpoint is damaged",
                dir.join(name).display()
            );
        }
        Ok(())
    };
    let dense = read("dense.bin")?;
    check(0, &dense, "dense.bin")?;
    load_dense(&dense, state, adam)?;
    let name = format!("shard-{rank}.bin");
    let shard = read(&name)?;
    check(1 + rank, &shard, &name)?;
    let layer = EmbeddingLayer::load(&mut &shard[..]).map_err(|e| anyhow!("{name}: {e}"))?;
    Ok(Some((m.progress, m.seed, layer)))
}
