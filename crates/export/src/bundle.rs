//! The export's three paths (`FILE`, `FILE.rows/`, `FILE.io.json`) written as one
//! bundle, so that a crash, a full disk or a failed write never leaves a new graph beside
//! old row maps.
//!
//! Every file is first written and fsynced into a temp folder beside `FILE`
//! (`.FILE.tmp-PID-N/`: the same file system, so that moving is renaming), and the folder
//! is fsynced. Then, under an advisory lock on FILE's folder (one export moving in at a
//! time), the parts move in: the old row maps aside into the temp folder, the new row
//! maps in, the graph over the old graph, the folder fsynced, `FILE.io.json` last. A
//! failure while moving puts back what had moved (the old graph was hard-linked into the
//! temp folder first), so a failed export leaves the previous bundle as it was; the temp
//! folder is then removed. Three paths cannot change in one rename: a reader reading
//! meanwhile, or after a crash while moving, can meet a mix. io.json, written last, lists
//! the checksum of every other file and the bundle's id, which the graph also carries
//! (ONNX metadata [`BUNDLE_KEY`]), so [`verify`] (or a caller comparing the two ids)
//! tells a mix from a bundle.
//!
//! Temp folders of other exports to the same `FILE` (one still running, or one cut short
//! by a crash) are left alone and reported: only the export that made a temp folder
//! removes it.
//!
//! Not here: what the files hold (the crate root).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The ONNX metadata key (`metadata_props`) whose value is the bundle id, the same as
/// io.json's `bundle.id`.
pub const BUNDLE_KEY: &str = "mfh_bundle";

/// An export's files under their temp names, in the temp folder.
const NEW: &str = "new";
/// The previous bundle's graph and row maps while the new ones move in.
const OLD: &str = "old";
const GRAPH: &str = "graph.onnx";
const ROWS: &str = "rows";
const IO: &str = "io.json";

/// The steps an export can fail at, for the tests' injected failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Staging io.json, after the graph and the row maps.
    Stage,
    RowsAside,
    RowsIn,
    GraphIn,
    IoIn,
}

#[cfg(test)]
thread_local! {
    static FAIL_AT: std::cell::Cell<Option<Step>> = const { std::cell::Cell::new(None) };
}

fn fail_point(step: Step) -> Result<()> {
    #[cfg(test)]
    if FAIL_AT.get() == Some(step) {
        bail!("injected failure at {step:?}");
    }
    let _ = step;
    Ok(())
}

/// A file's checksum as io.json lists it: xxh3-64 of its bytes, 16 hex digits.
fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxh3_64(bytes))
}

/// The destination paths, and what io.json calls the graph and the row maps.
struct Targets {
    dir: PathBuf,
    onnx: PathBuf,
    rows: PathBuf,
    io: PathBuf,
    onnx_key: String,
    rows_key: String,
}

