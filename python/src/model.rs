//! `mfh.Model`: a trained model folder, loaded once, scored from any Python thread.

use crate::config::Config;
use crate::errors::{to_py, IntoPy, ModelFailure};
use crate::tables::{split_tables, table};
use anyhow::Context;
use mfh_artifact::{load_model, LoadedModel};
use mfh_data::{Batch, RequestDecoder};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Scores `[rows, behaviours]` and each row's cell index.
type Scored<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<u32>>);
/// An embedding table's keys and rows.
type TableRows<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray2<f32>>);

/// Rows scored per forward pass.
const CHUNK: usize = 4096;

/// A trained model folder.
#[pyclass(module = "mfh._mfh", frozen)]
pub struct Model {
    dir: PathBuf,
    name: String,
    behaviours: Vec<String>,
    cells: Vec<String>,
    decoder: RequestDecoder,
    list_sep: u8,
    /// The loaded folder; its network runs one forward pass at a time.
    inner: Mutex<LoadedModel>,
}

/// Loads the model folder `dir`.
#[pyfunction]
pub fn load(py: Python<'_>, dir: PathBuf) -> PyResult<Model> {
    py.detach(|| -> anyhow::Result<Model> {
        let m = load_model(&dir).context(ModelFailure)?;
        let p = Arc::new(m.serving_pipeline().context(ModelFailure)?);
        mfh_nn::use_threads(m.config.train.threads.resolve());
        let grid = m.state.grid.clone();
        Ok(Model {
            dir: m.dir.clone(),
            name: m.meta.model_name.clone(),
            behaviours: grid.behaviours.clone(),
            cells: grid.cell_names(),
            decoder: RequestDecoder::new(p),
            list_sep: crate::tables::list_separator(&m.config),
            inner: Mutex::new(m),
        })
    })
    .map_err(|e| to_py(e.context(format!("loading {}", dir.display()))))
}

impl Model {
    fn lock(&self) -> std::sync::MutexGuard<'_, LoadedModel> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decodes every row of `t`.
    pub(crate) fn decode(&self, t: &dyn mfh_data::RowTable) -> anyhow::Result<Batch> {
        let mut batch = self.decoder.batch();
        self.decoder
            .decode_table(t, &mut batch)
            .map_err(|e| anyhow::Error::new(e).context("decoding the rows"))?;
        Ok(batch)
    }

    /// Scores `batch`: rows × behaviours, each from its row's own cell's heads.
    pub(crate) fn score(&self, batch: &mut Batch) -> Vec<f32> {
        let nb = self.behaviours.len();
        let mut out = Vec::with_capacity(batch.n * nb);
        let mut preds = Vec::new();
        let mut m = self.lock();
        if batch.n <= CHUNK {
            let logits = m.state.forward(batch).to_vec();
            m.state.loss.predict(&logits, &batch.cells, &mut preds);
            return preds;
        }
        let mut idx: Vec<usize> = Vec::with_capacity(CHUNK);
        let mut part = batch.empty_like();
        for start in (0..batch.n).step_by(CHUNK) {
            idx.clear();
            idx.extend(start..(start + CHUNK).min(batch.n));
            part.clear();
            part.extend_from(batch, &idx);
            let logits = m.state.forward(&mut part).to_vec();
            m.state.loss.predict(&logits, &part.cells, &mut preds);
            out.extend_from_slice(&preds);
        }
        out
    }
}

#[pymethods]
impl Model {
    /// The model folder.
    #[getter]
    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The model section it was trained from.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[getter]
    fn behaviours(&self) -> Vec<String> {
        self.behaviours.clone()
    }

    #[getter]
    fn cells(&self) -> Vec<String> {
        self.cells.clone()
    }

    /// The config the model was trained with.
    #[getter]
    fn config(&self) -> Config {
        Config {
            cfg: self.lock().config.clone(),
        }
    }

    /// Of `columns`, those scoring reads (the model's inputs, side-table overrides and
    /// join keys), in the given order.
    fn columns_read(&self, columns: Vec<String>) -> Vec<String> {
        columns
            .into_iter()
            .filter(|c| self.decoder.input(c).is_some_and(|i| self.decoder.reads(i)))
            .collect()
    }

