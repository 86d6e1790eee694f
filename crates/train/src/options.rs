//! What a training run is asked to do, and what it reports.

use mfh_metrics::Report;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub model: Option<String>,
    pub out: PathBuf,
    pub seed: Option<u64>,
    /// Show progress bars (they also hide themselves when stderr is not a terminal).
    pub progress: bool,
    /// Also save the model at every evaluation, to `out/checkpoints/stepN` (for per-cell
    /// checkpoint selection).
    pub keep_checkpoints: bool,
    /// Continue from the newest intact checkpoint in `out/checkpoints` (see
    /// [`crate::checkpoint`]); train from the beginning when there is none.
    pub resume: bool,
    /// Warm start: begin from this trained model folder (dense weights, embedding rows
    /// and their optimizer state, fitted statistics unless `train.refit_transforms`).
    /// Ignored when `resume` finds a checkpoint (the run being resumed began warm).
    pub init_from: Option<PathBuf>,
    /// Write TensorBoard scalars to this folder as the run goes: the train loss, and the
    /// valid split's loss and AUC, GAUC and logloss per behaviour × cell at every
    /// evaluation (`tensorboard --logdir` it).
    pub tensorboard: Option<PathBuf>,
    /// Publish numbered model versions into a serving root as the run goes
    /// ([`crate::Publish`]).
    pub publish: Option<crate::Publish>,
    /// After the configured epochs, train on each new complete file of a folder as it
    /// appears ([`Follow`]).
    pub follow: Option<Follow>,
    /// What a caller embedding the loop (the Python package) adds: in-memory tables,
    /// a stop request, live progress.
    pub hooks: RunHooks,
}

/// Continuous training on a folder that receives files (`mfh train --follow DIR`): after
/// the configured epochs over the train split, each new complete file under `dir`
/// ([`mfh_data::complete_files`]), in arrival order, is scored (progressive validation:
/// its per-cell metrics before the model has seen it) and then trained on, one pass in
/// file order; a checkpoint follows each file. The fitted statistics stay those of the
/// train split (or of `--init-from`).
#[derive(Debug, Clone)]
pub struct Follow {
    pub dir: PathBuf,
    /// Take a file only when its folder holds a `_SUCCESS` marker.
    pub success_marker: bool,
    /// How often the folder is listed.
    pub poll: std::time::Duration,
    /// Stop after this long without a new file (`None`: until stopped).
    pub idle_exit: Option<std::time::Duration>,
}

/// A library caller's handles on a run.
#[derive(Debug, Clone, Default)]
pub struct RunHooks {
    /// Splits read from in-memory tables instead of the config's sources.
    pub tables: mfh_data::SplitTables,
    /// Set it to stop at the next step: the loop saves a checkpoint there (unless
    /// `train.keep_last = 0`) and returns an [`Interrupted`] error, so that a run with
    /// `resume` continues it.
    pub stop: Option<Arc<AtomicBool>>,
    /// Counters the loop keeps current, for a progress display on another thread.
    pub progress: Option<Arc<LiveProgress>>,
}

/// A run's progress, readable from any thread while it trains.
#[derive(Debug, Default)]
pub struct LiveProgress {
    /// 0-based epoch being trained.
    pub epoch: AtomicU64,
    pub epochs: AtomicU64,
    /// Train rows per epoch, and rows of this epoch trained on (or skipped on resume).
    pub rows_per_epoch: AtomicU64,
    pub rows_done: AtomicU64,
    pub step: AtomicU64,
    /// The loss's moving average, as f64 bits (0 = none yet).
    pub loss_bits: AtomicU64,
    /// Evaluations done.
    pub evaluations: AtomicU64,
}

impl LiveProgress {
    pub fn loss(&self) -> Option<f64> {
        match self.loss_bits.load(Ordering::Relaxed) {
            0 => None,
            b => Some(f64::from_bits(b)),
        }
    }
}

/// The error a run stopped through [`RunHooks::stop`] returns.
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub step: u64,
    /// The checkpoint saved at the stop (None with `train.keep_last = 0`).
    pub checkpoint: Option<PathBuf>,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.checkpoint {
            Some(c) => write!(
                f,
                "interrupted at step {}; checkpoint {} saved: train again with resume to continue",
                self.step,
                c.display()
            ),
            None => write!(
                f,
                "interrupted at step {}; no checkpoint saved (train.keep_last = 0)",
                self.step
            ),
        }
    }
}

impl std::error::Error for Interrupted {}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub model_name: String,
    pub params: usize,
    pub steps: u64,
    pub best_step: u64,
    pub best_value: Option<f64>,
    pub metric: String,
    /// The selection split's metrics of the saved model.
    pub report: Report,
    pub train_rows: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
    pub skipped: mfh_data::SkipCounts,
    /// The selection split's metrics at every evaluation (step, report).
    pub history: Vec<(u64, Report)>,
}
