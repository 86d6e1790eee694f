//! Multi-gate mixture-of-experts switcher (MMoE): E shared experts over the input and
//! one gate per output mixing the experts with input-dependent weights.

use crate::shape::{check_widths, GateKind};
use crate::switcher::Switcher;
use mfh_nn::{
    ensure_len, gated_sum_backward, gated_sum_forward, gated_sums_backward, gated_sums_forward,
    with_name, Activation, ExpertBank, Float, Gate, GateActivation, GateBank, Module, Rng,
};
use serde::{Deserialize, Serialize};

/// An MMoE's architecture: `experts` experts of widths `expert_layers` (each layer ReLU,
/// plus BatchNorm when the model asks) and one gate per output, with ReLU layers
/// `gate_hidden` before its projection to the expert logits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MmoeShape {
    pub experts: usize,
    pub expert_layers: Vec<usize>,
    #[serde(default)]
    pub gate: GateKind,
    #[serde(default)]
    pub gate_hidden: Vec<usize>,
}

impl MmoeShape {
    /// Checks the shape on its own (at least one expert, no zero-width layer).
    pub fn validate(&self) -> Result<(), String> {
        if self.experts == 0 {
            return Err("mmoe needs at least one expert".into());
        }
        check_widths("expert_layers", &self.expert_layers, true)?;
        check_widths("gate_hidden", &self.gate_hidden, false)
    }
}

/// MMoE; shapes: x n × in_dim → K × (n × d), output k = Σ_e gate_k(x)_e · expert_e(x).
#[derive(Clone, Debug)]
pub struct Mmoe<T> {
    bank: ExpertBank<T>,
    gates: Vec<Gate<T>>,
    /// The gates run as one product when they have no hidden layers (the usual MMoE).
    fused: Option<GateBank<T>>,
    outputs: Vec<Vec<T>>,
    d_outputs: Vec<Vec<T>>,
    /// ∂loss/∂(expert outputs), n × E·d, summed over all gates.
    d_bank: Vec<T>,
    /// ∂loss/∂(gate weights) of one gate, n × E.
    d_gate: Vec<T>,
    n: usize,
}

impl<T: Float> Mmoe<T> {
    /// An MMoE of `shape` over `n_in` inputs with `n_outputs` gates, BatchNorm after every
    /// expert layer when `batch_norm`.
    pub fn new(
        n_in: usize,
        n_outputs: usize,
        shape: &MmoeShape,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        let (experts, gate) = (shape.experts, shape.gate.into());
        let bank = ExpertBank::new(
            n_in,
            experts,
            &shape.expert_layers,
            Activation::Relu,
            batch_norm,
            rng,
        );
        let gates: Vec<Gate<T>> = (0..n_outputs)
            .map(|_| Gate::new(n_in, &shape.gate_hidden, experts, gate, rng))
            .collect();
        Mmoe {
            bank,
            fused: GateBank::fusable(&gates).then(GateBank::default),
            gates,
            outputs: vec![Vec::new(); n_outputs],
            d_outputs: vec![Vec::new(); n_outputs],
            d_bank: Vec::new(),
            d_gate: Vec::new(),
            n: 0,
        }
    }

    /// Gate weights of output k from the last forward, n × E.
    pub fn gate_weights(&self, k: usize) -> &[T] {
        match &self.fused {
            Some(f) => f.weights(k, self.bank.n_experts()),
            None => self.gates[k].weights(),
        }
    }

    fn len(&self) -> usize {
        self.n * self.bank.out_dim()
    }
}

impl<T: Float> Module<T> for Mmoe<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        with_name(prefix, format_args!("experts."), |p| {
            self.bank.visit_params(p, f)
        });
        for (k, gate) in self.gates.iter_mut().enumerate() {
            with_name(prefix, format_args!("gates.{k}."), |p| {
                gate.visit_params(p, f)
            });
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        with_name(prefix, format_args!("experts."), |p| {
            self.bank.visit_buffers(p, f)
        });
        for (k, gate) in self.gates.iter_mut().enumerate() {
            with_name(prefix, format_args!("gates.{k}."), |p| {
                gate.visit_buffers(p, f)
            });
        }
    }
}

impl<T: Float> Switcher<T> for Mmoe<T> {
    fn in_dim(&self) -> usize {
        self.bank.n_in()
    }

