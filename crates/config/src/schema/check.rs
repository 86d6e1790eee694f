//! What every section's checks share: the file a config error names, and the small tests
//! over values that more than one section makes.

use crate::ConfigError;
use std::path::Path;

/// The file being checked; each section reports through it, naming the key at fault.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check<'a> {
    file: &'a Path,
}

impl<'a> Check<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Check { file }
    }

    /// The error for `key`, saying what to fix.
    pub(crate) fn fail<T>(
        &self,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::invalid(self.file, key, message))
    }
}

/// Finite, and each value above the one before (thresholds, bucket boundaries).
pub(crate) fn strictly_increasing(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite()) && v.windows(2).all(|w| w[0] < w[1])
}

/// `a, b, c`, or `none`: what a message lists as the names there are.
pub(crate) fn join_or_none<'a>(
    it: impl Iterator<Item = &'a (impl AsRef<str> + 'a + ?Sized)>,
) -> String {
    let v: Vec<&str> = it.map(|s| s.as_ref()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
