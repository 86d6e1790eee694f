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
//!
//! Saving is atomic and loading checks every checksum: see [`crate::commit`].

pub use crate::commit::{roll_forward, write_atomic, STAGING};
use crate::serving::ServingFiles;
use crate::state::{embedding_layer_wide, grid_loss, ModelState};
use anyhow::{anyhow, bail, Context, Result};
use mfh_config::{Config, TaskGrid};
use mfh_data::{FieldLayout, FittedTransforms, Pipeline};
use mfh_embedding::EmbeddingLayer;
use mfh_model::ModelSpec;
use mfh_nn::Module;
use serde::{Deserialize, Serialize};
use std::io::Read;
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

    crate::commit::commit(dir, files)
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
    crate::commit::roll_forward(dir).with_context(|| {
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
        if !crate::commit::safe_name(name) {
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

    /// As [`LoadedModel::pipeline`], with the splits named in `tables` read from those
    /// in-memory tables.
    pub fn pipeline_with(&self, cfg: &Config, tables: &mfh_data::SplitTables) -> Result<Pipeline> {
        self.fitted_pipeline(cfg, Pipeline::with_tables(cfg, tables)?)
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

impl LoadedModel {
    /// A pipeline for a server's requests: over the folder's own side tables when it has
    /// `serving.json`, else over the data the model's config names.
    pub fn serving_pipeline(&self) -> Result<Pipeline> {
        let path = self.dir.join("serving.json");
        if !path.is_file() {
            return self.pipeline(&self.config).with_context(|| {
                format!(
                    "{}: no serving.json (a folder from an older mfh): serving from the data its config names",
                    self.dir.display()
                )
            });
        }
        let files: ServingFiles = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?,
        )
        .with_context(|| format!("{}: cannot parse", path.display()))?;
        let mut cfg = self.config.clone();
        for t in &mut cfg.data.side_tables {
            let Some(s) = files.side_tables.iter().find(|s| s.name == t.name) else {
                bail!("{}: no copy of side table `{}`", path.display(), t.name);
            };
            let p = self.dir.join(&s.file);
            let bytes =
                std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?;
            if format!("{:016x}", xxh3_64(&bytes)) != s.xxh3 {
                bail!(
                    "{}: checksum does not match serving.json: the folder is incomplete or corrupt",
                    p.display()
                );
            }
            t.path = p;
        }
        let p = Pipeline::with_header(&cfg, files.main_columns)?;
        self.fitted_pipeline(&cfg, p)
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
    let copies = spec.embedding_copies(&crate::state::grid_shape(&grid));
    let emb = embedding_layer_wide(layout, &cfg.train.embedding, seed, copies)?;
    let loss = grid_loss(cfg, &grid)?;
    ModelState::new(grid, spec, emb, layout.dense.len(), loss, seed)
}