    fn n_outputs(&self) -> usize {
        self.gates.len()
    }

    fn out_dim(&self) -> usize {
        self.bank.out_dim()
    }

    fn forward(&mut self, x: &[T], n: usize, train: bool) {
        self.n = n;
        let (e, d) = (self.bank.n_experts(), self.bank.out_dim());
        let experts = self.bank.forward(x, n, train);
        if let Some(fused) = &mut self.fused {
            let g = fused.forward(&self.gates, x, n);
            for (out, d_out) in self.outputs.iter_mut().zip(&mut self.d_outputs) {
                ensure_len(out, n * d);
                let d_out = ensure_len(d_out, n * d);
                if train {
                    d_out.fill(T::zero());
                }
            }
            gated_sums_forward(g, n * e, experts, n, e, d, &mut self.outputs);
            return;
        }
        for ((gate, out), d_out) in self
            .gates
            .iter_mut()
            .zip(&mut self.outputs)
            .zip(&mut self.d_outputs)
        {
            let g = gate.forward(x, n, train);
            gated_sum_forward(g, experts, n, e, d, ensure_len(out, n * d));
            let d_out = ensure_len(d_out, n * d);
            if train {
                d_out.fill(T::zero());
            }
        }
    }

    fn output(&self, k: usize) -> &[T] {
        &self.outputs[k][..self.len()]
    }

    fn d_output_mut(&mut self, k: usize) -> &mut [T] {
        let len = self.len();
        &mut self.d_outputs[k][..len]
    }

    fn output_and_grad(&mut self, k: usize) -> (&[T], &mut [T]) {
        let len = self.len();
        (&self.outputs[k][..len], &mut self.d_outputs[k][..len])
    }

    fn backward(&mut self, x: &[T], n: usize, mut dx: Option<&mut [T]>) {
        let (e, d) = (self.bank.n_experts(), self.bank.out_dim());
        let d_bank = ensure_len(&mut self.d_bank, n * e * d);
        let experts = self.bank.output();
        if let Some(fused) = &mut self.fused {
            let k = self.gates.len();
            let dg = ensure_len(&mut self.d_gate, k * n * e);
            let g = fused.all_weights();
            gated_sums_backward(g, n * e, experts, &self.d_outputs, n, e, d, dg, d_bank);
            fused.backward(&mut self.gates, x, dg, dx.as_deref_mut(), n);
            self.bank.backward(x, d_bank, dx, n);
            return;
        }
        d_bank.fill(T::zero());
        for (gate, d_out) in self.gates.iter_mut().zip(&self.d_outputs) {
            let dg = ensure_len(&mut self.d_gate, n * e);
            dg.fill(T::zero());
            gated_sum_backward(
                gate.weights(),
                experts,
                &d_out[..n * d],
                n,
                e,
                d,
                dg,
                d_bank,
            );
            gate.backward(x, dg, dx.as_deref_mut(), n);
        }
        self.bank.backward(x, d_bank, dx, n);
    }

    fn param_count(&self) -> usize {
        self.bank.param_count() + self.gates.iter().map(Gate::param_count).sum::<usize>()
    }

    fn export(&self, g: &mut mfh_nn::graph::GraphBuilder, x: &str) -> Result<Vec<String>, String> {
        Ok(crate::export::mmoe(g, x, &self.bank, &self.gates))
    }

    fn describe(&self) -> Vec<String> {
        let dims: Vec<String> = std::iter::once(self.bank.n_in())
            .chain(self.bank.widths().iter().copied())
            .map(|d| d.to_string())
            .collect();
        let gate_kind = match self.gates.first().map(Gate::activation) {
            Some(GateActivation::SigmoidOverN) => "sigmoid/E",
            _ => "softmax",
        };
        let gate_params = self.gates.first().map_or(0, Gate::param_count);
        vec![
            format!(
                "MMoE → {} outputs ({} params)",
                self.gates.len(),
                self.param_count()
            ),
            format!(
                "  experts: {} × {} ({} params)",
                self.bank.n_experts(),
                dims.join("→"),
                self.bank.param_count()
            ),
            format!(
                "  gates: {} × {gate_kind} over {} experts ({gate_params} params each)",
                self.gates.len(),
                self.bank.n_experts()
            ),
        ]
    }
}
