//! Graph export of the switchers and models ([`mfh_nn::graph`]): each part describes
//! its eval-mode forward with every branch on every row (the dense form). Cell routing
//! computes, for each row, exactly its own branches of that dense form, and batch norm
//! in eval mode does not depend on the rows beside it, so the dense graph answers every
//! row as a routed forward does.
//!
//! The per-type code sits beside each type (`cgc/export.rs`, `towers/export.rs`,
//! `tree/export.rs`, the `export` method of each switcher); this module holds what
//! several of them share.

use mfh_nn::graph::GraphBuilder;
use mfh_nn::{ExpertBank, Float, Gate};

/// MMoE: every gate mixes all experts of the one bank; K outputs, each n × d.
pub(crate) fn mmoe<T: Float>(
    g: &mut GraphBuilder,
    x: &str,
    bank: &ExpertBank<T>,
    gates: &[Gate<T>],
) -> Vec<String> {
    let stack = g.scoped("experts", |g| bank.export(g, x));
    gates
        .iter()
        .enumerate()
        .map(|(k, gate)| {
            g.scoped(&format!("gates.{k}"), |g| {
                let w = gate.export(g, x);
                g.gated_sum(&w, &stack, bank.n_experts())
            })
        })
        .collect()
}
