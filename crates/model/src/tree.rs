//! Trees of switchers over the task grid: H-MTL (one tree, split first on one grid
//! dimension) and MFH (several trees over the same grid, one per first dimension).
//!
//! A tree that splits first on dimension d has two levels: level 1 is one switcher whose
//! outputs are the values of d; level 2, under each value v, is a switcher whose outputs
//! are the combinations of the remaining dimensions. Each task (one value per dimension)
//! thus gets one leaf per tree; its leaves are fused (summed, or concatenated) and fed to
//! its own tower. A level with a single output is dropped (its input passes through).
//!
//! Cell routing: a row needs only its own cell's towers and, in a tree split first on a
//! facet, only its facet value's level-2 subtree. With `routing` on, the rows of each
//! cell (and of each facet value) are gathered, run through only those parts, and
//! scattered back; without batch norm this gives the same loss and gradients as running
//! every part on every row (`routing = false`, kept for fidelity tests). With batch norm,
//! routed parts normalise with the statistics of their own rows (per cell / per value).
//!
//! AITM transfers ([`Towers`]) between the towers of behaviours `a → b` are built per
//! cell: tower `(b, c)` receives from tower `(a, c)`, both run on the same rows.

mod export;

use crate::cgc::CgcShape;
use crate::model::{GridShape, MultiTaskModel};
use crate::shape::check_widths;
use crate::switcher::Switcher;
use crate::towers::Towers;
use crate::unit::{mlp_params, UnitSpec};
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{ensure_len, with_name, Activation, Float, Mlp, Module, Rng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a task's leaves from several trees are combined.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    #[default]
    Sum,
    Concat,
}

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
    /// Compute only each row's own branches (see the module docs).
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

/// One tree: level 1 over the values of `dim`, level 2 per value over the rest.
struct Tree<T: Float> {
    dim: usize,
    level1: Option<Box<dyn Switcher<T>>>,
    level2: Vec<Option<Box<dyn Switcher<T>>>>,
    /// Level 2 runs on its value's rows only (routing, split on a facet).
    gathered: bool,
    /// Per value: the gathered level-2 input and its gradient.
    gin: Vec<Vec<T>>,
    gdin: Vec<Vec<T>>,
    /// Per task: (value of `dim`, output index within that value's level-2 switcher).
    leaf_of_task: Vec<(usize, usize)>,
    /// [value][level-2 output] → the cell whose rows that leaf serves.
    leaf_cell: Vec<Vec<usize>>,
    l1_out: usize,
    /// Last forward: level 1 routed (output v holds the rows `sel1[v]` only) and, per
    /// value, level 2 routed (output k holds the rows of its cell only).
    l1_routed: bool,
    l2_routed: Vec<bool>,
    /// Per value: the rows (global) level 1 computes output v for when routing.
    sel1: Vec<Vec<usize>>,
    /// [value][output]: rows (positions in level 2's input) of each level-2 output.
    sel2: Vec<Vec<Vec<usize>>>,
}

/// Where row r of a task's cell sits in a leaf's output.
#[derive(Clone, Copy)]
enum RowMap {
    /// Compact over the cell's rows: the task's j-th row.
    Cell,
    /// Compact over the rows of one value of dimension d: `pos[d][r]`.
    Value(usize),
    /// Every row: r.
    All,
}

/// H-MTL / MFH network over a task grid; shapes: x n × n_in → logits n × n_tasks.
pub struct TreeNet<T: Float> {
    shape: GridShape,
    n_in: usize,
    bottom: Option<Mlp<T>>,
    trees: Vec<Tree<T>>,
    towers: Towers<T>,
    fusion: Fusion,
    condition: bool,
    routing: bool,
    h_dim: usize,
    leaf_dim: usize,
    z_dim: usize,
    n: usize,
    /// [dim][value] → rows with that value (facet dimensions only).
    groups: Vec<Vec<Vec<usize>>>,
    /// [dim][row] → the row's position within its value's group.
    pos: Vec<Vec<usize>>,
    /// [cell] → rows of the cell; `all_rows` is 0..n for the dense mode.
    cell_rows: Vec<Vec<usize>>,
    all_rows: Vec<usize>,
    z: Vec<Vec<T>>,
    dz: Vec<Vec<T>>,
    dy: Vec<T>,
    logits: Vec<T>,
    dh: Vec<T>,
}

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

    /// The first dimension of each tree.
    fn first_dims(&self, shape: &GridShape, hmtl: bool) -> Result<Vec<usize>, String> {
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
            Trees::Orderings(list) => {
                if list.is_empty() {
                    return Err("trees is an empty list".into());
                }
                let mut firsts = Vec::new();
                for ord in &list {
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
        }
    }
}

