//! The passes of a [`Tree`]: dense (every level on every row) and routed by cell (see
//! `switcher`), and where each output lands. The bookkeeping of the last forward is a
//! [`Run`].

use super::switcher::{Leaf, Tree};
use crate::switcher::Switcher;
use mfh_nn::{ensure_len, gather_rows, scatter_add_rows, Float};

/// No value: a row outside every cell's row list.
const NONE: usize = usize::MAX;

/// What the last forward of a tree did, and the buffers it did it with.
pub(crate) struct Run<T> {
    /// Routed by cell; level 1 routed (its output v on the rows `sel1[v]` only); per
    /// value, level 2 routed (its output k on its cell's rows only).
    routed: bool,
    l1_routed: bool,
    l2_routed: Vec<bool>,
    /// Level 2 of value v runs on the rows of v gathered (routed, split on a facet, level
    /// 1 not routing).
    gathered: bool,
    /// Split on a facet, routed: the rows of each value, each row's position among the
    /// rows of its value, and each row's value.
    groups: Vec<Vec<usize>>,
    pos: Vec<usize>,
    row_value: Vec<usize>,
    /// Per value: the rows (of the input) level 1 computes output v for.
    sel1: Vec<Vec<usize>>,
    /// [value][output]: the rows (positions in level 2's input) of each level-2 output.
    sel2: Vec<Vec<Vec<usize>>>,
    /// Per value: level 2's gathered input and its gradient.
    gin: Vec<Vec<T>>,
    gdin: Vec<Vec<T>>,
    /// Per task: the length of its output when that is a copy of its leaf's rows
    /// (`leaf_rows[t]`, positions in the leaf), `None` when it is the leaf itself.
    copy_len: Vec<Option<usize>>,
    leaf_rows: Vec<Vec<usize>>,
    pub(super) out: Vec<Vec<T>>,
    pub(super) d_out: Vec<Vec<T>>,
}

impl<T: Float> Run<T> {
    pub(super) fn new(k1: usize, k2: usize, n_tasks: usize) -> Self {
        Run {
            routed: false,
            l1_routed: false,
            l2_routed: vec![false; k1],
            gathered: false,
            groups: vec![Vec::new(); k1],
            pos: Vec::new(),
            row_value: Vec::new(),
            sel1: vec![Vec::new(); k1],
            sel2: vec![vec![Vec::new(); k2]; k1],
            gin: vec![Vec::new(); k1],
            gdin: vec![Vec::new(); k1],
            copy_len: vec![None; n_tasks],
            leaf_rows: vec![Vec::new(); n_tasks],
            out: vec![Vec::new(); n_tasks],
            d_out: vec![Vec::new(); n_tasks],
        }
    }

    /// The length of output t when it is a copy.
    pub(super) fn copy_of(&self, t: usize) -> Option<usize> {
        self.copy_len[t]
    }

    /// Groups the rows of `n` by their value of the split dimension, from the rows of each
    /// cell (`sel[c]`: the tasks of behaviour 0, one per cell) and each cell's value.
    fn group(&mut self, sel: &[Vec<usize>], n: usize, value_of_cell: &[usize]) {
        self.row_value.clear();
        self.row_value.resize(n, NONE);
        for (rows, &v) in sel.iter().zip(value_of_cell) {
            for &r in rows {
                self.row_value[r] = v;
            }
        }
        for g in &mut self.groups {
            g.clear();
        }
        self.pos.clear();
        self.pos.resize(n, NONE);
        for (r, &v) in self.row_value.iter().enumerate() {
            if v != NONE {
                self.pos[r] = self.groups[v].len();
                self.groups[v].push(r);
            }
        }
    }

    /// Level 2 of value v reads a compact input: the rows level 1 routed, or the gathered
    /// rows of the value; with its length in rows.
    fn compact_rows(&self, v: usize, n: usize) -> (bool, usize) {
        match (self.l1_routed, self.gathered) {
            (true, _) => (true, self.sel1[v].len()),
            (false, true) => (true, self.groups[v].len()),
            (false, false) => (false, n),
        }
    }
}

impl<T: Float> Tree<T> {
    /// Every level on every row.
    pub(super) fn forward_dense(&mut self, x: &[T], n: usize, train: bool) {
        let run = &mut self.run;
        (run.routed, run.l1_routed, run.gathered) = (false, false, false);
        run.l2_routed.fill(false);
        if let Some(l1) = &mut self.level1 {
            l1.forward(x, n, train);
        }
        for (v, l2) in self.level2.iter_mut().enumerate() {
            let Some(l2) = l2 else { continue };
            let input = self.level1.as_ref().map_or(x, |l1| l1.output(v));
            l2.forward(input, n, train);
        }
        self.place_outputs(x, n, None, train);
    }

