//! `mfh bench`: throughput figures kept in the repo, never asserted by tests.
//!
//! - `ingest`: rows/s from a config's files into batches (reading, gunzip, parsing,
//!   joins, hashing, transforms), one reader thread.
//! - `train`: training samples/s on the MMoE-ref workload (batch 1024; 26 categorical
//!   fields × dim 16 over 100,000 IDs each plus 13 numeric → 429 inputs; 8 experts
//!   429→256→128; 4 tasks with softmax gates and 128→64→1 towers; Adam; row-wise Adagrad
//!   embeddings), from pre-generated in-memory batches.
//!
//! Each prints the median and min–max over several timed windows after a warm-up.

use anyhow::Result;
use clap::Subcommand;
use mfh_artifact::{embedding_layer, ModelState};
use mfh_config::{Config, EmbeddingOptConfig, TaskGrid};
use mfh_data::{Batch, FieldLayout, Pipeline, SplitMix, StreamOptions};
use mfh_loss::{GridLoss, LossSpec};
use mfh_model::ModelSpec;
use mfh_nn::Adam;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
        #[arg(long, value_enum, default_value = "mmoe-ref")]
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
    },
    /// Writes a workload's synthetic batches to a file that mfh and the PyTorch peers
    /// both read.
    Gen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "mmoe-ref")]
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
    },
}

