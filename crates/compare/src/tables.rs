//! The comparison's reports: `results.json` (one record per model, seed, split,
//! behaviour, cell and metric) and `table.md` (mean ± sd over seeds with bootstrap
//! intervals and deltas against the best flat model, per metric × behaviour; the
//! local-overfitting view; the charts; the models), from the finished runs, their
//! `+cellsel` variants and peer scripts' results.

use crate::overfitting::local_overfitting;
use crate::peers::load_peers;
use crate::plots::plots;
use crate::runs::{model_order, RunRecord};
use crate::statistics::{aggregate, model_intervals, Summary};
use anyhow::Result;
use mfh_artifact::model_dir::write_atomic;
use mfh_config::Config;
use mfh_metrics::{mean_sd, POOLED_CELL};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Models without facet-aware structure: the baselines MFH is measured against.
pub const FLAT_MODELS: &[&str] = &["single", "shared_bottom", "mmoe", "cgc", "ple"];

/// Writes `table.md` and `results.json` from the finished runs.
pub fn write_reports(cfg: &Config, out: &Path, runs: &[RunRecord], bootstrap: usize) -> Result<()> {
    let grid = cfg.grid();
    let base_runs = runs;
    let with_variants = with_variants(out, runs)?;
    let runs = &with_variants[..];
    let models = model_order(runs);
    write_results_json(out, runs)?;
    let intervals = model_intervals(&grid, out, base_runs, &models, bootstrap);
    // With one cell (no facets) the cell and the pooled rows are the same numbers.
    let mut cells = if grid.n_cells() > 1 {
        grid.cell_names()
    } else {
        Vec::new()
    };
    cells.push(POOLED_CELL.into());
    let s = Summary {
        agg: aggregate(runs),
        grid,
        models,
        cells,
        intervals,
    };
    let flat = flat_models(&s.models, runs);

    let mut md = String::new();
    header(&mut md, cfg, runs, &s.models, bootstrap)?;
    for metric in ["auc", "gauc", "logloss"] {
        for (b, bname) in s.grid.behaviours.iter().enumerate() {
            if s.grid.binary[b] {
                metric_table(&mut md, &s, &flat, metric, bname)?;
            }
        }
    }
    oracle_table(&mut md, &s, &crate::oracle::read_oracle(out)?)?;
    local_overfitting(&mut md, &s.grid, base_runs)?;
    plots(&mut md, out, &s, base_runs)?;
    models_table(&mut md, &s.models, runs)?;
    write_atomic(out, "table.md", md.as_bytes())?;
    Ok(())
}

/// The runs, then per-cell checkpoint selection as its own variant (`MODEL+cellsel`),
/// then the peers' runs.
fn with_variants(out: &Path, runs: &[RunRecord]) -> Result<Vec<RunRecord>> {
    let mut with_variants: Vec<RunRecord> = runs.to_vec();
    for r in runs {
        if let Some(cs) = &r.cellsel {
            with_variants.push(RunRecord {
                model: format!("{}+cellsel", r.model),
                kind: format!("{}+cellsel", r.kind),
                records: cs.records.clone(),
                history: Vec::new(),
                cellsel: None,
                ..r.clone()
            });
        }
    }
    with_variants.extend(load_peers(out)?);
    Ok(with_variants)
}

/// results.json: one record per model, seed, split, behaviour, cell and metric.
fn write_results_json(out: &Path, runs: &[RunRecord]) -> Result<()> {
    let mut json = Vec::new();
    for r in runs {
        for rec in &r.records {
            json.push(serde_json::json!({
                "model": r.model, "seed": r.seed, "split": rec.split, "behaviour": rec.behaviour,
                "cell": rec.cell, "metric": rec.metric, "value": rec.value, "n": rec.n, "positives": rec.positives,
            }));
        }
    }
    write_atomic(
        out,
        "results.json",
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    Ok(())
}

/// The models whose kind (that of their last run) is one of [`FLAT_MODELS`].
fn flat_models<'a>(models: &'a [String], runs: &[RunRecord]) -> Vec<&'a String> {
    let kinds: BTreeMap<&str, &str> = runs
        .iter()
        .map(|r| (r.model.as_str(), r.kind.as_str()))
        .collect();
    models
        .iter()
        .filter(|m| FLAT_MODELS.contains(&kinds[m.as_str()]))
        .collect()
}

