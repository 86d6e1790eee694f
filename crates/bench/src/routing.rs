//! `mfh bench routing`: training samples/s of a tree model (MFH, H-MTL) with cell routing
//! on and off, on the first batches of a config's train split held in memory.

use crate::print::summary;
use crate::timing::{adam, median, time_steps};
use anyhow::Result;
use mfh_artifact::{embedding_layer, ModelState};
use mfh_config::Config;
use mfh_data::{Batch, Pipeline, StreamOptions};
use mfh_model::ModelSpec;
use std::path::PathBuf;
use std::sync::Arc;

/// What `mfh bench routing` runs.
#[derive(Clone, Debug)]
pub struct RoutingOptions {
    pub config: PathBuf,
    /// A model section of type `mfh` or `hmtl`.
    pub model: String,
    /// Batches held in memory and cycled through.
    pub batches: usize,
    pub windows: usize,
    pub steps_per_window: usize,
}

/// Builds the model twice (routing on, routing off) from the same seed and times both,
/// window by window in turn; prints each rate and their ratio.
pub fn routing(o: &RoutingOptions) -> Result<()> {
    let cfg = Config::load(&o.config)?;
    mfh_nn::use_threads(cfg.train.threads.resolve());
    let (_, table) = cfg.model_section(Some(&o.model))?;
    let spec: ModelSpec = toml::Value::Table(table.clone()).try_into()?;
    let mut p = Pipeline::new(&cfg)?;
    p.fit(&cfg.train.train_split)?;
    let layout = p.layout().clone();
    let mut batches = first_batches(&cfg, Arc::new(p), o.batches)?;
    let grid = cfg.grid();
    let mut states = Vec::new();
    for on in [true, false] {
        let emb = embedding_layer(&layout, &cfg.train.embedding, cfg.train.seed)?;
        let loss = mfh_artifact::grid_loss(&cfg, &grid)?;
        states.push(ModelState::new(
            grid.clone(),
            with_routing(&spec, on, &o.model)?,
            emb,
            layout.dense.len(),
            loss,
            cfg.train.seed,
        )?);
    }
    outln!(
        "{} on {}: {} tasks, {} cells, batch {}, {} threads; {} batches in memory",
        o.model,
        o.config.display(),
        grid.n_tasks(),
        grid.n_cells(),
        cfg.train.batch_size,
        mfh_nn::threads(),
        batches.len()
    );
    let [on, off] = time_both(&mut states, &mut batches, o);
    let (r_on, r_off) = (median(&on), median(&off));
    summary("routed", "samples/s", on);
    summary("dense ", "samples/s", off);
    outln!("routed / dense: {:.2}×", r_on / r_off);
    Ok(())
}

/// `spec` with cell routing switched `on` or off; an error unless it is a tree model.
fn with_routing(spec: &ModelSpec, on: bool, model: &str) -> Result<ModelSpec> {
    Ok(match spec.clone() {
        ModelSpec::Mfh(mut t) => {
            t.routing = on;
            ModelSpec::Mfh(t)
        }
        ModelSpec::Hmtl(mut t) => {
            t.routing = on;
            ModelSpec::Hmtl(t)
        }
        _ => anyhow::bail!("model `{model}` is not a tree model (mfh or hmtl)"),
    })
}

/// The first `n` batches of the train split, in file order.
fn first_batches(cfg: &Config, p: Arc<Pipeline>, n: usize) -> Result<Vec<Batch>> {
    let mut batches = Vec::new();
    for b in p.stream(
        &cfg.train.train_split,
        StreamOptions::in_order(cfg.train.batch_size),
    )? {
        batches.push(b?);
        if batches.len() == n {
            break;
        }
    }
    Ok(batches)
}

/// Each timed window's samples/s for states[0] and states[1] (window 0 warms up).
fn time_both(
    states: &mut [ModelState],
    batches: &mut [Batch],
    o: &RoutingOptions,
) -> [Vec<f64>; 2] {
    let mut adams = [adam(), adam()];
    let mut steps_done = [0u64; 2];
    let mut rates = [Vec::new(), Vec::new()];
    for w in 0..=o.windows {
        // Alternate the two modes window by window so drift affects both alike.
        for k in 0..2 {
            let r = time_steps(
                &mut states[k],
                &mut adams[k],
                batches,
                &mut steps_done[k],
                o.steps_per_window,
                &mut 0.0,
            );
            if w > 0 {
                rates[k].push(r);
            }
        }
    }
    rates
}
