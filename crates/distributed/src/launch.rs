//! `mfh train` under `mpirun`: decides whether this process is one rank of several and,
//! if so, runs the distributed loop on MPI's world (or on a world of one, to continue a
//! distributed run's checkpoints on one process).

use crate::comm::Comm;
use crate::mpi_comm::MpiComm;
use anyhow::Result;
use mfh_config::Config;
use mfh_train::{TrainOptions, TrainSummary};

/// Whether a launcher started this process as an MPI rank (OpenMPI, MPICH / PMI, PMIx),
/// so that a plain `mfh train` never initialises MPI.
fn launched_by_mpirun() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// `None`: not a multi-rank run, train on one process. `Some(Some(summary))` on rank 0,
/// `Some(None)` on the other ranks, after a distributed run. With `MFH_DIST=1` a world
/// of one also runs the distributed engine (to measure its overhead). Checkpoints are the
/// same for both engines, so a distributed run's checkpoints continue on one process
/// with a plain `mfh train --resume`, and the other way round.
pub fn train_under_mpi(cfg: &Config, opts: &TrainOptions) -> Result<Option<Option<TrainSummary>>> {
    if !launched_by_mpirun() {
        return Ok(None);
    }
    let Some(mut comm) = MpiComm::init() else {
        return Ok(None);
    };
    let forced = std::env::var("MFH_DIST").is_ok_and(|v| v == "1");
    if comm.size() == 1 && !forced {
        return Ok(None);
    }
    run(cfg, opts, &mut comm).map(Some)
}

/// The distributed loop on `comm`; rank 0 writes `distributed.json` and reports.
fn run(cfg: &Config, opts: &TrainOptions, comm: &mut dyn Comm) -> Result<Option<TrainSummary>> {
    let rank = comm.rank();
    let (summary, times) = crate::train::train(cfg, opts, comm)?;
    // Written before the barrier, its result checked after, so no rank waits alone.
    let written = if rank == 0 {
        crate::train::write_step_times(&opts.out, comm.size(), &times)
    } else {
        Ok(())
    };
    comm.barrier();
    written?;
    if rank == 0 {
        let ms = |s: f64| 1e3 * s / times.steps.max(1) as f64;
        eprintln!(
            "distributed: {} ranks, {} steps, {:.1} ms/step ({:.1} reading, {:.2} all-reduce, {:.2} all-to-all), {:.0} samples/s; rank 0 reading {}: {} rows decoded, {:.2} ms/step decoding, {:.2} ms/step scanning",
            comm.size(),
            times.steps,
            ms(times.train_s),
            ms(times.read_s),
            ms(times.comm.all_reduce_s),
            ms(times.comm.all_to_all_s),
            summary.samples_per_sec,
            times.read_mode.map_or("-", |m| m.name()),
            times.rows_decoded,
            ms(times.decode_s),
            ms(times.scan_s),
        );
    }
    Ok((rank == 0).then_some(summary))
}
