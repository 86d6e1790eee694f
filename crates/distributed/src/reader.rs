//! A rank's rows of each global batch. Striped reading (`mfh_data::StripedStream`): every
//! rank scans the split but joins and decodes only its own slice of each batch. Where the
//! batches' composition depends on decoding every row (`on_error = "skip"`, negative
//! down-sampling), or with `MFH_DIST_READ=whole` (to measure the difference), each rank
//! decodes the whole batch and keeps its slice, as before striping.

use crate::comm::row_range;
use mfh_data::{
    Batch, BatchStream, DataError, Pipeline, ReadStats, StreamOptions, StripeCounts, StripedStream,
};
use std::sync::Arc;

/// How a run reads its batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Each rank decodes only its slice of every global batch.
    Striped,
    /// Each rank decodes every global batch whole and keeps its slice.
    Whole,
}

impl ReadMode {
    pub fn name(self) -> &'static str {
        match self {
            ReadMode::Striped => "striped",
            ReadMode::Whole => "whole",
        }
    }
}

/// The mode for `split`, and why striping is off where the config rules it out.
pub(crate) fn read_mode(p: &Pipeline, split: &str) -> (ReadMode, Option<String>) {
    if std::env::var("MFH_DIST_READ").is_ok_and(|v| v == "whole") {
        return (ReadMode::Whole, None);
    }
    match p.striping_blocker(split) {
        Some(why) => (ReadMode::Whole, Some(why)),
        None => (ReadMode::Striped, None),
    }
}

pub(crate) enum RankReader {
    Striped(StripedStream),
    Whole {
        stream: BatchStream,
        /// The last whole batch (boxed: a batch is large beside a striped stream).
        full: Box<Batch>,
        rank: usize,
        size: usize,
    },
}

impl RankReader {
    pub fn open(
        p: &Arc<Pipeline>,
        split: &str,
        opts: StreamOptions,
        mode: ReadMode,
        rank: usize,
        size: usize,
    ) -> Result<RankReader, DataError> {
        Ok(match mode {
            ReadMode::Striped => RankReader::Striped(p.stream_striped(split, opts, rank, size)?),
            ReadMode::Whole => RankReader::Whole {
                stream: p.stream(split, opts)?,
                full: Box::default(),
                rank,
                size,
            },
        })
    }

    /// Puts this rank's rows of the next global batch into `out` and returns the global
    /// batch's row count; `None` after the last batch. On an error `out` is left empty.
    pub fn next_into(&mut self, out: &mut Batch) -> Option<Result<usize, DataError>> {
        let r = match self {
            RankReader::Striped(s) => s.next()?.map(|stripe| {
                *out = stripe.batch;
                stripe.global_rows
            }),
            RankReader::Whole {
                stream,
                full,
                rank,
                size,
            } => stream.next()?.map(|b| {
                **full = b;
                local_rows(full, row_range(full.n, *rank, *size), out);
                full.n
            }),
        };
        if r.is_err() {
            out.clear();
        }
        Some(r)
    }

    /// Stops the reader and returns what it did: rows this rank decoded and the time
    /// in decoding and scanning (striped reading only; the whole-batch stream does not
    /// time its decoding).
    pub fn close(self) -> Option<StripeCounts> {
        match self {
            RankReader::Striped(s) => Some(s.close()),
            RankReader::Whole { .. } => None,
        }
    }

    pub fn stats(&self) -> Option<&ReadStats> {
        match self {
            RankReader::Striped(s) => s.stats(),
            RankReader::Whole { stream, .. } => stream.stats(),
        }
    }
}

/// Rows `range` of `full`, as a batch of their own.
pub(crate) fn local_rows(full: &Batch, range: std::ops::Range<usize>, out: &mut Batch) {
    if out.multi.len() != full.multi.len() {
        *out = full.empty_like();
    }
    out.clear();
    let idx: Vec<usize> = range.collect();
    out.extend_from(full, &idx);
}
