//! Serialisable architecture description ([`ModelSpec`]) and [`build`], which validates
//! it against the data's input width and task count and constructs the network.

use crate::identity::Identity;
use crate::mmoe::Mmoe;
use crate::model::{GridShape, MultiTaskModel};
use crate::net::MultiTaskNet;
use crate::shared_bottom::SharedBottom;
use crate::switcher::Switcher;
use crate::tree::{TreeNet, TreeSpec, Trees};
use crate::unit::UnitSpec;
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
    /// One tower per task straight on the input (an [`Identity`] switcher): no sharing
    /// beyond the input features.
    Single {
        tower: Vec<usize>,
        #[serde(default)]
        batch_norm: bool,
    },
    /// Customized gate control: per-task experts plus shared experts ([`crate::Cgc`]).
    Cgc {
        task_experts: usize,
        shared_experts: usize,
        expert_layers: Vec<usize>,
        #[serde(default)]
        gate: GateKind,
        #[serde(default)]
        gate_hidden: Vec<usize>,
        tower: Vec<usize>,
        #[serde(default)]
        batch_norm: bool,
    },
    /// Progressive layered extraction: `levels` stacked CGC levels ([`crate::Ple`]).
    Ple {
        levels: usize,
        task_experts: usize,
        shared_experts: usize,
        expert_layers: Vec<usize>,
        #[serde(default)]
        gate: GateKind,
        #[serde(default)]
        gate_hidden: Vec<usize>,
        tower: Vec<usize>,
        #[serde(default)]
        batch_norm: bool,
    },
    /// One tree of switchers, split first on one grid dimension ([`TreeNet`]).
    Hmtl(TreeSpec),
    /// Multi-faceted hierarchical: several trees over the grid, leaves fused per task
    /// ([`TreeNet`]).
    Mfh(TreeSpec),
}

pub(crate) fn check_widths(what: &str, widths: &[usize], required: bool) -> Result<(), String> {
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
            // Without a hidden layer each task would be a plain logistic regression.
            ModelSpec::Single { tower, .. } => check_widths("single tower", tower, true),
            ModelSpec::Cgc { tower, .. } | ModelSpec::Ple { tower, .. } => {
                self.unit().map_or(Ok(()), |u| u.validate())?;
                check_widths("tower", tower, false)
            }
            ModelSpec::Hmtl(t) | ModelSpec::Mfh(t) => {
                t.level1.validate().map_err(|e| format!("level1: {e}"))?;
                t.level2.validate().map_err(|e| format!("level2: {e}"))?;
                check_widths("bottom", &t.bottom, false)?;
                check_widths("tower", &t.tower, false)
            }
        }
    }

    /// The switcher of a CGC or PLE spec (the same knobs as a tree level's).
    fn unit(&self) -> Option<UnitSpec> {
        match self.clone() {
            ModelSpec::Cgc {
                task_experts,
                shared_experts,
                expert_layers,
                gate,
                gate_hidden,
                ..
            } => Some(UnitSpec::Cgc {
                task_experts,
                shared_experts,
                expert_layers,
                gate,
                gate_hidden,
            }),
            ModelSpec::Ple {
                levels,
                task_experts,
                shared_experts,
                expert_layers,
                gate,
                gate_hidden,
                ..
            } => Some(UnitSpec::Ple {
                levels,
                task_experts,
                shared_experts,
                expert_layers,
                gate,
                gate_hidden,
            }),
            _ => None,
        }
    }
}

/// Builds any model of the zoo over the grid `shape` for `n_in` input features,
/// initialised deterministically from `seed`.
pub fn build_model<T: Float>(
    spec: &ModelSpec,
    shape: &GridShape,
    n_in: usize,
    seed: u64,
) -> Result<Box<dyn MultiTaskModel<T>>, String> {
    build_model_with_transfers(spec, shape, n_in, seed, &[])
}

/// [`build_model`] with AITM transfers between the towers of behaviour pairs `(a, b)`
/// (a → b, b implies a; behaviour indices into `shape.dims[0]`), one per cell: tower
/// `(b, c)` receives from tower `(a, c)` (see [`crate::Towers`]). Without transfers the
/// model, its parameter names and its initialisation are those of [`build_model`].
pub fn build_model_with_transfers<T: Float>(
    spec: &ModelSpec,
    shape: &GridShape,
    n_in: usize,
    seed: u64,
    transfers: &[(usize, usize)],
) -> Result<Box<dyn MultiTaskModel<T>>, String> {
    match spec {
        ModelSpec::Hmtl(t) => Ok(Box::new(TreeNet::with_transfers(
            t, shape, n_in, true, seed, transfers,
        )?)),
        ModelSpec::Mfh(t) => Ok(Box::new(TreeNet::with_transfers(
            t, shape, n_in, false, seed, transfers,
        )?)),
        flat => {
            let pairs = shape.transfer_tasks(transfers)?;
            Ok(Box::new(build_flat::<T>(
                flat,
                n_in,
                shape.n_tasks(),
                seed,
                &pairs,
            )?))
        }
    }
}

/// Builds a flat network (one switcher over all tasks, one tower per task) for `n_in`
/// input features and `n_tasks` task logits, initialised deterministically from `seed`.
/// Tree models need the grid: see [`build_model`].
pub fn build<T: Float>(
    spec: &ModelSpec,
    n_in: usize,
    n_tasks: usize,
    seed: u64,
) -> Result<MultiTaskNet<T>, String> {
    build_flat(spec, n_in, n_tasks, seed, &[])
}

