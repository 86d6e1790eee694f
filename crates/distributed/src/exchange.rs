//! The parts of a step every collective pass over batches shares (training and
//! evaluation): the network input assembled from the shards' rows, and telling the
//! other ranks, in the id exchange they make next, that this rank could not read.

use crate::comm::Comm;
use crate::shard::ShardedEmbeddings;
use mfh_data::Batch;
use mfh_embedding::{MultiIds, SparseInput};

/// Runs the embedding forward for `batch` on the shards and fills the network input `x`
/// (embeddings, then numeric features); `totals` are summed over the ranks on the way
/// ([`ShardedEmbeddings::forward_summing`]). The batch's multi-valued ids are borrowed
/// into `multi` until [`give_back`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    comm: &mut dyn Comm,
    shard: &mut ShardedEmbeddings,
    n_dense: usize,
    batch: &mut Batch,
    multi: &mut Vec<MultiIds>,
    x: &mut Vec<f32>,
    train: bool,
    totals: &mut [u64],
) {
    let w = shard.layer.width();
    let n_in = w + n_dense;
    x.clear();
    x.resize(batch.n * n_in, 0.0);
    multi.clear();
    for m in &mut batch.multi {
        multi.push(MultiIds {
            offsets: std::mem::take(&mut m.offsets),
            ids: std::mem::take(&mut m.ids),
        });
    }
    let input = SparseInput {
        n: batch.n,
        single: &batch.single,
        multi,
    };
    shard.forward_summing(comm, &input, train, x, n_in, totals);
    if n_dense > 0 {
        for (row, d) in x
            .chunks_exact_mut(n_in)
            .zip(batch.dense.chunks_exact(n_dense))
        {
            row[w..].copy_from_slice(d);
        }
    }
}

pub(crate) fn give_back(batch: &mut Batch, multi: &mut Vec<MultiIds>) {
    for (m, ids) in batch.multi.iter_mut().zip(multi.drain(..)) {
        m.offsets = ids.offsets;
        m.ids = ids.ids;
    }
}

/// Tells the other ranks, in the id exchange they make next, that this rank could not
/// read its rows (they then stop too), and returns the error. `layout` gives the empty
/// batch's shape.
pub(crate) fn fail_exchange(
    comm: &mut dyn Comm,
    shard: &mut ShardedEmbeddings,
    layout: &mfh_data::FieldLayout,
    e: mfh_data::DataError,
) -> anyhow::Error {
    let empty = vec![
        MultiIds {
            offsets: vec![0],
            ids: Vec::new()
        };
        layout.multi.len()
    ];
    let input = SparseInput {
        n: 0,
        single: &[],
        multi: &empty,
    };
    let mut totals = [0, 1];
    shard.forward_summing(comm, &input, false, &mut [], 0, &mut totals);
    anyhow::Error::new(e).context(format!("rank {} could not read its rows", comm.rank()))
}

/// The error of a rank whose batch read fine when `failed` others' did not.
pub(crate) fn others_failed(failed: u64) -> anyhow::Error {
    anyhow::anyhow!("{failed} other rank(s) could not read their rows of this batch (see their error); stopping")
}
