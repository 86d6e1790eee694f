//! [`Towers`]: one tower per task (hidden ReLU layers, then a linear head to one logit),
//! shared by [`MultiTaskNet`](crate::MultiTaskNet) and [`TreeNet`](crate::TreeNet), with
//! optional AITM transfers (Xi et al., KDD 2021) from one task's tower to another's.
//!
//! **Transfer `s → t`.** Let `q_t` (width h) be tower t's last hidden representation (its
//! input when it has no hidden layer) and `r_s` the representation that feeds tower s's
//! head (`q_s`, or tower s's own AIT output when s receives a transfer itself, so chains
//! pass information along as in the paper). Then
//! `p = ReLU(r_s·W_T + b_T)`, and for `u ∈ {p, q_t}` with `v_u = u·W_1 + b_1`,
//! `k_u = u·W_2 + b_2`, `r_u = u·W_3 + b_3` (all h → h, *with* biases), the AIT unit gives
//! `w_u = softmax_u(⟨k_u, r_u⟩ / √h)` and `z_t = Σ_u w_u·v_u`; tower t's logit is then
//! `head(z_t)` instead of `head(q_t)`. Tower s is unchanged and also learns from t's
//! loss through `p`.
//!
//! **Calling protocol.** Run [`Towers::forward_task`] in [`Towers::order`] (sources before
//! their receivers) and [`Towers::backward_task`] in the reverse order, each task on the
//! same rows as its transfer source (in the models: the rows of one cell, or all rows).

mod export;

use mfh_nn::{ensure_len, with_name, Activation, Float, Linear, Mlp, Module, Rng};

/// One task's hidden layers and head.
struct Tower<T: Float> {
    n_in: usize,
    hidden: Option<Mlp<T>>,
    /// h → 1, named `layer{L}` after the L hidden layers (the names of a single MLP).
    head: Linear<T>,
    /// A copy of the input, kept only when there is no hidden layer and the tower feeds a
    /// transfer (the receiver runs after the caller's input buffer may have moved on).
    input: Vec<T>,
    /// m × 1 logits of the last forward.
    logit: Vec<T>,
    m: usize,
}

/// The transfer into one task and its AIT unit; buffers are for the last forward.
struct Ait<T: Float> {
    src: usize,
    h: usize,
    transfer: Linear<T>,
    value: Linear<T>,
    key: Linear<T>,
    query: Linear<T>,
    /// `[p; q]`, 2m × h: the transferred p in the first m rows.
    u: Vec<T>,
    v: Vec<T>,
    k: Vec<T>,
    r: Vec<T>,
    /// Attention weights, 2m: `w[i]` for p, `w[m + i]` for q of row i.
    w: Vec<T>,
    /// Output z, m × h.
    z: Vec<T>,
    du: Vec<T>,
    dv: Vec<T>,
    dk: Vec<T>,
    dr: Vec<T>,
}

/// Task towers; shapes: per task, x m × n_in → logits m × 1.
pub struct Towers<T: Float> {
    towers: Vec<Tower<T>>,
    /// Per task: the incoming transfer, if any.
    ait: Vec<Option<Ait<T>>>,
    /// Per task: d loss / d (representation feeding the head), m × h; receivers add the
    /// transfer's gradient into their source's.
    d_rep: Vec<Vec<T>>,
    is_source: Vec<bool>,
    order: Vec<usize>,
}

/// The representation feeding task t's head (m × h): its AIT output, hidden output, or
/// input (`x` for the task being run, the kept copy for a transfer source).
fn rep<'a, T: Float>(
    towers: &'a [Tower<T>],
    ait: &'a [Option<Ait<T>>],
    is_source: &[bool],
    t: usize,
    x: &'a [T],
) -> &'a [T] {
    let tw = &towers[t];
    match (&ait[t], &tw.hidden) {
        (Some(a), _) => &a.z[..tw.m * a.h],
        (None, Some(mlp)) => mlp.output(),
        (None, None) if is_source[t] => &tw.input[..tw.m * tw.n_in],
        (None, None) => &x[..tw.m * tw.n_in],
    }
}

