//! The task grid: behaviours × facet cells. A cell is one value per facet (mixed-radix
//! index, first facet most significant); a task is (behaviour, cell), indexed
//! `behaviour * n_cells + cell`. Zero facets is a valid grid with one cell, `any`.
//! A checked config's grid has at most [`crate::MAX_TASKS`] tasks, so these products and
//! the `u32` cell ids of a batch do not overflow.

use crate::Config;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskGrid {
    pub behaviours: Vec<String>,
    /// Per behaviour: true for a binary (logloss) head, false for regression (MSE).
    pub binary: Vec<bool>,
    /// (facet name, its value names).
    pub facets: Vec<(String, Vec<String>)>,
}

/// One facet value index per facet.
pub type Cell = Vec<usize>;

impl TaskGrid {
    pub fn new(cfg: &Config) -> TaskGrid {
        TaskGrid {
            behaviours: cfg
                .behaviours
                .iter()
                .map(|b| b.name().to_string())
                .collect(),
            binary: cfg.behaviours.iter().map(|b| b.is_binary()).collect(),
            facets: cfg
                .facets
                .iter()
                .map(|f| (f.name.clone(), f.values()))
                .collect(),
        }
    }

    pub fn n_behaviours(&self) -> usize {
        self.behaviours.len()
    }

    pub fn n_cells(&self) -> usize {
        self.facets.iter().map(|(_, v)| v.len()).product()
    }

    pub fn n_tasks(&self) -> usize {
        self.n_behaviours() * self.n_cells()
    }

    pub fn task(&self, behaviour: usize, cell: usize) -> usize {
        behaviour * self.n_cells() + cell
    }

    /// Cell index from one value index per facet.
    pub fn cell_index(&self, values: &[usize]) -> usize {
        let mut idx = 0;
        for ((_, names), &v) in self.facets.iter().zip(values) {
            idx = idx * names.len() + v;
        }
        idx
    }

    /// Value index per facet of a cell index.
    pub fn cell_values(&self, mut cell: usize) -> Cell {
        let mut out = vec![0; self.facets.len()];
        for (i, (_, names)) in self.facets.iter().enumerate().rev() {
            out[i] = cell % names.len();
            cell /= names.len();
        }
        out
    }

    /// `user=new,item=tail`; `any` when there are no facets.
    pub fn cell_name(&self, cell: usize) -> String {
        if self.facets.is_empty() {
            return "any".into();
        }
        let vals = self.cell_values(cell);
        self.facets
            .iter()
            .zip(vals)
            .map(|((f, names), v)| format!("{f}={}", names[v]))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn cell_names(&self) -> Vec<String> {
        (0..self.n_cells()).map(|c| self.cell_name(c)).collect()
    }

    pub fn task_name(&self, task: usize) -> String {
        let (b, c) = (task / self.n_cells(), task % self.n_cells());
        format!("{}[{}]", self.behaviours[b], self.cell_name(c))
    }
}
