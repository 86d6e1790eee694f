//! `mfh bench infer`: scoring time of a trained model. Batches of a split are decoded
//! into memory first; then the embedding lookups and the forward pass alone are timed,
//! per batch (the compute a served request's latency is compared with).
//!
//! With `--one-user COLUMN` each batch becomes a ranking request: its first row's user
//! and context (every input that does not follow COLUMN, the item key) on every row, the
//! item side (COLUMN and the side tables joined on it) and the item facets from each
//! row. It is then scored the three ways a server can: as served (the user's side
//! factored out of the first layers, each tower on its own cell's rows), with factoring
//! only, and row by row with every tower on every row; the scores must agree within
//! 1e-5 and the ratios of the medians are printed.

use crate::print::summary;
use anyhow::Result;
use mfh_artifact::ModelState;
use mfh_artifact::Scorer;
use mfh_config::Config;
use mfh_data::{Batch, Following, StreamOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What `mfh bench infer` runs.
#[derive(Clone, Debug)]
pub struct InferOptions {
    pub model_dir: PathBuf,
    /// The data's config (default: the copy in the model folder).
    pub config: Option<PathBuf>,
    /// Rows per batch.
    pub batch: usize,
    pub split: String,
    /// Batches held in memory and cycled through.
    pub batches: usize,
    /// Threads for the products (default: the model's `train.threads`).
    pub threads: Option<usize>,
    pub windows: usize,
    pub steps_per_window: usize,
    /// Make each batch one user × its rows' items, COLUMN being the item key.
    pub one_user: Option<String>,
}

/// Loads the model and the batches, then times scoring: milliseconds per batch and
/// samples/s.
pub fn infer(o: &InferOptions) -> Result<()> {
    if o.batch == 0 || o.batches == 0 || o.windows == 0 || o.steps_per_window == 0 {
        anyhow::bail!("--batch, --batches, --windows and --steps-per-window must be positive");
    }
    let m = mfh_artifact::load_model(&o.model_dir)?;
    let cfg = match &o.config {
        Some(c) => Config::load(c)?,
        None => m.config.clone(),
    };
    let threads = o
        .threads
        .unwrap_or_else(|| m.config.train.threads.resolve());
    mfh_nn::use_threads(threads);
    let p = Arc::new(m.pipeline(&cfg)?);
    let mut batches = Vec::new();
    for b in p.stream(&o.split, StreamOptions::in_order(o.batch))? {
        let b = b?;
        // Only full batches: every timed pass scores exactly `batch` rows.
        if b.n == o.batch {
            batches.push(b);
        }
        if batches.len() == o.batches {
            break;
        }
    }
    if batches.is_empty() {
        anyhow::bail!(
            "split `{}` of {} has fewer than {} rows",
            o.split,
            cfg.source_file.display(),
            o.batch
        );
    }
    let mut state = m.state;
    if let Some(col) = &o.one_user {
        let f = p.fields_following(col)?;
        for b in &mut batches {
            one_user(b, &f)?;
        }
        outln!(
            "{}: {} tasks, batch {} = 1 user × {} items (`{col}`), {threads} threads; {} batches of `{}`",
            o.model_dir.display(),
            state.net().n_tasks(),
            o.batch,
            o.batch,
            batches.len(),
            o.split
        );
        return time_one_user(&mut state, &mut batches, o);
    }
    outln!(
        "{}: {} tasks, batch {}, {threads} threads; {} batches of `{}` in memory",
        o.model_dir.display(),
        state.net().n_tasks(),
        o.batch,
        batches.len(),
        o.split
    );
    time_scoring(&mut state, &mut batches, o);
    Ok(())
}

/// Window 0 warms up; the others give each batch's milliseconds and each window's rate.
fn time_scoring(state: &mut ModelState, batches: &mut [Batch], o: &InferOptions) {
    let (batch, steps) = (o.batch, o.steps_per_window);
    let mut ms = Vec::new();
    let mut rates = Vec::new();
    for w in 0..=o.windows {
        let mut per = Vec::with_capacity(steps);
        let t = Instant::now();
        for k in 0..steps {
            let i = k % batches.len();
            let t0 = Instant::now();
            std::hint::black_box(state.forward(&mut batches[i]));
            per.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        if w > 0 {
            rates.push((steps * batch) as f64 / t.elapsed().as_secs_f64());
            ms.extend(per);
        }
    }
    ms.sort_by(f64::total_cmp);
    let q = |f: f64| ms[((ms.len() - 1) as f64 * f).round() as usize];
    outln!(
        "compute per batch of {batch}: median {:.2} ms (min {:.2}, p99 {:.2}, max {:.2}; {} passes)",
        q(0.5),
        ms[0],
        q(0.99),
        ms[ms.len() - 1],
        ms.len()
    );
    summary(&format!("inference (batch {batch})"), "samples/s", rates);
}

/// Rewrites `b` as one user's request: every field that does not follow the item column
/// takes row 0's value; facets that do not follow it take row 0's value in the cell.
fn one_user(b: &mut Batch, f: &Following) -> Result<()> {
    let (n, ns, nd) = (b.n, f.single.len(), f.dense.len());
    if b.single.len() != n * ns || b.dense.len() != n * nd || b.multi.len() != f.multi.len() {
        anyhow::bail!("--one-user: the batch's layout differs from the pipeline's");
    }
    for i in 1..n {
        for (j, _) in f.single.iter().enumerate().filter(|(_, &fol)| !fol) {
            b.single[i * ns + j] = b.single[j];
        }
        for (j, _) in f.dense.iter().enumerate().filter(|(_, &fol)| !fol) {
            b.dense[i * nd + j] = b.dense[j];
        }
        b.groups[i] = b.groups[0];
    }
    for (col, _) in b.multi.iter_mut().zip(&f.multi).filter(|(_, &fol)| !fol) {
        let first = col.ids[col.offsets[0] as usize..col.offsets[1] as usize].to_vec();
        col.ids.clear();
        col.offsets.clear();
        col.offsets.push(0);
        for _ in 0..n {
            col.ids.extend_from_slice(&first);
            col.offsets.push(col.ids.len() as u32);
        }
    }
    // Cells are mixed radix, the first facet most significant.
    let digits = |mut c: u32| -> Vec<u32> {
        let mut d = vec![0; f.facets.len()];
        for (k, &(size, _)) in f.facets.iter().enumerate().rev() {
            d[k] = c % size as u32;
            c /= size as u32;
        }
        d
    };
    let user = digits(b.cells[0]);
    for i in 1..n {
        let own = digits(b.cells[i]);
        b.cells[i] = f
            .facets
            .iter()
            .enumerate()
            .fold(0, |acc, (k, &(size, fol))| {
                acc * size as u32 + if fol { own[k] } else { user[k] }
            });
    }
    Ok(())
}

/// The three ways, interleaved per batch; window 0 warms up.
fn time_one_user(state: &mut ModelState, batches: &mut [Batch], o: &InferOptions) -> Result<()> {
    let ways: [(&str, bool, bool); 3] = [
        ("served", true, true),
        ("factoring only", true, false),
        ("row by row", false, false),
    ];
    let mut scorer: Scorer = state.scorer()?;
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let (mut preds, mut want) = (Vec::new(), Vec::new());
    let mut worst = 0.0f32;
    for w in 0..=o.windows {
        for k in 0..o.steps_per_window {
            let b = &mut batches[k % batches.len()];
            for (i, &(_, factored, towers)) in ways.iter().enumerate().rev() {
                scorer.factored = factored;
                scorer.cell_towers = towers;
                let t0 = Instant::now();
                let logits = state.score(&mut scorer, b, b.n);
                let t = t0.elapsed().as_secs_f64() * 1e3;
                let out = if i == ways.len() - 1 {
                    &mut want
                } else {
                    &mut preds
                };
                state.loss.predict(logits, &b.cells, out);
                if i < ways.len() - 1 {
                    if preds.len() != want.len() {
                        anyhow::bail!(
                            "--one-user: {} predictions against {}",
                            preds.len(),
                            want.len()
                        );
                    }
                    worst = preds
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(worst, f32::max);
                }
                if w > 0 {
                    ms[i].push(t);
                }
            }
        }
    }
    if worst > 1e-5 {
        anyhow::bail!("--one-user: the ways' predictions differ by {worst:e} (> 1e-5)");
    }
    for v in &mut ms {
        v.sort_by(f64::total_cmp);
    }
    let med = |v: &[f64]| v[v.len() / 2];
    let base = med(&ms[2]);
    for ((name, _, _), v) in ways.iter().zip(&ms) {
        outln!(
            "{name:>15}: median {:.3} ms per batch (min {:.3}, max {:.3}; {} passes), {:.0} samples/s, {:.2}x row by row",
            med(v),
            v[0],
            v[v.len() - 1],
            v.len(),
            o.batch as f64 / med(v) * 1e3,
            base / med(v)
        );
    }
    outln!("predictions agree within {worst:e}");
    Ok(())
}
