//! Customized Gate Control switcher (CGC, a single-level PLE): per output k its own
//! task experts plus experts shared by all outputs, and one gate per output mixing only
//! [its own experts, the shared experts]. [`crate::Ple`] stacks CGC levels.

use crate::switcher::Switcher;
mod export;

use mfh_nn::graph::GraphBuilder;
use mfh_nn::kernels::dot;
use mfh_nn::{
    ensure_len, with_name, Activation, ExpertBank, Float, Gate, GateActivation, Module, Rng,
};

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

/// Where one expert's output lives: bank `bank`, expert `expert` within it.
#[derive(Clone, Copy, Debug)]
struct Slot {
    bank: usize,
    expert: usize,
}

/// The knobs shared by CGC and every PLE level.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LevelShape<'a> {
    pub n_outputs: usize,
    pub task_experts: usize,
    pub shared_experts: usize,
    pub expert_layers: &'a [usize],
    pub gate: GateActivation,
    pub gate_hidden: &'a [usize],
    pub batch_norm: bool,
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

impl<T: Float> Cgc<T> {
    /// `expert_layers` are each expert's widths (every layer ReLU, plus BatchNorm when
    /// `batch_norm`); `gate_hidden` are ReLU layers inside each gate. Each output needs at
    /// least one expert: `task_experts + shared_experts ≥ 1`.
    #[allow(clippy::too_many_arguments)] // the architecture's independent knobs
    pub fn new(
        n_in: usize,
        n_outputs: usize,
        task_experts: usize,
        shared_experts: usize,
        expert_layers: &[usize],
        gate: GateActivation,
        gate_hidden: &[usize],
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        let shape = LevelShape {
            n_outputs,
            task_experts,
            shared_experts,
            expert_layers,
            gate,
            gate_hidden,
            batch_norm,
        };
        Self::level(n_in, &shape, false, false, rng)
    }

    /// A CGC of `shape` over the one input; `routable`: built for cell routing (see
    /// [`Switcher::forward_routed`]), with task k's experts in a bank of their own and the
    /// shared experts in another, parameters named `task_experts.{k}.` and
    /// `shared_experts.`; otherwise one fused bank, as [`Cgc::new`].
    pub(crate) fn with_layout(
        n_in: usize,
        shape: &LevelShape<'_>,
        routable: bool,
        rng: &mut Rng,
    ) -> Self {
        Self::build_level(n_in, shape, routable, false, routable, rng)
    }

    /// One extraction level. `split_inputs`: task k's experts read input group k and the
    /// shared experts group K (PLE above level 1), so they cannot share one GEMM.
    /// `shared_gate`: add a gate over all experts producing the shared output (every PLE
    /// level but the last; pointless without shared experts, which would read it).
    pub(crate) fn level(
        n_in: usize,
        s: &LevelShape<'_>,
        split_inputs: bool,
        shared_gate: bool,
        rng: &mut Rng,
    ) -> Self {
        Self::build_level(n_in, s, split_inputs, shared_gate, false, rng)
    }

