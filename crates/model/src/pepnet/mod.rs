//! PEPNet (Chang et al., "PEPNet: Parameter and Embedding Personalized Network for
//! Infusing with Personalized Prior Information", KDD 2023) over the task grid.
//!
//! **Priors** `p`: the input columns of the prior features (by default the user and item
//! ID embeddings; `priors` names them) and, with `facet_priors`, the one-hot values of
//! every facet of the row's cell. **Gate NU** (the paper's gate neural unit): two layers,
//! `δ = γ · sigmoid(ReLU(u·W₁ + b₁)·W₂ + b₂)`, so that δ ∈ (0, γ) and δ = 1 leaves a value
//! as it is (γ = 2 by default).
//!
//! - **EPNet** scales the whole network input: `x' = δ_ep ⊙ x` with
//!   `δ_ep = GateNU_ep([p, sg(x)])` (n_in outputs); `sg` stops the gradient, so the gate
//!   learns from the priors without pulling on the general embeddings.
//! - **PPNet** scales every hidden layer of every task tower: tower t's layer l is
//!   `h_l = δ_{l,t} ⊙ ReLU(h_{l-1}·W + b)` with `h_0 = x'`, and `δ_l = GateNU_l([p,
//!   sg(x')])` gives all towers' scales of layer l at once (tasks × width outputs).
//!
//! One tower per task of the grid, each ending in one logit, as in every model of the zoo;
//! eval passes given the rows' cells run each tower on its own cell's rows only.
//! Gradients reach the prior columns of the input through both gates (the ID embeddings
//! learn to personalise), the general input only through the towers.

mod export;

use crate::model::GridShape;
use crate::net::rows_by_cell;
use crate::shape::{check_widths, InputField};
use mfh_nn::{
    ensure_len, gather_rows, matmul, with_name, Activation, Float, Linear, Module, Rng, Rows,
    RowsMut,
};
use serde::{Deserialize, Serialize};

/// A PEPNet section (`type = "pepnet"`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PepnetSpec {
    /// Hidden widths of each task tower (each scaled by its PPNet gate).
    pub tower: Vec<usize>,
    /// Width of each gate's hidden layer.
    #[serde(default = "default_gate_hidden")]
    pub gate_hidden: usize,
    /// The gates' scale γ: δ = γ·sigmoid(·), in (0, γ).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Embedded features whose input columns feed the gates; by default (when training
    /// from a config) the ID features joined to side tables (user and item IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priors: Option<Vec<String>>,
    /// The row's facet values (one-hot) feed the gates too.
    #[serde(default = "yes")]
    pub facet_priors: bool,
    /// `[offset, width]` of each prior in the network input, resolved from `priors` when
    /// the model is built over its data (written into model folders; not set by hand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prior_columns: Vec<[usize; 2]>,
}

fn default_gate_hidden() -> usize {
    64
}

fn default_gamma() -> f64 {
    2.0
}

fn yes() -> bool {
    true
}

impl PepnetSpec {
    /// Checks the spec on its own; errors name the section's keys.
    pub fn validate(&self) -> Result<(), String> {
        check_widths("tower", &self.tower, true)?;
        if self.gate_hidden == 0 {
            return Err("gate_hidden: must be at least 1".into());
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(format!(
                "gamma: must be a positive number, not {}",
                self.gamma
            ));
        }
        Ok(())
    }

    /// Resolves `priors` against the network's input fields into `prior_columns`.
    pub fn bind(&mut self, fields: &[InputField]) -> Result<(), String> {
        let names = self.priors.clone().unwrap_or_default();
        let mut cols = Vec::with_capacity(names.len());
        for name in &names {
            let f = fields.iter().find(|f| &f.name == name).ok_or_else(|| {
                let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                format!(
                    "priors: `{name}` is not an input feature (features: {})",
                    known.join(", ")
                )
            })?;
            cols.push([f.offset, f.width]);
        }
        self.prior_columns = cols;
        Ok(())
    }

