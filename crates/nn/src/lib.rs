//! Dense neural-network engine for the multi-task ranking models: layers with
//! hand-written backward passes, an Adam optimiser and the GEMM kernels behind them.
//!
//! Conventions shared by every layer in this crate:
//! - matrices are row-major flat slices; a batch of `n` rows of width `w` is `n × w`;
//! - parameter gradients *and* input gradients (`dx`) accumulate (`+=`), so a tensor
//!   read by several consumers receives the sum of their gradients without extra copies;
//!   callers zero them (see [`Module::zero_grad`]) before a backward pass;
//! - activation buffers owned by a layer only grow when the batch grows, so a training
//!   step in steady state allocates nothing in this crate.
//!
//! The engine is generic over [`Float`] so that gradient checks can run in `f64` while
//! training runs in `f32`.

// The parameter visitors spell out `dyn FnMut(&str, &mut [T], &mut [T])` so that every
// implementor of `Module` writes the same signature; an alias would change its lifetimes.
#![allow(clippy::type_complexity)]

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

pub mod adam;
pub mod batchnorm;
pub mod expert_bank;
pub mod gate;
pub mod gate_bank;
pub mod gated_sum;
pub mod gradcheck;
pub mod graph;
pub mod kernels;
pub mod linear;
pub mod mlp;
pub mod module;
pub mod product;
pub mod rng;
pub mod rows;

pub use adam::Adam;
pub use batchnorm::BatchNorm;
pub use expert_bank::ExpertBank;
pub use gate::{Gate, GateActivation};
pub use gate_bank::GateBank;
pub use gated_sum::{
    gated_sum_backward, gated_sum_banks_backward, gated_sum_banks_forward, gated_sum_forward,
    gated_sums_backward, gated_sums_forward, Bank, Slot,
};
pub use kernels::{init_thread_pool, set_threads, threads, use_threads};
pub use linear::{Activation, Linear, Rows, RowsMut};
pub use mlp::Mlp;
pub use module::{with_name, Module};
pub use product::{matmul, matmul_bias_act, precision, set_precision, with_precision, Precision};
pub use rng::Rng;
pub use rows::{gather_rows, scatter_add_rows};

/// Scalar type of the engine (`f32` for training, `f64` for gradient checks).
///
/// `num_traits::FromPrimitive` is deliberately *not* a supertrait: its `from_f64`
/// returns `Option<Self>` and would make `T::from_f64(x)` ambiguous for every user of
/// this trait. Use [`Float::from_f64`] / [`Float::from_usize`] instead.
pub trait Float:
    num_traits::Float
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    /// Converts (rounding) from `f64`.
    fn from_f64(v: f64) -> Self;
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
    /// Converts a count (batch size, fan-in) to a scalar.
    fn from_usize(v: usize) -> Self {
        Self::from_f64(v as f64)
    }
}

impl Float for f32 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

/// Grows `buf` to at least `len` elements (never shrinks) and returns its first `len`.
/// Layers use it so buffers are only reallocated when the batch grows.
pub fn ensure_len<T: Float>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    &mut buf[..len]
}