impl Targets {
    fn new(onnx: &Path) -> Result<Self> {
        let name = onnx
            .file_name()
            .ok_or_else(|| anyhow!("{}: not a file path", onnx.display()))?;
        let dir = match onnx.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (rows, io) = crate::sidecar_paths(onnx);
        let key = |p: &Path| {
            p.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Ok(Self {
            onnx_key: name.to_string_lossy().into_owned(),
            rows_key: key(&rows),
            dir,
            onnx: onnx.to_path_buf(),
            rows,
            io,
        })
    }

    /// `.FILE.tmp-`: the start of the name of every export's temp folder for `FILE`.
    fn tmp_prefix(&self) -> OsString {
        let mut p = OsString::from(".");
        p.push(self.onnx.file_name().unwrap_or_default());
        p.push(".tmp-");
        p
    }
}

/// What a committed export wrote.
#[derive(Debug)]
pub(crate) struct Committed {
    pub id: String,
    pub onnx_bytes: usize,
    /// Other exports' temp folders for the same `FILE`, left as they are.
    pub other_temps: Vec<PathBuf>,
}

/// A bundle being written: its temp folder and the checksum of each file staged so far.
/// Dropped uncommitted, it removes its temp folder.
pub(crate) struct Stage {
    t: Targets,
    tmp: PathBuf,
    /// Path relative to FILE's folder → checksum: what io.json's `bundle.files` lists.
    listed: BTreeMap<String, String>,
    /// Whether dropping removes the temp folder: not once it holds the only copy of the
    /// previous bundle's parts (putting them back failed).
    remove: bool,
}

impl Stage {
    /// Makes this export's temp folder `.FILE.tmp-PID-N/` beside `onnx` (never one that
    /// exists).
    pub fn new(onnx: &Path) -> Result<Self> {
        let t = Targets::new(onnx)?;
        let pid = std::process::id();
        let mut n = 0u32;
        let tmp = loop {
            let mut name = t.tmp_prefix();
            name.push(format!("{pid}-{n}"));
            let p = t.dir.join(name);
            match std::fs::create_dir(&p) {
                Ok(()) => break p,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("{}: cannot create the export's temp folder", p.display())
                    })
                }
            }
        };
        let stage = Self {
            t,
            tmp,
            listed: BTreeMap::new(),
            remove: true,
        };
        let rows = stage.tmp.join(NEW).join(ROWS);
        std::fs::create_dir_all(&rows)
            .with_context(|| format!("{}: cannot create", rows.display()))?;
        Ok(stage)
    }

    /// Stages one row map, `FILE.rows/NAME` once moved in.
    pub fn write_row_map(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        mfh_artifact::write_atomic(&self.tmp.join(NEW).join(ROWS), name, bytes)?;
        self.listed
            .insert(format!("{}/{name}", self.t.rows_key), checksum(bytes));
        Ok(())
    }

    /// Stages the graph (tagged with the bundle id) and `io` (with `bundle`: the id and
    /// every other file's checksum), then moves the bundle in. Call after the row maps.
    pub fn commit(mut self, mut graph: Vec<u8>, mut io: Value) -> Result<Committed> {
        let id = self.bundle_id(&graph);
        let tag = crate::onnx::metadata_entry(BUNDLE_KEY, &id);
        // Exactly: a large graph's buffer must not double for a few bytes.
        graph.reserve_exact(tag.len());
        graph.extend_from_slice(&tag);
        let new = self.tmp.join(NEW);
        mfh_artifact::write_atomic(&new, GRAPH, &graph)?;
        self.listed
            .insert(self.t.onnx_key.clone(), checksum(&graph));
        io["bundle"] = json!({
            "id": id,
            "checksums": "xxh3_64 of each file's bytes; a file that differs is another export's",
            "files": self.listed,
        });
        fail_point(Step::Stage)?;
        mfh_artifact::write_atomic(
            &new,
            IO,
            (serde_json::to_string_pretty(&io)? + "\n").as_bytes(),
        )?;
        sync_dir(&self.tmp);
        let other_temps = self.other_temps();
        self.move_in()?;
        self.remove = false;
        std::fs::remove_dir_all(&self.tmp).with_context(|| {
            format!(
                "{}: the export is in place, but its temp folder cannot be removed",
                self.tmp.display()
            )
        })?;
        sync_dir(&self.t.dir);
        Ok(Committed {
            id,
            onnx_bytes: graph.len(),
            other_temps,
        })
    }

    /// The bundle id: xxh3-64 over the untagged graph's checksum and each row map's path
    /// and checksum.
    fn bundle_id(&self, untagged: &[u8]) -> String {
        let mut text = format!("{}\n", checksum(untagged));
        for (path, sum) in &self.listed {
            text.push_str(&format!("{path} {sum}\n"));
        }
        checksum(text.as_bytes())
    }

    fn other_temps(&self) -> Vec<PathBuf> {
        let prefix = self.t.tmp_prefix();
        let Ok(rd) = std::fs::read_dir(&self.t.dir) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .as_encoded_bytes()
                    .starts_with(prefix.as_encoded_bytes())
            })
            .map(|e| e.path())
            .filter(|p| p.file_name() != self.tmp.file_name())
            .collect();
        found.sort();
        found
    }

    /// Moves the staged bundle in (see the module doc); on failure puts back what moved.
    fn move_in(&mut self) -> Result<()> {
        let (new, old) = (self.tmp.join(NEW), self.tmp.join(OLD));
        std::fs::create_dir(&old).with_context(|| format!("{}: cannot create", old.display()))?;
        let _lock = lock_folder(&self.t.dir);
        let kept_graph = keep(&self.t.onnx, &old.join(GRAPH))?;
        let t = &self.t;
        let mut done = Vec::new();
        let moved = (|| -> Result<()> {
            if t.rows.symlink_metadata().is_ok() {
                rename(Step::RowsAside, &t.rows, &old.join(ROWS))?;
                done.push(Step::RowsAside);
            }
            rename(Step::RowsIn, &new.join(ROWS), &t.rows)?;
            done.push(Step::RowsIn);
            rename(Step::GraphIn, &new.join(GRAPH), &t.onnx)?;
            done.push(Step::GraphIn);
            // The row maps and the graph are durable before io.json names them.
            sync_dir(&t.dir);
            rename(Step::IoIn, &new.join(IO), &t.io)?;
            sync_dir(&t.dir);
            Ok(())
        })();
        let Err(e) = moved else {
            return Ok(());
        };
        let put_back = (|| -> Result<()> {
            for step in done.iter().rev() {
                match step {
                    Step::GraphIn if kept_graph => rename_back(&old.join(GRAPH), &t.onnx)?,
                    Step::GraphIn => std::fs::remove_file(&t.onnx)
                        .with_context(|| format!("{}: cannot remove", t.onnx.display()))?,
                    Step::RowsIn => rename_back(&t.rows, &new.join(ROWS))?,
                    Step::RowsAside => rename_back(&old.join(ROWS), &t.rows)?,
                    Step::Stage | Step::IoIn => {}
                }
            }
            sync_dir(&t.dir);
            Ok(())
        })();
        if let Err(u) = put_back {
            self.remove = false;
            return Err(e.context(format!(
                "the export failed while moving in, and putting back the previous bundle \
                 failed too ({u:#}): its graph and row maps are in {}",
                old.display()
            )));
        }
        Err(e)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

fn rename(step: Step, from: &Path, to: &Path) -> Result<()> {
    fail_point(step)?;
    std::fs::rename(from, to).with_context(|| {
        format!(
            "{}: cannot move into place (from {})",
            to.display(),
            from.display()
        )
    })
}

fn rename_back(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| {
        format!(
            "{}: cannot put back (from {})",
            to.display(),
            from.display()
        )
    })
}

