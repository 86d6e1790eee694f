//! What a checkpoint records besides the model: the loop's state (`trainer.json`) and
//! the optimisers' moments (`optimizer.bin`), and what a resume compares with the run.

use crate::selection::SelectionState;
use anyhow::Result;
use mfh_nn::Adam;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

const OPT_MAGIC: &[u8; 8] = b"MFHOPTS1";

/// 2: the end-of-epoch checkpoint of an epoch cut short by a stop records that epoch's
/// position (1 recorded the next epoch), so a resume may lift the stop.
pub(crate) const TRAINER_FORMAT: u32 = 2;

/// Where the training loop stands, and what model selection has seen so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoopState {
    pub format_version: u32,
    pub model_name: String,
    pub seed: u64,
    /// The resolved config with the checkpoint keys blanked: a resume under another
    /// config would not continue the same run.
    pub config: String,
    /// xxh3 of the fitted transforms' JSON: the train split must read the same.
    pub transforms: String,
    /// Rows per global batch: the batches a resume skips are counted in it (0 in
    /// checkpoints written before it was recorded: then not checked).
    #[serde(default)]
    pub batch_size: usize,
    /// Ranks that trained (1 on one process, and in older checkpoints).
    #[serde(default = "one")]
    pub world_size: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// The epoch being trained, and how many of its batches were trained on.
    pub epoch: usize,
    pub batches_done: u64,
    /// The valid split was evaluated after the last step.
    pub evaluated_now: bool,
    /// The epoch's batch loop stops here (early stop or `max_steps`).
    pub stop: bool,
    /// Training is over (early stop at an end-of-epoch evaluation).
    pub finished: bool,
    /// Train-loss moving average (for the logs), as f64 bits.
    pub loss_ema: Option<u64>,
    /// Rows seen (for samples/s).
    pub seen: u64,
    /// Follow mode (`mfh train --follow`): every followed file seen, in arrival order;
    /// epoch `follow_first + k` trains file `k`. Empty and `None` otherwise.
    #[serde(default)]
    pub follow_files: Vec<String>,
    #[serde(default)]
    pub follow_first: Option<usize>,
    /// Rows skipped (`on_error = "skip"`) in the completed epochs: kind, count, example.
    pub skipped: Vec<(String, u64, String)>,
    pub selection: SelectionState,
}

fn one() -> usize {
    1
}

/// The resolved config as a resume compares it. How long the run goes (`epochs`,
/// `max_steps`), how often it checkpoints (`checkpoint_every`, `keep_last`) and the
/// threads may change (a run may resume on a machine with other cores; only float
/// rounding then differs from an uninterrupted run); the model section and the batch
/// size are compared on their own, for a clearer message; the number of ranks is not in
/// the config.
pub(crate) fn config_fingerprint(cfg: &mfh_config::Config) -> String {
    let mut c = cfg.clone();
    let t = &mut c.train;
    t.epochs = 0;
    t.max_steps = 0;
    t.checkpoint_every = 0;
    t.keep_last = 0;
    t.threads = mfh_config::Threads::Auto;
    t.batch_size = 0;
    t.model = None;
    c.to_toml_string()
}

/// xxh3-64 (hex) of the fitted transforms' JSON, as `trainer.json` records it.
pub(crate) fn transforms_sum(t: &mfh_data::FittedTransforms) -> Result<String> {
    Ok(format!(
        "{:016x}",
        xxh3_64(serde_json::to_string(t)?.as_bytes())
    ))
}

fn put_adam(out: &mut Vec<u8>, a: &Adam<f32>) {
    let (step, m, v) = a.state();
    out.extend_from_slice(&step.to_le_bytes());
    out.extend_from_slice(&(m.len() as u64).to_le_bytes());
    for (m, v) in m.iter().zip(v) {
        out.extend_from_slice(&(m.len() as u64).to_le_bytes());
        for x in m.iter().chain(v) {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

pub(crate) fn optimizer_bytes(adam: &Adam<f32>, adam_loss: &Adam<f32>) -> Vec<u8> {
    let mut out = OPT_MAGIC.to_vec();
    put_adam(&mut out, adam);
    put_adam(&mut out, adam_loss);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

type AdamState = (u64, Vec<Vec<f32>>, Vec<Vec<f32>>);

pub(crate) fn parse_optimizer(bytes: &[u8]) -> Result<(AdamState, AdamState), String> {
    if bytes.len() < 16 || &bytes[..8] != OPT_MAGIC {
        return Err("not an mfh optimizer-state file (bad magic)".into());
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(body).to_le_bytes() != tail {
        return Err("checksum mismatch: the file is corrupt or truncated".into());
    }
    let mut pos = 8;
    let u64_at = |pos: &mut usize| -> Result<u64, String> {
        let b = body.get(*pos..*pos + 8).ok_or("truncated")?;
        *pos += 8;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    };
    let one = |pos: &mut usize| -> Result<AdamState, String> {
        let step = u64_at(pos)?;
        let n = u64_at(pos)? as usize;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let len = u64_at(pos)? as usize;
            let bytes = len.checked_mul(8).ok_or("bad length")?;
            let raw = body.get(*pos..*pos + bytes).ok_or("truncated")?;
            *pos += bytes;
            let f: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            m.push(f[..len].to_vec());
            v.push(f[len..].to_vec());
        }
        Ok((step, m, v))
    };
    let a = one(&mut pos)?;
    let b = one(&mut pos)?;
    if pos != body.len() {
        return Err("trailing bytes".into());
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mfh_metrics::MetricRecord;

    #[test]
    fn optimizer_state_round_trips_and_detects_corruption() {
        let mut a = Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0);
        let b = Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0);
        let mut lin = mfh_nn::Linear::<f32>::new(
            3,
            2,
            mfh_nn::Activation::Identity,
            &mut mfh_nn::Rng::new(1),
        );
        use mfh_nn::Module;
        lin.visit_params("", &mut |_, _, g| g.fill(0.5));
        a.step(&mut lin, 0.1);
        let bytes = optimizer_bytes(&a, &b);
        let ((s, m, v), (s2, m2, _)) = parse_optimizer(&bytes).unwrap();
        let (s0, m0, v0) = a.state();
        assert_eq!((s, m.as_slice(), v.as_slice()), (s0, m0, v0));
        assert_eq!((s2, m2.len()), (0, 0));
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(parse_optimizer(&bad).unwrap_err().contains("checksum"));
        assert!(parse_optimizer(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn reports_round_trip_exactly_through_json() {
        let r = MetricRecord {
            split: "valid".into(),
            behaviour: "click".into(),
            cell: "all".into(),
            metric: "auc".into(),
            value: Some(0.123_456_789_012_345_68),
            n: 3,
            positives: 1,
            missing: 0,
        };
        let mut recs = vec![r.clone()];
        for i in 0..200u64 {
            let mut r = r.clone();
            r.value = Some(f64::from_bits(0x3fe0_0000_0000_0000 + i * 0x0001_2345_6789));
            recs.push(r);
        }
        let json = serde_json::to_string(&recs).unwrap();
        let back: Vec<MetricRecord> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, recs);
    }
}
