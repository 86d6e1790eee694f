//! The model folder: everything needed to score with a trained model, written so that a
//! crash never leaves a folder that loads as something it is not, nor loses the model it
//! held before.
//!
//! Files: `config.toml` (the resolved config, absolute paths, so that the folder loads
//! from any working directory), `transforms.json` (the fitted numeric statistics),
//! `dense.bin` (named dense tensors, checksummed), `embeddings.bin` (embedding tables,
//! checksummed), `metrics.json` (the selection split's metrics at save time),
//! `serving.json` and `tables/` (what a server needs beyond the model: see
//! [`crate::serving`]) and `model.json` (format version, model spec, grid, input layout,
//! and the xxh3-64 of every other file).
//!
//! Saving is a two-phase commit, because the folder also holds what is not the model
//! (the trainer's `checkpoints/`) and so cannot be swapped whole: every file is first
//! written to the temp folder `.saving/` inside it and fsynced (files, then the folder);
//! then each is renamed into place, `model.json` last, and `.saving/` is removed. A crash
//! while staging leaves the previous model untouched (the stage is incomplete and is
//! discarded); a crash while renaming leaves a complete, fsynced stage, which the next
//! load or save finishes moving ("rolls forward") before reading. Loading checks every
//! checksum `model.json` lists.

use crate::state::{embedding_layer, grid_loss, ModelState};
use anyhow::{anyhow, bail, Context, Result};
use mfh_config::{Config, TaskGrid};
use mfh_data::{FieldLayout, FittedTransforms, Pipeline};
use mfh_embedding::EmbeddingLayer;
use mfh_model::ModelSpec;
use mfh_nn::Module;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

pub const FORMAT_VERSION: u32 = 1;
const DENSE_MAGIC: &[u8; 8] = b"MFHDENS1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub format_version: u32,
    pub mfh_version: String,
    /// The config's model section name.
    pub model_name: String,
    pub spec: ModelSpec,
    pub grid: TaskGrid,
    /// Embedded fields and numeric features in input order.
    pub single_fields: Vec<(String, String, usize)>,
    pub multi_fields: Vec<(String, String, usize, bool)>,
    pub dense_features: Vec<String>,
    pub n_in: usize,
    pub seed: u64,
    pub params: usize,
    /// Optimiser steps taken when saved.
    pub step: u64,
    pub selection_split: String,
    pub selection_metric: String,
    pub selection_value: Option<f64>,
    /// xxh3-64 of dense.bin and embeddings.bin, hex.
    pub checksums: std::collections::BTreeMap<String, String>,
}

/// Writes `bytes` to `dir/name` atomically: temp file, fsync, rename, fsync the folder.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })()
    .with_context(|| format!("{}: cannot write", dst.display()))
}

