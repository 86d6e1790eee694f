//! Exact evaluation across ranks: each rank reads (striped where the config allows, see
//! [`crate::reader`]) and scores its slice of every batch of the split, then every rank's predictions, labels, cells and groups are gathered and put back in
//! file order, so AUC and GAUC are computed over the whole split (not averaged over
//! ranks) and every rank reports the same figures.

use crate::comm::Comm;
use crate::exchange::{assemble, fail_exchange, give_back, others_failed};
use crate::reader::{read_mode, RankReader};
use crate::shard::ShardedEmbeddings;
use anyhow::Result;
use mfh_artifact::{EvalResult, ModelState, Predictions};
use mfh_data::{Batch, Pipeline, StreamOptions};
use std::sync::Arc;

/// Scores every row of `split` (collective).
pub fn evaluate(
    state: &mut ModelState,
    shard: &mut ShardedEmbeddings,
    comm: &mut dyn Comm,
    pipeline: &Arc<Pipeline>,
    split: &str,
    batch_size: usize,
) -> Result<EvalResult> {
    let (rank, size) = (comm.rank(), comm.size());
    let use_groups = pipeline.config().data.gauc_column.is_some();
    let nb = state.grid.n_behaviours();
    let mut mine = Predictions {
        n_behaviours: nb,
        ..Default::default()
    };
    let mut rows_idx: Vec<u64> = Vec::new();
    let (mut x, mut multi, mut preds) = (Vec::new(), Vec::new(), Vec::new());
    let mut batch = Batch::default();
    let mut sums = [0.0f64; 3];
    let opts = StreamOptions::in_order(batch_size);
    let mode = read_mode(pipeline, split).0;
    let mut reader = RankReader::open(pipeline, split, opts, mode, rank, size)?;
    loop {
        match reader.next_into(&mut batch) {
            None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(fail_exchange(comm, shard, pipeline.layout(), e)),
        }
        // Same totals as a training step's: [denominator (unused), ranks that failed].
        let mut totals = [0, 0];
        assemble(
            comm,
            shard,
            state.n_dense,
            &mut batch,
            &mut multi,
            &mut x,
            false,
            &mut totals,
        );
        give_back(&mut batch, &mut multi);
        if totals[1] > 0 {
            return Err(others_failed(totals[1]));
        }
        if batch.n == 0 {
            continue;
        }
        let logits = state
            .net_mut()
            .forward(&x, &batch.cells, batch.n, false)
            .to_vec();
        let lv = state.eval_loss(&batch, &logits);
        sums[0] += lv.per_task.iter().map(|(s, _)| s).sum::<f64>();
        sums[1] += lv.per_task.iter().map(|(_, c)| *c as f64).sum::<f64>();
        sums[2] += batch.n as f64;
        state.loss.predict(&logits, &batch.cells, &mut preds);
        mine.preds.extend_from_slice(&preds);
        mine.labels.extend_from_slice(&batch.labels);
        mine.cells.extend_from_slice(&batch.cells);
        mine.groups.extend_from_slice(&batch.groups);
        rows_idx.extend_from_slice(&batch.rows);
    }
    comm.all_reduce_sum_f64(&mut sums);
    let all = gather_in_order(comm, &mine, &rows_idx);
    Ok(EvalResult {
        report: all.report(&state.grid, split, use_groups, None),
        loss: if sums[1] > 0.0 {
            sums[0] / sums[1]
        } else {
            0.0
        },
        rows: sums[2] as u64,
    })
}

/// Every rank's predictions, sorted by data-row index (the one-process order).
fn gather_in_order(comm: &mut dyn Comm, mine: &Predictions, rows: &[u64]) -> Predictions {
    let nb = mine.n_behaviours;
    let rows = comm.all_gather_u64(rows);
    let preds = comm.all_gather_f32(&mine.preds);
    let labels = comm.all_gather_f32(&mine.labels);
    let cells: Vec<u64> = mine.cells.iter().map(|&c| c as u64).collect();
    let cells = comm.all_gather_u64(&cells);
    let groups = comm.all_gather_u64(&mine.groups);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i]);
    let mut out = Predictions {
        n_behaviours: nb,
        ..Default::default()
    };
    for i in order {
        out.preds.extend_from_slice(&preds[i * nb..(i + 1) * nb]);
        out.labels.extend_from_slice(&labels[i * nb..(i + 1) * nb]);
        out.cells.push(cells[i] as u32);
        out.groups.push(groups[i]);
    }
    out
}
