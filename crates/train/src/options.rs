//! What a training run is asked to do, and what it reports.

use mfh_metrics::Report;
use std::path::PathBuf;

#[derive(Debug, Clone)]
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
}

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