impl<T: Float> Towers<T> {
    /// One tower per entry of `hidden` (its hidden widths) over `n_in` inputs, BatchNorm
    /// after every hidden layer when `batch_norm`; `transfers` are task pairs `(s, t)`
    /// (s → t). Tower parameters are drawn first, in task order, then the transfers' in
    /// the order given, so towers start the same with or without transfers. `name` labels
    /// tasks in errors.
    pub fn new(
        n_in: usize,
        hidden: &[Vec<usize>],
        batch_norm: bool,
        transfers: &[(usize, usize)],
        name: &dyn Fn(usize) -> String,
        rng: &mut Rng,
    ) -> Result<Self, String> {
        let n_tasks = hidden.len();
        let towers: Vec<Tower<T>> = hidden
            .iter()
            .map(|widths| {
                let mlp = (!widths.is_empty())
                    .then(|| Mlp::new(n_in, widths, Activation::Relu, batch_norm, rng));
                let h = mlp.as_ref().map_or(n_in, |m| m.out_dim());
                Tower {
                    n_in,
                    hidden: mlp,
                    head: Linear::new(h, 1, Activation::Identity, rng),
                    input: Vec::new(),
                    logit: Vec::new(),
                    m: 0,
                }
            })
            .collect();
        let width = |t: usize| towers[t].head.n_in();
        let mut src_of: Vec<Option<usize>> = vec![None; n_tasks];
        for &(s, t) in transfers {
            if s >= n_tasks || t >= n_tasks {
                return Err(format!("transfer ({s}, {t}): only {n_tasks} tasks"));
            }
            if s == t {
                return Err(format!("transfer into {} from itself", name(t)));
            }
            if let Some(p) = src_of[t] {
                return Err(format!(
                    "{} receives two transfers (from {} and {})",
                    name(t),
                    name(p),
                    name(s)
                ));
            }
            if width(s) != width(t) {
                return Err(format!(
                    "transfer {} → {}: tower widths differ ({} vs {}); the last hidden layers of a transfer pair must match",
                    name(s),
                    name(t),
                    width(s),
                    width(t)
                ));
            }
            src_of[t] = Some(s);
        }
        // Depth along the transfer chain; a chain longer than the task count is a cycle.
        let mut depth = vec![0usize; n_tasks];
        for (t, d) in depth.iter_mut().enumerate() {
            let mut k = t;
            while let Some(s) = src_of[k] {
                *d += 1;
                if *d > n_tasks {
                    return Err(format!("transfers form a cycle through {}", name(t)));
                }
                k = s;
            }
        }
        let mut order: Vec<usize> = (0..n_tasks).collect();
        order.sort_by_key(|&t| depth[t]);
        let mut is_source = vec![false; n_tasks];
        let mut ait: Vec<Option<Ait<T>>> = (0..n_tasks).map(|_| None).collect();
        for &(s, t) in transfers {
            is_source[s] = true;
            let h = width(t);
            ait[t] = Some(Ait {
                src: s,
                h,
                transfer: Linear::new(h, h, Activation::Relu, rng),
                value: Linear::new(h, h, Activation::Identity, rng),
                key: Linear::new(h, h, Activation::Identity, rng),
                query: Linear::new(h, h, Activation::Identity, rng),
                u: Vec::new(),
                v: Vec::new(),
                k: Vec::new(),
                r: Vec::new(),
                w: Vec::new(),
                z: Vec::new(),
                du: Vec::new(),
                dv: Vec::new(),
                dk: Vec::new(),
                dr: Vec::new(),
            });
        }
        Ok(Towers {
            towers,
            ait,
            d_rep: vec![Vec::new(); n_tasks],
            is_source,
            order,
        })
    }

    pub fn n_tasks(&self) -> usize {
        self.towers.len()
    }

    /// Tasks in the order to run them forward: every transfer source before its receiver.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Task pairs `(s, t)` of the transfers, by receiver.
    pub fn transfers(&self) -> Vec<(usize, usize)> {
        (0..self.n_tasks())
            .filter_map(|t| self.ait[t].as_ref().map(|a| (a.src, t)))
            .collect()
    }

    /// Layer widths of task t's tower: input, hidden widths, 1.
    pub fn dims(&self, t: usize) -> Vec<usize> {
        let tw = &self.towers[t];
        let hidden = tw.hidden.as_ref().map_or(&[][..], |m| m.layers());
        std::iter::once(tw.n_in)
            .chain(hidden.iter().map(|l| l.n_out()))
            .chain([1])
            .collect()
    }

    pub fn has_batch_norm(&self) -> bool {
        self.towers
            .iter()
            .any(|t| t.hidden.as_ref().is_some_and(|m| m.has_batch_norm()))
    }

    /// Trainable scalars of the towers proper (hidden layers and heads).
    pub fn tower_param_count(&self) -> usize {
        self.towers
            .iter()
            .map(|t| t.hidden.as_ref().map_or(0, |m| m.param_count()) + t.head.param_count())
            .sum()
    }

    /// Trainable scalars of the transfers and AIT units.
    pub fn transfer_param_count(&self) -> usize {
        self.ait
            .iter()
            .flatten()
            .map(|a| {
                a.transfer.param_count()
                    + a.value.param_count()
                    + a.key.param_count()
                    + a.query.param_count()
            })
            .sum()
    }

