//! `Model.onnx_feed`: the inputs of the graph `mfh export --onnx` writes for a model,
//! computed by mfh's own decoder (hashing, bucketing, standardising, cells), so that an
//! ONNX runtime needs none of it re-implemented. Row indices follow the export's tables:
//! row 0 for a key the table does not hold, `slot + 1` otherwise, `-1` as the padding of
//! a multi-valued list.

use mfh_artifact::LoadedModel;
use mfh_data::Batch;
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pub enum Values {
    /// `[n]` or `[n, width]` int64.
    Int(Vec<i64>, Option<usize>),
    /// `[n, width]` float32.
    Float(Vec<f32>, usize),
}

pub struct Input {
    pub name: String,
    pub n: usize,
    pub values: Values,
}

pub fn inputs(m: &LoadedModel, batch: &Batch) -> Vec<Input> {
    let emb = &m.state.emb;
    let n = batch.n;
    let names: Vec<String> = emb.fields().iter().map(|f| f.name.clone()).collect();
    let ns = emb.n_single_fields();
    let (mut single_col, mut multi_col) = (0usize, 0usize);
    let mut out = Vec::new();
    for f in emb.fields() {
        let t = &emb.tables()[f.table];
        let row = |id: u64| t.lookup_eval(id).map_or(0, |s| s as i64 + 1);
        match f.pooling {
            None => {
                let c = single_col;
                single_col += 1;
                let v = (0..n).map(|r| row(batch.single[r * ns + c])).collect();
                out.push(Input {
                    name: f.name.clone(),
                    n,
                    values: Values::Int(v, None),
                });
            }
            Some(_) => {
                let col = &batch.multi[multi_col];
                multi_col += 1;
                let len = |r: usize| (col.offsets[r + 1] - col.offsets[r]) as usize;
                let width = (0..n).map(len).max().unwrap_or(0).max(1);
                let mut v = vec![-1i64; n * width];
                for r in 0..n {
                    let a = col.offsets[r] as usize;
                    for k in 0..len(r) {
                        v[r * width + k] = row(col.ids[a + k]);
                    }
                }
                out.push(Input {
                    name: f.name.clone(),
                    n,
                    values: Values::Int(v, Some(width)),
                });
            }
        }
    }
    let nd = m.state.n_dense;
    if nd > 0 {
        out.push(Input {
            name: mfh_export::unique_input("dense", &names),
            n,
            values: Values::Float(batch.dense.clone(), nd),
        });
    }
    out.push(Input {
        name: mfh_export::unique_input("cell", &names),
        n,
        values: Values::Int(batch.cells.iter().map(|&c| c as i64).collect(), None),
    });
    out
}

pub fn to_dict(py: Python<'_>, feed: Vec<Input>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for i in feed {
        match i.values {
            Values::Int(v, None) => d.set_item(i.name, v.into_pyarray(py))?,
            Values::Int(v, Some(w)) => d.set_item(i.name, v.into_pyarray(py).reshape([i.n, w])?)?,
            Values::Float(v, w) => d.set_item(i.name, v.into_pyarray(py).reshape([i.n, w])?)?,
        }
    }
    Ok(d)
}
