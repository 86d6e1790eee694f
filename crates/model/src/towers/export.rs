//! Graph export of the task towers and their AITM transfers: see [`crate::export`].

use super::{Ait, Towers};
use mfh_nn::graph::{to_f32, GraphBuilder};
use mfh_nn::Float;

impl<T: Float> Towers<T> {
    /// Each task's logit (n × 1) from its input `inputs[t]` (n × n_in), run in
    /// [`Towers::order`] so that a transfer's source is there before its receiver.
    pub(crate) fn export(
        &self,
        g: &mut GraphBuilder,
        inputs: &[String],
    ) -> Result<Vec<String>, String> {
        let n = self.n_tasks();
        if inputs.len() != n {
            return Err(format!("{n} towers but {} inputs", inputs.len()));
        }
        // Per task: the representation feeding its head (what a receiver's transfer reads).
        let mut rep: Vec<Option<String>> = vec![None; n];
        let mut logits = vec![String::new(); n];
        for &t in &self.order {
            let tw = &self.towers[t];
            let (r, logit) = g.scoped(&format!("towers.{t}"), |g| {
                let q = match &tw.hidden {
                    Some(mlp) => mlp.export(g, &inputs[t]),
                    None => inputs[t].clone(),
                };
                let r = match &self.ait[t] {
                    Some(a) => {
                        let src = rep[a.src].as_deref().ok_or_else(|| {
                            format!("task {t} runs before its transfer source {}", a.src)
                        })?;
                        a.export(g, src, &q)
                    }
                    None => q,
                };
                let n_hidden = tw.hidden.as_ref().map_or(0, |m| m.layers().len());
                let logit = g.scoped(&format!("layer{n_hidden}"), |g| tw.head.export(g, &r));
                Ok::<_, String>((r, logit))
            })?;
            rep[t] = Some(r);
            logits[t] = logit;
        }
        Ok(logits)
    }
}

impl<T: Float> Ait<T> {
    /// `z` (n × h) from the source representation `src` and the receiver's `q`: the
    /// value/key/query maps run on the stack `[p, q]` (n × 2 × h) at once.
    fn export(&self, g: &mut GraphBuilder, src: &str, q: &str) -> String {
        let h = self.h as i64;
        let p = g.scoped("transfer", |g| self.transfer.export(g, src));
        let p3 = g.reshape(&p, &[-1, 1, h]);
        let q3 = g.reshape(q, &[-1, 1, h]);
        let u = g.concat(&[&p3, &q3], 1);
        g.scoped("ait", |g| {
            let v = g.scoped("value", |g| self.value.export(g, &u));
            let k = g.scoped("key", |g| self.key.export(g, &u));
            let r = g.scoped("query", |g| self.query.export(g, &u));
            let kr = g.mul(&k, &r);
            let dots = g.reduce_sum(&kr, 2, false);
            let inv = T::one() / T::from_usize(self.h).sqrt();
            let c = g.const_f32("inv_sqrt_h", &[1], to_f32(&[inv]));
            let scores = g.mul(&dots, &c);
            let w = g.softmax(&scores, 1);
            g.gated_sum(&w, &v, 2)
        })
    }
}
