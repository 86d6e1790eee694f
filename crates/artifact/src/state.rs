//! A model in memory: embeddings, dense network, the grid's loss and the reusable
//! buffers of one step. Both training and scoring run through [`ModelState::forward`].

use anyhow::{anyhow, Result};
use mfh_config::{Config, EmbeddingOptConfig, FunnelKind, RowOptimizerKind, TaskGrid};
use mfh_data::{Batch, FieldLayout};
use mfh_embedding::{
    EmbeddingLayer, FieldSpec, Lifecycle, MultiIds, Pooling, RowOptimizer, SparseInput, TableSpec,
};
use mfh_loss::{task_weights, GridLoss, LossSpec, LossValue, Reduction};
use mfh_model::{DataParallel, GridShape, InputField, ModelSpec, MultiTaskModel};

pub struct ModelState {
    pub grid: TaskGrid,
    pub spec: ModelSpec,
    pub emb: EmbeddingLayer,
    /// The dense network; reached through [`ModelState::net`] and
    /// [`ModelState::net_mut`] (which tells the row-block copies to refresh).
    pub(crate) net: Box<dyn MultiTaskModel<f32>>,
    pub loss: GridLoss,
    pub n_dense: usize,
    x: Vec<f32>,
    dx: Vec<f32>,
    d_logits: Vec<f32>,
    logits: Vec<f32>,
    multi: Vec<MultiIds>,
    /// Seconds spent in each phase of `train_step`, when switched on (benchmarks).
    pub phases: Option<PhaseTimes>,
    /// Copies of the network for row blocks on the product threads.
    parallel: DataParallel<f32>,
    /// What the network was built from, to build those copies: input width, seed and
    /// the towers' transfers.
    pub(crate) build: (usize, u64, Vec<(usize, usize)>),
}

/// Wall time per phase of [`ModelState::train_step`], summed over steps.
#[derive(Clone, Debug, Default)]
pub struct PhaseTimes {
    pub steps: u64,
    /// Embedding lookups and assembling the network input.
    pub embed_forward: f64,
    pub net_forward: f64,
    pub loss: f64,
    pub net_backward: f64,
    /// Row gradients and row optimizer updates, then lifecycle upkeep.
    pub embed_backward: f64,
}

impl PhaseTimes {
    /// (name, milliseconds per step) for each phase.
    pub fn per_step_ms(&self) -> Vec<(&'static str, f64)> {
        let k = 1e3 / self.steps.max(1) as f64;
        vec![
            ("embedding forward", self.embed_forward * k),
            ("network forward", self.net_forward * k),
            ("loss", self.loss * k),
            ("network backward", self.net_backward * k),
            ("embedding backward", self.embed_backward * k),
        ]
    }
}

/// Lends the batch's multi-valued ID columns to `multi` (the embedding layer reads them
/// as [`MultiIds`]); [`return_multi`] hands them back.
pub(crate) fn lend_multi(batch: &mut Batch, multi: &mut Vec<MultiIds>) {
    multi.clear();
    for m in &mut batch.multi {
        multi.push(MultiIds {
            offsets: std::mem::take(&mut m.offsets),
            ids: std::mem::take(&mut m.ids),
        });
    }
}

/// Hands the columns [`lend_multi`] lent back to the batch.
pub(crate) fn return_multi(batch: &mut Batch, multi: &mut Vec<MultiIds>) {
    for (m, ids) in batch.multi.iter_mut().zip(multi.drain(..)) {
        m.offsets = ids.offsets;
        m.ids = ids.ids;
    }
}

/// Copies each row's numeric features into columns `w..n_in` of `x` (rows × n_in).
pub(crate) fn copy_dense(x: &mut [f32], dense: &[f32], n_in: usize, w: usize) {
    let n_dense = n_in - w;
    if n_dense > 0 {
        for (row, d) in x.chunks_exact_mut(n_in).zip(dense.chunks_exact(n_dense)) {
            row[w..].copy_from_slice(d);
        }
    }
}

