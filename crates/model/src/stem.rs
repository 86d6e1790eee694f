//! STEM (Su et al., "STEM: Unleashing the Power of Embeddings for Multi-task
//! Recommendation", AAAI 2024): shared and task-specific embeddings.
//!
//! Every embedding table is `1 + S` copies wide: per field, a shared block, then one block
//! per *specific group* (by default a behaviour, so a behaviour's tasks in every cell share
//! their embeddings; `specific = "task"` gives every task its own, at `1 + tasks` times the
//! table size instead of `1 + behaviours`). Numeric inputs are shared. Each task's tower
//! reads the whole input — the shared block, its own group's block and every other
//! group's — but the gradient it sends back reaches only the shared columns, the numeric
//! inputs and its own group's block: the other groups' embeddings are read with their
//! gradients stopped, so one behaviour's loss never moves another behaviour's specific
//! embeddings (the paper's "all forward, task-specific backward").
//!
//! [`StemInput`] is the switcher that does it (K outputs, each the input; output gradients
//! kept per group and masked on the way back); the model is a [`crate::MultiTaskNet`] over
//! it, with the flat models' towers, routing and export.

use crate::model::GridShape;
use crate::shape::{check_widths, InputField};
use crate::switcher::Switcher;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{ensure_len, Float, Module};
use serde::{Deserialize, Serialize};

/// What a specific embedding block belongs to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StemSpecific {
    /// One block per behaviour, shared by its tasks in every cell.
    #[default]
    Behaviour,
    /// One block per task (behaviour × cell).
    Task,
}

/// A STEM section (`type = "stem"`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StemSpec {
    /// Hidden widths of each task tower.
    pub tower: Vec<usize>,
    #[serde(default)]
    pub batch_norm: bool,
    #[serde(default)]
    pub specific: StemSpecific,
    /// `[offset, width]` of each embedded field in the network input (its width `1 + S`
    /// blocks), resolved when the model is built over its data (written into model
    /// folders; not set by hand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_columns: Vec<[usize; 2]>,
}

impl StemSpec {
    pub fn validate(&self) -> Result<(), String> {
        check_widths("tower", &self.tower, true)
    }

    /// Specific groups over `shape`: behaviours or tasks.
    pub fn groups(&self, shape: &GridShape) -> usize {
        match self.specific {
            StemSpecific::Behaviour => shape.sizes()[0],
            StemSpecific::Task => shape.n_tasks(),
        }
    }

    /// Each embedding table's width as a multiple of its features' `dim`: `1 + S`.
    pub fn embedding_copies(&self, shape: &GridShape) -> usize {
        1 + self.groups(shape)
    }

    /// Records where every embedded field sits in the network input.
    pub fn bind(&mut self, fields: &[InputField]) {
        self.field_columns = fields.iter().map(|f| [f.offset, f.width]).collect();
    }

    /// The switcher over `shape` for `n_in` inputs: checks the bound columns.
    pub(crate) fn input<T: Float>(
        &self,
        shape: &GridShape,
        n_in: usize,
    ) -> Result<StemInput<T>, String> {
        self.validate()?;
        let s = self.groups(shape);
        let copies = 1 + s;
        let nc = shape.n_cells();
        let n_tasks = shape.n_tasks();
        // Per group, 1 where a tower of the group sends its gradient back.
        if self.field_columns.is_empty() {
            return Err(
                "field_columns: none resolved (STEM needs embedded features, and a spec bound to its input)"
                    .into(),
            );
        }
        let mut masks = vec![T::one(); s * n_in];
        let mut blocks = 0;
        for &[off, w] in &self.field_columns {
            if w == 0 || w % copies != 0 || off.checked_add(w).is_none_or(|e| e > n_in) {
                return Err(format!(
                    "field_columns: [{off}, {w}] is not {copies} equal blocks inside the {n_in} input columns (built for another grid or input?)"
                ));
            }
            let d = w / copies;
            for g in 0..s {
                for other in (0..s).filter(|&o| o != g) {
                    let a = off + (1 + other) * d;
                    masks[g * n_in + a..g * n_in + a + d].fill(T::zero());
                }
            }
            blocks += 1;
        }
        let group_of = (0..n_tasks)
            .map(|t| match self.specific {
                StemSpecific::Behaviour => t / nc,
                StemSpecific::Task => t,
            })
            .collect();
        Ok(StemInput {
            d: n_in,
            k: n_tasks,
            groups: s,
            group_of,
            masks,
            fields: blocks,
            specific: self.specific,
            out: Vec::new(),
            d_out: vec![Vec::new(); s],
            n: 0,
        })
    }
}

