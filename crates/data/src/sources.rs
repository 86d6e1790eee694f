//! The files a config's `data.sources` name: literal paths and globs expanded in order,
//! and the hive-style partition values (`date=20220428/`) each file's path carries for
//! the columns `data.partitions` declares.
//!
//! The rules (docs/config.md, `[data]`):
//! - an entry that names an existing file is that file; otherwise an entry with a glob
//!   character (`*`, `?`, `[`) is expanded with the `glob` crate, matches in path order,
//!   names starting with `_` or `.` (`_SUCCESS`, `.part-0.crc`) left out, folders left
//!   out; a pattern that matches no file is an error naming its key;
//! - a file listed twice (by two patterns) is an error: its rows would be read twice;
//! - each declared partition must appear exactly once among the folders of each file's
//!   path, as `name=value`; the value is percent-decoded as Hive writes it, and Hive's
//!   `__HIVE_DEFAULT_PARTITION__` (a null key) is a missing cell.

use crate::error::DataError;
use crate::record::ColumnUse;
use crate::rows::{read_header, RowReader};
use mfh_config::{Config, CsvOptions, PartitionType};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Hive's folder value for a null partition key.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// The source files in reading order, with their partition values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceFiles {
    pub files: Vec<PathBuf>,
    /// The partition columns (`data.partitions`' names, sorted).
    pub columns: Vec<String>,
    /// Per file, one value per partition column (`None`: Hive's null key).
    pub values: Vec<Vec<Option<Vec<u8>>>>,
}

impl SourceFiles {
    /// Lists the files of `cfg.data.sources` and reads their partition values.
    pub fn list(cfg: &Config) -> Result<SourceFiles, DataError> {
        let d = &cfg.data;
        let at = |key: String, message: String| {
            DataError::config(format!(
                "{}: key `{key}`: {message}",
                cfg.source_file.display()
            ))
        };
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        for (i, src) in d.sources.iter().enumerate() {
            let key = format!("data.sources[{i}]");
            let text = src.to_string_lossy();
            let matched = if !text.contains(['*', '?', '[']) || crate::store::is_file(src) {
                vec![src.clone()]
            } else {
                expand(&text).map_err(|m| at(key.clone(), m))?
            };
            if matched.is_empty() {
                return Err(at(key, format!("the pattern `{text}` matches no file")));
            }
            for f in matched {
                if !seen.insert(f.clone()) {
                    return Err(at(
                        key,
                        format!(
                            "{} is listed twice (its rows would be read twice)",
                            f.display()
                        ),
                    ));
                }
                files.push(f);
            }
        }
        SourceFiles::with_partitions(files, &d.partitions)
    }

    /// Files given one by one (`mfh predict --data`), with the values of the partition
    /// columns `partitions` declares read from their paths, as for the sources.
    pub fn with_partitions(
        files: Vec<PathBuf>,
        partitions: &BTreeMap<String, PartitionType>,
    ) -> Result<SourceFiles, DataError> {
        let mut values = Vec::with_capacity(files.len());
        for f in &files {
            let mut row = Vec::with_capacity(partitions.len());
            for (name, ty) in partitions {
                row.push(partition_value(f, name, *ty)?);
            }
            values.push(row);
        }
        Ok(SourceFiles {
            files,
            columns: partitions.keys().cloned().collect(),
            values,
        })
    }

    /// The main table's columns: every file's header, which must equal the first's, then
    /// the partition columns (a file column with a partition's name is an error).
    /// Returns them and how many the files hold themselves.
    pub(crate) fn header(&self, opts: &CsvOptions) -> Result<(Vec<String>, usize), DataError> {
        let Some(first) = self.files.first() else {
            return Err(DataError::config("no data files given"));
        };
        let columns = read_header(first, opts)?;
        for f in &self.files[1..] {
            if read_header(f, opts)? != columns {
                return Err(DataError::file(
                    f,
                    "header",
                    format!(
                        "its columns differ from those of {}; all sources must share one header",
                        first.display()
                    ),
                ));
            }
        }
        let own = columns.len();
        Ok((self.with_partition_columns(first, columns)?, own))
    }

    /// `columns` (the header of `file`, one of these files) with the partition columns
    /// after them; a file column with a partition's name is an error.
    pub(crate) fn with_partition_columns(
        &self,
        file: &Path,
        mut columns: Vec<String>,
    ) -> Result<Vec<String>, DataError> {
        if let Some(c) = self.columns.iter().find(|c| columns.contains(c)) {
            return Err(DataError::file(
                file,
                "header",
                format!("column `{c}` is in the file and is also a partition (`data.partitions.{c}`); rename one"),
            ));
        }
        columns.extend(self.columns.iter().cloned());
        Ok(columns)
    }

    /// A reader of these files' rows, each followed by its file's partition values;
    /// `n_columns` counts the files' own cells, `used` the ones a pass reads (Parquet
    /// decodes only those).
    pub(crate) fn reader(
        &self,
        opts: CsvOptions,
        n_columns: usize,
        used: Option<Vec<ColumnUse>>,
    ) -> RowReader {
        let partitions = if self.columns.is_empty() {
            Vec::new()
        } else {
            self.values.clone()
        };
        RowReader::new(self.files.clone(), opts, n_columns).with_partitions(partitions, used)
    }

