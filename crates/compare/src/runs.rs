//! One (model, seed) run of a comparison: the splits it selects and reports on, its
//! folder `OUT/runs/MODEL/seedS/`, and training and scoring it into a [`RunRecord`]
//! (`run.json`, written last, marks the run finished).

use crate::cellsel::{cell_selection, CellSelection};
use anyhow::{bail, Context, Result};
use mfh_artifact::model_dir::{load_model, write_atomic};
use mfh_artifact::scoring::collect_predictions;
use mfh_config::Config;
use mfh_data::{Pipeline, StreamOptions};
use mfh_metrics::MetricRecord;
use mfh_train::{train, TrainOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One finished (model, seed) run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub model: String,
    /// The model section's `type`.
    pub kind: String,
    pub seed: u64,
    pub params: usize,
    pub train_seconds: f64,
    pub steps: u64,
    pub best_step: u64,
    pub select_split: String,
    pub report_split: String,
    /// Metrics on the report split.
    pub records: Vec<MetricRecord>,
    /// Selection-split metrics at every evaluation: (step, records).
    #[serde(default)]
    pub history: Vec<(u64, Vec<MetricRecord>)>,
    /// Per-cell checkpoint selection (tree models): each cell answered by the checkpoint
    /// where its own selection metric peaked.
    #[serde(default)]
    pub cellsel: Option<CellSelection>,
}

/// The splits a comparison selects and reports on.
pub fn protocol(cfg: &Config) -> Result<(String, String)> {
    if cfg.splits.contains_key("test") {
        let p = Arc::new(Pipeline::new(cfg)?);
        let mut rows = 0;
        for b in p.stream("test", StreamOptions::in_order(4096))? {
            rows += b?.n;
        }
        if rows > 0 {
            return Ok((cfg.train.valid_split.clone(), "test".into()));
        }
    }
    match (&cfg.compare.select, &cfg.compare.report) {
        (Some(s), Some(r)) if s != r => Ok((s.clone(), r.clone())),
        _ => bail!(
            "{}: the `test` split is empty or missing, so a comparison needs `[compare] select` and `report`: two different splits (e.g. the first and second valid day)",
            cfg.source_file.display()
        ),
    }
}

/// The folder of one (model, seed) run.
pub(crate) fn run_dir(out: &Path, model: &str, seed: u64) -> PathBuf {
    out.join("runs").join(model).join(format!("seed{seed}"))
}

/// The run's record if `run.json` is there and reads back; a run without one is unfinished.
pub(crate) fn finished_run(dir: &Path) -> Option<RunRecord> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Trains `model` with `seed` into `dir/model` (selecting on `cfg.train.valid_split`,
/// resuming an interrupted run), scores the `report` split, and writes `predictions.bin`
/// and then `run.json`.
pub(crate) fn train_run(
    cfg: &Config,
    model: &str,
    seed: u64,
    dir: &Path,
    report: &str,
    progress: bool,
    tensorboard: Option<PathBuf>,
) -> Result<RunRecord> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let kind = cfg.models[model]
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let cellsel = kind == "mfh" || kind == "hmtl";
    let model_dir = dir.join("model");
    let summary = train(
        cfg,
        &TrainOptions {
            hooks: Default::default(),
            tensorboard,
            publish: None,
            follow: None,
            model: Some(model.into()),
            out: model_dir.clone(),
            seed: Some(seed),
            progress,
            keep_checkpoints: cellsel,
            // A comparison interrupted mid-run continues that run.
            resume: true,
            init_from: None,
        },
    )?;
    let mut m = load_model(&model_dir)?;
    let p = Arc::new(m.pipeline(cfg)?);
    let preds = collect_predictions(&mut m.state, &p, report, cfg.train.batch_size)?;
    let use_groups = cfg.data.gauc_column.is_some();
    let rep = preds.report(&m.meta.grid, report, use_groups, None);
    write_atomic(dir, "predictions.bin", &preds.to_bytes())?;
    let history: Vec<(u64, Vec<MetricRecord>)> = summary
        .history
        .iter()
        .map(|(s, r)| (*s, r.records.clone()))
        .collect();
    let cellsel = if cellsel {
        Some(cell_selection(
            cfg,
            &m.meta.grid,
            &model_dir,
            &history,
            &p,
            report,
            use_groups,
        )?)
    } else {
        None
    };
    let r = RunRecord {
        model: model.into(),
        kind,
        seed,
        params: summary.params,
        train_seconds: summary.seconds,
        steps: summary.steps,
        best_step: summary.best_step,
        select_split: cfg.train.valid_split.clone(),
        report_split: report.into(),
        records: rep.records,
        history,
        cellsel,
    };
    write_atomic(
        dir,
        "run.json",
        serde_json::to_string_pretty(&r)?.as_bytes(),
    )?;
    Ok(r)
}

/// The models of `runs` in order of first appearance.
pub(crate) fn model_order(runs: &[RunRecord]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in runs {
        if !v.contains(&r.model) {
            v.push(r.model.clone());
        }
    }
    v
}