    /// Logits (m × 1) of task t for `m` rows of `x` (m × n_in); a transfer source must
    /// have run on the same rows just before (see the module docs).
    pub fn forward_task(&mut self, t: usize, x: &[T], m: usize, train: bool) -> &[T] {
        let n_in = self.towers[t].n_in;
        assert!(x.len() >= m * n_in, "Towers::forward_task: input too short");
        let tw = &mut self.towers[t];
        tw.m = m;
        if let Some(mlp) = &mut tw.hidden {
            mlp.forward(x, m, train);
        } else if self.is_source[t] {
            ensure_len(&mut tw.input, m * n_in).copy_from_slice(&x[..m * n_in]);
        }
        let h = tw.head.n_in();
        // Zeroed here, before any receiver's backward adds into it.
        let d_rep = ensure_len(&mut self.d_rep[t], m * h);
        if train {
            d_rep.fill(T::zero());
        }
        if let Some(mut a) = self.ait[t].take() {
            let s = a.src;
            assert_eq!(
                self.towers[s].m, m,
                "Towers::forward_task: task {t} runs on other rows than its transfer source {s}"
            );
            let src = rep(&self.towers, &self.ait, &self.is_source, s, &[]);
            // With the unit taken out, task t's representation reads as its q.
            let q = rep(&self.towers, &self.ait, &self.is_source, t, x);
            a.forward(src, q, m);
            self.ait[t] = Some(a);
        }
        // The head's output buffer lives in the tower the input is read from: move it out.
        let mut logit = std::mem::take(&mut self.towers[t].logit);
        let r = rep(&self.towers, &self.ait, &self.is_source, t, x);
        self.towers[t].head.forward(r, m, ensure_len(&mut logit, m));
        self.towers[t].logit = logit;
        &self.towers[t].logit[..m]
    }

    /// Backward of task t from `dy` (m logit gradients, used as scratch) for its last
    /// forward on `x`; parameter gradients, the transfer source's representation gradient
    /// and `dx` (m × n_in) accumulate. Receivers of t must have run their backward first.
    pub fn backward_task(&mut self, t: usize, x: &[T], dy: &mut [T], dx: &mut [T], m: usize) {
        debug_assert_eq!(m, self.towers[t].m, "Towers::backward_task: batch differs");
        let Towers {
            towers,
            ait,
            d_rep,
            is_source,
            ..
        } = self;
        let h = towers[t].head.n_in();
        let mut unit = ait[t].take();
        {
            let Tower {
                hidden,
                head,
                logit,
                ..
            } = &mut towers[t];
            let r: &[T] = match (&unit, &*hidden) {
                (Some(a), _) => &a.z[..m * h],
                (None, Some(mlp)) => mlp.output(),
                (None, None) => &x[..m * h],
            };
            head.backward(
                r,
                &logit[..m],
                &mut dy[..m],
                Some(&mut d_rep[t][..m * h]),
                m,
            );
        }
        // The gradient of q: the AIT unit's share when t receives, else all of d_rep.
        let dq: &mut [T] = match &mut unit {
            Some(a) => {
                let s = a.src;
                a.backward(&d_rep[t][..m * h], m);
                let src = rep(towers, ait, is_source, s, &[]);
                let (dp, dq) = a.du.split_at_mut(m * h);
                a.transfer
                    .backward(src, &a.u[..m * h], dp, Some(&mut d_rep[s][..m * h]), m);
                &mut dq[..m * h]
            }
            None => &mut d_rep[t][..m * h],
        };
        match &mut towers[t].hidden {
            Some(mlp) => mlp.backward(x, dq, Some(dx), m),
            None => {
                for (d, g) in dx[..m * h].iter_mut().zip(dq.iter()) {
                    *d += *g;
                }
            }
        }
        ait[t] = unit;
    }
}

