//! What the trainer sees of any model: [`MultiTaskModel`] (input rows and their cells in,
//! one logit per task out), and [`GridShape`], the task grid's dimensions as the models
//! need them (the behaviour dimension first, then the facets).

use crate::net::MultiTaskNet;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{Float, Module};

/// The task grid's dimensions: `dims[0]` is the behaviour dimension, the rest are facets.
/// A task is one value per dimension, indexed mixed-radix with the first dimension most
/// significant, so task = behaviour · n_cells + cell.
#[derive(Debug, Clone, PartialEq)]
pub struct GridShape {
    pub dims: Vec<(String, Vec<String>)>,
}

impl GridShape {
    /// Behaviours only (no facets): one cell.
    pub fn flat(n_behaviours: usize) -> GridShape {
        GridShape {
            dims: vec![(
                "behaviour".into(),
                (0..n_behaviours).map(|b| format!("b{b}")).collect(),
            )],
        }
    }

    pub fn sizes(&self) -> Vec<usize> {
        self.dims.iter().map(|(_, v)| v.len()).collect()
    }

    pub fn n_tasks(&self) -> usize {
        self.sizes().iter().product()
    }

    pub fn n_cells(&self) -> usize {
        self.sizes()[1..].iter().product()
    }

    /// One value index per dimension of task `t`.
    pub fn task_coords(&self, mut t: usize) -> Vec<usize> {
        let sizes = self.sizes();
        let mut c = vec![0; sizes.len()];
        for d in (0..sizes.len()).rev() {
            c[d] = t % sizes[d];
            t /= sizes[d];
        }
        c
    }

    pub fn task_index(&self, coords: &[usize]) -> usize {
        self.sizes()
            .iter()
            .zip(coords)
            .fold(0, |acc, (s, c)| acc * s + c)
    }

    /// Value of facet dimension `d` (≥ 1) in cell `cell`.
    pub fn cell_value(&self, cell: usize, d: usize) -> usize {
        let sizes = self.sizes();
        let below: usize = sizes[d + 1..].iter().product();
        (cell / below) % sizes[d]
    }

    pub fn dim_index(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|(n, _)| n == name)
    }

    /// The task pairs of AITM transfers between behaviours: `(a, b)` (a → b, b implies a)
    /// becomes `(a·n_cells + c, b·n_cells + c)` for every cell c. Checks that behaviours
    /// are in range and distinct, that each `b` has one `a`, and that there is no cycle.
    pub fn transfer_tasks(&self, pairs: &[(usize, usize)]) -> Result<Vec<(usize, usize)>, String> {
        let values = &self.dims[0].1;
        let nb = values.len();
        let mut src: Vec<Option<usize>> = vec![None; nb];
        for &(a, b) in pairs {
            if a >= nb || b >= nb {
                return Err(format!("transfer ({a}, {b}): only {nb} behaviours"));
            }
            if a == b {
                return Err(format!("transfer from `{}` into itself", values[a]));
            }
            if let Some(p) = src[b] {
                return Err(format!(
                    "`{}` receives two transfers (from `{}` and `{}`)",
                    values[b], values[p], values[a]
                ));
            }
            src[b] = Some(a);
        }
        for (start, name) in values.iter().enumerate() {
            let mut k = start;
            for _ in 0..nb {
                match src[k] {
                    Some(p) if p == start => {
                        return Err(format!("transfers form a cycle through `{name}`"))
                    }
                    Some(p) => k = p,
                    None => break,
                }
            }
        }
        let nc = self.n_cells();
        Ok(pairs
            .iter()
            .flat_map(|&(a, b)| (0..nc).map(move |c| (a * nc + c, b * nc + c)))
            .collect())
    }

    /// `behaviour[user=new,item=tail]`-style task name.
    pub fn task_name(&self, t: usize) -> String {
        let c = self.task_coords(t);
        let facets: Vec<String> = (1..self.dims.len())
            .map(|d| format!("{}={}", self.dims[d].0, self.dims[d].1[c[d]]))
            .collect();
        format!("{}[{}]", self.dims[0].1[c[0]], facets.join(","))
    }
}