impl<T: Float> TreeNet<T> {
    /// Builds the trees (`hmtl`: one tree from `split`) over `shape` for `n_in` inputs.
    pub fn new(
        spec: &TreeSpec,
        shape: &GridShape,
        n_in: usize,
        hmtl: bool,
        seed: u64,
    ) -> Result<Self, String> {
        Self::with_transfers(spec, shape, n_in, hmtl, seed, &[])
    }

    /// [`TreeNet::new`] plus AITM transfers for behaviour pairs `(a, b)` (a → b), in every
    /// cell (see [`GridShape::transfer_tasks`]); the two towers of a pair must end in
    /// hidden layers of the same width.
    pub fn with_transfers(
        spec: &TreeSpec,
        shape: &GridShape,
        n_in: usize,
        hmtl: bool,
        seed: u64,
        transfers: &[(usize, usize)],
    ) -> Result<Self, String> {
        let transfers = shape.transfer_tasks(transfers)?;
        if n_in == 0 {
            return Err("input width is 0".into());
        }
        spec.validate()?;
        let firsts = spec.first_dims(shape, hmtl)?;
        let sizes = shape.sizes();
        let n_tasks = shape.n_tasks();
        let bn = spec.batch_norm;
        let mut rng = Rng::new(seed);
        let bottom = (!spec.bottom.is_empty())
            .then(|| Mlp::new(n_in, &spec.bottom, Activation::Relu, bn, &mut rng));
        let h_dim = bottom.as_ref().map_or(n_in, |b: &Mlp<T>| b.out_dim());
        let mut trees = Vec::new();
        for &d in &firsts {
            let k1 = sizes[d];
            let k2 = n_tasks / k1;
            // Routable layouts whether or not routing is on, so that both modes have the
            // same parameters for the same seed.
            let level1 =
                (k1 > 1).then(|| spec.level1.build_with::<T>(h_dim, k1, bn, true, &mut rng));
            let l1_out = level1.as_ref().map_or(h_dim, |s| s.out_dim());
            let level2: Vec<Option<Box<dyn Switcher<T>>>> = (0..k1)
                .map(|_| {
                    (k2 > 1).then(|| spec.level2.build_with::<T>(l1_out, k2, bn, true, &mut rng))
                })
                .collect();
            let leaf_of_task: Vec<(usize, usize)> = (0..n_tasks)
                .map(|t| {
                    let c = shape.task_coords(t);
                    let k = (0..sizes.len())
                        .filter(|&e| e != d)
                        .fold(0, |acc, e| acc * sizes[e] + c[e]);
                    (c[d], k)
                })
                .collect();
            let mut leaf_cell = vec![vec![0; k2]; k1];
            for (t, &(v, k)) in leaf_of_task.iter().enumerate() {
                leaf_cell[v][k] = t % shape.n_cells();
            }
            trees.push(Tree {
                leaf_cell,
                l1_routed: false,
                l2_routed: vec![false; k1],
                sel1: vec![Vec::new(); k1],
                sel2: vec![vec![Vec::new(); k2]; k1],
                dim: d,
                gathered: spec.routing && d != 0 && k2 > 1,
                gin: vec![Vec::new(); k1],
                gdin: vec![Vec::new(); k1],
                level1,
                level2,
                leaf_of_task,
                l1_out,
            });
        }
        let leaf_dims: Vec<usize> = trees
            .iter()
            .map(|t| t.level2[0].as_ref().map_or(t.l1_out, |s| s.out_dim()))
            .collect();
        let leaf_dim = leaf_dims[0];
        let fused = match spec.fusion {
            Fusion::Sum => {
                if leaf_dims.iter().any(|&w| w != leaf_dim) {
                    return Err(format!(
                        "the trees' leaves have different widths {leaf_dims:?}; sum fusion needs equal widths (use fusion = \"concat\")"
                    ));
                }
                leaf_dim
            }
            Fusion::Concat => leaf_dims.iter().sum(),
        };
        let n_cells = shape.n_cells();
        let z_dim = fused + if spec.condition { n_cells } else { 0 };
        let mut overrides = Vec::new();
        for (key, widths) in &spec.tower_overrides {
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
        let hidden: Vec<Vec<usize>> = (0..n_tasks)
            .map(|t| {
                let c = shape.task_coords(t);
                overrides
                    .iter()
                    .find(|(d, v, _)| c[*d] == *v)
                    .map_or(&spec.tower, |o| &o.2)
                    .clone()
            })
            .collect();
        let towers = Towers::new(
            z_dim,
            &hidden,
            bn,
            &transfers,
            &|t| format!("`{}`", shape.task_name(t)),
            &mut rng,
        )?;
        Ok(TreeNet {
            shape: shape.clone(),
            n_in,
            bottom,
            trees,
            towers,
            fusion: spec.fusion,
            condition: spec.condition,
            routing: spec.routing,
            h_dim,
            leaf_dim,
            z_dim,
            n: 0,
            groups: sizes.iter().map(|&s| vec![Vec::new(); s]).collect(),
            pos: vec![Vec::new(); sizes.len()],
            cell_rows: vec![Vec::new(); n_cells],
            all_rows: Vec::new(),
            z: vec![Vec::new(); n_tasks],
            dz: vec![Vec::new(); n_tasks],
            dy: Vec::new(),
            logits: Vec::new(),
            dh: Vec::new(),
        })
    }

    /// Groups rows by cell and by each facet value (reusing the buffers).
    fn group_rows(&mut self, cells: &[u32], n: usize) {
        let n_cells = self.shape.n_cells();
        self.all_rows.clear();
        self.all_rows.extend(0..n);
        for r in &mut self.cell_rows {
            r.clear();
        }
        for (i, &c) in cells[..n].iter().enumerate() {
            assert!(
                (c as usize) < n_cells,
                "cell {c} out of range (the grid has {n_cells})"
            );
            self.cell_rows[c as usize].push(i);
        }
        for d in 1..self.shape.dims.len() {
            for g in &mut self.groups[d] {
                g.clear();
            }
            self.pos[d].clear();
            for &c in &cells[..n] {
                let v = self.shape.cell_value(c as usize, d);
                self.pos[d].push(self.groups[d][v].len());
                self.groups[d][v].push(self.pos[d].len() - 1);
            }
        }
    }
}

impl<T: Float> MultiTaskModel<T> for TreeNet<T> {
    fn n_in(&self) -> usize {
        self.n_in
    }

