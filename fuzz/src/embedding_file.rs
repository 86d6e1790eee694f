//! The embedding file loaders, `EmbeddingLayer::load` (a model folder's `embeddings.bin`)
//! and `EmbeddingTable::load` (each table in it, and checkpoints). Every header and table
//! ends in an xxh3-64 checksum; so that corruption reaches the parsing behind it, most
//! modes seal the fuzzed part with a fresh checksum. The base layer is the MMoE model's
//! `embeddings.bin` from `fuzz/model-base/`.
//!
//! Input: a mode byte (bits 0–1), then:
//! - 0: a whole layer file, as given
//! - 1: a table without its checksum (appended here), read by `EmbeddingTable::load`
//! - 2: a layer header without its checksum, followed by the base file's tables
//! - 3: the base layer header, then the fuzzed first table (checksum appended), then the
//!   base file's other tables
//!
//! Properties beyond "no panic": a table that loads saves, loads again and saves to the
//! same bytes.

use mfh_embedding::{EmbeddingLayer, EmbeddingTable};
use xxhash_rust::xxh3::xxh3_64;

pub const BASE: &[u8] = include_bytes!("../model-base/mmoe/embeddings.bin");

/// Length of a layer header (with its checksum) at the start of `bytes`, if well formed.
pub fn layer_header_len(bytes: &[u8]) -> Option<usize> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let n_fields = u32_at(16)? as usize;
    let mut pos = 20;
    for _ in 0..n_fields {
        pos += 4 + u32_at(pos)? as usize + 4 + 4 + 1;
    }
    Some(pos + 8).filter(|&end| end <= bytes.len())
}

/// Length of the table (with its checksum) at the start of `bytes`, if it reads.
fn table_len(bytes: &[u8]) -> Option<usize> {
    let mut r = bytes;
    EmbeddingTable::load(&mut r).ok()?;
    Some(bytes.len() - r.len())
}

fn sealed(body: &[u8]) -> Vec<u8> {
    let mut v = body.to_vec();
    v.extend_from_slice(&xxh3_64(body).to_le_bytes());
    v
}

/// The file `data` describes and whether it is a single table.
pub fn file(data: &[u8]) -> Option<(Vec<u8>, bool)> {
    let (&mode, body) = data.split_first()?;
    let header = layer_header_len(BASE).expect("the base layer parses");
    let tables = &BASE[header..];
    Some(match mode & 3 {
        0 => (body.to_vec(), false),
        1 => (sealed(body), true),
        2 => {
            let mut v = sealed(body);
            v.extend_from_slice(tables);
            (v, false)
        }
        _ => {
            let first = table_len(tables).expect("the base tables parse");
            let mut v = BASE[..header].to_vec();
            v.extend_from_slice(&sealed(body));
            v.extend_from_slice(&tables[first..]);
            (v, false)
        }
    })
}

/// Loads the file `data` describes; `Err` is the loader's message.
pub fn run(_dir: &std::path::Path, data: &[u8]) -> Result<(), String> {
    let Some((bytes, is_table)) = file(data) else {
        return Ok(());
    };
    if is_table {
        let t = EmbeddingTable::load(&mut &bytes[..])?;
        let mut saved = Vec::new();
        t.save(&mut saved).expect("saving to memory");
        let again = EmbeddingTable::load(&mut &saved[..])
            .unwrap_or_else(|e| panic!("a loaded table does not load after saving: {e}"));
        let mut saved2 = Vec::new();
        again.save(&mut saved2).expect("saving to memory");
        assert!(
            saved == saved2,
            "a table changes when saved and loaded again"
        );
    } else {
        let layer = EmbeddingLayer::load(&mut &bytes[..])?;
        let _ = layer.width();
        let mut saved = Vec::new();
        layer.save(&mut saved).expect("saving to memory");
        EmbeddingLayer::load(&mut &saved[..])
            .unwrap_or_else(|e| panic!("a loaded layer does not load after saving: {e}"));
    }
    Ok(())
}
