//! The run description: one TOML file that names the data, the features, the behaviours
//! (label dimensions), the facets (population partitions), the models and the training
//! settings. Everything downstream reads a [`Config`] that has been parsed *and* checked
//! here, so a typo costs a clear error naming the key before any data is read.
//!
//! Not here: reading data (`mfh-data`), building models (`mfh-model`), the meaning of the
//! model sections beyond "a table with a `type`" (checked by `mfh-train` when it builds them).

mod expr;
mod grid;
mod predicate;
mod schema;

pub use expr::Expr;
pub use grid::{Cell, TaskGrid};
pub use predicate::{CmpOp, Literal, Predicate};
pub use schema::*;

/// Whether a source path names an object in a store (`s3://bucket/key`) rather than a
/// local file: such a path is never resolved against the config's folder.
pub fn is_object_url(p: &std::path::Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

use std::path::{Path, PathBuf};

/// An error in a config file: which file, which key, and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file. Relative data paths are resolved against
    /// the config file's folder, so a config can travel with its data.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            source: e,
        })?;
        if meta.is_dir() {
            return Err(ConfigError::Parse {
                file: path.to_path_buf(),
                message: "is a directory, expected a TOML config file".into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            source: e,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Config::from_toml_str(&text, path, &base)
    }

    /// Parses and validates config text; `file` is used in messages, `base` resolves paths.
    pub fn from_toml_str(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.source_file = file.to_path_buf();
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    /// The search space of `[tune.NAME]` (empty when the section is absent).
    pub fn tune_space(&self, name: &str) -> Result<Space, ConfigError> {
        let check = schema::check::Check::new(&self.source_file);
        Ok(schema::tune::parse(&self.tune, &self.models, &check)?
            .remove(name)
            .unwrap_or_default())
    }

    /// This config with dotted `overrides` applied (`train.lr`, `models.mmoe.experts`…),
    /// read and validated again; an override that does not fit names its key.
    pub fn with_overrides(
        &self,
        overrides: &[(String, toml::Value)],
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table =
            toml::from_str(&self.to_toml_string()).map_err(|e| ConfigError::Parse {
                file: self.source_file.clone(),
                message: e.to_string(),
            })?;
        for (k, v) in overrides {
            set_dotted(&mut doc, k, v.clone())
                .map_err(|m| ConfigError::invalid(&self.source_file, k.clone(), m))?;
        }
        let text = toml::to_string(&doc).map_err(|e| ConfigError::Parse {
            file: self.source_file.clone(),
            message: e.to_string(),
        })?;
        let base = self.source_file.parent().unwrap_or(Path::new("."));
        Config::from_toml_str(&text, &self.source_file, base).map_err(|e| match e {
            ConfigError::Parse { file, message } => ConfigError::Invalid {
                file,
                key: overrides
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: format!("with these overrides: {message}"),
            },
            e => e,
        })
    }

    /// The config as TOML, with every default spelled out and every path absolute: what a
    /// model folder stores so that it can be evaluated later from anywhere.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("a validated config always serialises")
    }

    fn resolve_paths(&mut self, base: &Path) {
        // Absolute against the working directory now, so that the config a model folder
        // stores names the same files from any working directory later.
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let abs = |p: &mut PathBuf| {
            if p.is_relative() && !is_object_url(p) {
                *p = base.join(&*p);
            }
        };
        for s in &mut self.data.sources {
            abs(s);
        }
        for t in &mut self.data.side_tables {
            abs(&mut t.path);
        }
        for split in self.splits.values_mut() {
            if let Some(rows) = &mut split.rows {
                abs(rows);
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        schema::validate(self)
    }

    /// The task grid (behaviours × facet cells) this config describes.
    pub fn grid(&self) -> TaskGrid {
        TaskGrid::new(self)
    }

    /// The model section to train: `name` if given, else `train.model`, else the only one.
    pub fn model_section(&self, name: Option<&str>) -> Result<(&str, &toml::Table), ConfigError> {
        let wanted = name.or(self.train.model.as_deref());
        match wanted {
            Some(n) => self
                .models
                .get_key_value(n)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| {
                    let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
                    ConfigError::invalid(
                        &self.source_file,
                        format!("models.{n}"),
                        format!(
                            "no such model section; the config has: {}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    )
                }),
            None if self.models.len() == 1 => {
                let (k, v) = self.models.iter().next().unwrap();
                Ok((k.as_str(), v))
            }
            None => Err(ConfigError::invalid(
                &self.source_file,
                "train.model",
                "several model sections exist: name one with `train.model` or --model",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
