//! One function per subcommand: each loads what it needs, calls the library crates and
//! prints their results. `run` in main.rs only dispatches here.

use crate::{CompareArgs, EvalArgs, PredictArgs, TrainArgs};
use anyhow::{bail, Context, Result};
use mfh_artifact::{evaluate, load_model, predict_to_csv};
use mfh_config::{Config, Threads};
use mfh_train::{train, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) fn prepare_census(raw: PathBuf, out: PathBuf, seed: u64) -> Result<()> {
    let r = mfh_data::census::prepare(&mfh_data::census::CensusOptions { raw, out, seed })?;
    eprintln!(
        "prepared {} rows: train {}, valid {}, test {}; config: {}",
        r.rows,
        r.split_rows[0],
        r.split_rows[1],
        r.split_rows[2],
        r.config.display()
    );
    Ok(())
}

pub(crate) fn prepare_synthetic(o: &mfh_data::synthetic::SyntheticOptions) -> Result<()> {
    use mfh_data::synthetic::{BEHAVIOURS, CELLS};
    let r = mfh_data::synthetic::prepare(o)?;
    eprintln!(
        "generated {} rows ({} users, {} new; {} items, {} head): train {}, valid {}, test {}; config: {}",
        r.rows,
        r.users,
        r.new_users,
        r.items,
        r.head_items,
        r.split_rows[0],
        r.split_rows[1],
        r.split_rows[2],
        r.config.display()
    );
    eprintln!("oracle AUC on `test` (the stored true probabilities), per cell:");
    eprintln!(
        "  {:<10} {:>9} {}",
        "user,item",
        "all rows",
        BEHAVIOURS.join("  ")
    );
    for ((cell, aucs), rows) in CELLS.iter().zip(&r.oracle_auc).zip(r.cell_rows) {
        let v: Vec<String> = aucs
            .iter()
            .map(|a| a.map_or("   -  ".into(), |a| format!("{a:.4}")))
            .collect();
        eprintln!("  {cell:<10} {rows:>9} {}", v.join("  "));
    }
    Ok(())
}

pub(crate) fn check(config: &Path, count: bool) -> Result<()> {
    let cfg = Config::load(config)?;
    let s = mfh_train::check(&cfg, count)?;
    out!("{}", s.text);
    outln!("ok");
    Ok(())
}

pub(crate) fn train_cmd(a: TrainArgs) -> Result<()> {
    let TrainArgs {
        config,
        model,
        out,
        seed,
        resume,
        init_from,
        quiet,
        tensorboard,
        threads,
        publish,
        publish_every,
        keep_versions,
        follow,
        follow_success,
        follow_poll_ms,
        follow_idle_exit,
    } = a;
    let idle_exit = follow_idle_exit
        .map(|s| {
            std::time::Duration::try_from_secs_f64(s).map_err(|_| {
                anyhow::anyhow!("--follow-idle-exit {s}: give a number of seconds ≥ 0")
            })
        })
        .transpose()?;
    let mut cfg = Config::load(&config)?;
    if let Some(t) = threads {
        cfg.train.threads = t;
    }
    let opts = TrainOptions {
        hooks: Default::default(),
        tensorboard: tensorboard.then(|| out.join("tensorboard")),
        publish: publish.map(|root| mfh_train::Publish {
            root,
            every: publish_every,
            keep: keep_versions as usize,
        }),
        follow: follow.map(|dir| mfh_train::Follow {
            dir,
            success_marker: follow_success,
            poll: std::time::Duration::from_millis(follow_poll_ms),
            idle_exit,
        }),
        model,
        out: out.clone(),
        seed,
        progress: !quiet,
        keep_checkpoints: false,
        resume,
        init_from,
    };
    // Under `mpirun -np N` (N > 1): data-parallel training; only rank 0 reports.
    #[cfg(feature = "mpi")]
    let s = match mfh_distributed::train_under_mpi(&cfg, &opts)? {
        Some(Some(s)) => s,
        Some(None) => return Ok(()),
        None => train(&cfg, &opts)?,
    };
    #[cfg(not(feature = "mpi"))]
    let s = train(&cfg, &opts)?;
    out!("{}", s.report.render_table());
    outln!(
        "model `{}` ({} dense parameters): best {} {} at step {} of {}; {:.0} samples/s; saved to {}",
        s.model_name,
        s.params,
        s.metric,
        s.best_value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
        s.best_step,
        s.steps,
        s.samples_per_sec,
        out.display()
    );
    Ok(())
}

