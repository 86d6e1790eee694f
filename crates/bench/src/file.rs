//! The MFHBENC2 file: a workload's raw batches as bytes that mfh and the PyTorch peers
//! (`bench/peers/*.py`) both read.
//!
//! Layout (little-endian): `MFHBENC2`, then u64 batches, batch size, fields, dense,
//! behaviours, user groups, item groups, vocab; then per batch: ids u32 [batch × fields],
//! dense f32 [batch × dense], labels f32 [batch × behaviours], user group u32 [batch],
//! item group u32 [batch].

use crate::workload::{RawData, Workload, BATCH, DENSE, FIELDS};
use anyhow::{anyhow, Result};
use std::path::Path;

/// The first 8 bytes of every file.
pub const MAGIC: &[u8; 8] = b"MFHBENC2";
const HEADER: usize = 8 + 8 * 8;

/// Writes `d` to `path` whole.
pub fn write_file(d: &RawData, path: &Path) -> Result<()> {
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
    std::fs::write(path, out).map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))
}

/// Reads a file written for workload `w`; one of another workload, a truncated file or a
/// group index out of range is an error naming the file and the `mfh bench gen` command
/// that writes the right one.
pub fn read_file(path: &Path, w: Workload) -> Result<RawData> {
    let b = std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    let bad = |why: String| {
        anyhow!(
            "{}: not a {} data file written by `mfh bench gen --workload {}`: {why}",
            path.display(),
            w.name(),
            w.arg_name()
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
    let mut d = RawData::empty(w, h[0], h[7] as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two batches of workload `w` with every value drawn from the row number.
    fn rows(w: Workload) -> RawData {
        let mut d = RawData::empty(w, 2, 1000);
        for r in 0..2 * BATCH {
            d.ids
                .extend((0..FIELDS).map(|f| ((r * 7 + f) % 1000) as u32));
            d.dense.extend((0..DENSE).map(|j| (r + j) as f32 * 0.25));
            d.labels
                .extend((0..d.behaviours).map(|b| ((r + b) % 2) as f32));
            d.user.push((r % d.user_groups) as u32);
            d.item.push((r / 3 % d.item_groups) as u32);
        }
        d
    }

    #[test]
    fn a_written_file_reads_back_the_same_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.bin");
        let d = rows(Workload::MfhRef2x2);
        write_file(&d, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(
            bytes.len(),
            HEADER + 2 * BATCH * (FIELDS + DENSE + 3 + 2) * 4
        );
        assert_eq!(read_file(&path, Workload::MfhRef2x2).unwrap(), d);
    }

    #[test]
    fn another_workloads_or_a_cut_file_is_refused_with_the_command_to_run() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.bin");
        write_file(&rows(Workload::MfhRef2x2), &path).unwrap();
        let e = read_file(&path, Workload::MmoeRef).unwrap_err().to_string();
        assert!(
            e.contains("--workload mmoe-ref") && e.contains("shape"),
            "{e}"
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let e = read_file(&path, Workload::MfhRef2x2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not 2 batches"), "{e}");
        std::fs::write(&path, b"MFHBENC1").unwrap();
        let e = read_file(&path, Workload::MfhRef2x2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no MFHBENC2 header"), "{e}");
    }
}