/// The row optimiser `train.embedding` describes.
pub fn row_optimizer(opt: &EmbeddingOptConfig) -> RowOptimizer {
    match opt.optimizer {
        RowOptimizerKind::Adagrad => RowOptimizer::Adagrad {
            lr: opt.lr as f32,
            eps: opt.eps as f32,
            initial_accumulator: 0.0,
        },
        RowOptimizerKind::Adam => RowOptimizer::Adam {
            lr: opt.lr as f32,
            beta1: opt.beta1 as f32,
            beta2: opt.beta2 as f32,
            eps: opt.eps as f32,
        },
        RowOptimizerKind::Ftrl => RowOptimizer::Ftrl {
            alpha: opt.lr as f32,
            beta: opt.ftrl_beta as f32,
            l1: opt.l1 as f32,
            l2: opt.l2 as f32,
        },
    }
}

/// Embedding tables and fields for a layout: one table per distinct table name, in order
/// of first use; each table's rows seeded by (run seed, table name).
pub fn embedding_layer(
    layout: &FieldLayout,
    opt: &EmbeddingOptConfig,
    seed: u64,
) -> Result<EmbeddingLayer> {
    embedding_layer_wide(layout, opt, seed, 1)
}

/// [`embedding_layer`] with every table and field `copies` times its features' `dim`
/// wide (STEM's shared and specific blocks side by side in one row:
/// [`ModelSpec::embedding_copies`]).
pub fn embedding_layer_wide(
    layout: &FieldLayout,
    opt: &EmbeddingOptConfig,
    seed: u64,
    copies: usize,
) -> Result<EmbeddingLayer> {
    let copies = copies.max(1);
    let optimizer = row_optimizer(opt);
    let lifecycle = Lifecycle {
        admit_after: opt.admit_after,
        ttl_steps: opt.ttl_steps,
        max_rows: opt.max_rows,
    };
    let mut tables: Vec<TableSpec> = Vec::new();
    let mut table_of = |name: &str, dim: usize| -> usize {
        if let Some(i) = tables.iter().position(|t| t.name == name) {
            return i;
        }
        tables.push(TableSpec {
            name: name.to_string(),
            dim,
            init_scale: opt.init_scale as f32,
            optimizer: optimizer.clone(),
            seed: seed ^ xxhash_rust::xxh3::xxh3_64(name.as_bytes()),
            lifecycle: lifecycle.clone(),
        });
        tables.len() - 1
    };
    let mut fields = Vec::new();
    for (name, table, dim) in &layout.single {
        let dim = dim * copies;
        fields.push(FieldSpec::single(name.clone(), table_of(table, dim), dim));
    }
    for (name, table, dim, mean) in &layout.multi {
        let dim = dim * copies;
        let pooling = if *mean { Pooling::Mean } else { Pooling::Sum };
        fields.push(FieldSpec::multi(
            name.clone(),
            table_of(table, dim),
            dim,
            pooling,
        ));
    }
    let mut layer =
        EmbeddingLayer::new(tables, fields).map_err(|e| anyhow!("embedding tables: {e}"))?;
    layer.set_evict_every(opt.evict_every);
    Ok(layer)
}

/// Resolves what `spec` names in the network input (PEPNet's priors, STEM's blocks)
/// against the embedding fields, which come first in the input.
pub fn bind_spec(spec: &mut ModelSpec, emb: &EmbeddingLayer) -> Result<()> {
    let fields: Vec<InputField> = emb
        .fields()
        .iter()
        .enumerate()
        .map(|(f, fs)| InputField {
            name: fs.name.clone(),
            offset: emb.field_offset(f),
            width: fs.dim,
        })
        .collect();
    spec.bind(&fields)
        .map_err(|e| anyhow!("cannot build the model: {e}"))
}

