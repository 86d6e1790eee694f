//! Multi-task ranking networks over a task grid: *switchers* turn one input
//! representation into K child representations (shared bottom, MMoE, CGC, PLE, identity,
//! and trees of switchers), each unit built from its shape (`MmoeShape`, …; one
//! [`UnitSpec`] names any of them). [`MultiTaskNet`] puts one tower per task on top of a
//! switcher (the flat models); [`TreeNet`] fuses the leaves of one or several trees per
//! task before its tower (H-MTL, MFH); [`Towers`] optionally passes information between
//! the towers of funnel pairs (AITM). [`ModelSpec`] describes any of them.
//!
//! Gradient convention (shared with `mfh-nn`): parameter gradients and input gradients
//! accumulate; zero them before a backward pass.

// The parameter visitors spell out `dyn FnMut(&str, &mut [T], &mut [T])` so that every
// implementor of `Module` writes the same signature; an alias would change its lifetimes.
#![allow(clippy::type_complexity)]

pub mod cgc;
pub mod export;
pub mod fusion;
pub mod identity;
mod keys;
pub mod mmoe;
pub mod model;
pub mod net;
pub mod parallel;
pub mod pepnet;
pub mod ple;
pub mod shape;
pub mod shared_bottom;
pub mod spec;
pub mod stem;
pub mod switcher;
pub mod towers;
pub mod tree;
pub mod unit;

pub use cgc::{Cgc, CgcShape};
pub use fusion::Fusion;
pub use identity::Identity;
pub use mmoe::{Mmoe, MmoeShape};
pub use model::{GridShape, MultiTaskModel};
pub use net::MultiTaskNet;
pub use parallel::DataParallel;
pub use pepnet::{Pepnet, PepnetSpec};
pub use ple::{Ple, PleShape};
pub use shape::{GateKind, InputField};
pub use shared_bottom::{SharedBottom, SharedBottomShape};
pub use spec::{build, build_model, build_model_with_transfers, FlatSpec, ModelSpec};
pub use stem::{StemInput, StemSpec, StemSpecific};
pub use switcher::Switcher;
pub use towers::Towers;
pub use tree::{TreeNet, TreeSpec, Trees};
pub use unit::UnitSpec;