fn summary(name: &str, unit: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    outln!(
        "{name}: median {med:.0} {unit} (min {:.0}, max {:.0}, {} windows)",
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    // Which kernels ran, on which CPU: part of every figure.
    outln!("# {}", mfh_cpu::describe());
    match cmd {
        BenchCmd::Ingest {
            config,
            split,
            repeats,
        } => {
            let cfg = Config::load(&config)?;
            let mut p = Pipeline::new(&cfg)?;
            p.fit(&cfg.train.train_split)?;
            let p = Arc::new(p);
            let mut rates = Vec::new();
            for r in 0..repeats + 1 {
                let t = Instant::now();
                let mut rows = 0u64;
                for b in p.stream(&split, StreamOptions::in_order(cfg.train.batch_size))? {
                    rows += b?.n as u64;
                }
                let dt = t.elapsed().as_secs_f64();
                if r > 0 {
                    rates.push(rows as f64 / dt);
                }
                eprintln!(
                    "pass {r}: {rows} rows in {dt:.2} s{}",
                    if r == 0 { " (warm-up)" } else { "" }
                );
            }
            summary(
                &format!("ingest {}:{split} → batches", config.display()),
                "rows/s",
                rates,
            );
        }
        BenchCmd::Train {
            workload,
            dense,
            all_rows,
            infer_only,
            threads,
            windows,
            steps_per_window,
            data,
        } => {
            let counts = if threads.is_empty() {
                vec![mfh_cpu::available_threads()]
            } else {
                threads
            };
            if counts.contains(&0) {
                anyhow::bail!("--threads: every count must be at least 1");
            }
            let mut figures = Vec::new();
            for &t in &counts {
                // A pool of exactly t threads per run, so every parallel loop (products,
                // gathers, row updates, Adam) sees t.
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
                figures.push(pool.install(|| {
                    bench_train(
                        workload,
                        t,
                        windows,
                        steps_per_window,
                        data.as_deref(),
                        !dense,
                        all_rows,
                        infer_only,
                    )
                })?);
            }
            if figures.len() > 1 {
                scaling_table(workload, &figures);
            }
        }
        BenchCmd::Gen {
            out,
            workload,
            batches,
            seed,
            vocab,
            skew,
        } => {
            if vocab == 0 || vocab > u32::MAX as u64 || !(skew > 0.0 && skew.is_finite()) {
                anyhow::bail!("--vocab must be in 1..=2^32−1 and --skew positive");
            }
            let g = GenSpec {
                batches,
                seed,
                vocab,
                skew,
            };
            write_raw(&raw_data(workload, &g), &out)?;
            outln!(
                "{batches} {} batches of {BATCH} rows → {}",
                workload.name(),
                out.display()
            );
        }
        BenchCmd::Sgemm {
            n,
            threads,
            repeats,
            shapes,
        } => {
            bench_sgemm(
                n,
                threads.unwrap_or_else(mfh_cpu::available_threads),
                repeats,
            );
            if shapes {
                bench_shapes(repeats);
            }
        }
        BenchCmd::Routing {
            config,
            model,
            batches,
            windows,
            steps_per_window,
        } => bench_routing(&config, &model, batches, windows, steps_per_window)?,
        BenchCmd::Infer {
            model_dir,
            config,
            batch,
            split,
            batches,
            threads,
            windows,
            steps_per_window,
        } => bench_infer(
            &model_dir,
            config.as_deref(),
            batch,
            &split,
            batches,
            threads,
            windows,
            steps_per_window,
        )?,
    }
    Ok(())
}

/// See [`BenchCmd::Infer`].
#[allow(clippy::too_many_arguments)] // the command's options, passed flat
fn bench_infer(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
    batch: usize,
    split: &str,
    n_batches: usize,
    threads: Option<usize>,
    windows: usize,
    steps: usize,
) -> Result<()> {
    if batch == 0 || n_batches == 0 || windows == 0 || steps == 0 {
        anyhow::bail!("--batch, --batches, --windows and --steps-per-window must be positive");
    }
    let m = mfh_artifact::load_model(dir)?;
    let cfg = match config {
        Some(c) => Config::load(c)?,
        None => m.config.clone(),
    };
    let threads = threads.unwrap_or_else(|| m.config.train.threads.resolve());
    mfh_nn::use_threads(threads);
    let p = Arc::new(m.pipeline(&cfg)?);
    let mut batches = Vec::new();
    for b in p.stream(split, StreamOptions::in_order(batch))? {
        let b = b?;
        // Only full batches: every timed pass scores exactly `batch` rows.
        if b.n == batch {
            batches.push(b);
        }
        if batches.len() == n_batches {
            break;
        }
    }
    if batches.is_empty() {
        anyhow::bail!(
            "split `{split}` of {} has fewer than {batch} rows",
            cfg.source_file.display()
        );
    }
    let mut state = m.state;
    outln!(
        "{}: {} tasks, batch {batch}, {threads} threads; {} batches of `{split}` in memory",
        dir.display(),
        state.net().n_tasks(),
        batches.len()
    );
    let mut ms = Vec::new();
    let mut rates = Vec::new();
    for w in 0..=windows {
        let mut per = Vec::with_capacity(steps);
        let t = Instant::now();
        for k in 0..steps {
            let i = k % batches.len();
            let t0 = Instant::now();
            std::hint::black_box(state.forward(&mut batches[i]));
            per.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        if w > 0 {
            rates.push((steps * batch) as f64 / t.elapsed().as_secs_f64());
            ms.extend(per);
        }
    }
    ms.sort_by(f64::total_cmp);
    let q = |f: f64| ms[((ms.len() - 1) as f64 * f).round() as usize];
    outln!(
        "compute per batch of {batch}: median {:.2} ms (min {:.2}, p99 {:.2}, max {:.2}; {} passes)",
        q(0.5),
        ms[0],
        q(0.99),
        ms[ms.len() - 1],
        ms.len()
    );
    summary(&format!("inference (batch {batch})"), "samples/s", rates);
    Ok(())
}

const FIELDS: usize = 26;
const DIM: usize = 16;
const DENSE: usize = 13;
const BATCH: usize = 1024;

/// A named synthetic workload: the inputs of MMoE-ref (26 categorical fields × dim 16,
/// 13 dense) with a task grid and a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 4 tasks, MMoE with 8 experts 429→256→128, towers 128→64→1.
    MmoeRef,
    /// 3 behaviours × 4 user groups × 4 item groups (48 tasks, 16 cells), MFH.
    MfhRef,
    /// 3 behaviours × 2 user groups × 2 item groups (12 tasks, 4 cells), MFH.
    #[value(name = "mfh-ref-2x2")]
    MfhRef2x2,
}

impl Workload {
    /// (behaviours, user groups, item groups).
    fn grid(self) -> (usize, usize, usize) {
        match self {
            Workload::MmoeRef => (4, 1, 1),
            Workload::MfhRef => (3, 4, 4),
            Workload::MfhRef2x2 => (3, 2, 2),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::MmoeRef => "MMoE-ref",
            Workload::MfhRef => "MFH-ref",
            Workload::MfhRef2x2 => "MFH-ref 2×2",
        }
    }

    /// The model section of the workload (MFH-ref: CGC units with 2 task + 2 shared
    /// experts, 429→256→128 at level 1 and 128→128 at level 2).
    fn model(self, routing: bool) -> String {
        match self {
            Workload::MmoeRef => {
                "type = \"mmoe\"\nexperts = 8\nexpert_layers = [256, 128]\ntower = [64]\n".into()
            }
            _ => format!(
                "type = \"mfh\"\ntrees = \"auto\"\ntower = [64]\nrouting = {routing}\n\
                 level1 = {{ type = \"cgc\", task_experts = 2, shared_experts = 2, expert_layers = [256, 128] }}\n\
                 level2 = {{ type = \"cgc\", task_experts = 2, shared_experts = 2, expert_layers = [128] }}\n"
            ),
        }
    }
}

/// How `mfh bench gen` draws the synthetic data.
#[derive(Clone, Copy, Debug)]
pub struct GenSpec {
    pub batches: usize,
    pub seed: u64,
    /// IDs per categorical field.
    pub vocab: u64,
    /// ID = ⌊u^skew · vocab⌋ for uniform u: 1 is uniform, larger puts more mass on small IDs.
    pub skew: f64,
}

/// Raw synthetic data: what both mfh and the PyTorch peers read (the same bytes).
/// File layout (little-endian): `MFHBENC2`, then u64 batches, batch size, fields, dense,
/// behaviours, user groups, item groups, vocab; then per batch: ids u32 [batch × fields],
/// dense f32 [batch × dense], labels f32 [batch × behaviours], user group u32 [batch],
/// item group u32 [batch].
struct RawData {
    batches: usize,
    behaviours: usize,
    user_groups: usize,
    item_groups: usize,
    vocab: u64,
    ids: Vec<u32>,
    dense: Vec<f32>,
    labels: Vec<f32>,
    user: Vec<u32>,
    item: Vec<u32>,
}

const MAGIC: &[u8; 8] = b"MFHBENC2";
const HEADER: usize = 8 + 8 * 8;

/// Draws group g of `k` with probability ∝ 1/(g+1): the first group is the largest (old
/// users, head items), the last the smallest.
fn draw_group(u: f64, k: usize) -> u32 {
    let total: f64 = (1..=k).map(|g| 1.0 / g as f64).sum();
    let mut acc = 0.0;
    for g in 0..k {
        acc += 1.0 / (g + 1) as f64 / total;
        if u < acc {
            return g as u32;
        }
    }
    (k - 1) as u32
}

/// Skewed IDs, uniform dense values in [−1, 1), groups by [`draw_group`], binary labels
/// at rate 0.1·(b+1) shifted by the groups (smaller groups act less); seeded.
fn raw_data(w: Workload, g: &GenSpec) -> RawData {
    let (behaviours, ug, ig) = w.grid();
    let mut rng = SplitMix(g.seed);
    let mut unif = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut d = RawData {
        batches: g.batches,
        behaviours,
        user_groups: ug,
        item_groups: ig,
        vocab: g.vocab,
        ids: Vec::new(),
        dense: Vec::new(),
        labels: Vec::new(),
        user: Vec::new(),
        item: Vec::new(),
    };
    for _ in 0..g.batches * BATCH {
        for _ in 0..FIELDS {
            let id = (unif().powf(g.skew) * g.vocab as f64) as u64;
            d.ids.push(id.min(g.vocab - 1) as u32);
        }
        for _ in 0..DENSE {
            d.dense.push((unif() * 2.0 - 1.0) as f32);
        }
        let (u, i) = (draw_group(unif(), ug), draw_group(unif(), ig));
        for b in 0..behaviours {
            let rate = 0.1 * (b + 1) as f64 * (1.0 - 0.05 * (u + i) as f64);
            d.labels.push(if unif() < rate { 1.0 } else { 0.0 });
        }
        d.user.push(u);
        d.item.push(i);
    }
    d
}

fn write_raw(d: &RawData, path: &std::path::Path) -> Result<()> {
    let mut out = Vec::with_capacity(HEADER + (d.ids.len() + d.dense.len() + d.labels.len()) * 4);
    out.extend_from_slice(MAGIC);
    let header = [
        d.batches,
        BATCH,
        FIELDS,
        DENSE,
        d.behaviours,
        d.user_groups,
        d.item_groups,
        d.vocab as usize,
    ];
    for v in header {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    let nb = d.behaviours;
    for b in 0..d.batches {
        let r = b * BATCH..(b + 1) * BATCH;
        let words = d.ids[r.start * FIELDS..r.end * FIELDS]
            .iter()
            .map(|x| x.to_le_bytes())
            .chain(
                d.dense[r.start * DENSE..r.end * DENSE]
                    .iter()
                    .map(|x| x.to_le_bytes()),
            )
            .chain(
                d.labels[r.start * nb..r.end * nb]
                    .iter()
                    .map(|x| x.to_le_bytes()),
            )
            .chain(d.user[r.clone()].iter().map(|x| x.to_le_bytes()))
            .chain(d.item[r].iter().map(|x| x.to_le_bytes()));
        words.for_each(|w| out.extend_from_slice(&w));
    }
    std::fs::write(path, out).map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
}

fn read_raw(path: &std::path::Path, w: Workload) -> Result<RawData> {
    let b =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let bad = |why: String| {
        anyhow::anyhow!(
            "{}: not a {} data file written by `mfh bench gen --workload {}`: {why}",
            path.display(),
            w.name(),
            clap::ValueEnum::to_possible_value(&w)
                .map_or(String::new(), |v| v.get_name().to_string())
        )
    };
    if b.len() < HEADER || &b[..8] != MAGIC {
        return Err(bad("no MFHBENC2 header".into()));
    }
    let h: Vec<usize> = (0..8)
        .map(|i| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap()) as usize)
        .collect();
    let (nb, ug, ig) = w.grid();
    if h[1..7] != [BATCH, FIELDS, DENSE, nb, ug, ig] {
        return Err(bad(format!(
            "shape {:?}, expected {:?}",
            &h[1..7],
            [BATCH, FIELDS, DENSE, nb, ug, ig]
        )));
    }
    let per_row = FIELDS + DENSE + nb + 2;
    if b.len() != HEADER + h[0] * BATCH * per_row * 4 {
        return Err(bad(format!("{} bytes, not {} batches", b.len(), h[0])));
    }
    let mut d = RawData {
        batches: h[0],
        behaviours: nb,
        user_groups: ug,
        item_groups: ig,
        vocab: h[7] as u64,
        ids: Vec::new(),
        dense: Vec::new(),
        labels: Vec::new(),
        user: Vec::new(),
        item: Vec::new(),
    };
    let mut pos = HEADER;
    let mut word = || {
        let w: [u8; 4] = b[pos..pos + 4].try_into().unwrap();
        pos += 4;
        w
    };
    for _ in 0..d.batches {
        (0..BATCH * FIELDS).for_each(|_| d.ids.push(u32::from_le_bytes(word())));
        (0..BATCH * DENSE).for_each(|_| d.dense.push(f32::from_le_bytes(word())));
        (0..BATCH * nb).for_each(|_| d.labels.push(f32::from_le_bytes(word())));
        (0..BATCH).for_each(|_| d.user.push(u32::from_le_bytes(word())));
        (0..BATCH).for_each(|_| d.item.push(u32::from_le_bytes(word())));
    }
    if d.user.iter().any(|&u| u as usize >= ug) || d.item.iter().any(|&i| i as usize >= ig) {
        return Err(bad("a group index out of range".into()));
    }
    Ok(d)
}

/// The task grid of a workload: behaviours × user × item (a facet with one value is left
/// out).
fn workload_grid(d: &RawData) -> TaskGrid {
    let facet =
        |name: &str, k: usize| (name.to_string(), (0..k).map(|g| format!("g{g}")).collect());
    let mut facets = Vec::new();
    if d.user_groups > 1 {
        facets.push(facet("user", d.user_groups));
    }
    if d.item_groups > 1 {
        facets.push(facet("item", d.item_groups));
    }
    TaskGrid {
        behaviours: (0..d.behaviours).map(|t| format!("task{t}")).collect(),
        binary: vec![true; d.behaviours],
        facets,
    }
}

/// Batches for the trainer: each field's raw ID hashed as `field:id`; cell = user ·
/// item groups + item.
fn to_batches(d: &RawData) -> Vec<Batch> {
    let nb = d.behaviours;
    (0..d.batches)
        .map(|k| {
            let mut b = Batch::with_layout(FIELDS, 0);
            b.n = BATCH;
            for i in k * BATCH..(k + 1) * BATCH {
                for f in 0..FIELDS {
                    let id = d.ids[i * FIELDS + f];
                    b.single
                        .push(mfh_data::hash_value(format!("{f}:{id}").as_bytes()));
                }
                b.dense
                    .extend_from_slice(&d.dense[i * DENSE..(i + 1) * DENSE]);
                b.labels.extend_from_slice(&d.labels[i * nb..(i + 1) * nb]);
                b.cells.push(d.user[i] * d.item_groups as u32 + d.item[i]);
                b.groups.push(0);
                b.rows.push(i as u64);
            }
            b
        })
        .collect()
}

/// Peak resident set size of this process (VmHWM), in bytes, where /proc has it.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn build_state(w: Workload, d: &RawData, routing: bool) -> Result<ModelState> {
    let layout = FieldLayout {
        single: (0..FIELDS)
            .map(|f| (format!("c{f}"), format!("c{f}"), DIM))
            .collect(),
        multi: vec![],
        dense: (0..DENSE).map(|d| format!("d{d}")).collect(),
    };
    let grid = workload_grid(d);
    let spec: ModelSpec = toml::from_str(&w.model(routing))?;
    let emb = embedding_layer(&layout, &EmbeddingOptConfig::default(), 7)?;
    let loss = GridLoss::new(LossSpec::new(grid.n_cells(), vec![true; d.behaviours]))
        .map_err(anyhow::Error::msg)?;
    ModelState::new(grid, spec, emb, DENSE, loss, 7)
}

