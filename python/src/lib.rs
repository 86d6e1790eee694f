//! The `mfh._mfh` extension module: the Rust core under the `mfh` Python package. The
//! Python side (mfh/__init__.py) converts pandas and dict inputs to Arrow, shows progress
//! and turns Ctrl-C into a stop request; everything that trains, decodes and scores is
//! here, running with the GIL released.
//!
//! Data crosses the boundary through Arrow's C stream interface (`__arrow_c_stream__`):
//! the record batches are imported without copying and decoded by `mfh_data::arrow`, the
//! typed decoder whose keys equal the file reader's.

mod bench;
mod config;
mod errors;
mod model;
mod onnx_feed;
mod run;
mod safetensors_out;
mod tables;

use errors::IntoPy;
use pyo3::prelude::*;
use std::path::PathBuf;

/// The hashed key mfh gives a raw categorical value: the key `mfh export`'s row maps
/// list, and the key the reader computes for the same value in a file, a request or a
/// DataFrame (`12`, `12.0` and `"12"` are one key).
#[pyfunction]
fn hash_id(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    let text = tables::value_text(value)?;
    Ok(mfh_data::hash_value(&text))
}

/// The kernel path the dense products take on this CPU (`portable`, `avx2`, `avx512`).
#[pyfunction]
fn kernel_path() -> String {
    mfh_cpu::path().to_string()
}

/// Prepares the KuaiRand-Pure files in `raw` (log, user and video features, optionally
/// gzipped) into `out`: the training table, side tables and `kuairand.toml`, as `mfh
/// prepare kuairand` does. Returns the config's path.
#[pyfunction]
fn prepare_kuairand(py: Python<'_>, raw: PathBuf, out: PathBuf) -> PyResult<PathBuf> {
    py.detach(|| {
        mfh_data::kuairand::prepare(&mfh_data::kuairand::PrepareOptions {
            raw,
            extra_logs: Vec::new(),
            out,
        })
        .map(|r| r.config)
        .map_err(anyhow::Error::new)
    })
    .py_err()
}

#[pymodule]
fn _mfh(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<config::Config>()?;
    m.add_class::<model::Model>()?;
    m.add_class::<run::RunHandle>()?;
    m.add_function(wrap_pyfunction!(hash_id, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_path, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_kuairand, m)?)?;
    m.add_function(wrap_pyfunction!(run::train, m)?)?;
    m.add_function(wrap_pyfunction!(run::compare, m)?)?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
