//! A tree model's serialisable architecture ([`TreeSpec`], `type = "mfh"` or
//! `type = "hmtl"`) and what it resolves to over a grid: the dimension each tree splits
//! first, each task's tower widths, a lower bound on the parameters.

use crate::cgc::CgcShape;
use crate::fusion::Fusion;
use crate::model::GridShape;
use crate::shape::check_widths;
use crate::unit::{mlp_params, UnitSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which trees MFH builds: `"auto"` (one per grid dimension, behaviour included) or a list
/// of dimension orderings (each tree splits first on its ordering's first dimension).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Trees {
    Named(String),
    Orderings(Vec<Vec<String>>),
}

impl Default for Trees {
    fn default() -> Self {
        Trees::Named("auto".into())
    }
}

/// A tree model's architecture (`type = "mfh"` or `type = "hmtl"`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TreeSpec {
    /// MFH only: the trees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<Trees>,
    /// H-MTL only: the dimension split first (`behaviour` or a facet name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    #[serde(default = "default_level1")]
    pub level1: UnitSpec,
    #[serde(default = "default_level2")]
    pub level2: UnitSpec,
    /// Optional shared bottom MLP before the trees.
    #[serde(default)]
    pub bottom: Vec<usize>,
    #[serde(default)]
    pub fusion: Fusion,
    /// Append the row's cell as a one-hot vector to every tower's input.
    #[serde(default)]
    pub condition: bool,
    /// Hidden widths of each task tower.
    pub tower: Vec<usize>,
    /// Tower widths for the tasks of one dimension value, e.g. `{ "user=new" = [128, 64] }`
    /// (`behaviour=like` works too); the first matching key in name order wins.
    #[serde(default)]
    pub tower_overrides: BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    pub batch_norm: bool,
    /// Compute only each row's own branches (see [`crate::tree`]).
    #[serde(default = "yes")]
    pub routing: bool,
}

fn yes() -> bool {
    true
}

fn cgc_level(expert_layers: Vec<usize>) -> UnitSpec {
    UnitSpec::Cgc(CgcShape {
        task_experts: 2,
        shared_experts: 2,
        expert_layers,
        gate: Default::default(),
        gate_hidden: Vec::new(),
    })
}

fn default_level1() -> UnitSpec {
    cgc_level(vec![256, 128])
}

fn default_level2() -> UnitSpec {
    cgc_level(vec![128])
}

/// The grid dimensions these names name.
fn dims_of(shape: &GridShape, names: &[String]) -> Result<Vec<usize>, String> {
    names
        .iter()
        .map(|n| {
            shape.dim_index(n).ok_or_else(|| {
                let known: Vec<&str> = shape.dims.iter().map(|(d, _)| d.as_str()).collect();
                format!(
                    "no grid dimension `{n}` (the grid has: {})",
                    known.join(", ")
                )
            })
        })
        .collect()
}

impl TreeSpec {
    /// Checks the spec on its own (the levels' units, layer widths).
    pub fn validate(&self) -> Result<(), String> {
        self.level1.validate().map_err(|e| format!("level1: {e}"))?;
        self.level2.validate().map_err(|e| format!("level2: {e}"))?;
        check_widths("bottom", &self.bottom, false)?;
        check_widths("tower", &self.tower, false)
    }

    /// The first dimension of each tree (`hmtl`: the one tree split on `split`).
    pub(crate) fn first_dims(&self, shape: &GridShape, hmtl: bool) -> Result<Vec<usize>, String> {
        if hmtl {
            if self.trees.is_some() {
                return Err("hmtl takes `split` (one dimension), not `trees`".into());
            }
            let split = self
                .split
                .as_ref()
                .ok_or("hmtl needs `split`: the dimension its tree splits first")?;
            return dims_of(shape, std::slice::from_ref(split));
        }
        if self.split.is_some() {
            return Err("mfh takes `trees`, not `split` (use type = \"hmtl\" for one tree)".into());
        }
        match self.trees.clone().unwrap_or_default() {
            Trees::Named(s) if s == "auto" => Ok((0..shape.dims.len()).collect()),
            Trees::Named(s) => Err(format!(
                "trees = \"{s}\": expected \"auto\" or a list of dimension orderings"
            )),
            Trees::Orderings(list) => orderings_first_dims(shape, &list),
        }
    }

    /// Each task's tower widths: `tower`, or the first override naming one of the task's
    /// dimension values.
    pub(crate) fn tower_widths(&self, shape: &GridShape) -> Result<Vec<Vec<usize>>, String> {
        let mut overrides = Vec::new();
        for (key, widths) in &self.tower_overrides {
            check_widths(&format!("tower_overrides.\"{key}\""), widths, false)?;
            let (dname, vname) = key.split_once('=').ok_or_else(|| {
                format!("tower_overrides key `{key}`: expected `dimension=value`")
            })?;
            let d = dims_of(shape, &[dname.to_string()])?[0];
            let v = shape.dims[d]
                .1
                .iter()
                .position(|x| x == vname)
                .ok_or_else(|| {
                    format!("tower_overrides key `{key}`: `{vname}` is not a value of `{dname}`")
                })?;
            overrides.push((d, v, widths.clone()));
        }
        Ok((0..shape.n_tasks())
            .map(|t| {
                let c = shape.task_coords(t);
                overrides
                    .iter()
                    .find(|(d, v, _)| c[*d] == *v)
                    .map_or(&self.tower, |o| &o.2)
                    .clone()
            })
            .collect())
    }

    /// See [`crate::ModelSpec::min_params`].
    pub(crate) fn min_params(&self, shape: &GridShape, n_in: usize) -> u128 {
        // Overridden towers may be smaller: count the smallest, once.
        let tower = std::iter::once(&self.tower)
            .chain(self.tower_overrides.values())
            .map(|w| mlp_params(1, w))
            .min()
            .unwrap_or(0);
        let mut total = mlp_params(n_in, &self.bottom).saturating_add(tower);
        let all_split = shape.dims.iter().all(|(_, values)| values.len() >= 2);
        if all_split {
            total = total.saturating_add(self.level1.min_params(1));
            let one_dim_tree = match &self.trees {
                Some(Trees::Orderings(o)) => o.iter().any(|dims| dims.len() < 2),
                _ => false,
            };
            if shape.dims.len() >= 2 && !one_dim_tree {
                total = total.saturating_add(self.level2.min_params(1));
            }
        }
        total
    }
}

/// The first dimension of each tree of an explicit list of orderings, each of which must
/// name every grid dimension once, no two starting alike.
fn orderings_first_dims(shape: &GridShape, list: &[Vec<String>]) -> Result<Vec<usize>, String> {
    if list.is_empty() {
        return Err("trees is an empty list".into());
    }
    let mut firsts = Vec::new();
    for ord in list {
        let d = dims_of(shape, ord)?;
        let mut sorted = d.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != d.len() || d.len() != shape.dims.len() {
            return Err(format!(
                "tree ordering {ord:?} must name every grid dimension once"
            ));
        }
        if firsts.contains(&d[0]) {
            return Err(format!("two trees split first on `{}`", ord[0]));
        }
        firsts.push(d[0]);
    }
    Ok(firsts)
}