    /// Parameters of the model over `n_in` inputs and `n_tasks` tasks, not counting the
    /// gates' prior inputs (a lower bound).
    pub(crate) fn min_params(&self, n_tasks: usize, n_in: usize) -> u128 {
        let g = self.gate_hidden as u128;
        let mut total = crate::unit::mlp_params(n_in, &self.tower)
            .saturating_add(*self.tower.last().unwrap_or(&0) as u128 + 1)
            .saturating_mul(n_tasks as u128);
        total = total.saturating_add((n_in as u128).saturating_mul(2).saturating_mul(g));
        for &w in &self.tower {
            total = total.saturating_add(
                (n_in as u128)
                    .saturating_mul(g)
                    .saturating_add(g.saturating_mul(w as u128).saturating_mul(n_tasks as u128)),
            );
        }
        total
    }
}

/// Gate NU: `δ = γ·sigmoid(ReLU(u·W₁ + b₁)·W₂ + b₂)`; buffers are for the last forward.
struct GateNu<T: Float> {
    l1: Linear<T>,
    l2: Linear<T>,
    gamma: T,
    h: Vec<T>,
    /// δ, n × n_out.
    d: Vec<T>,
    dh: Vec<T>,
}

impl<T: Float> GateNu<T> {
    fn new(n_in: usize, hidden: usize, n_out: usize, gamma: f64, rng: &mut Rng) -> Self {
        GateNu {
            l1: Linear::new(n_in, hidden, Activation::Relu, rng),
            l2: Linear::new(hidden, n_out, Activation::Identity, rng),
            gamma: T::from_f64(gamma),
            h: Vec::new(),
            d: Vec::new(),
            dh: Vec::new(),
        }
    }

    fn n_out(&self) -> usize {
        self.l2.n_out()
    }

    fn forward(&mut self, u: &[T], n: usize) {
        let (gh, no) = (self.l1.n_out(), self.l2.n_out());
        let h = ensure_len(&mut self.h, n * gh);
        self.l1.forward(u, n, h);
        let d = ensure_len(&mut self.d, n * no);
        self.l2.forward(h, n, d);
        let gamma = self.gamma;
        for v in d.iter_mut() {
            *v = gamma / (T::one() + (-*v).exp());
        }
    }

    fn delta(&self, n: usize) -> &[T] {
        &self.d[..n * self.l2.n_out()]
    }

    /// Backward from `dd` (d loss / dδ, n × n_out; used as scratch) for the last forward
    /// on `u`: parameter gradients accumulate, and so does `d_prior` (n × n_prior), the
    /// gradient of the first `n_prior` columns of `u`; the rest of `u` is not
    /// differentiated (stopped gradient).
    fn backward(&mut self, u: &[T], dd: &mut [T], n: usize, n_prior: usize, d_prior: &mut [T]) {
        let (ni, gh, no) = (self.l1.n_in(), self.l1.n_out(), self.l2.n_out());
        let gamma = self.gamma;
        // dδ/dz = γσ(1 − σ) = δ(1 − δ/γ).
        for (g, &d) in dd[..n * no].iter_mut().zip(&self.d[..n * no]) {
            *g *= d * (T::one() - d / gamma);
        }
        let dh = ensure_len(&mut self.dh, n * gh);
        self.l2.backward_strided(
            Rows::new(&self.h[..n * gh], gh),
            Rows::new(&self.d[..n * no], no),
            RowsMut::new(&mut dd[..n * no], no),
            Some(RowsMut::new(dh, gh)),
            false,
            n,
        );
        self.l1.backward_strided(
            Rows::new(&u[..n * ni], ni),
            Rows::new(&self.h[..n * gh], gh),
            RowsMut::new(&mut self.dh[..n * gh], gh),
            None,
            true,
            n,
        );
        if n_prior > 0 {
            matmul(
                n,
                n_prior,
                gh,
                T::one(),
                &self.dh[..n * gh],
                gh,
                false,
                &self.l1.weight()[..n_prior * gh],
                gh,
                true,
                T::one(),
                &mut d_prior[..n * n_prior],
                n_prior,
            );
        }
    }