    /// The files (and their values) at `keep`'s positions, in order.
    pub fn subset(&self, keep: &[usize]) -> SourceFiles {
        SourceFiles {
            files: keep.iter().map(|&i| self.files[i].clone()).collect(),
            columns: self.columns.clone(),
            values: keep.iter().map(|&i| self.values[i].clone()).collect(),
        }
    }
}

/// The files a glob matches, in path order, without folders and hidden or `_` names.
fn expand(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let visible = |p: &Path| !p.file_name().is_some_and(|n| hidden(&n.to_string_lossy()));
    if let Some(objects) = crate::store::list_objects(&glob_root(pattern)) {
        // Objects: list the folder above the first glob character, match the keys.
        let glob =
            glob::Pattern::new(pattern).map_err(|e| format!("`{pattern}` is not a glob: {e}"))?;
        let objects = objects.map_err(|e| e.to_string())?;
        return Ok(objects
            .into_iter()
            .filter(|p| visible(p) && glob.matches_with(&p.to_string_lossy(), opts))
            .collect());
    }
    let paths =
        glob::glob_with(pattern, opts).map_err(|e| format!("`{pattern}` is not a glob: {e}"))?;
    let mut out = Vec::new();
    for p in paths {
        let p = p.map_err(|e| format!("while listing `{pattern}`: {e}"))?;
        if visible(&p) && p.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

/// The folders of `pattern` before the first one with a glob character.
fn glob_root(pattern: &str) -> PathBuf {
    let end = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    PathBuf::from(&pattern[..pattern[..end].rfind('/').map_or(0, |i| i + 1)])
}

/// A writer's marker, temporary or checksum file or folder (`_SUCCESS`, `_temporary`,
/// `.part-0.crc`): never data.
fn hidden(name: &str) -> bool {
    name.starts_with(['.', '_'])
}

/// The value of partition `name` in `file`'s folders, checked against its type.
fn partition_value(
    file: &Path,
    name: &str,
    ty: PartitionType,
) -> Result<Option<Vec<u8>>, DataError> {
    let mut found: Option<String> = None;
    let prefix = format!("{name}=");
    for part in file.parent().into_iter().flat_map(|p| p.components()) {
        let part = part.as_os_str().to_string_lossy();
        let Some(raw) = part.strip_prefix(&prefix) else {
            continue;
        };
        if found.is_some() {
            return Err(DataError::file(
                file,
                "partition",
                format!("partition `{name}` appears twice among the folders of the path"),
            ));
        }
        found = Some(percent_decode(raw).ok_or_else(|| {
            DataError::file(
                file,
                "partition",
                format!("partition `{name}`: `{raw}` is not valid percent-encoded UTF-8"),
            )
        })?);
    }
    let Some(value) = found else {
        return Err(DataError::file(
            file,
            "partition",
            format!("no `{name}=…` folder in the path, and `data.partitions` declares `{name}`"),
        ));
    };
    if value == HIVE_NULL {
        return Ok(None);
    }
    if !ty.admits(&value) {
        let want = match ty {
            PartitionType::Int => "a whole number",
            PartitionType::Float => "a finite number",
            PartitionType::String => unreachable!("a string partition admits any value"),
        };
        return Err(DataError::file(
            file,
            "partition",
            format!(
                "partition `{name}` = `{value}` is not {want}, as `data.partitions.{name}` says"
            ),
        ));
    }
    Ok(Some(value.into_bytes()))
}

/// `%XX` escapes (as Hive writes `/`, `=`, `%`, `:` …) decoded; `None` for a broken
/// escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The complete data files under `dir` (any depth), in path order: a file is complete
/// when it is in place under a visible name — writers write under a hidden name (`.x`,
/// `_x`) and rename, and names and folders starting with `.` or `_` (`_temporary`,
/// `_SUCCESS`, `.part-0.crc`) are never taken — and, with `success`, when its folder
/// also holds a `_SUCCESS` marker (a partition written as a whole). Symbolic links to
/// files are taken; links to folders are not followed (no cycles).
pub fn complete_files(dir: &Path, success: bool) -> Result<Vec<PathBuf>, DataError> {
    if let Some(objects) = crate::store::list_objects(dir) {
        // Objects appear whole (a PUT is atomic); the same names are left out, and a
        // `_SUCCESS` object marks its folder.
        let objects = objects?;
        let folder = |p: &Path| p.parent().map(Path::to_path_buf);
        let marked: HashSet<_> = objects
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "_SUCCESS"))
            .map(|p| folder(p))
            .collect();
        return Ok(objects
            .iter()
            .filter(|p| {
                let below = p.strip_prefix(dir).unwrap_or(p);
                below
                    .components()
                    .all(|c| c.as_os_str().to_str().is_some_and(|n| !hidden(n)))
                    && (!success || marked.contains(&folder(p)))
            })
            .cloned()
            .collect());
    }
    fn walk(d: &Path, success: bool, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        let rd = std::fs::read_dir(d)
            .map_err(|e| DataError::file(d, "io", format!("cannot list the folder: {e}")))?;
        let mut entries = Vec::new();
        for e in rd {
            let e =
                e.map_err(|e| DataError::file(d, "io", format!("cannot list the folder: {e}")))?;
            let real_dir = e.file_type().is_ok_and(|t| t.is_dir());
            entries.push((e.path(), real_dir));
        }
        entries.sort();
        let marked = !success || d.join("_SUCCESS").is_file();
        for (p, real_dir) in entries {
            // A name that is not UTF-8 could not be recorded for a resume: left out too.
            if p.file_name().and_then(|n| n.to_str()).is_none_or(hidden) {
                continue;
            }
            if real_dir {
                walk(&p, success, out)?;
            } else if marked && p.is_file() {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, success, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_and_broken_ones_fail() {
        assert_eq!(percent_decode("a%3Db%2Fc").as_deref(), Some("a=b/c"));
        assert_eq!(
            percent_decode("2022-04-28 10%3A00").as_deref(),
            Some("2022-04-28 10:00")
        );
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn a_partition_value_comes_from_its_folder_and_is_typed() {
        let f = Path::new("/logs/date=20220428/hour=07/part-0.csv");
        let v = |name, ty| partition_value(f, name, ty).unwrap().unwrap();
        assert_eq!(v("date", PartitionType::Int), b"20220428");
        assert_eq!(v("hour", PartitionType::String), b"07");
        let e = partition_value(f, "scene", PartitionType::String).unwrap_err();
        assert!(e.to_string().contains("no `scene=…` folder"), "{e}");
        let g = Path::new("/logs/date=2022-04-28/part-0.csv");
        let e = partition_value(g, "date", PartitionType::Int).unwrap_err();
        assert!(e.to_string().contains("is not a whole number"), "{e}");
        assert!(e.to_string().contains("date=2022-04-28"), "{e}");
        let n = Path::new("/logs/date=__HIVE_DEFAULT_PARTITION__/part-0.csv");
        assert_eq!(
            partition_value(n, "date", PartitionType::Int).unwrap(),
            None
        );
        let twice = Path::new("/date=1/x/date=2/part-0.csv");
        assert!(partition_value(twice, "date", PartitionType::Int).is_err());
        // The file's own name is not a folder.
        let own = Path::new("/logs/date=1.csv");
        assert!(partition_value(own, "date", PartitionType::String).is_err());
    }

    #[cfg(feature = "s3")]
    #[test]
    fn object_globs_and_follow_listings_keep_the_local_rules() {
        use crate::store::remote::{put, register};
        use std::io::Read;
        register(
            "mem-list",
            std::sync::Arc::new(object_store::memory::InMemory::new()),
        );
        for key in [
            "logs/date=2/part-0.csv",
            "logs/date=1/part-1.csv",
            "logs/date=1/part-0.csv",
            "logs/date=1/_SUCCESS",
            "logs/date=1/.part-2.csv",
            "logs/date=1/part-0.csv.crc",
            "logs/_temporary/date=3/part-0.csv",
            "logsx/date=1/part-0.csv",
        ] {
            put("mem-list", key, key.as_bytes().to_vec());
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
        };
        assert_eq!(
            names(expand("s3://mem-list/logs/date=*/part-*.csv").unwrap()),
            [
                "s3://mem-list/logs/date=1/part-0.csv",
                "s3://mem-list/logs/date=1/part-1.csv",
                "s3://mem-list/logs/date=2/part-0.csv"
            ]
        );
        assert_eq!(
            names(expand("s3://mem-list/logs/date=1/*").unwrap()),
            [
                "s3://mem-list/logs/date=1/part-0.csv",
                "s3://mem-list/logs/date=1/part-0.csv.crc",
                "s3://mem-list/logs/date=1/part-1.csv"
            ]
        );
        assert!(expand("s3://mem-list/none/*.csv").unwrap().is_empty());
        let dir = Path::new("s3://mem-list/logs");
        assert_eq!(
            names(complete_files(dir, false).unwrap()),
            [
                "s3://mem-list/logs/date=1/part-0.csv",
                "s3://mem-list/logs/date=1/part-0.csv.crc",
                "s3://mem-list/logs/date=1/part-1.csv",
                "s3://mem-list/logs/date=2/part-0.csv"
            ]
        );
        assert_eq!(
            complete_files(dir, true).unwrap().len(),
            3,
            "date=2 has no _SUCCESS"
        );
        // Partition values come from the key's folders, as from a local path's.
        let f = Path::new("s3://mem-list/logs/date=2/part-0.csv");
        assert_eq!(
            partition_value(f, "date", PartitionType::Int)
                .unwrap()
                .unwrap(),
            b"2"
        );
        assert!(crate::store::is_file(f));
        assert!(!crate::store::is_file(Path::new(
            "s3://mem-list/logs/date=9/x.csv"
        )));
        let mut text = String::new();
        crate::store::open(f)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "logs/date=2/part-0.csv");
        let e = crate::store::open(Path::new("s3://mem-list/nope.csv"))
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("s3://mem-list/nope.csv: "), "{e}");
    }
}
