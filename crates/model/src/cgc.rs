//! Customized Gate Control switcher (CGC, a single-level PLE): per output k its own
//! task experts plus experts shared by all outputs, and one gate per output mixing only
//! [its own experts, the shared experts]. [`crate::Ple`] stacks CGC levels; cell routing
//! (task experts on their own output's rows only) is in `routed`.

mod export;
mod routed;

use crate::shape::{check_widths, GateKind};
use crate::switcher::Switcher;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{
    ensure_len, gated_sum_banks_backward, gated_sum_banks_forward, with_name, Activation, Bank,
    ExpertBank, Float, Gate, GateActivation, Module, Rng, Slot,
};
use serde::{Deserialize, Serialize};

/// A CGC level's architecture: per output `task_experts` experts of its own, plus
/// `shared_experts` experts shared by all outputs, each of widths `expert_layers` (each
/// layer ReLU, plus BatchNorm when the model asks); one gate per output, with ReLU layers
/// `gate_hidden` before its projection to the expert logits. Each output needs at least
/// one expert: `task_experts + shared_experts ≥ 1`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CgcShape {
    pub task_experts: usize,
    pub shared_experts: usize,
    pub expert_layers: Vec<usize>,
    #[serde(default)]
    pub gate: GateKind,
    #[serde(default)]
    pub gate_hidden: Vec<usize>,
}

impl CgcShape {
    /// Checks the shape on its own (experts, layer widths).
    pub fn validate(&self) -> Result<(), String> {
        self.validate_as("cgc")
    }

    /// [`CgcShape::validate`], naming the unit `what` (a PLE checks its levels' shape).
    pub(crate) fn validate_as(&self, what: &str) -> Result<(), String> {
        if self.task_experts + self.shared_experts == 0 {
            return Err(format!(
                "{what} needs at least one expert per output (task_experts and shared_experts are both 0)"
            ));
        }
        check_widths("expert_layers", &self.expert_layers, true)?;
        check_widths("gate_hidden", &self.gate_hidden, false)
    }
}

/// CGC; shapes: x n × in_dim → K × (n × d), output k = Σ_j gate_k(x)_j · expert_j(x) over
/// j in [task k's experts, shared experts].
#[derive(Clone, Debug)]
pub struct Cgc<T> {
    /// One fused bank over x holding every expert (task 0's, …, task K−1's, then the
    /// shared ones); above PLE level 1 instead one bank per task then the shared bank.
    banks: Vec<ExpertBank<T>>,
    /// Input group bank b reads: task k's bank reads group k, the shared bank group K.
    bank_src: Vec<usize>,
    /// K task gates, then the shared gate when this level feeds another PLE level.
    gates: Vec<Gate<T>>,
    /// Experts gate j mixes, in the order of its weights.
    members: Vec<Vec<Slot>>,
    k: usize,
    task_experts: usize,
    shared_experts: usize,
    /// One bank per task group plus one shared bank (PLE above level 1, or a routable
    /// CGC) rather than one fused bank.
    split_inputs: bool,
    /// Built for cell routing: separate banks over the one input, so that task k's
    /// experts can run on the rows of output k alone ([`Switcher::forward_routed`]).
    routable: bool,
    /// Per output: rows of the last routed forward (`None` after a dense forward).
    routed_rows: Option<Vec<usize>>,
    /// Per output: the gathered input rows of the last routed forward and their gradient.
    xk: Vec<Vec<T>>,
    dxk: Vec<Vec<T>>,
    /// One per gate (the shared gate's output is the next level's shared input).
    outputs: Vec<Vec<T>>,
    d_outputs: Vec<Vec<T>>,
    /// ∂loss/∂(bank outputs), one n × E_b·d buffer per bank, summed over all gates.
    d_banks: Vec<Vec<T>>,
    /// ∂loss/∂(gate weights) of one gate, n × (its expert count).
    d_gate: Vec<T>,
    n_in: usize,
    n: usize,
}

/// How a level lays out its experts and gates (see [`Cgc::level`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Layout {
    /// Task k's experts read input group k and the shared experts group K (PLE above
    /// level 1), so they cannot share one GEMM.
    pub split_inputs: bool,
    /// A gate over all experts producing the shared output (every PLE level but the
    /// last; pointless without shared experts, which would read it).
    pub shared_gate: bool,
    /// Built for cell routing (separate banks over the one input).
    pub routable: bool,
}

