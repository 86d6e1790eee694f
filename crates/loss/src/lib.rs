//! The masked multi-task loss over the task grid (behaviours × facet cells, task
//! `t = behaviour·n_cells + cell`). Each row trains only its own cell's tasks, and only
//! those whose label is present: logloss on logits for binary behaviours, squared error
//! for regression ones. On top: a choice of [`Reduction`], static per-task weights,
//! learned uncertainty weighting, ESMM funnels and the AITM calibration penalty; see
//! [`GridLoss`].
//!
//! Inputs come from the model (`logits`, rows × tasks) and the reader (labels rows ×
//! behaviours with NaN for missing, and each row's cell).

mod grid;
mod pointwise;
mod spec;

pub use grid::{GridLoss, LossValue};
pub use pointwise::{
    logloss_with_logit, logloss_with_prob, sigmoid, squared_error, PROB_MAX, PROB_MIN,
};
pub use spec::{task_weights, LossSpec, Reduction};

#[cfg(test)]
mod tests;