    fn build_level(
        n_in: usize,
        s: &LevelShape<'_>,
        split_inputs: bool,
        shared_gate: bool,
        routable: bool,
        rng: &mut Rng,
    ) -> Self {
        let (k, t, sh) = (s.n_outputs, s.task_experts, s.shared_experts);
        assert!(t + sh > 0, "Cgc: every output needs at least one expert");
        let bank = |experts: usize, rng: &mut Rng| {
            let (layers, bn) = (s.expert_layers, s.batch_norm);
            ExpertBank::new(n_in, experts, layers, Activation::Relu, bn, rng)
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
            .map(|m| Gate::new(n_in, s.gate_hidden, m.len(), s.gate, rng))
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
    /// bank; see `build_level`): the shared bank.
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
        for (j, gate) in self.gates.iter_mut().enumerate() {
            let g = gate.forward(up.get(j, len_in), n, train);
            let out = ensure_len(&mut self.outputs[j], n * d);
            mix_forward(g, &self.members[j], &self.banks, n, d, out);
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
        for (j, gate) in self.gates.iter_mut().enumerate() {
            let members = &self.members[j];
            let dg = ensure_len(&mut self.d_gate, n * members.len());
            dg.fill(T::zero());
            let d_out = &self.d_outputs[j][..n * d];
            mix_backward(
                gate.weights(),
                members,
                &self.banks,
                d_out,
                n,
                d,
                dg,
                &mut self.d_banks,
            );
            gate.backward(up.get(j, len_in), dg, d_up.get(j, len_in), n);
        }
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

/// `y += a·x`.
fn axpy<T: Float>(a: T, x: &[T], y: &mut [T]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// `dst[j, :] = src[rows[j], :]` for rows of width `w`.
fn gather_rows<T: Float>(src: &[T], w: usize, rows: &[usize], dst: &mut [T]) {
    for (j, &r) in rows.iter().enumerate() {
        dst[j * w..(j + 1) * w].copy_from_slice(&src[r * w..(r + 1) * w]);
    }
}

/// Gated sum over a subset of experts: `out[i, :] = Σ_j g[i, j] · expert_{members[j]}[i, :]`.
/// Shapes: `g` n × members.len(), `out` n × d (overwritten).
fn mix_forward<T: Float>(
    g: &[T],
    members: &[Slot],
    banks: &[ExpertBank<T>],
    n: usize,
    d: usize,
    out: &mut [T],
) {
    let m = members.len();
    for i in 0..n {
        let o = &mut out[i * d..(i + 1) * d];
        o.fill(T::zero());
        for (&gv, slot) in g[i * m..(i + 1) * m].iter().zip(members) {
            let bank = &banks[slot.bank];
            let at = (i * bank.n_experts() + slot.expert) * d;
            for (ov, &xv) in o.iter_mut().zip(&bank.output()[at..at + d]) {
                *ov += gv * xv;
            }
        }
    }
}

/// Backward of [`mix_forward`], accumulating `dg` (n × members.len()) and the experts'
/// output gradients in `d_banks` (bank layout, like the banks' outputs).
#[allow(clippy::too_many_arguments)] // mirrors the forward's shapes plus two gradients
fn mix_backward<T: Float>(
    g: &[T],
    members: &[Slot],
    banks: &[ExpertBank<T>],
    dout: &[T],
    n: usize,
    d: usize,
    dg: &mut [T],
    d_banks: &mut [Vec<T>],
) {
    let m = members.len();
    for i in 0..n {
        let dor = &dout[i * d..(i + 1) * d];
        for (j, slot) in members.iter().enumerate() {
            let bank = &banks[slot.bank];
            let at = (i * bank.n_experts() + slot.expert) * d;
            dg[i * m + j] += dot(dor, &bank.output()[at..at + d]);
            let gv = g[i * m + j];
            for (dv, &o) in d_banks[slot.bank][at..at + d].iter_mut().zip(dor) {
                *dv += gv * o;
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
        if !self.routable {
            return false;
        }
        assert_eq!(
            sel.len(),
            self.k,
            "Cgc::forward_routed: one row list per output"
        );
        assert!(x.len() >= n * self.n_in, "Cgc::forward_routed: short input");
        self.n = n;
        let (d, n_in, t, sh) = (
            self.out_dim(),
            self.n_in,
            self.task_experts,
            self.shared_experts,
        );
        let shared_bank = self.shared_bank();
        // With separate banks, output g's task experts are bank g (when there are any).
        let has_task = self.task_experts > 0;
        let task_bank = |g: usize| has_task.then_some(g);
        if let Some(b) = shared_bank {
            self.banks[b].forward(x, n, train);
        }
        let mut lens = Vec::with_capacity(self.k);
        for (g, rows) in sel.iter().enumerate() {
            let m = rows.len();
            lens.push(m);
            ensure_len(&mut self.outputs[g], m * d);
            ensure_len(&mut self.d_outputs[g], m * d).fill(T::zero());
            if m == 0 {
                continue;
            }
            assert!(
                rows.iter().all(|&r| r < n),
                "Cgc::forward_routed: row out of range"
            );
            let xg = ensure_len(&mut self.xk[g], m * n_in);
            gather_rows(x, n_in, rows, xg);
            let xg = &self.xk[g][..m * n_in];
            if let Some(b) = task_bank(g) {
                self.banks[b].forward(xg, m, train);
            }
            let gw = self.gates[g].forward(xg, m, train);
            let task_out = task_bank(g).map(|b| self.banks[b].output());
            let shared_out = shared_bank.map(|b| self.banks[b].output());
            let out = &mut self.outputs[g][..m * d];
            out.fill(T::zero());
            for (j, &r) in rows.iter().enumerate() {
                let o = &mut out[j * d..(j + 1) * d];
                let gj = &gw[j * (t + sh)..(j + 1) * (t + sh)];
                if let Some(te) = task_out {
                    for e in 0..t {
                        axpy(gj[e], &te[(j * t + e) * d..(j * t + e + 1) * d], o);
                    }
                }
                if let Some(se) = shared_out {
                    for e in 0..sh {
                        axpy(gj[t + e], &se[(r * sh + e) * d..(r * sh + e + 1) * d], o);
                    }
                }
            }
        }
        self.routed_rows = Some(lens);
        true
    }

    fn backward_routed(&mut self, x: &[T], n: usize, sel: &[Vec<usize>], mut dx: Option<&mut [T]>) {
        assert!(
            self.routed_rows.is_some(),
            "Cgc::backward_routed without a routed forward"
        );
        let (d, n_in, t, sh) = (
            self.out_dim(),
            self.n_in,
            self.task_experts,
            self.shared_experts,
        );
        let shared_bank = self.shared_bank();
        // With separate banks, output g's task experts are bank g (when there are any).
        let has_task = self.task_experts > 0;
        let task_bank = |g: usize| has_task.then_some(g);
        if let Some(b) = shared_bank {
            ensure_len(&mut self.d_banks[b], n * sh * d).fill(T::zero());
        }
        let Cgc {
            banks,
            gates,
            d_banks,
            d_gate,
            d_outputs,
            xk,
            dxk,
            ..
        } = self;
        for (g, rows) in sel.iter().enumerate() {
            let m = rows.len();
            if m == 0 {
                continue;
            }
            // Task and shared expert-output gradients, and the gate-weight gradient.
            let dg = ensure_len(d_gate, m * (t + sh));
            dg.fill(T::zero());
            if let Some(b) = task_bank(g) {
                ensure_len(&mut d_banks[b], m * t * d).fill(T::zero());
            }
            let gw = gates[g].weights();
            let dout = &d_outputs[g][..m * d];
            for (j, &r) in rows.iter().enumerate() {
                let dor = &dout[j * d..(j + 1) * d];
                for e in 0..t + sh {
                    let (b, at) = if e < t {
                        (task_bank(g).unwrap_or(0), (j * t + e) * d)
                    } else {
                        (shared_bank.unwrap_or(0), (r * sh + e - t) * d)
                    };
                    dg[j * (t + sh) + e] += dot(dor, &banks[b].output()[at..at + d]);
                    axpy(gw[j * (t + sh) + e], dor, &mut d_banks[b][at..at + d]);
                }
            }
            let xg = &xk[g][..m * n_in];
            let mut dxg = match dx {
                Some(_) => {
                    let buf = ensure_len(&mut dxk[g], m * n_in);
                    buf.fill(T::zero());
                    Some(buf)
                }
                None => None,
            };
            gates[g].backward(xg, &d_gate[..m * (t + sh)], dxg.as_deref_mut(), m);
            if let Some(b) = task_bank(g) {
                banks[b].backward(xg, &mut d_banks[b][..m * t * d], dxg.as_deref_mut(), m);
            }
            if let (Some(dx), Some(dxg)) = (dx.as_deref_mut(), dxg) {
                for (j, &r) in rows.iter().enumerate() {
                    axpy(
                        T::one(),
                        &dxg[j * n_in..(j + 1) * n_in],
                        &mut dx[r * n_in..(r + 1) * n_in],
                    );
                }
            }
        }
        if let Some(b) = shared_bank {
            banks[b].backward(x, &mut d_banks[b][..n * sh * d], dx, n);
        }
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