    /// Each row through its own branches only (see the module docs of `switcher`).
    pub(super) fn forward_cells(&mut self, x: &[T], n: usize, sel: &[Vec<usize>], train: bool) {
        assert_eq!(
            sel.len(),
            self.leaf_of_task.len(),
            "Tree: one row list per task"
        );
        let (d, k2) = (self.dim, self.task_of_leaf[0].len());
        let run = &mut self.run;
        (run.routed, run.l1_routed) = (true, false);
        run.gathered = d != 0 && k2 > 1;
        if d != 0 {
            run.group(sel, n, &self.value_of_cell);
        }
        for (v, rows) in run.sel1.iter_mut().enumerate() {
            rows.clear();
            if d == 0 {
                rows.extend(0..n);
            } else {
                rows.extend_from_slice(&run.groups[v]);
            }
        }
        if let Some(l1) = &mut self.level1 {
            run.l1_routed = l1.forward_routed(x, n, &run.sel1, train);
            if !run.l1_routed {
                l1.forward(x, n, train);
            }
        }
        for v in 0..self.level2.len() {
            self.forward_level2(v, x, n, sel, train);
        }
        self.place_outputs(x, n, Some(sel), train);
    }

    /// Routed level 2 of value v: on level 1's output v (compact when level 1 routed),
    /// the gathered rows of v, or every row; its output k on its cell's rows when it
    /// routes.
    fn forward_level2(&mut self, v: usize, x: &[T], n: usize, sel: &[Vec<usize>], train: bool) {
        let Tree {
            dim,
            level1,
            level2,
            task_of_leaf,
            l1_out,
            run,
            ..
        } = self;
        run.l2_routed[v] = false;
        let Some(l2) = &mut level2[v] else { return };
        let (compact, m) = run.compact_rows(v, n);
        if compact && m == 0 {
            return;
        }
        let w = *l1_out;
        let mut input: &[T] = level1.as_ref().map_or(x, |l1| l1.output(v));
        if run.gathered && !run.l1_routed {
            let buf = ensure_len(&mut run.gin[v], m * w);
            gather_rows(input, w, &run.groups[v], buf);
            input = &run.gin[v][..m * w];
        }
        for (k, rows) in run.sel2[v].iter_mut().enumerate() {
            rows.clear();
            let cell = &sel[task_of_leaf[v][k]];
            if compact && *dim != 0 {
                rows.extend(cell.iter().map(|&r| run.pos[r]));
            } else {
                rows.extend_from_slice(cell);
            }
        }
        run.l2_routed[v] = l2.forward_routed(input, m, &run.sel2[v], train);
        if !run.l2_routed[v] {
            l2.forward(input, m, train);
        }
    }

    /// Where each output lands: its leaf itself when the leaf holds exactly the task's
    /// rows in order (dense, or a routed level 2), else a copy of the leaf at those rows.
    fn place_outputs(&mut self, x: &[T], n: usize, sel: Option<&[Vec<usize>]>, train: bool) {
        let w = self.out_dim;
        for t in 0..self.leaf_of_task.len() {
            let leaf = self.leaf(t);
            let run = &mut self.run;
            // Where row r of the task sits in its leaf: `pos[r]` (compact over the rows
            // of its value) or r.
            let by_value = match leaf {
                Leaf::Level2(v, _) if run.routed && run.l2_routed[v] => None,
                Leaf::Level2(..) | Leaf::Level1(_) if !run.routed => None,
                Leaf::Level2(..) => Some((run.l1_routed || run.gathered) && self.dim != 0),
                Leaf::Level1(_) => Some(run.l1_routed && self.dim != 0),
                Leaf::Input => Some(false),
            };
            run.copy_len[t] = None;
            let Some(by_value) = by_value else { continue };
            let rows = &mut run.leaf_rows[t];
            rows.clear();
            match sel {
                Some(sel) if by_value => rows.extend(sel[t].iter().map(|&r| run.pos[r])),
                Some(sel) => rows.extend_from_slice(&sel[t]),
                None => rows.extend(0..n),
            }
            let len = rows.len() * w;
            run.copy_len[t] = Some(len);
            let d_out = ensure_len(&mut run.d_out[t], len);
            if train {
                d_out.fill(T::zero());
            }
            if len == 0 {
                continue;
            }
            let src = match leaf {
                Leaf::Level2(v, k) => self.level2[v].as_ref().expect("level 2").output(k),
                Leaf::Level1(v) => self.level1.as_ref().expect("level 1").output(v),
                Leaf::Input => x,
            };
            gather_rows(src, w, &run.leaf_rows[t], ensure_len(&mut run.out[t], len));
        }
    }

