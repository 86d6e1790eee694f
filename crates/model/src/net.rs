//! [`MultiTaskNet`]: a switcher with one output per task and one tower per task, each
//! tower ending in a single logit.

use crate::switcher::Switcher;
use mfh_nn::{ensure_len, with_name, Activation, Float, Mlp, Module, Rng};

/// Multi-task network; shapes: x n × n_in → logits n × n_tasks (row-major).
pub struct MultiTaskNet<T: Float> {
    switcher: Box<dyn Switcher<T>>,
    towers: Vec<Mlp<T>>,
    logits: Vec<T>,
    /// One task's column of the logit gradient, n × 1.
    d_tower: Vec<T>,
    n: usize,
}

impl<T: Float> MultiTaskNet<T> {
    /// One tower per switcher output: ReLU layers of widths `tower_hidden` (BatchNorm
    /// after each when `batch_norm`), then a linear map to one logit.
    pub fn new(
        switcher: Box<dyn Switcher<T>>,
        tower_hidden: &[usize],
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        let widths: Vec<usize> = tower_hidden.iter().copied().chain([1]).collect();
        let towers = (0..switcher.n_outputs())
            .map(|_| {
                Mlp::new(
                    switcher.out_dim(),
                    &widths,
                    Activation::Identity,
                    batch_norm,
                    rng,
                )
            })
            .collect();
        MultiTaskNet {
            switcher,
            towers,
            logits: Vec::new(),
            d_tower: Vec::new(),
            n: 0,
        }
    }

    pub fn n_in(&self) -> usize {
        self.switcher.in_dim()
    }

    pub fn n_tasks(&self) -> usize {
        self.towers.len()
    }

    pub fn switcher(&self) -> &dyn Switcher<T> {
        self.switcher.as_ref()
    }

    /// Logits for `n` rows of `x` (n × n_in), as n × n_tasks.
    pub fn forward(&mut self, x: &[T], n: usize, train: bool) -> &[T] {
        assert!(
            x.len() >= n * self.n_in(),
            "MultiTaskNet::forward: input too short"
        );
        self.n = n;
        let t_count = self.towers.len();
        self.switcher.forward(x, n, train);
        let logits = ensure_len(&mut self.logits, n * t_count);
        for (t, tower) in self.towers.iter_mut().enumerate() {
            let y = tower.forward(self.switcher.output(t), n, train);
            for (i, &v) in y.iter().enumerate() {
                logits[i * t_count + t] = v;
            }
        }
        &self.logits[..n * t_count]
    }

    /// Backward from `d_logits` (n × n_tasks) for the last forward: parameter gradients
    /// and `dx` (n × n_in) accumulate.
    pub fn backward(&mut self, x: &[T], d_logits: &[T], dx: Option<&mut [T]>, n: usize) {
        let t_count = self.towers.len();
        assert!(
            d_logits.len() >= n * t_count,
            "MultiTaskNet::backward: d_logits too short"
        );
        debug_assert_eq!(
            n, self.n,
            "MultiTaskNet::backward: batch differs from forward"
        );
        for (t, tower) in self.towers.iter_mut().enumerate() {
            let dy = ensure_len(&mut self.d_tower, n);
            for (i, d) in dy.iter_mut().enumerate() {
                *d = d_logits[i * t_count + t];
            }
            let (input, d_input) = self.switcher.output_and_grad(t);
            tower.backward(input, dy, Some(d_input), n);
        }
        self.switcher.backward(x, n, dx);
    }

    /// Short text tree of the parts with parameter counts.
    pub fn describe(&self) -> String {
        let tower_params: usize = self.towers.iter().map(Mlp::param_count).sum();
        let total = self.switcher.param_count() + tower_params;
        let mut s = format!(
            "MultiTaskNet: {} inputs → {} task logits ({total} params)\n",
            self.n_in(),
            self.n_tasks()
        );
        for (i, line) in self.switcher.describe().iter().enumerate() {
            let head = if i == 0 { "switcher: " } else { "" };
            s.push_str(&format!("  {head}{line}\n"));
        }
        if let Some(t) = self.towers.first() {
            let dims: Vec<String> = std::iter::once(t.n_in())
                .chain(t.layers().iter().map(|l| l.n_out()))
                .map(|d| d.to_string())
                .collect();
            let bn = if t.has_batch_norm() {
                ", batch norm"
            } else {
                ""
            };
            s.push_str(&format!(
                "  towers: {} × {}{bn} ({tower_params} params)\n",
                self.towers.len(),
                dims.join("→")
            ));
        }
        s
    }
}

impl<T: Float> Module<T> for MultiTaskNet<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        with_name(prefix, format_args!("switcher."), |p| {
            self.switcher.visit_params(p, f)
        });
        for (t, tower) in self.towers.iter_mut().enumerate() {
            with_name(prefix, format_args!("towers.{t}."), |p| {
                tower.visit_params(p, f)
            });
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        with_name(prefix, format_args!("switcher."), |p| {
            self.switcher.visit_buffers(p, f)
        });
        for (t, tower) in self.towers.iter_mut().enumerate() {
            with_name(prefix, format_args!("towers.{t}."), |p| {
                tower.visit_buffers(p, f)
            });
        }
    }
}
