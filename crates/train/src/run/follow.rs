//! Follow mode (`mfh train --follow DIR`): after the configured epochs, each new complete
//! file of a folder, in arrival order, is scored first (progressive validation: its
//! per-cell metrics before the model has seen it, logged, appended to `OUT/follow.jsonl`
//! and written to TensorBoard under `follow/`), then trained on, one pass in the stream
//! order of an epoch; a checkpoint and a published version (with `--publish`) follow each
//! file. File `k` is epoch `train.epochs + k` of the loop, so a resume takes up inside a
//! file after the last checkpointed batch, exactly as inside an epoch: no row is read
//! twice or skipped. The fitted statistics stay those the run started with.

use super::{bar, Loop};
use crate::checkpoint::Progress;
use crate::engine::Engine;
use crate::options::Follow;
use anyhow::{Context, Result};
use mfh_data::{complete_files, Pipeline, StreamOptions, FILES_SPLIT};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

impl Loop<'_> {
    /// Follows `f.dir` until it stays idle for `f.idle_exit`, `train.max_steps` is reached
    /// or the run is asked to stop.
    pub(super) fn follow(&mut self, eng: &mut dyn Engine, f: &Follow) -> Result<()> {
        let tc = &self.ctx.cfg.train;
        if tc.max_steps > 0 && self.p.step >= tc.max_steps {
            return Ok(());
        }
        // File k is epoch first + k; `first` is recorded, so that a resume under another
        // `train.epochs` finds the same files.
        let first = self.p.follow_first.unwrap_or(tc.epochs);
        if self.p.follow_first.is_none() {
            // From the end of the epochs: a resume point left by them is not a file's.
            self.resume_at = None;
            self.p = Progress {
                epoch: first,
                batches_done: 0,
                evaluated_now: false,
                stop: false,
                finished: false,
                follow_first: Some(first),
                ..self.p.clone()
            };
        }
        // Early stopping ends the epochs, not the stream.
        self.sel.patience = 0;
        // The sources' files are the train split's, not new arrivals.
        let known: HashSet<PathBuf> = self
            .ctx
            .pipeline
            .source_files()
            .iter()
            .map(|p| canonical(p))
            .collect();
        // `self.p.follow`: every file seen so far, in arrival order (what a checkpoint
        // records, so that a resume trains the waiting ones in the same order).
        let mut seen: HashSet<PathBuf> = self.p.follow.iter().map(PathBuf::from).collect();
        let mut idle = Instant::now();
        loop {
            let k = self.p.epoch - first;
            if k >= self.p.follow.len() {
                for p in complete_files(&f.dir, f.success_marker)? {
                    // Absolute, so that a resume from elsewhere finds the same files.
                    let c = canonical(&p);
                    if !known.contains(&c) && seen.insert(c.clone()) {
                        self.p.follow.push(c.to_string_lossy().into_owned());
                    }
                }
            }
            let Some(file) = self.p.follow.get(k).cloned() else {
                if self.stop_requested() {
                    return Err(self.interrupt(eng, false)?.into());
                }
                if f.idle_exit.is_some_and(|d| idle.elapsed() >= d) {
                    if self.lead && self.opts.progress {
                        eprintln!(
                            "follow: no new file in {} for {:.0} s; stopping",
                            f.dir.display(),
                            idle.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(());
                }
                std::thread::sleep(f.poll);
                continue;
            };
            if !mfh_data::store::is_file(Path::new(&file)) {
                // Removed since it was listed (or moved away after it failed to read):
                // said, and passed over.
                eprintln!("follow: {file} is gone; passed over");
                self.resume_at = None;
                self.p.epoch += 1;
                self.p.batches_done = 0;
                self.p.evaluated_now = false;
                continue;
            }
            if self.follow_file(eng, first + k, &file)? {
                return Ok(());
            }
            idle = Instant::now();
        }
    }

    /// Scores `file` (unless a resume takes up after its scoring), trains on it,
    /// checkpoints and publishes. Returns whether training stops (`max_steps`).
    fn follow_file(&mut self, eng: &mut dyn Engine, epoch: usize, file: &str) -> Result<bool> {
        let tc = &self.ctx.cfg.train;
        let files = || vec![PathBuf::from(file)];
        let for_files = |train| {
            self.ctx
                .pipeline
                .for_files(files(), train)
                .map(Arc::new)
                .with_context(|| format!("following {file}"))
        };
        let (score, train): (Arc<Pipeline>, Arc<Pipeline>) = (for_files(false)?, for_files(true)?);
        // A resume inside this file: its batches done, and whether it was scored.
        let (skip, scored) = self
            .resume_at
            .take()
            .map_or((0, false), |(b, ev, _)| (b, ev || b > 0));
        self.p.epoch = epoch;
        self.p.batches_done = skip;
        if !scored {
            self.progressive(eng, &score, file)?;
            // Scored: a crash from here on does not score it again.
            self.p.evaluated_now = true;
            let (ctx, sel) = (self.ctx, &self.sel);
            self.ck.save(
                ctx,
                eng,
                &mut self.state,
                &self.opt,
                sel,
                &self.skipped,
                &self.p,
            )?;
        }
        let stream_opts = StreamOptions {
            batch_size: tc.batch_size,
            shuffle_buffer: tc.shuffle_buffer,
            seed: self.ctx.seed.wrapping_add(epoch as u64 * 0x9e37_79b9),
            prefetch: 4,
        };
        let r = eng.open_epoch(&train, FILES_SPLIT, stream_opts);
        eng.agree(r, "another rank could not open the followed file")?;
        let pb = bar(0, false);
        let b = self.batches(eng, epoch, &pb, skip, u64::MAX)?;
        let file_skips = eng.close_epoch();
        // Where a resume takes up: the next file, or this one's next batch when
        // `max_steps` cut it short.
        let after = if b.exhausted {
            self.skipped.merge(&file_skips);
            Progress {
                epoch: epoch + 1,
                batches_done: 0,
                evaluated_now: false,
                stop: false,
                finished: false,
                ..self.p.clone()
            }
        } else {
            Progress {
                stop: true,
                ..self.p.clone()
            }
        };
        let (ctx, sel) = (self.ctx, &self.sel);
        self.ck.save(
            ctx,
            eng,
            &mut self.state,
            &self.opt,
            sel,
            &self.skipped,
            &after,
        )?;
        self.p = after;
        self.publish(eng)?;
        if self.lead && self.opts.progress {
            eprintln!(
                "follow: trained on {file} (step {}, {} rows seen)",
                self.p.step, self.p.seen
            );
        }
        Ok(!b.exhausted)
    }

    /// Progressive validation: `file` scored by the model that has not seen it.
    fn progressive(&mut self, eng: &mut dyn Engine, pf: &Arc<Pipeline>, file: &str) -> Result<()> {
        let tc = &self.ctx.cfg.train;
        let step = self.p.step;
        let res = eng
            .evaluate(&mut self.state, pf, FILES_SPLIT, tc.batch_size)
            .with_context(|| format!("scoring {file} before training on it"))?;
        if let Some(tb) = self.ctx.tensorboard.borrow_mut().as_mut() {
            tb.evaluation(step, "follow", &res);
        }
        if !self.lead {
            return Ok(());
        }
        let (value, _) = res.metric(self.ctx.metric, &self.state.grid);
        eprintln!(
            "follow: {file} before training (step {step}): loss {:.4}, {} {}",
            res.loss,
            self.ctx.metric,
            value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
        );
        let line = serde_json::json!({
            "file": file,
            "step": step,
            "loss": res.loss,
            "metrics": serde_json::from_str::<serde_json::Value>(&res.report.to_json())?,
        });
        let path = self.opts.out.join("follow.jsonl");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open the follow log", path.display()))?;
        // One write per line (O_APPEND), so a reader never sees half a line.
        log.write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(())
    }
}

/// `p` resolved (symlinks, `..`), or as given when it cannot be.
fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
