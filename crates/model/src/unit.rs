//! Serialisable description of one switcher ([`UnitSpec`]): one input in, K outputs out,
//! each unit described by its own shape (`MmoeShape`, `CgcShape`, …, beside the unit).
//! A flat model uses one unit over all tasks; a tree model one per tree level.

use crate::cgc::{Cgc, CgcShape};
use crate::identity::Identity;
use crate::mmoe::{Mmoe, MmoeShape};
use crate::ple::{Ple, PleShape};
use crate::shared_bottom::{SharedBottom, SharedBottomShape};
use crate::switcher::Switcher;
use mfh_nn::{Float, Rng};
use serde::{Deserialize, Serialize};

/// One switcher; in a table, `type` names it and its shape's keys follow.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum UnitSpec {
    SharedBottom(SharedBottomShape),
    Mmoe(MmoeShape),
    Cgc(CgcShape),
    Ple(PleShape),
    /// Every output a copy of the input, no parameters (the `single` model's switcher).
    Identity {},
}

impl std::fmt::Debug for UnitSpec {
    /// The unit's shape (its type name says which unit).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitSpec::SharedBottom(s) => s.fmt(f),
            UnitSpec::Mmoe(s) => s.fmt(f),
            UnitSpec::Cgc(s) => s.fmt(f),
            UnitSpec::Ple(s) => s.fmt(f),
            UnitSpec::Identity {} => f.write_str("Identity"),
        }
    }
}

impl UnitSpec {
    /// Checks the spec on its own (experts, layer widths, levels).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            UnitSpec::SharedBottom(s) => s.validate(),
            UnitSpec::Mmoe(s) => s.validate(),
            UnitSpec::Cgc(s) => s.validate(),
            UnitSpec::Ple(s) => s.validate(),
            UnitSpec::Identity {} => Ok(()),
        }
    }

    /// Width of each output for an input of width `n_in` (the last layer's width;
    /// `n_in` for the identity, or an empty layer list, which `validate` rejects).
    pub fn out_dim(&self, n_in: usize) -> usize {
        let layers = match self {
            UnitSpec::SharedBottom(s) => &s.layers,
            UnitSpec::Mmoe(s) => &s.expert_layers,
            UnitSpec::Cgc(s) => &s.expert_layers,
            UnitSpec::Ple(s) => &s.level.expert_layers,
            UnitSpec::Identity {} => return n_in,
        };
        layers.last().copied().unwrap_or(n_in)
    }

    /// The switcher for inputs of width `n_in` with `k` outputs, batch norm after every
    /// ReLU layer when `batch_norm`. Panics on a spec `validate` rejects.
    pub fn build<T: Float>(
        &self,
        n_in: usize,
        k: usize,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Box<dyn Switcher<T>> {
        self.build_with(n_in, k, batch_norm, false, rng)
    }

    /// [`UnitSpec::build`]; with `routable`, a unit that can route rows per output is
    /// built in its routable layout (CGC: separate task and shared expert banks).
    pub fn build_with<T: Float>(
        &self,
        n_in: usize,
        k: usize,
        batch_norm: bool,
        routable: bool,
        rng: &mut Rng,
    ) -> Box<dyn Switcher<T>> {
        if let Err(e) = self.validate() {
            panic!("UnitSpec::build: {e}");
        }
        match self {
            UnitSpec::SharedBottom(s) => Box::new(SharedBottom::new(n_in, k, s, batch_norm, rng)),
            UnitSpec::Mmoe(s) => Box::new(Mmoe::new(n_in, k, s, batch_norm, rng)),
            UnitSpec::Cgc(s) if routable => Box::new(Cgc::routable(n_in, k, s, batch_norm, rng)),
            UnitSpec::Cgc(s) => Box::new(Cgc::new(n_in, k, s, batch_norm, rng)),
            UnitSpec::Ple(s) => Box::new(Ple::new(n_in, k, s, batch_norm, rng)),
            UnitSpec::Identity {} => Box::new(Identity::new(n_in, k)),
        }
    }

    /// A lower bound on the unit's parameters on `n_in` inputs: its experts (or layers)
    /// alone, computed without building it (saturating).
    pub(crate) fn min_params(&self, n_in: usize) -> u128 {
        let experts = |te: usize, se: usize, levels: usize, layers: &[usize]| {
            let first = mlp_params(n_in, layers);
            let later = mlp_params(1, layers).saturating_mul(levels.saturating_sub(1) as u128);
            ((te as u128).saturating_add(se as u128)).saturating_mul(first.saturating_add(later))
        };
        match self {
            UnitSpec::SharedBottom(s) => mlp_params(n_in, &s.layers),
            UnitSpec::Mmoe(s) => experts(s.experts, 0, 1, &s.expert_layers),
            UnitSpec::Cgc(s) => experts(s.task_experts, s.shared_experts, 1, &s.expert_layers),
            UnitSpec::Ple(s) => {
                let l = &s.level;
                experts(l.task_experts, l.shared_experts, s.levels, &l.expert_layers)
            }
            UnitSpec::Identity {} => 0,
        }
    }
}

/// Weights and biases of an MLP with these widths on `n_in` inputs (saturating).
pub(crate) fn mlp_params(n_in: usize, widths: &[usize]) -> u128 {
    let mut total = 0u128;
    let mut inp = n_in as u128;
    for &w in widths {
        let w = w as u128;
        total = total.saturating_add(inp.saturating_mul(w).saturating_add(w));
        inp = w;
    }
    total
}
