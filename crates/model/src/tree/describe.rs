//! The text tree of a [`TreeNet`] (`mfh inspect`): the model line, the bottom, each tree
//! with its levels, the towers and the AITM transfers.

use super::TreeNet;
use crate::fusion::Fusion;
use crate::switcher::Switcher;
use mfh_nn::Float;
use std::collections::BTreeMap;

impl<T: Float> TreeNet<T> {
    pub(super) fn describe_text(&self) -> String {
        let mut s = self.headline();
        if let Some(b) = &self.bottom {
            s.push_str(&format!(
                "  bottom: {}→{} ({} params)\n",
                self.n_in,
                b.out_dim(),
                b.param_count()
            ));
        }
        for (i, tree) in self.trees.iter().enumerate() {
            for (j, line) in tree.describe().iter().enumerate() {
                let head = if j == 0 {
                    format!("tree {i}: ")
                } else {
                    String::new()
                };
                s.push_str(&format!("  {head}{line}\n"));
            }
        }
        s.push_str(&self.towers_line());
        s.push_str(&self.transfers_line());
        s
    }

    /// `MFH: … inputs → … task logits over … (… params; routing, fusion)`.
    fn headline(&self) -> String {
        let total: usize = self.bottom.as_ref().map_or(0, |b| b.param_count())
            + self.trees.iter().map(|t| t.param_count()).sum::<usize>()
            + self.towers.tower_param_count()
            + self.towers.transfer_param_count();
        let kind = if self.trees.len() == 1 {
            "H-MTL"
        } else {
            "MFH"
        };
        let grid: Vec<String> = (self.shape.dims.iter())
            .map(|(d, v)| format!("{d}×{}", v.len()))
            .collect();
        let routing = if self.routing {
            "cell routing"
        } else {
            "dense"
        };
        let fusion: Fusion = self.fuse.fusion();
        let condition = if self.fuse.conditions() {
            ", cell one-hot into towers"
        } else {
            ""
        };
        format!(
            "{kind}: {} inputs → {} task logits over {} ({total} params; {routing}, {fusion:?} fusion{condition})\n",
            self.n_in,
            self.towers.n_tasks(),
            grid.join(" "),
        )
    }

    /// `towers: 12 × 64→32→1 (… params)`, one entry per distinct tower shape.
    fn towers_line(&self) -> String {
        let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
        for t in 0..self.towers.n_tasks() {
            let dims: Vec<String> = self.towers.dims(t).iter().map(|d| d.to_string()).collect();
            *shapes.entry(dims.join("→")).or_default() += 1;
        }
        let shapes: Vec<String> = shapes
            .into_iter()
            .map(|(k, c)| format!("{c} × {k}"))
            .collect();
        format!(
            "  towers: {} ({} params)\n",
            shapes.join(", "),
            self.towers.tower_param_count()
        )
    }

    /// The transfers between behaviours, once for all cells; empty without transfers.
    fn transfers_line(&self) -> String {
        let pairs = self.towers.transfers();
        if pairs.is_empty() {
            return String::new();
        }
        let nc = self.shape.n_cells();
        let values = &self.shape.dims[0].1;
        let names: Vec<String> = pairs
            .iter()
            .filter(|&&(a, _)| a % nc == 0)
            .map(|&(a, b)| format!("{}→{}", values[a / nc], values[b / nc]))
            .collect();
        format!(
            "  AITM transfers: {} in each of {nc} cells ({} params)\n",
            names.join(", "),
            self.towers.transfer_param_count()
        )
    }
}
