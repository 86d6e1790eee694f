//! Statistics fitted on the train split and stored with the model: mean and standard
//! deviation for standardised numbers, quantile boundaries for bucketised ones. Also counts
//! the split's rows and label positives, so an empty train split or a behaviour without
//! positives is refused before training.

use crate::error::DataError;
use crate::pipeline::{FeatureKind, Pipeline};
use crate::stream::{scan, ReadStats};
use crate::transforms::{FittedFeature, FittedTransforms};
use crate::SplitMix;
use mfh_config::{FeatureConfig, NumericTransform};

const RESERVOIR: usize = 100_000;

enum Acc {
    Welford {
        n: u64,
        mean: f64,
        m2: f64,
    },
    Reservoir {
        seen: u64,
        sample: Vec<f64>,
        q: usize,
    },
}

impl Pipeline {
    /// Reads `split` once and fits the numeric statistics on it.
    pub fn fit(&mut self, split: &str) -> Result<ReadStats, DataError> {
        let mut accs = self.accumulators();
        let mut rng = SplitMix(0xf17);
        let nb = self.behaviours.len();
        let mut counts = vec![0u64; nb];
        let bidx = |name: &str| {
            self.cfg
                .behaviours
                .iter()
                .position(|b| b.name() == name)
                .unwrap_or(0)
        };
        let funnels: Vec<(usize, usize)> = self
            .cfg
            .train
            .loss
            .funnels
            .iter()
            .map(|f| (bidx(&f.from), bidx(&f.to)))
            .collect();
        let mut violations = vec![0u64; funnels.len()];
        let mut scratch =
            crate::Batch::with_layout(self.layout.single.len(), self.layout.multi.len());
        let this = &*self;
        let fitted = this.fitted();
        let stats = scan(this, split, |row| {
            // Decoding validates the row exactly as training will (and yields its labels).
            scratch.clear();
            this.decode_into(row, &fitted, &mut scratch)?;
            for (b, y) in scratch.labels.iter().enumerate() {
                let positive = if this.cfg.behaviours[b].is_binary() {
                    *y > 0.5
                } else {
                    y.is_finite()
                };
                counts[b] += positive as u64;
            }
            for (v, (a, b)) in violations.iter_mut().zip(&funnels) {
                *v += (scratch.labels[*b] > 0.5 && scratch.labels[*a] < 0.5) as u64;
            }
            for (i, acc) in accs.iter_mut() {
                let f = &this.features[*i];
                let Some(x) = this.number(row, f.col)? else {
                    continue;
                };
                acc.add(pre_transform(&f.kind, x), &mut rng);
            }
            Ok(true)
        })?;
        let mut t = FittedTransforms {
            rows: stats.rows_used,
            ..Default::default()
        };
        for (i, acc) in accs {
            t.features
                .insert(self.features[i].name.clone(), acc.finish());
        }
        for (f, v) in self.cfg.train.loss.funnels.iter().zip(violations) {
            t.funnel_violations
                .insert(format!("{}->{}", f.from, f.to), v);
        }
        for (b, c) in counts.into_iter().enumerate() {
            t.label_counts
                .insert(self.cfg.behaviours[b].name().to_string(), c);
        }
        self.transforms = t;
        Ok(stats)
    }

    /// An accumulator per feature that fits a statistic: Welford moments for
    /// standardised numbers, a reservoir sample for quantile buckets.
    fn accumulators(&self) -> Vec<(usize, Acc)> {
        let mut accs: Vec<(usize, Acc)> = Vec::new();
        for (i, f) in self.features.iter().enumerate() {
            match (&f.kind, &self.cfg.features[i]) {
                (FeatureKind::Numeric(tr, _), _) if tr.contains(&NumericTransform::Standardize) => {
                    accs.push((
                        i,
                        Acc::Welford {
                            n: 0,
                            mean: 0.0,
                            m2: 0.0,
                        },
                    ))
                }
                (
                    FeatureKind::Bucketized { .. },
                    FeatureConfig::Bucketized {
                        quantiles: Some(q), ..
                    },
                ) => accs.push((
                    i,
                    Acc::Reservoir {
                        seen: 0,
                        sample: Vec::new(),
                        q: *q,
                    },
                )),
                _ => {}
            }
        }
        accs
    }
}

/// The transforms that come before the fitted one (the leading `log1p`s of a
/// standardised number, a bucketised feature's `log1p`).
fn pre_transform(kind: &FeatureKind, mut x: f64) -> f64 {
    match kind {
        FeatureKind::Numeric(tr, _) => {
            for t in tr {
                if *t == NumericTransform::Log1p {
                    x = x.max(0.0).ln_1p();
                } else {
                    break;
                }
            }
        }
        FeatureKind::Bucketized { log1p: true } => x = x.max(0.0).ln_1p(),
        _ => {}
    }
    x
}

impl Acc {
    fn add(&mut self, x: f64, rng: &mut SplitMix) {
        match self {
            Acc::Welford { n, mean, m2 } => {
                *n += 1;
                let d = x - *mean;
                *mean += d / *n as f64;
                *m2 += d * (x - *mean);
            }
            Acc::Reservoir { seen, sample, .. } => {
                *seen += 1;
                if sample.len() < RESERVOIR {
                    sample.push(x);
                } else {
                    let j = rng.below(*seen as usize);
                    if j < RESERVOIR {
                        sample[j] = x;
                    }
                }
            }
        }
    }

    fn finish(self) -> FittedFeature {
        match self {
            Acc::Welford { n, mean, m2 } => {
                let var = if n > 1 { m2 / (n - 1) as f64 } else { 0.0 };
                let std = if var > 1e-24 { var.sqrt() } else { 1.0 };
                FittedFeature::Standardize { mean, std }
            }
            Acc::Reservoir { mut sample, q, .. } => {
                sample.sort_by(f64::total_cmp);
                let mut b: Vec<f64> = (1..q)
                    .filter_map(|k| sample.get(k * sample.len() / q).copied())
                    .collect();
                b.dedup();
                FittedFeature::Buckets { boundaries: b }
            }
        }
    }
}
