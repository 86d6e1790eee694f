//! `mfh`: the command line. Parses arguments and wires the library crates together;
//! nothing here computes anything of its own.
//!
//! Flags mean one thing everywhere: `--config FILE` a config, `--model NAME` a model
//! section of it, `--model-dir DIR` a trained-model folder.

/// Prints to stdout; a closed pipe (`mfh check … | head`) ends the program quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        if let Err(e) = write!(o, $($arg)*).and_then(|_| o.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }};
}
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => {{ out!($($arg)*); out!("\n"); }};
}

mod bench;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mfh_artifact::{evaluate, load_model, predict_to_csv};
use mfh_config::{Config, Threads};
use mfh_train::{train, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "mfh",
    version,
    about = "Multi-task ranking models (MFH and baselines) for recommender systems"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a training table and its config from a raw public dataset.
    Prepare {
        #[command(subcommand)]
        dataset: Dataset,
    },
    /// Validate a config against its data; print the task grid, features and splits.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Also read every split and count its rows.
        #[arg(long)]
        count: bool,
    },
    /// Train a model section of a config; the best model goes to --out.
    Train {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value = "mfh-model")]
        out: PathBuf,
        #[arg(long)]
        seed: Option<u64>,
        /// Continue an interrupted run from the newest intact checkpoint in
        /// OUT/checkpoints (same config; starts from the beginning when there is none).
        #[arg(long)]
        resume: bool,
        /// Warm start from a trained model folder (e.g. yesterday's): dense weights,
        /// embedding rows and their optimizer state, and its fitted statistics (unless
        /// `train.refit_transforms`). Same features, grid and model section required.
        #[arg(long)]
        init_from: Option<PathBuf>,
        /// Hide the progress bars.
        #[arg(long)]
        quiet: bool,
        /// Compute threads, a count or `auto` (default: the config's `train.threads`).
        #[arg(long)]
        threads: Option<Threads>,
    },
    /// Train several model sections over several seeds; write table.md and results.json.
    Compare {
        #[arg(long)]
        config: PathBuf,
        /// Comma-separated model sections (default: every section of the config).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        #[arg(long, default_value = "mfh-compare")]
        out: PathBuf,
        /// Bootstrap resamples for the AUC intervals.
        #[arg(long, default_value_t = 200)]
        bootstrap: usize,
        /// Also write TensorBoard event files to OUT/tensorboard.
        #[arg(long)]
        tensorboard: bool,
        #[arg(long)]
        quiet: bool,
        /// Compute threads, a count or `auto` (default: the config's `train.threads`).
        #[arg(long)]
        threads: Option<Threads>,
    },
    /// Score a trained model on a split and print its metrics per behaviour × cell.
    Eval {
        #[arg(long)]
        model_dir: PathBuf,
        /// Other prepared data with the same schema (default: the model's own config).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Default: the split the model was selected on.
        #[arg(long)]
        split: Option<String>,
        /// Print metrics as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Compute threads, a count or `auto` (default: the config's `train.threads`).
        #[arg(long)]
        threads: Option<Threads>,
    },
    /// Write per-row predictions of a split to a CSV file.
    Predict {
        #[arg(long)]
        model_dir: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        split: String,
        #[arg(long)]
        out: PathBuf,
        /// Compute threads, a count or `auto` (default: the config's `train.threads`).
        #[arg(long)]
        threads: Option<Threads>,
    },
    /// Describe a trained model: grid, layers with parameter counts, embedding tables.
    Inspect {
        #[arg(long)]
        model_dir: PathBuf,
    },
    /// Export a trained model to ONNX (row indices in; FILE.rows/ and FILE.io.json beside).
    Export {
        #[arg(long)]
        model_dir: PathBuf,
        #[arg(long)]
        onnx: PathBuf,
    },
    /// Prepare the bundled KuaiRand slice, train MMoE and MFH on it, print them per cell.
    Quickstart {
        /// Working folder for the prepared data and the model.
        #[arg(long, default_value = "mfh-quickstart")]
        out: PathBuf,
        /// Raw KuaiRand folder (default: the copy bundled in this repository).
        #[arg(long)]
        raw: Option<PathBuf>,
        /// Compute threads, a count or `auto` (default: auto, the cores this process may use).
        #[arg(long)]
        threads: Option<Threads>,
    },
    /// Throughput measurements (not tests): ingest rows/s, training samples/s.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
    /// Answer ranking requests over HTTP (KServe v2 and TF-Serving REST) with a model folder.
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
}

