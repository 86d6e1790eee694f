//! `mfh compare`: several models × seeds on the same data, budget and stopping rule,
//! selected on one split and reported on another, side by side per behaviour × cell.
//!
//! Selection and report never share rows: with a non-empty `test` split each model is
//! selected on `train.valid_split` and reported on `test`; otherwise on the config's
//! `[compare] select` and `report` splits (for KuaiRand: the first and second valid day).
//!
//! Each (model, seed) run lives in `OUT/runs/MODEL/seedS/` (its model folder, its report
//! split predictions and `run.json`, written last); a rerun skips finished runs, so an
//! interrupted comparison resumes. `OUT/table.md` and `OUT/results.json` are rewritten
//! from all finished runs at the end.

use crate::{train, TrainOptions};
use anyhow::{bail, Context, Result};
use mfh_artifact::model_dir::{load_model, write_atomic};
use mfh_artifact::scoring::{collect_predictions, Predictions};
use mfh_config::{Config, TaskGrid};
use mfh_data::{Pipeline, SplitMix, StreamOptions};
use mfh_metrics::{MetricRecord, POOLED_CELL};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Models without facet-aware structure: the baselines MFH is measured against.
pub const FLAT_MODELS: &[&str] = &["single", "shared_bottom", "mmoe", "cgc", "ple"];

#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Model section names.
    pub models: Vec<String>,
    pub seeds: usize,
    pub out: PathBuf,
    /// Bootstrap resamples for the 95 % intervals.
    pub bootstrap: usize,
    /// Also write TensorBoard event files (`OUT/tensorboard/MODEL-seedS/`).
    pub tensorboard: bool,
    pub progress: bool,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSelection {
    /// (cell, chosen step).
    pub steps: Vec<(String, u64)>,
    /// Metrics on the report split.
    pub records: Vec<MetricRecord>,
}