fn dense_bytes(state: &mut ModelState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(DENSE_MAGIC);
    let mut put = |name: &str, kind: u8, v: &[f32]| {
        out.push(kind);
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    };
    state
        .net_mut()
        .visit_params("", &mut |name, p, _| put(name, 0, p));
    state
        .net_mut()
        .visit_buffers("", &mut |name, b| put(name, 1, b));
    state
        .loss
        .visit_params("loss.", &mut |name, p, _| put(name, 0, p));
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// How many values the well-formed entries of a dense.bin hold (its format is checked by
/// [`load_dense`]; this only bounds what building the model may allocate).
fn dense_values(bytes: &[u8]) -> u64 {
    let body = &bytes[..bytes.len().saturating_sub(8)];
    let (mut pos, mut total) = (DENSE_MAGIC.len(), 0u64);
    let word = |at: usize, n: usize| body.get(at..at.checked_add(n)?);
    while let Some(len) = word(pos + 1, 4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let Some(n) = word(pos + 5 + len, 8) else {
            break;
        };
        let n = u64::from_le_bytes(n.try_into().unwrap());
        match (n as usize)
            .checked_mul(4)
            .and_then(|b| (pos + 13 + len).checked_add(b))
        {
            Some(next) if next <= body.len() => pos = next,
            _ => break,
        }
        total = total.saturating_add(n);
    }
    total
}

fn load_dense(state: &mut ModelState, bytes: &[u8], file: &Path) -> Result<()> {
    let bad = |m: String| anyhow!("{}: {m}", file.display());
    if bytes.len() < 16 || &bytes[..8] != DENSE_MAGIC {
        return Err(bad("not an mfh dense-weights file (bad magic)".into()));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(body) != u64::from_le_bytes(tail.try_into().unwrap()) {
        return Err(bad(
            "checksum mismatch: the file is corrupt or truncated".into()
        ));
    }
    let mut entries = Vec::new();
    let mut pos = 8;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let s = body
            .get(*pos..*pos + n)
            .ok_or_else(|| bad("truncated entry".into()))?;
        *pos += n;
        Ok(s)
    };
    while pos < body.len() {
        let kind = take(&mut pos, 1)?[0];
        let len = u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap()) as usize;
        let name = String::from_utf8(take(&mut pos, len)?.to_vec())
            .map_err(|_| bad("bad tensor name".into()))?;
        let n = u64::from_le_bytes(take(&mut pos, 8)?.try_into().unwrap()) as usize;
        let raw = take(
            &mut pos,
            n.checked_mul(4).ok_or_else(|| bad("bad length".into()))?,
        )?;
        let vals: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        entries.push((kind, name, vals));
    }
    let mut it = entries.into_iter();
    let mut err = None;
    let mut fill = |kind: u8, name: &str, dst: &mut [f32]| {
        if err.is_some() {
            return;
        }
        match it.next() {
            Some((k, n, v)) if k == kind && n == name && v.len() == dst.len() => {
                dst.copy_from_slice(&v)
            }
            Some((_, n, v)) => {
                err = Some(format!(
                    "tensor `{n}` ({} values) does not match the model's `{name}` ({} values)",
                    v.len(),
                    dst.len()
                ))
            }
            None => err = Some(format!("tensor `{name}` is missing")),
        }
    };
    state
        .net_mut()
        .visit_params("", &mut |name, p, _| fill(0, name, p));
    state
        .net_mut()
        .visit_buffers("", &mut |name, b| fill(1, name, b));
    state
        .loss
        .visit_params("loss.", &mut |name, p, _| fill(0, name, p));
    if let Some(e) = err {
        return Err(bad(e));
    }
    if it.next().is_some() {
        return Err(bad("the file has more tensors than the model".into()));
    }
    Ok(())
}

pub struct SaveInfo<'a> {
    pub cfg: &'a Config,
    pub model_name: &'a str,
    pub layout: &'a FieldLayout,
    pub transforms: &'a FittedTransforms,
    pub seed: u64,
    pub step: u64,
    pub selection_split: &'a str,
    pub selection_metric: &'a str,
    pub selection_value: Option<f64>,
    pub metrics_json: &'a str,
}

/// The temp folder inside a model folder where a save stages its files.
pub const STAGING: &str = ".saving";

