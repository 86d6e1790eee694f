//! Statistics fitted on the train split and stored with the model: mean and standard
//! deviation for standardised numbers, quantile boundaries for bucketised ones. Also counts
//! the split's rows and label positives, so an empty train split or a behaviour without
//! positives is refused before training.
//!
//! The pass can be split across processes. The split's rows are dealt into [`STRIPES`]
//! fixed stripes (row `k` of the split into stripe `k % STRIPES`), each with its own
//! mergeable statistics; [`Pipeline::fit_part`] fits the stripes one rank owns (stripe `s`
//! belongs to rank `s % size`) into a [`FitPart`], the parts travel as `f64` words
//! ([`FitPart::to_words`]), and [`Pipeline::finish_fit`] merges the stripes in stripe
//! order. The stripes do not depend on the number of ranks, so the fitted statistics are
//! bit-identical on any number of ranks (a run resumed on another number of ranks checks
//! them), and [`Pipeline::fit`] is the one-rank case. Moments merge by Chan et al.'s
//! pairwise update. Quantiles: each stripe keeps its values themselves up to
//! `EXACT_VALUES / STRIPES` and a t-digest ([`tdigest`], 1,000 centroids) always; when no
//! stripe overflowed, the boundaries are the exact order statistics of all values, else
//! they come from the merged digests, whose rank error on the boundaries stays well inside
//! 1 % (tested on skewed data below).

use crate::error::DataError;
use crate::pipeline::{CompiledSplit, FeatureKind, Pipeline};
use crate::stream::{scan_files, ReadStats};
use crate::transforms::{FittedFeature, FittedTransforms};
use mfh_config::{FeatureConfig, NumericTransform};
use tdigest::{Centroid, TDigest};

/// Values a part keeps exactly per bucketised feature (8 MB of `f64`) before it relies
/// on its digest alone.
pub const EXACT_VALUES: usize = 1 << 20;

/// Centroids of each quantile digest.
const DIGEST_SIZE: usize = 1000;

/// The fixed stripes the split's rows are dealt into (ranks beyond this many get none).
pub const STRIPES: usize = 64;

/// One part's statistics: mergeable with the other parts' into the fitted transforms.
#[derive(Debug, Clone)]
pub struct FitPart {
    /// Rows of the split in this part's stripes.
    rows: u64,
    /// Data rows this part accounts for (all parts' sum: the rows the pass read).
    rows_read: u64,
    /// Per behaviour: positives (binary) or labelled rows (regression) in the stripe.
    label_counts: Vec<u64>,
    /// Per configured funnel: violations in the stripe.
    violations: Vec<u64>,
    /// The stripes this part fitted, ascending.
    stripes: Vec<usize>,
    /// Per fitted feature (in [`Pipeline::accumulators`]' order), per stripe of `stripes`.
    accs: Vec<Vec<Acc>>,
}

#[derive(Debug, Clone)]
enum Acc {
    Moments {
        n: u64,
        mean: f64,
        m2: f64,
    },
    Quantiles {
        /// The values themselves while there are at most [`EXACT_VALUES`].
        exact: Option<Vec<f64>>,
        digest: TDigest,
        buckets: usize,
    },
}

impl Pipeline {
    /// Reads `split` once and fits the numeric statistics on it.
    pub fn fit(&mut self, split: &str) -> Result<ReadStats, DataError> {
        let (part, stats) = self.fit_part(split, 0, 1)?;
        self.finish_fit(vec![part])?;
        Ok(stats)
    }

    /// How `split`'s rows are dealt into stripes: by file when it reads several files
    /// through a `where` (file `f` of its list into stripe `f % STRIPES`, so a rank opens
    /// only its stripes' files), else by row (row `k` of the split into stripe
    /// `k % STRIPES`, every rank reading every row). Neither depends on the number of ranks.
    fn stripe_files(&self, split: &str) -> Result<Option<usize>, DataError> {
        let by_where = matches!(self.splits.get(split), Some(CompiledSplit::Where(_)));
        if !by_where || self.tables.get(split).is_some() {
            return Ok(None);
        }
        let (n, _) = self.split_file_count(split)?;
        Ok((n > 1).then_some(n))
    }