impl<T: Float> Ait<T> {
    /// `z` from the source representation `src` and the receiver's `q` (both m × h).
    fn forward(&mut self, src: &[T], q: &[T], m: usize) {
        let h = self.h;
        let u = ensure_len(&mut self.u, 2 * m * h);
        let (p, qq) = u.split_at_mut(m * h);
        self.transfer.forward(&src[..m * h], m, p);
        qq.copy_from_slice(&q[..m * h]);
        let u = &self.u[..2 * m * h];
        self.value
            .forward(u, 2 * m, ensure_len(&mut self.v, 2 * m * h));
        self.key
            .forward(u, 2 * m, ensure_len(&mut self.k, 2 * m * h));
        self.query
            .forward(u, 2 * m, ensure_len(&mut self.r, 2 * m * h));
        let inv = T::one() / T::from_usize(h).sqrt();
        let w = ensure_len(&mut self.w, 2 * m);
        let z = ensure_len(&mut self.z, m * h);
        for i in 0..m {
            let score = |j: usize| {
                let row = j * h..(j + 1) * h;
                mfh_nn::kernels::dot(&self.k[row.clone()], &self.r[row]) * inv
            };
            // Softmax over the pair, the larger score subtracted so exp() stays finite.
            let (s0, s1) = (score(i), score(m + i));
            let mx = s0.max(s1);
            let (e0, e1) = ((s0 - mx).exp(), (s1 - mx).exp());
            let (w0, w1) = (e0 / (e0 + e1), e1 / (e0 + e1));
            w[i] = w0;
            w[m + i] = w1;
            let (v0, v1) = (
                &self.v[i * h..(i + 1) * h],
                &self.v[(m + i) * h..(m + i + 1) * h],
            );
            for ((zc, &a), &b) in z[i * h..(i + 1) * h].iter_mut().zip(v0).zip(v1) {
                *zc = w0 * a + w1 * b;
            }
        }
    }

    /// From `dz` (m × h): parameter gradients of the value/key/query maps and
    /// `du` = d loss / d [p; q] (overwritten). The transfer's backward is the caller's.
    fn backward(&mut self, dz: &[T], m: usize) {
        let h = self.h;
        let inv = T::one() / T::from_usize(h).sqrt();
        let dv = ensure_len(&mut self.dv, 2 * m * h);
        let dk = ensure_len(&mut self.dk, 2 * m * h);
        let dr = ensure_len(&mut self.dr, 2 * m * h);
        for i in 0..m {
            let dzi = &dz[i * h..(i + 1) * h];
            let rows = [i, m + i];
            let g = rows.map(|j| mfh_nn::kernels::dot(dzi, &self.v[j * h..(j + 1) * h]));
            let wi = rows.map(|j| self.w[j]);
            let mean = wi[0] * g[0] + wi[1] * g[1];
            for (u, &j) in rows.iter().enumerate() {
                let row = j * h..(j + 1) * h;
                for (d, &g) in dv[row.clone()].iter_mut().zip(dzi) {
                    *d = wi[u] * g;
                }
                // d score_u, with the 1/√h of the score folded in.
                let ds = wi[u] * (g[u] - mean) * inv;
                for (d, &r) in dk[row.clone()].iter_mut().zip(&self.r[row.clone()]) {
                    *d = ds * r;
                }
                for (d, &k) in dr[row.clone()].iter_mut().zip(&self.k[row]) {
                    *d = ds * k;
                }
            }
        }
        let du = ensure_len(&mut self.du, 2 * m * h);
        du.fill(T::zero());
        let u = &self.u[..2 * m * h];
        let n2 = 2 * m;
        self.value
            .backward(u, &self.v[..n2 * h], dv, Some(&mut *du), n2);
        self.key
            .backward(u, &self.k[..n2 * h], dk, Some(&mut *du), n2);
        self.query.backward(u, &self.r[..n2 * h], dr, Some(du), n2);
    }
}

impl<T: Float> Module<T> for Towers<T> {
    /// Per task `towers.{t}.`: `layer{l}`/`bn{l}` (hidden), `layer{L}` (head), then for a
    /// receiver `transfer`, `ait.value`, `ait.key`, `ait.query`.
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        for (t, (tw, a)) in self.towers.iter_mut().zip(&mut self.ait).enumerate() {
            with_name(prefix, format_args!("towers.{t}."), |p| {
                let n_hidden = tw.hidden.as_ref().map_or(0, |m| m.layers().len());
                if let Some(mlp) = &mut tw.hidden {
                    mlp.visit_params(p, f);
                }
                with_name(p, format_args!("layer{n_hidden}."), |p| {
                    tw.head.visit_params(p, f)
                });
                if let Some(a) = a {
                    with_name(p, format_args!("transfer."), |p| {
                        a.transfer.visit_params(p, f)
                    });
                    with_name(p, format_args!("ait.value."), |p| {
                        a.value.visit_params(p, f)
                    });
                    with_name(p, format_args!("ait.key."), |p| a.key.visit_params(p, f));
                    with_name(p, format_args!("ait.query."), |p| {
                        a.query.visit_params(p, f)
                    });
                }
            });
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        for (t, tw) in self.towers.iter_mut().enumerate() {
            if let Some(mlp) = &mut tw.hidden {
                with_name(prefix, format_args!("towers.{t}."), |p| {
                    mlp.visit_buffers(p, f)
                });
            }
        }
    }
}