pub(crate) fn compare(a: CompareArgs) -> Result<()> {
    let CompareArgs {
        config,
        models,
        seeds,
        out,
        bootstrap,
        tensorboard,
        quiet,
        threads,
        tuned,
    } = a;
    let mut cfg = Config::load(&config)?;
    if let Some(t) = threads {
        cfg.train.threads = t;
    }
    let models = if models.is_empty() {
        cfg.models.keys().cloned().collect()
    } else {
        models
    };
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let opts = mfh_compare::CompareOptions {
        models,
        seeds,
        out: out.clone(),
        bootstrap,
        tensorboard,
        progress: !quiet,
        tuned,
    };
    mfh_compare::compare(&cfg, &opts)?;
    let table = std::fs::read_to_string(out.join("table.md"))?;
    out!("{table}");
    outln!(
        "written: {} and {}",
        out.join("table.md").display(),
        out.join("results.json").display()
    );
    Ok(())
}

pub(crate) fn eval(a: EvalArgs) -> Result<()> {
    let EvalArgs {
        model_dir,
        config,
        split,
        json,
        threads,
        precision,
    } = a;
    mfh_nn::set_precision(precision);
    let mut m = load_model(&model_dir)?;
    let cfg = match &config {
        Some(c) => Config::load(c)?,
        None => m.config.clone(),
    };
    let split = split.unwrap_or_else(|| m.meta.selection_split.clone());
    let p = Arc::new(m.pipeline(&cfg)?);
    mfh_nn::use_threads(threads.unwrap_or(cfg.train.threads).resolve());
    let res = evaluate(&mut m.state, &p, &split, m.config.train.batch_size)?;
    if res.rows == 0 {
        eprintln!("warning: split `{split}` is empty: no row matches it");
    }
    if json {
        outln!("{}", res.report.to_json());
    } else {
        out!("{}", res.report.render_table());
        outln!("{split}: {} rows, loss {:.6}", res.rows, res.loss);
    }
    Ok(())
}

pub(crate) fn predict(a: PredictArgs) -> Result<()> {
    let PredictArgs {
        model_dir,
        config,
        split,
        data,
        keep,
        out,
        threads,
        precision,
    } = a;
    mfh_nn::set_precision(precision);
    let (Some(config), Some(split)) = (config, split) else {
        let n = crate::predict::predict_files(&model_dir, data, &keep, &out, threads)?;
        outln!("{n} rows → {}", out.display());
        return Ok(());
    };
    let mut m = load_model(&model_dir)?;
    let cfg = Config::load(&config)?;
    let p = Arc::new(m.pipeline(&cfg)?);
    mfh_nn::use_threads(threads.unwrap_or(cfg.train.threads).resolve());
    let n = predict_to_csv(&mut m.state, &p, &split, m.config.train.batch_size, &out)?;
    if n == 0 {
        eprintln!("warning: split `{split}` is empty: no row matches it");
    }
    outln!("{n} rows → {}", out.display());
    Ok(())
}

pub(crate) fn inspect_cmd(model_dir: &Path) -> Result<()> {
    let mut m = load_model(model_dir)?;
    out!("{}", inspect(&mut m));
    Ok(())
}

pub(crate) fn export(model_dir: &Path, onnx: &Path) -> Result<()> {
    let m = load_model(model_dir)?;
    let s = mfh_export::export(&m, onnx)?;
    let rows: usize = s.tables.iter().map(|t| t.1).sum();
    outln!(
        "{} ({} nodes, {} bytes); {} tables, {rows} rows → {}; inputs and outputs: {}; bundle {}",
        s.onnx.display(),
        s.nodes,
        s.onnx_bytes,
        s.tables.len(),
        s.rows_dir.display(),
        s.io_json.display(),
        s.bundle
    );
    for t in &s.other_temps {
        eprintln!(
            "warning: {} is the temp folder of another export to {} (one running now, or one \
             cut short); left as it is: remove it once no export to that path runs",
            t.display(),
            s.onnx.display()
        );
    }
    Ok(())
}

