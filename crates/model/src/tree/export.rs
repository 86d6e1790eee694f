//! Graph export of H-MTL / MFH trees: see [`crate::export`]. Every level-1 and level-2
//! switcher runs on every row (the `routing = false` form); a task's leaves are fused
//! as in the forward and fed to its tower.

use super::TreeNet;
use crate::fusion::Fusion;
use crate::switcher::Switcher;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::Float;

impl<T: Float> TreeNet<T> {
    /// Logits (n × n_tasks) for the input `x` (n × n_in) and each row's cell `cell`
    /// (int64, n; read only with `condition`, the cell one-hot into the towers).
    pub(crate) fn export_graph(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        cell: &str,
    ) -> Result<String, String> {
        let h = match &self.bottom {
            Some(b) => g.scoped("bottom", |g| b.export(g, x)),
            None => x.to_string(),
        };
        // [tree][task]: the task's leaf in that tree.
        let mut leaves: Vec<Vec<String>> = Vec::with_capacity(self.trees.len());
        for (i, tree) in self.trees.iter().enumerate() {
            leaves.push(g.scoped(&format!("trees.{i}"), |g| tree.export(g, &h))?);
        }
        let n_tasks = self.towers.n_tasks();
        let n_cells = self.shape.n_cells();
        let one_hot = self.fuse.conditions().then(|| {
            let mut eye = vec![0.0f32; n_cells * n_cells];
            for c in 0..n_cells {
                eye[c * n_cells + c] = 1.0;
            }
            let eye = g.const_f32("cell_one_hot", &[n_cells, n_cells], eye);
            g.gather(&eye, cell, 0)
        });
        let mut z = Vec::with_capacity(n_tasks);
        for t in 0..n_tasks {
            let parts: Vec<&str> = leaves.iter().map(|l| l[t].as_str()).collect();
            let zt = g.scoped(&format!("fuse.{t}"), |g| {
                let fused = match self.fuse.fusion() {
                    Fusion::Sum => {
                        let mut acc = parts[0].to_string();
                        for p in &parts[1..] {
                            acc = g.add(&acc, p);
                        }
                        acc
                    }
                    Fusion::Concat => g.concat(&parts, 1),
                };
                match &one_hot {
                    Some(oh) => g.concat(&[&fused, oh], 1),
                    None => fused,
                }
            });
            z.push(zt);
        }
        let logits = self.towers.export(g, &z)?;
        let refs: Vec<&str> = logits.iter().map(String::as_str).collect();
        Ok(g.concat(&refs, 1))
    }
}
