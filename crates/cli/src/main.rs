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
mod commands;
mod predict;
#[cfg(feature = "parquet")]
mod predict_parquet;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mfh_config::Threads;
use std::path::PathBuf;

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
    Train(TrainArgs),
    /// Train several model sections over several seeds; write table.md and results.json.
    Compare(CompareArgs),
    /// Random search with successive halving over a model's `[tune.NAME]` space,
    /// selected on the comparison's selection split; writes best.toml for `compare --tuned`.
    Tune(TuneArgs),
    /// Score a trained model on a split and print its metrics per behaviour × cell.
    Eval(EvalArgs),
    /// Write per-row predictions of a split to a CSV file.
    Predict(PredictArgs),
    /// Describe a trained model: grid, layers with parameter counts, embedding tables.
    Inspect {
        #[arg(long)]
        model_dir: PathBuf,
    },
    /// Export a trained model to ONNX (row indices in; FILE.rows/ and FILE.io.json beside,
    /// the three replaced as one bundle).
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

#[derive(clap::Args)]
struct TrainArgs {
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
    /// Write TensorBoard scalars to OUT/tensorboard as training goes (train loss; the
    /// valid split's loss, AUC, GAUC and logloss per behaviour × cell).
    #[arg(long)]
    tensorboard: bool,
    /// Compute threads, a count or `auto` (default: the config's `train.threads`).
    #[arg(long)]
    threads: Option<Threads>,
    /// Publish the model as it trains into this serving root: numbered version folders
    /// with a DONE marker, which `mfh serve --model-dir ROOT` hot-reloads. Every
    /// --publish-every steps and at the end of the run.
    #[arg(long)]
    publish: Option<PathBuf>,
    /// Steps between published versions (0: only at the end of the run).
    #[arg(long, default_value_t = 0, requires = "publish")]
    publish_every: u64,
    /// Published versions kept in the root (older ones are removed).
    #[arg(long, default_value_t = 5, requires = "publish", value_parser = clap::value_parser!(u64).range(1..))]
    keep_versions: u64,
    /// After the configured epochs, keep training on each new complete file under this
    /// folder as it appears (in arrival order; each scored before it is trained on; a
    /// checkpoint and, with --publish, a version after each). A file is complete once it
    /// has a visible name (write `.name` or `_name`, then rename); see --follow-success.
    #[arg(long)]
    follow: Option<PathBuf>,
    /// Take a followed file only when its folder holds a `_SUCCESS` marker.
    #[arg(long, requires = "follow")]
    follow_success: bool,
    /// Milliseconds between listings of the followed folder.
    #[arg(long, default_value_t = 1000, requires = "follow", value_parser = clap::value_parser!(u64).range(1..))]
    follow_poll_ms: u64,
    /// Stop after this many seconds without a new file (default: follow until stopped).
    #[arg(long, requires = "follow")]
    follow_idle_exit: Option<f64>,
}

#[derive(clap::Args)]
struct CompareArgs {
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
    /// Write TensorBoard scalars as each run trains, to OUT/tensorboard/MODEL-seedS (the
    /// same scalars as `mfh train --tensorboard`), and each segment's mean AUC to
    /// OUT/tensorboard/MODEL-seedS/segments.
    #[arg(long)]
    tensorboard: bool,
    #[arg(long)]
    quiet: bool,
    /// Compute threads, a count or `auto` (default: the config's `train.threads`).
    #[arg(long)]
    threads: Option<Threads>,
    /// Folder of `mfh tune` results, one per model (DIR/MODEL/best.toml): each model's
    /// runs take its tuned settings.
    #[arg(long)]
    tuned: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct TuneArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// The model section to tune (its space: `[tune.NAME]`).
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Output folder (trials.jsonl, trials.md, best.toml, tune.json); rerun to resume.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the draws (the training seed is the config's `train.seed`).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Training steps of the last rung (default: the config's `train.max_steps`).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Each rung keeps 1/eta of the trials and trains them eta times longer.
    #[arg(long, default_value_t = 3)]
    pub eta: usize,
    /// Rungs of successive halving (1: plain random search).
    #[arg(long, default_value_t = 3)]
    pub rungs: usize,
    #[arg(long)]
    pub quiet: bool,
    /// Compute threads, a count or `auto` (default: the config's `train.threads`).
    #[arg(long)]
    pub threads: Option<Threads>,
}

#[derive(clap::Args)]
struct EvalArgs {
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
    /// Number format of the dense products: f32, or bf16 (operands rounded to bf16, f32
    /// sums; AMX tiles where the CPU has them).
    #[arg(long, default_value = "f32")]
    precision: mfh_nn::Precision,
}

