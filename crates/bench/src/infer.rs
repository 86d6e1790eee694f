//! `mfh bench infer`: scoring time of a trained model. Batches of a split are decoded
//! into memory first; then the embedding lookups and the forward pass alone are timed,
//! per batch (the compute a served request's latency is compared with).

use crate::print::summary;
use anyhow::Result;
use mfh_artifact::ModelState;
use mfh_config::Config;
use mfh_data::{Batch, StreamOptions};
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