/// The grid's loss as the config describes it: reduction, weights per behaviour and per
/// task, uncertainty weighting, funnel heads.
pub fn grid_loss(cfg: &Config, grid: &TaskGrid) -> Result<GridLoss> {
    let lc = &cfg.train.loss;
    let per_behaviour: Vec<f64> = grid
        .behaviours
        .iter()
        .map(|b| lc.weights.get(b).copied().unwrap_or(1.0))
        .collect();
    let mut overrides = Vec::new();
    for (name, w) in &lc.task_weights {
        let t = (0..grid.n_tasks()).find(|&t| grid.task_name(t) == *name).ok_or_else(|| {
            anyhow!(
                "{}: key `train.loss.task_weights.\"{name}\"`: no such task (tasks are named like `{}`)",
                cfg.source_file.display(),
                grid.task_name(0)
            )
        })?;
        overrides.push((t, *w));
    }
    let weights = task_weights(grid.n_cells(), &per_behaviour, &overrides)
        .map_err(|e| anyhow!("train.loss: {e}"))?;
    let idx = |name: &str| grid.behaviours.iter().position(|b| b == name).unwrap_or(0);
    let reduction = match lc.reduction {
        mfh_config::Reduction::ActiveMean => Reduction::ActiveMean,
        mfh_config::Reduction::TaskMean => Reduction::TaskMean,
        mfh_config::Reduction::BatchMean => Reduction::BatchMean,
    };
    let spec = LossSpec {
        weights,
        reduction,
        uncertainty: lc.uncertainty,
        funnels: lc
            .funnels
            .iter()
            .filter(|f| f.kind == FunnelKind::Esmm)
            .map(|f| (idx(&f.from), idx(&f.to)))
            .collect(),
        calibration: lc
            .funnels
            .iter()
            .filter(|f| f.kind == FunnelKind::Aitm)
            .map(|f| (idx(&f.from), idx(&f.to), f.calibration))
            .collect(),
        negative_rates: if cfg.behaviours.iter().any(|b| b.negative_rate() < 1.0) {
            cfg.behaviours.iter().map(|b| b.negative_rate()).collect()
        } else {
            Vec::new()
        },
        ..LossSpec::new(grid.n_cells(), grid.binary.clone())
    };
    GridLoss::new(spec).map_err(|e| anyhow!("train.loss: {e}"))
}

/// The grid's dimensions as the models see them: behaviours first, then the facets.
pub fn grid_shape(grid: &TaskGrid) -> GridShape {
    let mut dims = vec![("behaviour".to_string(), grid.behaviours.clone())];
    dims.extend(grid.facets.iter().cloned());
    GridShape { dims }
}

impl ModelState {
    /// A model over `emb` (built by [`embedding_layer_wide`] with
    /// `spec.embedding_copies(..)` copies: STEM's tables are wider) and `n_dense` numeric
    /// inputs.
    pub fn new(
        grid: TaskGrid,
        mut spec: ModelSpec,
        emb: EmbeddingLayer,
        n_dense: usize,
        loss: GridLoss,
        seed: u64,
    ) -> Result<Self> {
        let n_in = emb.width() + n_dense;
        bind_spec(&mut spec, &emb)?;
        // AITM's funnel pairs live in the loss (its calibration penalty); the towers
        // transfer information along the same pairs.
        let transfers: Vec<(usize, usize)> = loss
            .spec()
            .calibration
            .iter()
            .map(|&(a, b, _)| (a, b))
            .collect();
        let net = mfh_model::build_model_with_transfers::<f32>(
            &spec,
            &grid_shape(&grid),
            n_in,
            seed,
            &transfers,
        )
        .map_err(|e| anyhow!("cannot build the model: {e}"))?;
        Ok(ModelState {
            grid,
            spec,
            emb,
            net,
            loss,
            n_dense,
            x: Vec::new(),
            dx: Vec::new(),
            d_logits: Vec::new(),
            logits: Vec::new(),
            multi: Vec::new(),
            phases: None,
            parallel: DataParallel::default(),
            build: (n_in, seed, transfers),
        })
    }

    pub fn n_in(&self) -> usize {
        self.emb.width() + self.n_dense
    }

    /// The dense network, read-only.
    pub fn net(&self) -> &dyn MultiTaskModel<f32> {
        self.net.as_ref()
    }

    /// The dense network (as [`ModelState::net_mut`]) and the loss, borrowed together.
    pub fn net_and_loss_mut(&mut self) -> (&mut dyn MultiTaskModel<f32>, &mut GridLoss) {
        self.parallel.params_changed();
        (self.net.as_mut(), &mut self.loss)
    }

    /// The dense network, for changing its parameters (optimizer steps, loading): the
    /// copies that score row blocks take the parameters again before their next pass.
    pub fn net_mut(&mut self) -> &mut dyn MultiTaskModel<f32> {
        self.parallel.params_changed();
        self.net.as_mut()
    }

