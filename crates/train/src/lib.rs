//! Training: wires the reader, the embeddings, the dense network and the loss into one
//! loop, selects the best model on the valid split, checkpoints and resumes. Comparing
//! several model sections is `mfh_compare`.
//!
//! Inputs: a checked `mfh_config::Config`. Outputs: a model folder (`mfh_artifact`) and
//! metric reports (`mfh_metrics::Report`).

mod check;
mod checkpoint;
mod ctx;
pub mod engine;
mod options;
mod publish;
mod run;
mod schedule;
pub mod selection;
mod tensorboard;

pub use check::{check, model_spec, CheckSummary};
pub use checkpoint::{checkpoint_name, load_checkpoint, Checkpoint};
pub use engine::{Engine, LocalEngine, Optimizers};
pub use options::{Follow, Interrupted, LiveProgress, RunHooks, TrainOptions, TrainSummary};
pub use publish::Publish;
pub use run::{precision, train, train_with};
pub use schedule::learning_rate;
pub use selection::{Selection, SelectionState};
