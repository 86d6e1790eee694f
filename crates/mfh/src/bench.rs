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
use mfh_config::{Config, EmbeddingOptConfig, TaskGrid};
use mfh_data::{Batch, FieldLayout, Pipeline, SplitMix, StreamOptions};
use mfh_loss::{GridLoss, LossSpec};
use mfh_model::ModelSpec;
use mfh_nn::Adam;
use mfh_train::{embedding_layer, ModelState};
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
    /// Training samples/s on MMoE-ref (synthetic, in-memory batches).
    Train {
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 7)]
        windows: usize,
        #[arg(long, default_value_t = 20)]
        steps_per_window: usize,
        /// Batches from a file written by `mfh bench gen` (the peers read the same file).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Writes MMoE-ref batches to a file that mfh and the PyTorch peers both read.
    Gen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 32)]
        batches: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
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
            threads,
            windows,
            steps_per_window,
            data,
        } => bench_train(threads, windows, steps_per_window, data.as_deref())?,
        BenchCmd::Gen { out, batches, seed } => {
            write_raw(&raw_data(batches, seed), &out)?;
            outln!(
                "{batches} MMoE-ref batches of {BATCH} rows → {}",
                out.display()
            );
        }
        BenchCmd::Routing {
            config,
            model,
            batches,
            windows,
            steps_per_window,
        } => bench_routing(&config, &model, batches, windows, steps_per_window)?,
    }
    Ok(())
}

const FIELDS: usize = 26;
const DIM: usize = 16;
const DENSE: usize = 13;
const BATCH: usize = 1024;
const VOCAB: u64 = 100_000;

/// Raw MMoE-ref data: what both mfh and the PyTorch peers read (the same bytes).
/// File layout (little-endian): `MFHBENCH`, then u64 batches, batch size, fields, dense,
/// tasks; then per batch: ids u32 [batch × fields], dense f32 [batch × dense], labels f32
/// [batch × tasks].
struct RawData {
    batches: usize,
    ids: Vec<u32>,
    dense: Vec<f32>,
    labels: Vec<f32>,
}

const MAGIC: &[u8; 8] = b"MFHBENCH";

/// Skewed IDs (u³ · 100,000 puts most mass on small IDs), uniform dense values in
/// [−1, 1), 4 binary labels at rates 0.1, 0.2, 0.3, 0.4; seeded.
fn raw_data(count: usize, seed: u64) -> RawData {
    let mut rng = SplitMix(seed);
    let mut unif = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut d = RawData {
        batches: count,
        ids: Vec::new(),
        dense: Vec::new(),
        labels: Vec::new(),
    };
    for _ in 0..count * BATCH {
        for _ in 0..FIELDS {
            d.ids.push((unif().powi(3) * VOCAB as f64) as u32);
        }
        for _ in 0..DENSE {
            d.dense.push((unif() * 2.0 - 1.0) as f32);
        }
        for t in 0..4 {
            d.labels.push(if unif() < 0.1 + 0.1 * t as f64 {
                1.0
            } else {
                0.0
            });
        }
    }
    d
}

fn write_raw(d: &RawData, path: &std::path::Path) -> Result<()> {
    let mut out = Vec::with_capacity(48 + d.ids.len() * 4 + (d.dense.len() + d.labels.len()) * 4);
    out.extend_from_slice(MAGIC);
    for v in [d.batches, BATCH, FIELDS, DENSE, 4] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    for b in 0..d.batches {
        let r = b * BATCH..(b + 1) * BATCH;
        d.ids[r.start * FIELDS..r.end * FIELDS]
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        d.dense[r.start * DENSE..r.end * DENSE]
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        d.labels[r.start * 4..r.end * 4]
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }
    std::fs::write(path, out).map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
}

fn read_raw(path: &std::path::Path) -> Result<RawData> {
    let b =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let bad = || {
        anyhow::anyhow!(
            "{}: not an MMoE-ref data file written by `mfh bench gen`",
            path.display()
        )
    };
    if b.len() < 48 || &b[..8] != MAGIC {
        return Err(bad());
    }
    let h: Vec<usize> = (0..5)
        .map(|i| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap()) as usize)
        .collect();
    if h[1..] != [BATCH, FIELDS, DENSE, 4]
        || b.len() != 48 + h[0] * BATCH * (FIELDS + DENSE + 4) * 4
    {
        return Err(bad());
    }
    let mut d = RawData {
        batches: h[0],
        ids: Vec::new(),
        dense: Vec::new(),
        labels: Vec::new(),
    };
    let mut pos = 48;
    let mut word = || {
        let w: [u8; 4] = b[pos..pos + 4].try_into().unwrap();
        pos += 4;
        w
    };
    for _ in 0..d.batches {
        (0..BATCH * FIELDS).for_each(|_| d.ids.push(u32::from_le_bytes(word())));
        (0..BATCH * DENSE).for_each(|_| d.dense.push(f32::from_le_bytes(word())));
        (0..BATCH * 4).for_each(|_| d.labels.push(f32::from_le_bytes(word())));
    }
    Ok(d)
}

