//! Serialisable architecture description ([`ModelSpec`]) and [`build`], which validates
//! it against the data's input width and task count and constructs the network.

use crate::mmoe::Mmoe;
use crate::net::MultiTaskNet;
use crate::shared_bottom::SharedBottom;
use crate::switcher::Switcher;
use mfh_nn::{Float, GateActivation, Rng};
use serde::{Deserialize, Serialize};

/// How an MMoE gate turns logits into expert weights.
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

/// Architecture of a multi-task network; layer lists are widths after the input.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    SharedBottom {
        bottom: Vec<usize>,
        tower: Vec<usize>,
        #[serde(default)]
        batch_norm: bool,
    },
    Mmoe {
        experts: usize,
        expert_layers: Vec<usize>,
        #[serde(default)]
        gate: GateKind,
        #[serde(default)]
        gate_hidden: Vec<usize>,
        tower: Vec<usize>,
        #[serde(default)]
        batch_norm: bool,
    },
}

fn check_widths(what: &str, widths: &[usize], required: bool) -> Result<(), String> {
    if required && widths.is_empty() {
        return Err(format!("{what} needs at least one layer"));
    }
    if let Some(i) = widths.iter().position(|&w| w == 0) {
        return Err(format!("{what} layer {i} has width 0"));
    }
    Ok(())
}

impl ModelSpec {
    /// Checks the spec on its own (no zero-width layers, at least one expert, ...).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ModelSpec::SharedBottom { bottom, tower, .. } => {
                check_widths("bottom", bottom, true)?;
                check_widths("tower", tower, false)
            }
            ModelSpec::Mmoe {
                experts,
                expert_layers,
                gate_hidden,
                tower,
                ..
            } => {
                if *experts == 0 {
                    return Err("mmoe needs at least one expert".into());
                }
                check_widths("expert_layers", expert_layers, true)?;
                check_widths("gate_hidden", gate_hidden, false)?;
                check_widths("tower", tower, false)
            }
        }
    }
}

/// Builds the network for `n_in` input features and `n_tasks` task logits, initialised
/// deterministically from `seed`.
pub fn build<T: Float>(
    spec: &ModelSpec,
    n_in: usize,
    n_tasks: usize,
    seed: u64,
) -> Result<MultiTaskNet<T>, String> {
    if n_in == 0 {
        return Err("input width is 0".into());
    }
    if n_tasks == 0 {
        return Err("no tasks".into());
    }
    spec.validate()?;
    let mut rng = Rng::new(seed);
    let (switcher, tower, batch_norm): (Box<dyn Switcher<T>>, &[usize], bool) = match spec {
        ModelSpec::SharedBottom {
            bottom,
            tower,
            batch_norm,
        } => (
            Box::new(SharedBottom::new(
                n_in,
                n_tasks,
                bottom,
                *batch_norm,
                &mut rng,
            )),
            tower,
            *batch_norm,
        ),
        ModelSpec::Mmoe {
            experts,
            expert_layers,
            gate,
            gate_hidden,
            tower,
            batch_norm,
        } => (
            Box::new(Mmoe::new(
                n_in,
                n_tasks,
                *experts,
                expert_layers,
                (*gate).into(),
                gate_hidden,
                *batch_norm,
                &mut rng,
            )),
            tower,
            *batch_norm,
        ),
    };
    Ok(MultiTaskNet::new(switcher, tower, batch_norm, &mut rng))
}
