//! The synthetic data generator (`mfh bench gen`, and `mfh bench train` without
//! `--data`): skewed IDs, uniform numbers, facet groups and labels, seeded.

use crate::file::write_file;
use crate::workload::{RawData, Workload, BATCH, DENSE, FIELDS};
use anyhow::Result;
use mfh_data::SplitMix;
use std::path::Path;

/// How the synthetic data is drawn.
#[derive(Clone, Copy, Debug)]
pub struct GenSpec {
    pub batches: usize,
    pub seed: u64,
    /// IDs per categorical field.
    pub vocab: u64,
    /// ID = ⌊u^skew · vocab⌋ for uniform u: 1 is uniform, larger puts more mass on small IDs.
    pub skew: f64,
}

impl Default for GenSpec {
    /// What `mfh bench train` trains on without `--data` (and `mfh bench gen`'s defaults).
    fn default() -> GenSpec {
        GenSpec {
            batches: 32,
            seed: 1,
            vocab: 100_000,
            skew: 3.0,
        }
    }
}

/// `mfh bench gen`: writes workload `w`'s batches drawn by `g` to `out` and says so.
pub fn gen(w: Workload, g: &GenSpec, out: &Path) -> Result<()> {
    if g.vocab == 0 || g.vocab > u32::MAX as u64 || !(g.skew > 0.0 && g.skew.is_finite()) {
        anyhow::bail!("--vocab must be in 1..=2^32−1 and --skew positive");
    }
    write_file(&generate(w, g), out)?;
    outln!(
        "{} {} batches of {BATCH} rows → {}",
        g.batches,
        w.name(),
        out.display()
    );
    Ok(())
}

/// Skewed IDs, uniform dense values in [−1, 1), groups by [`draw_group`], binary labels
/// at rate 0.1·(b+1) shifted by the groups (smaller groups act less); seeded.
pub fn generate(w: Workload, g: &GenSpec) -> RawData {
    let mut rng = SplitMix(g.seed);
    let mut unif = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut d = RawData::empty(w, g.batches, g.vocab);
    for _ in 0..g.batches * BATCH {
        for _ in 0..FIELDS {
            let id = (unif().powf(g.skew) * g.vocab as f64) as u64;
            d.ids.push(id.min(g.vocab - 1) as u32);
        }
        for _ in 0..DENSE {
            d.dense.push((unif() * 2.0 - 1.0) as f32);
        }
        let (u, i) = (
            draw_group(unif(), d.user_groups),
            draw_group(unif(), d.item_groups),
        );
        for b in 0..d.behaviours {
            let rate = 0.1 * (b + 1) as f64 * (1.0 - 0.05 * (u + i) as f64);
            d.labels.push(if unif() < rate { 1.0 } else { 0.0 });
        }
        d.user.push(u);
        d.item.push(i);
    }
    d
}

/// Draws group g of `k` with probability ∝ 1/(g+1): the first group is the largest (old
/// users, head items), the last the smallest.
fn draw_group(u: f64, k: usize) -> u32 {
    let total: f64 = (1..=k).map(|g| 1.0 / g as f64).sum();
    let mut acc = 0.0;
    for g in 0..k {
        acc += 1.0 / (g + 1) as f64 / total;
        if u < acc {
            return g as u32;
        }
    }
    (k - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_ids_stay_in_range_and_the_seed_decides() {
        let g = GenSpec {
            batches: 1,
            seed: 5,
            vocab: 10,
            skew: 3.0,
        };
        let d = generate(Workload::MfhRef, &g);
        assert_eq!(d.ids.len(), BATCH * FIELDS);
        assert_eq!(d.labels.len(), BATCH * 3);
        assert!(d.ids.iter().all(|&id| id < 10));
        assert!(d.user.iter().chain(&d.item).all(|&x| x < 4));
        // Group 0 is the largest.
        let zeros = d.user.iter().filter(|&&u| u == 0).count();
        assert!(zeros > BATCH / 3, "{zeros}");
        assert_eq!(d, generate(Workload::MfhRef, &g));
        assert_ne!(d, generate(Workload::MfhRef, &GenSpec { seed: 6, ..g }));
    }
}