#[derive(clap::Args)]
struct PredictArgs {
    #[arg(long)]
    model_dir: PathBuf,
    /// Score split SPLIT of this config's data (labels written beside the scores).
    #[arg(long, requires = "split", conflicts_with = "data")]
    config: Option<PathBuf>,
    #[arg(long, requires = "config")]
    split: Option<String>,
    /// Score every row of these files (CSV, gzip CSV or Parquet; no labels needed):
    /// the model's inputs by column name, side tables joined from the model folder.
    #[arg(long, num_args = 1.., required_unless_present = "config")]
    data: Vec<PathBuf>,
    /// With --data: columns passed through to the output (comma-separated, e.g. user_id,video_id).
    #[arg(long, value_delimiter = ',', requires = "data")]
    keep: Vec<String>,
    /// CSV, or Parquet when the name ends in .parquet (with --data; needs the parquet feature).
    #[arg(long)]
    out: PathBuf,
    /// Compute threads, a count or `auto` (default: the config's `train.threads`).
    #[arg(long)]
    threads: Option<Threads>,
    /// Number format of the dense products: f32, or bf16 (operands rounded to bf16, f32
    /// sums; AMX tiles where the CPU has them).
    #[arg(long, default_value = "f32")]
    precision: mfh_nn::Precision,
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
    /// KServe v2 gRPC address (needs a build with `--features grpc`), e.g. 127.0.0.1:8081.
    #[arg(long)]
    grpc_addr: Option<std::net::SocketAddr>,
    /// Requests scored at once, each by its own scorer (default: the cores this process
    /// may use, divided by --threads).
    #[arg(long, alias = "concurrency")]
    scorers: Option<usize>,
    /// Threads per scorer.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Admitted requests that may wait for a scorer; more are answered 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Most rows per request; more are answered 413.
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Dynamic batching: requests arriving within this many microseconds are scored in
    /// one forward pass (0: off).
    #[arg(long, default_value_t = 0)]
    batch_delay_us: u64,
    /// Most rows scored together by dynamic batching.
    #[arg(long, default_value_t = 1024)]
    max_batch_rows: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 16 << 20)]
    body_limit: usize,
    /// Open connections per port; more are refused (503 over REST).
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// A request head must arrive within this many milliseconds (else the connection closes).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// A request body must arrive within this many milliseconds (408 past it).
    #[arg(long, default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// Request timeout in milliseconds, from arrival to answer (504 past it).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// How often to look for a newer version, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    poll_ms: u64,
    /// Log one line per request on stderr (level=debug).
    #[arg(long)]
    debug: bool,
    /// Number format of the dense products: f32, or bf16 (operands rounded to bf16, f32
    /// sums; AMX tiles where the CPU has them).
    #[arg(long, default_value = "f32")]
    precision: mfh_nn::Precision,
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
    /// A generated log with a known structure (click, long_view, like × user new/old ×
    /// item tail/head) and the true probability of every label; see docs/results.md.
    Synthetic(SyntheticArgs),
}

#[derive(clap::Args)]
pub(crate) struct SyntheticArgs {
    #[arg(long)]
    rows: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Users and items (default: rows / 40 and rows / 100, at least 100 and 50).
    #[arg(long, default_value_t = 0)]
    users: usize,
    #[arg(long, default_value_t = 0)]
    items: usize,
    /// Share of the rows from new users (a third of the users).
    #[arg(long, default_value_t = 0.1)]
    new_user_share: f64,
    /// Scale of the logits' per-cell parts (0: none).
    #[arg(long, default_value_t = 1.0)]
    facet_strength: f64,
    /// Scale of the logits' part shared by the behaviours (0: none).
    #[arg(long, default_value_t = 1.0)]
    sharing: f64,
}

impl From<SyntheticArgs> for mfh_data::synthetic::SyntheticOptions {
    fn from(a: SyntheticArgs) -> Self {
        Self {
            rows: a.rows,
            out: a.out,
            seed: a.seed,
            users: a.users,
            items: a.items,
            new_user_share: a.new_user_share,
            facet_strength: a.facet_strength,
            sharing: a.sharing,
        }
    }
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
            commands::prepare_kuairand(&raw, extra_log, &out)?;
        }
        Cmd::Prepare {
            dataset: Dataset::Census { raw, out, seed },
        } => commands::prepare_census(raw, out, seed)?,
        Cmd::Prepare {
            dataset: Dataset::Synthetic(a),
        } => commands::prepare_synthetic(&a.into())?,
        Cmd::Check { config, count } => commands::check(&config, count)?,
        Cmd::Train(a) => commands::train_cmd(a)?,
        Cmd::Compare(a) => commands::compare(a)?,
        Cmd::Tune(a) => commands::tune(a)?,
        Cmd::Eval(a) => commands::eval(a)?,
        Cmd::Predict(a) => commands::predict(a)?,
        Cmd::Inspect { model_dir } => commands::inspect_cmd(&model_dir)?,
        Cmd::Export { model_dir, onnx } => commands::export(&model_dir, &onnx)?,
        Cmd::Quickstart { out, raw, threads } => commands::quickstart(&out, raw, threads)?,
        Cmd::Bench { what } => bench::run(what)?,
        #[cfg(feature = "serve")]
        Cmd::Serve(a) => commands::serve(a)?,
    }
    Ok(())
}
