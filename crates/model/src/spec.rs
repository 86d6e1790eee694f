//! Serialisable architecture of any model of the zoo ([`ModelSpec`]): a flat model (one
//! switcher over all tasks, one tower per task: [`FlatSpec`]) or a tree model (H-MTL,
//! MFH: [`TreeSpec`]); and [`build_model`], which validates a spec against the data's
//! input width and task grid and constructs the network. The table form a config or a
//! model folder holds is in `wire`.

mod wire;

use crate::model::{GridShape, MultiTaskModel};
use crate::net::MultiTaskNet;
use crate::pepnet::{Pepnet, PepnetSpec};
use crate::shape::{check_widths, InputField};
use crate::stem::StemSpec;
use crate::tree::{TreeNet, TreeSpec};
use crate::unit::{mlp_params, UnitSpec};
use mfh_nn::{Float, Rng};
use serde::{Deserialize, Serialize};

/// Architecture of a multi-task network; layer lists are widths after the input.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(from = "wire::Wire", into = "wire::Wire")]
pub enum ModelSpec {
    /// One switcher over all tasks, one tower per task (`single`, `shared_bottom`,
    /// `mmoe`, `cgc`, `ple`).
    Flat(FlatSpec),
    /// One tree of switchers, split first on one grid dimension ([`TreeNet`]).
    Hmtl(TreeSpec),
    /// Multi-faceted hierarchical: several trees over the grid, leaves fused per task
    /// ([`TreeNet`]).
    Mfh(TreeSpec),
    /// PEPNet: the input and every tower layer scaled by gates on prior features
    /// ([`Pepnet`]).
    Pepnet(PepnetSpec),
    /// STEM: shared and per-behaviour (or per-task) embeddings, each task's tower
    /// sending gradients only to the shared and its own ([`crate::stem`]).
    Stem(StemSpec),
}

/// A flat model: `switcher` over all tasks of the grid ([`UnitSpec::Identity`] for the
/// `single` model: towers straight on the input), then one tower per task.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatSpec {
    pub switcher: UnitSpec,
    /// Hidden widths of each task tower.
    pub tower: Vec<usize>,
    /// BatchNorm after every ReLU layer of the switcher and the towers.
    pub batch_norm: bool,
}