/// Saves the model into `dir` (created if needed), atomically: see the module docs.
pub fn save_model(dir: &Path, state: &mut ModelState, info: &SaveInfo) -> Result<()> {
    // A saved model honours its tables' caps and expiry, whatever the eviction cadence.
    state.emb.evict_now();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the model folder", dir.display()))?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("config.toml".into(), info.cfg.to_toml_string().into_bytes()),
        (
            "transforms.json".into(),
            serde_json::to_string_pretty(info.transforms)?.into_bytes(),
        ),
        ("dense.bin".into(), dense_bytes(state)),
    ];
    let mut emb = Vec::new();
    state
        .emb
        .save(&mut emb)
        .context("cannot serialise the embeddings")?;
    files.push(("embeddings.bin".into(), emb));
    files.push(("metrics.json".into(), info.metrics_json.as_bytes().to_vec()));
    files.extend(crate::serving::serving_files(info.cfg)?);
    let checksums = files
        .iter()
        .map(|(name, bytes)| (name.clone(), format!("{:016x}", xxh3_64(bytes))))
        .collect();
    let meta = ModelMeta {
        format_version: FORMAT_VERSION,
        mfh_version: env!("CARGO_PKG_VERSION").to_string(),
        model_name: info.model_name.to_string(),
        spec: state.spec.clone(),
        grid: state.grid.clone(),
        single_fields: info.layout.single.clone(),
        multi_fields: info.layout.multi.clone(),
        dense_features: info.layout.dense.clone(),
        n_in: state.n_in(),
        seed: info.seed,
        params: state.net_mut().num_params(),
        step: info.step,
        selection_split: info.selection_split.to_string(),
        selection_metric: info.selection_metric.to_string(),
        selection_value: info.selection_value,
        checksums,
    };
    files.push((
        "model.json".into(),
        serde_json::to_string_pretty(&meta)?.into_bytes(),
    ));

    // One writer at a time (a trainer saving, a load finishing an interrupted save).
    let _lock = lock(dir)?;
    // An earlier save that crashed while moving its files in is finished first, so the
    // folder holds one whole model while this one stages.
    roll_forward_locked(dir)?;
    // Phase 1: stage every file, fsynced, in the temp folder (what an unfinished
    // earlier stage left there is overwritten or removed); model.json last, under a
    // temporary name renamed once it is whole, so that its presence means the stage is.
    let stage = dir.join(STAGING);
    if stage.is_dir() {
        // A stale model.json goes first: only this save's may mark the stage whole.
        let names: std::collections::BTreeSet<&str> = files
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != "model.json")
            .collect();
        remove_stale(&stage, "", &names)?;
    }
    let Some((meta_name, meta_bytes)) = files.pop() else {
        bail!("no model.json to save");
    };
    for (name, bytes) in &files {
        let path = stage.join(name);
        let parent = path.parent().unwrap_or(&stage);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
        write_synced(&path, bytes)?;
    }
    sync_dir(&stage.join("tables"));
    sync_dir(&stage);
    let part = stage.join(".model.json.part");
    write_synced(&part, &meta_bytes)?;
    std::fs::rename(&part, stage.join(&meta_name))
        .with_context(|| format!("{}: cannot rename", part.display()))?;
    sync_dir(&stage);
    sync_dir(dir);
    // Phase 2: move them in, model.json last.
    roll_forward_locked(dir)
}

/// Holds the model folder's writer lock (`.saving.lock`, an advisory `flock`) while
/// alive.
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".saving.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open the folder's lock", path.display()))?;
    f.lock()
        .with_context(|| format!("{}: cannot lock", path.display()))?;
    Ok(f)
}

/// Removes what an unfinished stage holds besides `keep` (paths relative to the stage).
fn remove_stale(dir: &Path, prefix: &str, keep: &std::collections::BTreeSet<&str>) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for entry in rd {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        let ty = entry
            .file_type()
            .with_context(|| format!("{}: cannot stat", path.display()))?;
        if ty.is_dir() {
            remove_stale(&path, &format!("{rel}/"), keep)?;
        } else if !keep.contains(rel.as_str()) {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: cannot remove an unfinished save", path.display()))?;
        }
    }
    Ok(())
}

/// Writes and fsyncs one file (no rename: its folder is a stage nothing reads yet).
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .with_context(|| format!("{}: cannot write", path.display()))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Finishes a save whose stage is complete: moves what is still staged into place,
/// `model.json` last, and removes the stage. The stage counts as complete when its
/// `model.json` parses and every file it lists is in the stage, or already in the folder,
/// with its checksum; anything else is a stage cut short while staging, left for the
/// next save to discard (the folder's own files are then the previous, whole model).
/// Takes the folder's writer lock only when there is a stage to finish, so loading a
/// read-only folder writes nothing. Idempotent.
pub fn roll_forward(dir: &Path) -> Result<()> {
    if !dir.join(STAGING).join("model.json").is_file() {
        return Ok(());
    }
    let _lock = lock(dir)?;
    roll_forward_locked(dir)
}

