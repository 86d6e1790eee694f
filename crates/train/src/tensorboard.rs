//! Live TensorBoard scalars of a run (`TrainOptions::tensorboard`): `train/loss` (the
//! moving average) every 10 steps, and at every evaluation `SPLIT/loss` and
//! `SPLIT/METRIC/BEHAVIOUR/CELL` for AUC, GAUC and logloss, the tags `mfh compare`
//! uses. A resumed run adds a new event file to the same folder. A write that fails is
//! reported once and the run goes on without TensorBoard.

use mfh_artifact::EvalResult;
use mfh_report::tensorboard::EventWriter;
use std::path::Path;

pub(crate) struct Scalars {
    w: Option<EventWriter>,
}

impl Scalars {
    pub fn open(dir: &Path) -> anyhow::Result<Scalars> {
        let w = EventWriter::create(dir).map_err(|e| {
            anyhow::anyhow!("{}: cannot write TensorBoard events: {e}", dir.display())
        })?;
        Ok(Scalars { w: Some(w) })
    }

    fn write(&mut self, f: impl FnOnce(&mut EventWriter) -> std::io::Result<()>) {
        if let Some(w) = &mut self.w {
            if let Err(e) = f(w).and_then(|_| w.flush()) {
                eprintln!(
                    "warning: {}: TensorBoard events not written ({e}); training goes on without them",
                    w.path().display()
                );
                self.w = None;
            }
        }
    }

    pub fn train_loss(&mut self, step: u64, loss: f64) {
        if step.is_multiple_of(10) {
            self.write(|w| w.scalar("train/loss", step as i64, loss as f32));
        }
    }

    pub fn evaluation(&mut self, step: u64, split: &str, res: &EvalResult) {
        self.write(|w| {
            w.scalar(&format!("{split}/loss"), step as i64, res.loss as f32)?;
            for r in &res.report.records {
                if !matches!(r.metric.as_str(), "auc" | "gauc" | "logloss") {
                    continue;
                }
                if let Some(v) = r.value {
                    let tag = format!("{split}/{}/{}/{}", r.metric, r.behaviour, r.cell);
                    w.scalar(&tag, step as i64, v as f32)?;
                }
            }
            Ok(())
        });
    }
}