#[cfg(feature = "serve")]
pub(crate) fn serve(a: crate::ServeArgs) -> Result<()> {
    // Every scorer's products (the scorers' threads read the process-wide setting).
    mfh_nn::set_precision(a.precision);
    mfh_serve::run(mfh_serve::ServeOptions {
        addr: a.addr,
        grpc_addr: a.grpc_addr,
        name: a.name,
        scorers: a.scorers.unwrap_or(0),
        threads: a.threads,
        queue: a.queue,
        max_rows: a.max_rows,
        batch_delay: std::time::Duration::from_micros(a.batch_delay_us),
        max_batch_rows: a.max_batch_rows,
        body_limit: a.body_limit,
        max_connections: a.max_connections,
        header_timeout: std::time::Duration::from_millis(a.header_timeout_ms),
        body_timeout: std::time::Duration::from_millis(a.body_timeout_ms),
        timeout: std::time::Duration::from_millis(a.timeout_ms),
        poll: std::time::Duration::from_millis(a.poll_ms),
        debug_log: a.debug,
        ..mfh_serve::ServeOptions::new(a.model_dir)
    })
}

pub(crate) fn prepare_kuairand(
    raw: &Path,
    extra_logs: Vec<PathBuf>,
    out: &Path,
) -> Result<PathBuf> {
    let rep = mfh_data::kuairand::prepare(&mfh_data::kuairand::PrepareOptions {
        raw: raw.to_path_buf(),
        extra_logs,
        out: out.to_path_buf(),
    })?;
    eprintln!(
        "prepared {} rows of {} read ({} dates from {}); config: {}",
        rep.rows_written,
        rep.rows_read,
        rep.rows_by_date.len(),
        rep.rows_by_date.first().map(|d| d.0).unwrap_or(0),
        rep.config.display()
    );
    Ok(rep.config)
}

fn inspect(m: &mut mfh_artifact::LoadedModel) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let meta = &m.meta;
    let _ = writeln!(s, "model folder: {}", m.dir.display());
    let _ = writeln!(
        s,
        "format version {}, written by mfh {}",
        meta.format_version, meta.mfh_version
    );
    let _ = writeln!(s, "model `{}`: {:?}", meta.model_name, meta.spec);
    let _ = writeln!(
        s,
        "grid: {} behaviours ({}) × {} cells = {} tasks",
        meta.grid.n_behaviours(),
        meta.grid.behaviours.join(", "),
        meta.grid.n_cells(),
        meta.grid.n_tasks()
    );
    let _ = writeln!(
        s,
        "input width {}; {} dense parameters; step {}",
        meta.n_in,
        m.state.net_mut().num_params(),
        meta.step
    );
    let _ = writeln!(
        s,
        "selected on `{}` by {} = {}",
        meta.selection_split,
        meta.selection_metric,
        meta.selection_value
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into())
    );
    s.push_str(&m.state.net().describe());
    let _ = writeln!(
        s,
        "embedding tables:             dim       rows   row bytes   opt bytes  index bytes  optimizer, lifecycle"
    );
    let (mut rows, mut bytes) = (0, 0);
    for t in m.state.emb.tables() {
        let row_bytes = t.len() * t.dim() * 4;
        let opt_bytes = t.len() * t.state_width() * 4;
        let lc = &t.spec().lifecycle;
        let mut life = Vec::new();
        if lc.admit_after > 1 {
            life.push(format!("admit after {}", lc.admit_after));
        }
        if lc.ttl_steps > 0 {
            life.push(format!("ttl {} steps", lc.ttl_steps));
        }
        if lc.max_rows > 0 {
            life.push(format!("cap {} rows", lc.max_rows));
        }
        let opt = match t.spec().optimizer {
            mfh_embedding::RowOptimizer::Adagrad { .. } => "adagrad",
            mfh_embedding::RowOptimizer::Adam { .. } => "adam",
            mfh_embedding::RowOptimizer::Ftrl { .. } => "ftrl",
        };
        let _ = writeln!(
            s,
            "  {:<24} {:>5} {:>10} {:>11} {:>11} {:>12}  {opt}{}",
            t.name(),
            t.dim(),
            t.len(),
            row_bytes,
            opt_bytes,
            t.index_bytes(),
            if life.is_empty() {
                String::new()
            } else {
                format!(", {}", life.join(", "))
            }
        );
        rows += t.len();
        bytes += t.bytes();
    }
    let _ = writeln!(
        s,
        "  total: {rows} rows, {:.1} MB in memory with index and slack",
        bytes as f64 / 1e6
    );
    s
}