    fn n_tasks(&self) -> usize {
        self.towers.n_tasks()
    }

    fn forward(&mut self, x: &[T], cells: &[u32], n: usize, train: bool) -> &[T] {
        assert!(
            x.len() >= n * self.n_in && cells.len() >= n,
            "TreeNet::forward: short input"
        );
        self.n = n;
        self.group_rows(cells, n);
        if let Some(b) = &mut self.bottom {
            b.forward(x, n, train);
        }
        let h: &[T] = self.bottom.as_ref().map_or(x, |b| b.output());
        for tree in &mut self.trees {
            let Tree {
                dim,
                level1,
                level2,
                gathered,
                gin,
                l1_out,
                leaf_cell,
                l1_routed,
                l2_routed,
                sel1,
                sel2,
                ..
            } = tree;
            let d = *dim;
            *l1_routed = false;
            if self.routing {
                for (v, rows) in sel1.iter_mut().enumerate() {
                    rows.clear();
                    if d == 0 {
                        rows.extend(0..n);
                    } else {
                        rows.extend_from_slice(&self.groups[d][v]);
                    }
                }
                if let Some(l1) = level1 {
                    *l1_routed = l1.forward_routed(h, n, sel1, train);
                }
            }
            if let Some(l1) = level1 {
                if !*l1_routed {
                    l1.forward(h, n, train);
                }
            }
            for (v, l2) in level2.iter_mut().enumerate() {
                l2_routed[v] = false;
                let Some(l2) = l2 else { continue };
                // Level 2's input: level 1's output v (compact over sel1[v] when level 1
                // routed), the gathered rows of value v, or every row.
                let compact = *l1_routed || *gathered;
                let m = if compact {
                    sel1_len(sel1, &self.groups, d, v, *l1_routed)
                } else {
                    n
                };
                if compact && m == 0 {
                    continue;
                }
                let input: &[T] = if *l1_routed {
                    level1.as_ref().map_or(h, |l1| l1.output(v))
                } else {
                    let input: &[T] = level1.as_ref().map_or(h, |l1| l1.output(v));
                    if *gathered {
                        let rows = &self.groups[d][v];
                        let buf = ensure_len(&mut gin[v], m * *l1_out);
                        gather(input, *l1_out, rows, buf);
                        &gin[v][..m * *l1_out]
                    } else {
                        input
                    }
                };
                if self.routing {
                    for (k, rows) in sel2[v].iter_mut().enumerate() {
                        rows.clear();
                        let cell = &self.cell_rows[leaf_cell[v][k]];
                        if compact && d != 0 {
                            rows.extend(cell.iter().map(|&r| self.pos[d][r]));
                        } else {
                            rows.extend_from_slice(cell);
                        }
                    }
                    l2_routed[v] = l2.forward_routed(input, m, &sel2[v], train);
                }
                if !l2_routed[v] {
                    l2.forward(input, m, train);
                }
            }
        }
        let n_tasks = self.towers.n_tasks();
        let n_cells = self.shape.n_cells();
        let fused = self.z_dim - if self.condition { n_cells } else { 0 };
        self.logits.clear();
        self.logits.resize(n * n_tasks, T::zero());
        for j in 0..n_tasks {
            let t = self.towers.order()[j];
            let rows: &[usize] = if self.routing {
                &self.cell_rows[t % n_cells]
            } else {
                &self.all_rows
            };
            let m = rows.len();
            if m == 0 {
                continue;
            }
            let z = ensure_len(&mut self.z[t], m * self.z_dim);
            z.fill(T::zero());
            let mut offset = 0;
            for tree in &self.trees {
                let (v, k) = tree.leaf_of_task[t];
                let map = tree.row_map(v);
                let (src, w): (&[T], usize) = match (&tree.level2[v], &tree.level1) {
                    (Some(l2), _) => (l2.output(k), l2.out_dim()),
                    (None, Some(l1)) => (l1.output(v), l1.out_dim()),
                    (None, None) => (h, self.h_dim),
                };
                for (j, &r) in rows.iter().enumerate() {
                    let sr = map.index(j, r, &self.pos);
                    let dst = &mut z[j * self.z_dim + offset..j * self.z_dim + offset + w];
                    for (d, s) in dst.iter_mut().zip(&src[sr * w..(sr + 1) * w]) {
                        *d += *s;
                    }
                }
                if self.fusion == Fusion::Concat {
                    offset += w;
                }
            }
            if self.condition {
                for (j, &r) in rows.iter().enumerate() {
                    z[j * self.z_dim + fused + cells[r] as usize] = T::one();
                }
            }
            let y = self
                .towers
                .forward_task(t, &self.z[t][..m * self.z_dim], m, train);
            for (j, &r) in rows.iter().enumerate() {
                self.logits[r * n_tasks + t] = y[j];
            }
        }
        &self.logits[..n * n_tasks]
    }

