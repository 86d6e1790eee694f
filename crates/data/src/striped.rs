//! Striped reading for data-parallel training: every rank walks the split's rows but
//! decodes only its share of each global batch.
//!
//! The batches must be the ones [`Pipeline::stream`] makes for a single process (same
//! shuffle buffer, seed and batch size), so that N ranks train on exactly what one
//! process would. Which rows form a batch depends only on which rows belong to the
//! split and on the seeded shuffle, not on the decoded values (when every row that
//! belongs to the split enters the pool: `on_error = "fail"` and no negative
//! down-sampling). So the pass here is cheap: read and split each line into cells, test
//! the split, keep the raw record in a pool that is shuffled exactly as the decoded pool
//! of [`Pipeline::stream`] is, and, per global batch, join and decode only the rows at
//! positions [`stripe_range`]`(n, rank, size)`, the contiguous slice a rank trains on.
//!
//! A decode error surfaces on the rank that owns the row, in the batch that holds it;
//! the caller has to tell the other ranks (the distributed trainer does, in the step's
//! id exchange). Where the pool's content depends on decoding (`on_error = "skip"`, or
//! negative down-sampling of this split), [`Pipeline::striping_blocker`] says why and the
//! caller reads whole batches instead.

use crate::batch::Batch;
use crate::decode::{Fitted, Row};
use crate::error::DataError;
use crate::pipeline::Pipeline;
use crate::record::Record;
use crate::stream::StreamOptions;
use crate::stream::{Background, Msg, ReadStats};
use crate::SplitMix;
use mfh_config::OnError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Instant;

/// The positions of a global batch of `n` rows that rank `rank` of `size` decodes and
/// trains on: the contiguous slice `n·rank/size .. n·(rank+1)/size` (slice sizes differ
/// by at most one).
pub fn stripe_range(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    n * rank / size..n * (rank + 1) / size
}

/// This rank's part of one global batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stripe {
    /// The decoded rows at positions [`stripe_range`]`(global_rows, rank, size)` of the
    /// global batch, in batch order.
    pub batch: Batch,
    /// Rows in the global batch (every rank's).
    pub global_rows: usize,
}

/// What a striped pass has done so far (readable while it runs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StripeCounts {
    /// Rows of the split the scan put into global batches (all ranks' rows).
    pub rows_scanned: u64,
    /// Rows this rank joined and decoded.
    pub rows_decoded: u64,
    /// Seconds reading, splitting cells, testing the split and pooling raw records.
    pub scan_s: f64,
    /// Seconds joining and decoding this rank's rows.
    pub decode_s: f64,
}

#[derive(Default)]
struct Counters {
    rows_scanned: AtomicU64,
    rows_decoded: AtomicU64,
    scan_ns: AtomicU64,
    decode_ns: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> StripeCounts {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StripeCounts {
            rows_scanned: s(&self.rows_scanned),
            rows_decoded: s(&self.rows_decoded),
            scan_s: s(&self.scan_ns) as f64 * 1e-9,
            decode_s: s(&self.decode_ns) as f64 * 1e-9,
        }
    }
}

/// This rank's stripes of a split's global batches, read on a background thread.
pub struct StripedStream {
    inner: Background<Stripe>,
    counters: Arc<Counters>,
}

/// A row of the split as read: its cells, source file and data-row index.
struct RawRow {
    rec: Record,
    file: usize,
    index: u64,
}

/// The reader thread's state: the raw pool and what turns it into stripes.
struct Striper<'a> {
    p: &'a Pipeline,
    fitted: Fitted,
    tx: SyncSender<Msg<Stripe>>,
    rank: usize,
    size: usize,
    batch_size: usize,
    shuffle: bool,
    rng: SplitMix,
    pool: Vec<RawRow>,
    /// Records of rows already decoded (or left to other ranks), kept for their buffers.
    spare: Vec<Record>,
    order: Vec<usize>,
    side: Vec<Option<u32>>,
    counters: Arc<Counters>,
    /// Start of the scan time not yet counted.
    mark: Instant,
    /// The files the scan reads (a pooled row's `file` indexes them).
    files: Vec<std::path::PathBuf>,
}

