//! Trees of switchers over the task grid: H-MTL (one tree, split first on one grid
//! dimension) and MFH (several trees over the same grid, one per first dimension).
//!
//! A tree (`switcher`, its passes in `route`) is itself a switcher: level 1 over the
//! values of the dimension it splits first, under each value v a level-2 switcher over
//! the combinations of the other dimensions, one output (leaf) per task. [`TreeNet`] runs
//! an optional shared bottom, then every tree, then per task fuses its leaves
//! ([`crate::fusion`], with the optional cell one-hot) and feeds them to its own tower
//! ([`Towers`]). The spec and what it resolves to over a grid are in `spec`.
//!
//! Cell routing: a row needs only its own cell's towers and, in a tree split first on a
//! facet, only its facet value's level-2 subtree. With `routing` on, each tree is routed
//! by the rows of each task's cell ([`Switcher::forward_routed`]) and each tower runs on
//! its cell's rows only; without batch norm this gives the same loss and gradients as
//! running every part on every row (`routing = false`, kept for fidelity tests). With
//! batch norm, routed parts normalise with the statistics of their own rows (per cell /
//! per value).
//!
//! AITM transfers ([`Towers`]) between the towers of behaviours `a → b` are built per
//! cell: tower `(b, c)` receives from tower `(a, c)`, both run on the same rows.
//!
//! Not here: the units of the levels (`cgc`, `mmoe`, …, built from a [`crate::UnitSpec`]),
//! the fusion and the towers (modules of their own), the flat models ([`crate::net`]).

mod describe;
mod export;
mod route;
mod spec;
mod switcher;

pub use spec::{TreeSpec, Trees};

use crate::fusion::Fuse;
use crate::model::{GridShape, MultiTaskModel};
use crate::switcher::Switcher;
use crate::towers::Towers;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{ensure_len, with_name, Activation, Float, Mlp, Module, Rng};
use switcher::Tree;