/// What one level reads, per input group (0..K task groups, K the shared group).
pub(crate) enum Upstream<'a, T> {
    /// The switcher input, read by every expert and gate (CGC, PLE level 1).
    Input(&'a [T]),
    /// The previous PLE level's outputs: its K task outputs, then its shared output.
    Level(&'a [Vec<T>]),
}

impl<T> Upstream<'_, T> {
    fn get(&self, group: usize, len: usize) -> &[T] {
        match self {
            Upstream::Input(x) => &x[..len],
            Upstream::Level(outs) => &outs[group][..len],
        }
    }
}

/// Where a level's input gradients go, per input group (accumulating).
pub(crate) enum UpstreamGrad<'a, T> {
    Input(Option<&'a mut [T]>),
    Level(&'a mut [Vec<T>]),
}

impl<T> UpstreamGrad<'_, T> {
    fn get(&mut self, group: usize, len: usize) -> Option<&mut [T]> {
        match self {
            UpstreamGrad::Input(dx) => dx.as_deref_mut().map(|d| &mut d[..len]),
            UpstreamGrad::Level(d_outs) => Some(&mut d_outs[group][..len]),
        }
    }
}

/// The banks' last outputs as the gated sums read them (every bank on its own rows).
fn bank_views<T: Float>(banks: &[ExpertBank<T>]) -> Vec<Bank<'_, T>> {
    banks
        .iter()
        .map(|b| Bank {
            out: b.output(),
            experts: b.n_experts(),
            rows: None,
        })
        .collect()
}

impl<T: Float> Cgc<T> {
    /// A CGC of `shape` over `n_in` inputs with `n_outputs` outputs, BatchNorm after every
    /// expert layer when `batch_norm`; all experts in one fused bank.
    pub fn new(
        n_in: usize,
        n_outputs: usize,
        shape: &CgcShape,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        Self::level(n_in, n_outputs, shape, batch_norm, Layout::default(), rng)
    }

    /// [`Cgc::new`] built for cell routing (see [`Switcher::forward_routed`]): task k's
    /// experts in a bank of their own and the shared experts in another, parameters named
    /// `task_experts.{k}.` and `shared_experts.`.
    pub fn routable(
        n_in: usize,
        n_outputs: usize,
        shape: &CgcShape,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        let layout = Layout {
            split_inputs: true,
            shared_gate: false,
            routable: true,
        };
        Self::level(n_in, n_outputs, shape, batch_norm, layout, rng)
    }

    /// One extraction level of `shape` laid out as `layout` (a CGC, or a level of PLE).
    pub(crate) fn level(
        n_in: usize,
        n_outputs: usize,
        s: &CgcShape,
        batch_norm: bool,
        layout: Layout,
        rng: &mut Rng,
    ) -> Self {
        let (k, t, sh) = (n_outputs, s.task_experts, s.shared_experts);
        let Layout {
            split_inputs,
            shared_gate,
            routable,
        } = layout;
        assert!(t + sh > 0, "Cgc: every output needs at least one expert");
        let bank = |experts: usize, rng: &mut Rng| {
            let layers = &s.expert_layers;
            ExpertBank::new(n_in, experts, layers, Activation::Relu, batch_norm, rng)
        };
        // Expert i (task k's j-th is i = k·t + j, shared j-th is K·t + j) → its slot.
        let (mut banks, mut bank_src, mut slots) = (Vec::new(), Vec::new(), Vec::new());
        if split_inputs {
            for (src, count) in (0..k).map(|g| (g, t)).chain([(k, sh)]) {
                if count > 0 {
                    slots.extend((0..count).map(|expert| Slot {
                        bank: banks.len(),
                        expert,
                    }));
                    banks.push(bank(count, rng));
                    bank_src.push(src);
                }
            }
        } else {
            banks.push(bank(k * t + sh, rng));
            bank_src.push(k);
            slots.extend((0..k * t + sh).map(|expert| Slot { bank: 0, expert }));
        }
        let shared = &slots[k * t..];
        let mut members: Vec<Vec<Slot>> = (0..k)
            .map(|g| {
                slots[g * t..(g + 1) * t]
                    .iter()
                    .chain(shared)
                    .copied()
                    .collect()
            })
            .collect();
        if shared_gate && sh > 0 {
            members.push(slots.clone());
        }
        let gates = members
            .iter()
            .map(|m| Gate::new(n_in, &s.gate_hidden, m.len(), s.gate.into(), rng))
            .collect();
        let n_gates = members.len();
        Cgc {
            d_banks: vec![Vec::new(); banks.len()],
            banks,
            bank_src,
            gates,
            members,
            k,
            task_experts: t,
            shared_experts: sh,
            split_inputs,
            routable,
            routed_rows: None,
            xk: vec![Vec::new(); k],
            dxk: vec![Vec::new(); k],
            outputs: vec![Vec::new(); n_gates],
            d_outputs: vec![Vec::new(); n_gates],
            d_gate: Vec::new(),
            n_in,
            n: 0,
        }
    }