/// The bundled raw data: next to the source tree this binary was built from.
fn bundled_raw() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/kuairand-pure")
}

pub(crate) fn quickstart(out: &Path, raw: Option<PathBuf>, threads: Option<Threads>) -> Result<()> {
    let raw = raw.unwrap_or_else(bundled_raw);
    if !raw.is_dir() {
        bail!(
            "{}: the bundled KuaiRand data is missing; pass --raw DIR",
            raw.display()
        );
    }
    let t0 = std::time::Instant::now();
    let data_dir = out.join("data");
    let config = prepare_kuairand(&raw, Vec::new(), &data_dir)?;
    let mut cfg = Config::load(&config)?;
    if let Some(t) = threads {
        cfg.train.threads = t;
    }
    let mut results = Vec::new();
    for name in ["mmoe", "mfh"] {
        let model_dir = out.join(name);
        let s = train(
            &cfg,
            &TrainOptions {
                hooks: Default::default(),
                tensorboard: None,
                publish: None,
                follow: None,
                model: Some(name.into()),
                out: model_dir.clone(),
                seed: None,
                progress: true,
                keep_checkpoints: false,
                resume: false,
                init_from: None,
            },
        )
        .with_context(|| format!("training `{name}`"))?;
        outln!(
            "{name}: {} dense parameters, best at step {} of {}, {:.0} training samples/s, model in {}",
            s.params,
            s.best_step,
            s.steps,
            s.samples_per_sec,
            model_dir.display()
        );
        results.push((name, s.report));
    }
    let reports: Vec<(&str, &mfh_metrics::Report)> = results.iter().map(|(n, r)| (*n, r)).collect();
    outln!("\nKuaiRand valid split (dates 20220505..06), per behaviour × cell (user new/old × item tail/head):\n");
    for metric in ["auc", "logloss"] {
        out!("{}", mfh_metrics::render_side_by_side(&reports, metric));
        outln!();
    }
    outln!(
        "{:.0} s in all. Re-score a model with: mfh eval --model-dir {}",
        t0.elapsed().as_secs_f64(),
        out.join("mfh").display()
    );
    Ok(())
}

pub(crate) fn tune(a: crate::TuneArgs) -> Result<()> {
    let mut cfg = Config::load(&a.config)?;
    if let Some(t) = a.threads {
        cfg.train.threads = t;
    }
    let max_steps = match a.max_steps {
        Some(s) => s,
        None if cfg.train.max_steps > 0 => cfg.train.max_steps,
        None => bail!(
            "--max-steps: the steps of the last rung (the config's `train.max_steps` is not set)"
        ),
    };
    let s = mfh_compare::tune::tune(
        &cfg,
        &mfh_compare::tune::TuneOptions {
            model: a.model,
            trials: a.trials,
            out: a.out.clone(),
            seed: a.seed,
            max_steps,
            eta: a.eta,
            rungs: a.rungs,
            progress: !a.quiet,
        },
    )?;
    outln!(
        "best: trial {} ({} {} on `{}`), budget {} training steps",
        s.best_trial,
        s.metric,
        s.best_value.map_or("-".into(), |v| format!("{v:.5}")),
        s.select_split,
        s.budget_steps
    );
    for (k, v) in &s.best {
        outln!("  {k} = {v}");
    }
    outln!(
        "written: {}, {}, {}",
        a.out.join("best.toml").display(),
        a.out.join("trials.md").display(),
        a.out.join("tune.json").display()
    );
    Ok(())
}