#[allow(clippy::too_many_arguments)] // the bench's independent knobs
fn bench_train(
    w: Workload,
    threads: usize,
    windows: usize,
    steps: usize,
    data: Option<&std::path::Path>,
    routing: bool,
    all_rows: bool,
    infer_only: bool,
) -> Result<Figures> {
    // The caller runs this inside a pool of `threads` threads.
    mfh_nn::kernels::set_threads(threads);
    let mut fig = Figures {
        threads,
        ..Figures::default()
    };
    let raw = match data {
        Some(p) => read_raw(p, w)?,
        None => raw_data(
            w,
            &GenSpec {
                batches: 32,
                seed: 1,
                vocab: 100_000,
                skew: 3.0,
            },
        ),
    };
    let mut state = build_state(w, &raw, routing)?;
    let params = state.net_mut().num_params();
    outln!(
        "{}: input {} → {}; {params} dense parameters; batch {BATCH}; {threads} threads{}",
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
        ""
    );
    if all_rows {
        // Every ID of every field gets its row (and optimizer state) before timing: the
        // memory figure then covers the full tables, vocab × fields rows.
        let t = Instant::now();
        let mut slots = Vec::new();
        for (f, table) in state.emb.tables_mut().iter_mut().enumerate() {
            let ids: Vec<u64> = (0..raw.vocab)
                .map(|id| mfh_data::hash_value(format!("{f}:{id}").as_bytes()))
                .collect();
            table.lookup_train(&ids, &mut slots);
        }
        outln!(
            "created every embedding row ({} in {:.1} s)",
            raw.vocab as usize * FIELDS,
            t.elapsed().as_secs_f64()
        );
    }
    let mut batches = to_batches(&raw);
    let mut adam = Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0);
    let mut step = 0u64;
    let mut adam_secs = 0.0;
    // Window 0 warms up (with --infer-only it is the only training, so rows exist).
    let mut rates = Vec::new();
    for w in 0..=if infer_only { 0 } else { windows } {
        if w == 1 {
            state.phases = Some(Default::default());
            adam_secs = 0.0;
        }
        let rate = time_steps(
            &mut state,
            &mut adam,
            &mut batches,
            &mut step,
            steps,
            &mut adam_secs,
        );
        if w > 0 {
            rates.push(rate);
        }
    }
    if !infer_only {
        if let Some(p) = state.phases.take() {
            let mut parts: Vec<String> = p
                .per_step_ms()
                .into_iter()
                .map(|(name, ms)| format!("{name} {ms:.1}"))
                .collect();
            parts.push(format!(
                "dense Adam {:.1}",
                adam_secs * 1e3 / p.steps.max(1) as f64
            ));
            outln!("ms per step (mean): {}", parts.join(", "));
            fig.phases = p.per_step_ms();
            fig.phases
                .push(("dense Adam", adam_secs * 1e3 / p.steps.max(1) as f64));
        }
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        fig.training = Some(median);
        summary(&format!("{} training", w.name()), "samples/s", rates);
        if w == Workload::MmoeRef || !routing {
            // Forward + backward of a dense network: 2 FLOPs per weight per row forward, twice
            // that backward (input and weight gradients).
            let gflops = 6.0 * params as f64 * median / 1e9;
            outln!(
                "dense compute: {gflops:.1} GFLOP/s (6 × {params} FLOPs per sample at the median)"
            );
        }
    }
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
    // Scoring: embedding lookups (no row creation) and the forward pass, batch 1024.
    let mut rates = Vec::new();
    for w in 0..=windows {
        let t = Instant::now();
        for k in 0..steps {
            let i = k % batches.len();
            std::hint::black_box(state.forward(&mut batches[i]));
        }
        if w > 0 {
            rates.push((steps * BATCH) as f64 / t.elapsed().as_secs_f64());
        }
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    fig.inference = sorted[sorted.len() / 2];
    summary(
        &format!("{} inference (batch 1024)", w.name()),
        "samples/s",
        rates,
    );
    Ok(fig)
}

