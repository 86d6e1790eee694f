//! Graph export of one CGC level (a CGC, or a level of PLE): see [`crate::export`].

use super::Cgc;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::Float;

impl<T: Float> Cgc<T> {
    /// The level's forward over its input groups (`inputs[g]`: group g's tensor, task
    /// groups then the shared group, as [`super::Upstream`] hands them out): one output
    /// per gate, K task outputs then the shared gate's when there is one.
    pub(crate) fn export_level(
        &self,
        g: &mut GraphBuilder,
        inputs: &[String],
    ) -> Result<Vec<String>, String> {
        let input = |group: usize| {
            inputs.get(group).ok_or_else(|| {
                format!(
                    "CGC level reads input group {group} but {} were given",
                    inputs.len()
                )
            })
        };
        // All experts side by side, n × (Σ experts) × d; a bank's expert e sits at the
        // bank's offset + e.
        let mut stacks = Vec::with_capacity(self.banks.len());
        let mut offset = Vec::with_capacity(self.banks.len());
        let mut total = 0;
        for (b, (bank, &src)) in self.banks.iter().zip(&self.bank_src).enumerate() {
            let x = input(src)?;
            stacks.push(g.scoped(&format!("banks.{b}"), |g| bank.export(g, x)));
            offset.push(total);
            total += bank.n_experts();
        }
        let refs: Vec<&str> = stacks.iter().map(String::as_str).collect();
        let pool = g.concat(&refs, 1);
        let mut outs = Vec::with_capacity(self.gates.len());
        for (j, (gate, members)) in self.gates.iter().zip(&self.members).enumerate() {
            let x = input(j)?;
            let idx: Vec<i64> = members
                .iter()
                .map(|s| (offset[s.bank] + s.expert) as i64)
                .collect();
            let out = g.scoped(&format!("gates.{j}"), |g| {
                let w = gate.export(g, x);
                let every =
                    idx.len() == total && idx.iter().enumerate().all(|(i, &v)| v == i as i64);
                let experts = if every {
                    pool.clone()
                } else {
                    let at = g.const_i64("members", &[idx.len()], idx.clone());
                    g.gather(&pool, &at, 1)
                };
                g.gated_sum(&w, &experts, idx.len())
            });
            outs.push(out);
        }
        Ok(outs)
    }
}