impl Pipeline {
    /// Why striped reading of `split` would not give the single-process batches, if it
    /// would not: the pool's content then depends on decoding every row.
    pub fn striping_blocker(&self, split: &str) -> Option<String> {
        if self.cfg.data.on_error == OnError::Skip {
            return Some(
                "`data.on_error = \"skip\"`: which rows fill a batch depends on which rows decode"
                    .into(),
            );
        }
        let sampling = split == self.cfg.train.train_split
            && self.cfg.behaviours.iter().any(|b| b.negative_rate() < 1.0);
        if sampling {
            return Some(
                "negative down-sampling: which rows fill a batch depends on their labels".into(),
            );
        }
        None
    }

    /// Starts reading `split` on a background thread as rank `rank` of `size`: the global
    /// batches are those of [`Pipeline::stream`] with the same options, and this rank
    /// decodes only its slice of each. Fails when [`Pipeline::striping_blocker`] names a
    /// reason.
    pub fn stream_striped(
        self: &Arc<Self>,
        split: &str,
        opts: StreamOptions,
        rank: usize,
        size: usize,
    ) -> Result<StripedStream, DataError> {
        if !self.splits.contains_key(split) {
            return Err(DataError::config(format!(
                "no split `{split}`; the config defines: {}",
                self.split_names().join(", ")
            )));
        }
        if size == 0 || rank >= size {
            return Err(DataError::config(format!(
                "striped reading: rank {rank} is not in a world of {size}"
            )));
        }
        if let Some(why) = self.striping_blocker(split) {
            return Err(DataError::config(format!(
                "split `{split}` cannot be read striped by rank: {why}"
            )));
        }
        let (tx, rx) = sync_channel(opts.prefetch.max(1));
        let counters = Arc::new(Counters::default());
        let p = Arc::clone(self);
        let split = split.to_string();
        let c = Arc::clone(&counters);
        let handle = std::thread::Builder::new()
            .name("mfh-striped-reader".into())
            .spawn(move || {
                let mut s = Striper {
                    p: &p,
                    fitted: p.fitted(),
                    tx: tx.clone(),
                    rank,
                    size,
                    batch_size: opts.batch_size.max(1),
                    shuffle: opts.shuffle_buffer > 0,
                    // The seed and draws of `Pipeline::stream`: the same permutation.
                    rng: SplitMix(opts.seed ^ 0x5eed_5eed),
                    pool: Vec::new(),
                    spare: Vec::new(),
                    order: Vec::new(),
                    side: Vec::new(),
                    counters: c,
                    mark: Instant::now(),
                    files: Vec::new(),
                };
                let hold = opts.shuffle_buffer.max(s.batch_size);
                let msg = match s.run(&split, hold) {
                    Ok(Some(stats)) => Msg::Done(stats),
                    Ok(None) => return,
                    Err(e) => Msg::Failed(e),
                };
                let _ = tx.send(msg);
            })
            .map_err(|e| DataError::config(format!("cannot start the reader thread: {e}")))?;
        Ok(StripedStream {
            inner: Background::new(rx, handle),
            counters,
        })
    }
}