    /// Scores an Arrow table of raw columns: `(scores [rows, behaviours] float32,
    /// cell index per row uint32)`.
    fn predict<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Scored<'py>> {
        let t = table(data, "data", self.list_sep)?;
        let nb = self.behaviours.len();
        let (scores, cells) = py
            .detach(|| -> anyhow::Result<(Vec<f32>, Vec<u32>)> {
                let mut batch = self.decode(&*t)?;
                let scores = self.score(&mut batch);
                Ok((scores, batch.cells))
            })
            .py_err()?;
        let n = cells.len();
        let scores = scores.into_pyarray(py).reshape([n, nb])?;
        Ok((scores, cells.into_pyarray(py)))
    }

    /// Scores split `split` of `config` (the model's own when None), reading the tables
    /// in `data` for the splits it names; returns the metric records as JSON.
    #[pyo3(signature = (config=None, split=None, data=None, batch_size=4096))]
    fn evaluate(
        &self,
        py: Python<'_>,
        config: Option<&Config>,
        split: Option<String>,
        data: Option<&Bound<'_, PyDict>>,
        batch_size: usize,
    ) -> PyResult<String> {
        let cfg = match config {
            Some(c) => c.cfg.clone(),
            None => self.lock().config.clone(),
        };
        let tables = split_tables(data, crate::tables::list_separator(&cfg))?;
        let split = split.unwrap_or_else(|| cfg.train.valid_split.clone());
        py.detach(|| -> anyhow::Result<String> {
            let mut m = self.lock();
            let p = Arc::new(m.pipeline_with(&cfg, &tables)?);
            let r = mfh_artifact::evaluate(&mut m.state, &p, &split, batch_size.max(1))
                .with_context(|| format!("scoring split `{split}`"))?;
            Ok(r.report.to_json())
        })
        .py_err()
    }

    /// The dense network's parameters and buffers by name (flat float32 arrays).
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let named = self.named_weights();
        let d = PyDict::new(py);
        for (k, v) in named {
            d.set_item(k, v.into_pyarray(py))?;
        }
        Ok(d)
    }

    /// Feature `feature`'s embedding table: `(keys uint64 [rows], rows float32 [rows, dim])`
    /// in row order; `mfh.hash_id(value)` gives a raw value's key.
    fn embeddings<'py>(&self, py: Python<'py>, feature: &str) -> PyResult<TableRows<'py>> {
        let (keys, rows, dim) = {
            let m = self.lock();
            let emb = &m.state.emb;
            let Some(f) = emb.fields().iter().find(|f| f.name == feature) else {
                let names: Vec<&str> = emb.fields().iter().map(|f| f.name.as_str()).collect();
                return Err(to_py(anyhow::anyhow!(
                    "no embedded feature `{feature}`; the model embeds: {}",
                    names.join(", ")
                )));
            };
            let t = &emb.tables()[f.table];
            let ids = t.slots_in_order();
            let mut rows = Vec::with_capacity(ids.len() * t.dim());
            for (slot, _) in &ids {
                rows.extend_from_slice(t.row(*slot));
            }
            (
                ids.into_iter().map(|(_, id)| id).collect::<Vec<u64>>(),
                rows,
                t.dim(),
            )
        };
        let n = keys.len();
        Ok((
            keys.into_pyarray(py),
            rows.into_pyarray(py).reshape([n, dim])?,
        ))
    }

    /// Writes the dense weights (and, with `embeddings`, every table's keys and rows as
    /// `embeddings.TABLE.keys` / `.rows`) to a safetensors file, atomically.
    #[pyo3(signature = (path, embeddings=false))]
    fn save_safetensors(&self, py: Python<'_>, path: PathBuf, embeddings: bool) -> PyResult<()> {
        py.detach(|| {
            let named = self.named_weights();
            let m = self.lock();
            let tables = embeddings.then(|| m.state.emb.tables());
            crate::safetensors_out::write(&self.name, named, tables, &path)
        })
        .py_err()
    }

    /// Writes the model as ONNX to `path` (with `path.rows/` and `path.io.json`, replaced
    /// as one bundle), through `mfh export --onnx`'s own function.
    fn export_onnx(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| mfh_export::export(&self.lock(), &path).map(|_| ()))
            .py_err()
    }

    /// The inputs an `mfh export --onnx` graph of this model takes for these rows: per
    /// embedded feature its row indices (int64), `dense` (float32), `cell` (int64).
    fn onnx_feed<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let t = table(data, "data", self.list_sep)?;
        let feed = py
            .detach(|| -> anyhow::Result<Vec<crate::onnx_feed::Input>> {
                let batch = self.decode(&*t)?;
                let m = self.lock();
                Ok(crate::onnx_feed::inputs(&m, &batch))
            })
            .py_err()?;
        crate::onnx_feed::to_dict(py, feed)
    }

    /// Median seconds, over `reps` runs, of decoding and scoring `data`'s rows through
    /// the server's request path (rows already split into fields, as a parsed JSON
    /// request holds them): what `predict`'s speed is measured against.
    #[pyo3(signature = (data, reps=5))]
    fn time_request_path(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        reps: usize,
    ) -> PyResult<f64> {
        let t = table(data, "data", self.list_sep)?;
        py.detach(|| crate::bench::request_path(&self.decoder, |b| self.score(b), &*t, reps))
            .py_err()
    }

    fn __repr__(&self) -> String {
        format!(
            "mfh.Model({:?}, model={:?})",
            self.dir.display().to_string(),
            self.name
        )
    }
}

impl Model {
    /// Every dense parameter and buffer, by name.
    pub(crate) fn named_weights(&self) -> Vec<(String, Vec<f32>)> {
        let mut m = self.lock();
        let mut out = Vec::new();
        let net = m.state.net_mut();
        net.visit_params("", &mut |name, w, _| {
            out.push((name.to_string(), w.to_vec()))
        });
        net.visit_buffers("", &mut |name, b| out.push((name.to_string(), b.to_vec())));
        out
    }
}