    /// Gate weights of output k from the last forward, n × (task_experts + shared).
    pub fn gate_weights(&self, k: usize) -> &[T] {
        self.gates[k].weights()
    }

    pub fn task_experts(&self) -> usize {
        self.task_experts
    }

    pub fn shared_experts(&self) -> usize {
        self.shared_experts
    }

    /// All gate outputs (K task outputs, then the shared one) and their gradients.
    pub(crate) fn outputs_and_grads(&mut self) -> (&[Vec<T>], &mut [Vec<T>]) {
        (&self.outputs, &mut self.d_outputs)
    }

    pub(crate) fn all_outputs(&self) -> &[Vec<T>] {
        &self.outputs
    }

    fn len(&self) -> usize {
        self.n * self.out_dim()
    }

    /// Length of output k: its routed rows after a routed forward, else all n rows.
    fn out_len(&self, k: usize) -> usize {
        match &self.routed_rows {
            Some(lens) => lens[k] * self.out_dim(),
            None => self.len(),
        }
    }

    /// With separate banks (the task groups' banks in output order, then the shared
    /// bank; see [`Cgc::level`]): the shared bank.
    fn shared_bank(&self) -> Option<usize> {
        (self.shared_experts > 0).then_some(if self.task_experts > 0 { self.k } else { 0 })
    }

    pub(crate) fn forward_level(&mut self, up: Upstream<'_, T>, n: usize, train: bool) {
        self.n = n;
        self.routed_rows = None;
        let (d, len_in) = (self.out_dim(), n * self.n_in);
        for (bank, &src) in self.banks.iter_mut().zip(&self.bank_src) {
            bank.forward(up.get(src, len_in), n, train);
        }
        // Gate j reads input group j: task gate k its task's input, the shared gate K.
        let banks = bank_views(&self.banks);
        for (j, gate) in self.gates.iter_mut().enumerate() {
            let g = gate.forward(up.get(j, len_in), n, train);
            let out = ensure_len(&mut self.outputs[j], n * d);
            gated_sum_banks_forward(g, &banks, &self.members[j], n, d, out);
            let d_out = ensure_len(&mut self.d_outputs[j], n * d);
            if train {
                d_out.fill(T::zero());
            }
        }
    }

    pub(crate) fn backward_level(
        &mut self,
        up: Upstream<'_, T>,
        mut d_up: UpstreamGrad<'_, T>,
        n: usize,
    ) {
        let (d, len_in) = (self.out_dim(), n * self.n_in);
        for (bank, d_bank) in self.banks.iter().zip(&mut self.d_banks) {
            ensure_len(d_bank, n * bank.n_experts() * d).fill(T::zero());
        }
        let banks = bank_views(&self.banks);
        for (j, gate) in self.gates.iter_mut().enumerate() {
            let members = &self.members[j];
            let dg = ensure_len(&mut self.d_gate, n * members.len());
            dg.fill(T::zero());
            let d_out = &self.d_outputs[j][..n * d];
            let g = gate.weights();
            gated_sum_banks_backward(g, &banks, members, d_out, n, d, dg, &mut self.d_banks);
            gate.backward(up.get(j, len_in), dg, d_up.get(j, len_in), n);
        }
        drop(banks); // the views borrow the banks, whose backward follows
        for ((bank, d_bank), &src) in self
            .banks
            .iter_mut()
            .zip(&mut self.d_banks)
            .zip(&self.bank_src)
        {
            let len = n * bank.n_experts() * d;
            bank.backward(
                up.get(src, len_in),
                &mut d_bank[..len],
                d_up.get(src, len_in),
                n,
            );
        }
    }