impl Striper<'_> {
    /// Scans the split, emitting stripes whenever `hold` rows are pooled (then the rest
    /// at the end). `None` when the consumer hung up.
    fn run(&mut self, split: &str, hold: usize) -> Result<Option<ReadStats>, DataError> {
        let p = self.p;
        let compiled = &p.splits[split];
        let src = p.split_sources(split)?;
        self.files.clone_from(&src.files);
        let own = p.main_columns.len() - src.columns.len();
        let mut reader = src.reader(p.cfg.data.csv.clone(), own, Some(p.used_columns(own)));
        let mut rows_used = 0u64;
        while reader.advance()? {
            let row = Row {
                path: reader.path(),
                line: reader.line(),
                index: reader.row_index - 1,
                rec: &reader.record,
                side: &[],
                patch: &[],
            };
            // Only a split over a side-table column needs the join to decide membership.
            let in_split = if compiled.uses_side() {
                p.join(row.path, row.line, row.rec, &mut self.side)?;
                p.in_split(
                    compiled,
                    &Row {
                        side: &self.side,
                        ..row
                    },
                )?
            } else {
                p.in_split(compiled, &row)?
            };
            if !in_split {
                continue;
            }
            rows_used += 1;
            let mut rec = self.spare.pop().unwrap_or_default();
            rec.copy_from(&reader.record);
            self.pool.push(RawRow {
                rec,
                file: reader.file_idx,
                index: reader.row_index - 1,
            });
            if self.pool.len() >= hold && !self.drain(false)? {
                return Ok(None);
            }
        }
        if !self.drain(true)? {
            return Ok(None);
        }
        Ok(Some(ReadStats {
            rows_read: reader.row_index,
            files_read: reader.files_opened,
            rows_used,
            ..ReadStats::default()
        }))
    }

    /// Shuffles the pool as `Pipeline::stream` shuffles its decoded pool, emits every
    /// full global batch (all rows when `last`) as this rank's stripe and keeps the
    /// remainder, in shuffled order. `Ok(false)` when the consumer hung up.
    fn drain(&mut self, last: bool) -> Result<bool, DataError> {
        let (n, bs) = (self.pool.len(), self.batch_size);
        self.order.clear();
        self.order.extend(0..n);
        if self.shuffle {
            for i in (1..n).rev() {
                self.order.swap(i, self.rng.below(i + 1));
            }
        }
        let full = if last { n } else { n / bs * bs };
        let (ns, nm) = (self.p.layout.single.len(), self.p.layout.multi.len());
        for start in (0..full).step_by(bs) {
            let chunk = start..(start + bs).min(full);
            let mine = stripe_range(chunk.len(), self.rank, self.size);
            let t0 = Instant::now();
            add_ns(&self.counters.scan_ns, t0 - self.mark);
            let mut batch = Batch::with_layout(ns, nm);
            for k in mine.clone() {
                let raw = &self.pool[self.order[chunk.start + k]];
                let path = self.files[raw.file].as_path();
                let line = raw.rec.line();
                self.p.join(path, line, &raw.rec, &mut self.side)?;
                let row = Row {
                    path,
                    line,
                    index: raw.index,
                    rec: &raw.rec,
                    side: &self.side,
                    patch: &[],
                };
                self.p.decode_into(&row, &self.fitted, &mut batch)?;
            }
            let t1 = Instant::now();
            add_ns(&self.counters.decode_ns, t1 - t0);
            let c = &self.counters;
            c.rows_decoded
                .fetch_add(mine.len() as u64, Ordering::Relaxed);
            c.rows_scanned
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let stripe = Stripe {
                batch,
                global_rows: chunk.len(),
            };
            if self.tx.send(Msg::Item(stripe)).is_err() {
                return Ok(false);
            }
            // Time blocked on a full channel is the consumer's, not the scan's.
            self.mark = Instant::now();
        }
        let mut taken: Vec<Option<RawRow>> = self.pool.drain(..).map(Some).collect();
        for &i in &self.order[full..] {
            let r = taken[i].take().expect("a pool row is kept once");
            self.pool.push(r);
        }
        self.spare
            .extend(taken.into_iter().flatten().map(|r| r.rec));
        Ok(true)
    }
}

fn add_ns(a: &AtomicU64, d: std::time::Duration) {
    a.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
}

impl StripedStream {
    /// What the pass saw (rows read, rows of the split); available once it has ended.
    pub fn stats(&self) -> Option<&ReadStats> {
        self.inner.stats()
    }

    /// Rows scanned and decoded, and the time in each, so far (final once the stream
    /// has ended or been dropped).
    pub fn counts(&self) -> StripeCounts {
        self.counters.snapshot()
    }

    /// Stops the reader thread (it may have decoded batches ahead) and returns the final
    /// counts.
    pub fn close(mut self) -> StripeCounts {
        self.inner.stop();
        self.counters.snapshot()
    }
}

impl Iterator for StripedStream {
    type Item = Result<Stripe, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_item("striped reader")
    }
}