/// STEM's input switcher; shapes: x n × d → K × (n × d), every output the input. Output
/// gradients are summed per specific group, and each group's sum reaches `dx` through its
/// mask (shared and numeric columns, and the group's own blocks).
#[derive(Clone, Debug)]
pub struct StemInput<T> {
    d: usize,
    k: usize,
    groups: usize,
    group_of: Vec<usize>,
    /// groups × d.
    masks: Vec<T>,
    fields: usize,
    specific: StemSpecific,
    out: Vec<T>,
    d_out: Vec<Vec<T>>,
    n: usize,
}

impl<T: Float> Module<T> for StemInput<T> {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {}
}

impl<T: Float> Switcher<T> for StemInput<T> {
    fn in_dim(&self) -> usize {
        self.d
    }

    fn n_outputs(&self) -> usize {
        self.k
    }

    fn out_dim(&self) -> usize {
        self.d
    }

    fn forward(&mut self, x: &[T], n: usize, train: bool) {
        self.n = n;
        let len = n * self.d;
        ensure_len(&mut self.out, len).copy_from_slice(&x[..len]);
        for g in &mut self.d_out {
            let g = ensure_len(g, len);
            if train {
                g.fill(T::zero());
            }
        }
    }

    fn output(&self, k: usize) -> &[T] {
        assert!(k < self.k, "StemInput: output {k} out of range");
        &self.out[..self.n * self.d]
    }

    fn d_output_mut(&mut self, k: usize) -> &mut [T] {
        assert!(k < self.k, "StemInput: output {k} out of range");
        let len = self.n * self.d;
        &mut self.d_out[self.group_of[k]][..len]
    }

    fn output_and_grad(&mut self, k: usize) -> (&[T], &mut [T]) {
        assert!(k < self.k, "StemInput: output {k} out of range");
        let len = self.n * self.d;
        (&self.out[..len], &mut self.d_out[self.group_of[k]][..len])
    }

    fn backward(&mut self, _x: &[T], n: usize, dx: Option<&mut [T]>) {
        let Some(dx) = dx else { return };
        let d = self.d;
        for (g, grad) in self.d_out.iter().enumerate() {
            let mask = &self.masks[g * d..(g + 1) * d];
            for (dr, gr) in dx[..n * d].chunks_exact_mut(d).zip(grad.chunks_exact(d)) {
                for ((o, &v), &m) in dr.iter_mut().zip(gr).zip(mask) {
                    *o += v * m;
                }
            }
        }
    }

    fn param_count(&self) -> usize {
        0
    }

    fn export(&self, _g: &mut GraphBuilder, x: &str) -> Result<Vec<String>, String> {
        Ok(vec![x.to_string(); self.k])
    }

    fn describe(&self) -> Vec<String> {
        let per = match self.specific {
            StemSpecific::Behaviour => "behaviour",
            StemSpecific::Task => "task",
        };
        vec![
            format!(
                "STEM input → {} outputs of the {} inputs (0 params)",
                self.k, self.d
            ),
            format!(
                "  embeddings: {} fields, each a shared block + {} specific (one per {per}); a task's gradient reaches the shared, numeric and its own {per}'s columns",
                self.fields, self.groups
            ),
        ]
    }
}
