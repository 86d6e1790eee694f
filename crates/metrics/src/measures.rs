//! Scalar metrics over one slice of scores and labels: AUC, GAUC, logloss, MSE, calibration.
//!
//! Conventions shared by every function here:
//! - a NaN label is a missing label: its row is masked (skipped), never used;
//! - a NaN score on a row that has a label makes the metric `None`, so a broken
//!   prediction cannot hide behind a plausible number;
//! - empty input, slices of different lengths, an undefined ratio (one class only,
//!   zero mean label) or a non-finite result give `None`;
//! - sums are accumulated in f64 (pair counts for AUC in exact integers).

use std::cmp::Ordering;

/// Labels strictly above this are positives for the binary metrics.
pub const POSITIVE_THRESHOLD: f32 = 0.5;

/// Probabilities are clipped to `[LOGLOSS_EPS, 1 - LOGLOSS_EPS]` before the log.
pub const LOGLOSS_EPS: f64 = 1e-7;

/// Whether a binary label counts as a positive.
pub fn is_positive(label: f32) -> bool {
    label > POSITIVE_THRESHOLD
}

/// Group AUC together with how much of the data it actually covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gauc {
    /// Mean of per-group AUCs, each weighted by the group's labelled rows (impressions).
    pub value: f64,
    /// Groups that had both classes and therefore took part.
    pub groups: u64,
    /// Labelled rows inside those groups (the total weight).
    pub rows: u64,
}

/// `Some(x)` only for finite `x`: JSON has no NaN/inf, and they carry no comparable meaning.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// True when the slices line up and no labelled row has a NaN score.
fn usable(scores: &[f32], labels: &[f32]) -> bool {
    scores.len() == labels.len()
        && scores
            .iter()
            .zip(labels)
            .all(|(s, l)| l.is_nan() || !s.is_nan())
}

/// (score, label) of the rows that have a label.
fn labelled<'a>(scores: &'a [f32], labels: &'a [f32]) -> impl Iterator<Item = (f32, f32)> + 'a {
    scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| !l.is_nan())
        .map(|(&s, &l)| (s, l))
}

fn by_score(a: f32, b: f32) -> Ordering {
    a.total_cmp(&b)
}

/// AUC of (score, is_positive) pairs already sorted by ascending score (no NaN scores).
///
/// Walks runs of tied scores: every positive in a run beats all negatives below the run
/// and half-beats the negatives inside it (Mann–Whitney with average ranks). Wins are
/// kept doubled in a u128 so the count stays exact for any realistic row count.
fn auc_of_sorted(sorted: impl IntoIterator<Item = (f32, bool)>) -> Option<f64> {
    let mut negatives_below: u64 = 0;
    let mut positives_total: u64 = 0;
    let mut doubled_wins: u128 = 0;
    let mut run_score: Option<f32> = None;
    let (mut run_pos, mut run_neg) = (0u64, 0u64);

    let mut close_run = |run_pos: u64, run_neg: u64, negatives_below: &mut u64| {
        doubled_wins += 2 * run_pos as u128 * *negatives_below as u128;
        doubled_wins += run_pos as u128 * run_neg as u128;
        *negatives_below += run_neg;
        positives_total += run_pos;
    };

    for (score, positive) in sorted {
        // `==` (not total_cmp) so that -0.0 and 0.0, adjacent after sorting, tie.
        if run_score != Some(score) {
            close_run(run_pos, run_neg, &mut negatives_below);
            run_pos = 0;
            run_neg = 0;
            run_score = Some(score);
        }
        if positive {
            run_pos += 1;
        } else {
            run_neg += 1;
        }
    }
    close_run(run_pos, run_neg, &mut negatives_below);

    if positives_total == 0 || negatives_below == 0 {
        return None;
    }
    let pairs = positives_total as f64 * negatives_below as f64;
    finite(doubled_wins as f64 / 2.0 / pairs)
}

/// Exact, tie-aware ROC AUC: the probability that a random positive outscores a random
/// negative, ties counting 1/2. Labels above 0.5 are positives. `None` when either class
/// is absent (after masking NaN labels) or a labelled row has a NaN score. O(n log n).
pub fn auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if !usable(scores, labels) {
        return None;
    }
    let mut rows: Vec<(f32, bool)> = labelled(scores, labels)
        .map(|(s, l)| (s, is_positive(l)))
        .collect();
    rows.sort_by(|a, b| by_score(a.0, b.0));
    auc_of_sorted(rows)
}