    fn param_count(&self) -> usize {
        self.l1.param_count() + self.l2.param_count()
    }
}

impl<T: Float> Module<T> for GateNu<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        with_name(prefix, format_args!("layer0."), |p| {
            self.l1.visit_params(p, f)
        });
        with_name(prefix, format_args!("layer1."), |p| {
            self.l2.visit_params(p, f)
        });
    }
}

/// Task t's scales of every tower layer (n rows each, by stride) out of the PPNet gates'
/// outputs, which hold all `nt` tasks' side by side.
fn task_gates<'a, T: Float>(
    pp: &'a [GateNu<T>],
    widths: &[usize],
    t: usize,
    n: usize,
    nt: usize,
) -> Vec<Rows<'a, T>> {
    widths
        .iter()
        .zip(pp)
        .map(|(&w, g)| Rows::new(&g.delta(n)[t * w..], nt * w))
        .collect()
}

/// One task's tower: hidden layers (each output scaled by its gate), then the head.
struct Tower<T: Float> {
    layers: Vec<Linear<T>>,
    head: Linear<T>,
    /// Per layer: ReLU output, and the gated output, m × width.
    a: Vec<Vec<T>>,
    h: Vec<Vec<T>>,
    logit: Vec<T>,
    da: Vec<T>,
    dh: Vec<T>,
    m: usize,
}

