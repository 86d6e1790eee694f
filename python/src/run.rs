//! Training and comparing from Python: the run goes on with the GIL released while the
//! calling Python thread watches a [`RunHandle`] (progress, stop requests).

use crate::config::Config;
use crate::errors::IntoPy;
use crate::model::Model;
use crate::tables::{list_separator, split_tables};
use mfh_train::{LiveProgress, RunHooks, TrainOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// A run's progress counters and stop flag, shared with the thread that trains.
#[pyclass(module = "mfh._mfh", frozen)]
#[derive(Default)]
pub struct RunHandle {
    stop: Arc<AtomicBool>,
    live: Arc<LiveProgress>,
}

#[pymethods]
impl RunHandle {
    #[new]
    fn new() -> Self {
        RunHandle::default()
    }

    /// Asks the run to stop at its next step (it saves a checkpoint there).
    fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// `(epoch, epochs, rows_done, rows_per_epoch, step, loss or None, evaluations)`.
    fn progress(&self) -> (u64, u64, u64, u64, u64, Option<f64>, u64) {
        let l = &self.live;
        (
            l.epoch.load(Relaxed),
            l.epochs.load(Relaxed),
            l.rows_done.load(Relaxed),
            l.rows_per_epoch.load(Relaxed),
            l.step.load(Relaxed),
            l.loss(),
            l.evaluations.load(Relaxed),
        )
    }
}

/// Trains model section `model` of `config` into `out`; returns the saved model.
#[pyfunction]
#[pyo3(signature = (config, model, out, seed=None, data=None, resume=false, init_from=None, keep_checkpoints=false, threads=None, tensorboard=None, handle=None))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    config: &Config,
    model: Option<String>,
    out: PathBuf,
    seed: Option<u64>,
    data: Option<&Bound<'_, PyDict>>,
    resume: bool,
    init_from: Option<PathBuf>,
    keep_checkpoints: bool,
    threads: Option<usize>,
    tensorboard: Option<PathBuf>,
    handle: Option<&RunHandle>,
) -> PyResult<Model> {
    let mut cfg = config.cfg.clone();
    if let Some(t) = threads {
        cfg.train.threads = mfh_config::Threads::Count(t);
    }
    let tables = split_tables(data, list_separator(&cfg))?;
    let opts = TrainOptions {
        model,
        out: out.clone(),
        seed,
        progress: false,
        keep_checkpoints,
        resume,
        init_from,
        tensorboard,
        publish: None,
        follow: None,
        hooks: RunHooks {
            tables,
            stop: handle.map(|h| h.stop.clone()),
            progress: handle.map(|h| h.live.clone()),
        },
    };
    py.detach(move || mfh_train::train(&cfg, &opts).map(|_| ()))
        .py_err()?;
    crate::model::load(py, out)
}

/// Compares model sections over seeds into `out` (table.md, results.json, plots), as
/// `mfh compare` does; returns the path of results.json.
#[pyfunction]
#[pyo3(signature = (config, models, seeds, out, bootstrap=1000, tensorboard=false, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn compare(
    py: Python<'_>,
    config: &Config,
    models: Vec<String>,
    seeds: usize,
    out: PathBuf,
    bootstrap: usize,
    tensorboard: bool,
    threads: Option<usize>,
) -> PyResult<PathBuf> {
    let mut cfg = config.cfg.clone();
    if let Some(t) = threads {
        cfg.train.threads = mfh_config::Threads::Count(t);
    }
    let models = if models.is_empty() {
        cfg.models.keys().cloned().collect()
    } else {
        models
    };
    let opts = mfh_compare::CompareOptions {
        models,
        seeds: seeds.max(1),
        out: out.clone(),
        bootstrap,
        tensorboard,
        progress: false,
        tuned: None,
    };
    py.detach(move || -> anyhow::Result<()> {
        std::fs::create_dir_all(&opts.out)?;
        mfh_compare::compare(&cfg, &opts)?;
        Ok(())
    })
    .py_err()?;
    Ok(out.join("results.json"))
}
