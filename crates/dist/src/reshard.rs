//! Re-sharding a checkpoint on load: a run resumed on N' ranks from a checkpoint of N
//! ranks streams every `shard-R.bin` and keeps the rows (with their optimizer state)
//! whose id it owns now, `owner(id, N')`. Each shard is read row by row and checked
//! against the manifest's checksum, and every row must sit in the shard that wrote it.
//! What a rank holds is its new rows plus, while a shard is merged, that shard's share
//! of them; never a whole shard. Not here: the manifest and its checks
//! ([`crate::checkpoint`]).

use crate::shard::owner;
use anyhow::{anyhow, bail, Context, Result};
use mfh_embedding::EmbeddingLayer;
use std::io::Read;
use std::path::Path;
use xxhash_rust::xxh3::Xxh3Default;

/// Refuses a file whose xxh3-64 `got` is not the manifest's `want` (hex).
pub(crate) fn check_sum(path: &Path, want: &str, got: u64) -> Result<()> {
    if want != format!("{got:016x}") {
        bail!(
            "{}: checksum mismatch: the checkpoint is damaged",
            path.display()
        );
    }
    Ok(())
}

/// Passes a file's bytes on while hashing them, so a shard streamed row by row is
/// still checked against the manifest.
struct Hashing<R> {
    inner: R,
    hasher: Xxh3Default,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads `shard-R.bin` of a checkpoint written by `old_size` ranks, streaming it, and
/// checks it against its checksum. With `keep` (re-sharding), only the rows it accepts
/// are kept; every row must belong to shard R under `old_size`. Returns the layer and
/// the rows in the file.
pub(crate) fn read_shard(
    dir: &Path,
    checksums: &[String],
    old_size: usize,
    r: usize,
    mut keep: Option<&mut dyn FnMut(usize, u64) -> bool>,
) -> Result<(EmbeddingLayer, u64)> {
    let path = dir.join(format!("shard-{r}.bin"));
    let file =
        std::fs::File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut src = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        hasher: Xxh3Default::new(),
    };
    let (mut rows, mut misplaced) = (0u64, None);
    let layer = EmbeddingLayer::load_filtered(&mut src, &mut |t, id| {
        rows += 1;
        if owner(id, old_size) != r && misplaced.is_none() {
            misplaced = Some(id);
        }
        keep.as_mut().is_none_or(|keep| keep(t, id))
    })
    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    // Anything after the layer is damage too: it must be in the checksum.
    std::io::copy(&mut src, &mut std::io::sink())
        .with_context(|| format!("{}: cannot read", path.display()))?;
    check_sum(&path, &checksums[1 + r], src.hasher.digest())?;
    if let Some(id) = misplaced {
        bail!(
            "{}: id {id} does not belong to shard {r} of {old_size}: the checkpoint is inconsistent",
            path.display()
        );
    }
    Ok((layer, rows))
}

/// This rank's layer under a world of `size`, from a checkpoint written by `old_size`
/// ranks: each shard in turn is streamed and the rows with `owner(id, size) == rank`
/// kept, so at most this rank's rows plus one shard's share of them are held. Returns
/// the layer and the rows of the whole checkpoint.
pub(crate) fn reshard(
    dir: &Path,
    checksums: &[String],
    old_size: usize,
    rank: usize,
    size: usize,
) -> Result<(EmbeddingLayer, u64)> {
    let mut mine = |_: usize, id: u64| owner(id, size) == rank;
    let (mut layer, mut rows) = read_shard(dir, checksums, old_size, 0, Some(&mut mine))?;
    for r in 1..old_size {
        let (part, n) = read_shard(dir, checksums, old_size, r, Some(&mut mine))?;
        rows += n;
        check_layout(dir, &part, &layer)?;
        for (dst, src) in layer.tables_mut().iter_mut().zip(part.tables()) {
            for (id, slot) in src.ids() {
                if dst.lookup_eval(id).is_some() {
                    bail!(
                        "{}: id {id} of table `{}` is in two shards: the checkpoint is inconsistent",
                        dir.display(),
                        dst.name()
                    );
                }
                dst.insert_row(id, src.row(slot), src.row_state(slot));
            }
        }
    }
    Ok((layer, rows))
}

