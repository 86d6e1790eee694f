//! [`ThreadComm`]: a world of threads in one process, for testing the distributed code
//! paths with several ranks where MPI is not installed. Not fast: every collective is two
//! barriers and a copy through a shared mailbox.

use crate::comm::{Comm, CommStats};
use std::sync::{Arc, Barrier, Mutex};

struct Shared {
    barrier: Barrier,
    /// `mail[src][dst]`: what `src` sends to `dst` in the current collective (raw bits).
    mail: Mutex<Vec<Vec<Vec<u64>>>>,
}

/// One rank of a threaded world made by [`ThreadComm::world`].
pub struct ThreadComm {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
    stats: CommStats,
}

impl ThreadComm {
    /// `size` ranks; give each to its own thread.
    pub fn world(size: usize) -> Vec<ThreadComm> {
        let shared = Arc::new(Shared {
            barrier: Barrier::new(size),
            mail: Mutex::new(vec![vec![Vec::new(); size]; size]),
        });
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                size,
                shared: shared.clone(),
                stats: CommStats::default(),
            })
            .collect()
    }

    /// Sends `out[dst]` to every `dst`; returns what each rank sent here, by source.
    fn exchange(&mut self, out: Vec<Vec<u64>>) -> Vec<Vec<u64>> {
        self.shared.mail.lock().unwrap()[self.rank] = out;
        self.shared.barrier.wait();
        let got = {
            let mail = self.shared.mail.lock().unwrap();
            (0..self.size).map(|s| mail[s][self.rank].clone()).collect()
        };
        self.shared.barrier.wait();
        got
    }

    fn split(&self, send: &[u64], counts: &[usize]) -> Vec<Vec<u64>> {
        assert_eq!(counts.len(), self.size, "all_to_all_v: one count per rank");
        let mut at = 0;
        counts
            .iter()
            .map(|&c| {
                let part = send[at..at + c].to_vec();
                at += c;
                part
            })
            .collect()
    }

    fn gather_bits(&mut self, mine: Vec<u64>) -> Vec<Vec<u64>> {
        self.exchange(vec![mine; self.size])
    }
}

fn concat(parts: Vec<Vec<u64>>) -> (Vec<u64>, Vec<usize>) {
    let counts = parts.iter().map(Vec::len).collect();
    (parts.concat(), counts)
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&mut self, buf: &mut [f32]) {
        let parts = self.gather_bits(buf.iter().map(|x| x.to_bits() as u64).collect());
        // Summed in rank order on every rank, so every rank gets the same bits.
        buf.fill(0.0);
        for p in parts {
            for (b, v) in buf.iter_mut().zip(p) {
                *b += f32::from_bits(v as u32);
            }
        }
        self.stats.all_reduce_calls += 1;
    }
    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) {
        let parts = self.gather_bits(buf.iter().map(|x| x.to_bits()).collect());
        buf.fill(0.0);
        for p in parts {
            for (b, v) in buf.iter_mut().zip(p) {
                *b += f64::from_bits(v);
            }
        }
    }
    fn all_to_all_v_u64(&mut self, send: &[u64], counts: &[usize]) -> (Vec<u64>, Vec<usize>) {
        let out = self.split(send, counts);
        self.stats.all_to_all_calls += 1;
        concat(self.exchange(out))
    }
    fn all_to_all_v_f32(&mut self, send: &[f32], counts: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let bits: Vec<u64> = send.iter().map(|x| x.to_bits() as u64).collect();
        let out = self.split(&bits, counts);
        self.stats.all_to_all_calls += 1;
        let (v, c) = concat(self.exchange(out));
        (v.into_iter().map(|b| f32::from_bits(b as u32)).collect(), c)
    }
    fn all_gather_u64(&mut self, mine: &[u64]) -> Vec<u64> {
        self.gather_bits(mine.to_vec()).concat()
    }
    fn all_gather_f32(&mut self, mine: &[f32]) -> Vec<f32> {
        let bits = mine.iter().map(|x| x.to_bits() as u64).collect();
        self.gather_bits(bits)
            .concat()
            .into_iter()
            .map(|b| f32::from_bits(b as u32))
            .collect()
    }
    fn barrier(&mut self) {
        self.shared.barrier.wait();
    }
    fn stats(&self) -> CommStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_over_three_threads() {
        let handles: Vec<_> = ThreadComm::world(3)
            .into_iter()
            .map(|mut c| {
                std::thread::spawn(move || {
                    let r = c.rank();
                    let mut v = vec![r as f32, 1.0];
                    c.all_reduce_sum(&mut v);
                    assert_eq!(v, [3.0, 3.0]);
                    // Rank r sends (r, dst) to every dst, dst+1 copies.
                    let mut send = Vec::new();
                    let mut counts = Vec::new();
                    for dst in 0..3 {
                        for _ in 0..=dst {
                            send.push((r * 10 + dst) as u64);
                        }
                        counts.push(dst + 1);
                    }
                    let (got, got_counts) = c.all_to_all_v_u64(&send, &counts);
                    assert_eq!(got_counts, vec![r + 1; 3]);
                    let want: Vec<u64> = (0..3)
                        .flat_map(|s| std::iter::repeat_n((s * 10 + r) as u64, r + 1))
                        .collect();
                    assert_eq!(got, want);
                    assert_eq!(c.all_gather_u64(&[r as u64]), vec![0, 1, 2]);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
