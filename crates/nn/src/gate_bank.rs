//! K single-layer gates over the same input run as one product: their projections are
//! packed side by side into one `n_in × K·E` matrix, so the input is packed once per
//! product instead of K times and the reduction `dx += dz·Wᵀ` runs over K·E columns at
//! once. The parameters stay in the [`Gate`]s (names, order and checkpoints unchanged);
//! the bank only holds a packed copy, refreshed on every forward, and scratch buffers.

use crate::gate::{
    sigmoid_over_n, sigmoid_over_n_backward, softmax_backward_rows, softmax_rows, Gate,
    GateActivation,
};
use crate::kernels::relu_mask_col_sums;
use crate::product::{matmul, matmul_bias_act};
use crate::{ensure_len, Float};

/// Fused forward/backward of gates without hidden layers; see the module doc.
#[derive(Clone, Debug, Default)]
pub struct GateBank<T> {
    /// Packed weights `n_in × K·E` (gate k at columns k·E..) and biases `K·E`.
    w: Vec<T>,
    b: Vec<T>,
    /// Logits `n × K·E`, their gradient, and the weights gate-major (`K × n × E`).
    z: Vec<T>,
    dz: Vec<T>,
    p: Vec<T>,
    dw: Vec<T>,
    db: Vec<T>,
    n: usize,
}

impl<T: Float> GateBank<T> {
    /// Whether `gates` can run fused: at least two, none with hidden layers, all over
    /// the same number of experts.
    pub fn fusable(gates: &[Gate<T>]) -> bool {
        gates.len() >= 2
            && gates.iter().all(|g| g.hidden().is_none())
            && gates.iter().all(|g| g.n_experts() == gates[0].n_experts())
    }

    /// Weights of gate `k` from the last forward, `n × E`.
    pub fn weights(&self, k: usize, e: usize) -> &[T] {
        let len = self.n * e;
        &self.p[k * len..(k + 1) * len]
    }

    /// All gates' weights, gate-major: gate k's `n × E` block at offset `k·n·E`.
    pub fn all_weights(&self) -> &[T] {
        &self.p
    }

    /// Runs every gate on `x` (`n × n_in`); returns the weights gate-major.
    pub fn forward(&mut self, gates: &[Gate<T>], x: &[T], n: usize) -> &[T] {
        let (k, e) = (gates.len(), gates[0].n_experts());
        let ni = gates[0].proj().n_in();
        let ke = k * e;
        self.n = n;
        let w = ensure_len(&mut self.w, ni * ke);
        let b = ensure_len(&mut self.b, ke);
        for (kk, gate) in gates.iter().enumerate() {
            let gw = gate.proj().weight();
            for c in 0..ni {
                w[c * ke + kk * e..c * ke + (kk + 1) * e].copy_from_slice(&gw[c * e..(c + 1) * e]);
            }
            b[kk * e..(kk + 1) * e].copy_from_slice(gate.proj().bias());
        }
        let z = ensure_len(&mut self.z, n * ke);
        matmul_bias_act(
            n,
            ke,
            ni,
            T::one(),
            x,
            ni,
            false,
            w,
            ke,
            false,
            T::zero(),
            z,
            ke,
            Some(b),
            false,
        );
        let p = ensure_len(&mut self.p, k * n * e);
        for (kk, gate) in gates.iter().enumerate() {
            let pk = &mut p[kk * n * e..(kk + 1) * n * e];
            for i in 0..n {
                let zr = &z[i * ke + kk * e..i * ke + (kk + 1) * e];
                let pr = &mut pk[i * e..(i + 1) * e];
                match gate.activation() {
                    GateActivation::Softmax => softmax_rows(zr, pr, 1, e),
                    GateActivation::SigmoidOverN => sigmoid_over_n(zr, pr, e),
                }
            }
        }
        &self.p[..k * n * e]
    }

    /// Given `dp` (gate-major like the weights) = ∂loss/∂weights, accumulates every
    /// gate's parameter gradients and `dx` (`n × n_in`).
    pub fn backward(
        &mut self,
        gates: &mut [Gate<T>],
        x: &[T],
        dp: &[T],
        dx: Option<&mut [T]>,
        n: usize,
    ) {
        debug_assert_eq!(n, self.n, "GateBank::backward: batch differs from forward");
        let (k, e) = (gates.len(), gates[0].n_experts());
        let ni = gates[0].proj().n_in();
        let ke = k * e;
        let dz = ensure_len(&mut self.dz, n * ke);
        for (kk, gate) in gates.iter().enumerate() {
            let pk = &self.p[kk * n * e..(kk + 1) * n * e];
            let dpk = &dp[kk * n * e..(kk + 1) * n * e];
            for i in 0..n {
                let r = i * e..(i + 1) * e;
                let dzr = &mut dz[i * ke + kk * e..i * ke + (kk + 1) * e];
                match gate.activation() {
                    GateActivation::Softmax => {
                        softmax_backward_rows(&pk[r.clone()], &dpk[r], dzr, 1, e)
                    }
                    GateActivation::SigmoidOverN => {
                        sigmoid_over_n_backward(&pk[r.clone()], &dpk[r], dzr, e)
                    }
                }
            }
        }
        let db = ensure_len(&mut self.db, ke);
        db.fill(T::zero());
        relu_mask_col_sums(dz, ke, &[], 0, n, false, db);
        let dw = ensure_len(&mut self.dw, ni * ke);
        matmul(
            ni,
            ke,
            n,
            T::one(),
            x,
            ni,
            true,
            dz,
            ke,
            false,
            T::zero(),
            dw,
            ke,
        );
        for (kk, gate) in gates.iter_mut().enumerate() {
            let g = gate.proj_mut().grads_mut();
            let (gw, gb) = g.split_at_mut(ni * e);
            for c in 0..ni {
                for (a, &v) in gw[c * e..(c + 1) * e]
                    .iter_mut()
                    .zip(&dw[c * ke + kk * e..c * ke + (kk + 1) * e])
                {
                    *a += v;
                }
            }
            for (a, &v) in gb.iter_mut().zip(&db[kk * e..(kk + 1) * e]) {
                *a += v;
            }
        }
        if let Some(dx) = dx {
            let w = &self.w[..ni * ke];
            matmul(
                n,
                ni,
                ke,
                T::one(),
                dz,
                ke,
                false,
                w,
                ke,
                true,
                T::one(),
                dx,
                ni,
            );
        }
    }
}
