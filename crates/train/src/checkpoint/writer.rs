//! Writing checkpoints from the loop: where it stands, the last good checkpoint, and
//! the check that the dense parameters are still finite before anything is saved.

use super::format::{LoopState, TRAINER_FORMAT};
use crate::ctx::Ctx;
use crate::engine::{Engine, Optimizers};
use crate::selection::Selection;
use anyhow::{bail, Result};
use mfh_artifact::ModelState;
use std::path::PathBuf;

/// The first non-finite dense parameter, by name.
pub(crate) fn non_finite_param(state: &mut ModelState) -> Option<String> {
    use mfh_nn::Module;
    let mut bad = None;
    let mut check = |name: &str, p: &[f32]| {
        if bad.is_none() && !p.iter().all(|x| x.is_finite()) {
            bad = Some(name.to_string());
        }
    };
    state.net_mut().visit_params("", &mut |n, p, _| check(n, p));
    state.loss.visit_params("loss.", &mut |n, p, _| check(n, p));
    bad
}

/// Stops a run whose dense parameters are no longer finite, before it is evaluated or
/// checkpointed.
pub(crate) fn guard_params(state: &mut ModelState, step: u64, ck: &Checkpointer) -> Result<()> {
    if let Some(name) = non_finite_param(state) {
        bail!(
            "training diverged by step {step}: dense parameter `{name}` is no longer finite (try a lower train.lr or train.embedding.lr); {}",
            ck.last_good()
        );
    }
    Ok(())
}

/// Where the loop stands, as a checkpoint records it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub step: u64,
    pub epoch: usize,
    pub batches_done: u64,
    pub evaluated_now: bool,
    pub stop: bool,
    pub finished: bool,
    pub loss_ema: Option<f64>,
    pub seen: u64,
    /// Follow mode: every followed file seen, in arrival order (absolute paths), and the
    /// loop epoch of the first (file `k` is epoch `follow_first + k`).
    pub follow: Vec<String>,
    pub follow_first: Option<usize>,
}

/// Writes resumable checkpoints and remembers the last good one.
pub(crate) struct Checkpointer<'a> {
    pub root: PathBuf,
    pub keep_last: usize,
    pub model_name: &'a str,
    pub seed: u64,
    pub config: String,
    pub transforms: String,
    /// The newest checkpoint written or resumed from.
    pub last: Option<PathBuf>,
}

impl Checkpointer<'_> {
    pub fn last_good(&self) -> String {
        match &self.last {
            Some(d) => format!(
                "the last good checkpoint, {}, is intact (`mfh eval --model-dir` loads it)",
                d.display()
            ),
            None => "no checkpoint had been written yet".into(),
        }
    }

    /// Writes a checkpoint of where the loop stands `p` (collective), unless `keep_last`
    /// is 0; remembers it as the last good one.
    #[allow(clippy::too_many_arguments)]
    pub fn save(
        &mut self,
        ctx: &Ctx,
        eng: &mut dyn Engine,
        state: &mut ModelState,
        opt: &Optimizers,
        sel: &Selection,
        skipped: &mfh_data::SkipCounts,
        p: &Progress,
    ) -> Result<()> {
        if self.keep_last == 0 {
            return Ok(());
        }
        guard_params(state, p.step, self)?;
        let cfg = ctx.cfg;
        let loop_state = LoopState {
            format_version: TRAINER_FORMAT,
            model_name: self.model_name.to_string(),
            seed: self.seed,
            config: self.config.clone(),
            transforms: self.transforms.clone(),
            batch_size: cfg.train.batch_size,
            world_size: eng.size(),
            step: p.step,
            epoch: p.epoch,
            batches_done: p.batches_done,
            evaluated_now: p.evaluated_now,
            stop: p.stop,
            finished: p.finished,
            loss_ema: p.loss_ema.map(f64::to_bits),
            seen: p.seen,
            follow_files: p.follow.clone(),
            follow_first: p.follow_first,
            skipped: skipped
                .by_kind
                .iter()
                .map(|(k, (n, ex))| (k.clone(), *n, ex.clone()))
                .collect(),
            selection: sel.snapshot(),
        };
        let metrics_json = sel.last_report.to_json();
        let info = ctx.save_info(p.step, None, &metrics_json);
        let dir = super::write(
            &self.root,
            eng,
            state,
            &info,
            opt,
            &loop_state,
            self.keep_last,
        )
        .map_err(|e| {
            let prev = match &self.last {
                Some(d) => format!("the previous checkpoint, {}, is intact", d.display()),
                None => "there is no previous checkpoint".into(),
            };
            e.context(format!("training stopped at step {}; {prev}", p.step))
        })?;
        self.last = Some(dir);
        Ok(())
    }
}