    fn backward(
        &mut self,
        x: &[T],
        _cells: &[u32],
        d_logits: &[T],
        dx: Option<&mut [T]>,
        n: usize,
    ) {
        debug_assert_eq!(n, self.n, "TreeNet::backward: batch differs from forward");
        let n_tasks = self.towers.n_tasks();
        assert!(
            d_logits.len() >= n * n_tasks,
            "TreeNet::backward: d_logits too short"
        );
        let dh = ensure_len(&mut self.dh, n * self.h_dim);
        dh.fill(T::zero());
        // Receivers before their transfer sources (see `Towers`).
        for j in (0..n_tasks).rev() {
            let t = self.towers.order()[j];
            let rows: &[usize] = if self.routing {
                &self.cell_rows[t % self.shape.n_cells()]
            } else {
                &self.all_rows
            };
            let m = rows.len();
            if m == 0 {
                continue;
            }
            let dy = ensure_len(&mut self.dy, m);
            for (j, &r) in rows.iter().enumerate() {
                dy[j] = d_logits[r * n_tasks + t];
            }
            let dz = ensure_len(&mut self.dz[t], m * self.z_dim);
            dz.fill(T::zero());
            self.towers
                .backward_task(t, &self.z[t][..m * self.z_dim], dy, dz, m);
            let mut offset = 0;
            for tree in &mut self.trees {
                let (v, k) = tree.leaf_of_task[t];
                let map = tree.row_map(v);
                let (g, w): (&mut [T], usize) = match (&mut tree.level2[v], &mut tree.level1) {
                    (Some(l2), _) => {
                        let w = l2.out_dim();
                        (l2.d_output_mut(k), w)
                    }
                    (None, Some(l1)) => {
                        let w = l1.out_dim();
                        (l1.d_output_mut(v), w)
                    }
                    (None, None) => (&mut self.dh[..], self.h_dim),
                };
                for (j, &r) in rows.iter().enumerate() {
                    let sr = map.index(j, r, &self.pos);
                    let src = &self.dz[t][j * self.z_dim + offset..j * self.z_dim + offset + w];
                    for (d, s) in g[sr * w..(sr + 1) * w].iter_mut().zip(src) {
                        *d += *s;
                    }
                }
                if self.fusion == Fusion::Concat {
                    offset += w;
                }
            }
        }
        let h: &[T] = self.bottom.as_ref().map_or(x, |b| b.output());
        for tree in &mut self.trees {
            let Tree {
                dim,
                level1,
                level2,
                gathered,
                gin,
                gdin,
                l1_out,
                l1_routed,
                l2_routed,
                sel1,
                sel2,
                ..
            } = tree;
            let d = *dim;
            for (v, l2) in level2.iter_mut().enumerate() {
                let Some(l2) = l2 else { continue };
                let compact = *l1_routed || *gathered;
                let m = if compact {
                    sel1_len(sel1, &self.groups, d, v, *l1_routed)
                } else {
                    n
                };
                if compact && m == 0 {
                    continue;
                }
                let routed = l2_routed[v];
                let run = |l2: &mut Box<dyn Switcher<T>>, input: &[T], di: &mut [T]| {
                    if routed {
                        l2.backward_routed(input, m, &sel2[v], Some(di));
                    } else {
                        l2.backward(input, m, Some(di));
                    }
                };
                if *l1_routed {
                    let l1 = level1.as_mut().expect("routed level 1");
                    let (input, d_input) = l1.output_and_grad(v);
                    run(l2, input, d_input);
                } else if *gathered {
                    let g = ensure_len(&mut gdin[v], m * *l1_out);
                    g.fill(T::zero());
                    run(l2, &gin[v][..m * *l1_out], &mut gdin[v][..m * *l1_out]);
                    let target: &mut [T] = match level1 {
                        Some(l1) => l1.d_output_mut(v),
                        None => &mut self.dh[..],
                    };
                    scatter_add(&gdin[v][..m * *l1_out], *l1_out, &self.groups[d][v], target);
                } else {
                    match level1 {
                        Some(l1) => {
                            let (input, d_input) = l1.output_and_grad(v);
                            run(l2, input, d_input);
                        }
                        None => run(l2, h, &mut self.dh[..n * self.h_dim]),
                    }
                }
            }
            if let Some(l1) = level1 {
                if *l1_routed {
                    l1.backward_routed(h, n, sel1, Some(&mut self.dh[..n * self.h_dim]));
                } else {
                    l1.backward(h, n, Some(&mut self.dh[..n * self.h_dim]));
                }
            }
        }
        match (&mut self.bottom, dx) {
            (Some(b), dx) => b.backward(x, &mut self.dh[..n * self.h_dim], dx, n),
            (None, Some(dx)) => {
                for (d, s) in dx[..n * self.n_in]
                    .iter_mut()
                    .zip(&self.dh[..n * self.h_dim])
                {
                    *d += *s;
                }
            }
            (None, None) => {}
        }
    }