/// Group AUC: the AUC inside each group (e.g. per user), averaged with each group weighted
/// by its labelled rows. Groups with only one class are left out, since their AUC is
/// undefined; `None` when no group qualifies or a labelled row has a NaN score.
pub fn gauc(scores: &[f32], labels: &[f32], groups: &[u64]) -> Option<Gauc> {
    if !usable(scores, labels) || groups.len() != scores.len() {
        return None;
    }
    let mut rows: Vec<(u64, f32, bool)> = scores
        .iter()
        .zip(labels)
        .zip(groups)
        .filter(|((_, l), _)| !l.is_nan())
        .map(|((&s, &l), &g)| (g, s, is_positive(l)))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(by_score(a.1, b.1)));

    let mut weighted_sum = 0.0f64;
    let mut qualified = Gauc {
        value: 0.0,
        groups: 0,
        rows: 0,
    };
    for group in rows.chunk_by(|a, b| a.0 == b.0) {
        if let Some(group_auc) = auc_of_sorted(group.iter().map(|&(_, s, p)| (s, p))) {
            weighted_sum += group_auc * group.len() as f64;
            qualified.groups += 1;
            qualified.rows += group.len() as u64;
        }
    }
    if qualified.groups == 0 {
        return None;
    }
    qualified.value = finite(weighted_sum / qualified.rows as f64)?;
    Some(qualified)
}

/// Mean binary cross-entropy. Scores are probabilities, clipped to [1e-7, 1 - 1e-7] so a
/// confident mistake costs a large but finite amount; labels are binarised at 0.5 like
/// the other binary metrics.
pub fn logloss(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if !usable(scores, labels) {
        return None;
    }
    let (mut sum, mut n) = (0.0f64, 0u64);
    for (s, l) in labelled(scores, labels) {
        let p = (s as f64).clamp(LOGLOSS_EPS, 1.0 - LOGLOSS_EPS);
        sum -= if is_positive(l) {
            p.ln()
        } else {
            (1.0 - p).ln()
        };
        n += 1;
    }
    if n == 0 {
        return None;
    }
    finite(sum / n as f64)
}

