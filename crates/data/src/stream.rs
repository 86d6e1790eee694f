//! Streaming a split: rows are read, joined, filtered and decoded on a background thread
//! and arrive as batches through a bounded channel, optionally through a shuffle buffer.

use crate::batch::Batch;
use crate::decode::Row;
use crate::error::{DataError, SkipCounts};
use crate::memory::TableReader;
use crate::pipeline::Pipeline;
use crate::record::ColumnUse;
use crate::rows::RowReader;
use crate::SplitMix;
use mfh_config::OnError;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub batch_size: usize,
    /// Rows held and shuffled before batching (0 = file order).
    pub shuffle_buffer: usize,
    pub seed: u64,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
}

impl StreamOptions {
    pub fn in_order(batch_size: usize) -> Self {
        StreamOptions {
            batch_size,
            shuffle_buffer: 0,
            seed: 0,
            prefetch: 4,
        }
    }
}

/// What a pass over a split saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadStats {
    /// Data rows read from the sources (all splits).
    pub rows_read: u64,
    /// Source files opened (fewer than the sources when partition clauses prune).
    pub files_read: u64,
    /// Rows of this split that decoded and were used.
    pub rows_used: u64,
    pub skipped: SkipCounts,
    /// Train-split rows dropped by negative down-sampling (no label left).
    pub sampled_out: u64,
}

/// Walks the rows of `split`, calling `on_row` for each of them; `on_row` returns
/// `Ok(false)` to stop early. Row errors are fatal or counted, as the config says.
pub(crate) fn scan(
    p: &Pipeline,
    split: &str,
    on_row: impl FnMut(&Row) -> Result<bool, DataError>,
) -> Result<ReadStats, DataError> {
    scan_files(p, split, None, on_row)
}