    fn export(&self, g: &mut GraphBuilder, x: &str, cell: &str) -> Result<String, String> {
        self.export_graph(g, x, cell)
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        let total: usize = self.bottom.as_ref().map_or(0, |b| b.param_count())
            + self
                .trees
                .iter()
                .map(|t| {
                    t.level1.as_ref().map_or(0, |l| l.param_count())
                        + t.level2
                            .iter()
                            .flatten()
                            .map(|l| l.param_count())
                            .sum::<usize>()
                })
                .sum::<usize>()
            + self.towers.tower_param_count()
            + self.towers.transfer_param_count();
        let kind = if self.trees.len() == 1 {
            "H-MTL"
        } else {
            "MFH"
        };
        s.push_str(&format!(
            "{kind}: {} inputs → {} task logits over {} ({total} params; {}, {:?} fusion{})\n",
            self.n_in,
            self.towers.n_tasks(),
            self.shape
                .dims
                .iter()
                .map(|(d, v)| format!("{d}×{}", v.len()))
                .collect::<Vec<_>>()
                .join(" "),
            if self.routing {
                "cell routing"
            } else {
                "dense"
            },
            self.fusion,
            if self.condition {
                ", cell one-hot into towers"
            } else {
                ""
            }
        ));
        if let Some(b) = &self.bottom {
            s.push_str(&format!(
                "  bottom: {}→{} ({} params)\n",
                self.n_in,
                b.out_dim(),
                b.param_count()
            ));
        }
        for (i, t) in self.trees.iter().enumerate() {
            let (dname, values) = &self.shape.dims[t.dim];
            let p1 = t.level1.as_ref().map_or(0, |l| l.param_count());
            let p2: usize = t.level2.iter().flatten().map(|l| l.param_count()).sum();
            s.push_str(&format!(
                "  tree {i}: split on {dname} ({} params)\n",
                p1 + p2
            ));
            match &t.level1 {
                Some(l1) => {
                    for line in l1.describe() {
                        s.push_str(&format!("    level 1: {line}\n"));
                    }
                }
                None => s.push_str("    level 1: dropped (one value)\n"),
            }
            for (v, l2) in t.level2.iter().enumerate() {
                match l2 {
                    Some(l2) => {
                        let lines = l2.describe();
                        s.push_str(&format!(
                            "    level 2 [{dname}={}]: {}\n",
                            values[v],
                            lines.first().cloned().unwrap_or_default()
                        ));
                        for line in lines.iter().skip(1) {
                            s.push_str(&format!("      {line}\n"));
                        }
                    }
                    None => {
                        s.push_str(&format!(
                            "    level 2 [{dname}={}]: dropped (one output)\n",
                            values[v]
                        ));
                    }
                }
            }
        }
        let tower_params = self.towers.tower_param_count();
        let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
        for t in 0..self.towers.n_tasks() {
            let dims: Vec<String> = self.towers.dims(t).iter().map(|d| d.to_string()).collect();
            *shapes.entry(dims.join("→")).or_default() += 1;
        }
        let shapes: Vec<String> = shapes
            .into_iter()
            .map(|(k, c)| format!("{c} × {k}"))
            .collect();
        s.push_str(&format!(
            "  towers: {} ({tower_params} params)\n",
            shapes.join(", ")
        ));
        let pairs = self.towers.transfers();
        if !pairs.is_empty() {
            let names: Vec<String> = pairs
                .iter()
                .filter(|&&(a, _)| a % self.shape.n_cells() == 0)
                .map(|&(a, b)| {
                    let nc = self.shape.n_cells();
                    let values = &self.shape.dims[0].1;
                    format!("{}→{}", values[a / nc], values[b / nc])
                })
                .collect();
            s.push_str(&format!(
                "  AITM transfers: {} in each of {} cells ({} params)\n",
                names.join(", "),
                self.shape.n_cells(),
                self.towers.transfer_param_count()
            ));
        }
        s
    }
}

impl<T: Float> TreeNet<T> {
    pub fn leaf_dim(&self) -> usize {
        self.leaf_dim
    }
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }
    /// For tests: the (value, output) leaf of task `t` in tree `tree`.
    pub fn leaf_of_task(&self, tree: usize, t: usize) -> (usize, usize) {
        self.trees[tree].leaf_of_task[t]
    }
    /// For tests: the split dimension of each tree.
    pub fn tree_dims(&self) -> Vec<usize> {
        self.trees.iter().map(|t| t.dim).collect()
    }
}

