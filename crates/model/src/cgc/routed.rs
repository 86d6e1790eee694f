//! Cell routing of a CGC built routable ([`Cgc::routable`]): output k is computed for the
//! rows `sel[k]` only, its task experts and gate on those rows gathered, the shared
//! experts once over every row and read at output k's rows.

use super::{bank_views, Cgc};
use crate::switcher::Switcher;
use mfh_nn::{
    ensure_len, gated_sum_banks_backward, gated_sum_banks_forward, gather_rows, scatter_add_rows,
    Bank, Float,
};

impl<T: Float> Cgc<T> {
    /// The banks as output `g`'s gated sum reads them: the shared bank at the rows `rows`.
    fn routed_views<'a>(&'a self, rows: &'a [usize]) -> Vec<Bank<'a, T>> {
        let shared = self.shared_bank();
        let mut banks = bank_views(&self.banks);
        if let Some(b) = shared {
            banks[b].rows = Some(rows);
        }
        banks
    }

    /// [`Switcher::forward_routed`](crate::Switcher::forward_routed) of a routable CGC.
    pub(super) fn forward_rows(&mut self, x: &[T], n: usize, sel: &[Vec<usize>], train: bool) {
        assert_eq!(
            sel.len(),
            self.k,
            "Cgc::forward_routed: one row list per output"
        );
        assert!(x.len() >= n * self.n_in, "Cgc::forward_routed: short input");
        self.n = n;
        let (d, n_in) = (self.out_dim(), self.n_in);
        let shared_bank = self.shared_bank();
        // With separate banks, output g's task experts are bank g (when there are any).
        let has_task = self.task_experts > 0;
        if let Some(b) = shared_bank {
            self.banks[b].forward(x, n, train);
        }
        let mut lens = Vec::with_capacity(self.k);
        for (g, rows) in sel.iter().enumerate() {
            let m = rows.len();
            lens.push(m);
            ensure_len(&mut self.outputs[g], m * d);
            let d_out = ensure_len(&mut self.d_outputs[g], m * d);
            if train {
                // Zeroed for the backward pass to add into (none follows an eval pass).
                d_out.fill(T::zero());
            }
            if m == 0 {
                continue;
            }
            assert!(
                rows.iter().all(|&r| r < n),
                "Cgc::forward_routed: row out of range"
            );
            // Scoring every row in order (one user's request on a user split): the input
            // itself (the backward pass reads the gathered copy, so training gathers).
            let all = !train && m == n && rows.iter().enumerate().all(|(i, &r)| i == r);
            let xg = if all {
                &x[..n * n_in]
            } else {
                gather_rows(x, n_in, rows, ensure_len(&mut self.xk[g], m * n_in));
                &self.xk[g][..m * n_in]
            };
            if has_task {
                self.banks[g].forward(xg, m, train);
            }
            self.gates[g].forward(xg, m, train);
            let mut out = std::mem::take(&mut self.outputs[g]);
            let banks = self.routed_views(rows);
            let gw = self.gates[g].weights();
            gated_sum_banks_forward(gw, &banks, &self.members[g], m, d, &mut out[..m * d]);
            self.outputs[g] = out;
        }
        self.routed_rows = Some(lens);
    }

    /// [`Switcher::backward_routed`](crate::Switcher::backward_routed) of a routable CGC.
    pub(super) fn backward_rows(
        &mut self,
        x: &[T],
        n: usize,
        sel: &[Vec<usize>],
        mut dx: Option<&mut [T]>,
    ) {
        assert!(
            self.routed_rows.is_some(),
            "Cgc::backward_routed without a routed forward"
        );
        let (d, t, sh) = (self.out_dim(), self.task_experts, self.shared_experts);
        let shared_bank = self.shared_bank();
        if let Some(b) = shared_bank {
            ensure_len(&mut self.d_banks[b], n * sh * d).fill(T::zero());
        }
        for (g, rows) in sel.iter().enumerate() {
            let m = rows.len();
            if m == 0 {
                continue;
            }
            // Task and shared expert-output gradients, and the gate-weight gradient.
            ensure_len(&mut self.d_gate, m * (t + sh)).fill(T::zero());
            if t > 0 {
                ensure_len(&mut self.d_banks[g], m * t * d).fill(T::zero());
            }
            let mut d_banks = std::mem::take(&mut self.d_banks);
            let mut dg = std::mem::take(&mut self.d_gate);
            let banks = self.routed_views(rows);
            let (gw, dout) = (self.gates[g].weights(), &self.d_outputs[g][..m * d]);
            let members = &self.members[g];
            gated_sum_banks_backward(gw, &banks, members, dout, m, d, &mut dg, &mut d_banks);
            (self.d_banks, self.d_gate) = (d_banks, dg);
            self.backward_output(g, rows, dx.as_deref_mut());
        }
        if let Some(b) = shared_bank {
            let len = n * sh * d;
            self.banks[b].backward(x, &mut self.d_banks[b][..len], dx, n);
        }
    }

    /// Output g's gate and task experts on their gathered rows, from the gradients just
    /// summed; their input gradient added back at `rows` of `dx`.
    fn backward_output(&mut self, g: usize, rows: &[usize], dx: Option<&mut [T]>) {
        let (m, n_in, t, sh) = (
            rows.len(),
            self.n_in,
            self.task_experts,
            self.shared_experts,
        );
        let d = self.out_dim();
        let Cgc {
            banks,
            gates,
            d_banks,
            d_gate,
            xk,
            dxk,
            ..
        } = self;
        let xg = &xk[g][..m * n_in];
        let mut dxg = dx.is_some().then(|| {
            let buf = ensure_len(&mut dxk[g], m * n_in);
            buf.fill(T::zero());
            buf
        });
        gates[g].backward(xg, &d_gate[..m * (t + sh)], dxg.as_deref_mut(), m);
        if t > 0 {
            banks[g].backward(xg, &mut d_banks[g][..m * t * d], dxg.as_deref_mut(), m);
        }
        if let (Some(dx), Some(dxg)) = (dx, dxg) {
            scatter_add_rows(dxg, n_in, rows, dx);
        }
    }
}
