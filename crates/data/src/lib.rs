//! The reader: turns the files a [`mfh_config::Config`] names into columnar [`Batch`]es
//! of hashed IDs, transformed numbers, labels and facet cells, streaming (memory constant in
//! the number of rows) on a background thread.
//!
//! Flow: [`Pipeline::new`] opens the sources' headers, loads the side tables and resolves
//! every column a feature, label, facet or split names (a missing column is an error that
//! names the config key). [`Pipeline::fit`] reads the train split once for the numeric
//! statistics; [`Pipeline::stream`] then yields batches of any split. A malformed row is an
//! error naming file:line:column, or a counted skip with `on_error = "skip"`.
//!
//! Not here: embedding lookups (`mfh-embedding`), anything about models.

#[cfg(feature = "arrow")]
pub mod arrow;
mod batch;
pub mod census;
mod decode;
mod error;
mod fit;
mod hash;
pub mod kuairand;
pub mod memory;
mod number;
#[cfg(feature = "parquet")]
mod parquet;
mod pipeline;
mod raw;
mod record;
mod request;
mod rows;
mod sources;
pub mod store;
mod stream;
mod striped;
pub mod synthetic;
mod transforms;

pub use batch::{Batch, MultiColumn};
pub use error::{DataError, SkipCounts};
pub use fit::{FitPart, EXACT_VALUES, STRIPES};
pub use hash::{hash_value, MISSING_ID};
pub use memory::{Cells, RowTable, SplitTables};
pub use pipeline::{source_header, FieldLayout, Following, Pipeline, FILES_SPLIT};
pub use raw::{RawChunk, RawRows};
pub use request::{Input, InputInfo, InputKind, RequestDecoder, RequestError};
pub use sources::{complete_files, SourceFiles};
pub use stream::{BatchStream, ReadStats, StreamOptions};
pub use striped::{stripe_range, Stripe, StripeCounts, StripedStream};
pub use transforms::{FittedFeature, FittedTransforms};

/// A small deterministic generator (SplitMix64) for shuffling and sampling.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Uniform in [0, 1), 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