/// [`build`] with transfers between task pairs `(s, t)` (task indices).
fn build_flat<T: Float>(
    spec: &ModelSpec,
    n_in: usize,
    n_tasks: usize,
    seed: u64,
    transfers: &[(usize, usize)],
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
        ModelSpec::Single { tower, batch_norm } => {
            (Box::new(Identity::new(n_in, n_tasks)), tower, *batch_norm)
        }
        ModelSpec::Cgc {
            tower, batch_norm, ..
        }
        | ModelSpec::Ple {
            tower, batch_norm, ..
        } => {
            let unit = spec.unit().ok_or("not a cgc/ple spec")?;
            let switcher = unit.build(n_in, n_tasks, *batch_norm, &mut rng);
            (switcher, tower, *batch_norm)
        }
        ModelSpec::Hmtl(_) | ModelSpec::Mfh(_) => {
            return Err("tree models are built over the grid's dimensions (build_model)".into())
        }
    };
    MultiTaskNet::with_transfers(switcher, tower, batch_norm, transfers, &mut rng)
}

/// Weights and biases of an MLP with these widths on `n_in` inputs (saturating).
fn mlp_params(n_in: usize, widths: &[usize]) -> u128 {
    let mut total = 0u128;
    let mut inp = n_in as u128;
    for &w in widths {
        let w = w as u128;
        total = total.saturating_add(inp.saturating_mul(w).saturating_add(w));
        inp = w;
    }
    total
}

/// A lower bound on a unit's parameters on `n_in` inputs: its experts (or layers) alone.
fn unit_min_params(unit: &UnitSpec, n_in: usize) -> u128 {
    let experts = |te: usize, se: usize, levels: usize, layers: &[usize]| {
        let first = mlp_params(n_in, layers);
        let later = mlp_params(1, layers).saturating_mul(levels.saturating_sub(1) as u128);
        ((te as u128).saturating_add(se as u128)).saturating_mul(first.saturating_add(later))
    };
    match unit {
        UnitSpec::SharedBottom { layers } => mlp_params(n_in, layers),
        UnitSpec::Mmoe {
            experts: e,
            expert_layers,
            ..
        } => experts(*e, 0, 1, expert_layers),
        UnitSpec::Cgc {
            task_experts,
            shared_experts,
            expert_layers,
            ..
        } => experts(*task_experts, *shared_experts, 1, expert_layers),
        UnitSpec::Ple {
            levels,
            task_experts,
            shared_experts,
            expert_layers,
            ..
        } => experts(*task_experts, *shared_experts, *levels, expert_layers),
    }
}

impl ModelSpec {
    /// A lower bound on the parameters of the model this spec builds over `shape` and
    /// `n_in` inputs, computed without building it: counts only parts that are sure to
    /// exist (experts, bottoms, one tower per task; a tree's levels when every grid
    /// dimension has several values). A loader compares it with the values stored on
    /// disk before building, so that a corrupted width cannot allocate gigabytes.
    pub fn min_params(&self, shape: &GridShape, n_in: usize) -> u128 {
        let n_tasks = shape.n_tasks() as u128;
        let towers = |tower: &[usize]| mlp_params(1, tower).saturating_mul(n_tasks);
        match self {
            ModelSpec::SharedBottom { bottom, tower, .. } => {
                mlp_params(n_in, bottom).saturating_add(towers(tower))
            }
            ModelSpec::Single { tower, .. } => mlp_params(n_in, tower).saturating_mul(n_tasks),
            ModelSpec::Mmoe { tower, .. }
            | ModelSpec::Cgc { tower, .. }
            | ModelSpec::Ple { tower, .. } => {
                let unit = match self.unit() {
                    Some(u) => u,
                    None => match self.clone() {
                        ModelSpec::Mmoe {
                            experts,
                            expert_layers,
                            gate,
                            gate_hidden,
                            ..
                        } => UnitSpec::Mmoe {
                            experts,
                            expert_layers,
                            gate,
                            gate_hidden,
                        },
                        _ => return towers(tower),
                    },
                };
                unit_min_params(&unit, n_in).saturating_add(towers(tower))
            }
            ModelSpec::Hmtl(t) | ModelSpec::Mfh(t) => {
                // Overridden towers may be smaller: count the smallest, once.
                let tower = std::iter::once(&t.tower)
                    .chain(t.tower_overrides.values())
                    .map(|w| mlp_params(1, w))
                    .min()
                    .unwrap_or(0);
                let mut total = mlp_params(n_in, &t.bottom).saturating_add(tower);
                let all_split = shape.dims.iter().all(|(_, values)| values.len() >= 2);
                if all_split {
                    total = total.saturating_add(unit_min_params(&t.level1, 1));
                    let one_dim_tree = match &t.trees {
                        Some(Trees::Orderings(o)) => o.iter().any(|dims| dims.len() < 2),
                        _ => false,
                    };
                    if shape.dims.len() >= 2 && !one_dim_tree {
                        total = total.saturating_add(unit_min_params(&t.level2, 1));
                    }
                }
                total
            }
        }
    }
}
