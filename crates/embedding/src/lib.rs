//! Hashed embedding tables for categorical features, with row-sparse optimizers.
//!
//! An [`EmbeddingTable`] maps pre-hashed `u64` ids to rows of a flat `f32` slab plus
//! per-row optimizer state; an [`EmbeddingLayer`] turns a batch of ids into the dense
//! network input and pushes gradients back into only the rows the batch touched.

mod codec;
mod hash;
mod index;
mod layer;
mod optimizer;
mod table;

pub use hash::{IdHashBuilder, IdHasher};
pub use layer::{EmbeddingLayer, FieldSpec, MultiIds, Pooling, SparseInput};
pub use optimizer::RowOptimizer;
pub use table::{EmbeddingTable, Lifecycle, LifecycleStats, TableSpec, NO_ROW};
