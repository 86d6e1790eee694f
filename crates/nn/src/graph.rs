//! An inference graph under construction: layers describe their eval-mode forward as
//! ONNX operators over named tensors, with their weights as constant initializers.
//! `mfh-export` encodes the result as an ONNX file; this crate only records it, so that
//! every layer (here and in `mfh-model`) can describe itself without the encoder.
//!
//! Tensors are 2-D `[n, width]` row batches, as in the layers themselves; `n` is the
//! graph's dynamic batch dimension. Operators follow ONNX opset 13.

use crate::batchnorm::BatchNorm;
use crate::expert_bank::ExpertBank;
use crate::gate::{Gate, GateActivation};
use crate::linear::{Activation, Linear};
use crate::mlp::Mlp;
use crate::Float;
use std::collections::{HashMap, HashSet};

/// The ONNX opset the nodes are written for.
pub const OPSET: i64 = 13;

/// A node attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// Values of a constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A named constant (an ONNX initializer), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub name: String,
    pub dims: Vec<i64>,
    pub data: TensorData,
}

/// One operator: `outputs = op_type(inputs; attrs)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(String, Attr)>,
}

/// Nodes and constants in topological order, with unique tensor names built from a
/// scope path (`trees.0.level1.gate2.proj.w`), so a graph viewer shows the model's parts.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<Node>,
    constants: Vec<Constant>,
    scope: Vec<String>,
    taken: HashSet<String>,
    /// Per base name: the suffix to try next (the second use gets `_1`, …).
    next: HashMap<String, usize>,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn constants(&self) -> &[Constant] {
        &self.constants
    }

    /// Reserves a name that the graph's nodes must never produce (a graph input).
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_string());
    }

    /// Runs `f` with `part` appended to the scope of every name it creates.
    pub fn scoped<R>(&mut self, part: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.scope.push(part.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }

    /// A tensor name not used yet: the scope path, then `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        let mut base = self.scope.join(".");
        if !base.is_empty() {
            base.push('.');
        }
        base.push_str(hint);
        let next = self.next.entry(base.clone()).or_default();
        loop {
            let name = if *next == 0 {
                base.clone()
            } else {
                format!("{base}_{next}")
            };
            *next += 1;
            if self.taken.insert(name.clone()) {
                return name;
            }
        }
    }

    /// Adds a node with one output and returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op_type.to_ascii_lowercase());
        self.op_into(op_type, inputs, attrs, &out);
        out
    }

    /// Adds a node whose one output is `out` (a name the caller chose, e.g. a graph
    /// output reserved with [`GraphBuilder::reserve`]).
    pub fn op_into(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>, out: &str) {
        let name = format!("{out}/{op_type}");
        self.nodes.push(Node {
            name,
            op_type: op_type.to_string(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.to_string()],
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
    }

    pub fn const_f32(&mut self, hint: &str, dims: &[usize], data: Vec<f32>) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let name = self.fresh(hint);
        self.constants.push(Constant {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data: TensorData::F32(data),
        });
        name
    }

    pub fn const_i64(&mut self, hint: &str, dims: &[usize], data: Vec<i64>) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let name = self.fresh(hint);
        self.constants.push(Constant {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data: TensorData::I64(data),
        });
        name
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![])
    }

    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.op("MatMul", &[a, b], vec![])
    }

    pub fn relu(&mut self, x: &str) -> String {
        self.op("Relu", &[x], vec![])
    }

    pub fn sigmoid(&mut self, x: &str) -> String {
        self.op("Sigmoid", &[x], vec![])
    }

    pub fn softmax(&mut self, x: &str, axis: i64) -> String {
        self.op("Softmax", &[x], vec![("axis", Attr::Int(axis))])
    }

    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        if xs.len() == 1 {
            return xs[0].to_string();
        }
        self.op("Concat", xs, vec![("axis", Attr::Int(axis))])
    }

    /// Columns `start..end` of a 2-D tensor.
    pub fn slice_cols(&mut self, x: &str, start: usize, end: usize) -> String {
        let s = self.const_i64("starts", &[1], vec![start as i64]);
        let e = self.const_i64("ends", &[1], vec![end as i64]);
        let a = self.const_i64("axes", &[1], vec![1]);
        self.op("Slice", &[x, &s, &e, &a], vec![])
    }

    /// `x` reshaped to `shape` (ONNX rules: -1 is inferred, 0 copies the input's dim).
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.const_i64("shape", &[shape.len()], shape.to_vec());
        self.op("Reshape", &[x, &s], vec![])
    }

    /// Sum over `axis`, keeping it (size 1) when `keep`.
    pub fn reduce_sum(&mut self, x: &str, axis: i64, keep: bool) -> String {
        let a = self.const_i64("axes", &[1], vec![axis]);
        self.op(
            "ReduceSum",
            &[x, &a],
            vec![("keepdims", Attr::Int(keep as i64))],
        )
    }

    /// `data` indexed by `indices` along `axis`.
    pub fn gather(&mut self, data: &str, indices: &str, axis: i64) -> String {
        self.op("Gather", &[data, indices], vec![("axis", Attr::Int(axis))])
    }

    /// `Σ_j g[:, j] · experts[:, j, :]`: the gated sum of `g` (n × m) over `experts`
    /// (n × m × d), n × d.
    pub fn gated_sum(&mut self, g: &str, experts: &str, m: usize) -> String {
        let g3 = self.reshape(g, &[-1, m as i64, 1]);
        let prod = self.mul(&g3, experts);
        self.reduce_sum(&prod, 1, false)
    }
}