/// [`scan`] over only the files at `files`' positions in the split's file list (all of
/// them when `None`; a split read from an in-memory table ignores it).
pub(crate) fn scan_files(
    p: &Pipeline,
    split: &str,
    files: Option<&[usize]>,
    mut on_row: impl FnMut(&Row) -> Result<bool, DataError>,
) -> Result<ReadStats, DataError> {
    let compiled = p.splits.get(split).ok_or_else(|| {
        DataError::config(format!(
            "no split `{split}`; the config defines: {}",
            p.splits.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let skip = p.cfg.data.on_error == OnError::Skip;
    let mut stats = ReadStats::default();
    // A split given as an in-memory table holds exactly its rows.
    let (mut reader, in_memory) = match p.tables.get(split) {
        Some(t) => {
            let missing = if p.missing_is_empty {
                &[][..]
            } else {
                p.missing.first().map_or(&[][..], |m| &m[..])
            };
            (
                Reader::Table(TableReader::new(
                    split,
                    t.clone(),
                    missing,
                    p.used_columns(p.main_columns.len())
                        .iter()
                        .map(|u| *u == ColumnUse::Number)
                        .collect(),
                )),
                true,
            )
        }
        None => (
            Reader::Files(Box::new(p.split_reader(split, files)?)),
            false,
        ),
    };
    let mut side = Vec::with_capacity(p.side.len());
    loop {
        let res = (|| -> Result<Option<bool>, DataError> {
            if !reader.advance()? {
                return Ok(None);
            }
            let (path, line, rec) = reader.current();
            let join = p.join(path, line, rec, &mut side);
            let row = Row {
                path,
                line,
                index: reader.rows_read() - 1,
                rec,
                side: &side,
                patch: &[],
            };
            // A row outside the split may fail to join without consequence, unless the
            // split itself reads a side-table column: then membership is unknown.
            if !in_memory {
                if compiled.uses_side() {
                    join.clone()?;
                }
                if !p.in_split(compiled, &row)? {
                    return Ok(Some(true));
                }
            }
            join?;
            let go = on_row(&row)?;
            stats.rows_used += 1;
            Ok(Some(go))
        })();
        match res {
            Ok(None) => break,
            Ok(Some(true)) => {}
            Ok(Some(false)) => break,
            Err(e) if skip && e.is_row_error() => stats.skipped.add(&e),
            Err(e) => return Err(e),
        }
    }
    stats.rows_read = reader.rows_read();
    if let Reader::Files(r) = &reader {
        stats.files_read = r.files_opened;
    }
    Ok(stats)
}

/// Rows from the sources' files or from a split's in-memory table.
enum Reader {
    Files(Box<RowReader>),
    Table(TableReader),
}

impl Reader {
    fn advance(&mut self) -> Result<bool, DataError> {
        match self {
            Reader::Files(r) => r.advance(),
            Reader::Table(r) => r.advance(),
        }
    }

    /// The current row's place (file or table, line or row) and cells.
    fn current(&self) -> (&std::path::Path, u64, &crate::record::Record) {
        match self {
            Reader::Files(r) => (r.path(), r.line(), &r.record),
            Reader::Table(r) => (r.path(), r.record.line(), &r.record),
        }
    }

    fn rows_read(&self) -> u64 {
        match self {
            Reader::Files(r) => r.row_index,
            Reader::Table(r) => r.rows_read(),
        }
    }
}

/// What a reader thread sends: an item (a batch, a stripe), then its statistics or an
/// error.
pub(crate) enum Msg<T> {
    Item(T),
    Done(ReadStats),
    Failed(DataError),
}

/// The receiving end of a reader thread: items until the thread reports its statistics
/// or an error; dropping it stops the thread (its sends fail) and waits for it.
pub(crate) struct Background<T> {
    rx: Receiver<Msg<T>>,
    handle: Option<JoinHandle<()>>,
    stats: Option<ReadStats>,
    finished: bool,
}

impl<T> Background<T> {
    pub(crate) fn new(rx: Receiver<Msg<T>>, handle: JoinHandle<()>) -> Self {
        Background {
            rx,
            handle: Some(handle),
            stats: None,
            finished: false,
        }
    }

    /// What the pass saw; available once the stream has ended.
    pub(crate) fn stats(&self) -> Option<&ReadStats> {
        self.stats.as_ref()
    }

    /// The next item; `thread` names the reader in the error if it vanished.
    pub(crate) fn next_item(&mut self, thread: &str) -> Option<Result<T, DataError>> {
        if self.finished {
            return None;
        }
        match self.rx.recv() {
            Ok(Msg::Item(b)) => Some(Ok(b)),
            Ok(Msg::Done(s)) => {
                self.stats = Some(s);
                self.finished = true;
                None
            }
            Ok(Msg::Failed(e)) => {
                self.finished = true;
                Some(Err(e))
            }
            Err(_) => {
                self.finished = true;
                Some(Err(DataError::config(format!(
                    "the {thread} thread stopped unexpectedly"
                ))))
            }
        }
    }

    /// Stops the reader thread and waits for it.
    pub(crate) fn stop(&mut self) {
        // Unblock the reader (its sends fail once `rx` is gone) and wait for it.
        let rx = std::mem::replace(&mut self.rx, sync_channel(1).1);
        drop(rx);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Batches of one split, decoded on a background thread.
pub struct BatchStream {
    inner: Background<Batch>,
}

impl Pipeline {
    /// Starts reading `split` on a background thread.
    pub fn stream(
        self: &Arc<Self>,
        split: &str,
        opts: StreamOptions,
    ) -> Result<BatchStream, DataError> {
        if !self.splits.contains_key(split) {
            return Err(DataError::config(format!(
                "no split `{split}`; the config defines: {}",
                self.split_names().join(", ")
            )));
        }
        let (tx, rx) = sync_channel(opts.prefetch.max(1));
        let p = Arc::clone(self);
        let split = split.to_string();
        let handle = std::thread::Builder::new()
            .name("mfh-reader".into())
            .spawn(move || {
                let bs = opts.batch_size.max(1);
                let hold = opts.shuffle_buffer.max(bs);
                let mut rng = SplitMix(opts.seed ^ 0x5eed_5eed);
                let (ns, nm) = (p.layout.single.len(), p.layout.multi.len());
                let mut pool = Batch::with_layout(ns, nm);
                let mut order: Vec<usize> = Vec::new();
                let shuffle = opts.shuffle_buffer > 0;
                // Emits full batches from the pool; keeps the remainder (all rows at the end).
                let mut drain = |pool: &mut Batch, last: bool| -> bool {
                    if !shuffle && pool.n == bs {
                        // In file order a full pool is the batch: hand it over as is.
                        let next = pool.empty_like();
                        let b = std::mem::replace(pool, next);
                        return tx.send(Msg::Item(b)).is_ok();
                    }
                    order.clear();
                    order.extend(0..pool.n);
                    if shuffle {
                        for i in (1..order.len()).rev() {
                            order.swap(i, rng.below(i + 1));
                        }
                    }
                    let full = if last { pool.n } else { pool.n / bs * bs };
                    for chunk in order[..full].chunks(bs) {
                        let mut b = Batch::with_layout(ns, nm);
                        b.extend_from(pool, chunk);
                        if tx.send(Msg::Item(b)).is_err() {
                            return false;
                        }
                    }
                    let mut rest = Batch::with_layout(ns, nm);
                    rest.extend_from(pool, &order[full..]);
                    *pool = rest;
                    true
                };
                let mut alive = true;
                let fitted = p.fitted();
                // Negative down-sampling applies to the train split only.
                let sampling = split == p.cfg.train.train_split
                    && p.cfg.behaviours.iter().any(|b| b.negative_rate() < 1.0);
                let sample_seed = p.cfg.train.seed ^ 0x6e65_6773;
                let mut sampled_out = 0u64;
                let res = scan(&p, &split, |row| {
                    p.decode_into(row, &fitted, &mut pool)?;
                    if sampling && !p.sample_negatives(&mut pool, sample_seed) {
                        sampled_out += 1;
                        return Ok(alive);
                    }
                    if pool.n >= hold {
                        alive = drain(&mut pool, false);
                    }
                    Ok(alive)
                });
                match res {
                    Ok(mut stats) => {
                        stats.rows_used -= sampled_out;
                        stats.sampled_out = sampled_out;
                        if alive && drain(&mut pool, true) {
                            let _ = tx.send(Msg::Done(stats));
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Failed(e));
                    }
                }
            })
            .map_err(|e| DataError::config(format!("cannot start the reader thread: {e}")))?;
        Ok(BatchStream {
            inner: Background::new(rx, handle),
        })
    }
}

impl BatchStream {
    /// What the pass saw; available once the stream has ended.
    pub fn stats(&self) -> Option<&ReadStats> {
        self.inner.stats()
    }
}

impl Iterator for BatchStream {
    type Item = Result<Batch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_item("reader")
    }
}
