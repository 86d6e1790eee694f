//! What distributed training needs from a transport: rank and size, a sum all-reduce, a
//! variable-count all-to-all and all-gather, a barrier. [`LocalComm`] is the one-process
//! world (everything is a copy); `MpiComm` (feature `mpi`) is the real one. Every call
//! is collective: all ranks make the same calls in the same order.

use std::time::Instant;

/// Time and bytes spent in each kind of collective (this rank's view), for the benchmark
/// and the cost model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    pub all_reduce_s: f64,
    pub all_reduce_bytes: u64,
    pub all_reduce_calls: u64,
    pub all_to_all_s: f64,
    /// Bytes this rank sent to other ranks by all-to-all.
    pub all_to_all_bytes: u64,
    pub all_to_all_calls: u64,
    pub other_s: f64,
}

impl CommStats {
    pub fn since(&self, earlier: &CommStats) -> CommStats {
        CommStats {
            all_reduce_s: self.all_reduce_s - earlier.all_reduce_s,
            all_reduce_bytes: self.all_reduce_bytes - earlier.all_reduce_bytes,
            all_reduce_calls: self.all_reduce_calls - earlier.all_reduce_calls,
            all_to_all_s: self.all_to_all_s - earlier.all_to_all_s,
            all_to_all_bytes: self.all_to_all_bytes - earlier.all_to_all_bytes,
            all_to_all_calls: self.all_to_all_calls - earlier.all_to_all_calls,
            other_s: self.other_s - earlier.other_s,
        }
    }
}

/// A group of `size` processes, this one being `rank`.
///
/// `all_to_all_v`: `send` holds the payload for rank 0, then rank 1, …, with
/// `send_counts[r]` elements for rank `r`; the result holds what every rank sent to this
/// one, rank 0's part first, with the per-rank element counts.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sum over all ranks, in place; every rank gets the same result.
    fn all_reduce_sum(&mut self, buf: &mut [f32]);
    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]);
    fn all_to_all_v_u64(&mut self, send: &[u64], send_counts: &[usize]) -> (Vec<u64>, Vec<usize>);
    fn all_to_all_v_f32(&mut self, send: &[f32], send_counts: &[usize]) -> (Vec<f32>, Vec<usize>);
    /// Every rank's `mine`, concatenated in rank order, on every rank.
    fn all_gather_u64(&mut self, mine: &[u64]) -> Vec<u64>;
    fn all_gather_f32(&mut self, mine: &[f32]) -> Vec<f32>;
    fn barrier(&mut self);
    fn stats(&self) -> CommStats;
}

/// The world of one process: collectives are identities.
#[derive(Debug, Default)]
pub struct LocalComm {
    stats: CommStats,
}

impl LocalComm {
    pub fn new() -> Self {
        Self::default()
    }
}

fn check_counts(len: usize, counts: &[usize], size: usize) {
    assert_eq!(counts.len(), size, "all_to_all_v: one count per rank");
    assert_eq!(
        counts.iter().sum::<usize>(),
        len,
        "all_to_all_v: counts do not add up to the payload"
    );
}

impl Comm for LocalComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&mut self, _buf: &mut [f32]) {
        self.stats.all_reduce_calls += 1;
    }
    fn all_reduce_sum_f64(&mut self, _buf: &mut [f64]) {}
    fn all_to_all_v_u64(&mut self, send: &[u64], counts: &[usize]) -> (Vec<u64>, Vec<usize>) {
        let t = Instant::now();
        check_counts(send.len(), counts, 1);
        self.stats.all_to_all_calls += 1;
        let out = (send.to_vec(), counts.to_vec());
        self.stats.all_to_all_s += t.elapsed().as_secs_f64();
        out
    }
    fn all_to_all_v_f32(&mut self, send: &[f32], counts: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let t = Instant::now();
        check_counts(send.len(), counts, 1);
        self.stats.all_to_all_calls += 1;
        let out = (send.to_vec(), counts.to_vec());
        self.stats.all_to_all_s += t.elapsed().as_secs_f64();
        out
    }
    fn all_gather_u64(&mut self, mine: &[u64]) -> Vec<u64> {
        mine.to_vec()
    }
    fn all_gather_f32(&mut self, mine: &[f32]) -> Vec<f32> {
        mine.to_vec()
    }
    fn barrier(&mut self) {}
    fn stats(&self) -> CommStats {
        self.stats
    }
}

/// Splits `n` rows over `size` ranks in contiguous slices: rank `r` gets
/// `n·r/size .. n·(r+1)/size` (sizes differ by at most one).
pub fn row_range(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    // The striped reader decodes exactly these rows.
    mfh_data::stripe_range(n, rank, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ranges_cover_the_batch_once() {
        for n in [0, 1, 5, 1024, 1023] {
            for size in 1..5 {
                let mut next = 0;
                for r in 0..size {
                    let rr = row_range(n, r, size);
                    assert_eq!(rr.start, next);
                    assert!(rr.len() <= n.div_ceil(size));
                    next = rr.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn local_comm_is_the_identity() {
        let mut c = LocalComm::new();
        let mut v = vec![1.0, 2.0];
        c.all_reduce_sum(&mut v);
        assert_eq!(v, [1.0, 2.0]);
        let (ids, counts) = c.all_to_all_v_u64(&[3, 4, 5], &[3]);
        assert_eq!((ids, counts), (vec![3, 4, 5], vec![3]));
        assert_eq!(c.all_gather_f32(&[1.5]), vec![1.5]);
    }
}
