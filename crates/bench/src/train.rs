//! `mfh bench train`: training and scoring samples/s of a synthetic workload from
//! batches in memory, ms per step by phase, the embedding tables' memory and peak RSS,
//! and for dense models the achieved FLOP rate; at several thread counts, a scaling table.

use crate::file::read_file;
use crate::generate::{generate, GenSpec};
use crate::print::summary;
use crate::scaling::{scaling_table, Figures, PhaseMs};
use crate::timing::{adam, median, time_steps};
use crate::workload::{id_hash, RawData, Workload, BATCH, DENSE, DIM, FIELDS};
use anyhow::Result;
use mfh_artifact::{embedding_layer, ModelState};
use mfh_config::EmbeddingOptConfig;
use mfh_data::{Batch, FieldLayout};
use mfh_loss::{GridLoss, LossSpec};
use mfh_model::ModelSpec;
use std::path::PathBuf;
use std::time::Instant;

/// What `mfh bench train` runs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub workload: Workload,
    /// MFH workloads: each row through its own cell's branches only (off: every branch on
    /// every row).
    pub routing: bool,
    /// Create every embedding row (vocab × fields) before timing, for the memory figure.
    pub all_rows: bool,
    /// Time scoring only, after one warm-up window of training (so the tables hold rows).
    pub infer_only: bool,
    /// One run at each count, then a scaling table (empty: the cores this process may use).
    pub threads: Vec<usize>,
    pub windows: usize,
    pub steps_per_window: usize,
    /// Batches from an MFHBENC2 file (default: [`GenSpec::default`]'s batches).
    pub data: Option<PathBuf>,
    /// The dense products' number format.
    pub precision: mfh_nn::Precision,
}

/// Runs [`TrainOptions`]: one run per thread count, each in a pool of exactly that many
/// threads, and the scaling table when there are several.
pub fn train(o: &TrainOptions) -> Result<()> {
    let counts = if o.threads.is_empty() {
        vec![mfh_cpu::available_threads()]
    } else {
        o.threads.clone()
    };
    if counts.contains(&0) {
        anyhow::bail!("--threads: every count must be at least 1");
    }
    let mut figures = Vec::new();
    for &t in &counts {
        // A pool of exactly t threads per run, so every parallel loop (products,
        // gathers, row updates, Adam) sees t.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
        figures.push(pool.install(|| run_once(o, t))?);
    }
    if figures.len() > 1 {
        scaling_table(o.workload, &figures);
    }
    Ok(())
}

/// One run at `threads` threads; the caller runs it inside a pool of that many.
fn run_once(o: &TrainOptions, threads: usize) -> Result<Figures> {
    mfh_nn::kernels::set_threads(threads);
    mfh_nn::set_precision(o.precision);
    let w = o.workload;
    let raw = match &o.data {
        Some(p) => read_file(p, w)?,
        None => generate(w, &GenSpec::default()),
    };
    let mut state = build_state(w, &raw, o.routing)?;
    let params = state.net_mut().num_params();
    describe(w, &state, &raw, o.routing, params, threads);
    if o.all_rows {
        create_every_row(&mut state, raw.vocab);
    }
    let mut batches = raw.to_batches();
    let (rates, phases) = train_windows(&mut state, &mut batches, o);
    let mut fig = Figures {
        threads,
        ..Figures::default()
    };
    if !o.infer_only {
        if let Some(phases) = phases {
            let parts: Vec<String> = phases
                .iter()
                .map(|(name, ms)| format!("{name} {ms:.1}"))
                .collect();
            outln!("ms per step (mean): {}", parts.join(", "));
            fig.phases = phases;
        }
        fig.training = Some(report_training(w, o.routing, params, rates));
    }
    print_memory(&state);
    fig.inference = infer_windows(w, &mut state, &mut batches, o.windows, o.steps_per_window);
    Ok(fig)
}

/// The workload's embeddings, network and loss, seeded.
fn build_state(w: Workload, d: &RawData, routing: bool) -> Result<ModelState> {
    let layout = FieldLayout {
        single: (0..FIELDS)
            .map(|f| (format!("c{f}"), format!("c{f}"), DIM))
            .collect(),
        multi: vec![],
        dense: (0..DENSE).map(|d| format!("d{d}")).collect(),
    };
    let grid = d.task_grid();
    let spec: ModelSpec = toml::from_str(&w.model(routing))?;
    let emb = embedding_layer(&layout, &EmbeddingOptConfig::default(), 7)?;
    let loss = GridLoss::new(LossSpec::new(grid.n_cells(), vec![true; d.behaviours]))
        .map_err(anyhow::Error::msg)?;
    ModelState::new(grid, spec, emb, DENSE, loss, 7)
}