impl<T: Float> Tree<T> {
    /// Where a task's rows sit in the leaf of value v after the last forward.
    fn row_map(&self, v: usize) -> RowMap {
        let compact_in = self.l1_routed || self.gathered;
        match (&self.level2[v], &self.level1) {
            (Some(_), _) if self.l2_routed[v] => RowMap::Cell,
            (Some(_), _) if compact_in && self.dim != 0 => RowMap::Value(self.dim),
            (None, Some(_)) if self.l1_routed && self.dim != 0 => RowMap::Value(self.dim),
            _ => RowMap::All,
        }
    }
}

impl RowMap {
    fn index(self, j: usize, r: usize, pos: &[Vec<usize>]) -> usize {
        match self {
            RowMap::Cell => j,
            RowMap::Value(d) => pos[d][r],
            RowMap::All => r,
        }
    }
}

/// Rows level 2 of value v reads when its input is compact: the routed level-1 rows, or
/// the gathered rows of the value.
fn sel1_len(
    sel1: &[Vec<usize>],
    groups: &[Vec<Vec<usize>>],
    d: usize,
    v: usize,
    l1_routed: bool,
) -> usize {
    if l1_routed {
        sel1[v].len()
    } else {
        groups[d][v].len()
    }
}

fn gather<T: Float>(src: &[T], w: usize, rows: &[usize], dst: &mut [T]) {
    for (j, &r) in rows.iter().enumerate() {
        dst[j * w..(j + 1) * w].copy_from_slice(&src[r * w..(r + 1) * w]);
    }
}