    /// Reads `split` and fits the statistics of the stripes rank `rank` of `size` owns
    /// (by file: only their files are read; by row: every row is read, joined and tested
    /// for the split, and only the owned stripes' rows are decoded). Either way only the
    /// owned rows' errors are found here. The statistics are this rank's.
    pub fn fit_part(
        &self,
        split: &str,
        rank: usize,
        size: usize,
    ) -> Result<(FitPart, ReadStats), DataError> {
        assert!(rank < size, "rank {rank} of {size}");
        let stripes: Vec<usize> = (0..STRIPES).filter(|s| s % size == rank).collect();
        let by_file = self.stripe_files(split)?;
        // By file: the owned files, and per file read its stripe.
        let files: Option<Vec<usize>> =
            by_file.map(|n| (0..n).filter(|f| f % STRIPES % size == rank).collect());
        // A row's stripe by its file (a file without a row in the split never shows).
        let file_stripe: std::collections::HashMap<std::path::PathBuf, usize> = match &files {
            Some(owned) => {
                let all = self.split_sources(split)?.files;
                owned
                    .iter()
                    .map(|&f| (all[f].clone(), f % STRIPES))
                    .collect()
            }
            None => Default::default(),
        };
        // Per fitted feature, one accumulator per stripe (the unowned ones stay empty).
        let mut accs: Vec<(usize, Vec<Acc>)> = self
            .accumulators()
            .into_iter()
            .map(|(i, a)| (i, vec![a; STRIPES]))
            .collect();
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
        let fitted = self.fitted();
        let mut k = 0usize;
        let mut rows_owned = 0u64;
        // The previous row's file and stripe.
        let mut last: Option<(std::path::PathBuf, usize)> = None;
        let stats = scan_files(self, split, files.as_deref(), |row| {
            let stripe = if by_file.is_some() {
                match &last {
                    // The same file as the row before: a byte comparison, not a
                    // component-by-component one, on this per-row path.
                    Some((path, s)) if path.as_os_str() == row.path.as_os_str() => *s,
                    _ => {
                        let s = *file_stripe.get(row.path).ok_or_else(|| {
                            DataError::file(row.path, "io", "read a file this rank does not own")
                        })?;
                        last = Some((row.path.to_path_buf(), s));
                        s
                    }
                }
            } else {
                k += 1;
                (k - 1) % STRIPES
            };
            if stripe % size != rank {
                return Ok(true);
            }
            // Decoding validates the row exactly as training will (and yields its labels).
            scratch.clear();
            self.decode_into(row, &fitted, &mut scratch)?;
            for (b, y) in scratch.labels.iter().enumerate() {
                let positive = if self.cfg.behaviours[b].is_binary() {
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
                let f = &self.features[*i];
                let Some(x) = self.number(row, f.col)? else {
                    continue;
                };
                acc[stripe].add(pre_transform(&f.kind, x));
            }
            // Counted once the row decoded (a row skipped with `on_error = "skip"` is not).
            rows_owned += 1;
            Ok(true)
        })?;
        let accs: Vec<Vec<Acc>> = accs
            .into_iter()
            .map(|(_, per_stripe)| {
                let mut owned: Vec<Acc> = per_stripe
                    .into_iter()
                    .enumerate()
                    .filter(|(s, _)| s % size == rank)
                    .map(|(_, a)| a)
                    .collect();
                for a in &mut owned {
                    if let Acc::Quantiles { digest, .. } = a {
                        digest.flush();
                    }
                }
                owned
            })
            .collect();
        // Rows read count once over the ranks: each rank's own files, or (all reading
        // everything) rank 0's.
        let rows_read = if by_file.is_some() || rank == 0 {
            stats.rows_read
        } else {
            0
        };
        Ok((
            FitPart {
                rows: rows_owned,
                rows_read,
                label_counts: counts,
                violations,
                stripes,
                accs,
            },
            stats,
        ))
    }

    /// Merges every rank's part (every stripe exactly once, in any order of parts) into
    /// this pipeline's transforms. Returns the data rows the parts read, all together.
    pub fn finish_fit(&mut self, parts: Vec<FitPart>) -> Result<u64, DataError> {
        let fitted: Vec<usize> = self.accumulators().into_iter().map(|(i, _)| i).collect();
        let mut t = FittedTransforms::default();
        let mut rows_read = 0u64;
        let nb = self.cfg.behaviours.len();
        let nf = self.cfg.train.loss.funnels.len();
        let mut counts = vec![0u64; nb];
        let mut violations = vec![0u64; nf];
        // Per fitted feature, per stripe: its accumulator, from whichever part fitted it.
        let mut per_feature: Vec<Vec<Option<Acc>>> = vec![vec![None; STRIPES]; fitted.len()];
        let mismatch = || {
            DataError::config(
                "a rank's fitted statistics do not match this config (every rank must read the same config)",
            )
        };
        for p in parts {
            if p.label_counts.len() != nb
                || p.violations.len() != nf
                || p.accs.len() != fitted.len()
                || p.accs.iter().any(|a| a.len() != p.stripes.len())
            {
                return Err(mismatch());
            }
            t.rows += p.rows;
            rows_read += p.rows_read;
            for (c, x) in counts.iter_mut().zip(p.label_counts) {
                *c += x;
            }
            for (v, x) in violations.iter_mut().zip(p.violations) {
                *v += x;
            }
            for (all, accs) in per_feature.iter_mut().zip(p.accs) {
                for (&s, a) in p.stripes.iter().zip(accs) {
                    let slot = all.get_mut(s).ok_or_else(mismatch)?;
                    if slot.replace(a).is_some() {
                        return Err(DataError::config(format!(
                            "stripe {s} of the fitted statistics came from two ranks"
                        )));
                    }
                }
            }
        }
        let per_feature: Vec<Vec<Acc>> = per_feature
            .into_iter()
            .map(|stripes| {
                stripes
                    .into_iter()
                    .enumerate()
                    .map(|(s, a)| {
                        a.ok_or_else(|| {
                            DataError::config(format!(
                                "no rank sent stripe {s} of the fitted statistics"
                            ))
                        })
                    })
                    .collect::<Result<Vec<Acc>, DataError>>()
            })
            .collect::<Result<_, _>>()?;
        for (i, accs) in fitted.into_iter().zip(per_feature) {
            t.features
                .insert(self.features[i].name.clone(), merge(accs)?);
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
        Ok(rows_read)
    }

    /// An accumulator per feature that fits a statistic: moments for standardised
    /// numbers, quantiles for bucketised ones.
    fn accumulators(&self) -> Vec<(usize, Acc)> {
        let mut accs: Vec<(usize, Acc)> = Vec::new();
        for (i, f) in self.features.iter().enumerate() {
            match (&f.kind, &self.cfg.features[i]) {
                (FeatureKind::Numeric(tr, _), _) if tr.contains(&NumericTransform::Standardize) => {
                    accs.push((
                        i,
                        Acc::Moments {
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
                    Acc::Quantiles {
                        exact: Some(Vec::new()),
                        digest: TDigest::new_with_size(DIGEST_SIZE),
                        buckets: *q,
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
    fn add(&mut self, x: f64) {
        match self {
            Acc::Moments { n, mean, m2 } => {
                *n += 1;
                let d = x - *mean;
                *mean += d / *n as f64;
                *m2 += d * (x - *mean);
            }
            Acc::Quantiles { exact, digest, .. } => {
                digest.push(x);
                if let Some(v) = exact {
                    if v.len() < EXACT_VALUES / STRIPES {
                        v.push(x);
                    } else {
                        *exact = None;
                    }
                }
            }
        }
    }
}

/// One feature's statistic from every part's accumulator (all of one kind).
fn merge(accs: Vec<Acc>) -> Result<FittedFeature, DataError> {
    let mismatch = || DataError::config("the ranks' fitted statistics disagree in kind");
    match accs.first() {
        Some(Acc::Moments { .. }) => {
            let (mut n, mut mean, mut m2) = (0u64, 0.0f64, 0.0f64);
            for a in accs {
                let Acc::Moments {
                    n: nb,
                    mean: mb,
                    m2: m2b,
                } = a
                else {
                    return Err(mismatch());
                };
                if nb == 0 {
                    continue;
                }
                if n == 0 {
                    (n, mean, m2) = (nb, mb, m2b);
                    continue;
                }
                let total = n + nb;
                let d = mb - mean;
                mean += d * nb as f64 / total as f64;
                m2 += m2b + d * d * (n as f64) * (nb as f64) / total as f64;
                n = total;
            }
            let var = if n > 1 { m2 / (n - 1) as f64 } else { 0.0 };
            let std = if var > 1e-24 { var.sqrt() } else { 1.0 };
            Ok(FittedFeature::Standardize { mean, std })
        }
        Some(Acc::Quantiles { buckets, .. }) => {
            let q = *buckets;
            let mut values: Option<Vec<f64>> = Some(Vec::new());
            let mut digests = Vec::with_capacity(accs.len());
            for a in accs {
                let Acc::Quantiles { exact, digest, .. } = a else {
                    return Err(mismatch());
                };
                match (&mut values, exact) {
                    (Some(all), Some(v)) if all.len() + v.len() <= EXACT_VALUES => {
                        all.extend_from_slice(&v)
                    }
                    _ => values = None,
                }
                digests.push(digest);
            }
            let mut b: Vec<f64> = match values {
                Some(mut sample) => {
                    sample.sort_by(f64::total_cmp);
                    (1..q)
                        .filter_map(|k| sample.get(k * sample.len() / q).copied())
                        .collect()
                }
                None => {
                    let d = TDigest::merge_digests(digests);
                    (1..q)
                        .filter_map(|k| d.estimate_quantile(k as f64 / q as f64))
                        .collect()
                }
            };
            b.dedup();
            Ok(FittedFeature::Buckets { boundaries: b })
        }
        None => Err(DataError::config("no rank sent its fitted statistics")),
    }
}

impl FitPart {
    /// The part as `f64` words for a collective (counts are exact below 2^53).
    pub fn to_words(&self) -> Vec<f64> {
        let mut w = vec![self.rows as f64, self.rows_read as f64];
        w.extend(self.label_counts.iter().map(|&c| c as f64));
        w.extend(self.violations.iter().map(|&c| c as f64));
        w.push(self.stripes.len() as f64);
        w.extend(self.stripes.iter().map(|&s| s as f64));
        for a in self.accs.iter().flatten() {
            match a {
                Acc::Moments { n, mean, m2 } => w.extend([*n as f64, *mean, *m2]),
                Acc::Quantiles { exact, digest, .. } => {
                    match exact {
                        Some(v) => {
                            w.push(v.len() as f64);
                            w.extend_from_slice(v);
                        }
                        None => w.push(-1.0),
                    }
                    let c = digest.centroids();
                    w.push(c.len() as f64);
                    for x in c {
                        w.extend([x.mean(), x.weight()]);
                    }
                    w.extend([
                        digest.sum(),
                        digest.count(),
                        digest.min().unwrap_or(f64::NAN),
                        digest.max().unwrap_or(f64::NAN),
                    ]);
                }
            }
        }
        w
    }

    /// A part read back from [`FitPart::to_words`], shaped by this pipeline's config.
    pub fn from_words(p: &Pipeline, words: &[f64]) -> Result<FitPart, DataError> {
        let bad = || DataError::config("a rank's fitted statistics arrived malformed");
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[f64], DataError> {
            let s = words.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        let count = |x: f64| -> Result<usize, DataError> {
            if x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 {
                Ok(x as usize)
            } else {
                Err(bad())
            }
        };
        let nb = p.behaviours.len();
        let nf = p.cfg.train.loss.funnels.len();
        let head = take(2)?;
        let (rows, rows_read) = (count(head[0])? as u64, count(head[1])? as u64);
        let label_counts = take(nb)?.iter().map(|&x| x as u64).collect();
        let violations = take(nf)?.iter().map(|&x| x as u64).collect();
        let ns = count(take(1)?[0])?;
        let stripes = take(ns)?
            .iter()
            .map(|&x| count(x).ok().filter(|&s| s < STRIPES).ok_or_else(bad))
            .collect::<Result<Vec<usize>, _>>()?;
        let mut accs = Vec::new();
        for (_, template) in p.accumulators() {
            let mut per_stripe = Vec::with_capacity(ns);
            for _ in 0..ns {
                per_stripe.push(match template.clone() {
                    Acc::Moments { .. } => {
                        let m = take(3)?;
                        Acc::Moments {
                            n: count(m[0])? as u64,
                            mean: m[1],
                            m2: m[2],
                        }
                    }
                    Acc::Quantiles { buckets, .. } => {
                        let n = take(1)?[0];
                        let exact = if n < 0.0 {
                            None
                        } else {
                            let n = count(n)?;
                            Some(take(n)?.to_vec())
                        };
                        let nc = count(take(1)?[0])?;
                        let cs: Vec<Centroid> = take(2 * nc)?
                            .chunks_exact(2)
                            .map(|c| Centroid::new(c[0], c[1]))
                            .collect();
                        let s = take(4)?;
                        let finite = |x: f64| x.is_finite().then_some(x);
                        let (min, max) = (finite(s[2]), finite(s[3]));
                        if !cs.is_empty() && (min.is_none() || max.is_none()) {
                            return Err(bad());
                        }
                        Acc::Quantiles {
                            exact,
                            digest: TDigest::new(cs, s[0], s[1], max, min, DIGEST_SIZE),
                            buckets,
                        }
                    }
                });
            }
            accs.push(per_stripe);
        }
        if at != words.len() {
            return Err(bad());
        }
        Ok(FitPart {
            rows,
            rows_read,
            label_counts,
            violations,
            stripes,
            accs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix;

    /// Where `b` falls among sorted `s`, as the distance of quantile `target` from the
    /// ranks `b` can stand for (0 when `target` lies between the shares below and at `b`).
    fn rank_error(s: &[f64], b: f64, target: f64) -> f64 {
        let n = s.len() as f64;
        let lo = s.partition_point(|&x| x < b) as f64 / n;
        let hi = s.partition_point(|&x| x <= b) as f64 / n;
        if target < lo {
            lo - target
        } else if target > hi {
            target - hi
        } else {
            0.0
        }
    }

    /// Skewed values with heavy ties: a third are zero, the rest log-normal (σ = 2) rounded
    /// to two decimals.
    fn skewed(rng: &mut SplitMix, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                if rng.below(3) == 0 {
                    0.0
                } else {
                    let (u, v) = (rng.uniform().max(1e-12), rng.uniform());
                    let g = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                    ((2.0 * g).exp() * 100.0).round() / 100.0
                }
            })
            .collect()
    }

    fn digest_part(values: &[f64], q: usize) -> Acc {
        let mut a = Acc::Quantiles {
            exact: None,
            digest: TDigest::new_with_size(DIGEST_SIZE),
            buckets: q,
        };
        for &x in values {
            if let Acc::Quantiles { digest, .. } = &mut a {
                digest.push(x);
            }
        }
        if let Acc::Quantiles { digest, .. } = &mut a {
            digest.flush();
        }
        a
    }

    #[test]
    fn merged_digests_put_boundaries_within_one_percent_rank_error() {
        let mut rng = SplitMix(7);
        for (parts, per_part, q) in [(1, 400_000, 8), (3, 150_000, 16), (4, 50_000, 100)] {
            let data: Vec<Vec<f64>> = (0..parts).map(|_| skewed(&mut rng, per_part)).collect();
            let accs = data.iter().map(|d| digest_part(d, q)).collect();
            let FittedFeature::Buckets { boundaries } = merge(accs).unwrap() else {
                panic!("not buckets");
            };
            let mut all: Vec<f64> = data.concat();
            all.sort_by(f64::total_cmp);
            assert!(!boundaries.is_empty() && boundaries.len() < q);
            // Each boundary stands for the quantile it was asked for (after dedup, the
            // nearest one it can: a tie block spans several).
            let mut worst = 0.0f64;
            for &b in &boundaries {
                let e = (1..q)
                    .map(|k| rank_error(&all, b, k as f64 / q as f64))
                    .fold(f64::INFINITY, f64::min);
                worst = worst.max(e);
            }
            // Every asked quantile has a boundary close to it, unless a tie block holds it.
            for k in 1..q {
                let t = k as f64 / q as f64;
                let e = boundaries
                    .iter()
                    .map(|&b| rank_error(&all, b, t))
                    .fold(f64::INFINITY, f64::min);
                worst = worst.max(e);
            }
            eprintln!("{parts} parts × {per_part}, {q} buckets: worst rank error {worst:.5}");
            assert!(
                worst <= 0.01,
                "{parts} parts × {per_part}, {q} buckets: rank error {worst}"
            );
        }
    }

    #[test]
    fn parts_merge_moments_exactly_and_exact_values_in_order() {
        let mut rng = SplitMix(3);
        let data = skewed(&mut rng, 10_001);
        let whole = |d: &[f64]| {
            let mut a = Acc::Moments {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            };
            d.iter().for_each(|&x| a.add(x));
            a
        };
        let FittedFeature::Standardize { mean, std } = merge(vec![whole(&data)]).unwrap() else {
            panic!()
        };
        let parts: Vec<Acc> = data.chunks(3_334).map(whole).collect();
        let FittedFeature::Standardize { mean: m, std: s } = merge(parts).unwrap() else {
            panic!()
        };
        assert!(
            (m - mean).abs() <= 1e-12 * mean.abs().max(1.0),
            "{m} {mean}"
        );
        assert!((s - std).abs() <= 1e-12 * std, "{s} {std}");

        let exact = |d: &[f64]| {
            let mut a = Acc::Quantiles {
                exact: Some(Vec::new()),
                digest: TDigest::new_with_size(DIGEST_SIZE),
                buckets: 8,
            };
            d.iter().for_each(|&x| a.add(x));
            if let Acc::Quantiles { digest, .. } = &mut a {
                digest.flush();
            }
            a
        };
        let one = merge(vec![exact(&data)]).unwrap();
        let split = merge(data.chunks(997).map(exact).collect()).unwrap();
        assert_eq!(one, split, "exact values give the one-process boundaries");
        let mut sorted = data.clone();
        sorted.sort_by(f64::total_cmp);
        let mut want: Vec<f64> = (1..8).map(|k| sorted[k * sorted.len() / 8]).collect();
        want.dedup();
        assert_eq!(one, FittedFeature::Buckets { boundaries: want });
    }
}
