//! The whole comparison: every (model, seed) run not finished yet is trained and scored,
//! then the reports are written from all finished runs.

use crate::runs::{finished_run, protocol, run_dir, train_run, RunRecord};
use crate::tables::write_reports;
use crate::tensorboard::write_tensorboard;
use anyhow::{Context, Result};
use mfh_config::Config;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Model section names.
    pub models: Vec<String>,
    pub seeds: usize,
    pub out: PathBuf,
    /// Bootstrap resamples for the 95 % intervals.
    pub bootstrap: usize,
    /// Write TensorBoard scalars as each run trains (`OUT/tensorboard/MODEL-seedS/`) and
    /// each segment's mean AUC after (`…/segments/`).
    pub tensorboard: bool,
    pub progress: bool,
    /// `mfh tune` results, one folder per model (`DIR/MODEL/best.toml`): each model's
    /// runs take its tuned overrides.
    pub tuned: Option<PathBuf>,
}

/// Trains and scores every (model, seed) not finished yet, then writes the reports.
pub fn compare(cfg: &Config, opts: &CompareOptions) -> Result<Vec<RunRecord>> {
    for m in &opts.models {
        cfg.model_section(Some(m))?;
    }
    let (select, report) = protocol(cfg)?;
    eprintln!(
        "comparing {} on {} seeds: selected on `{select}`, reported on `{report}`",
        opts.models.join(", "),
        opts.seeds
    );
    let mut sel_cfg = cfg.clone();
    sel_cfg.train.valid_split = select.clone();
    let total = opts.models.len() * opts.seeds;
    let mut runs = Vec::new();
    let mut k = 0;
    for model in &opts.models {
        let model_cfg = match &opts.tuned {
            None => sel_cfg.clone(),
            Some(dir) => {
                let path = dir.join(model).join("best.toml");
                if !path.exists() {
                    anyhow::bail!(
                        "--tuned: no {} (run `mfh tune --model {model} --out {}`)",
                        path.display(),
                        dir.join(model).display()
                    );
                }
                let o = crate::tune::read_best(&path)?;
                eprintln!(
                    "{model}: tuned settings from {}: {}",
                    path.display(),
                    o.iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut c = sel_cfg
                    .with_overrides(&o)
                    .with_context(|| format!("{}", path.display()))?;
                c.train.valid_split = select.clone();
                c
            }
        };
        for s in 0..opts.seeds {
            k += 1;
            let seed = cfg.train.seed + s as u64;
            let dir = run_dir(&opts.out, model, seed);
            if let Some(r) = finished_run(&dir) {
                eprintln!("[{k}/{total}] {model} seed {seed}: already done, kept");
                runs.push(r);
                continue;
            }
            eprintln!("[{k}/{total}] {model} seed {seed}: training");
            let tb = opts
                .tensorboard
                .then(|| crate::tensorboard::run_dir(&opts.out, model, seed));
            let r = train_run(&model_cfg, model, seed, &dir, &report, opts.progress, tb)
                .with_context(|| format!("model `{model}` seed {seed}"))?;
            runs.push(r);
        }
    }
    crate::oracle::write_oracle(cfg, &opts.out, &report)?;
    write_reports(cfg, &opts.out, &runs, opts.bootstrap)?;
    if opts.tensorboard {
        write_tensorboard(&cfg.grid(), &opts.out, &runs)?;
    }
    Ok(runs)
}
