//! What the units' shapes share: the kind of their gates, the check of their layer
//! widths, and the input's column blocks a spec binds to. Each unit's shape (`MmoeShape`,
//! `CgcShape`, …) sits beside the unit.

use mfh_nn::GateActivation;
use serde::{Deserialize, Serialize};

/// How an MMoE or CGC gate turns logits into expert weights.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    #[default]
    Softmax,
    /// Elementwise sigmoid divided by the number of experts.
    SigmoidOverN,
}

impl From<GateKind> for GateActivation {
    fn from(k: GateKind) -> Self {
        match k {
            GateKind::Softmax => GateActivation::Softmax,
            GateKind::SigmoidOverN => GateActivation::SigmoidOverN,
        }
    }
}

impl From<GateActivation> for GateKind {
    fn from(a: GateActivation) -> Self {
        match a {
            GateActivation::Softmax => GateKind::Softmax,
            GateActivation::SigmoidOverN => GateKind::SigmoidOverN,
        }
    }
}

/// Refuses a layer of width 0 and, when `required`, an empty list; `what` names the list.
pub(crate) fn check_widths(what: &str, widths: &[usize], required: bool) -> Result<(), String> {
    if required && widths.is_empty() {
        return Err(format!("{what} needs at least one layer"));
    }
    if let Some(i) = widths.iter().position(|&w| w == 0) {
        return Err(format!("{what} layer {i} has width 0"));
    }
    Ok(())
}

/// One input column block of the network, which [`crate::ModelSpec::bind`] resolves what a spec
/// names against (PEPNet's priors, STEM's blocks): a feature's name, first column and
/// width.
#[derive(Clone, Debug, PartialEq)]
pub struct InputField {
    pub name: String,
    pub offset: usize,
    pub width: usize,
}
