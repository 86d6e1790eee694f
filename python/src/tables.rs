//! Arrow data from Python: any object with `__arrow_c_stream__` (a pyarrow Table or
//! RecordBatchReader; the Python side converts pandas DataFrames, RecordBatches and dicts
//! of numpy arrays to a Table first) is imported through Arrow's C stream interface,
//! without copying its buffers, into an [`ArrowTable`].

use crate::errors::to_py;
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::RecordBatch;
use mfh_data::arrow::ArrowTable;
use mfh_data::SplitTables;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString};
use std::sync::Arc;

/// Imports `obj`'s record batches (zero-copy).
pub fn import_batches(obj: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    if !obj.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "expected an Arrow table (an object with __arrow_c_stream__), got {}",
            obj.get_type().name()?
        )));
    }
    let capsule = obj.call_method0("__arrow_c_stream__")?;
    // SAFETY: the capsule is the producer's `arrow_array_stream` (the name is checked by
    // PyCapsule_GetPointer); `from_raw` moves the stream out and leaves a released one
    // behind, which the capsule's destructor then ignores.
    let reader = unsafe {
        let ptr = pyo3::ffi::PyCapsule_GetPointer(capsule.as_ptr(), c"arrow_array_stream".as_ptr());
        if ptr.is_null() {
            return Err(PyErr::fetch(obj.py()));
        }
        RecordBatchStreamReader::from_raw(ptr as *mut FFI_ArrowArrayStream)
    }
    .map_err(|e| to_py(anyhow::anyhow!("cannot import the Arrow stream: {e}")))?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| to_py(anyhow::anyhow!("cannot read the Arrow stream: {e}")))?);
    }
    Ok(batches)
}

/// `obj` as a table called `name` in errors; lists joined with `sep`.
pub fn table(obj: &Bound<'_, PyAny>, name: &str, sep: u8) -> PyResult<Arc<ArrowTable>> {
    let batches = import_batches(obj)?;
    if batches.is_empty() {
        return Err(to_py(anyhow::Error::new(mfh_data::DataError::file(
            name,
            "arrow",
            "the table has no record batches",
        ))));
    }
    ArrowTable::new(name, batches, sep)
        .map(Arc::new)
        .map_err(|e| to_py(anyhow::Error::new(e)))
}

/// A `{split: table}` dict as the run's in-memory tables.
pub fn split_tables(data: Option<&Bound<'_, PyDict>>, sep: u8) -> PyResult<SplitTables> {
    let mut out = SplitTables::new();
    if let Some(d) = data {
        for (k, v) in d.iter() {
            let split: String = k.extract()?;
            let t = table(&v, &format!("data[\"{split}\"]"), sep)?;
            out.insert(&split, t);
        }
    }
    Ok(out)
}

/// The text mfh reads for a Python value (as the Arrow decoder writes the same value).
pub fn value_text(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if v.is_instance_of::<PyBool>() {
        return Ok(if v.extract::<bool>()? { b"1" } else { b"0" }.to_vec());
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(v.str()?.to_string().into_bytes());
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(format!("{}", v.extract::<f64>()?).into_bytes());
    }
    if v.is_instance_of::<PyString>() {
        return Ok(v.extract::<String>()?.into_bytes());
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    // numpy scalars and the like: by their Python value.
    if v.hasattr("item")? {
        return value_text(&v.call_method0("item")?);
    }
    Err(PyTypeError::new_err(format!(
        "cannot hash a {}: pass a str, int, float or bool",
        v.get_type().name()?
    )))
}

/// The separator lists are joined with: the first `multi` feature's (`,` by default).
pub fn list_separator(cfg: &mfh_config::Config) -> u8 {
    cfg.features
        .iter()
        .find_map(|f| match f {
            mfh_config::FeatureConfig::Multi { separator, .. } => separator.bytes().next(),
            _ => None,
        })
        .unwrap_or(b',')
}
