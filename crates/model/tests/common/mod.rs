//! Helpers shared by the tree and AITM tests: grids, specs, random batches.

#![allow(dead_code)]

use mfh_model::{GridShape, TreeSpec};
use mfh_nn::Rng;

pub fn shape(sizes: &[usize]) -> GridShape {
    let names = ["behaviour", "user", "item", "scene"];
    GridShape {
        dims: sizes
            .iter()
            .enumerate()
            .map(|(d, &s)| {
                (
                    names[d].to_string(),
                    (0..s).map(|v| format!("{}{v}", &names[d][..1])).collect(),
                )
            })
            .collect(),
    }
}

pub fn randn(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.normal()).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rows covering every cell (cell i % n_cells), then some random ones.
pub fn cells_for(g: &GridShape, n: usize, rng: &mut Rng) -> Vec<u32> {
    (0..n)
        .map(|i| {
            if i < g.n_cells() {
                i as u32
            } else {
                rng.below(g.n_cells() as u64) as u32
            }
        })
        .collect()
}

/// A random gradient of the logits, zero outside each row's own cell (as the loss gives).
pub fn masked_weights(g: &GridShape, cells: &[u32], rng: &mut Rng) -> Vec<f64> {
    let nt = g.n_tasks();
    let mut r = vec![0.0; cells.len() * nt];
    for (i, &c) in cells.iter().enumerate() {
        for t in 0..nt {
            if t % g.n_cells() == c as usize {
                r[i * nt + t] = rng.normal();
            }
        }
    }
    r
}

pub fn tree_spec(toml_extra: &str) -> TreeSpec {
    let text = format!(
        "level1 = {{ type = \"cgc\", task_experts = 1, shared_experts = 1, expert_layers = [5] }}\n\
         level2 = {{ type = \"cgc\", task_experts = 1, shared_experts = 1, expert_layers = [4] }}\n\
         tower = [3]\n{toml_extra}"
    );
    toml::from_str(&text).unwrap()
}

/// Parameter gradients by name, in visit order.
pub type NamedGrads = Vec<(String, Vec<f64>)>;
