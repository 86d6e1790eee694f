//! Serialisable description of one switcher ([`UnitSpec`]): one input in, K outputs out.
//! Flat models use one; tree models use one per tree level.

use crate::cgc::Cgc;
use crate::mmoe::Mmoe;
use crate::ple::Ple;
use crate::shared_bottom::SharedBottom;
use crate::spec::{check_widths, GateKind};
use crate::switcher::Switcher;
use mfh_nn::{Float, Rng};
use serde::{Deserialize, Serialize};

/// One switcher; layer lists are widths after the input.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum UnitSpec {
    SharedBottom {
        layers: Vec<usize>,
    },
    Mmoe {
        experts: usize,
        expert_layers: Vec<usize>,
        #[serde(default)]
        gate: GateKind,
        #[serde(default)]
        gate_hidden: Vec<usize>,
    },
    Cgc {
        task_experts: usize,
        shared_experts: usize,
        expert_layers: Vec<usize>,
        #[serde(default)]
        gate: GateKind,
        #[serde(default)]
        gate_hidden: Vec<usize>,
    },
    Ple {
        levels: usize,
        task_experts: usize,
        shared_experts: usize,
        expert_layers: Vec<usize>,
        #[serde(default)]
        gate: GateKind,
        #[serde(default)]
        gate_hidden: Vec<usize>,
    },
}

fn check_task_shared(what: &str, task_experts: usize, shared_experts: usize) -> Result<(), String> {
    if task_experts + shared_experts == 0 {
        return Err(format!(
            "{what} needs at least one expert per output (task_experts and shared_experts are both 0)"
        ));
    }
    Ok(())
}

impl UnitSpec {
    /// Checks the spec on its own (experts, layer widths, levels).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            UnitSpec::SharedBottom { layers } => check_widths("shared_bottom layers", layers, true),
            UnitSpec::Mmoe {
                experts,
                expert_layers,
                gate_hidden,
                ..
            } => {
                if *experts == 0 {
                    return Err("mmoe needs at least one expert".into());
                }
                check_widths("expert_layers", expert_layers, true)?;
                check_widths("gate_hidden", gate_hidden, false)
            }
            UnitSpec::Cgc {
                task_experts,
                shared_experts,
                expert_layers,
                gate_hidden,
                ..
            } => {
                check_task_shared("cgc", *task_experts, *shared_experts)?;
                check_widths("expert_layers", expert_layers, true)?;
                check_widths("gate_hidden", gate_hidden, false)
            }
            UnitSpec::Ple {
                levels,
                task_experts,
                shared_experts,
                expert_layers,
                gate_hidden,
                ..
            } => {
                if *levels == 0 {
                    return Err("ple needs at least one level".into());
                }
                check_task_shared("ple", *task_experts, *shared_experts)?;
                check_widths("expert_layers", expert_layers, true)?;
                check_widths("gate_hidden", gate_hidden, false)
            }
        }
    }

    /// Width of each output for an input of width `n_in` (the last layer's width;
    /// `n_in` only for an empty layer list, which `validate` rejects).
    pub fn out_dim(&self, n_in: usize) -> usize {
        let layers = match self {
            UnitSpec::SharedBottom { layers } => layers,
            UnitSpec::Mmoe { expert_layers, .. }
            | UnitSpec::Cgc { expert_layers, .. }
            | UnitSpec::Ple { expert_layers, .. } => expert_layers,
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
            UnitSpec::SharedBottom { layers } => {
                Box::new(SharedBottom::new(n_in, k, layers, batch_norm, rng))
            }
            UnitSpec::Mmoe {
                experts,
                expert_layers,
                gate,
                gate_hidden,
            } => Box::new(Mmoe::new(
                n_in,
                k,
                *experts,
                expert_layers,
                (*gate).into(),
                gate_hidden,
                batch_norm,
                rng,
            )),
            UnitSpec::Cgc {
                task_experts,
                shared_experts,
                expert_layers,
                gate,
                gate_hidden,
            } => Box::new(Cgc::with_layout(
                n_in,
                &crate::cgc::LevelShape {
                    n_outputs: k,
                    task_experts: *task_experts,
                    shared_experts: *shared_experts,
                    expert_layers,
                    gate: (*gate).into(),
                    gate_hidden,
                    batch_norm,
                },
                routable,
                rng,
            )),
            UnitSpec::Ple {
                levels,
                task_experts,
                shared_experts,
                expert_layers,
                gate,
                gate_hidden,
            } => Box::new(Ple::new(
                n_in,
                k,
                *levels,
                *task_experts,
                *shared_experts,
                expert_layers,
                (*gate).into(),
                gate_hidden,
                batch_norm,
                rng,
            )),
        }
    }
}