/// Mean AUC over binary behaviours of one segment in a report's records (None if any is
/// undefined).
fn segment_auc(records: &[MetricRecord], grid: &TaskGrid, segment: &str) -> Option<f64> {
    let mut vals = Vec::new();
    for (b, bin) in grid.behaviours.iter().zip(&grid.binary) {
        if !bin {
            continue;
        }
        let v = records
            .iter()
            .find(|r| &r.behaviour == b && r.cell == segment && r.metric == "auc")
            .and_then(|r| r.value)?;
        vals.push(v);
    }
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// The step of `history` where `segment`'s mean AUC peaked, with the value.
fn peak(
    history: &[(u64, Vec<MetricRecord>)],
    grid: &TaskGrid,
    segment: &str,
) -> Option<(u64, f64)> {
    history
        .iter()
        .filter_map(|(step, recs)| segment_auc(recs, grid, segment).map(|v| (*step, v)))
        .fold(None, |best, (s, v)| match best {
            Some((_, bv)) if bv >= v => best,
            _ => Some((s, v)),
        })
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

fn run_dir(out: &Path, model: &str, seed: u64) -> PathBuf {
    out.join("runs").join(model).join(format!("seed{seed}"))
}

/// Trains and scores every (model, seed) not finished yet, then writes the reports.
pub fn compare(cfg: &Config, opts: &CompareOptions) -> Result<Vec<RunRecord>> {
    for m in &opts.models {
        cfg.model_section(Some(m))?;
    }
    let (select, report) = protocol(cfg)?;
    eprintln!(
        "comparing {} on {} seeds: selected on `{select}`, reported on `{report}`",
        opts.models.join(", "),
        opts.seeds
    );
    let mut sel_cfg = cfg.clone();
    sel_cfg.train.valid_split = select.clone();
    let total = opts.models.len() * opts.seeds;
    let mut runs = Vec::new();
    let mut k = 0;
    for model in &opts.models {
        for s in 0..opts.seeds {
            k += 1;
            let seed = cfg.train.seed + s as u64;
            let dir = run_dir(&opts.out, model, seed);
            let done = dir.join("run.json");
            if let Ok(text) = std::fs::read_to_string(&done) {
                if let Ok(r) = serde_json::from_str::<RunRecord>(&text) {
                    eprintln!("[{k}/{total}] {model} seed {seed}: already done, kept");
                    runs.push(r);
                    continue;
                }
            }
            eprintln!("[{k}/{total}] {model} seed {seed}: training");
            let r = one_run(&sel_cfg, model, seed, &dir, &report, opts.progress)
                .with_context(|| format!("model `{model}` seed {seed}"))?;
            runs.push(r);
        }
    }
    write_reports(cfg, &opts.out, &runs, opts.bootstrap)?;
    if opts.tensorboard {
        write_tensorboard(&cfg.grid(), &opts.out, &runs)?;
    }
    Ok(runs)
}

fn one_run(
    cfg: &Config,
    model: &str,
    seed: u64,
    dir: &Path,
    report: &str,
    progress: bool,
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

/// Answers each cell with the checkpoint where that cell's own selection metric peaked.
fn cell_selection(
    cfg: &Config,
    grid: &TaskGrid,
    model_dir: &Path,
    history: &[(u64, Vec<MetricRecord>)],
    pipeline: &Arc<Pipeline>,
    report: &str,
    use_groups: bool,
) -> Result<CellSelection> {
    let cells = grid.cell_names();
    let global = peak(history, grid, POOLED_CELL).map(|p| p.0);
    let steps: Vec<u64> = cells
        .iter()
        .map(|c| peak(history, grid, c).map(|p| p.0).or(global).unwrap_or(0))
        .collect();
    let mut by_step: BTreeMap<u64, Predictions> = BTreeMap::new();
    for &s in &steps {
        if let std::collections::btree_map::Entry::Vacant(e) = by_step.entry(s) {
            let mut m = load_model(&model_dir.join("checkpoints").join(format!("step{s}")))?;
            e.insert(collect_predictions(
                &mut m.state,
                pipeline,
                report,
                cfg.train.batch_size,
            )?);
        }
    }
    let first = by_step.values().next().cloned().unwrap_or_default();
    let mut combined = first.clone();
    let nb = combined.n_behaviours;
    for r in 0..combined.rows() {
        let from = &by_step[&steps[combined.cells[r] as usize]];
        combined.preds[r * nb..(r + 1) * nb].copy_from_slice(&from.preds[r * nb..(r + 1) * nb]);
    }
    Ok(CellSelection {
        steps: cells.into_iter().zip(steps).collect(),
        records: combined.report(grid, report, use_groups, None).records,
    })
}

#[derive(Default)]
struct Cell {
    values: Vec<f64>,
    n: u64,
    positives: u64,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// (behaviour, cell) → (low, high).
type Intervals = BTreeMap<(String, String), (f64, f64)>;

/// 95 % bootstrap interval of the seed-mean AUC per (behaviour, cell): rows are resampled
/// within each cell (and pooled), each seed's predictions scored on the same resample.
fn auc_intervals(
    grid: &TaskGrid,
    preds: &[Predictions],
    reps: usize,
) -> BTreeMap<(String, String), (f64, f64)> {
    let mut out = BTreeMap::new();
    if preds.is_empty() || reps == 0 {
        return out;
    }
    let rows = preds[0].rows();
    let mut by_cell: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in 0..rows {
        by_cell
            .entry(grid.cell_name(preds[0].cells[r] as usize))
            .or_default()
            .push(r);
    }
    by_cell.insert(POOLED_CELL.into(), (0..rows).collect());
    let mut rng = SplitMix(0xb007);
    for (cell, idx) in &by_cell {
        for (b, name) in grid.behaviours.iter().enumerate() {
            if !grid.binary[b] {
                continue;
            }
            let mut samples = Vec::with_capacity(reps);
            let (mut s, mut l) = (Vec::with_capacity(idx.len()), Vec::with_capacity(idx.len()));
            for _ in 0..reps {
                let pick: Vec<usize> = (0..idx.len()).map(|_| idx[rng.below(idx.len())]).collect();
                let mut sum = 0.0;
                let mut ok = true;
                for p in preds {
                    s.clear();
                    l.clear();
                    for &r in &pick {
                        s.push(p.preds[r * p.n_behaviours + b]);
                        l.push(p.labels[r * p.n_behaviours + b]);
                    }
                    match mfh_metrics::auc(&s, &l) {
                        Some(a) => sum += a,
                        None => ok = false,
                    }
                }
                if ok {
                    samples.push(sum / preds.len() as f64);
                }
            }
            if samples.len() >= reps / 2 {
                samples.sort_by(f64::total_cmp);
                let q = |f: f64| samples[((samples.len() - 1) as f64 * f).round() as usize];
                out.insert((name.clone(), cell.clone()), (q(0.025), q(0.975)));
            }
        }
    }
    out
}

/// Writes `table.md` and `results.json` from the finished runs.
pub fn write_reports(cfg: &Config, out: &Path, runs: &[RunRecord], bootstrap: usize) -> Result<()> {
    let grid = cfg.grid();
    let base_runs = runs;
    // Per-cell checkpoint selection shows as its own variant, `MODEL+cellsel`.
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
    let runs = &with_variants[..];
    let models: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in runs {
            if !v.contains(&r.model) {
                v.push(r.model.clone());
            }
        }
        v
    };
    // results.json: one record per model, seed, split, behaviour, cell and metric.
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

    // (model, behaviour, cell, metric) → values over seeds.
    let mut agg: BTreeMap<(String, String, String, String), Cell> = BTreeMap::new();
    for r in runs {
        for rec in &r.records {
            let c = agg
                .entry((
                    r.model.clone(),
                    rec.behaviour.clone(),
                    rec.cell.clone(),
                    rec.metric.clone(),
                ))
                .or_default();
            if let Some(v) = rec.value {
                c.values.push(v);
            }
            c.n = rec.n;
            c.positives = rec.positives;
        }
    }
    let mut intervals: BTreeMap<String, Intervals> = BTreeMap::new();
    for m in &models {
        let preds: Vec<Predictions> = base_runs
            .iter()
            .filter(|r| &r.model == m)
            .filter_map(|r| {
                std::fs::read(run_dir(out, &r.model, r.seed).join("predictions.bin")).ok()
            })
            .filter_map(|b| Predictions::from_bytes(&b))
            .collect();
        intervals.insert(m.clone(), auc_intervals(&grid, &preds, bootstrap));
    }
    let kinds: BTreeMap<&str, &str> = runs
        .iter()
        .map(|r| (r.model.as_str(), r.kind.as_str()))
        .collect();
    let flat: Vec<&String> = models
        .iter()
        .filter(|m| FLAT_MODELS.contains(&kinds[m.as_str()]))
        .collect();
    // With one cell (no facets) the cell and the pooled rows are the same numbers.
    let mut cells = if grid.n_cells() > 1 {
        grid.cell_names()
    } else {
        Vec::new()
    };
    cells.push(POOLED_CELL.into());
    let seeds = runs.iter().filter(|r| r.model == models[0]).count();
    let (select, report) = runs
        .first()
        .map(|r| (r.select_split.clone(), r.report_split.clone()))
        .unwrap_or_default();

    let mut md = String::new();
    writeln!(md, "# Comparison\n")?;
    writeln!(
        md,
        "Config `{}`; models selected on split `{select}` and reported on split `{report}`; {seeds} seed(s) each; same data, step budget and early-stopping rule (`{}`, patience {}). Values are mean ± sd over seeds; brackets give a 95 % bootstrap interval of the seed-mean AUC ({bootstrap} resamples of the report rows); **bold** marks the best mean in a row; ⚠ flags cells with fewer than 100 positives.\n",
        cfg.source_file.display(),
        cfg.train.early_stopping.metric,
        cfg.train.early_stopping.patience
    )?;
    for metric in ["auc", "gauc", "logloss"] {
        for (b, bname) in grid.behaviours.iter().enumerate() {
            if !grid.binary[b] {
                continue;
            }
            let measured = agg
                .iter()
                .any(|((_, b, _, m), c)| b == bname && m == metric && !c.values.is_empty());
            if !measured {
                continue;
            }
            writeln!(md, "## {metric}: {bname}\n")?;
            let mut head = "| cell | n | positives |".to_string();
            let mut rule = "|---|---:|---:|".to_string();
            for m in &models {
                write!(head, " {m} |")?;
                rule.push_str("---|");
            }
            if metric == "auc" && !flat.is_empty() {
                for m in models.iter().filter(|m| !flat.contains(m)) {
                    write!(head, " {m} − best flat |")?;
                    rule.push_str("---:|");
                }
            }
            writeln!(md, "{head}\n{rule}")?;
            for cell in &cells {
                let key = |m: &String| (m.clone(), bname.clone(), cell.clone(), metric.to_string());
                let means: Vec<Option<(f64, f64)>> = models
                    .iter()
                    .map(|m| {
                        agg.get(&key(m))
                            .filter(|c| !c.values.is_empty())
                            .map(|c| mean_sd(&c.values))
                    })
                    .collect();
                let lower_better = metric == "logloss";
                let best =
                    means
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
                let any = agg.get(&key(&models[0]));
                let (n, pos) = any.map(|c| (c.n, c.positives)).unwrap_or((0, 0));
                let flag = if pos < 100 { " ⚠" } else { "" };
                let mut line = format!("| {cell}{flag} | {n} | {pos} |");
                for (m, ms) in models.iter().zip(&means) {
                    match ms {
                        Some((mean, sd)) => {
                            let mut txt = format!("{mean:.4} ± {sd:.4}");
                            if metric == "auc" {
                                if let Some((lo, hi)) =
                                    intervals[m].get(&(bname.clone(), cell.clone()))
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
                    let best_flat = models
                        .iter()
                        .zip(&means)
                        .filter(|(m, _)| flat.contains(m))
                        .filter_map(|(_, v)| v.map(|x| x.0))
                        .fold(f64::NAN, f64::max);
                    for (_, ms) in models.iter().zip(&means).filter(|(m, _)| !flat.contains(m)) {
                        match ms {
                            Some((mean, _)) if best_flat.is_finite() => {
                                write!(line, " {:+.4} |", mean - best_flat)?
                            }
                            _ => line.push_str(" - |"),
                        }
                    }
                }
                writeln!(md, "{line}")?;
            }
            writeln!(md)?;
        }
    }
    local_overfitting(&mut md, &grid, base_runs)?;
    plots(
        &mut md, out, &grid, base_runs, &models, &cells, &agg, &intervals,
    )?;
    writeln!(md, "## Models\n\n| model | type | dense parameters | training time (s, mean) | best step (mean) |\n|---|---|---:|---:|---:|")?;
    for m in &models {
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
    write_atomic(out, "table.md", md.as_bytes())?;
    Ok(())
}

/// The local-overfitting view: per segment, the step where its own selection metric
/// (mean AUC over binary behaviours) peaked against the step the model was stopped at
/// (the pooled peak), and what the segment lost by stopping there. Means over seeds.
fn local_overfitting(md: &mut String, grid: &TaskGrid, runs: &[RunRecord]) -> Result<()> {
    if runs.iter().all(|r| r.history.is_empty()) {
        return Ok(());
    }
    let mut segments = grid.cell_names();
    for (f, values) in &grid.facets {
        if grid.facets.len() > 1 {
            segments.extend(values.iter().map(|v| format!("{f}={v}")));
        }
    }
    segments.push(POOLED_CELL.into());
    writeln!(
        md,
        "## Local overfitting (selection split)\n\nPer segment: the step where its own mean AUC (over binary behaviours) peaked, the step the model was stopped at (the pooled peak), and the AUC it lost by stopping there. Means over seeds.\n"
    )?;
    let mut models: Vec<&str> = Vec::new();
    for r in runs {
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
    }
    writeln!(md, "| model | segment | own peak step | stopped at | AUC lost at stop |\n|---|---|---:|---:|---:|")?;
    for m in models {
        let rs: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.model == m && !r.history.is_empty())
            .collect();
        if rs.is_empty() {
            continue;
        }
        for seg in &segments {
            let mut peaks = Vec::new();
            let mut stops = Vec::new();
            let mut lost = Vec::new();
            for r in &rs {
                let Some((ps, pv)) = peak(&r.history, grid, seg) else {
                    continue;
                };
                let Some((gs, _)) = peak(&r.history, grid, POOLED_CELL) else {
                    continue;
                };
                let at_stop = r
                    .history
                    .iter()
                    .find(|(s, _)| *s == gs)
                    .and_then(|(_, recs)| segment_auc(recs, grid, seg));
                if let Some(v) = at_stop {
                    peaks.push(ps as f64);
                    stops.push(gs as f64);
                    lost.push(pv - v);
                }
            }
            if peaks.is_empty() {
                continue;
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            writeln!(
                md,
                "| {m} | {seg} | {:.0} | {:.0} | {:.4} |",
                mean(&peaks),
                mean(&stops),
                mean(&lost)
            )?;
        }
    }
    writeln!(md)?;
    Ok(())
}

/// Validation AUC per segment over steps (one chart per model, first seed) and per-cell
/// AUC by model with intervals (one chart per binary behaviour), as SVG and PNG.
#[allow(clippy::too_many_arguments)]
fn plots(
    md: &mut String,
    out: &Path,
    grid: &TaskGrid,
    runs: &[RunRecord],
    models: &[String],
    cells: &[String],
    agg: &BTreeMap<(String, String, String, String), Cell>,
    intervals: &BTreeMap<String, Intervals>,
) -> Result<()> {
    if !mfh_report::fonts_available() {
        writeln!(
            md,
            "(No charts: no TrueType font was found; install fonts-dejavu-core or set MFH_FONT.)\n"
        )?;
        return Ok(());
    }
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut files = Vec::new();
    let mut segments: Vec<String> = grid.cell_names();
    segments.push(POOLED_CELL.into());
    for m in models {
        let Some(r) = runs.iter().find(|r| &r.model == m && !r.history.is_empty()) else {
            continue;
        };
        let curves: Vec<mfh_report::Curve> = segments
            .iter()
            .map(|seg| mfh_report::Curve {
                label: seg.clone(),
                points: r
                    .history
                    .iter()
                    .filter_map(|(s, recs)| segment_auc(recs, grid, seg).map(|v| (*s as f64, v)))
                    .collect(),
            })
            .collect();
        let title = format!("{m}: {} AUC per segment (seed {})", r.select_split, r.seed);
        files.extend(
            mfh_report::line_chart(
                &dir.join(format!("curves_{}", m.replace('+', "_"))),
                &title,
                "step",
                "mean AUC",
                &curves,
            )
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?,
        );
    }
    let all_models: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for (m, _, _, _) in agg.keys() {
            if !v.contains(m) {
                v.push(m.clone());
            }
        }
        models
            .iter()
            .filter(|m| v.contains(m))
            .cloned()
            .chain(v.iter().filter(|m| !models.contains(m)).cloned())
            .collect()
    };
    for (b, bname) in grid.behaviours.iter().enumerate() {
        if !grid.binary[b] {
            continue;
        }
        let bars: Vec<Vec<Option<mfh_report::Bar>>> = cells
            .iter()
            .map(|cell| {
                all_models
                    .iter()
                    .map(|m| {
                        let c = agg.get(&(m.clone(), bname.clone(), cell.clone(), "auc".into()))?;
                        if c.values.is_empty() {
                            return None;
                        }
                        Some(mfh_report::Bar {
                            value: mean_sd(&c.values).0,
                            interval: intervals
                                .get(m)
                                .and_then(|i| i.get(&(bname.clone(), cell.clone())))
                                .copied(),
                        })
                    })
                    .collect()
            })
            .collect();
        let title = format!(
            "{bname} AUC per cell on {} (mean over seeds, 95 % interval)",
            runs.first().map(|r| r.report_split.as_str()).unwrap_or("")
        );
        files.extend(
            mfh_report::bar_chart(
                &dir.join(format!("bars_{bname}")),
                &title,
                "AUC",
                cells,
                &all_models,
                &bars,
            )
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?,
        );
    }
    writeln!(md, "## Charts\n")?;
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "png"))
    {
        let rel = f.strip_prefix(out).unwrap_or(f);
        writeln!(md, "![{}]({})", rel.display(), rel.display())?;
    }
    writeln!(md)?;
    Ok(())
}

/// Results of peer scripts (`bench/peers/`): `OUT/peers/*.json`, records in the shape of
/// results.json, one (model, seed) run each, shown as their own rows.
fn load_peers(out: &Path) -> Result<Vec<RunRecord>> {
    let dir = out.join("peers");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
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
                .or_insert_with(|| RunRecord {
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
                });
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

/// The selection split's AUC per behaviour and segment at every evaluation, one event
/// folder per (model, seed): `tensorboard --logdir OUT/tensorboard`.
fn write_tensorboard(grid: &TaskGrid, out: &Path, runs: &[RunRecord]) -> Result<()> {
    let root = out.join("tensorboard");
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("{}: cannot replace", root.display()))?;
    }
    for r in runs.iter().filter(|r| !r.history.is_empty()) {
        let dir = root.join(format!("{}-seed{}", r.model, r.seed));
        let mut w = mfh_report::tensorboard::EventWriter::create(&dir)
            .with_context(|| format!("{}: cannot write", dir.display()))?;
        for (step, recs) in &r.history {
            for rec in recs
                .iter()
                .filter(|x| x.metric == "auc" || x.metric == "logloss")
            {
                if let Some(v) = rec.value {
                    let tag = format!(
                        "{}/{}/{}/{}",
                        r.select_split, rec.metric, rec.behaviour, rec.cell
                    );
                    w.scalar(&tag, *step as i64, v as f32)?;
                }
            }
            let mut segs = grid.cell_names();
            segs.push(POOLED_CELL.into());
            for seg in segs {
                if let Some(v) = segment_auc(recs, grid, &seg) {
                    w.scalar(
                        &format!("{}/mean_auc/{seg}", r.select_split),
                        *step as i64,
                        v as f32,
                    )?;
                }
            }
        }
        w.flush()?;
    }
    Ok(())
}