fn roll_forward_locked(dir: &Path) -> Result<()> {
    let stage = dir.join(STAGING);
    let Ok(meta_bytes) = std::fs::read(stage.join("model.json")) else {
        return Ok(());
    };
    let Ok(meta) = serde_json::from_slice::<ModelMeta>(&meta_bytes) else {
        return Ok(());
    };
    let sum = |p: &Path| {
        std::fs::read(p)
            .ok()
            .map(|b| format!("{:016x}", xxh3_64(&b)))
    };
    let mut staged = Vec::new();
    for (name, want) in &meta.checksums {
        if !safe_name(name) {
            return Ok(());
        }
        let (from, to) = (stage.join(name), dir.join(name));
        if from.is_file() {
            if sum(&from).as_deref() != Some(want.as_str()) {
                return Ok(());
            }
            staged.push(name.as_str());
        } else if sum(&to).as_deref() != Some(want.as_str()) {
            return Ok(());
        }
    }
    let mv = |name: &str| -> Result<()> {
        let from = stage.join(name);
        let to = dir.join(name);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        std::fs::rename(&from, &to).with_context(|| {
            format!(
                "{}: cannot move a saved file into place (from {})",
                to.display(),
                from.display()
            )
        })
    };
    for name in staged {
        mv(name)?;
    }
    sync_dir(&dir.join("tables"));
    // Every other file's rename is durable before model.json's.
    sync_dir(dir);
    mv("model.json")?;
    sync_dir(dir);
    std::fs::remove_dir_all(&stage)
        .with_context(|| format!("{}: cannot remove", stage.display()))?;
    sync_dir(dir);
    Ok(())
}

/// A path inside the model folder: relative, no empty, `.` or `..` component.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))
}