/// Mean squared error between score and label.
pub fn mse(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if !usable(scores, labels) {
        return None;
    }
    let (mut sum, mut n) = (0.0f64, 0u64);
    for (s, l) in labelled(scores, labels) {
        let err = s as f64 - l as f64;
        sum += err * err;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    finite(sum / n as f64)
}

/// Mean prediction divided by mean label (1 = calibrated on average). Uses raw label
/// values, so it serves binary and regression behaviours alike. `None` when the mean
/// label is 0.
pub fn calibration(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if !usable(scores, labels) {
        return None;
    }
    let (mut score_sum, mut label_sum, mut n) = (0.0f64, 0.0f64, 0u64);
    for (s, l) in labelled(scores, labels) {
        score_sum += s as f64;
        label_sum += l as f64;
        n += 1;
    }
    // The row counts cancel in the ratio of means.
    if n == 0 || label_sum == 0.0 {
        return None;
    }
    finite(score_sum / label_sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic generator so the randomized checks need no external crate.
    struct Lcg(u64);

    impl Lcg {
        fn next_u32(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn below(&mut self, n: u32) -> u32 {
            self.next_u32() % n
        }
    }

    /// Reference AUC by counting every positive/negative pair.
    fn brute_force_auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
        let (mut wins, mut pairs) = (0.0f64, 0u64);
        for (i, &li) in labels.iter().enumerate() {
            if li.is_nan() || !is_positive(li) {
                continue;
            }
            for (j, &lj) in labels.iter().enumerate() {
                if lj.is_nan() || is_positive(lj) {
                    continue;
                }
                pairs += 1;
                if scores[i] > scores[j] {
                    wins += 1.0;
                } else if scores[i] == scores[j] {
                    wins += 0.5;
                }
            }
        }
        (pairs > 0).then(|| wins / pairs as f64)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_matches_brute_force_on_random_data_with_ties() {
        let mut rng = Lcg(42);
        for round in 0..200 {
            let n = 1 + rng.below(60) as usize;
            // Few distinct score levels on odd rounds to force many ties.
            let levels = if round % 2 == 0 { 1000 } else { 4 };
            let scores: Vec<f32> = (0..n).map(|_| rng.below(levels) as f32 / 7.0).collect();
            let labels: Vec<f32> = (0..n)
                .map(|_| match rng.below(10) {
                    0 => f32::NAN,
                    1..=3 => 1.0,
                    _ => 0.0,
                })
                .collect();
            let fast = auc(&scores, &labels);
            let slow = brute_force_auc(&scores, &labels);
            match (fast, slow) {
                (Some(a), Some(b)) => assert!(close(a, b), "round {round}: {a} vs {b}"),
                (None, None) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
    }

    #[test]
    fn auc_known_small_cases() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auc(&[0.5; 4], &labels), Some(0.5));
        // One tie across classes: pairs (p.8>n.1, p.8>n.5, p.5=n.5 → ½, p.5>n.1) = 3.5/4.
        assert_eq!(
            auc(&[0.1, 0.5, 0.5, 0.8], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.875)
        );
        // -0.0 and 0.0 are the same score.
        assert_eq!(auc(&[-0.0, 0.0], &[0.0, 1.0]), Some(0.5));
    }

    #[test]
    fn auc_none_for_degenerate_input() {
        assert_eq!(auc(&[], &[]), None);
        assert_eq!(auc(&[0.1, 0.2], &[1.0, 1.0]), None);
        assert_eq!(auc(&[0.1, 0.2], &[0.0, 0.0]), None);
        assert_eq!(auc(&[0.1, 0.2], &[0.0, f32::NAN]), None);
        assert_eq!(auc(&[0.1], &[0.0, 1.0]), None);
        assert_eq!(auc(&[f32::NAN, 0.2], &[0.0, 1.0]), None);
    }

    #[test]
    fn nan_labels_are_masked_and_their_nan_scores_ignored() {
        let scores = [0.1, f32::NAN, 0.9, 0.3];
        let labels = [0.0, f32::NAN, 1.0, f32::NAN];
        assert_eq!(auc(&scores, &labels), Some(1.0));
        assert_eq!(mse(&scores, &labels), mse(&[0.1, 0.9], &[0.0, 1.0]));
        assert_eq!(logloss(&scores, &labels), logloss(&[0.1, 0.9], &[0.0, 1.0]));
    }

    #[test]
    fn gauc_by_hand_on_three_groups() {
        // Group 7: 3 rows, AUC 1. Group 3: 4 rows, pairs 2×2 with one inversion → 3/4.
        // Group 9: positives only → excluded. NaN label in group 3 is masked.
        let scores = [0.2, 0.9, 0.1, 0.5, 0.6, 0.7, 0.4, 0.3, 0.8, 0.5];
        let labels = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, f32::NAN];
        let groups = [7, 7, 7, 3, 3, 3, 3, 9, 9, 3];
        let g = gauc(&scores, &labels, &groups).unwrap();
        assert_eq!(g.groups, 2);
        assert_eq!(g.rows, 7);
        let group3 = auc(&[0.5, 0.6, 0.7, 0.4], &[1.0, 0.0, 1.0, 0.0]).unwrap();
        assert!(close(group3, 0.75));
        assert!(close(g.value, (3.0 * 1.0 + 4.0 * 0.75) / 7.0));
    }

    #[test]
    fn gauc_none_when_no_group_has_both_classes() {
        assert_eq!(gauc(&[0.1, 0.2], &[0.0, 1.0], &[1, 2]), None);
        assert_eq!(gauc(&[], &[], &[]), None);
        assert_eq!(gauc(&[0.1, 0.2], &[0.0, 1.0], &[1]), None);
    }

    #[test]
    fn logloss_by_hand_with_clipping() {
        let l = logloss(&[0.8, 0.4], &[1.0, 0.0]).unwrap();
        let expected = -(0.8f32 as f64).ln() - (1.0 - 0.4f32 as f64).ln();
        assert!(close(l, expected / 2.0));
        // A certain mistake is clipped to -ln(1e-7), not infinity.
        let clipped = logloss(&[0.0], &[1.0]).unwrap();
        assert!(close(clipped, -(1e-7f64).ln()));
        assert_eq!(logloss(&[], &[]), None);
        assert_eq!(logloss(&[f32::NAN], &[1.0]), None);
    }

    #[test]
    fn mse_and_calibration_by_hand() {
        assert!(close(
            mse(&[1.0, 2.0, 4.0], &[1.0, 0.0, 1.0]).unwrap(),
            13.0 / 3.0
        ));
        assert_eq!(mse(&[], &[]), None);
        // Mean prediction 0.5, mean label 0.25.
        let c = calibration(&[0.25, 0.75, 0.5, 0.5], &[0.0, 1.0, 0.0, 0.0]).unwrap();
        assert!(close(c, 2.0));
        assert_eq!(calibration(&[0.3, 0.2], &[0.0, 0.0]), None);
        assert_eq!(calibration(&[], &[]), None);
        assert_eq!(calibration(&[f32::INFINITY], &[1.0]), None);
    }
}
