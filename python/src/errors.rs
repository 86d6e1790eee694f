//! mfh's errors as Python exceptions of a small hierarchy, with the same message as the
//! CLI and the location as attributes:
//!
//! - `MfhError` (base)
//!   - `ConfigError`: a bad config: `file`, `key`;
//!   - `DataError`: bad data: `file` (a path or `data["SPLIT"]`), `line` (1-based line,
//!     or row of a table), `column` (name), `row` (0-based row of a predicted table);
//!   - `ModelError`: a model folder that cannot be loaded or used;
//! - `Interrupted` (also a `KeyboardInterrupt`, raised by the Python side): a stopped
//!   run; `checkpoint`, `step`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(_mfh, MfhError, PyException, "Any error mfh reports.");
create_exception!(
    _mfh,
    ConfigError,
    MfhError,
    "A config that cannot be used: `file`, `key`."
);
create_exception!(
    _mfh,
    DataError,
    MfhError,
    "Data that cannot be read: `file`, `line`, `column`, `row`."
);
create_exception!(
    _mfh,
    ModelError,
    MfhError,
    "A model folder that cannot be loaded or used."
);
create_exception!(
    _mfh,
    StopRequested,
    MfhError,
    "A run stopped on request: `step`, `checkpoint`."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MfhError", py.get_type::<MfhError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("StopRequested", py.get_type::<StopRequested>())?;
    Ok(())
}

/// What kind of failure an error chain holds, and where.
enum Kind {
    Config {
        file: String,
        key: Option<String>,
    },
    Data {
        file: String,
        line: Option<u64>,
        column: Option<String>,
    },
    Request {
        row: usize,
    },
    Stopped {
        step: u64,
        checkpoint: Option<String>,
    },
    Model,
    Other,
}

fn classify(e: &anyhow::Error) -> Kind {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<mfh_config::ConfigError>() {
            return match c {
                mfh_config::ConfigError::Invalid { file, key, .. } => Kind::Config {
                    file: file.display().to_string(),
                    key: Some(key.clone()),
                },
                mfh_config::ConfigError::Parse { file, .. }
                | mfh_config::ConfigError::Io { file, .. } => Kind::Config {
                    file: file.display().to_string(),
                    key: None,
                },
            };
        }
        if let Some(d) = cause.downcast_ref::<mfh_data::DataError>() {
            if d.kind == "config" {
                return Kind::Config {
                    file: d.file.display().to_string(),
                    key: None,
                };
            }
            return Kind::Data {
                file: d.file.display().to_string(),
                line: d.line,
                column: d.column.as_ref().map(|(_, n)| n.clone()),
            };
        }
        if let Some(r) = cause.downcast_ref::<mfh_data::RequestError>() {
            return Kind::Request { row: r.row };
        }
        if let Some(s) = cause.downcast_ref::<mfh_train::Interrupted>() {
            return Kind::Stopped {
                step: s.step,
                checkpoint: s.checkpoint.as_ref().map(|p| p.display().to_string()),
            };
        }
        if cause.is::<ModelFailure>() {
            return Kind::Model;
        }
    }
    Kind::Other
}

/// Marks an error as the model folder's.
#[derive(Debug)]
pub struct ModelFailure;

impl std::fmt::Display for ModelFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("model")
    }
}

impl std::error::Error for ModelFailure {}

/// The Python exception for an mfh error: its class by kind, the CLI's message, and the
/// location as attributes.
pub fn to_py(e: anyhow::Error) -> PyErr {
    let message = format!("{e:#}");
    Python::attach(|py| {
        let (err, attrs): (PyErr, Vec<(&str, Py<PyAny>)>) = match classify(&e) {
            Kind::Config { file, key } => (
                ConfigError::new_err(message),
                vec![
                    ("file", file.into_pyobject(py).unwrap().into_any().unbind()),
                    ("key", key.into_pyobject(py).unwrap().into_any().unbind()),
                ],
            ),
            Kind::Data { file, line, column } => (
                DataError::new_err(message),
                vec![
                    ("file", file.into_pyobject(py).unwrap().into_any().unbind()),
                    ("line", line.into_pyobject(py).unwrap().into_any().unbind()),
                    (
                        "column",
                        column.into_pyobject(py).unwrap().into_any().unbind(),
                    ),
                    ("row", py.None()),
                ],
            ),
            Kind::Request { row } => (
                DataError::new_err(message),
                vec![
                    ("file", py.None()),
                    ("line", py.None()),
                    ("column", py.None()),
                    ("row", row.into_pyobject(py).unwrap().into_any().unbind()),
                ],
            ),
            Kind::Stopped { step, checkpoint } => (
                StopRequested::new_err(message),
                vec![
                    ("step", step.into_pyobject(py).unwrap().into_any().unbind()),
                    (
                        "checkpoint",
                        checkpoint.into_pyobject(py).unwrap().into_any().unbind(),
                    ),
                ],
            ),
            Kind::Model => (ModelError::new_err(message), vec![]),
            Kind::Other => (MfhError::new_err(message), vec![]),
        };
        let value = err.value(py);
        for (k, v) in attrs {
            let _ = value.setattr(k, v);
        }
        err
    })
}

/// `Result<T, anyhow::Error>` → `PyResult<T>`.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for anyhow::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
