//! One tree as a switcher: level 1 over the values of the dimension it splits first,
//! under each value a level-2 switcher over the combinations of the other dimensions; its
//! outputs are the grid's tasks, output t task t's leaf. A level with a single output is
//! dropped (its input passes through).
//!
//! Routed by cell ([`Switcher::forward_routed`]): `sel[t]` must be the rows of task t's
//! cell (every task of a cell the same rows). Level 1 then computes output v for the rows
//! with value v only, and level 2 of value v runs on those rows (gathered when level 1
//! does not route), its output k on the rows of its own cell when it routes. Output t is
//! task t's leaf at its cell's rows: the leaf itself when its level routed, else a
//! gathered copy (see `route`).

use super::spec::TreeSpec;
use crate::model::GridShape;
use crate::switcher::Switcher;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{with_name, Float, Module, Rng};

/// The tree switcher; shapes: x n × in_dim → n_tasks × (n × out_dim), or each output on
/// its own cell's rows when routed.
pub(crate) struct Tree<T: Float> {
    pub(super) dim: usize,
    /// The split dimension's name and values (for `describe`).
    dim_name: String,
    values: Vec<String>,
    pub(super) level1: Option<Box<dyn Switcher<T>>>,
    pub(super) level2: Vec<Option<Box<dyn Switcher<T>>>>,
    /// Per task: (value of `dim`, output index within that value's level-2 switcher).
    pub(super) leaf_of_task: Vec<(usize, usize)>,
    /// [value][level-2 output] → the task whose leaf it is.
    pub(super) task_of_leaf: Vec<Vec<usize>>,
    /// Per cell: its value of `dim` (a facet; unused when `dim` is the behaviour).
    pub(super) value_of_cell: Vec<usize>,
    pub(super) in_dim: usize,
    pub(super) l1_out: usize,
    pub(super) out_dim: usize,
    /// Tasks in the order their consumers add output gradients (see [`Tree::set_grad_order`]).
    pub(super) grad_order: Vec<usize>,
    /// How the last forward ran and where its outputs live.
    pub(super) run: super::route::Run<T>,
}

/// Where task t's leaf lives.
#[derive(Clone, Copy, Debug)]
pub(super) enum Leaf {
    /// Output k of value v's level 2.
    Level2(usize, usize),
    /// Output v of level 1 (level 2 dropped).
    Level1(usize),
    /// The tree's input (both levels dropped: a grid of one task).
    Input,
}

impl<T: Float> Tree<T> {
    /// The tree over `shape` splitting first on dimension `dim`, for inputs of width
    /// `in_dim`, with the levels, batch norm and routing of `spec`. Every unit that can
    /// route is built routable, whether or not the model routes, so that both modes have
    /// the same parameters for the same seed.
    pub(crate) fn new(
        spec: &TreeSpec,
        shape: &GridShape,
        dim: usize,
        in_dim: usize,
        rng: &mut Rng,
    ) -> Self {
        let (sizes, n_tasks, bn) = (shape.sizes(), shape.n_tasks(), spec.batch_norm);
        let (k1, k2) = (sizes[dim], n_tasks / sizes[dim]);
        let level1 = (k1 > 1).then(|| spec.level1.build_with::<T>(in_dim, k1, bn, true, rng));
        let l1_out = level1.as_ref().map_or(in_dim, |s| s.out_dim());
        let level2: Vec<Option<Box<dyn Switcher<T>>>> = (0..k1)
            .map(|_| (k2 > 1).then(|| spec.level2.build_with::<T>(l1_out, k2, bn, true, rng)))
            .collect();
        let leaf_of_task: Vec<(usize, usize)> = (0..n_tasks)
            .map(|t| {
                let c = shape.task_coords(t);
                let k = (0..sizes.len())
                    .filter(|&e| e != dim)
                    .fold(0, |acc, e| acc * sizes[e] + c[e]);
                (c[dim], k)
            })
            .collect();
        let mut task_of_leaf = vec![vec![0; k2]; k1];
        for (t, &(v, k)) in leaf_of_task.iter().enumerate() {
            task_of_leaf[v][k] = t;
        }
        let value_of_cell = (0..shape.n_cells())
            .map(|c| {
                if dim == 0 {
                    0
                } else {
                    shape.cell_value(c, dim)
                }
            })
            .collect();
        let out_dim = level2[0].as_ref().map_or(l1_out, |s| s.out_dim());
        let (dim_name, values) = shape.dims[dim].clone();
        Tree {
            run: super::route::Run::new(k1, k2, n_tasks),
            grad_order: (0..n_tasks).rev().collect(),
            dim,
            dim_name,
            values,
            level1,
            level2,
            leaf_of_task,
            task_of_leaf,
            value_of_cell,
            in_dim,
            l1_out,
            out_dim,
        }
    }

    /// The order the consumers of the outputs add their gradients in. Gradients of
    /// outputs that are gathered copies are added into the leaves in this order, so that
    /// sums into leaves backed by one buffer (a shared-bottom level) keep that order.
    pub(crate) fn set_grad_order(&mut self, order: impl IntoIterator<Item = usize>) {
        self.grad_order = order.into_iter().collect();
    }

    /// The split dimension.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// The (value, level-2 output) leaf of task t.
    pub(crate) fn leaf_of_task(&self, t: usize) -> (usize, usize) {
        self.leaf_of_task[t]
    }

