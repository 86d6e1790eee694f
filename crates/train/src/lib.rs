//! Training, evaluation and the model folder: wires the reader, the embeddings, the dense
//! network and the loss into one loop, selects the best model on the valid split, and
//! saves and loads everything a trained model needs to be scored again.
//!
//! Inputs: a checked `mfh_config::Config`. Outputs: a model folder (see [`model_dir`]) and
//! metric reports (`mfh_metrics::Report`).

mod checkpoint;
mod evaluate;
pub mod model_dir;
mod schedule;
mod selection;
pub mod serving;
mod state;
mod trainer;

pub use evaluate::{collect_predictions, evaluate, predict_to_csv, EvalResult, Predictions};
pub mod compare;
pub use model_dir::{load_model, LoadedModel, ModelMeta, FORMAT_VERSION};
pub use schedule::learning_rate;
pub use state::{embedding_layer, grid_loss, ModelState};
pub use trainer::{check, model_spec, train, CheckSummary, TrainOptions, TrainSummary};
