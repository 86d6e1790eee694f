//! ONNX export of a trained model folder (`mfh export`): the dense network plus the
//! embedding gathers, for runtimes that cannot run mfh itself.
//!
//! ONNX cannot hash raw IDs, so the graph takes **row indices**: one int64 input per
//! embedded feature (`[n]`, or `[n, l]` padded with -1 for a multi-valued one), the
//! transformed numeric features (`dense`, float32 `[n, k]`) and each row's facet cell
//! (`cell`, int64 `[n]`). Beside `FILE` the export writes `FILE.rows/TABLE.csv` (each
//! table's `key,row` map: the hashed key mfh's reader computes and the row it reads) and
//! `FILE.io.json` (every input and output: name, dtype, shape, and what the caller must
//! compute). Outputs: `scores` `[n, behaviours]`, each row answered by its own cell's
//! heads exactly as `mfh predict` answers it, and `logits` `[n, tasks]`, every task's
//! logit. docs/serving.md ("ONNX export") is the caller's guide.
//!
//! The three paths are one bundle, written whole or not at all (a temp folder beside
//! `FILE`, then renames: `src/bundle.rs`); [`verify`] tells a bundle from a mix of two.
//!
//! Not here: the layers' graphs (each layer describes itself through
//! `mfh_nn::graph::GraphBuilder`); the protobuf writer is [`onnx`].

mod bundle;
pub mod onnx;

pub use bundle::{verify, BUNDLE_KEY};

use anyhow::{anyhow, bail, Result};
use mfh_artifact::LoadedModel;
use mfh_embedding::EmbeddingTable;
use mfh_nn::graph::{Attr, GraphBuilder};
use onnx::{ElemType, ValueInfo};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The seed of mfh's ID hash (`mfh_data::hash_value`), written into io.json and the docs;
/// a test checks it against the reader.
pub const ID_HASH_SEED: u64 = 0x6d66_685f_6964_7331;
/// The seed of a bucket's ID: the bucket index as 8 little-endian bytes, hashed with it.
pub const BUCKET_HASH_SEED: u64 = ID_HASH_SEED ^ 0xb0c4;

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub onnx: PathBuf,
    pub io_json: PathBuf,
    pub rows_dir: PathBuf,
    pub onnx_bytes: usize,
    pub nodes: usize,
    /// Per table: name and rows (without the zero and padding rows).
    pub tables: Vec<(String, usize)>,
    /// The bundle id: io.json's `bundle.id`, and the graph's metadata [`BUNDLE_KEY`].
    pub bundle: String,
    /// Temp folders of other exports to the same path (one running now, or one cut short
    /// by a crash), left as they are.
    pub other_temps: Vec<PathBuf>,
}

/// `FILE.rows` and `FILE.io.json` for the ONNX file `onnx`.
pub fn sidecar_paths(onnx: &Path) -> (PathBuf, PathBuf) {
    let mut rows = onnx.as_os_str().to_owned();
    rows.push(".rows");
    let mut io = onnx.as_os_str().to_owned();
    io.push(".io.json");
    (PathBuf::from(rows), PathBuf::from(io))
}

/// A table's CSV file name: its name when that is a plain file name, else `tableI`.
fn table_file(i: usize, name: &str) -> String {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        format!("{name}.csv")
    } else {
        format!("table{i}.csv")
    }
}

/// A graph input name: `want`, or `want_` (…) when a feature already has that name (the
/// `dense` and `cell` inputs are named so).
pub fn unique_input(want: &str, taken: &[String]) -> String {
    let mut name = want.to_string();
    while taken.contains(&name) {
        name.push('_');
    }
    name
}

/// The embedding table as ONNX rows: row 0 zeros (a key with no row), row `slot + 1`
/// the row of `slot`, then a zero padding row (the `-1` of multi-valued lists).
fn table_rows(t: &EmbeddingTable) -> Vec<f32> {
    let (d, n) = (t.dim(), t.len());
    let mut v = vec![0.0f32; (n + 2) * d];
    for slot in 0..n {
        v[(slot + 1) * d..(slot + 2) * d].copy_from_slice(t.row(slot as u32));
    }
    v
}

/// Each behaviour's funnel parent (ESMM `a → b`: p(b) = p(a) · p(b | a)).
fn funnel_parents(m: &LoadedModel) -> Vec<Option<usize>> {
    let mut parent = vec![None; m.meta.grid.n_behaviours()];
    for &(a, b) in &m.state.loss.spec().funnels {
        if b < parent.len() {
            parent[b] = Some(a);
        }
    }
    parent
}

