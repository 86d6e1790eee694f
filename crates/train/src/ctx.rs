//! What the loop's parts (evaluation, selection, checkpoints) need of the run.

use mfh_artifact::SaveInfo;
use mfh_config::Config;
use mfh_data::Pipeline;
use std::sync::Arc;

/// What the loop's helpers need of the run.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a Config,
    pub model_name: &'a str,
    pub layout: &'a mfh_data::FieldLayout,
    pub transforms: &'a mfh_data::FittedTransforms,
    pub seed: u64,
    pub metric: &'a str,
    pub pipeline: &'a Arc<Pipeline>,
    /// Live TensorBoard scalars (rank 0, when asked for).
    pub tensorboard: std::cell::RefCell<Option<crate::tensorboard::Scalars>>,
}

impl Ctx<'_> {
    /// What a model saved at `step` records about the run.
    pub fn save_info<'b>(
        &'b self,
        step: u64,
        value: Option<f64>,
        metrics_json: &'b str,
    ) -> SaveInfo<'b> {
        SaveInfo {
            cfg: self.cfg,
            model_name: self.model_name,
            layout: self.layout,
            transforms: self.transforms,
            seed: self.seed,
            step,
            selection_split: &self.cfg.train.valid_split,
            selection_metric: self.metric,
            selection_value: value,
            metrics_json,
        }
    }
}
