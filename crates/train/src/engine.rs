//! How the trainer's steps run. The one training loop ([`crate::train_with`]) drives an
//! [`Engine`]: [`LocalEngine`] trains on this process; `mfh-distributed` supplies an engine whose
//! ranks each train on a slice of every global batch, with the embedding rows sharded
//! over them. Everything else — setup (fresh, `--resume`, `--init-from`), epochs,
//! evaluation, model selection, checkpoints, finishing — is the loop's, the same for both.
//!
//! Collective engines: every rank calls the loop with the same config and options, and
//! the loop calls each engine method on every rank in the same order; the loop writes
//! files only on rank 0 and learns of any rank's failure through [`Engine::agree`].

use anyhow::{bail, Result};
use mfh_artifact::{EvalResult, ModelState, SaveInfo};
use mfh_config::Config;
use mfh_data::{Batch, BatchStream, Pipeline, SkipCounts, StreamOptions};
use mfh_nn::{Adam, Module};
use std::path::Path;
use std::sync::Arc;

/// The dense optimiser and the loss's own (uncertainty weighting's log-variances).
pub struct Optimizers {
    pub dense: Adam<f32>,
    pub loss: Adam<f32>,
}

impl Optimizers {
    pub fn new(weight_decay: f64) -> Self {
        Optimizers {
            dense: Adam::new(0.9, 0.999, 1e-8, weight_decay),
            loss: Adam::new(0.9, 0.999, 1e-8, 0.0),
        }
    }
}

/// One way of running training steps, evaluations and model saves.
pub trait Engine {
    /// This process's rank and the number of ranks (0 and 1 on one process).
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    /// Whether every rank's `ok` is true (collective; the value itself on one process).
    fn all_ok(&mut self, ok: bool) -> bool {
        ok
    }
    /// Sums `v` over the ranks, element by element (collective; nothing on one process).
    fn sum_f64(&mut self, _v: &mut [f64]) {}
    /// Rank 0's `v` on every rank (collective): the ranks' sums of rank 0's values and
    /// zeros. Exact for integers below 2^53.
    fn broadcast_u64(&mut self, v: &mut Vec<u64>) {
        let lead = self.rank() == 0;
        let mut n = [if lead { v.len() as f64 } else { 0.0 }];
        self.sum_f64(&mut n);
        let mut vals: Vec<f64> = if lead {
            v.iter().map(|&x| x as f64).collect()
        } else {
            vec![0.0; n[0] as usize]
        };
        self.sum_f64(&mut vals);
        *v = vals.into_iter().map(|x| x as u64).collect();
    }
    /// Every rank's `mine`, in rank order, on every rank (collective; built on
    /// [`Engine::sum_f64`]: each rank's words in its own slot of a zeroed vector, summed,
    /// so the values arrive exactly).
    fn gather_f64(&mut self, mine: &[f64]) -> Vec<Vec<f64>> {
        let (rank, size) = (self.rank(), self.size());
        if size == 1 {
            return vec![mine.to_vec()];
        }
        let mut lens = vec![0.0; size];
        lens[rank] = mine.len() as f64;
        self.sum_f64(&mut lens);
        let lens: Vec<usize> = lens.iter().map(|&n| n as usize).collect();
        let start: usize = lens[..rank].iter().sum();
        let mut all = vec![0.0; lens.iter().sum()];
        all[start..start + mine.len()].copy_from_slice(mine);
        self.sum_f64(&mut all);
        let mut out = Vec::with_capacity(size);
        let mut at = 0;
        for n in lens {
            out.push(all[at..at + n].to_vec());
            at += n;
        }
        out
    }
    /// This rank's result when it failed, else an error naming `others` when another rank
    /// failed (collective), so that every rank stops together.
    fn agree(&mut self, r: Result<()>, others: &str) -> Result<()> {
        let all = self.all_ok(r.is_ok());
        r?;
        if !all {
            bail!("{others} (see its error)");
        }
        Ok(())
    }
    /// Refuses what this engine cannot train, before the first step.
    fn check(&mut self, _cfg: &Config, _state: &mut ModelState) -> Result<()> {
        Ok(())
    }
    /// Takes in the model's embedding rows (a fresh, warm-started or restored model holds
    /// all of them): the local engine leaves them in `state`; a sharded engine keeps the
    /// rows this rank owns.
    fn adopt(&mut self, _state: &mut ModelState) -> Result<()> {
        Ok(())
    }
    /// Starts reading one epoch of `split`.
    fn open_epoch(
        &mut self,
        pipeline: &Arc<Pipeline>,
        split: &str,
        opts: StreamOptions,
    ) -> Result<()>;
    /// Reads the next batch of the epoch (the rows of the global batch, on every rank);
    /// `None` at its end.
    fn next_batch(&mut self) -> Option<Result<usize>>;
    /// Trains on the batch [`Engine::next_batch`] read: gradients, the embedding rows'
    /// updates and both optimisers' steps at learning rate `lr`; returns the batch's loss.
    /// `step` counts from 1.
    fn step(
        &mut self,
        state: &mut ModelState,
        opt: &mut Optimizers,
        step: u64,
        lr: f32,
    ) -> Result<f64>;
    /// Ends the epoch; the rows its reading skipped (`on_error = "skip"`).
    fn close_epoch(&mut self) -> SkipCounts;
    /// Scores every row of `split` (the same result on every rank).
    fn evaluate(
        &mut self,
        state: &mut ModelState,
        pipeline: &Arc<Pipeline>,
        split: &str,
        batch_size: usize,
    ) -> Result<EvalResult>;
    /// Saves the whole model (every embedding row) to `dir`; rank 0 writes.
    fn save_model(&mut self, state: &mut ModelState, dir: &Path, info: &SaveInfo) -> Result<()>;
}

