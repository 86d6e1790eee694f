//! The trained model as an artifact: the model folder's format ([`model_dir`]), its atomic
//! save and checked load, what a server needs beyond the weights ([`serving`]), and the
//! scoring state every command runs through ([`ModelState`], [`scoring`]).
//!
//! Inputs: a checked `mfh_config::Config` and a [`ModelState`]. Outputs: a model folder
//! that loads from any working directory, and metric reports (`mfh_metrics::Report`).
//! Training (`mfh-train`), serving, export and the distributed trainer all use it; it has
//! no plotting and no progress bars.

mod commit;
pub mod model_dir;
pub mod scorer;
pub mod scoring;
pub mod serving;
mod state;

pub use model_dir::{
    fresh_state, load_model, roll_forward, save_model, write_atomic, LoadedModel, ModelMeta,
    SaveInfo, FORMAT_VERSION, STAGING,
};
pub use scorer::Scorer;
pub use scoring::{collect_predictions, evaluate, predict_to_csv, EvalResult, Predictions};
pub use state::{
    bind_spec, embedding_layer, embedding_layer_wide, grid_loss, grid_shape, row_optimizer,
    ModelState,
};