/// The title and the paragraph on the protocol.
fn header(
    md: &mut String,
    cfg: &Config,
    runs: &[RunRecord],
    models: &[String],
    bootstrap: usize,
) -> Result<()> {
    let seeds = runs.iter().filter(|r| r.model == models[0]).count();
    let (select, report) = runs
        .first()
        .map(|r| (r.select_split.clone(), r.report_split.clone()))
        .unwrap_or_default();
    writeln!(md, "# Comparison\n")?;
    writeln!(
        md,
        "Config `{}`; models selected on split `{select}` and reported on split `{report}`; {seeds} seed(s) each; same data, step budget and early-stopping rule (`{}`, patience {}). Values are mean ± sd over seeds; brackets give a 95 % bootstrap interval of the seed-mean AUC ({bootstrap} resamples of the report rows); **bold** marks the best mean in a row; ⚠ flags cells with fewer than 100 positives.\n",
        cfg.source_file.display(),
        cfg.train.early_stopping.metric,
        cfg.train.early_stopping.patience
    )?;
    Ok(())
}

/// One metric × behaviour: a row per cell, a column per model, and for AUC a column per
/// non-flat model with its difference to the best flat model (nothing when unmeasured).
fn metric_table(
    md: &mut String,
    s: &Summary,
    flat: &[&String],
    metric: &str,
    bname: &str,
) -> Result<()> {
    let measured = s
        .agg
        .iter()
        .any(|((_, b, _, m), c)| b == bname && m == metric && !c.values.is_empty());
    if !measured {
        return Ok(());
    }
    writeln!(md, "## {metric}: {bname}\n")?;
    let mut head = "| cell | n | positives |".to_string();
    let mut rule = "|---|---:|---:|".to_string();
    for m in &s.models {
        write!(head, " {m} |")?;
        rule.push_str("---|");
    }
    if metric == "auc" && !flat.is_empty() {
        for m in s.models.iter().filter(|m| !flat.contains(m)) {
            write!(head, " {m} − best flat |")?;
            rule.push_str("---:|");
        }
    }
    writeln!(md, "{head}\n{rule}")?;
    for cell in &s.cells {
        let line = metric_row(s, flat, metric, bname, cell)?;
        writeln!(md, "{line}")?;
    }
    writeln!(md)?;
    Ok(())
}

/// One cell's row of a metric table: mean ± sd per model (AUC with its interval), the
/// best in bold, then the differences to the best flat model.
fn metric_row(
    s: &Summary,
    flat: &[&String],
    metric: &str,
    bname: &str,
    cell: &str,
) -> Result<String> {
    let key = |m: &String| {
        (
            m.clone(),
            bname.to_string(),
            cell.to_string(),
            metric.to_string(),
        )
    };
    let means: Vec<Option<(f64, f64)>> = s
        .models
        .iter()
        .map(|m| {
            s.agg
                .get(&key(m))
                .filter(|c| !c.values.is_empty())
                .map(|c| mean_sd(&c.values))
        })
        .collect();
    let lower_better = metric == "logloss";
    let best = means
        .iter()
        .flatten()
        .map(|(m, _)| *m)
        .fold(None, |acc: Option<f64>, v| {
            Some(match acc {
                None => v,
                Some(a) if lower_better => a.min(v),
                Some(a) => a.max(v),
            })
        });
    let any = s.agg.get(&key(&s.models[0]));
    let (n, pos) = any.map(|c| (c.n, c.positives)).unwrap_or((0, 0));
    let flag = if pos < 100 { " ⚠" } else { "" };
    let mut line = format!("| {cell}{flag} | {n} | {pos} |");
    for (m, ms) in s.models.iter().zip(&means) {
        match ms {
            Some((mean, sd)) => {
                let mut txt = format!("{mean:.4} ± {sd:.4}");
                if metric == "auc" {
                    if let Some((lo, hi)) =
                        s.intervals[m].get(&(bname.to_string(), cell.to_string()))
                    {
                        write!(txt, " [{lo:.3}, {hi:.3}]")?;
                    }
                }
                if Some(*mean) == best {
                    txt = format!("**{txt}**");
                }
                write!(line, " {txt} |")?;
            }
            None => line.push_str(" - |"),
        }
    }
    if metric == "auc" && !flat.is_empty() {
        deltas_to_best_flat(&mut line, s, flat, &means)?;
    }
    Ok(line)
}

