//! Adam optimiser for dense parameters (AdamW, i.e. decoupled weight decay, when
//! `weight_decay > 0`), with the moment state exposed for checkpoints.

use crate::kernels::row_blocks;
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
        let mut i = 0;
        module.visit_params("", &mut |name, p, g| {
            assert!(
                i < m.len() && m[i].len() == p.len(),
                "Adam: parameter {name} does not match the optimiser state"
            );
            adam_update(p, g, &mut m[i], &mut v[i], lr, b1, b2, eps, wd, bc1, bc2);
            i += 1;
        });
    }
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
    let one = T::one();
    let decay = one - lr * weight_decay;
    let step = lr / bc1;
    let inv_sqrt_bc2 = one / bc2.sqrt();
    let len = p.len();
    assert!(g.len() >= len && m.len() >= len && v.len() >= len);
    let path = mfh_cpu::path();
    let update = |p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]| {
        mfh_cpu::dispatch!(
            path,
            adam_block(p, g, m, v, beta1, beta2, eps, decay, step, inv_sqrt_bc2)
        )
    };
    match row_blocks(len, 1) {
        Some(chunk) => {
            use rayon::prelude::*;
            let chunk = chunk.div_ceil(16) * 16;
            p.par_chunks_mut(chunk)
                .zip(m[..len].par_chunks_mut(chunk))
                .zip(v[..len].par_chunks_mut(chunk))
                .zip(g[..len].par_chunks(chunk))
                .for_each(|(((p, m), v), g)| update(p, g, m, v));
        }
        None => update(p, g, m, v),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn adam_block<T: Float>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    beta1: T,
    beta2: T,
    eps: T,
    decay: T,
    step: T,
    inv_sqrt_bc2: T,
) {
    let one = T::one();
    for (((pv, &gv), mv), vv) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *mv = beta1 * *mv + (one - beta1) * gv;
        *vv = beta2 * *vv + (one - beta2) * gv * gv;
        *pv = *pv * decay - step * *mv / (vv.sqrt() * inv_sqrt_bc2 + eps);
    }
}