/// Writes `onnx`, `onnx.rows/` and `onnx.io.json` for the loaded model, as one bundle:
/// on failure the paths hold what they held before.
pub fn export(m: &LoadedModel, onnx: &Path) -> Result<ExportSummary> {
    let state = &m.state;
    let emb = &state.emb;
    let grid = &m.meta.grid;
    let (nb, nc) = (grid.n_behaviours(), grid.n_cells());
    let n_tasks = nb * nc;
    if state.net().n_tasks() != n_tasks {
        bail!(
            "the network has {} task logits but the grid {n_tasks} tasks",
            state.net().n_tasks()
        );
    }
    let mut g = GraphBuilder::new();
    let field_names: Vec<String> = emb.fields().iter().map(|f| f.name.clone()).collect();
    let dense_in = unique_input("dense", &field_names);
    let cell_in = unique_input("cell", &field_names);
    for name in field_names
        .iter()
        .chain([&dense_in, &cell_in])
        .map(String::as_str)
        .chain(["scores", "logits"])
    {
        g.reserve(name);
    }

    // Embeddings: one initializer per table, one gather (and pooling) per feature.
    let tables: Vec<String> = emb
        .tables()
        .iter()
        .map(|t| {
            let rows = table_rows(t);
            g.const_f32(
                &format!("tables.{}", t.name()),
                &[t.len() + 2, t.dim()],
                rows,
            )
        })
        .collect();
    let mut columns = Vec::new();
    let mut inputs = Vec::new();
    for f in emb.fields() {
        let table = &tables[f.table];
        let col = g.scoped(&format!("fields.{}", f.name), |g| match f.pooling {
            None => {
                inputs.push(ValueInfo {
                    name: f.name.clone(),
                    elem: ElemType::Int64,
                    dims: vec![None],
                });
                g.gather(table, &f.name, 0)
            }
            Some(pooling) => {
                inputs.push(ValueInfo {
                    name: f.name.clone(),
                    elem: ElemType::Int64,
                    dims: vec![None, None],
                });
                let rows = g.gather(table, &f.name, 0);
                let sum = g.reduce_sum(&rows, 1, false);
                if pooling == mfh_embedding::Pooling::Mean {
                    // Divide by the list's length: its entries other than the -1 padding.
                    let zero = g.const_i64("zero", &[], vec![0]);
                    let pad = g.op("Less", &[&f.name, &zero], vec![]);
                    let real = g.op("Not", &[&pad], vec![]);
                    let real = g.op("Cast", &[&real], vec![("to", Attr::Int(1))]);
                    let len = g.reduce_sum(&real, 1, true);
                    let one = g.const_f32("one", &[], vec![1.0]);
                    let len = g.op("Max", &[&len, &one], vec![]);
                    g.op("Div", &[&sum, &len], vec![])
                } else {
                    sum
                }
            }
        });
        columns.push(col);
    }
    let n_dense = state.n_dense;
    if n_dense > 0 {
        inputs.push(ValueInfo {
            name: dense_in.clone(),
            elem: ElemType::Float,
            dims: vec![None, Some(n_dense)],
        });
        columns.push(dense_in.clone());
    }
    inputs.push(ValueInfo {
        name: cell_in.clone(),
        elem: ElemType::Int64,
        dims: vec![None],
    });
    if columns.is_empty() {
        bail!("the model has no inputs (no embedded and no numeric feature)");
    }
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let x = g.concat(&refs, 1);

    let logits = state
        .net()
        .export(&mut g, &x, &cell_in)
        .map_err(|e| anyhow!("cannot export model `{}`: {e}", m.meta.model_name))?;
    let scores = g.scoped("scores", |g| score_head(g, m, &logits, &cell_in));
    g.op_into("Identity", &[&scores], vec![], "scores");
    g.op_into("Identity", &[&logits], vec![], "logits");
    let outputs = vec![
        ValueInfo {
            name: "scores".into(),
            elem: ElemType::Float,
            dims: vec![None, Some(nb)],
        },
        ValueInfo {
            name: "logits".into(),
            elem: ElemType::Float,
            dims: vec![None, Some(n_tasks)],
        },
    ];
    let doc = format!(
        "mfh model `{}` ({}); inputs and outputs: see the .io.json beside this file",
        m.meta.model_name,
        m.dir.display()
    );
    let bytes = onnx::encode_model(&g, &m.meta.model_name, &doc, &inputs, &outputs);

    let (rows_dir, io_json) = sidecar_paths(onnx);
    let mut stage = bundle::Stage::new(onnx)?;
    let table_files = write_row_maps(m, &mut stage)?;
    let io = io_description(
        m,
        onnx,
        &rows_dir,
        &table_files,
        &inputs,
        &dense_in,
        &cell_in,
    );
    let done = stage.commit(bytes, io)?;
    Ok(ExportSummary {
        onnx: onnx.to_path_buf(),
        io_json,
        rows_dir,
        onnx_bytes: done.onnx_bytes,
        nodes: g.nodes().len(),
        tables: emb
            .tables()
            .iter()
            .map(|t| (t.name().to_string(), t.len()))
            .collect(),
        bundle: done.id,
        other_temps: done.other_temps,
    })
}

