//! `mfh bench`: throughput figures kept in the repo, never asserted by tests.
//!
//! - [`ingest`]: rows/s from a config's files into batches (reading, gunzip, parsing,
//!   joins, hashing, transforms), one reader thread.
//! - [`train`]: training and scoring samples/s on a synthetic [`Workload`] (MMoE-ref:
//!   batch 1024; 26 categorical fields × dim 16 over 100,000 IDs each plus 13 numeric →
//!   429 inputs; 8 experts 429→256→128; 4 tasks with softmax gates and 128→64→1 towers;
//!   Adam; row-wise Adagrad embeddings), from batches held in memory, generated
//!   ([`generate`]) or read from an MFHBENC2 file ([`read_file`], the bytes the PyTorch
//!   peers read too).
//! - [`routing`]: a tree model with cell routing on and off; [`infer`]: a trained
//!   model's scoring time per batch; [`sgemm`]: the product kernel's GFLOP/s.
//!
//! Each prints the median and min–max over several timed windows after a warm-up, on
//! stdout (a closed pipe ends the program quietly), after [`print_machine`]'s line.
//!
//! Not here: the flags (`mfh`'s `bench` module), anything a test asserts.

/// A line on stdout; a closed pipe (`mfh bench … | head`) ends the program quietly.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::print::line(format_args!($($arg)*)) };
}

mod file;
mod generate;
mod infer;
mod ingest;
mod peak;
mod print;
mod routing;
mod scaling;
mod sgemm;
mod timing;
mod train;
mod workload;

pub use file::{read_file, write_file, MAGIC};
pub use generate::{gen, generate, GenSpec};
pub use infer::{infer, InferOptions};
pub use ingest::ingest;
pub use peak::peak;
pub use routing::{routing, RoutingOptions};
pub use sgemm::sgemm;
pub use train::{train, TrainOptions};
pub use workload::{RawData, Workload, BATCH, DENSE, DIM, FIELDS};

/// Which kernels run, on which CPU (`# kernel path …`): part of every figure, printed
/// first by every `mfh bench` command (CI reads the kernel path from it).
pub fn print_machine() {
    outln!("# {}", mfh_cpu::describe());
}
