//! Summaries over repeated runs of the same model: the mean and sample standard deviation
//! over seeds, and a percentile bootstrap interval of the seed-mean AUC.
//!
//! Inputs come from the caller: values over seeds, and each seed's scores and labels on
//! the same rows. Not here: the random source (the caller draws the resampled rows, so a
//! comparison keeps one seeded generator across all its intervals), grouping rows by cell.

use crate::measures::auc;

/// The arithmetic mean (NaN for no values).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The mean and the sample standard deviation (n − 1 in the denominator; 0 for a single
/// value, NaN mean for none).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let m = mean(values);
    let var = if values.len() > 1 {
        values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// One behaviour's scores and labels in row-major tables of several behaviours: row `r`'s
/// are at `r * stride + column`.
#[derive(Clone, Copy, Debug)]
pub struct ScoredColumn<'a> {
    pub scores: &'a [f32],
    pub labels: &'a [f32],
    pub stride: usize,
    pub column: usize,
}

/// Mean AUC over `sets` (one per seed) on the same `rows` (repeats allowed); `None` when
/// any set's AUC is undefined there.
pub fn mean_auc(sets: &[ScoredColumn], rows: &[usize]) -> Option<f64> {
    let (mut s, mut l) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    let mut sum = 0.0;
    let mut ok = true;
    for set in sets {
        s.clear();
        l.clear();
        for &r in rows {
            s.push(set.scores[r * set.stride + set.column]);
            l.push(set.labels[r * set.stride + set.column]);
        }
        match auc(&s, &l) {
            Some(a) => sum += a,
            None => ok = false,
        }
    }
    ok.then(|| sum / sets.len() as f64)
}

/// 95 % percentile bootstrap interval (2.5 % and 97.5 % quantiles, nearest rank) of the
/// mean AUC over `sets` on `rows`: `reps` resamples of `rows` with replacement, every set
/// scored on the same resample. `draw(n)` must be uniform in `0..n`. `None` when fewer
/// than half the resamples (rounded down), or none at all, give a defined mean.
pub fn bootstrap_mean_auc(
    sets: &[ScoredColumn],
    rows: &[usize],
    reps: usize,
    draw: &mut impl FnMut(usize) -> usize,
) -> Option<(f64, f64)> {
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let pick: Vec<usize> = (0..rows.len()).map(|_| rows[draw(rows.len())]).collect();
        if let Some(m) = mean_auc(sets, &pick) {
            samples.push(m);
        }
    }
    if samples.is_empty() || samples.len() < reps / 2 {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let q = |f: f64| samples[((samples.len() - 1) as f64 * f).round() as usize];
    Some((q(0.025), q(0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column<'a>(scores: &'a [f32], labels: &'a [f32]) -> ScoredColumn<'a> {
        ScoredColumn {
            scores,
            labels,
            stride: 1,
            column: 0,
        }
    }

    /// A counter standing in for a random source: draws 0, 1, 2, … modulo n.
    fn cycling() -> impl FnMut(usize) -> usize {
        let mut k = 0;
        move |n| {
            k += 1;
            (k - 1) % n
        }
    }

    #[test]
    fn mean_and_sample_sd() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[0.7]), (0.7, 0.0));
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn mean_auc_averages_sets_and_reads_the_strided_column() {
        // Two behaviours per row; column 1 holds the scores under test.
        let scores = [0.0, 0.1, 0.0, 0.9, 0.0, 0.2, 0.0, 0.8];
        let labels = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let perfect = ScoredColumn {
            scores: &scores,
            labels: &labels,
            stride: 2,
            column: 1,
        };
        let inverted_scores = [0.9, 0.1, 0.8, 0.2];
        let other_labels = [0.0, 1.0, 0.0, 1.0];
        let inverted = column(&inverted_scores, &other_labels);
        let rows = [0, 1, 2, 3];
        assert_eq!(mean_auc(&[perfect], &rows), Some(1.0));
        assert_eq!(mean_auc(&[perfect, inverted], &rows), Some(0.5));
        // Rows 0 and 2 hold negatives only: the AUC, and so the mean, is undefined.
        assert_eq!(mean_auc(&[perfect, inverted], &[0, 2]), None);
    }

    #[test]
    fn bootstrap_interval_brackets_a_constant_statistic() {
        let scores = [0.1, 0.9, 0.2, 0.8];
        let labels = [0.0, 1.0, 0.0, 1.0];
        let sets = [column(&scores, &labels)];
        // Drawing rows 0, 1, 2, 3 in turn reproduces the rows: every resample has AUC 1.
        let (lo, hi) = bootstrap_mean_auc(&sets, &[0, 1, 2, 3], 20, &mut cycling()).unwrap();
        assert_eq!((lo, hi), (1.0, 1.0));
    }

    /// Draws the given row positions in turn.
    fn scripted(draws: &[usize]) -> impl FnMut(usize) -> usize + '_ {
        let mut it = draws.iter();
        move |_n| *it.next().unwrap()
    }

    #[test]
    fn bootstrap_quantiles_are_nearest_rank_of_sorted_means() {
        let scores = [0.1, 0.9, 0.6, 0.4];
        let labels = [0.0, 1.0, 0.0, 1.0];
        let sets = [column(&scores, &labels)];
        // Resamples: rows 0,1,0,1 (AUC 1), rows 2,3,2,3 (AUC 0), rows 0..4 (AUC 0.75).
        let mut draw = scripted(&[0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 2, 3]);
        let got = bootstrap_mean_auc(&sets, &[0, 1, 2, 3], 3, &mut draw);
        assert_eq!(got, Some((0.0, 1.0)));
        // Two seeds: each resample's value is the mean of the two AUCs.
        let flipped = [0.9, 0.1, 0.4, 0.6];
        let sets = [column(&scores, &labels), column(&flipped, &labels)];
        let mut draw = scripted(&[0, 1, 0, 1, 0, 1, 2, 3]);
        let got = bootstrap_mean_auc(&sets, &[0, 1, 2, 3], 2, &mut draw);
        assert_eq!(got, Some((0.5, 0.5)));
    }

    #[test]
    fn bootstrap_needs_half_the_resamples_defined() {
        let scores = [0.1, 0.9];
        let labels = [0.0, 1.0];
        let sets = [column(&scores, &labels)];
        // Every draw picks row 0 (a negative): no resample defines the AUC.
        let mut zero = |_n: usize| 0;
        assert_eq!(bootstrap_mean_auc(&sets, &[0, 1], 10, &mut zero), None);
        assert_eq!(bootstrap_mean_auc(&sets, &[0, 1], 0, &mut zero), None);
        // One resample of four defined is under half: no interval; one of three is not.
        let mut draw = scripted(&[0, 1, 0, 0, 1, 1, 0, 0]);
        assert_eq!(bootstrap_mean_auc(&sets, &[0, 1], 4, &mut draw), None);
        let mut draw = scripted(&[0, 1, 0, 0, 1, 1]);
        assert_eq!(
            bootstrap_mean_auc(&sets, &[0, 1], 3, &mut draw),
            Some((1.0, 1.0))
        );
        assert_eq!(bootstrap_mean_auc(&sets, &[], 3, &mut zero), None);
    }
}
