//! `mfh bench …`: the flags of each throughput measurement, passed to `mfh-bench`, where
//! the measurements are. `bench/*.sh` read their output; see `mfh-bench` for its lines.

use anyhow::Result;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Subcommand;
use mfh_bench::{GenSpec, InferOptions, RoutingOptions, TrainOptions, Workload};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Rows/s from the files of a config's split into batches.
    Ingest {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// Training samples/s of a tree model (MFH, H-MTL) with cell routing on and off, on
    /// the first batches of a config's train split held in memory.
    Routing {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "mfh")]
        model: String,
        /// Batches held in memory and cycled through.
        #[arg(long, default_value_t = 40)]
        batches: usize,
        #[arg(long, default_value_t = 7)]
        windows: usize,
        #[arg(long, default_value_t = 20)]
        steps_per_window: usize,
    },
    /// Training and inference samples/s on a synthetic workload (in-memory batches),
    /// peak RSS, and for dense models the achieved FLOP rate.
    Train {
        #[arg(long, value_parser = workload(), default_value = "mmoe-ref")]
        workload: Workload,
        /// MFH workloads: compute every branch on every row (routing off).
        #[arg(long)]
        dense: bool,
        /// Create every embedding row (vocab × fields) before timing, for the memory figure.
        #[arg(long)]
        all_rows: bool,
        /// Time scoring only: one warm-up window of training (so the tables hold rows),
        /// then the inference windows.
        #[arg(long)]
        infer_only: bool,
        /// Thread counts, comma-separated (`1,2,4,8,16`): one run each, then a scaling
        /// table (default: the cores this process may use).
        #[arg(long, value_delimiter = ',')]
        threads: Vec<usize>,
        #[arg(long, default_value_t = 7)]
        windows: usize,
        #[arg(long, default_value_t = 20)]
        steps_per_window: usize,
        /// Batches from a file written by `mfh bench gen` (the peers read the same file).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Number format of the dense products: f32 or bf16 (AMX or AVX512-BF16 where the
        /// kernel path has them).
        #[arg(long, default_value = "f32")]
        precision: mfh_nn::Precision,
    },
    /// Scoring time of a trained model: batches of a split decoded into memory, then the
    /// embedding lookups and forward pass alone, per batch (the compute a served
    /// request's latency is compared with).
    Infer {
        #[arg(long)]
        model_dir: PathBuf,
        /// The data's config (default: the copy in the model folder).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rows per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        #[arg(long, default_value = "valid")]
        split: String,
        /// Batches held in memory and cycled through.
        #[arg(long, default_value_t = 8)]
        batches: usize,
        /// Threads for the products (default: the model's `train.threads`).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 7)]
        windows: usize,
        #[arg(long, default_value_t = 20)]
        steps_per_window: usize,
        /// Each batch as one ranking request: the first row's user and context on every
        /// row, the items from the rows, COLUMN being the item key (e.g. `video_id`);
        /// timed as served, with factoring only and row by row.
        #[arg(long, value_name = "COLUMN")]
        one_user: Option<String>,
    },
    /// Writes a workload's synthetic batches to a file that mfh and the PyTorch peers
    /// both read.
    Gen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_parser = workload(), default_value = "mmoe-ref")]
        workload: Workload,
        #[arg(long, default_value_t = 32)]
        batches: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// IDs per categorical field.
        #[arg(long, default_value_t = 100_000)]
        vocab: u64,
        /// ID = ⌊u^skew · vocab⌋ for uniform u (1: uniform; 3: most mass on small IDs).
        #[arg(long, default_value_t = 3.0)]
        skew: f64,
    },
    /// sgemm throughput (n × n × n f32): mfh's product kernel and the `gemm` crate.
    Sgemm {
        #[arg(long, default_value_t = 2048)]
        n: usize,
        /// Default: the cores this process may use.
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Also time the products of one MMoE-ref training step (batch 1024), each shape
        /// on its own.
        #[arg(long)]
        shapes: bool,
        /// Also time the products with bf16 operands (f32 sums): AMX tiles or AVX512-BF16
        /// where the kernel path has them (`MFH_KERNEL=amx|avx512bf16`).
        #[arg(long)]
        bf16: bool,
        /// First print this core's own ceiling for the two AVX-512 multiply-adds the
        /// products use (`vfmadd231ps`, `vdpbf16ps`), one thread, and their ratio.
        #[arg(long)]
        peak: bool,
    },
}

/// `--workload NAME`: the workloads `mfh-bench` knows, each with its one-line help.
fn workload() -> impl TypedValueParser<Value = Workload> {
    let values = Workload::ALL.map(|w| PossibleValue::new(w.arg_name()).help(w.about()));
    PossibleValuesParser::new(values).map(|name| {
        Workload::ALL
            .into_iter()
            .find(|w| w.arg_name() == name)
            .expect("clap checked the name against Workload::ALL")
    })
}

/// Runs one `mfh bench` command, after the machine's line (`# kernel path …`).
pub fn run(cmd: BenchCmd) -> Result<()> {
    mfh_bench::print_machine();
    match cmd {
        BenchCmd::Ingest {
            config,
            split,
            repeats,
        } => mfh_bench::ingest(&config, &split, repeats)?,
        BenchCmd::Train {
            workload,
            dense,
            all_rows,
            infer_only,
            threads,
            windows,
            steps_per_window,
            data,
            precision,
        } => mfh_bench::train(&TrainOptions {
            workload,
            routing: !dense,
            all_rows,
            infer_only,
            threads,
            windows,
            steps_per_window,
            data,
            precision,
        })?,
        BenchCmd::Gen {
            out,
            workload,
            batches,
            seed,
            vocab,
            skew,
        } => {
            let g = GenSpec {
                batches,
                seed,
                vocab,
                skew,
            };
            mfh_bench::gen(workload, &g, &out)?
        }
        BenchCmd::Sgemm {
            n,
            threads,
            repeats,
            shapes,
            bf16,
            peak,
        } => {
            if peak {
                mfh_bench::peak(repeats);
            }
            mfh_bench::sgemm(n, threads, repeats, shapes, bf16)
        }
        BenchCmd::Routing {
            config,
            model,
            batches,
            windows,
            steps_per_window,
        } => mfh_bench::routing(&RoutingOptions {
            config,
            model,
            batches,
            windows,
            steps_per_window,
        })?,
        BenchCmd::Infer {
            model_dir,
            config,
            batch,
            split,
            batches,
            threads,
            windows,
            steps_per_window,
            one_user,
        } => mfh_bench::infer(&InferOptions {
            model_dir,
            config,
            batch,
            split,
            batches,
            threads,
            windows,
            steps_per_window,
            one_user,
        })?,
    }
    Ok(())
}
