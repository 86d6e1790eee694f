//! [`MpiComm`]: the [`Comm`] collectives over MPI's world communicator (rsmpi). Built with
//! the `mpi` feature only; start the program with `mpirun -np N`.

use crate::comm::{Comm, CommStats};
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;
use std::time::Instant;

/// This process's place in `MPI_COMM_WORLD`. Dropping it finalizes MPI.
pub struct MpiComm {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    stats: CommStats,
    // Last: finalizes MPI when dropped, after the communicator.
    _universe: mpi::environment::Universe,
}

impl MpiComm {
    /// Initializes MPI (a lone process started without `mpirun` is a world of one).
    /// `None` when MPI was initialized before in this process.
    pub fn init() -> Option<MpiComm> {
        let universe = mpi::initialize()?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Some(MpiComm {
            world,
            rank,
            size,
            stats: CommStats::default(),
            _universe: universe,
        })
    }
}

fn counts_displs(counts: &[usize]) -> (Vec<Count>, Vec<Count>) {
    let c: Vec<Count> = counts
        .iter()
        .map(|&n| Count::try_from(n).expect("MPI message over 2^31 elements"))
        .collect();
    let mut d = Vec::with_capacity(c.len());
    let mut at: Count = 0;
    for &n in &c {
        d.push(at);
        at = at.checked_add(n).expect("MPI message over 2^31 elements");
    }
    (c, d)
}

impl MpiComm {
    /// The element counts every rank will send here, by one all-to-all of the counts.
    fn recv_counts(&self, send_counts: &[usize]) -> Vec<usize> {
        assert_eq!(
            send_counts.len(),
            self.size,
            "all_to_all_v: one count per rank"
        );
        let send: Vec<u64> = send_counts.iter().map(|&c| c as u64).collect();
        let mut recv = vec![0u64; self.size];
        self.world.all_to_all_into(&send[..], &mut recv[..]);
        recv.into_iter().map(|c| c as usize).collect()
    }

    fn all_to_all_v<T: Equivalence + Copy + Default>(
        &mut self,
        send: &[T],
        send_counts: &[usize],
    ) -> (Vec<T>, Vec<usize>) {
        let t = Instant::now();
        assert_eq!(send_counts.iter().sum::<usize>(), send.len());
        let recv_counts = self.recv_counts(send_counts);
        let mut recv = vec![T::default(); recv_counts.iter().sum()];
        {
            let (sc, sd) = counts_displs(send_counts);
            let (rc, rd) = counts_displs(&recv_counts);
            let s = Partition::new(send, sc, sd);
            let mut r = PartitionMut::new(&mut recv[..], rc, rd);
            self.world.all_to_all_varcount_into(&s, &mut r);
        }
        let own = send_counts[self.rank];
        self.stats.all_to_all_bytes += ((send.len() - own) * std::mem::size_of::<T>()) as u64;
        self.stats.all_to_all_calls += 1;
        self.stats.all_to_all_s += t.elapsed().as_secs_f64();
        (recv, recv_counts)
    }

    fn all_gather<T: Equivalence + Copy + Default>(&mut self, mine: &[T]) -> Vec<T> {
        let t = Instant::now();
        let mut counts = vec![0u64; self.size];
        self.world
            .all_gather_into(&(mine.len() as u64), &mut counts[..]);
        let counts: Vec<usize> = counts.into_iter().map(|c| c as usize).collect();
        let mut out = vec![T::default(); counts.iter().sum()];
        {
            let (c, d) = counts_displs(&counts);
            let mut r = PartitionMut::new(&mut out[..], c, d);
            self.world.all_gather_varcount_into(mine, &mut r);
        }
        self.stats.other_s += t.elapsed().as_secs_f64();
        out
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&mut self, buf: &mut [f32]) {
        let t = Instant::now();
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        self.stats.all_reduce_calls += 1;
        self.stats.all_reduce_bytes += std::mem::size_of_val(buf) as u64;
        self.stats.all_reduce_s += t.elapsed().as_secs_f64();
    }
    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) {
        let t = Instant::now();
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        self.stats.other_s += t.elapsed().as_secs_f64();
    }
    fn all_to_all_v_u64(&mut self, send: &[u64], counts: &[usize]) -> (Vec<u64>, Vec<usize>) {
        self.all_to_all_v(send, counts)
    }
    fn all_to_all_v_f32(&mut self, send: &[f32], counts: &[usize]) -> (Vec<f32>, Vec<usize>) {
        self.all_to_all_v(send, counts)
    }
    fn all_gather_u64(&mut self, mine: &[u64]) -> Vec<u64> {
        self.all_gather(mine)
    }
    fn all_gather_f32(&mut self, mine: &[f32]) -> Vec<f32> {
        self.all_gather(mine)
    }
    fn barrier(&mut self) {
        let t = Instant::now();
        self.world.barrier();
        self.stats.other_s += t.elapsed().as_secs_f64();
    }
    fn stats(&self) -> CommStats {
        self.stats
    }
}