    pub(super) fn leaf(&self, t: usize) -> Leaf {
        let (v, k) = self.leaf_of_task[t];
        match (&self.level2[v], &self.level1) {
            (Some(_), _) => Leaf::Level2(v, k),
            (None, Some(_)) => Leaf::Level1(v),
            (None, None) => Leaf::Input,
        }
    }
}

impl<T: Float> Switcher<T> for Tree<T> {
    fn in_dim(&self) -> usize {
        self.in_dim
    }

    fn n_outputs(&self) -> usize {
        self.leaf_of_task.len()
    }

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn forward(&mut self, x: &[T], n: usize, train: bool) {
        self.forward_dense(x, n, train);
    }

    fn output(&self, t: usize) -> &[T] {
        match self.run.copy_of(t) {
            Some(len) => &self.run.out[t][..len],
            None => match self.leaf(t) {
                Leaf::Level2(v, k) => self.level2[v].as_ref().expect("level 2").output(k),
                Leaf::Level1(v) => self.level1.as_ref().expect("level 1").output(v),
                Leaf::Input => unreachable!("an input leaf is always copied"),
            },
        }
    }

    fn d_output_mut(&mut self, t: usize) -> &mut [T] {
        self.output_and_grad(t).1
    }

    fn output_and_grad(&mut self, t: usize) -> (&[T], &mut [T]) {
        if let Some(len) = self.run.copy_of(t) {
            return (&self.run.out[t][..len], &mut self.run.d_out[t][..len]);
        }
        match self.leaf(t) {
            Leaf::Level2(v, k) => self.level2[v].as_mut().expect("level 2").output_and_grad(k),
            Leaf::Level1(v) => self.level1.as_mut().expect("level 1").output_and_grad(v),
            Leaf::Input => unreachable!("an input leaf is always copied"),
        }
    }

    fn backward(&mut self, x: &[T], n: usize, dx: Option<&mut [T]>) {
        self.backward_dense(x, n, dx);
    }

    fn forward_routed(&mut self, x: &[T], n: usize, sel: &[Vec<usize>], train: bool) -> bool {
        self.forward_cells(x, n, sel, train);
        true
    }

    fn backward_routed(&mut self, x: &[T], n: usize, sel: &[Vec<usize>], dx: Option<&mut [T]>) {
        self.backward_cells(x, n, sel, dx);
    }

    fn param_count(&self) -> usize {
        let p1 = self.level1.as_ref().map_or(0, |l| l.param_count());
        let p2: usize = self.level2.iter().flatten().map(|l| l.param_count()).sum();
        p1 + p2
    }

    /// `split on D (… params)`, then each level: its first line after `level 1: ` or
    /// `level 2 [D=v]: `, its other lines below it.
    fn describe(&self) -> Vec<String> {
        let (dname, p) = (&self.dim_name, self.param_count());
        let mut lines = vec![format!("split on {dname} ({p} params)")];
        let mut level = |head: String, unit: Option<&dyn Switcher<T>>, dropped: &str| {
            let Some(unit) = unit else {
                lines.push(format!("  {head}: dropped ({dropped})"));
                return;
            };
            let parts = unit.describe();
            let first = parts.first().cloned().unwrap_or_default();
            lines.push(format!("  {head}: {first}"));
            lines.extend(parts.iter().skip(1).map(|l| format!("    {l}")));
        };
        level("level 1".into(), self.level1.as_deref(), "one value");
        for (v, l2) in self.level2.iter().enumerate() {
            let head = format!("level 2 [{dname}={}]", self.values[v]);
            level(head, l2.as_deref(), "one output");
        }
        lines
    }

    /// Every level on every row; output t is task t's leaf.
    fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<Vec<String>, String> {
        let l1 = match &self.level1 {
            Some(s) => g.scoped("level1", |g| s.export(g, x))?,
            None => vec![x.to_string(); self.level2.len()],
        };
        let per_value = self
            .level2
            .iter()
            .enumerate()
            .map(|(v, l2)| match l2 {
                Some(s) => g.scoped(&format!("level2.{v}"), |g| s.export(g, &l1[v])),
                None => Ok(vec![l1[v].clone()]),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((0..self.n_outputs())
            .map(|t| {
                let (v, k) = self.leaf_of_task[t];
                let at = if self.level2[v].is_some() { k } else { 0 };
                per_value[v][at].clone()
            })
            .collect())
    }
}

impl<T: Float> Module<T> for Tree<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        if let Some(l1) = &mut self.level1 {
            with_name(prefix, format_args!("level1."), |p| l1.visit_params(p, f));
        }
        for (v, l2) in self.level2.iter_mut().enumerate() {
            if let Some(l2) = l2 {
                with_name(prefix, format_args!("level2.{v}."), |p| {
                    l2.visit_params(p, f)
                });
            }
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        if let Some(l1) = &mut self.level1 {
            with_name(prefix, format_args!("level1."), |p| l1.visit_buffers(p, f));
        }
        for (v, l2) in self.level2.iter_mut().enumerate() {
            if let Some(l2) = l2 {
                with_name(prefix, format_args!("level2.{v}."), |p| {
                    l2.visit_buffers(p, f)
                });
            }
        }
    }
}