/// One `bench train` run's medians.
#[derive(Default)]
struct Figures {
    threads: usize,
    /// Training samples/s (none with --infer-only).
    training: Option<f64>,
    /// Inference samples/s, batch 1024.
    inference: f64,
    /// Milliseconds per training step by phase.
    phases: Vec<(&'static str, f64)>,
}

/// The runs side by side: rates, their efficiency against the first run's rate per
/// thread, and each phase's milliseconds per step (a phase that does not fall as threads
/// rise is serial).
fn scaling_table(w: Workload, figs: &[Figures]) {
    let base = &figs[0];
    let eff = |rate: f64, base_rate: f64, t: usize| {
        100.0 * rate / (base_rate * t as f64 / base.threads as f64)
    };
    outln!(
        "\n{} scaling (medians; efficiency = rate / (threads × first run's rate per thread)):",
        w.name()
    );
    let phase_names: Vec<&str> = base.phases.iter().map(|(n, _)| *n).collect();
    let mut head =
        "| threads | training samples/s | eff. | inference samples/s | eff. |".to_string();
    for n in &phase_names {
        head.push_str(&format!(" {n} ms |"));
    }
    outln!("{head}");
    outln!("|{}", "---:|".repeat(5 + phase_names.len()));
    for f in figs {
        let train = match (f.training, base.training) {
            (Some(r), Some(b)) => format!("{r:.0} | {:.0} %", eff(r, b, f.threads)),
            _ => "- | -".into(),
        };
        let mut line = format!(
            "| {} | {train} | {:.0} | {:.0} % |",
            f.threads,
            f.inference,
            eff(f.inference, base.inference, f.threads)
        );
        for n in &phase_names {
            match f.phases.iter().find(|(m, _)| m == n) {
                Some((_, ms)) => line.push_str(&format!(" {ms:.1} |")),
                None => line.push_str(" - |"),
            }
        }
        outln!("{line}");
    }
}

/// GFLOP/s of each product in one MMoE-ref training step: (name, m, n, k, lda, trans_a,
/// ldb, trans_b, ldc, count per step).
fn bench_shapes(repeats: usize) {
    type Shape = (
        &'static str,
        usize,
        usize,
        usize,
        usize,
        bool,
        usize,
        bool,
        usize,
        usize,
    );
    let b = BATCH;
    let shapes: [Shape; 10] = [
        (
            "fwd experts layer 1 (fused)",
            b,
            2048,
            429,
            429,
            false,
            2048,
            false,
            2048,
            1,
        ),
        (
            "fwd expert layer 2",
            b,
            128,
            256,
            2048,
            false,
            128,
            false,
            1024,
            8,
        ),
        ("fwd gate", b, 8, 429, 429, false, 8, false, 8, 4),
        (
            "fwd tower layer 1",
            b,
            64,
            128,
            128,
            false,
            64,
            false,
            64,
            4,
        ),
        (
            "bwd dW experts layer 1",
            429,
            2048,
            b,
            429,
            true,
            2048,
            false,
            2048,
            1,
        ),
        (
            "bwd dx experts layer 1",
            b,
            429,
            2048,
            2048,
            false,
            2048,
            true,
            429,
            1,
        ),
        (
            "bwd dW expert layer 2",
            256,
            128,
            b,
            2048,
            true,
            1024,
            false,
            128,
            8,
        ),
        (
            "bwd dx expert layer 2",
            b,
            256,
            128,
            1024,
            false,
            128,
            true,
            2048,
            8,
        ),
        ("bwd dW gate", 429, 8, b, 429, true, 8, false, 8, 4),
        ("bwd dx gate", b, 429, 8, 8, false, 8, true, 429, 4),
    ];
    let mut total_flops = 0.0;
    let mut total_time = 0.0;
    for (name, m, n, k, lda, ta, ldb, tb, ldc, count) in shapes {
        let a_len = if ta { k * lda } else { m * lda };
        let b_len = if tb { n * ldb } else { k * ldb };
        let a: Vec<f32> = (0..a_len).map(|i| (i % 7) as f32 * 0.1).collect();
        let bm: Vec<f32> = (0..b_len).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * ldc];
        let mut times = Vec::new();
        for r in 0..=repeats.max(3) * 4 {
            let t = Instant::now();
            mfh_nn::matmul(m, n, k, 1.0, &a, lda, ta, &bm, ldb, tb, 0.0, &mut c, ldc);
            if r > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let t = times[times.len() / 2];
        let flops = 2.0 * (m * n * k) as f64;
        total_flops += flops * count as f64;
        total_time += t * count as f64;
        outln!(
            "  {name:<28} {m}×{n}×{k}{}: {:.1} GFLOP/s ({:.2} ms × {count})",
            match (ta, tb) {
                (true, _) => " (Aᵀ)",
                (_, true) => " (Bᵀ)",
                _ => "",
            },
            flops / t / 1e9,
            t * 1e3
        );
    }
    outln!(
        "  these products: {:.1} ms per step, {:.1} GFLOP/s together",
        total_time * 1e3,
        total_flops / total_time / 1e9
    );
}

/// sgemm throughput of the `gemm` crate on n × n × n f32 through mfh's product kernel
/// (row blocks over the compute threads), in GFLOP/s per repetition.
fn bench_sgemm(n: usize, threads: usize, repeats: usize) {
    mfh_nn::use_threads(threads);
    let mut rng = SplitMix(3);
    let mut m = || -> Vec<f32> {
        (0..n * n)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect()
    };
    let (a, b) = (m(), m());
    let mut c = vec![0f32; n * n];
    // mfh's product (what the models run), then the `gemm` crate itself with its own
    // rayon parallelism: the definition of sgemm throughput.
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    type Product<'a> = &'a dyn Fn(&mut [f32]);
    let runs: [(&str, Product); 2] = [
        ("mfh kernel", &|c: &mut [f32]| {
            mfh_nn::matmul(n, n, n, 1.0, &a, n, false, &b, n, false, 0.0, c, n)
        }),
        ("gemm crate", &|c: &mut [f32]| {
            // SAFETY: a, b and c are n × n row-major buffers, c is not read (the
            // `read_dst` flag is false) and aliases neither input.
            unsafe {
                gemm::gemm(
                    n,
                    n,
                    n,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    n as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            }
        }),
    ];
    for (name, product) in runs {
        let mut rates = Vec::new();
        for r in 0..=repeats {
            let t = Instant::now();
            product(&mut c);
            let dt = t.elapsed().as_secs_f64();
            if r > 0 {
                rates.push(2.0 * (n as f64).powi(3) / dt / 1e9);
            }
        }
        std::hint::black_box(&c);
        summary(
            &format!("sgemm {n}³ f32 ({name}), {threads} threads"),
            "GFLOP/s",
            rates,
        );
    }
}

/// Times `steps` training steps over `batches` (cycled), returning samples/s.
fn time_steps(
    state: &mut ModelState,
    adam: &mut Adam<f32>,
    batches: &mut [Batch],
    step: &mut u64,
    steps: usize,
    adam_secs: &mut f64,
) -> f64 {
    let t = Instant::now();
    let mut rows = 0;
    for _ in 0..steps {
        let i = *step as usize % batches.len();
        state.net_mut().zero_grad();
        state.train_step(&mut batches[i], *step + 1);
        let a = Instant::now();
        adam.step(state.net_mut(), 1e-3);
        *adam_secs += a.elapsed().as_secs_f64();
        rows += batches[i].n;
        *step += 1;
    }
    rows as f64 / t.elapsed().as_secs_f64()
}

fn bench_routing(
    config: &std::path::Path,
    model: &str,
    n_batches: usize,
    windows: usize,
    steps: usize,
) -> Result<()> {
    let cfg = Config::load(config)?;
    mfh_nn::use_threads(cfg.train.threads.resolve());
    let (_, table) = cfg.model_section(Some(model))?;
    let spec: ModelSpec = toml::Value::Table(table.clone()).try_into()?;
    let with_routing = |on: bool| -> Result<ModelSpec> {
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
    };
    let mut p = Pipeline::new(&cfg)?;
    p.fit(&cfg.train.train_split)?;
    let layout = p.layout().clone();
    let p = Arc::new(p);
    let mut batches = Vec::new();
    for b in p.stream(
        &cfg.train.train_split,
        StreamOptions::in_order(cfg.train.batch_size),
    )? {
        batches.push(b?);
        if batches.len() == n_batches {
            break;
        }
    }
    let grid = cfg.grid();
    let mut states = Vec::new();
    for on in [true, false] {
        let emb = embedding_layer(&layout, &cfg.train.embedding, cfg.train.seed)?;
        let loss = mfh_artifact::grid_loss(&cfg, &grid)?;
        states.push(ModelState::new(
            grid.clone(),
            with_routing(on)?,
            emb,
            layout.dense.len(),
            loss,
            cfg.train.seed,
        )?);
    }
    outln!(
        "{model} on {}: {} tasks, {} cells, batch {}, {} threads; {} batches in memory",
        config.display(),
        grid.n_tasks(),
        grid.n_cells(),
        cfg.train.batch_size,
        mfh_nn::threads(),
        batches.len()
    );
    let mut adams = [
        Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0),
        Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0),
    ];
    let mut steps_done = [0u64; 2];
    let mut rates = [Vec::new(), Vec::new()];
    for w in 0..=windows {
        // Alternate the two modes window by window so drift affects both alike.
        for k in 0..2 {
            let r = time_steps(
                &mut states[k],
                &mut adams[k],
                &mut batches,
                &mut steps_done[k],
                steps,
                &mut 0.0,
            );
            if w > 0 {
                rates[k].push(r);
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (r_on, r_off) = (med(&mut rates[0].clone()), med(&mut rates[1].clone()));
    summary("routed", "samples/s", rates[0].clone());
    summary("dense ", "samples/s", rates[1].clone());
    outln!("routed / dense: {:.2}×", r_on / r_off);
    Ok(())
}
