//! Multi-task ranking networks over a task grid: *switchers* turn one input
//! representation into K child representations (shared bottom, MMoE, CGC, PLE, identity;
//! later trees of switchers), and [`MultiTaskNet`] puts one tower per task on top of a
//! switcher, producing one logit per task; [`Towers`] optionally passes information
//! between the towers of funnel pairs (AITM).
//!
//! Gradient convention (shared with `mfh-nn`): parameter gradients and input gradients
//! accumulate; zero them before a backward pass.

// The parameter visitors spell out `dyn FnMut(&str, &mut [T], &mut [T])` so that every
// implementor of `Module` writes the same signature; an alias would change its lifetimes.
#![allow(clippy::type_complexity)]

pub mod cgc;
pub mod export;
pub mod identity;
pub mod mmoe;
pub mod net;
pub mod parallel;
pub mod ple;
pub mod shared_bottom;
pub mod spec;
pub mod switcher;
pub mod towers;
pub mod unit;

pub use cgc::Cgc;
pub use identity::Identity;
pub use mmoe::Mmoe;
pub use net::MultiTaskNet;
pub use parallel::DataParallel;
pub use ple::Ple;
pub use shared_bottom::SharedBottom;
pub use spec::{build, build_model, build_model_with_transfers, GateKind, ModelSpec};
pub use switcher::Switcher;
pub use towers::Towers;
pub use unit::UnitSpec;

// Trees of switchers and the model trait the trainer uses.
pub mod model;
pub mod tree;
pub use model::{GridShape, MultiTaskModel};
pub use tree::{Fusion, TreeNet, TreeSpec, Trees};