#[cfg(feature = "serve")]
#[derive(clap::Args)]
struct ServeArgs {
    /// A model folder, or a root of numbered version folders (each published by a DONE file).
    #[arg(long)]
    model_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Served model name (default: the model's config section).
    #[arg(long)]
    name: Option<String>,
    /// Requests scored at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Requests that may wait for a scorer; more are answered 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 16 << 20)]
    body_limit: usize,
    /// Request timeout in milliseconds (504 past it).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// How often to look for a newer version, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    poll_ms: u64,
    /// Log one line per request on stderr (level=debug).
    #[arg(long)]
    debug: bool,
}

#[derive(Subcommand)]
enum Dataset {
    /// UCI Census-Income (KDD): income and never-married, a seeded 60/20/20 split.
    Census {
        /// Folder with census-income.test(.gz).
        #[arg(long, default_value = "../shared/data/census-income-kdd")]
        raw: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2022)]
        seed: u64,
    },
    /// KuaiRand-Pure: behaviours click, long_view, like × user new/old × item tail/head.
    Kuairand {
        /// Folder with log_*.csv(.gz), user_features_pure.csv(.gz), video_features_basic_pure.csv(.gz).
        #[arg(long, default_value = "../shared/data/kuairand-pure")]
        raw: PathBuf,
        /// More raw log files of the same schema, appended in time order.
        #[arg(long = "extra-log")]
        extra_log: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    // A bad MFH_KERNEL is an error here, not a silent fallback inside a kernel.
    mfh_cpu::check_env().map_err(anyhow::Error::msg)?;
    match cli.cmd {
        Cmd::Prepare {
            dataset:
                Dataset::Kuairand {
                    raw,
                    extra_log,
                    out,
                },
        } => {
            prepare_kuairand(&raw, extra_log, &out)?;
        }
        Cmd::Prepare {
            dataset: Dataset::Census { raw, out, seed },
        } => {
            let r = mfh_data::census::prepare(&mfh_data::census::CensusOptions { raw, out, seed })?;
            eprintln!(
                "prepared {} rows: train {}, valid {}, test {}; config: {}",
                r.rows,
                r.split_rows[0],
                r.split_rows[1],
                r.split_rows[2],
                r.config.display()
            );
        }
        Cmd::Check { config, count } => {
            let cfg = Config::load(&config)?;
            let s = mfh_train::check(&cfg, count)?;
            out!("{}", s.text);
            outln!("ok");
        }
        Cmd::Train {
            config,
            model,
            out,
            seed,
            resume,
            init_from,
            quiet,
            threads,
        } => {
            let mut cfg = Config::load(&config)?;
            if let Some(t) = threads {
                cfg.train.threads = t;
            }
            let opts = TrainOptions {
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
        }
        Cmd::Compare {
            config,
            models,
            seeds,
            out,
            bootstrap,
            tensorboard,
            quiet,
            threads,
        } => {
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
            std::fs::create_dir_all(&out)
                .with_context(|| format!("{}: cannot create", out.display()))?;
            let opts = mfh_compare::CompareOptions {
                models,
                seeds,
                out: out.clone(),
                bootstrap,
                tensorboard,
                progress: !quiet,
            };
            mfh_compare::compare(&cfg, &opts)?;
            let table = std::fs::read_to_string(out.join("table.md"))?;
            out!("{table}");
            outln!(
                "written: {} and {}",
                out.join("table.md").display(),
                out.join("results.json").display()
            );
        }
        Cmd::Eval {
            model_dir,
            config,
            split,
            json,
            threads,
        } => {
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
        }
        Cmd::Predict {
            model_dir,
            config,
            split,
            out,
            threads,
        } => {
            let mut m = load_model(&model_dir)?;
            let cfg = Config::load(&config)?;
            let p = Arc::new(m.pipeline(&cfg)?);
            mfh_nn::use_threads(threads.unwrap_or(cfg.train.threads).resolve());
            let n = predict_to_csv(&mut m.state, &p, &split, m.config.train.batch_size, &out)?;
            if n == 0 {
                eprintln!("warning: split `{split}` is empty: no row matches it");
            }
            outln!("{n} rows → {}", out.display());
        }
        Cmd::Inspect { model_dir } => {
            let mut m = load_model(&model_dir)?;
            out!("{}", inspect(&mut m));
        }
        Cmd::Export { model_dir, onnx } => {
            let m = load_model(&model_dir)?;
            let s = mfh_export::export(&m, &onnx)?;
            let rows: usize = s.tables.iter().map(|t| t.1).sum();
            outln!(
                "{} ({} nodes, {} bytes); {} tables, {rows} rows → {}; inputs and outputs: {}",
                s.onnx.display(),
                s.nodes,
                s.onnx_bytes,
                s.tables.len(),
                s.rows_dir.display(),
                s.io_json.display()
            );
        }
        Cmd::Quickstart { out, raw, threads } => quickstart(&out, raw, threads)?,
        Cmd::Bench { what } => bench::run(what)?,
        #[cfg(feature = "serve")]
        Cmd::Serve(a) => mfh_serve::run(mfh_serve::ServeOptions {
            addr: a.addr,
            name: a.name,
            concurrency: a.concurrency,
            queue: a.queue,
            body_limit: a.body_limit,
            timeout: std::time::Duration::from_millis(a.timeout_ms),
            poll: std::time::Duration::from_millis(a.poll_ms),
            debug_log: a.debug,
            ..mfh_serve::ServeOptions::new(a.model_dir)
        })?,
    }
    Ok(())
}

fn prepare_kuairand(raw: &Path, extra_logs: Vec<PathBuf>, out: &Path) -> Result<PathBuf> {
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

fn quickstart(out: &Path, raw: Option<PathBuf>, threads: Option<Threads>) -> Result<()> {
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
