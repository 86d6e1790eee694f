//! `mfh.Config`: a config file, with overrides, validated as `mfh check` validates it.

use crate::errors::IntoPy;
use mfh_config::Config as Cfg;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::path::{Path, PathBuf};

/// A checked config. `overrides` maps dotted keys (`"train.epochs"`,
/// `"models.mfh.experts"`) to values that replace the file's; a bad key or value raises
/// `ConfigError` naming it.
#[pyclass(module = "mfh._mfh", frozen)]
pub struct Config {
    pub cfg: Cfg,
}

#[pymethods]
impl Config {
    #[new]
    #[pyo3(signature = (path, overrides=None))]
    fn new(path: PathBuf, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Config> {
        let cfg = load(&path, overrides)?;
        // Every model section builds (its keys, widths and tree levels), as `mfh check`
        // checks the section it trains.
        for name in cfg.models.keys() {
            mfh_train::model_spec(&cfg, Some(name)).py_err()?;
        }
        Ok(Config { cfg })
    }

    /// The config file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.cfg.source_file.clone()
    }

    /// Behaviour (label) names, in the grid's order.
    #[getter]
    fn behaviours(&self) -> Vec<String> {
        self.cfg.grid().behaviours.clone()
    }

    /// Facet cell names (`new_user×tail_item`…), in the grid's order.
    #[getter]
    fn cells(&self) -> Vec<String> {
        self.cfg.grid().cell_names()
    }

    /// The model sections.
    #[getter]
    fn models(&self) -> Vec<String> {
        self.cfg.models.keys().cloned().collect()
    }

    /// The split names.
    #[getter]
    fn splits(&self) -> Vec<String> {
        self.cfg.splits.keys().cloned().collect()
    }

    /// The config as TOML, every default spelled out.
    fn to_toml(&self) -> String {
        self.cfg.to_toml_string()
    }

    /// Opens the data as `mfh check` does (headers, side tables, every named column) and
    /// returns its summary; `count` also counts each split's rows.
    #[pyo3(signature = (count=false))]
    fn check(&self, py: Python<'_>, count: bool) -> PyResult<String> {
        let cfg = self.cfg.clone();
        py.detach(move || mfh_train::check(&cfg, count).map(|s| s.text))
            .py_err()
    }

    fn __repr__(&self) -> String {
        format!(
            "mfh.Config({:?})",
            self.cfg.source_file.display().to_string()
        )
    }
}

/// Loads `path` with `overrides` applied to its TOML before validation.
fn load(path: &Path, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Cfg> {
    let Some(over) = overrides.filter(|o| !o.is_empty()) else {
        return Cfg::load(path).map_err(anyhow::Error::new).py_err();
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| mfh_config::ConfigError::Io {
            file: path.to_path_buf(),
            source: e,
        })
        .map_err(anyhow::Error::new)
        .py_err()?;
    let mut doc: toml::Table = toml::from_str(&text)
        .map_err(|e| mfh_config::ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
        .map_err(anyhow::Error::new)
        .py_err()?;
    let original = doc.clone();
    let mut applied = Vec::new();
    for (k, v) in over.iter() {
        let key: String = k.extract()?;
        let bad = |m: String| {
            crate::errors::to_py(anyhow::Error::new(mfh_config::ConfigError::invalid(
                path,
                key.clone(),
                format!("override: {m}"),
            )))
        };
        let value = to_toml(&v).map_err(bad)?;
        mfh_config::set_dotted(&mut doc, &key, value.clone()).map_err(bad)?;
        applied.push((key, value));
    }
    let text = toml::to_string(&doc).expect("a TOML table serialises");
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match Cfg::from_toml_str(&text, path, base) {
        Err(mfh_config::ConfigError::Parse { .. }) => {
            // The regenerated text's line numbers mean nothing to the caller: name the
            // override that does not parse.
            for (key, value) in &applied {
                let mut one = original.clone();
                let _ = mfh_config::set_dotted(&mut one, key, value.clone());
                if let Err(e) = toml::from_str::<Cfg>(&toml::to_string(&one).unwrap()) {
                    return Err(crate::errors::to_py(anyhow::Error::new(
                        mfh_config::ConfigError::invalid(
                            path,
                            key.clone(),
                            format!("override: {}", e.message()),
                        ),
                    )));
                }
            }
            Cfg::load(path).map_err(anyhow::Error::new).py_err()
        }
        r => r.map_err(anyhow::Error::new).py_err(),
    }
}

/// A Python value as TOML.
fn to_toml(v: &Bound<'_, PyAny>) -> Result<toml::Value, String> {
    if v.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(v.extract().unwrap()));
    }
    if v.is_instance_of::<PyInt>() {
        return v
            .extract::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| "an integer out of range".into());
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(v.extract().unwrap()));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(toml::Value::String(v.extract().unwrap()));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> = v
            .try_iter()
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .collect();
        return items
            .iter()
            .map(to_toml)
            .collect::<Result<_, _>>()
            .map(toml::Value::Array);
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut t = toml::Table::new();
        for (k, x) in d.iter() {
            let k: String = k
                .extract()
                .map_err(|_| "a dict key that is not a str".to_string())?;
            t.insert(k, to_toml(&x)?);
        }
        return Ok(toml::Value::Table(t));
    }
    if v.hasattr("item").unwrap_or(false) {
        // numpy scalars.
        if let Ok(x) = v.call_method0("item") {
            return to_toml(&x);
        }
    }
    Err(format!(
        "a {} cannot be a config value (use bool, int, float, str, list or dict)",
        v.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    ))
}
