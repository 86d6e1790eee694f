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

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"model": "gbdt", "seed": 1, "split": "test", "behaviour": "click", "cell": "all", "metric": "auc", "value": 0.61, "n": 20, "positives": 7}"#;

    #[test]
    fn no_peers_folder_is_no_peers() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(load_peers(tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn records_are_grouped_into_one_run_per_model_and_seed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("peers");
        std::fs::create_dir_all(&dir).unwrap();
        let seed2 = RECORD.replace("\"seed\": 1", "\"seed\": 2");
        let gauc = RECORD.replace("\"auc\"", "\"gauc\"");
        std::fs::write(dir.join("b.json"), format!("[{seed2}]")).unwrap();
        std::fs::write(dir.join("a.json"), format!("[{RECORD}, {gauc}]")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not read").unwrap();
        let runs = load_peers(tmp.path()).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].seed, runs[0].records.len()), (1, 2));
        assert_eq!((runs[1].seed, runs[1].records.len()), (2, 1));
        let r = &runs[0];
        assert_eq!((r.kind.as_str(), r.report_split.as_str()), ("peer", "test"));
        assert_eq!(r.records[1].metric, "gauc");
        assert_eq!(r.records[0].value, Some(0.61));
    }

    #[test]
    fn a_file_that_is_not_a_list_of_records_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("peers");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bad.json"), "{\"model\": 1}").unwrap();
        let e = format!("{:#}", load_peers(tmp.path()).unwrap_err());
        assert!(
            e.contains("bad.json") && e.contains("not a list of result records"),
            "{e}"
        );
    }
}
