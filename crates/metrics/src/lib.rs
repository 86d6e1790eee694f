//! Evaluation metrics for multi-task ranking models: exact AUC, GAUC, logloss, MSE and
//! calibration, computed per behaviour × facet cell and pooled, as JSON records and tables;
//! summaries over seeds (mean ± sd, bootstrap intervals of the seed-mean AUC).

pub mod evaluator;
pub mod measures;
pub mod report;
pub mod statistics;

pub use evaluator::{BehaviourInfo, BehaviourKind, Evaluator, POOLED_CELL};
pub use measures::{auc, calibration, gauc, logloss, mse, Gauc};
pub use report::{render_side_by_side, MetricRecord, Report};
pub use statistics::{bootstrap_mean_auc, mean, mean_auc, mean_sd, ScoredColumn};