/// `[n, behaviours]` from the logits: each row's own cell's logit per behaviour, then
/// what `GridLoss::predict` does with it (sigmoid, the funnel product, the correction
/// for negative down-sampling; regression behaviours stay raw).
fn score_head(g: &mut GraphBuilder, m: &LoadedModel, logits: &str, cell: &str) -> String {
    let grid = &m.meta.grid;
    let spec = m.state.loss.spec();
    let (nb, nc) = (grid.n_behaviours() as i64, grid.n_cells() as i64);
    let by_cell = g.reshape(logits, &[-1, nb, nc]);
    let cell3 = g.reshape(cell, &[-1, 1, 1]);
    let shape = g.const_i64("expand", &[3], vec![1, nb, 1]);
    let index = g.op("Expand", &[&cell3, &shape], vec![]);
    let own = g.op(
        "GatherElements",
        &[&by_cell, &index],
        vec![("axis", Attr::Int(2))],
    );
    let z = g.reshape(&own, &[-1, nb]);
    let p = g.sigmoid(&z);
    let parents = funnel_parents(m);
    let mut cols = Vec::new();
    for b in 0..nb as usize {
        let col = g.scoped(&grid.behaviours[b], |g| {
            if !spec.binary[b] {
                return g.slice_cols(&z, b, b + 1);
            }
            let mut prob = g.slice_cols(&p, b, b + 1);
            let mut k = b;
            while let Some(a) = parents[k] {
                let pa = g.slice_cols(&p, a, a + 1);
                prob = g.mul(&prob, &pa);
                k = a;
            }
            let r = spec.negative_rate(b);
            if r < 1.0 {
                // p / (p + (1 − p) / r): the odds of a model trained on negatives kept at
                // rate r are r times too high.
                let one = g.const_f32("one", &[], vec![1.0]);
                let inv_r = g.const_f32("inv_rate", &[], vec![(1.0 / r) as f32]);
                let q = g.op("Sub", &[&one, &prob], vec![]);
                let q = g.mul(&q, &inv_r);
                let den = g.add(&prob, &q);
                prob = g.op("Div", &[&prob, &den], vec![]);
            }
            prob
        });
        cols.push(col);
    }
    let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    g.concat(&refs, 1)
}

/// Stages `FILE.rows/TABLE.csv` (`key,row`, by row) for every table; returns the file
/// name of each.
fn write_row_maps(m: &LoadedModel, stage: &mut bundle::Stage) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for (i, t) in m.state.emb.tables().iter().enumerate() {
        let ids = t.slots_in_order();
        let mut text = String::with_capacity(ids.len() * 28 + 8);
        text.push_str("key,row\n");
        for (slot, id) in ids {
            text.push_str(&format!("{id},{}\n", slot + 1));
        }
        let name = table_file(i, t.name());
        stage.write_row_map(&name, text.as_bytes())?;
        files.push(name);
    }
    Ok(files)
}

fn dtype(e: ElemType) -> &'static str {
    match e {
        ElemType::Float => "float32",
        ElemType::Int64 => "int64",
    }
}

fn shape(v: &ValueInfo) -> Value {
    v.dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Some(s) => json!(s),
            None if i == 0 => json!("n"),
            None => json!("l"),
        })
        .collect()
}