/// `MMoE-ref: input 429 → …; N dense parameters; batch 1024; T threads`.
fn describe(
    w: Workload,
    state: &ModelState,
    raw: &RawData,
    routing: bool,
    params: usize,
    threads: usize,
) {
    outln!(
        "{}: input {} → {}; {params} dense parameters; batch {BATCH}; {threads} threads; {} products{}",
        w.name(),
        state.n_in(),
        match w {
            Workload::MmoeRef => "8 experts 256→128, 4 tasks, towers 64→1".to_string(),
            _ => format!(
                "MFH, {} tasks over {} cells, CGC 2+2 experts 256→128 / 128, towers 64→1, {}",
                state.net().n_tasks(),
                raw.user_groups * raw.item_groups,
                if routing {
                    "cell routing"
                } else {
                    "dense (every branch on every row)"
                }
            ),
        },
        mfh_nn::precision(),
        ""
    );
}

/// Every ID of every field gets its row (and optimizer state) before timing: the memory
/// figure then covers the full tables, vocab × fields rows.
fn create_every_row(state: &mut ModelState, vocab: u64) {
    let t = Instant::now();
    let mut slots = Vec::new();
    for (f, table) in state.emb.tables_mut().iter_mut().enumerate() {
        let ids: Vec<u64> = (0..vocab).map(|id| id_hash(f, id)).collect();
        table.lookup_train(&ids, &mut slots);
    }
    outln!(
        "created every embedding row ({} in {:.1} s)",
        vocab as usize * FIELDS,
        t.elapsed().as_secs_f64()
    );
}

/// The training windows: samples/s of each timed window, and milliseconds per step by
/// phase with the dense Adam last (none with --infer-only).
fn train_windows(
    state: &mut ModelState,
    batches: &mut [Batch],
    o: &TrainOptions,
) -> (Vec<f64>, Option<PhaseMs>) {
    let mut adam = adam();
    let mut step = 0u64;
    let mut adam_secs = 0.0;
    // Window 0 warms up (with --infer-only it is the only training, so rows exist).
    let mut rates = Vec::new();
    for w in 0..=if o.infer_only { 0 } else { o.windows } {
        if w == 1 {
            state.phases = Some(Default::default());
            adam_secs = 0.0;
        }
        let rate = time_steps(
            state,
            &mut adam,
            batches,
            &mut step,
            o.steps_per_window,
            &mut adam_secs,
        );
        if w > 0 {
            rates.push(rate);
        }
    }
    let phases = state.phases.take().map(|p| {
        let mut ms = p.per_step_ms();
        ms.push(("dense Adam", adam_secs * 1e3 / p.steps.max(1) as f64));
        ms
    });
    (rates, phases)
}

/// Prints the training rate (and for dense networks the FLOP rate); returns its median.
fn report_training(w: Workload, routing: bool, params: usize, rates: Vec<f64>) -> f64 {
    let median = median(&rates);
    summary(&format!("{} training", w.name()), "samples/s", rates);
    if w == Workload::MmoeRef || !routing {
        // Forward + backward of a dense network: 2 FLOPs per weight per row forward, twice
        // that backward (input and weight gradients).
        let gflops = 6.0 * params as f64 * median / 1e9;
        outln!("dense compute: {gflops:.1} GFLOP/s (6 × {params} FLOPs per sample at the median)");
    }
    median
}

/// The embedding rows, their bytes with and without the tables' index, and peak RSS.
fn print_memory(state: &ModelState) {
    let tables = state.emb.tables();
    let rows: usize = tables.iter().map(|t| t.len()).sum();
    // The rows and their optimizer state themselves, without any index or slack.
    let bytes: usize = tables
        .iter()
        .map(|t| t.len() * (t.dim() + t.state_width()) * 4)
        .sum();
    outln!(
        "embedding rows: {rows}; rows + optimizer state: {:.1} MB (tables hold {:.1} MB with index and slack); peak RSS: {}",
        bytes as f64 / 1e6,
        state.emb.bytes() as f64 / 1e6,
        peak_rss().map_or("unknown".into(), |b| format!(
            "{:.1} MB ({:.2}× the rows and their state)",
            b as f64 / 1e6,
            b as f64 / bytes.max(1) as f64
        ))
    );
}

/// Scoring: embedding lookups (no row creation) and the forward pass, batch 1024;
/// prints the rate and returns its median.
fn infer_windows(
    w: Workload,
    state: &mut ModelState,
    batches: &mut [Batch],
    windows: usize,
    steps: usize,
) -> f64 {
    let mut rates = Vec::new();
    for win in 0..=windows {
        let t = Instant::now();
        for k in 0..steps {
            let i = k % batches.len();
            std::hint::black_box(state.forward(&mut batches[i]));
        }
        if win > 0 {
            rates.push((steps * BATCH) as f64 / t.elapsed().as_secs_f64());
        }
    }
    let median = median(&rates);
    summary(
        &format!("{} inference (batch 1024)", w.name()),
        "samples/s",
        rates,
    );
    median
}

/// Peak resident set size of this process (VmHWM), in bytes, where /proc has it.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
