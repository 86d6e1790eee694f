//! The model-folder loader: a real folder written by `mfh train` (a tiny MMoE or MFH model
//! over a 40-row log, kept in `fuzz/model-base/`) with one of its files replaced by the
//! fuzz bytes, loaded by `mfh_artifact::load_model` (what `mfh eval`, `predict`, `inspect` and
//! the server run). So that corruption reaches the parsers behind the checksums, the
//! harness re-seals what it can: `dense.bin`'s trailing checksum and `model.json`'s
//! `checksums` (when model.json is JSON with that object).
//!
//! Input: a selector byte, then the bytes of one file.
//! - bits 0–2: the file replaced: 0 model.json, 1 config.toml, 2 transforms.json,
//!   3 dense.bin without its trailing checksum (appended here), 4 embeddings.bin,
//!   5 dense.bin as given, 6–7 none (the body is ignored)
//! - bit 3: the base folder: MFH (else MMoE)
//! - bit 4: leave model.json's checksums as they are
//!
//! Properties beyond "no panic": a folder that loads can score a batch laid out as its
//! `model.json` says (what the reader of a matching config produces).

use mfh_data::{Batch, MultiColumn};
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

pub const FILES: [&str; 5] = [
    "model.json",
    "config.toml",
    "transforms.json",
    "dense.bin",
    "embeddings.bin",
];

/// The base folders' files, in [`FILES`] order.
pub fn base(mfh: bool) -> [&'static [u8]; 5] {
    if mfh {
        [
            include_bytes!("../model-base/mfh/model.json"),
            include_bytes!("../model-base/mfh/config.toml"),
            include_bytes!("../model-base/mfh/transforms.json"),
            include_bytes!("../model-base/mfh/dense.bin"),
            include_bytes!("../model-base/mfh/embeddings.bin"),
        ]
    } else {
        [
            include_bytes!("../model-base/mmoe/model.json"),
            include_bytes!("../model-base/mmoe/config.toml"),
            include_bytes!("../model-base/mmoe/transforms.json"),
            include_bytes!("../model-base/mmoe/dense.bin"),
            include_bytes!("../model-base/mmoe/embeddings.bin"),
        ]
    }
}

fn hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxh3_64(bytes))
}

/// The folder's five files for `data`, checksums re-sealed as the selector says.
pub fn files(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (&sel, body) = data.split_first()?;
    let mut files: Vec<Vec<u8>> = base(sel & 8 != 0).iter().map(|f| f.to_vec()).collect();
    match sel & 7 {
        0 => files[0] = body.to_vec(),
        1 => files[1] = body.to_vec(),
        2 => files[2] = body.to_vec(),
        3 => {
            let mut d = body.to_vec();
            d.extend_from_slice(&xxh3_64(body).to_le_bytes());
            files[3] = d;
        }
        4 => files[4] = body.to_vec(),
        5 => files[3] = body.to_vec(),
        _ => {}
    }
    if sel & 16 == 0 {
        if let Ok(serde_json::Value::Object(mut meta)) =
            serde_json::from_slice::<serde_json::Value>(&files[0])
        {
            if let Some(serde_json::Value::Object(sums)) = meta.get_mut("checksums") {
                sums.insert("dense.bin".into(), hex(&files[3]).into());
                sums.insert("embeddings.bin".into(), hex(&files[4]).into());
                files[0] = serde_json::to_vec_pretty(&meta).expect("a JSON value serialises");
            }
        }
    }
    Some(files)
}

/// Writes the folder for `data` into `dir` and loads it; `Err` is the loader's message.
pub fn run(dir: &Path, data: &[u8]) -> Result<(), String> {
    let Some(files) = files(data) else {
        return Ok(());
    };
    for (name, bytes) in FILES.iter().zip(&files) {
        std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())?;
    }
    let mut model = mfh_artifact::load_model(dir).map_err(|e| format!("{e:#}"))?;
    let meta = &model.meta;
    let n = 3;
    let mut batch = Batch {
        n,
        single: (0..n * meta.single_fields.len())
            .map(|i| i as u64)
            .collect(),
        multi: meta
            .multi_fields
            .iter()
            .map(|_| MultiColumn {
                offsets: vec![0, 1, 1, 3],
                ids: vec![7, 8, 9],
            })
            .collect(),
        dense: vec![0.5; n * meta.dense_features.len()],
        labels: vec![f32::NAN; n * meta.grid.n_behaviours()],
        cells: (0..n)
            .map(|i| (i % meta.grid.n_cells().max(1)) as u32)
            .collect(),
        groups: vec![0; n],
        rows: (0..n as u64).collect(),
        ..Batch::default()
    };
    let tasks = meta.grid.n_tasks();
    let logits = model.state.forward(&mut batch);
    assert_eq!(logits.len(), n * tasks, "one logit per row and task");
    Ok(())
}
