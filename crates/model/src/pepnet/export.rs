//! Graph export of PEPNet (eval mode, every tower on every row): see [`crate::export`].

use super::{GateNu, Pepnet};
use mfh_nn::graph::{to_f32, GraphBuilder};
use mfh_nn::Float;

impl<T: Float> GateNu<T> {
    /// δ (n × n_out) for the gate input `u`.
    fn export(&self, g: &mut GraphBuilder, u: &str) -> String {
        let h = g.scoped("layer0", |g| self.l1.export(g, u));
        let z = g.scoped("layer1", |g| self.l2.export(g, &h));
        let s = g.sigmoid(&z);
        let gamma = g.const_f32("gamma", &[1], to_f32(&[self.gamma]));
        g.mul(&s, &gamma)
    }
}

impl<T: Float> Pepnet<T> {
    /// Logits (n × tasks) from the input `x` (n × n_in) and each row's cell `cell`
    /// (int64, n).
    pub fn export(&self, g: &mut GraphBuilder, x: &str, cell: &str) -> Result<String, String> {
        let mut parts: Vec<String> = self
            .prior_cols
            .iter()
            .map(|&(off, w)| g.slice_cols(x, off, off + w))
            .collect();
        if self.n_facet_values > 0 {
            let table = g.const_f32(
                "facet_onehot",
                &[self.n_cells, self.n_facet_values],
                to_f32(&self.facet_onehot),
            );
            parts.push(g.gather(&table, cell, 0));
        }
        parts.push(x.to_string());
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let gin = g.concat(&refs, 1);
        let d_ep = g.scoped("epnet", |g| self.ep.export(g, &gin));
        let xe = g.mul(x, &d_ep);
        parts.pop();
        parts.push(xe.clone());
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let pin = g.concat(&refs, 1);
        let deltas: Vec<String> = self
            .pp
            .iter()
            .enumerate()
            .map(|(l, gate)| g.scoped(&format!("ppnet{l}"), |g| gate.export(g, &pin)))
            .collect();
        let mut logits = Vec::with_capacity(self.n_tasks);
        for (t, tw) in self.towers.iter().enumerate() {
            let logit = g.scoped(&format!("task{t}"), |g| {
                let mut h = xe.clone();
                for (l, lin) in tw.layers.iter().enumerate() {
                    let w = self.widths[l];
                    let a = g.scoped(&format!("layer{l}"), |g| lin.export(g, &h));
                    let d = g.slice_cols(&deltas[l], t * w, (t + 1) * w);
                    h = g.mul(&a, &d);
                }
                let l = tw.layers.len();
                g.scoped(&format!("layer{l}"), |g| tw.head.export(g, &h))
            });
            logits.push(logit);
        }
        let refs: Vec<&str> = logits.iter().map(String::as_str).collect();
        Ok(g.concat(&refs, 1))
    }
}
