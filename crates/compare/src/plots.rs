//! The charts section of `table.md`: validation AUC per segment over steps (one chart per
//! model, first seed with a history) and per-cell AUC by model with intervals (one chart
//! per binary behaviour), written as SVG and PNG under `OUT/plots/` by `mfh_report`.

use crate::runs::RunRecord;
use crate::segments::segment_auc;
use crate::statistics::Summary;
use anyhow::{Context, Result};
use mfh_metrics::{mean_sd, POOLED_CELL};
use mfh_report::{Bar, Curve};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Draws the charts and appends links to their PNGs to `md` (or a note when no font is
/// found); `runs` are the trained runs (their histories give the curves).
pub(crate) fn plots(md: &mut String, out: &Path, s: &Summary, runs: &[RunRecord]) -> Result<()> {
    if !mfh_report::fonts_available() {
        writeln!(
            md,
            "(No charts: no TrueType font was found; install fonts-dejavu-core or set MFH_FONT.)\n"
        )?;
        return Ok(());
    }
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut files = curve_charts(&dir, s, runs)?;
    files.extend(bar_charts(&dir, s, runs)?);
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

/// Per model with a history: the selection split's mean AUC per segment over steps.
fn curve_charts(dir: &Path, s: &Summary, runs: &[RunRecord]) -> Result<Vec<PathBuf>> {
    let grid = &s.grid;
    let mut files = Vec::new();
    let mut segments: Vec<String> = grid.cell_names();
    segments.push(POOLED_CELL.into());
    for m in &s.models {
        let Some(r) = runs.iter().find(|r| &r.model == m && !r.history.is_empty()) else {
            continue;
        };
        let curves: Vec<Curve> = segments
            .iter()
            .map(|seg| Curve {
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
    Ok(files)
}

/// The models with any measurement: those of the tables in their order, then any other.
fn charted_models(s: &Summary) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for (m, _, _, _) in s.agg.keys() {
        if !v.contains(m) {
            v.push(m.clone());
        }
    }
    s.models
        .iter()
        .filter(|m| v.contains(m))
        .cloned()
        .chain(v.iter().filter(|m| !s.models.contains(m)).cloned())
        .collect()
}

/// Per binary behaviour: the seed-mean AUC per cell and model, with its interval.
fn bar_charts(dir: &Path, s: &Summary, runs: &[RunRecord]) -> Result<Vec<PathBuf>> {
    let all_models = charted_models(s);
    let mut files = Vec::new();
    for (b, bname) in s.grid.behaviours.iter().enumerate() {
        if !s.grid.binary[b] {
            continue;
        }
        let bars: Vec<Vec<Option<Bar>>> = s
            .cells
            .iter()
            .map(|cell| {
                all_models
                    .iter()
                    .map(|m| {
                        let key = (m.clone(), bname.clone(), cell.clone(), "auc".into());
                        let c = s.agg.get(&key)?;
                        if c.values.is_empty() {
                            return None;
                        }
                        Some(Bar {
                            value: mean_sd(&c.values).0,
                            interval: s
                                .intervals
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
                &s.cells,
                &all_models,
                &bars,
            )
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?,
        );
    }
    Ok(files)
}