/// Training on this process.
#[derive(Default)]
pub struct LocalEngine {
    stream: Option<BatchStream>,
    batch: Option<Batch>,
}

impl Engine for LocalEngine {
    fn open_epoch(
        &mut self,
        pipeline: &Arc<Pipeline>,
        split: &str,
        opts: StreamOptions,
    ) -> Result<()> {
        self.stream = Some(pipeline.stream(split, opts)?);
        Ok(())
    }

    fn next_batch(&mut self) -> Option<Result<usize>> {
        let b = self.stream.as_mut()?.next()?;
        Some(match b {
            Ok(b) => {
                let n = b.n;
                self.batch = Some(b);
                Ok(n)
            }
            Err(e) => Err(e.into()),
        })
    }

    fn step(
        &mut self,
        state: &mut ModelState,
        opt: &mut Optimizers,
        step: u64,
        lr: f32,
    ) -> Result<f64> {
        let Some(batch) = self.batch.as_mut() else {
            bail!("a training step without a batch");
        };
        state.net_mut().zero_grad();
        state.loss.zero_grad();
        let lv = state.train_step(batch, step);
        if lv.loss.is_finite() {
            opt.dense.step(state.net_mut(), lr);
            opt.loss.step(&mut state.loss, lr);
        }
        Ok(lv.loss)
    }

    fn close_epoch(&mut self) -> SkipCounts {
        self.batch = None;
        self.stream
            .take()
            .and_then(|s| s.stats().map(|st| st.skipped.clone()))
            .unwrap_or_default()
    }

    fn evaluate(
        &mut self,
        state: &mut ModelState,
        pipeline: &Arc<Pipeline>,
        split: &str,
        batch_size: usize,
    ) -> Result<EvalResult> {
        mfh_artifact::evaluate(state, pipeline, split, batch_size)
    }

    fn save_model(&mut self, state: &mut ModelState, dir: &Path, info: &SaveInfo) -> Result<()> {
        mfh_artifact::save_model(dir, state, info)
    }
}