/// H-MTL / MFH network over a task grid; shapes: x n × n_in → logits n × n_tasks.
pub struct TreeNet<T: Float> {
    shape: GridShape,
    n_in: usize,
    bottom: Option<Mlp<T>>,
    trees: Vec<Tree<T>>,
    fuse: Fuse,
    towers: Towers<T>,
    routing: bool,
    h_dim: usize,
    n: usize,
    /// [task] → the rows of its cell (the first n_cells tasks are one per cell; the
    /// others are copies when routing), what the trees are routed by and the towers run
    /// on; `all_rows` is 0..n for the dense mode.
    task_rows: Vec<Vec<usize>>,
    all_rows: Vec<usize>,
    z: Vec<Vec<T>>,
    dz: Vec<Vec<T>>,
    dy: Vec<T>,
    logits: Vec<T>,
    dh: Vec<T>,
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
        let bn = spec.batch_norm;
        let mut rng = Rng::new(seed);
        let bottom = (!spec.bottom.is_empty())
            .then(|| Mlp::new(n_in, &spec.bottom, Activation::Relu, bn, &mut rng));
        let h_dim = bottom.as_ref().map_or(n_in, |b: &Mlp<T>| b.out_dim());
        let mut trees: Vec<Tree<T>> = firsts
            .iter()
            .map(|&d| Tree::new(spec, shape, d, h_dim, &mut rng))
            .collect();
        let leaf_dims: Vec<usize> = trees.iter().map(|t| t.out_dim()).collect();
        let fuse = Fuse::new(spec.fusion, &leaf_dims, spec.condition, shape.n_cells())?;
        let hidden = spec.tower_widths(shape)?;
        let name = |t| format!("`{}`", shape.task_name(t));
        let towers = Towers::new(fuse.z_dim(), &hidden, bn, &transfers, &name, &mut rng)?;
        // The towers hand their gradients down in the reverse of their forward order.
        for tree in &mut trees {
            tree.set_grad_order(towers.order().iter().rev().copied());
        }
        let n_tasks = shape.n_tasks();
        Ok(TreeNet {
            shape: shape.clone(),
            n_in,
            bottom,
            trees,
            fuse,
            towers,
            routing: spec.routing,
            h_dim,
            n: 0,
            task_rows: vec![Vec::new(); n_tasks],
            all_rows: Vec::new(),
            z: vec![Vec::new(); n_tasks],
            dz: vec![Vec::new(); n_tasks],
            dy: Vec::new(),
            logits: Vec::new(),
            dh: Vec::new(),
        })
    }

    /// Groups rows by cell (reusing the buffers): task c < n_cells gets cell c's rows,
    /// and when routing every other task its cell's.
    fn group_rows(&mut self, cells: &[u32], n: usize) {
        let n_cells = self.shape.n_cells();
        self.all_rows.clear();
        self.all_rows.extend(0..n);
        for r in &mut self.task_rows[..n_cells] {
            r.clear();
        }
        for (i, &c) in cells[..n].iter().enumerate() {
            assert!(
                (c as usize) < n_cells,
                "cell {c} out of range (the grid has {n_cells})"
            );
            self.task_rows[c as usize].push(i);
        }
        if self.routing {
            for t in n_cells..self.task_rows.len() {
                let (cell_rows, rest) = self.task_rows.split_at_mut(t);
                rest[0].clear();
                rest[0].extend_from_slice(&cell_rows[t % n_cells]);
            }
        }
    }

    pub fn leaf_dim(&self) -> usize {
        self.trees[0].out_dim()
    }
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }
    /// For tests: the (value, output) leaf of task `t` in tree `tree`.
    pub fn leaf_of_task(&self, tree: usize, t: usize) -> (usize, usize) {
        self.trees[tree].leaf_of_task(t)
    }
    /// For tests: the split dimension of each tree.
    pub fn tree_dims(&self) -> Vec<usize> {
        self.trees.iter().map(|t| t.dim()).collect()
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
            if self.routing {
                let routed = tree.forward_routed(h, n, &self.task_rows, train);
                debug_assert!(routed, "a tree always routes");
            } else {
                tree.forward(h, n, train);
            }
        }
        let (n_tasks, zd) = (self.towers.n_tasks(), self.fuse.z_dim());
        self.logits.clear();
        self.logits.resize(n * n_tasks, T::zero());
        for j in 0..n_tasks {
            let t = self.towers.order()[j];
            let rows: &[usize] = if self.routing {
                &self.task_rows[t]
            } else {
                &self.all_rows
            };
            let m = rows.len();
            if m == 0 {
                continue;
            }
            let z = ensure_len(&mut self.z[t], m * zd);
            let leaves = self.trees.iter().map(|tree| tree.output(t));
            self.fuse
                .forward(leaves, rows.iter().map(|&r| cells[r]), m, z);
            let y = self.towers.forward_task(t, &self.z[t][..m * zd], m, train);
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
        let (n_tasks, zd) = (self.towers.n_tasks(), self.fuse.z_dim());
        assert!(
            d_logits.len() >= n * n_tasks,
            "TreeNet::backward: d_logits too short"
        );
        ensure_len(&mut self.dh, n * self.h_dim).fill(T::zero());
        // Receivers before their transfer sources (see `Towers`).
        for j in (0..n_tasks).rev() {
            let t = self.towers.order()[j];
            let rows: &[usize] = if self.routing {
                &self.task_rows[t]
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
            let dz = ensure_len(&mut self.dz[t], m * zd);
            dz.fill(T::zero());
            self.towers
                .backward_task(t, &self.z[t][..m * zd], dy, dz, m);
            for (i, tree) in self.trees.iter_mut().enumerate() {
                self.fuse.backward(i, &self.dz[t], m, tree.d_output_mut(t));
            }
        }
        let h: &[T] = self.bottom.as_ref().map_or(x, |b| b.output());
        for tree in &mut self.trees {
            let dh = Some(&mut self.dh[..n * self.h_dim]);
            if self.routing {
                tree.backward_routed(h, n, &self.task_rows, dh);
            } else {
                tree.backward(h, n, dh);
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
        self.describe_text()
    }
}

impl<T: Float> Module<T> for TreeNet<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        if let Some(b) = &mut self.bottom {
            with_name(prefix, format_args!("bottom."), |p| b.visit_params(p, f));
        }
        for (i, tree) in self.trees.iter_mut().enumerate() {
            with_name(prefix, format_args!("trees.{i}."), |p| {
                tree.visit_params(p, f)
            });
        }
        self.towers.visit_params(prefix, f);
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        if let Some(b) = &mut self.bottom {
            with_name(prefix, format_args!("bottom."), |p| b.visit_buffers(p, f));
        }
        for (i, tree) in self.trees.iter_mut().enumerate() {
            with_name(prefix, format_args!("trees.{i}."), |p| {
                tree.visit_buffers(p, f)
            });
        }
        self.towers.visit_buffers(prefix, f);
    }
}
