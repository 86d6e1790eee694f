//! What a library caller's hooks ask of the loop: live progress counters, and a stop at
//! the next step with a checkpoint to resume from.

use super::Loop;
use crate::engine::Engine;
use crate::options::Interrupted;
use anyhow::Result;
use std::sync::atomic::Ordering::Relaxed;

impl Loop<'_> {
    /// Live progress after a batch of `rows`.
    pub(super) fn report(&self, rows: usize) {
        if let Some(live) = &self.opts.hooks.progress {
            live.rows_done.fetch_add(rows as u64, Relaxed);
            live.step.store(self.p.step, Relaxed);
            live.loss_bits
                .store(self.p.loss_ema.map_or(0, f64::to_bits), Relaxed);
        }
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.opts
            .hooks
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Relaxed))
    }

    /// A stop asked for through the hooks: a checkpoint of this step (unless one was just
    /// written, or `keep_last = 0`), and the error that says where to resume.
    pub(super) fn interrupt(&mut self, eng: &mut dyn Engine, saved: bool) -> Result<Interrupted> {
        let keep = self.ctx.cfg.train.keep_last > 0;
        if keep && !saved {
            self.p.stop = false;
            let (ctx, sel, skipped) = (self.ctx, &self.sel, &self.skipped);
            self.ck
                .save(ctx, eng, &mut self.state, &self.opt, sel, skipped, &self.p)?;
        }
        Ok(Interrupted {
            step: self.p.step,
            checkpoint: if keep { self.ck.last.clone() } else { None },
        })
    }
}