fn scatter_add<T: Float>(src: &[T], w: usize, rows: &[usize], dst: &mut [T]) {
    for (j, &r) in rows.iter().enumerate() {
        for (d, s) in dst[r * w..(r + 1) * w]
            .iter_mut()
            .zip(&src[j * w..(j + 1) * w])
        {
            *d += *s;
        }
    }
}

impl<T: Float> Module<T> for TreeNet<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        if let Some(b) = &mut self.bottom {
            with_name(prefix, format_args!("bottom."), |p| b.visit_params(p, f));
        }
        for (i, tree) in self.trees.iter_mut().enumerate() {
            if let Some(l1) = &mut tree.level1 {
                with_name(prefix, format_args!("trees.{i}.level1."), |p| {
                    l1.visit_params(p, f)
                });
            }
            for (v, l2) in tree.level2.iter_mut().enumerate() {
                if let Some(l2) = l2 {
                    with_name(prefix, format_args!("trees.{i}.level2.{v}."), |p| {
                        l2.visit_params(p, f)
                    });
                }
            }
        }
        self.towers.visit_params(prefix, f);
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        if let Some(b) = &mut self.bottom {
            with_name(prefix, format_args!("bottom."), |p| b.visit_buffers(p, f));
        }
        for (i, tree) in self.trees.iter_mut().enumerate() {
            if let Some(l1) = &mut tree.level1 {
                with_name(prefix, format_args!("trees.{i}.level1."), |p| {
                    l1.visit_buffers(p, f)
                });
            }
            for (v, l2) in tree.level2.iter_mut().enumerate() {
                if let Some(l2) = l2 {
                    with_name(prefix, format_args!("trees.{i}.level2.{v}."), |p| {
                        l2.visit_buffers(p, f)
                    });
                }
            }
        }
        self.towers.visit_buffers(prefix, f);
    }
}