    /// Adds the gradients of the outputs that are copies into their leaves (the input's
    /// into `dx`), in the consumers' order.
    fn scatter_copies(&mut self, mut dx: Option<&mut [T]>) {
        let w = self.out_dim;
        for i in 0..self.grad_order.len() {
            let t = self.grad_order[i];
            let Some(len) = self.run.copy_len[t].filter(|&len| len > 0) else {
                continue;
            };
            let target: &mut [T] = match self.leaf(t) {
                Leaf::Level2(v, k) => self.level2[v].as_mut().expect("level 2").d_output_mut(k),
                Leaf::Level1(v) => self.level1.as_mut().expect("level 1").d_output_mut(v),
                Leaf::Input => match dx.as_deref_mut() {
                    Some(dx) => dx,
                    None => continue,
                },
            };
            let run = &self.run;
            scatter_add_rows(&run.d_out[t][..len], w, &run.leaf_rows[t], target);
        }
    }

    /// Backward of [`Tree::forward_dense`].
    pub(super) fn backward_dense(&mut self, x: &[T], n: usize, mut dx: Option<&mut [T]>) {
        self.scatter_copies(dx.as_deref_mut());
        for (v, l2) in self.level2.iter_mut().enumerate() {
            let Some(l2) = l2 else { continue };
            match &mut self.level1 {
                Some(l1) => {
                    let (input, d_input) = l1.output_and_grad(v);
                    l2.backward(input, n, Some(d_input));
                }
                None => l2.backward(x, n, dx.as_deref_mut()),
            }
        }
        if let Some(l1) = &mut self.level1 {
            l1.backward(x, n, dx);
        }
    }

    /// Backward of [`Tree::forward_cells`], with the same `sel`.
    pub(super) fn backward_cells(
        &mut self,
        x: &[T],
        n: usize,
        _sel: &[Vec<usize>],
        mut dx: Option<&mut [T]>,
    ) {
        assert!(
            self.run.routed,
            "Tree::backward_routed without a routed forward"
        );
        self.scatter_copies(dx.as_deref_mut());
        for v in 0..self.level2.len() {
            self.backward_level2(v, x, n, dx.as_deref_mut());
        }
        if let Some(l1) = &mut self.level1 {
            if self.run.l1_routed {
                l1.backward_routed(x, n, &self.run.sel1, dx);
            } else {
                l1.backward(x, n, dx);
            }
        }
    }

    /// Backward of [`Tree::forward_level2`]: its input gradient into level 1's output v
    /// (added back at the value's rows when gathered) or into `dx`.
    fn backward_level2(&mut self, v: usize, x: &[T], n: usize, dx: Option<&mut [T]>) {
        let Tree {
            level1,
            level2,
            l1_out,
            run,
            ..
        } = self;
        let Some(l2) = &mut level2[v] else { return };
        let (compact, m) = run.compact_rows(v, n);
        if compact && m == 0 {
            return;
        }
        let (routed, sel2) = (run.l2_routed[v], &run.sel2[v]);
        let back = |l2: &mut Box<dyn Switcher<T>>, input: &[T], di: Option<&mut [T]>| {
            if routed {
                l2.backward_routed(input, m, sel2, di);
            } else {
                l2.backward(input, m, di);
            }
        };
        if run.l1_routed {
            let l1 = level1.as_mut().expect("routed level 1");
            let (input, d_input) = l1.output_and_grad(v);
            back(l2, input, Some(d_input));
        } else if run.gathered {
            let w = *l1_out;
            ensure_len(&mut run.gdin[v], m * w).fill(T::zero());
            back(l2, &run.gin[v][..m * w], Some(&mut run.gdin[v][..m * w]));
            let target = match level1 {
                Some(l1) => Some(l1.d_output_mut(v)),
                None => dx,
            };
            if let Some(target) = target {
                scatter_add_rows(&run.gdin[v][..m * w], w, &run.groups[v], target);
            }
        } else {
            match level1 {
                Some(l1) => {
                    let (input, d_input) = l1.output_and_grad(v);
                    back(l2, input, Some(d_input));
                }
                None => back(l2, x, dx),
            }
        }
    }
}