pub struct LoadedModel {
    pub dir: PathBuf,
    pub meta: ModelMeta,
    pub config: Config,
    pub transforms: FittedTransforms,
    pub state: ModelState,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let p = dir.join(name);
    let mut v = Vec::new();
    std::fs::File::open(&p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .with_context(|| {
            format!(
                "{}: cannot read (is this a model folder written by `mfh train`?)",
                p.display()
            )
        })?;
    Ok(v)
}

/// Loads a model folder, checking its format version and file checksums.
pub fn load_model(dir: &Path) -> Result<LoadedModel> {
    if !dir.is_dir() {
        bail!(
            "{}: not a folder (expected a model folder written by `mfh train`)",
            dir.display()
        );
    }
    roll_forward(dir).with_context(|| {
        format!(
            "{}: a save was interrupted while moving its files in, and cannot be finished here",
            dir.display()
        )
    })?;
    let meta_bytes = read(dir, "model.json")?;
    let meta: ModelMeta = serde_json::from_slice(&meta_bytes)
        .with_context(|| format!("{}: cannot parse", dir.join("model.json").display()))?;
    if meta.format_version != FORMAT_VERSION {
        bail!(
            "{}: format version {} but this mfh reads version {FORMAT_VERSION}",
            dir.join("model.json").display(),
            meta.format_version
        );
    }
    for name in ["dense.bin", "embeddings.bin"] {
        if !meta.checksums.contains_key(name) {
            bail!(
                "{}: lists no checksum for {name}: the folder is incomplete or corrupt",
                dir.join("model.json").display()
            );
        }
    }
    // Every file model.json lists (all of them since checksums covered the config,
    // transforms and metrics too; dense.bin and embeddings.bin in older folders).
    let mut files = std::collections::BTreeMap::new();
    for (name, want) in &meta.checksums {
        if !safe_name(name) {
            bail!(
                "{}: lists a file outside the folder (`{name}`)",
                dir.join("model.json").display()
            );
        }
        let bytes = read(dir, name)?;
        let got = format!("{:016x}", xxh3_64(&bytes));
        if *want != got {
            bail!("{}: checksum {got} does not match model.json's {want}: the folder is incomplete or corrupt", dir.join(name).display());
        }
        files.insert(name.as_str(), bytes);
    }
    let config = Config::load(&dir.join("config.toml"))?;
    let transforms: FittedTransforms = serde_json::from_slice(&read(dir, "transforms.json")?)
        .with_context(|| format!("{}: cannot parse", dir.join("transforms.json").display()))?;
    let dense = files.remove("dense.bin").unwrap_or_default();
    let emb_bytes = files.remove("embeddings.bin").unwrap_or_default();
    let emb = EmbeddingLayer::load(&mut &emb_bytes[..])
        .map_err(|e| anyhow!("{}: {e}", dir.join("embeddings.bin").display()))?;
    // A corrupted width in model.json must not allocate gigabytes: the model cannot have
    // more parameters than dense.bin stores values.
    let stored = dense_values(&dense);
    let n_in = emb.width() + meta.dense_features.len();
    let need = meta
        .spec
        .min_params(&crate::state::grid_shape(&meta.grid), n_in);
    if need > u128::from(stored) {
        bail!(
            "{}: the model model.json describes needs at least {need} parameters but dense.bin \
             holds {stored} values: the folder is corrupt",
            dir.display()
        );
    }
    let loss = grid_loss(&config, &meta.grid)?;
    let mut state = ModelState::new(
        meta.grid.clone(),
        meta.spec.clone(),
        emb,
        meta.dense_features.len(),
        loss,
        meta.seed,
    )?;
    if state.n_in() != meta.n_in {
        bail!(
            "{}: input width {} but model.json says {}",
            dir.display(),
            state.n_in(),
            meta.n_in
        );
    }
    load_dense(&mut state, &dense, &dir.join("dense.bin"))?;
    Ok(LoadedModel {
        dir: dir.to_path_buf(),
        meta,
        config,
        transforms,
        state,
    })
}

impl LoadedModel {
    /// A reader for `cfg` (the model's own config, or another with the same schema) with
    /// the model's fitted transforms. Refuses data whose features, grid or layout differ.
    pub fn pipeline(&self, cfg: &Config) -> Result<Pipeline> {
        self.fitted_pipeline(cfg, Pipeline::new(cfg)?)
    }

    /// Checks that `p` (built over `cfg`) reads what the model was trained on and
    /// installs the model's fitted transforms.
    pub(crate) fn fitted_pipeline(&self, cfg: &Config, mut p: Pipeline) -> Result<Pipeline> {
        let grid = cfg.grid();
        if grid != self.meta.grid {
            bail!(
                "{}: its task grid (behaviours {:?}, facets {:?}) differs from the model's (behaviours {:?}, facets {:?})",
                cfg.source_file.display(),
                grid.behaviours,
                grid.facets,
                self.meta.grid.behaviours,
                self.meta.grid.facets
            );
        }
        let l = p.layout();
        if l.single != self.meta.single_fields
            || l.multi != self.meta.multi_fields
            || l.dense != self.meta.dense_features
        {
            bail!(
                "{}: its features differ from the model's (compare with {})",
                cfg.source_file.display(),
                self.dir.join("config.toml").display()
            );
        }
        p.set_transforms(self.transforms.clone())?;
        Ok(p)
    }
}

/// Builds a fresh state for a config and model section.
pub fn fresh_state(
    cfg: &Config,
    layout: &FieldLayout,
    spec: ModelSpec,
    seed: u64,
) -> Result<ModelState> {
    let grid = cfg.grid();
    let emb = embedding_layer(layout, &cfg.train.embedding, seed)?;
    let loss = grid_loss(cfg, &grid)?;
    ModelState::new(grid, spec, emb, layout.dense.len(), loss, seed)
}