/// Batches for the trainer: each field's raw ID hashed as `field:id`.
fn to_batches(d: &RawData) -> Vec<Batch> {
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
                b.labels.extend_from_slice(&d.labels[i * 4..(i + 1) * 4]);
                b.cells.push(0);
                b.groups.push(0);
                b.rows.push(i as u64);
            }
            b
        })
        .collect()
}

fn bench_train(
    threads: usize,
    windows: usize,
    steps: usize,
    data: Option<&std::path::Path>,
) -> Result<()> {
    mfh_nn::kernels::init_thread_pool(threads);
    mfh_nn::kernels::set_threads(threads);
    let layout = FieldLayout {
        single: (0..FIELDS)
            .map(|f| (format!("c{f}"), format!("c{f}"), DIM))
            .collect(),
        multi: vec![],
        dense: (0..DENSE).map(|d| format!("d{d}")).collect(),
    };
    let grid = TaskGrid {
        behaviours: (0..4).map(|t| format!("task{t}")).collect(),
        binary: vec![true; 4],
        facets: vec![],
    };
    let spec: ModelSpec =
        toml::from_str("type = \"mmoe\"\nexperts = 8\nexpert_layers = [256, 128]\ntower = [64]\n")?;
    let emb = embedding_layer(&layout, &EmbeddingOptConfig::default(), 7)?;
    let loss = GridLoss::new(LossSpec::new(1, vec![true; 4])).map_err(anyhow::Error::msg)?;
    let mut state = ModelState::new(grid, spec, emb, DENSE, loss, 7)?;
    outln!(
        "MMoE-ref: input {} → 8 experts 256→128, 4 tasks, towers 64→1; {} dense parameters; batch {BATCH}; {threads} threads",
        state.n_in(),
        state.net.num_params()
    );
    let raw = match data {
        Some(p) => read_raw(p)?,
        None => raw_data(32, 1),
    };
    let mut batches = to_batches(&raw);
    let mut adam = Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0);
    let mut step = 0u64;
    let mut run_steps = |k: usize, state: &mut ModelState| {
        for _ in 0..k {
            let i = step as usize % batches.len();
            // train_step consumes multi-valued columns; single-valued batches are reusable.
            let b = &mut batches[i];
            state.net.zero_grad();
            state.train_step(b, step + 1);
            adam.step(state.net.as_mut(), 1e-3);
            step += 1;
        }
    };
    run_steps(steps, &mut state); // warm-up: rows created, buffers grown
    let mut rates = Vec::new();
    for _ in 0..windows {
        let t = Instant::now();
        run_steps(steps, &mut state);
        rates.push((steps * BATCH) as f64 / t.elapsed().as_secs_f64());
    }
    summary("MMoE-ref training", "samples/s", rates);
    let rows: usize = state.emb.tables().iter().map(|t| t.len()).sum();
    outln!("embedding rows created: {rows}");
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
    summary("MMoE-ref inference (batch 1024)", "samples/s", rates);
    Ok(())
}

/// Times `steps` training steps over `batches` (cycled), returning samples/s.
fn time_steps(
    state: &mut ModelState,
    adam: &mut Adam<f32>,
    batches: &mut [Batch],
    step: &mut u64,
    steps: usize,
) -> f64 {
    let t = Instant::now();
    let mut rows = 0;
    for _ in 0..steps {
        let i = *step as usize % batches.len();
        state.net.zero_grad();
        state.train_step(&mut batches[i], *step + 1);
        adam.step(state.net.as_mut(), 1e-3);
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
    mfh_nn::kernels::init_thread_pool(cfg.train.threads);
    mfh_nn::kernels::set_threads(cfg.train.threads);
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
        let loss = mfh_train::grid_loss(&cfg, &grid)?;
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
        cfg.train.threads,
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
