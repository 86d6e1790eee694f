//! The oracle of generated data (`[compare] oracle`: behaviour → the column of its true
//! probability): the report split scored by those probabilities, per behaviour × cell,
//! through the same metrics as the models (`OUT/oracle.json`); `table.md` then shows it
//! and the share of it above chance each model reaches.

use anyhow::{bail, Result};
use mfh_artifact::model_dir::write_atomic;
use mfh_artifact::scoring::Predictions;
use mfh_config::{BehaviourConfig, Config};
use mfh_data::{Pipeline, StreamOptions};
use mfh_metrics::MetricRecord;
use std::path::Path;
use std::sync::Arc;

/// The oracle's records on `report` (none when `[compare] oracle` is empty): the labels
/// and cells read as the models read them, the scores from the oracle columns (read as
/// regression targets by a second pipeline over the same rows).
pub fn oracle_records(cfg: &Config, report: &str) -> Result<Vec<MetricRecord>> {
    let oracle = &cfg.compare.oracle;
    if oracle.is_empty() {
        return Ok(Vec::new());
    }
    let mut ocfg = cfg.clone();
    for b in &mut ocfg.behaviours {
        if let Some(col) = oracle.get(b.name()) {
            *b = BehaviourConfig::Regression {
                name: b.name().to_string(),
                expr: col.clone(),
                clip: None,
            };
        }
    }
    let fitted = |c: &Config| -> Result<Arc<Pipeline>> {
        let mut p = Pipeline::new(c)?;
        p.fit(&c.train.train_split)?;
        Ok(Arc::new(p))
    };
    let (p, po) = (fitted(cfg)?, fitted(&ocfg)?);
    let grid = cfg.grid();
    let nb = grid.n_behaviours();
    let mut all = Predictions {
        n_behaviours: nb,
        ..Default::default()
    };
    let opts = StreamOptions::in_order(4096);
    let mut theirs = po.stream(report, opts.clone())?;
    for b in p.stream(report, opts)? {
        let b = b?;
        let Some(o) = theirs.next() else {
            bail!("oracle: the oracle columns' pass ended before the labels' pass");
        };
        let o = o?;
        if o.rows != b.rows || o.labels.len() != b.labels.len() {
            bail!(
                "oracle: rows {:?}.. of `{report}` read differently with the oracle columns (a missing probability?)",
                b.rows.first()
            );
        }
        all.preds.extend_from_slice(&o.labels);
        all.labels.extend_from_slice(&b.labels);
        all.cells.extend_from_slice(&b.cells);
        all.groups.extend_from_slice(&b.groups);
    }
    if theirs.next().is_some() {
        bail!("oracle: the oracle columns' pass has more rows than the labels' pass");
    }
    let use_groups = cfg.data.gauc_column.is_some();
    let rep = all.report(&grid, report, use_groups, None);
    Ok(rep
        .records
        .into_iter()
        .filter(|r| oracle.contains_key(&r.behaviour))
        .collect())
}

/// Writes `OUT/oracle.json` when the config names oracle columns.
pub(crate) fn write_oracle(cfg: &Config, out: &Path, report: &str) -> Result<()> {
    let recs = oracle_records(cfg, report)?;
    if !recs.is_empty() {
        write_atomic(
            out,
            "oracle.json",
            serde_json::to_string_pretty(&recs)?.as_bytes(),
        )?;
    }
    Ok(())
}

/// `OUT/oracle.json`, when there is one.
pub(crate) fn read_oracle(out: &Path) -> Result<Vec<MetricRecord>> {
    match std::fs::read_to_string(out.join("oracle.json")) {
        Ok(t) => Ok(serde_json::from_str(&t)?),
        Err(_) => Ok(Vec::new()),
    }
}