/// Keeps the previous graph reachable at `keep` (a hard link, else a copy) so that a
/// failed move can put it back; false when there is no previous graph file.
fn keep(graph: &Path, keep: &Path) -> Result<bool> {
    match graph.symlink_metadata() {
        Ok(m) if !m.is_dir() => {}
        _ => return Ok(false),
    }
    if std::fs::hard_link(graph, keep).is_err() {
        std::fs::copy(graph, keep).with_context(|| {
            format!(
                "{}: cannot keep a copy of the previous graph at {}",
                graph.display(),
                keep.display()
            )
        })?;
    }
    Ok(true)
}

/// An advisory lock on `dir` while alive, where the platform and file system have one
/// (else none: exports to one folder must then not run at once).
fn lock_folder(dir: &Path) -> Option<std::fs::File> {
    let f = std::fs::File::open(dir).ok()?;
    f.lock().ok()?;
    Some(f)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Checks that the bundle at `onnx` (`onnx`, `onnx.rows/`, `onnx.io.json`) is one export,
/// whole: every file io.json's `bundle.files` lists has the listed checksum, the graph
/// among them. Returns the bundle id. An error names the first file that differs: a mix
/// of two exports (one interrupted while moving in, or one running now).
pub fn verify(onnx: &Path) -> Result<String> {
    let t = Targets::new(onnx)?;
    let text = std::fs::read(&t.io).with_context(|| format!("{}: cannot read", t.io.display()))?;
    let io: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: cannot parse", t.io.display()))?;
    let (Some(id), Some(files)) = (
        io["bundle"]["id"].as_str(),
        io["bundle"]["files"].as_object(),
    ) else {
        bail!(
            "{}: no `bundle` id and checksums (written by an mfh from before bundles)",
            t.io.display()
        );
    };
    if !files.contains_key(&t.onnx_key) {
        bail!(
            "{}: lists no `{}`: the description of another export",
            t.io.display(),
            t.onnx_key
        );
    }
    for (rel, want) in files {
        let safe = !rel.is_empty()
            && rel
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
        if !safe {
            bail!("{}: lists `{rel}`, not a path beside it", t.io.display());
        }
        let path = t.dir.join(rel);
        let have = file_checksum(&path)?;
        if Some(have.as_str()) != want.as_str() {
            bail!(
                "{}: not the file {} lists (checksum {have}, listed {want}): the bundle mixes \
                 two exports (one cut short while moving in, or one running now); export again",
                path.display(),
                t.io.display()
            );
        }
    }
    Ok(id.to_string())
}

/// [`checksum`] of a file, read in pieces (a graph can be large).
fn file_checksum(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:016x}", h.digest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path under `dir` (relative) with its bytes (`None` for a folder).
    fn snapshot(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if p.is_dir() {
                    out.insert(rel, None);
                    walk(root, &p, out);
                } else {
                    out.insert(rel, Some(std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    /// Exports a made-up bundle: `graph` and one row map per table.
    fn export(onnx: &Path, graph: &str, tables: &[(&str, &str)]) -> Result<Committed> {
        let mut stage = Stage::new(onnx)?;
        for (name, text) in tables {
            stage.write_row_map(name, text.as_bytes())?;
        }
        stage.commit(graph.as_bytes().to_vec(), json!({"onnx": "x.onnx"}))
    }

    const V1: &[(&str, &str)] = &[("a.csv", "key,row\n1,1\n"), ("b.csv", "key,row\n")];
    const V2: &[(&str, &str)] = &[
        ("a.csv", "key,row\n1,1\n2,2\n"),
        ("c.csv", "key,row\n3,1\n"),
    ];

    #[test]
    fn a_bundle_moves_in_whole_and_leaves_no_temp_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let onnx = tmp.path().join("x.onnx");
        let c1 = export(&onnx, "graph one", V1).unwrap();
        assert!(c1.other_temps.is_empty());
        assert_eq!(verify(&onnx).unwrap(), c1.id);
        let names: Vec<String> = snapshot(tmp.path()).into_keys().collect();
        assert_eq!(
            names,
            [
                "x.onnx",
                "x.onnx.io.json",
                "x.onnx.rows",
                "x.onnx.rows/a.csv",
                "x.onnx.rows/b.csv"
            ]
        );
        let graph = std::fs::read(&onnx).unwrap();
        assert!(graph.starts_with(b"graph one"));
        assert!(
            graph.ends_with(c1.id.as_bytes()),
            "the graph carries the id"
        );
        // A second export replaces every part: b.csv goes with the old row maps.
        let c2 = export(&onnx, "graph two", V2).unwrap();
        assert_ne!(c1.id, c2.id);
        assert_eq!(verify(&onnx).unwrap(), c2.id);
        let after = snapshot(tmp.path());
        let names: Vec<&str> = after.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "x.onnx",
                "x.onnx.io.json",
                "x.onnx.rows",
                "x.onnx.rows/a.csv",
                "x.onnx.rows/c.csv"
            ]
        );
        assert_eq!(
            after["x.onnx.rows/a.csv"].as_deref(),
            Some(&b"key,row\n1,1\n2,2\n"[..])
        );
        // The same content is the same id.
        let again = tempfile::tempdir().unwrap();
        let c3 = export(&again.path().join("x.onnx"), "graph two", V2).unwrap();
        assert_eq!(c3.id, c2.id);
    }

    #[test]
    fn a_failure_at_any_step_leaves_the_previous_bundle_byte_identical() {
        for step in [
            Step::Stage,
            Step::RowsAside,
            Step::RowsIn,
            Step::GraphIn,
            Step::IoIn,
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let onnx = tmp.path().join("x.onnx");
            let id = export(&onnx, "graph one", V1).unwrap().id;
            let before = snapshot(tmp.path());
            FAIL_AT.set(Some(step));
            let err = export(&onnx, "graph two", V2).err();
            FAIL_AT.set(None);
            let err = err.unwrap_or_else(|| panic!("{step:?}: the export did not fail"));
            assert!(format!("{err:#}").contains("injected"), "{step:?}: {err:#}");
            // No temp folder either: the snapshot holds every path.
            assert_eq!(snapshot(tmp.path()), before, "{step:?}");
            assert_eq!(verify(&onnx).unwrap(), id, "{step:?}");
        }
    }

    #[test]
    fn a_failed_first_export_leaves_nothing() {
        for step in [Step::Stage, Step::RowsIn, Step::GraphIn, Step::IoIn] {
            let tmp = tempfile::tempdir().unwrap();
            FAIL_AT.set(Some(step));
            let r = export(&tmp.path().join("x.onnx"), "graph one", V1);
            FAIL_AT.set(None);
            assert!(r.is_err(), "{step:?}");
            assert!(snapshot(tmp.path()).is_empty(), "{step:?}");
        }
    }

    #[test]
    fn a_folder_where_io_json_goes_fails_the_export_and_keeps_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let onnx = tmp.path().join("x.onnx");
        export(&onnx, "graph one", V1).unwrap();
        std::fs::remove_file(tmp.path().join("x.onnx.io.json")).unwrap();
        std::fs::create_dir_all(tmp.path().join("x.onnx.io.json/inside")).unwrap();
        let before = snapshot(tmp.path());
        let err = export(&onnx, "graph two", V2).unwrap_err();
        assert!(
            format!("{err:#}").contains("x.onnx.io.json: cannot move into place"),
            "{err:#}"
        );
        assert_eq!(snapshot(tmp.path()), before);
    }

    #[test]
    fn verify_tells_a_mix_of_two_exports() {
        let tmp = tempfile::tempdir().unwrap();
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        std::fs::create_dir_all(&one).unwrap();
        std::fs::create_dir_all(&two).unwrap();
        export(&one.join("x.onnx"), "graph one", V1).unwrap();
        export(&two.join("x.onnx"), "graph two", V1).unwrap();
        // A crash after the graph moved in, before io.json: the new graph, the old io.json.
        std::fs::copy(two.join("x.onnx"), one.join("x.onnx")).unwrap();
        let err = verify(&one.join("x.onnx")).unwrap_err();
        assert!(format!("{err:#}").contains("mixes two exports"), "{err:#}");
        // The row maps of another export.
        export(&one.join("x.onnx"), "graph one", V1).unwrap();
        std::fs::write(one.join("x.onnx.rows/a.csv"), "key,row\n9,1\n").unwrap();
        let err = verify(&one.join("x.onnx")).unwrap_err();
        assert!(
            format!("{err:#}").contains("a.csv: not the file"),
            "{err:#}"
        );
        // An io.json without a bundle (an older export).
        std::fs::write(one.join("x.onnx.io.json"), "{}").unwrap();
        assert!(verify(&one.join("x.onnx")).is_err());
    }

    #[test]
    fn another_exports_temp_folder_is_left_alone_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join(".x.onnx.tmp-4000000-0");
        std::fs::create_dir_all(theirs.join("new/rows")).unwrap();
        std::fs::write(theirs.join("new/graph.onnx"), "half a graph").unwrap();
        let other_file = tmp.path().join(".y.onnx.tmp-4000000-0");
        std::fs::create_dir_all(&other_file).unwrap();
        let before = snapshot(tmp.path());
        let c = export(&tmp.path().join("x.onnx"), "graph one", V1).unwrap();
        assert_eq!(c.other_temps, std::slice::from_ref(&theirs));
        let after = snapshot(tmp.path());
        for (path, bytes) in &before {
            assert_eq!(after.get(path), Some(bytes), "{path}");
        }
        assert_eq!(after.len(), before.len() + 5, "{:?}", after.keys());
    }
}