/// The row index of every bucket of a bucketised feature (0 for a bucket with no row).
fn bucket_rows(t: &EmbeddingTable, n_buckets: usize) -> Vec<u32> {
    (0..n_buckets)
        .map(|b| {
            let key =
                xxhash_rust::xxh3::xxh3_64_with_seed(&(b as u64).to_le_bytes(), BUCKET_HASH_SEED);
            t.lookup_eval(key).map_or(0, |s| s + 1)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // the pieces of one description
fn io_description(
    m: &LoadedModel,
    onnx: &Path,
    rows_dir: &Path,
    table_files: &[String],
    inputs: &[ValueInfo],
    dense_in: &str,
    cell_in: &str,
) -> Value {
    let emb = &m.state.emb;
    let grid = &m.meta.grid;
    let file_name = |p: &Path| {
        p.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let rows_name = file_name(rows_dir);
    let feature = |name: &str| m.config.features.iter().find(|f| f.name() == name);
    let mut ins = Vec::new();
    for v in inputs {
        let mut d = json!({"name": v.name, "dtype": dtype(v.elem), "shape": shape(v)});
        if let Some(f) = emb.fields().iter().find(|f| f.name == v.name) {
            let t = &emb.tables()[f.table];
            d["table"] = json!(t.name());
            d["rows"] = json!(format!("{rows_name}/{}", table_files[f.table]));
            d["feature"] = json!(feature(&f.name));
            d["caller"] = json!(match f.pooling {
                None => "the row of the feature's key in `rows`, 0 for a key that has none",
                Some(_) => "per row, the rows of the list's keys in `rows` (0 for a key that has none), padded to the batch's longest list with -1 (a list with no key: one -1)",
            });
            if let Some(mfh_config::FeatureConfig::Bucketized { boundaries, .. }) = feature(&f.name)
            {
                let bounds = match m.transforms.features.get(&f.name) {
                    Some(mfh_data::FittedFeature::Buckets { boundaries }) => boundaries.clone(),
                    _ => boundaries.clone(),
                };
                d["bucket_rows"] = json!(bucket_rows(t, bounds.len() + 1));
                d["boundaries"] = json!(bounds);
            }
        } else if v.name == dense_in {
            let cols: Vec<Value> = m
                .meta
                .dense_features
                .iter()
                .map(|name| {
                    json!({
                        "feature": feature(name),
                        "fitted": m.transforms.features.get(name),
                    })
                })
                .collect();
            d["columns"] = json!(cols);
            d["caller"] = json!("each numeric feature after its transforms, in this order: log1p is ln(1 + max(x, 0)), standardize is (x - fitted.mean) / fitted.std; a missing value is the feature's fill");
        } else if v.name == cell_in {
            d["cells"] = json!(grid.cell_names());
            d["facets"] = json!(m.config.facets);
            d["caller"] = json!("the row's facet cell: the index in `cells` (facets mixed radix, the first most significant)");
        }
        ins.push(d);
    }
    let parents = funnel_parents(m);
    let spec = m.state.loss.spec();
    let behaviours: Vec<Value> = grid
        .behaviours
        .iter()
        .enumerate()
        .map(|(b, name)| {
            json!({
                "name": name,
                "kind": if spec.binary[b] { "probability" } else { "value" },
                "funnel_parent": parents[b].map(|a| grid.behaviours[a].clone()),
                "negative_rate": spec.negative_rate(b),
            })
        })
        .collect();
    let tasks: Vec<String> = (0..grid.n_tasks()).map(|t| grid.task_name(t)).collect();
    json!({
        "format": "mfh-onnx 1",
        "onnx": file_name(onnx),
        "opset": mfh_nn::graph::OPSET,
        "model": m.meta.model_name,
        "model_dir": m.dir.display().to_string(),
        "step": m.meta.step,
        "keys": {
            "hash": "xxh3_64_with_seed(value, seed) of the trimmed raw value; a decimal integer written with a zero fraction (12.0) hashes as the integer (12)",
            "seed": format!("{ID_HASH_SEED:#018x}"),
            "missing": mfh_data::MISSING_ID.to_string(),
            "bucket": "xxh3_64_with_seed(bucket index as 8 little-endian bytes, bucket_seed); bucket index = number of boundaries below the (log1p'd) value",
            "bucket_seed": format!("{BUCKET_HASH_SEED:#018x}"),
            "unknown_row": 0,
            "pad_row": -1,
        },
        "inputs": ins,
        "outputs": [
            {
                "name": "scores", "dtype": "float32", "shape": ["n", grid.n_behaviours()],
                "columns": behaviours,
                "caller": "one score per behaviour from the row's own cell's heads, as `mfh predict` writes them",
            },
            {
                "name": "logits", "dtype": "float32", "shape": ["n", grid.n_tasks()],
                "columns": tasks,
                "caller": "every task's logit on every row (task = behaviour × cells + cell)",
            },
        ],
    })
}