/// Refuses embedding tables or fields other than `want`'s (another config's).
pub(crate) fn check_layout(dir: &Path, got: &EmbeddingLayer, want: &EmbeddingLayer) -> Result<()> {
    let specs = |l: &EmbeddingLayer| -> Vec<mfh_embedding::TableSpec> {
        l.tables().iter().map(|t| t.spec().clone()).collect()
    };
    if got.fields() != want.fields() || specs(got) != specs(want) {
        bail!(
            "{}: the checkpoint's embedding tables or fields differ from this config's: it is not a checkpoint of this model",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mfh_embedding::{FieldSpec, Pooling, RowOptimizer, TableSpec};
    use xxhash_rust::xxh3::xxh3_64;

    fn empty() -> EmbeddingLayer {
        let adagrad = RowOptimizer::Adagrad {
            lr: 0.1,
            eps: 1e-8,
            initial_accumulator: 0.1,
        };
        let adam = RowOptimizer::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let spec = |name: &str, dim, optimizer| TableSpec {
            optimizer,
            init_scale: 0.1,
            seed: 11,
            ..TableSpec::new(name, dim)
        };
        EmbeddingLayer::new(
            vec![spec("users", 3, adagrad), spec("tags", 2, adam)],
            vec![
                FieldSpec::single("uid", 0, 3),
                FieldSpec::multi("tags", 1, 2, Pooling::Sum),
            ],
        )
        .unwrap()
    }

    /// A trained-looking layer: rows with updated values and optimizer state.
    fn whole() -> EmbeddingLayer {
        let mut l = empty();
        for (t, n) in [(0, 500u64), (1, 300)] {
            let table = &mut l.tables_mut()[t];
            let ids: Vec<u64> = (0..n)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let mut slots = Vec::new();
            table.lookup_train(&ids, &mut slots);
            let grads: Vec<f32> = (0..ids.len() * table.dim())
                .map(|k| ((k as f32) * 0.31).sin())
                .collect();
            table.apply_gradients(&slots, &grads, 1);
        }
        l
    }

    /// The rows of `whole` owned by `r` of `size`.
    fn part(whole: &EmbeddingLayer, r: usize, size: usize) -> EmbeddingLayer {
        let mut l = empty();
        for (dst, src) in l.tables_mut().iter_mut().zip(whole.tables()) {
            for (id, s) in src.ids().filter(|&(id, _)| owner(id, size) == r) {
                dst.insert_row(id, src.row(s), src.row_state(s));
            }
        }
        l
    }

    /// Writes `shards` as `shard-R.bin` files; the manifest's checksums.
    fn write(dir: &Path, shards: &[EmbeddingLayer]) -> Vec<String> {
        let mut sums = vec![String::new()];
        for (r, l) in shards.iter().enumerate() {
            let mut bytes = Vec::new();
            l.save(&mut bytes).unwrap();
            std::fs::write(dir.join(format!("shard-{r}.bin")), &bytes).unwrap();
            sums.push(format!("{:016x}", xxh3_64(&bytes)));
        }
        sums
    }

    /// Every (table, id) with its row and state, as bits.
    fn rows(l: &EmbeddingLayer) -> Vec<(usize, u64, Vec<u32>)> {
        let mut v = Vec::new();
        for (t, table) in l.tables().iter().enumerate() {
            for (id, s) in table.ids() {
                let bits = table.row(s).iter().chain(table.row_state(s));
                v.push((t, id, bits.map(|x| x.to_bits()).collect()));
            }
        }
        v.sort();
        v
    }

    #[test]
    fn every_row_lands_on_exactly_one_new_rank() {
        let tmp = tempfile::tempdir().unwrap();
        let all = whole();
        let want = rows(&all);
        assert_eq!(want.len(), 800);
        let sums = write(tmp.path(), &[part(&all, 0, 2), part(&all, 1, 2)]);
        for size in [1, 3, 4] {
            let mut union = Vec::new();
            for rank in 0..size {
                let (l, read) = reshard(tmp.path(), &sums, 2, rank, size).unwrap();
                assert_eq!(read, 800);
                check_layout(tmp.path(), &l, &empty()).unwrap();
                let mine = rows(&l);
                assert!(
                    mine.iter().all(|(_, id, _)| owner(*id, size) == rank),
                    "{size} ranks: rank {rank} holds a row it does not own"
                );
                assert!(size == 1 || mine.len() < 800, "rank {rank} of {size}");
                union.extend(mine);
            }
            union.sort();
            // Nothing lost, nothing duplicated, values and optimizer state bit for bit.
            assert_eq!(union, want, "{size} ranks");
        }
        // The same world size reads its own shard whole.
        let (l, _) = read_shard(tmp.path(), &sums, 2, 1, None).unwrap();
        assert_eq!(rows(&l), rows(&part(&all, 1, 2)));
    }

    #[test]
    fn damaged_or_misplaced_shards_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let all = whole();
        let sums = write(tmp.path(), &[part(&all, 0, 2), part(&all, 1, 2)]);
        // One flipped bit in a row of shard 1.
        let path = tmp.path().join("shard-1.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 20;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = reshard(tmp.path(), &sums, 2, 0, 3).unwrap_err().to_string();
        assert!(e.contains("shard-1.bin") && e.contains("checksum"), "{e}");
        // Shards swapped: rows in the wrong file.
        let sums = write(tmp.path(), &[part(&all, 1, 2), part(&all, 0, 2)]);
        let e = reshard(tmp.path(), &sums, 2, 0, 1).unwrap_err().to_string();
        assert!(e.contains("does not belong to shard 0 of 2"), "{e}");
        // A checksum that does not match the file.
        let mut sums = write(tmp.path(), &[part(&all, 0, 2), part(&all, 1, 2)]);
        sums[2] = "0000000000000000".into();
        let e = reshard(tmp.path(), &sums, 2, 0, 3).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }
}