/// Appends each non-flat model's seed-mean difference to the best flat model's ("-"
/// where either is missing).
fn deltas_to_best_flat(
    line: &mut String,
    s: &Summary,
    flat: &[&String],
    means: &[Option<(f64, f64)>],
) -> Result<()> {
    let best_flat = s
        .models
        .iter()
        .zip(means)
        .filter(|(m, _)| flat.contains(m))
        .filter_map(|(_, v)| v.map(|x| x.0))
        .fold(f64::NAN, f64::max);
    for (_, ms) in s
        .models
        .iter()
        .zip(means)
        .filter(|(m, _)| !flat.contains(m))
    {
        match ms {
            Some((mean, _)) if best_flat.is_finite() => {
                write!(line, " {:+.4} |", mean - best_flat)?
            }
            _ => line.push_str(" - |"),
        }
    }
    Ok(())
}

/// The models: type, dense parameters, mean training time and mean best step.
fn models_table(md: &mut String, models: &[String], runs: &[RunRecord]) -> Result<()> {
    writeln!(md, "## Models\n\n| model | type | dense parameters | training time (s, mean) | best step (mean) |\n|---|---|---:|---:|---:|")?;
    for m in models {
        let rs: Vec<&RunRecord> = runs.iter().filter(|r| &r.model == m).collect();
        let t = rs.iter().map(|r| r.train_seconds).sum::<f64>() / rs.len() as f64;
        let s = rs.iter().map(|r| r.best_step as f64).sum::<f64>() / rs.len() as f64;
        if rs[0].kind == "peer" {
            writeln!(md, "| {m} | peer script | - | - | - |")?;
        } else {
            writeln!(
                md,
                "| {m} | {} | {} | {t:.1} | {s:.0} |",
                rs[0].kind, rs[0].params
            )?;
        }
    }
    Ok(())
}

/// Per behaviour with an oracle: its AUC per cell, and the share of it above chance each
/// model's mean AUC reaches, `(AUC − 0.5) / (oracle − 0.5)`.
fn oracle_table(md: &mut String, s: &Summary, oracle: &[mfh_metrics::MetricRecord]) -> Result<()> {
    let behaviours: Vec<&String> = s
        .grid
        .behaviours
        .iter()
        .filter(|b| oracle.iter().any(|r| &r.behaviour == *b))
        .collect();
    if behaviours.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "## The oracle: AUC of the true probabilities, and the share of it each model reaches\n\n\
         Share = (model's mean AUC − 0.5) / (oracle AUC − 0.5), per cell of the report split.\n"
    )?;
    for b in behaviours {
        writeln!(md, "### {b}\n")?;
        let mut head = "| cell | oracle AUC |".to_string();
        let mut rule = "|---|---:|".to_string();
        for m in &s.models {
            write!(head, " {m} |")?;
            rule.push_str("---:|");
        }
        writeln!(md, "{head}\n{rule}")?;
        for cell in &s.cells {
            let o = oracle
                .iter()
                .find(|r| &r.behaviour == b && &r.cell == cell && r.metric == "auc")
                .and_then(|r| r.value);
            let mut line = format!(
                "| {cell} | {} |",
                o.map_or("-".into(), |v| format!("{v:.4}"))
            );
            for m in &s.models {
                let key = (m.clone(), b.clone(), cell.clone(), "auc".to_string());
                let share = match (s.agg.get(&key), o) {
                    (Some(c), Some(o)) if !c.values.is_empty() && o > 0.5 => {
                        let (mean, _) = mean_sd(&c.values);
                        format!("{:.1} %", 100.0 * (mean - 0.5) / (o - 0.5))
                    }
                    _ => "-".into(),
                };
                write!(line, " {share} |")?;
            }
            writeln!(md, "{line}")?;
        }
        writeln!(md)?;
    }
    Ok(())
}
