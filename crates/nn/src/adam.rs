//! Adam optimiser for dense parameters (AdamW, i.e. decoupled weight decay, when
//! `weight_decay > 0`), with the moment state exposed for checkpoints.

use crate::module::Module;
use crate::Float;

/// Adam/AdamW. Moment vectors are created on the first step, one per parameter slice in
/// the module's visit order; later steps allocate nothing.
#[derive(Clone, Debug)]
pub struct Adam<T> {
    pub beta1: T,
    pub beta2: T,
    pub eps: T,
    /// Decoupled decay: each step multiplies parameters by `1 − lr·weight_decay`.
    pub weight_decay: T,
    step: u64,
    initialised: bool,
    m: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
}

impl<T: Float> Default for Adam<T> {
    /// β1 0.9, β2 0.999, eps 1e-8, no weight decay (PyTorch defaults).
    fn default() -> Self {
        Self::new(0.9, 0.999, 1e-8, 0.0)
    }
}

impl<T: Float> Adam<T> {
    pub fn new(beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        Adam {
            beta1: T::from_f64(beta1),
            beta2: T::from_f64(beta2),
            eps: T::from_f64(eps),
            weight_decay: T::from_f64(weight_decay),
            step: 0,
            initialised: false,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// `(steps, first moments, second moments)`, moments per parameter slice in visit
    /// order (empty before the first step).
    pub fn state(&self) -> (u64, &[Vec<T>], &[Vec<T>]) {
        (self.step, &self.m, &self.v)
    }

    /// Restores a state saved with [`Adam::state`], checking it against `module`'s
    /// parameter slices so a checkpoint from another architecture is rejected.
    pub fn set_state(
        &mut self,
        module: &mut dyn Module<T>,
        step: u64,
        m: Vec<Vec<T>>,
        v: Vec<Vec<T>>,
    ) -> Result<(), String> {
        let mut lens = Vec::new();
        module.visit_params("", &mut |_, p, _| lens.push(p.len()));
        if m.len() != lens.len() || v.len() != lens.len() {
            return Err(format!(
                "optimiser state has {}/{} slices, model has {}",
                m.len(),
                v.len(),
                lens.len()
            ));
        }
        for (i, &len) in lens.iter().enumerate() {
            if m[i].len() != len || v[i].len() != len {
                return Err(format!("optimiser state slice {i}: expected {len} values"));
            }
        }
        self.step = step;
        self.m = m;
        self.v = v;
        self.initialised = true;
        Ok(())
    }

    /// One update of every parameter of `module` from its accumulated gradients.
    pub fn step(&mut self, module: &mut dyn Module<T>, lr: T) {
        if !self.initialised {
            let (m, v) = (&mut self.m, &mut self.v);
            module.visit_params("", &mut |_, p, _| {
                m.push(vec![T::zero(); p.len()]);
                v.push(vec![T::zero(); p.len()]);
            });
            self.initialised = true;
        }
        self.step += 1;
        // Bias corrections in f64: β^t underflows gracefully and t may be large.
        let t = self.step as f64;
        let bc1 = T::from_f64(1.0 - self.beta1.to_f64().powf(t));
        let bc2 = T::from_f64(1.0 - self.beta2.to_f64().powf(t));
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let (m, v) = (&mut self.m, &mut self.v);
        // Every parameter slice with its gradient and moments, then one parallel pass
        // over all of them in pieces of similar size: a network of many small layers is
        // then split as well as one large slice (one fork/join per slice did not scale).
        let mut parts = Vec::new();
        let mut i = 0;
        module.visit_params("", &mut |name, p, g| {
            assert!(
                i < m.len() && m[i].len() == p.len() && g.len() >= p.len(),
                "Adam: parameter {name} does not match the optimiser state"
            );
            parts.push(Part {
                p: p.as_mut_ptr(),
                g: g.as_ptr(),
                m: m[i].as_mut_ptr(),
                v: v[i].as_mut_ptr(),
                len: p.len(),
            });
            i += 1;
        });
        update_parts(&parts, Hyper::new(lr, b1, b2, eps, wd, bc1, bc2));
    }
}

/// One parameter slice with its gradient and moments, as raw pointers so that pieces of
/// every slice can be updated in one parallel pass.
struct Part<T> {
    p: *mut T,
    g: *const T,
    m: *mut T,
    v: *mut T,
    len: usize,
}

// SAFETY: parts live only inside `Adam::step` and `adam_update`, while the buffers they
// point at are borrowed, and concurrent pieces never overlap.
unsafe impl<T> Send for Part<T> {}
unsafe impl<T> Sync for Part<T> {}

/// The scalars of one Adam step.
#[derive(Clone, Copy)]
struct Hyper<T> {
    beta1: T,
    beta2: T,
    eps: T,
    decay: T,
    step: T,
    inv_sqrt_bc2: T,
}

impl<T: Float> Hyper<T> {
    /// From the learning rate, the optimiser's settings and the bias corrections.
    fn new(lr: T, beta1: T, beta2: T, eps: T, weight_decay: T, bc1: T, bc2: T) -> Self {
        let one = T::one();
        Hyper {
            beta1,
            beta2,
            eps,
            decay: one - lr * weight_decay,
            step: lr / bc1,
            inv_sqrt_bc2: one / bc2.sqrt(),
        }
    }
}

/// One Adam step over every part: in one parallel pass of pieces of similar size when
/// the product threads are several and the parts large enough, else part by part. Each
/// value is updated once by the same formula, so the split never changes a result.
fn update_parts<T: Float>(parts: &[Part<T>], h: Hyper<T>) {
    let total: usize = parts.iter().map(|q| q.len).sum();
    let threads = crate::kernels::threads();
    let path = mfh_cpu::path();
    // SAFETY (for `update`): the parts are distinct parameter, gradient and moment
    // buffers, borrowed by the caller for this call; each piece below is a range of one
    // part, and the pieces do not overlap.
    let update = |q: &Part<T>, lo: usize, hi: usize| unsafe {
        let p = std::slice::from_raw_parts_mut(q.p.add(lo), hi - lo);
        let g = std::slice::from_raw_parts(q.g.add(lo), hi - lo);
        let m = std::slice::from_raw_parts_mut(q.m.add(lo), hi - lo);
        let v = std::slice::from_raw_parts_mut(q.v.add(lo), hi - lo);
        mfh_cpu::dispatch!(path, adam_block(p, g, m, v, h))
    };
    if threads <= 1 || total < 1 << 16 {
        parts.iter().for_each(|q| update(q, 0, q.len));
        return;
    }
    // About four pieces per thread, none under 4,096 values; multiples of 16 keep
    // pieces on cache-line boundaries.
    let piece = (total.div_ceil(4 * threads).max(4096)).div_ceil(16) * 16;
    let pieces: Vec<(usize, usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(k, q)| {
            (0..q.len)
                .step_by(piece)
                .map(move |lo| (k, lo, (lo + piece).min(q.len)))
        })
        .collect();
    use rayon::prelude::*;
    pieces
        .par_iter()
        .for_each(|&(k, lo, hi)| update(&parts[k], lo, hi));
}

/// One Adam/AdamW update of a parameter slice (PyTorch's formulation):
/// `p ← p·(1 − lr·wd)`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `p ← p − (lr/bc1)·m / (√v/√bc2 + eps)` with `bc = 1 − β^t`.
#[allow(clippy::too_many_arguments)] // the optimiser's hyper-parameters, passed flat
pub fn adam_update<T: Float>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    lr: T,
    beta1: T,
    beta2: T,
    eps: T,
    weight_decay: T,
    bc1: T,
    bc2: T,
) {
    let len = p.len();
    assert!(g.len() >= len && m.len() >= len && v.len() >= len);
    let part = Part {
        p: p.as_mut_ptr(),
        g: g.as_ptr(),
        m: m.as_mut_ptr(),
        v: v.as_mut_ptr(),
        len,
    };
    update_parts(
        &[part],
        Hyper::new(lr, beta1, beta2, eps, weight_decay, bc1, bc2),
    );
}

#[inline(always)]
fn adam_block<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: Hyper<T>) {
    let one = T::one();
    for (((pv, &gv), mv), vv) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *mv = h.beta1 * *mv + (one - h.beta1) * gv;
        *vv = h.beta2 * *vv + (one - h.beta2) * gv * gv;
        *pv = *pv * h.decay - h.step * *mv / (vv.sqrt() * h.inv_sqrt_bc2 + h.eps);
    }
}