/// A multi-task network over a task grid.
///
/// `forward` gets each row's cell (`cells[i] < n_cells`) so that a model may compute only
/// what a row needs (its cell's towers, its facet value's subtrees); logits of tasks
/// outside a row's cell are then 0 and their gradients are ignored.
pub trait MultiTaskModel<T: Float>: Module<T> + Send + Sync {
    fn n_in(&self) -> usize;
    fn n_tasks(&self) -> usize;
    /// Logits n × n_tasks for `n` rows of `x` (n × n_in).
    fn forward(&mut self, x: &[T], cells: &[u32], n: usize, train: bool) -> &[T];
    /// Backward from `d_logits` (n × n_tasks) for the last forward; parameter gradients
    /// and `dx` (n × n_in) accumulate.
    fn backward(&mut self, x: &[T], cells: &[u32], d_logits: &[T], dx: Option<&mut [T]>, n: usize);
    /// A text tree of the model's parts with parameter counts.
    fn describe(&self) -> String;
    /// Whether eval passes run each tower on its own cell's rows only (the default where
    /// a model can; see [`MultiTaskNet::forward_cells`]); off, every tower runs on every
    /// row. Benchmarks compare the two; tree models route by their own `routing`.
    fn set_cell_towers(&mut self, _on: bool) {}
    /// Adds the eval-mode forward with every task on every row to `g` (see
    /// [`crate::export`]), from the input `x` (n × n_in) and each row's cell `cell`
    /// (int64, n); returns the name of the logits tensor (n × n_tasks). The default
    /// refuses.
    fn export(&self, _g: &mut GraphBuilder, _x: &str, _cell: &str) -> Result<String, String> {
        Err("graph export is not implemented for this model".into())
    }
}

impl<T: Float> MultiTaskModel<T> for MultiTaskNet<T> {
    fn n_in(&self) -> usize {
        MultiTaskNet::n_in(self)
    }
    fn n_tasks(&self) -> usize {
        MultiTaskNet::n_tasks(self)
    }
    fn forward(&mut self, x: &[T], cells: &[u32], n: usize, train: bool) -> &[T] {
        if train || !self.cell_towers() {
            MultiTaskNet::forward(self, x, n, train)
        } else {
            MultiTaskNet::forward_cells(self, x, cells, n)
        }
    }
    fn backward(
        &mut self,
        x: &[T],
        _cells: &[u32],
        d_logits: &[T],
        dx: Option<&mut [T]>,
        n: usize,
    ) {
        MultiTaskNet::backward(self, x, d_logits, dx, n)
    }
    fn describe(&self) -> String {
        MultiTaskNet::describe(self)
    }
    fn set_cell_towers(&mut self, on: bool) {
        MultiTaskNet::set_cell_towers(self, on)
    }
    fn export(&self, g: &mut GraphBuilder, x: &str, _cell: &str) -> Result<String, String> {
        MultiTaskNet::export(self, g, x)
    }
}

impl<T: Float> MultiTaskModel<T> for crate::Pepnet<T> {
    fn n_in(&self) -> usize {
        crate::Pepnet::n_in(self)
    }
    fn n_tasks(&self) -> usize {
        crate::Pepnet::n_tasks(self)
    }
    fn forward(&mut self, x: &[T], cells: &[u32], n: usize, train: bool) -> &[T] {
        crate::Pepnet::forward(self, x, cells, n, train)
    }
    fn backward(&mut self, x: &[T], cells: &[u32], d_logits: &[T], dx: Option<&mut [T]>, n: usize) {
        crate::Pepnet::backward(self, x, cells, d_logits, dx, n)
    }
    fn describe(&self) -> String {
        crate::Pepnet::describe(self)
    }
    fn set_cell_towers(&mut self, on: bool) {
        crate::Pepnet::set_cell_towers(self, on)
    }
    fn export(&self, g: &mut GraphBuilder, x: &str, cell: &str) -> Result<String, String> {
        crate::Pepnet::export(self, g, x, cell)
    }
}