impl ModelSpec {
    /// Checks the spec on its own (no zero-width layers, at least one expert, ...).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ModelSpec::Flat(f) => f.validate(),
            ModelSpec::Hmtl(t) | ModelSpec::Mfh(t) => t.validate(),
            ModelSpec::Pepnet(p) => p.validate(),
            ModelSpec::Stem(s) => s.validate(),
        }
    }

    /// Each embedding table's width as a multiple of its features' `dim` (STEM's shared
    /// and specific blocks; 1 for every other model).
    pub fn embedding_copies(&self, shape: &GridShape) -> usize {
        match self {
            ModelSpec::Stem(s) => s.embedding_copies(shape),
            _ => 1,
        }
    }

    /// Resolves what the spec names in the network's input (PEPNet's prior features)
    /// against the input's fields; the other models name nothing.
    pub fn bind(&mut self, fields: &[InputField]) -> Result<(), String> {
        match self {
            ModelSpec::Pepnet(p) => p.bind(fields),
            ModelSpec::Stem(s) => {
                s.bind(fields);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A lower bound on the parameters of the model this spec builds over `shape` and
    /// `n_in` inputs, computed without building it: counts only parts that are sure to
    /// exist (experts, bottoms, one tower per task; a tree's levels when every grid
    /// dimension has several values). A loader compares it with the values stored on
    /// disk before building, so that a corrupted width cannot allocate gigabytes.
    pub fn min_params(&self, shape: &GridShape, n_in: usize) -> u128 {
        match self {
            ModelSpec::Flat(f) => f.min_params(shape.n_tasks(), n_in),
            ModelSpec::Hmtl(t) | ModelSpec::Mfh(t) => t.min_params(shape, n_in),
            ModelSpec::Pepnet(p) => p.min_params(shape.n_tasks(), n_in),
            ModelSpec::Stem(s) => mlp_params(n_in, &s.tower)
                .saturating_add(*s.tower.last().unwrap_or(&0) as u128 + 1)
                .saturating_mul(shape.n_tasks() as u128),
        }
    }
}

impl FlatSpec {
    /// Checks the spec on its own; errors name the keys of the model's table.
    pub fn validate(&self) -> Result<(), String> {
        match &self.switcher {
            // Without a hidden layer each task would be a plain logistic regression.
            UnitSpec::Identity {} => return check_widths("single tower", &self.tower, true),
            // The flat model's table calls the shared bottom's layers `bottom`.
            UnitSpec::SharedBottom(s) => check_widths("bottom", &s.layers, true)?,
            unit => unit.validate()?,
        }
        check_widths("tower", &self.tower, false)
    }

    /// See [`ModelSpec::min_params`].
    fn min_params(&self, n_tasks: usize, n_in: usize) -> u128 {
        let n_tasks = n_tasks as u128;
        match &self.switcher {
            UnitSpec::Identity {} => mlp_params(n_in, &self.tower).saturating_mul(n_tasks),
            unit => unit
                .min_params(n_in)
                .saturating_add(mlp_params(1, &self.tower).saturating_mul(n_tasks)),
        }
    }

    /// The network for `n_in` input features and `n_tasks` task logits, with transfers
    /// between task pairs `(s, t)`, initialised deterministically from `seed`.
    fn build<T: Float>(
        &self,
        n_in: usize,
        n_tasks: usize,
        seed: u64,
        transfers: &[(usize, usize)],
    ) -> Result<MultiTaskNet<T>, String> {
        if n_in == 0 {
            return Err("input width is 0".into());
        }
        if n_tasks == 0 {
            return Err("no tasks".into());
        }
        self.validate()?;
        let mut rng = Rng::new(seed);
        let switcher = self
            .switcher
            .build::<T>(n_in, n_tasks, self.batch_norm, &mut rng);
        MultiTaskNet::with_transfers(switcher, &self.tower, self.batch_norm, transfers, &mut rng)
    }
}

/// Builds any model of the zoo over the grid `shape` for `n_in` input features,
/// initialised deterministically from `seed`.
pub fn build_model<T: Float>(
    spec: &ModelSpec,
    shape: &GridShape,
    n_in: usize,
    seed: u64,
) -> Result<Box<dyn MultiTaskModel<T>>, String> {
    build_model_with_transfers(spec, shape, n_in, seed, &[])
}

/// [`build_model`] with AITM transfers between the towers of behaviour pairs `(a, b)`
/// (a → b, b implies a; behaviour indices into `shape.dims[0]`), one per cell: tower
/// `(b, c)` receives from tower `(a, c)` (see [`crate::Towers`]). Without transfers the
/// model, its parameter names and its initialisation are those of [`build_model`].
pub fn build_model_with_transfers<T: Float>(
    spec: &ModelSpec,
    shape: &GridShape,
    n_in: usize,
    seed: u64,
    transfers: &[(usize, usize)],
) -> Result<Box<dyn MultiTaskModel<T>>, String> {
    Ok(match spec {
        ModelSpec::Hmtl(t) => Box::new(TreeNet::with_transfers(
            t, shape, n_in, true, seed, transfers,
        )?),
        ModelSpec::Mfh(t) => Box::new(TreeNet::with_transfers(
            t, shape, n_in, false, seed, transfers,
        )?),
        ModelSpec::Pepnet(p) => {
            if !transfers.is_empty() {
                return Err("AITM transfers are not built for pepnet towers".into());
            }
            Box::new(Pepnet::new(p, shape, n_in, seed)?)
        }
        ModelSpec::Stem(s) => {
            if n_in == 0 {
                return Err("input width is 0".into());
            }
            if !transfers.is_empty() {
                // A receiver's loss would flow through its source tower into the source
                // behaviour's specific embeddings, which STEM stops.
                return Err("AITM transfers are not built for stem towers".into());
            }
            let input = s.input::<T>(shape, n_in)?;
            let mut rng = Rng::new(seed);
            Box::new(
                MultiTaskNet::new(Box::new(input), &s.tower, s.batch_norm, &mut rng)
                    .with_cells(shape.n_cells()),
            )
        }
        ModelSpec::Flat(f) => {
            let pairs = shape.transfer_tasks(transfers)?;
            Box::new(
                f.build::<T>(n_in, shape.n_tasks(), seed, &pairs)?
                    .with_cells(shape.n_cells()),
            )
        }
    })
}

/// Builds a flat network (one switcher over all tasks, one tower per task) for `n_in`
/// input features and `n_tasks` task logits, initialised deterministically from `seed`.
/// Tree models need the grid: see [`build_model`].
pub fn build<T: Float>(
    spec: &ModelSpec,
    n_in: usize,
    n_tasks: usize,
    seed: u64,
) -> Result<MultiTaskNet<T>, String> {
    match spec {
        ModelSpec::Flat(f) => f.build(n_in, n_tasks, seed, &[]),
        ModelSpec::Hmtl(_) | ModelSpec::Mfh(_) | ModelSpec::Pepnet(_) | ModelSpec::Stem(_) => Err(
            "tree models, PEPNet and STEM are built over the grid's dimensions (build_model)"
                .into(),
        ),
    }
}