/// Widens or narrows a parameter slice to the `f32` the graph stores.
pub fn to_f32<T: Float>(v: &[T]) -> Vec<f32> {
    v.iter().map(|&x| Float::to_f64(x) as f32).collect()
}

impl<T: Float> Linear<T> {
    /// `act(x·W + b)` for `x` (n × n_in); returns the n × n_out output's name.
    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> String {
        let w = g.const_f32("w", &[self.n_in(), self.n_out()], to_f32(self.weight()));
        let b = g.const_f32("b", &[self.n_out()], to_f32(self.bias()));
        let xw = g.matmul(x, &w);
        let y = g.add(&xw, &b);
        match self.activation() {
            Activation::Relu => g.relu(&y),
            Activation::Identity => y,
        }
    }
}

impl<T: Float> BatchNorm<T> {
    /// Eval mode: `x·scale + shift` with the running statistics, folded exactly as
    /// [`BatchNorm::forward`] folds them (in `T`, then stored as `f32`).
    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> String {
        let one = T::one();
        let (mut scale, mut shift) = (Vec::new(), Vec::new());
        for j in 0..self.dim() {
            let inv_std = one / (self.running_var()[j] + self.eps()).sqrt();
            let s = self.gamma()[j] * inv_std;
            scale.push(s);
            shift.push(self.beta()[j] - self.running_mean()[j] * s);
        }
        let s = g.const_f32("scale", &[self.dim()], to_f32(&scale));
        let b = g.const_f32("shift", &[self.dim()], to_f32(&shift));
        let xs = g.mul(x, &s);
        g.add(&xs, &b)
    }
}

impl<T: Float> Mlp<T> {
    /// Every layer (and its batch norm, eval mode) on `x` (n × n_in).
    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> String {
        let mut h = x.to_string();
        for (l, (lin, bn)) in self.layers().iter().zip(self.norms()).enumerate() {
            h = g.scoped(&format!("layer{l}"), |g| lin.export(g, &h));
            if let Some(bn) = bn {
                h = g.scoped(&format!("bn{l}"), |g| bn.export(g, &h));
            }
        }
        h
    }
}

impl<T: Float> Gate<T> {
    /// Expert weights (n × n_experts) for `x`.
    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> String {
        let h = match self.hidden() {
            Some(mlp) => g.scoped("hidden", |g| mlp.export(g, x)),
            None => x.to_string(),
        };
        let z = g.scoped("proj", |g| self.proj().export(g, &h));
        match self.activation() {
            GateActivation::Softmax => g.softmax(&z, 1),
            GateActivation::SigmoidOverN => {
                let inv_e = T::one() / T::from_usize(self.n_experts());
                let c = g.const_f32("inv_experts", &[1], to_f32(&[inv_e]));
                let s = g.sigmoid(&z);
                g.mul(&s, &c)
            }
        }
    }
}

impl<T: Float> ExpertBank<T> {
    /// Every expert on `x`; returns the n × E × d stack of their outputs.
    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> String {
        let e = self.n_experts();
        let widths = self.widths();
        let mut h = g.scoped("layer0", |g| self.first().export(g, x));
        for l in 0..widths.len() {
            if l > 0 {
                let wp = widths[l - 1];
                let prev = h.clone();
                let outs: Vec<String> = (0..e)
                    .map(|k| {
                        g.scoped(&format!("{k}.layer{l}"), |g| {
                            let xk = g.slice_cols(&prev, k * wp, (k + 1) * wp);
                            self.rest()[k][l - 1].export(g, &xk)
                        })
                    })
                    .collect();
                let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
                h = g.concat(&refs, 1);
            }
            if let Some(bn) = &self.norms()[l] {
                h = g.scoped(&format!("bn{l}"), |g| bn.export(g, &h));
            }
        }
        g.reshape(&h, &[-1, e as i64, self.out_dim() as i64])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_scoped() {
        let mut g = GraphBuilder::new();
        g.reserve("x");
        let a = g.scoped("gate", |g| g.fresh("w"));
        let b = g.scoped("gate", |g| g.fresh("w"));
        assert_eq!(a, "gate.w");
        assert_eq!(b, "gate.w_1");
        assert_eq!(g.fresh("x"), "x_1");
        // A base that looks like an earlier suffixed name still gets its own name.
        assert_eq!(g.fresh("gate.w_1"), "gate.w_1_1");
    }

    #[test]
    fn linear_records_weights_and_ops() {
        let mut rng = crate::Rng::new(1);
        let lin = Linear::<f64>::new(3, 2, Activation::Relu, &mut rng);
        let mut g = GraphBuilder::new();
        let y = lin.export(&mut g, "x");
        let ops: Vec<&str> = g.nodes().iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Add", "Relu"]);
        assert_eq!(g.nodes()[2].outputs, [y]);
        assert_eq!(g.constants()[0].dims, [3, 2]);
        assert_eq!(g.constants()[0].data, TensorData::F32(to_f32(lin.weight())));
    }
}
