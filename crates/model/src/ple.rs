//! Progressive Layered Extraction switcher (PLE): a stack of CGC levels. Every level but
//! the last also has a shared gate over all its experts; its output u_s is what the next
//! level's shared experts (and shared gate) read, while the next level's task-k experts
//! and gate read u_k, task k's output of this level.

use crate::cgc::{Cgc, CgcShape, Layout, Upstream, UpstreamGrad};
use crate::keys;
use crate::switcher::Switcher;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{with_name, Float, Module, Rng};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A PLE's architecture: `levels` CGC levels of the same shape. In a table, the CGC
/// level's keys sit beside `levels`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PleShape {
    pub levels: usize,
    #[serde(flatten)]
    pub level: CgcShape,
}

impl PleShape {
    /// Checks the shape on its own (levels, experts, layer widths).
    pub fn validate(&self) -> Result<(), String> {
        if self.levels == 0 {
            return Err("ple needs at least one level".into());
        }
        self.level.validate_as("ple")
    }
}

impl<'de> Deserialize<'de> for PleShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Table;
        impl<'de> Visitor<'de> for Table {
            type Value = PleShape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a PLE table (`levels` and a CGC level's keys)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PleShape, A::Error> {
                let mut levels = None;
                let level = keys::split(map, |key: &str, map: &mut A| match key {
                    "levels" => keys::take(&mut levels, "levels", map),
                    _ => Ok(false),
                })?;
                let levels = levels.ok_or_else(|| serde::de::Error::missing_field("levels"))?;
                Ok(PleShape { levels, level })
            }
        }
        d.deserialize_map(Table)
    }
}

/// PLE; shapes: x n × in_dim → K × (n × d), the last level's K task outputs.
#[derive(Clone, Debug)]
pub struct Ple<T> {
    /// Level 1 reads x (one fused expert bank, exactly a [`Cgc`]); level l ≥ 2 reads the
    /// outputs of level l − 1 (width d).
    levels: Vec<Cgc<T>>,
}

impl<T: Float> Ple<T> {
    /// A PLE of `shape` over `n_in` inputs with `n_outputs` outputs, BatchNorm after every
    /// expert layer when `batch_norm`. `levels = 1` is the same network (same parameters,
    /// drawn in the same order) as [`Cgc::new`] of the level's shape.
    pub fn new(
        n_in: usize,
        n_outputs: usize,
        shape: &PleShape,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        let levels = shape.levels;
        assert!(levels > 0, "Ple needs at least one level");
        let d = shape.level.expert_layers.last().copied().unwrap_or(n_in);
        let levels = (0..levels)
            .map(|l| {
                // Level 1 reads x in every input group; level l + 1 level l's outputs.
                let layout = Layout {
                    split_inputs: l > 0,
                    shared_gate: l + 1 < levels,
                    routable: false,
                };
                let input = if l == 0 { n_in } else { d };
                Cgc::level(input, n_outputs, &shape.level, batch_norm, layout, rng)
            })
            .collect();
        Ple { levels }
    }

    pub fn levels(&self) -> &[Cgc<T>] {
        &self.levels
    }

    fn last(&self) -> &Cgc<T> {
        &self.levels[self.levels.len() - 1]
    }

    fn last_mut(&mut self) -> &mut Cgc<T> {
        let l = self.levels.len() - 1;
        &mut self.levels[l]
    }
}

impl<T: Float> Module<T> for Ple<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        for (l, level) in self.levels.iter_mut().enumerate() {
            with_name(prefix, format_args!("levels.{l}."), |p| {
                level.visit_params(p, f)
            });
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        for (l, level) in self.levels.iter_mut().enumerate() {
            with_name(prefix, format_args!("levels.{l}."), |p| {
                level.visit_buffers(p, f)
            });
        }
    }
}

impl<T: Float> Switcher<T> for Ple<T> {
    fn in_dim(&self) -> usize {
        self.levels[0].in_dim()
    }

    fn n_outputs(&self) -> usize {
        self.levels[0].n_outputs()
    }

    fn out_dim(&self) -> usize {
        self.levels[0].out_dim()
    }

    fn forward(&mut self, x: &[T], n: usize, train: bool) {
        self.levels[0].forward_level(Upstream::Input(x), n, train);
        for l in 1..self.levels.len() {
            let (done, rest) = self.levels.split_at_mut(l);
            let up = Upstream::Level(done[l - 1].all_outputs());
            rest[0].forward_level(up, n, train);
        }
    }

    fn output(&self, k: usize) -> &[T] {
        self.last().output(k)
    }

    fn d_output_mut(&mut self, k: usize) -> &mut [T] {
        self.last_mut().d_output_mut(k)
    }

    fn output_and_grad(&mut self, k: usize) -> (&[T], &mut [T]) {
        self.last_mut().output_and_grad(k)
    }

    fn backward(&mut self, x: &[T], n: usize, dx: Option<&mut [T]>) {
        // Top down: level l adds its input gradients into level l − 1's output gradients
        // before level l − 1 runs its own backward.
        for l in (1..self.levels.len()).rev() {
            let (done, rest) = self.levels.split_at_mut(l);
            let (outs, d_outs) = done[l - 1].outputs_and_grads();
            rest[0].backward_level(Upstream::Level(outs), UpstreamGrad::Level(d_outs), n);
        }
        self.levels[0].backward_level(Upstream::Input(x), UpstreamGrad::Input(dx), n);
    }

    fn param_count(&self) -> usize {
        self.levels.iter().map(Cgc::param_count).sum()
    }

    fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<Vec<String>, String> {
        // Level 1 reads x in every input group; level l + 1 reads level l's outputs.
        let mut groups = vec![x.to_string(); self.n_outputs() + 1];
        for (l, level) in self.levels.iter().enumerate() {
            groups = g.scoped(&format!("levels.{l}"), |g| level.export_level(g, &groups))?;
        }
        groups.truncate(self.n_outputs());
        Ok(groups)
    }

    fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "PLE → {} outputs, {} levels ({} params)",
            self.n_outputs(),
            self.levels.len(),
            self.param_count()
        )];
        for (l, level) in self.levels.iter().enumerate() {
            lines.push(format!(
                "  level {} ({} params)",
                l + 1,
                level.param_count()
            ));
            lines.extend(level.part_lines().into_iter().map(|s| format!("    {s}")));
        }
        lines
    }
}
