//! What a server needs of a model folder beyond the model itself: the main table's column
//! names and copies of the side tables (user and item attributes, KuaiRand's item
//! impression counts), so that requests are joined and transformed exactly as training
//! rows were, without the training data.
//!
//! Files: `serving.json` (the main header and, per side table, its copy's file name and
//! xxh3-64) and `tables/NAME.EXT` (the side tables, byte for byte). Written by
//! [`crate::model_dir::save_model`]; a folder without them (written by an older mfh)
//! serves from the data its config names.

use anyhow::{Context, Result};
use mfh_config::Config;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServingFiles {
    pub main_columns: Vec<String>,
    pub side_tables: Vec<ServedTable>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServedTable {
    pub name: String,
    /// Relative to the model folder.
    pub file: String,
    pub xxh3: String,
}

/// `serving.json` and the `tables/` copies, as (path in the model folder, bytes), for
/// [`crate::model_dir::save_model`] to write with the rest of the folder.
pub fn serving_files(cfg: &Config) -> Result<Vec<(String, Vec<u8>)>> {
    let main_columns = mfh_data::source_header(cfg)?;
    let mut out = Vec::new();
    let mut side_tables = Vec::new();
    for t in &cfg.data.side_tables {
        let bytes = mfh_data::store::read(&t.path).with_context(|| {
            format!("{}: cannot read side table `{}`", t.path.display(), t.name)
        })?;
        let src_name = t.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = src_name.split_once('.').map_or("csv", |(_, e)| e);
        let file = format!("tables/{}.{ext}", t.name);
        side_tables.push(ServedTable {
            name: t.name.clone(),
            file: file.clone(),
            xxh3: format!("{:016x}", xxh3_64(&bytes)),
        });
        out.push((file, bytes));
    }
    let files = ServingFiles {
        main_columns,
        side_tables,
    };
    out.push((
        "serving.json".into(),
        serde_json::to_string_pretty(&files)?.into_bytes(),
    ));
    Ok(out)
}