    /// Fills the network input for `batch`: embeddings, then numeric features.
    pub(crate) fn assemble(&mut self, batch: &mut Batch, train: bool) {
        let n_in = self.n_in();
        let w = self.emb.width();
        self.x.resize(batch.n * n_in, 0.0);
        lend_multi(batch, &mut self.multi);
        let input = SparseInput {
            n: batch.n,
            single: &batch.single,
            multi: &self.multi,
        };
        self.emb.forward(&input, train, &mut self.x, n_in);
        copy_dense(&mut self.x, &batch.dense, n_in, w);
    }

    /// Hands the multi-valued ID columns borrowed by `assemble` back to the batch, so a
    /// batch can be used again (benchmarks replay batches from memory).
    fn restore(&mut self, batch: &mut Batch) {
        return_multi(batch, &mut self.multi);
    }

    /// Scores a batch: logits rows × tasks (valid until the next call).
    pub fn forward(&mut self, batch: &mut Batch) -> &[f32] {
        self.assemble(batch, false);
        self.restore(batch);
        self.net_forward(&batch.cells, batch.n, false)
    }

    /// The network's forward over the assembled input, in row blocks on the product
    /// threads when the network allows it (see [`DataParallel`]).
    fn net_forward(&mut self, cells: &[u32], n: usize, train: bool) -> &[f32] {
        let threads = mfh_nn::kernels::threads();
        let blocks = self.parallel.blocks_for(self.net.as_mut(), n, threads);
        let (spec, grid, build) = (&self.spec, &self.grid, &self.build);
        let make = || {
            mfh_model::build_model_with_transfers::<f32>(
                spec,
                &grid_shape(grid),
                build.0,
                build.1,
                &build.2,
            )
        };
        self.parallel
            .forward(self.net.as_mut(), &make, &self.x, cells, n, train, blocks)
    }

    /// Loss of a batch without gradients (for validation loss).
    pub fn eval_loss(&self, batch: &Batch, logits: &[f32]) -> LossValue {
        self.loss.value(logits, &batch.labels, &batch.cells)
    }

    /// One forward and backward pass; dense gradients accumulate in the net (the caller
    /// steps the optimiser), embedding rows are updated here.
    pub fn train_step(&mut self, batch: &mut Batch, step: u64) -> LossValue {
        let timed = self.phases.is_some();
        let mut marks = [std::time::Instant::now(); 6];
        let mut mark = |i: usize| {
            if timed {
                marks[i] = std::time::Instant::now();
            }
        };
        self.emb.set_clock(step);
        self.assemble(batch, true);
        mark(1);
        let n = batch.n;
        // The logits are copied out (n × tasks, small) so the loss can borrow the state.
        let mut logits = std::mem::take(&mut self.logits);
        logits.clear();
        logits.extend_from_slice(self.net_forward(&batch.cells, n, true));
        mark(2);
        self.d_logits.resize(logits.len(), 0.0);
        let value = self.loss.compute_weighted(
            &logits,
            &batch.labels,
            &batch.cells,
            &batch.weights,
            &mut self.d_logits,
        );
        self.logits = logits;
        mark(3);
        // The network accumulates into dx, so it starts from zero every step.
        self.dx.clear();
        self.dx.resize(self.x.len(), 0.0);
        self.parallel.backward(
            self.net.as_mut(),
            &self.x,
            &batch.cells,
            &self.d_logits,
            Some(&mut self.dx),
            n,
        );
        mark(4);
        let input = SparseInput {
            n,
            single: &batch.single,
            multi: &self.multi,
        };
        self.emb.backward(&input, &self.dx, self.n_in(), step);
        // Between batches: expired and over-cap rows go (no slot is held past here).
        self.emb.maintain(step);
        self.restore(batch);
        mark(5);
        if let Some(p) = &mut self.phases {
            let s = |i: usize| (marks[i] - marks[i - 1]).as_secs_f64();
            p.steps += 1;
            p.embed_forward += s(1);
            p.net_forward += s(2);
            p.loss += s(3);
            p.net_backward += s(4);
            p.embed_backward += s(5);
        }
        value
    }
}
