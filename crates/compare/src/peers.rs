//! Results of peer scripts (`bench/peers/`, e.g. LightGBM): `OUT/peers/*.json`, records in
//! the shape of `results.json`, read as one run per (model, seed) and shown as rows of
//! their own. They have no history, predictions or parameter count.

use crate::runs::RunRecord;
use anyhow::{Context, Result};
use mfh_metrics::MetricRecord;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct PeerRecord {
    model: String,
    seed: u64,
    split: String,
    behaviour: String,
    cell: String,
    metric: String,
    value: Option<f64>,
    n: u64,
    positives: u64,
}

/// Every peer run in `OUT/peers/` (files in name order; none when the folder is missing).
pub(crate) fn load_peers(out: &Path) -> Result<Vec<RunRecord>> {
    let dir = out.join("peers");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut runs: BTreeMap<(String, u64), RunRecord> = BTreeMap::new();
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        let recs: Vec<PeerRecord> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a list of result records", f.display()))?;
        for r in recs {
            let run = runs
                .entry((r.model.clone(), r.seed))
                .or_insert_with(|| peer_run(&r));
            run.records.push(MetricRecord {
                split: r.split,
                behaviour: r.behaviour,
                cell: r.cell,
                metric: r.metric,
                value: r.value,
                n: r.n,
                positives: r.positives,
                missing: 0,
            });
        }
    }
    Ok(runs.into_values().collect())
}

/// An empty run of kind `peer` for the (model, seed) of `r`.
fn peer_run(r: &PeerRecord) -> RunRecord {
    RunRecord {
        model: r.model.clone(),
        kind: "peer".into(),
        seed: r.seed,
        params: 0,
        train_seconds: 0.0,
        steps: 0,
        best_step: 0,
        select_split: String::new(),
        report_split: r.split.clone(),
        records: Vec::new(),
        history: Vec::new(),
        cellsel: None,
    }
}
