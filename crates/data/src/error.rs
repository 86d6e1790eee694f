//! Data errors that say where: file, line and column (with its name), and what was wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct DataError {
    pub file: PathBuf,
    /// 1-based line of the row, when the error is about one row.
    pub line: Option<u64>,
    /// 1-based column index and its name.
    pub column: Option<(usize, String)>,
    /// A short class of error, used to count skips (`not a number`, `wrong column count`…).
    pub kind: &'static str,
    pub message: String,
}

impl DataError {
    pub fn file(file: impl Into<PathBuf>, kind: &'static str, message: impl Into<String>) -> Self {
        DataError {
            file: file.into(),
            line: None,
            column: None,
            kind,
            message: message.into(),
        }
    }
    pub fn config(message: impl Into<String>) -> Self {
        DataError::file(PathBuf::new(), "config", message)
    }
    /// Whether `on_error = "skip"` may skip the row (as opposed to a broken file).
    pub fn is_row_error(&self) -> bool {
        self.line.is_some() && !matches!(self.kind, "io" | "config" | "gzip")
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.as_os_str().is_empty() {
            write!(f, "{}", self.file.display())?;
            if let Some(l) = self.line {
                write!(f, ":{l}")?;
                if let Some((c, _)) = &self.column {
                    write!(f, ":{c}")?;
                }
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some((_, name)) = &self.column {
            if !name.is_empty() {
                write!(f, " (column `{name}`)")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for DataError {}

/// Rows skipped under `on_error = "skip"`, by kind, with the first example of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkipCounts {
    pub by_kind: BTreeMap<String, (u64, String)>,
}

impl SkipCounts {
    pub fn add(&mut self, e: &DataError) {
        let entry = self
            .by_kind
            .entry(e.kind.to_string())
            .or_insert_with(|| (0, e.to_string()));
        entry.0 += 1;
    }
    pub fn total(&self) -> u64 {
        self.by_kind.values().map(|(n, _)| n).sum()
    }
    pub fn merge(&mut self, other: &SkipCounts) {
        for (k, (n, ex)) in &other.by_kind {
            let e = self
                .by_kind
                .entry(k.clone())
                .or_insert_with(|| (0, ex.clone()));
            e.0 += n;
        }
    }
    /// One line per kind: count, kind, first example.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for (k, (n, ex)) in &self.by_kind {
            s.push_str(&format!("  {n} rows skipped: {k} (first: {ex})\n"));
        }
        s
    }
}

/// Shortens a cell for messages (a 1 MB value must not flood the terminal).
pub(crate) fn preview(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.chars().count() > 40 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(40).collect::<String>(),
            v.len()
        )
    } else {
        s.into_owned()
    }
}
