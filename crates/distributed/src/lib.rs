//! Data-parallel training over several processes: the global batch split over the ranks,
//! dense gradients summed by one fused all-reduce per step, embedding rows sharded by
//! `hash(id) mod N` and exchanged by all-to-all-v, evaluation over every rank's
//! predictions. The transport is the [`Comm`] trait: [`LocalComm`] (one process),
//! [`ThreadComm`] (ranks as threads, for tests) and, with the `mpi` feature, `MpiComm`
//! over MPI (`mpirun -np N mfh train …`).
//!
//! Not here: the single-process trainer (`mfh_train`), whose state, loss, data stream,
//! optimiser and metrics this crate reuses; see docs/distributed.md for the design and
//! its cost model.

mod comm;
mod evaluate;
mod exchange;
#[cfg(feature = "mpi")]
mod launch;
#[cfg(feature = "mpi")]
mod mpi_comm;
mod reader;
mod shard;
mod thread_comm;
mod train;

pub use comm::{row_range, Comm, CommStats, LocalComm};
pub use evaluate::evaluate;
#[cfg(feature = "mpi")]
pub use launch::train_under_mpi;
#[cfg(feature = "mpi")]
pub use mpi_comm::MpiComm;
pub use reader::ReadMode;
pub use shard::{owner, ShardedEmbeddings};
pub use thread_comm::ThreadComm;
pub use train::{save_gathered, train, write_step_times, DistEngine, StepTimes};
