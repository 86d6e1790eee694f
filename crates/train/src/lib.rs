//! Training: wires the reader, the embeddings, the dense network and the loss into one
//! loop, selects the best model on the valid split, checkpoints and resumes; `compare`
//! trains several model sections and tabulates them.
//!
//! Inputs: a checked `mfh_config::Config`. Outputs: a model folder (`mfh_artifact`) and
//! metric reports (`mfh_metrics::Report`).

mod checkpoint;
pub mod engine;
mod schedule;
pub mod selection;
mod trainer;

pub mod compare;
pub use checkpoint::{checkpoint_name, load_checkpoint, Checkpoint};
pub use engine::{Engine, LocalEngine, Optimizers};
pub use schedule::learning_rate;
pub use selection::{Selection, SelectionState};
pub use trainer::{check, model_spec, train, train_with, CheckSummary, TrainOptions, TrainSummary};
