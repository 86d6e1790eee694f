//! Distributed training with ranks as threads ([`ThreadComm`]), against the
//! one-process trainer on the same config: a made-up log with a shared table, a
//! multi-valued field, a numeric feature, two behaviours and a facet. Needs no MPI.
//!
//! By theme: `common` (the data, the config, running ranks, reading saved models and
//! checkpoints), `equivalence` (runs equal the one-process model), `resume`
//! (checkpoints and resuming across ranks and engines), `failures` (bad rows, refused
//! settings, failed saves, refusals).
//!
//! [`ThreadComm`]: mfh_distributed::ThreadComm

mod common;
mod equivalence;
mod failures;
mod resume;
