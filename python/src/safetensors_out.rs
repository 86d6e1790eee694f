//! `Model.save_safetensors`: the dense weights (and optionally the embedding tables) as a
//! safetensors file, written to a temporary file, synced and renamed into place.

use anyhow::{Context, Result};
use mfh_embedding::EmbeddingTable;
use safetensors::tensor::{Dtype, TensorView};
use std::io::Write;
use std::path::Path;

/// Writes `weights` (name, flat values) and, when given, every table's keys and rows.
pub fn write(
    model_name: &str,
    weights: Vec<(String, Vec<f32>)>,
    tables: Option<&[EmbeddingTable]>,
    path: &Path,
) -> Result<()> {
    let mut named: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = weights
        .into_iter()
        .map(|(k, v)| {
            let n = v.len();
            (
                k,
                Dtype::F32,
                vec![n],
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    if let Some(tables) = tables {
        for t in tables {
            let ids = t.slots_in_order();
            let keys: Vec<u8> = ids.iter().flat_map(|(_, id)| id.to_le_bytes()).collect();
            let rows: Vec<u8> = ids
                .iter()
                .flat_map(|(slot, _)| t.row(*slot).iter().flat_map(|x| x.to_le_bytes()))
                .collect();
            let n = ids.len();
            named.push((
                format!("embeddings.{}.keys", t.name()),
                Dtype::U64,
                vec![n],
                keys,
            ));
            named.push((
                format!("embeddings.{}.rows", t.name()),
                Dtype::F32,
                vec![n, t.dim()],
                rows,
            ));
        }
    }
    let views: Vec<(String, TensorView<'_>)> = named
        .iter()
        .map(|(k, dt, shape, bytes)| {
            TensorView::new(*dt, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| anyhow::anyhow!("tensor `{k}`: {e}"))
        })
        .collect::<Result<_>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "mfh".to_string());
    meta.insert("model".to_string(), model_name.to_string());
    let bytes = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| anyhow::anyhow!("cannot serialise: {e}"))?;
    atomic_write(path, &bytes)
}

/// Writes `bytes` to `path` through a synced temporary file in the same folder.
fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.part", name.to_string_lossy()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