impl<T: Float> Tower<T> {
    /// Logits of `m` rows of `x` (m × n_in); `delta(l)` is layer l's gate (m rows, its
    /// width, by stride).
    fn forward(&mut self, x: &[T], m: usize, delta: &[Rows<'_, T>]) -> &[T] {
        self.m = m;
        for l in 0..self.layers.len() {
            let w = self.layers[l].n_out();
            let (prev, rest) = self.h.split_at_mut(l);
            let input: &[T] = if l == 0 { x } else { &prev[l - 1] };
            let a = ensure_len(&mut self.a[l], m * w);
            self.layers[l].forward(&input[..m * self.layers[l].n_in()], m, a);
            let h = ensure_len(&mut rest[0], m * w);
            let d = delta[l];
            for i in 0..m {
                let di = &d.data[i * d.stride..i * d.stride + w];
                for ((hv, &av), &dv) in h[i * w..(i + 1) * w].iter_mut().zip(&a[i * w..]).zip(di) {
                    *hv = av * dv;
                }
            }
        }
        let last = self.layers.len() - 1;
        let wl = self.layers[last].n_out();
        let logit = ensure_len(&mut self.logit, m);
        self.head.forward(&self.h[last][..m * wl], m, logit);
        &self.logit[..m]
    }

    /// Backward from `dy` (m logit gradients, scratch) for the last forward on `x`:
    /// parameter gradients and `dx` (m × n_in) accumulate; `d_delta(l)` receives (is
    /// overwritten with) d loss / d(layer l's gate).
    fn backward(
        &mut self,
        x: &[T],
        dy: &mut [T],
        dx: &mut [T],
        delta: &[Rows<'_, T>],
        d_delta: &mut [RowsMut<'_, T>],
    ) {
        let m = self.m;
        let last = self.layers.len() - 1;
        let wl = self.layers[last].n_out();
        ensure_len(&mut self.dh, m * wl);
        self.head.backward_strided(
            Rows::new(&self.h[last][..m * wl], wl),
            Rows::new(&self.logit[..m], 1),
            RowsMut::new(&mut dy[..m], 1),
            Some(RowsMut::new(&mut self.dh[..m * wl], wl)),
            false,
            m,
        );
        for l in (0..self.layers.len()).rev() {
            let w = self.layers[l].n_out();
            let ni = self.layers[l].n_in();
            let da = ensure_len(&mut self.da, m * w);
            let d = delta[l];
            let dd = &mut d_delta[l];
            let a = &self.a[l];
            for i in 0..m {
                let row = i * w..(i + 1) * w;
                let di = &d.data[i * d.stride..i * d.stride + w];
                let ddi = &mut dd.data[i * dd.stride..i * dd.stride + w];
                for j in 0..w {
                    let g = self.dh[row.start + j];
                    ddi[j] = g * a[row.start + j];
                    da[row.start + j] = g * di[j];
                }
            }
            let y = Rows::new(&self.a[l][..m * w], w);
            if l == 0 {
                self.layers[0].backward_strided(
                    Rows::new(&x[..m * ni], ni),
                    y,
                    RowsMut::new(&mut self.da[..m * w], w),
                    Some(RowsMut::new(&mut dx[..m * ni], ni)),
                    true,
                    m,
                );
            } else {
                let dh = ensure_len(&mut self.dh, m * ni);
                self.layers[l].backward_strided(
                    Rows::new(&self.h[l - 1][..m * ni], ni),
                    y,
                    RowsMut::new(&mut self.da[..m * w], w),
                    Some(RowsMut::new(dh, ni)),
                    false,
                    m,
                );
            }
        }
    }

    fn param_count(&self) -> usize {
        self.layers.iter().map(Linear::param_count).sum::<usize>() + self.head.param_count()
    }
}

/// PEPNet over a task grid; shapes: x n × n_in (with each row's cell) → logits n × tasks.
pub struct Pepnet<T: Float> {
    n_in: usize,
    n_tasks: usize,
    n_cells: usize,
    prior_cols: Vec<(usize, usize)>,
    prior_names: Vec<String>,
    /// Per cell, the one-hot values of its facets (n_cells × n_facet_values); empty
    /// without facet priors.
    facet_onehot: Vec<T>,
    n_facet_values: usize,
    /// Prior columns in the gates' input: the prior features', then the facets'.
    n_prior: usize,
    gamma: f64,
    widths: Vec<usize>,
    ep: GateNu<T>,
    pp: Vec<GateNu<T>>,
    towers: Vec<Tower<T>>,
    cell_towers: bool,
    /// `[p, x]`, n × (n_prior + n_in), the EPNet gate's input.
    gin: Vec<T>,
    /// x' = δ_ep ⊙ x.
    xe: Vec<T>,
    /// `[p, x']`, the PPNet gates' input.
    pin: Vec<T>,
    logits: Vec<T>,
    n: usize,
    routed: bool,
    d_pp: Vec<Vec<T>>,
    d_xe: Vec<T>,
    d_ep: Vec<T>,
    d_prior: Vec<T>,
    dy: Vec<T>,
    cell_rows: Vec<Vec<usize>>,
    gathered: Vec<T>,
    gathered_d: Vec<Vec<T>>,
}

impl<T: Float> Pepnet<T> {
    /// The network of `spec` (bound: `prior_columns` resolved) over `shape` for `n_in`
    /// inputs, initialised deterministically from `seed`.
    pub fn new(
        spec: &PepnetSpec,
        shape: &GridShape,
        n_in: usize,
        seed: u64,
    ) -> Result<Self, String> {
        spec.validate()?;
        if n_in == 0 {
            return Err("input width is 0".into());
        }
        let names = spec.priors.as_deref().unwrap_or_default();
        if spec.prior_columns.len() != names.len() {
            return Err(format!(
                "priors: {} named but {} resolved to input columns",
                names.len(),
                spec.prior_columns.len()
            ));
        }
        let mut prior_cols = Vec::new();
        for &[off, w] in &spec.prior_columns {
            if w == 0 || off.checked_add(w).is_none_or(|e| e > n_in) {
                return Err(format!(
                    "prior_columns: [{off}, {w}] is outside the {n_in} input columns"
                ));
            }
            prior_cols.push((off, w));
        }
        let n_cells = shape.n_cells();
        let n_tasks = shape.n_tasks();
        let (facet_onehot, n_facet_values) = if spec.facet_priors {
            let sizes = shape.sizes();
            let nfv: usize = sizes[1..].iter().sum();
            let mut t = vec![T::zero(); n_cells * nfv];
            for c in 0..n_cells {
                let mut base = 0;
                for (d, &s) in sizes.iter().enumerate().skip(1) {
                    t[c * nfv + base + shape.cell_value(c, d)] = T::one();
                    base += s;
                }
            }
            (t, nfv)
        } else {
            (Vec::new(), 0)
        };
        let n_prior = prior_cols.iter().map(|c| c.1).sum::<usize>() + n_facet_values;
        let mut rng = Rng::new(seed);
        let gh = spec.gate_hidden;
        let ep = GateNu::new(n_prior + n_in, gh, n_in, spec.gamma, &mut rng);
        let pp: Vec<GateNu<T>> = spec
            .tower
            .iter()
            .map(|&w| GateNu::new(n_prior + n_in, gh, n_tasks * w, spec.gamma, &mut rng))
            .collect();
        let towers = (0..n_tasks)
            .map(|_| {
                let mut prev = n_in;
                let layers: Vec<Linear<T>> = spec
                    .tower
                    .iter()
                    .map(|&w| {
                        let l = Linear::new(prev, w, Activation::Relu, &mut rng);
                        prev = w;
                        l
                    })
                    .collect();
                let nl = layers.len();
                Tower {
                    layers,
                    head: Linear::new(prev, 1, Activation::Identity, &mut rng),
                    a: vec![Vec::new(); nl],
                    h: vec![Vec::new(); nl],
                    logit: Vec::new(),
                    da: Vec::new(),
                    dh: Vec::new(),
                    m: 0,
                }
            })
            .collect();
        Ok(Pepnet {
            n_in,
            n_tasks,
            n_cells,
            prior_cols,
            prior_names: names.to_vec(),
            facet_onehot,
            n_facet_values,
            n_prior,
            gamma: spec.gamma,
            widths: spec.tower.clone(),
            ep,
            pp,
            towers,
            cell_towers: true,
            gin: Vec::new(),
            xe: Vec::new(),
            pin: Vec::new(),
            logits: Vec::new(),
            n: 0,
            routed: false,
            d_pp: vec![Vec::new(); spec.tower.len()],
            d_xe: Vec::new(),
            d_ep: Vec::new(),
            d_prior: Vec::new(),
            dy: Vec::new(),
            cell_rows: Vec::new(),
            gathered: Vec::new(),
            gathered_d: vec![Vec::new(); spec.tower.len()],
        })
    }

    pub fn n_in(&self) -> usize {
        self.n_in
    }

    pub fn n_tasks(&self) -> usize {
        self.n_tasks
    }

    pub fn set_cell_towers(&mut self, on: bool) {
        self.cell_towers = on;
    }

    /// `[p, g]` for every row into `out` (n × (n_prior + n_in)): the prior columns of
    /// `x`, the facets' one-hot values, then `g`.
    fn gate_input(&self, x: &[T], g: &[T], cells: &[u32], n: usize, out: &mut Vec<T>) {
        let (ni, np, nfv) = (self.n_in, self.n_prior, self.n_facet_values);
        let wide = np + ni;
        let out = ensure_len(out, n * wide);
        for i in 0..n {
            let row = &mut out[i * wide..(i + 1) * wide];
            let xr = &x[i * ni..(i + 1) * ni];
            let mut k = 0;
            for &(off, w) in &self.prior_cols {
                row[k..k + w].copy_from_slice(&xr[off..off + w]);
                k += w;
            }
            if nfv > 0 {
                // A cell outside the grid has no facet value (and no tower reads it).
                let c = cells[i] as usize;
                match self.facet_onehot.get(c * nfv..(c + 1) * nfv) {
                    Some(v) => row[k..k + nfv].copy_from_slice(v),
                    None => row[k..k + nfv].fill(T::zero()),
                }
            }
            row[np..].copy_from_slice(&g[i * ni..(i + 1) * ni]);
        }
    }

    /// Fills the gates' inputs and runs both gate kinds on every row. The gates' general
    /// inputs are `x` and x' (or, in tests, the `frozen` values given for them).
    fn gates_forward(&mut self, x: &[T], frozen: Option<(&[T], &[T])>, cells: &[u32], n: usize) {
        let (ni, np) = (self.n_in, self.n_prior);
        let wide = np + ni;
        let mut gin = std::mem::take(&mut self.gin);
        self.gate_input(x, frozen.map_or(x, |f| f.0), cells, n, &mut gin);
        self.gin = gin;
        self.ep.forward(&self.gin[..n * wide], n);
        let d = self.ep.delta(n);
        let xe = ensure_len(&mut self.xe, n * ni);
        for ((e, &xv), &dv) in xe.iter_mut().zip(&x[..n * ni]).zip(d) {
            *e = xv * dv;
        }
        let mut pin = std::mem::take(&mut self.pin);
        self.gate_input(x, frozen.map_or(&self.xe[..], |f| f.1), cells, n, &mut pin);
        self.pin = pin;
        for gate in &mut self.pp {
            gate.forward(&self.pin[..n * wide], n);
        }
    }

    /// The towers' input x' = δ_ep ⊙ x of the last forward (n × n_in).
    #[doc(hidden)]
    pub fn scaled_input(&self) -> &[T] {
        &self.xe[..self.n * self.n_in]
    }

    /// A training-mode [`Pepnet::forward`] whose gates read the given values as their
    /// general inputs (`x_general` for EPNet's, `xe_general` for PPNet's) instead of `x`
    /// and x': with both held at a plain forward's values, finite differences see exactly
    /// the gradients with those inputs' gradients stopped, as [`Pepnet::backward`] gives
    /// them (for tests).
    #[doc(hidden)]
    pub fn forward_frozen(
        &mut self,
        x: &[T],
        x_general: &[T],
        xe_general: &[T],
        cells: &[u32],
        n: usize,
    ) -> &[T] {
        let len = n * self.n_in;
        assert!(
            x_general.len() >= len && xe_general.len() >= len,
            "Pepnet::forward_frozen: general inputs too short"
        );
        self.forward_with(x, Some((x_general, xe_general)), cells, n, true)
    }

    /// Logits n × tasks for `n` rows of `x`: every tower on every row, or in an eval pass
    /// given cells (and towers per cell on), each tower on its own cell's rows (the other
    /// tasks' logits 0).
    pub fn forward(&mut self, x: &[T], cells: &[u32], n: usize, train: bool) -> &[T] {
        self.forward_with(x, None, cells, n, train)
    }

    fn forward_with(
        &mut self,
        x: &[T],
        frozen: Option<(&[T], &[T])>,
        cells: &[u32],
        n: usize,
        train: bool,
    ) -> &[T] {
        assert!(x.len() >= n * self.n_in, "Pepnet::forward: input too short");
        assert!(cells.len() >= n, "Pepnet::forward: a cell per row");
        self.n = n;
        self.gates_forward(x, frozen, cells, n);
        let nt = self.n_tasks;
        let ni = self.n_in;
        let route = !train && self.cell_towers && self.n_cells > 1;
        self.routed = route;
        let Pepnet {
            towers,
            pp,
            xe,
            logits,
            cell_rows,
            gathered,
            gathered_d,
            widths,
            n_cells,
            ..
        } = self;
        let logits = ensure_len(logits, n * nt);
        if !route {
            for (t, tower) in towers.iter_mut().enumerate() {
                let y = tower.forward(&xe[..n * ni], n, &task_gates(pp, widths, t, n, nt));
                for (i, &v) in y.iter().enumerate() {
                    logits[i * nt + t] = v;
                }
            }
            return &self.logits[..n * nt];
        }
        logits.fill(T::zero());
        let nc = *n_cells;
        rows_by_cell(&cells[..n], nc, cell_rows);
        for (c, rows) in cell_rows.iter().enumerate() {
            let m = rows.len();
            if m == 0 {
                continue;
            }
            let input: &[T] = if m == n {
                &xe[..n * ni]
            } else {
                gather_rows(&xe[..n * ni], ni, rows, ensure_len(gathered, m * ni));
                &gathered[..m * ni]
            };
            for t in (c..nt).step_by(nc) {
                for (l, &w) in widths.iter().enumerate() {
                    let d = pp[l].delta(n);
                    let g = ensure_len(&mut gathered_d[l], m * w);
                    for (j, &r) in rows.iter().enumerate() {
                        let src = r * nt * w + t * w;
                        g[j * w..(j + 1) * w].copy_from_slice(&d[src..src + w]);
                    }
                }
                let delta: Vec<Rows<T>> = widths
                    .iter()
                    .zip(gathered_d.iter())
                    .map(|(&w, g)| Rows::new(&g[..m * w], w))
                    .collect();
                let y = towers[t].forward(input, m, &delta);
                for (&r, &v) in rows.iter().zip(y) {
                    logits[r * nt + t] = v;
                }
            }
        }
        &self.logits[..n * nt]
    }

    /// Backward from `d_logits` (n × tasks) for the last forward on `x`: parameter
    /// gradients and `dx` (n × n_in) accumulate. After an eval pass with towers per cell,
    /// every tower first runs again on every row.
    pub fn backward(
        &mut self,
        x: &[T],
        cells: &[u32],
        d_logits: &[T],
        dx: Option<&mut [T]>,
        n: usize,
    ) {
        debug_assert_eq!(n, self.n, "Pepnet::backward: batch differs from forward");
        if self.routed {
            let was = self.cell_towers;
            self.cell_towers = false;
            self.forward(x, cells, n, false);
            self.cell_towers = was;
        }
        let (ni, np, nt) = (self.n_in, self.n_prior, self.n_tasks);
        let wide = np + ni;
        let Pepnet {
            towers,
            pp,
            ep,
            xe,
            gin,
            pin,
            widths,
            d_pp,
            d_xe,
            d_ep,
            d_prior,
            dy,
            prior_cols,
            ..
        } = self;
        let d_xe = ensure_len(d_xe, n * ni);
        d_xe.fill(T::zero());
        for (l, &w) in widths.iter().enumerate() {
            ensure_len(&mut d_pp[l], n * nt * w);
        }
        for (t, tower) in towers.iter_mut().enumerate() {
            let dy = ensure_len(dy, n);
            for (i, d) in dy.iter_mut().enumerate() {
                *d = d_logits[i * nt + t];
            }
            // Each tower's gate gradient goes to its own columns of the layer's buffer.
            let delta = task_gates(pp, widths, t, n, nt);
            let mut d_delta: Vec<RowsMut<T>> = widths
                .iter()
                .zip(d_pp.iter_mut())
                .map(|(&w, b)| RowsMut::new(&mut b[t * w..n * nt * w], nt * w))
                .collect();
            tower.backward(&xe[..n * ni], dy, d_xe, &delta, &mut d_delta);
        }
        let d_prior = ensure_len(d_prior, n * np);
        d_prior.fill(T::zero());
        for (l, g) in pp.iter_mut().enumerate() {
            let w = widths[l];
            g.backward(&pin[..n * wide], &mut d_pp[l][..n * nt * w], n, np, d_prior);
        }
        // x' = δ_ep ⊙ x: dx += dx'·δ_ep, dδ_ep = dx'·x.
        let d_ep = ensure_len(d_ep, n * ni);
        let delta = ep.delta(n);
        for ((g, &dxe), &xv) in d_ep.iter_mut().zip(&d_xe[..n * ni]).zip(&x[..n * ni]) {
            *g = dxe * xv;
        }
        let mut dx = dx;
        if let Some(dx) = dx.as_deref_mut() {
            for ((d, &dxe), &dv) in dx[..n * ni].iter_mut().zip(&d_xe[..n * ni]).zip(delta) {
                *d += dxe * dv;
            }
        }
        ep.backward(&gin[..n * wide], &mut d_ep[..n * ni], n, np, d_prior);
        if let Some(dx) = dx {
            for i in 0..n {
                let mut k = 0;
                for &(off, w) in prior_cols.iter() {
                    for j in 0..w {
                        dx[i * ni + off + j] += d_prior[i * np + k + j];
                    }
                    k += w;
                }
            }
        }
    }

    pub fn param_count(&self) -> usize {
        self.ep.param_count()
            + self.pp.iter().map(GateNu::param_count).sum::<usize>()
            + self.towers.iter().map(Tower::param_count).sum::<usize>()
    }

    /// Short text tree of the parts with parameter counts.
    pub fn describe(&self) -> String {
        let pp: usize = self.pp.iter().map(GateNu::param_count).sum();
        let towers: usize = self.towers.iter().map(Tower::param_count).sum();
        let mut s = format!(
            "PEPNet: {} inputs → {} task logits ({} params)\n",
            self.n_in,
            self.n_tasks,
            self.param_count()
        );
        let mut parts: Vec<String> = self
            .prior_names
            .iter()
            .zip(&self.prior_cols)
            .map(|(name, (_, w))| format!("{name} ({w})"))
            .collect();
        if self.n_facet_values > 0 {
            parts.push(format!("{} facet values one-hot", self.n_facet_values));
        }
        s.push_str(&format!(
            "  priors: {} ({} inputs)\n",
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            },
            self.n_prior
        ));
        let gh = self.ep.l1.n_out();
        s.push_str(&format!(
            "  EPNet gate: {}→{gh}→{}, γ = {} ({} params)\n",
            self.n_prior + self.n_in,
            self.ep.n_out(),
            self.gamma,
            self.ep.param_count()
        ));
        let outs: Vec<String> = self.pp.iter().map(|g| g.n_out().to_string()).collect();
        s.push_str(&format!(
            "  PPNet gates: one per tower layer, {}→{gh}→[{}] ({pp} params)\n",
            self.n_prior + self.n_in,
            outs.join(", ")
        ));
        let dims: Vec<String> = std::iter::once(self.n_in)
            .chain(self.widths.iter().copied())
            .chain([1])
            .map(|d| d.to_string())
            .collect();
        s.push_str(&format!(
            "  towers: {} × {}, each hidden layer gated ({towers} params)\n",
            self.n_tasks,
            dims.join("→")
        ));
        s
    }
}

impl<T: Float> Module<T> for Pepnet<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        with_name(prefix, format_args!("epnet."), |p| {
            self.ep.visit_params(p, f)
        });
        for (l, g) in self.pp.iter_mut().enumerate() {
            with_name(prefix, format_args!("ppnet{l}."), |p| g.visit_params(p, f));
        }
        for (t, tw) in self.towers.iter_mut().enumerate() {
            for (l, lin) in tw.layers.iter_mut().enumerate() {
                with_name(prefix, format_args!("task{t}.layer{l}."), |p| {
                    lin.visit_params(p, f)
                });
            }
            let l = tw.layers.len();
            with_name(prefix, format_args!("task{t}.layer{l}."), |p| {
                tw.head.visit_params(p, f)
            });
        }
    }
}
