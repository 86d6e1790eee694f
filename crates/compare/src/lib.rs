//! `mfh compare`: several model sections × seeds on the same data, budget and stopping
//! rule, selected on one split and reported on another, side by side per behaviour × cell.
//!
//! Selection and report never share rows: with a non-empty `test` split each model is
//! selected on `train.valid_split` and reported on `test`; otherwise on the config's
//! `[compare] select` and `report` splits (for KuaiRand: the first and second valid day).
//!
//! Each (model, seed) run lives in `OUT/runs/MODEL/seedS/` (its model folder, its report
//! split predictions and `run.json`, written last); a rerun skips finished runs, so an
//! interrupted comparison resumes. `OUT/table.md`, `OUT/results.json` and `OUT/plots/` are
//! rewritten from all finished runs (and peer scripts' results in `OUT/peers/`) at the end.
//!
//! Modules, one job each: `comparison` drives the whole; `runs` trains and scores one
//! run (with `cellsel`, per-cell checkpoint selection); `peers` reads peer scripts'
//! results; `statistics` aggregates over seeds; `tables` writes `table.md` and
//! `results.json`, with `overfitting` and `plots` as its sections; `tensorboard`
//! writes event files. `segments` holds the segment mean AUC they share.
//!
//! Not here: the training loop (`mfh_train`), the metrics and the statistics over seeds
//! (`mfh_metrics`), the chart drawing (`mfh_report`).

mod cellsel;
mod comparison;
mod oracle;
mod overfitting;
mod peers;
mod plots;
mod runs;
mod segments;
mod statistics;
mod tables;
mod tensorboard;
pub mod tune;

pub use cellsel::CellSelection;
pub use comparison::{compare, CompareOptions};
pub use oracle::oracle_records;
pub use runs::{protocol, RunRecord};
pub use tables::{write_reports, FLAT_MODELS};