    /// Describe lines of the parts, unindented: experts, task gates, shared gate.
    pub(crate) fn part_lines(&self) -> Vec<String> {
        let (k, t, s) = (self.n_outputs(), self.task_experts, self.shared_experts);
        let first = &self.banks[0];
        let dims: Vec<String> = std::iter::once(first.n_in())
            .chain(first.widths().iter().copied())
            .map(|d| d.to_string())
            .collect();
        let bank_params: usize = self.banks.iter().map(ExpertBank::param_count).sum();
        let gate_kind = match self.gates[0].activation() {
            GateActivation::SigmoidOverN => "sigmoid/n",
            GateActivation::Softmax => "softmax",
        };
        let mut lines = vec![
            format!(
                "experts: {k} × {t} task + {s} shared = {} × {} ({bank_params} params)",
                k * t + s,
                dims.join("→")
            ),
            format!(
                "gates: {k} × {gate_kind} over {} experts ({} params each)",
                t + s,
                self.gates[0].param_count()
            ),
        ];
        if let Some(g) = self.gates.get(k) {
            lines.push(format!(
                "shared gate: {gate_kind} over {} experts ({} params)",
                g.n_experts(),
                g.param_count()
            ));
        }
        lines
    }

    /// Calls `f(name, bank)` for every bank: "experts." for the fused bank, else
    /// "task_experts.{k}." and "shared_experts.".
    fn visit_banks(&mut self, prefix: &str, mut f: impl FnMut(&str, &mut ExpertBank<T>)) {
        for (bank, &src) in self.banks.iter_mut().zip(&self.bank_src) {
            if !self.split_inputs {
                with_name(prefix, format_args!("experts."), |p| f(p, bank));
            } else if src < self.k {
                with_name(prefix, format_args!("task_experts.{src}."), |p| f(p, bank));
            } else {
                with_name(prefix, format_args!("shared_experts."), |p| f(p, bank));
            }
        }
    }
}

impl<T: Float> Module<T> for Cgc<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        self.visit_banks(prefix, |p, bank| bank.visit_params(p, f));
        for (j, gate) in self.gates.iter_mut().enumerate() {
            if j < self.k {
                with_name(prefix, format_args!("gates.{j}."), |p| {
                    gate.visit_params(p, f)
                });
            } else {
                with_name(prefix, format_args!("shared_gate."), |p| {
                    gate.visit_params(p, f)
                });
            }
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        // Gates have no buffers (no batch norm inside them).
        self.visit_banks(prefix, |p, bank| bank.visit_buffers(p, f));
    }
}

impl<T: Float> Switcher<T> for Cgc<T> {
    fn in_dim(&self) -> usize {
        self.n_in
    }

    fn n_outputs(&self) -> usize {
        self.k
    }

    fn out_dim(&self) -> usize {
        self.banks[0].out_dim()
    }

    fn forward(&mut self, x: &[T], n: usize, train: bool) {
        self.forward_level(Upstream::Input(x), n, train);
    }

    fn output(&self, k: usize) -> &[T] {
        &self.outputs[k][..self.out_len(k)]
    }

    fn d_output_mut(&mut self, k: usize) -> &mut [T] {
        let len = self.out_len(k);
        &mut self.d_outputs[k][..len]
    }

    fn output_and_grad(&mut self, k: usize) -> (&[T], &mut [T]) {
        let len = self.out_len(k);
        (&self.outputs[k][..len], &mut self.d_outputs[k][..len])
    }

    fn forward_routed(&mut self, x: &[T], n: usize, sel: &[Vec<usize>], train: bool) -> bool {
        self.routable && {
            self.forward_rows(x, n, sel, train);
            true
        }
    }

    fn backward_routed(&mut self, x: &[T], n: usize, sel: &[Vec<usize>], dx: Option<&mut [T]>) {
        self.backward_rows(x, n, sel, dx);
    }

    fn backward(&mut self, x: &[T], n: usize, dx: Option<&mut [T]>) {
        self.backward_level(Upstream::Input(x), UpstreamGrad::Input(dx), n);
    }

    fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<Vec<String>, String> {
        let mut outs = self.export_level(g, &vec![x.to_string(); self.k + 1])?;
        outs.truncate(self.k);
        Ok(outs)
    }

    fn param_count(&self) -> usize {
        let banks: usize = self.banks.iter().map(ExpertBank::param_count).sum();
        banks + self.gates.iter().map(Gate::param_count).sum::<usize>()
    }

    fn describe(&self) -> Vec<String> {
        let head = format!(
            "CGC → {} outputs ({} params)",
            self.n_outputs(),
            self.param_count()
        );
        std::iter::once(head)
            .chain(self.part_lines().into_iter().map(|l| format!("  {l}")))
            .collect()
    }
}
