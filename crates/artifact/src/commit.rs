//! The model folder's atomic save, and the checks a load makes of what it lists.
//!
//! A save is a two-phase commit, because the folder also holds what is not the model
//! (the trainer's `checkpoints/`) and so cannot be swapped whole: every file is first
//! written to the temp folder `.saving/` inside it and fsynced (files, then the folder);
//! then each is renamed into place, `model.json` last, and `.saving/` is removed. A crash
//! while staging leaves the previous model untouched (the stage is incomplete and is
//! discarded); a crash while renaming leaves a complete, fsynced stage, which the next
//! load or save finishes moving ("rolls forward") before reading. Loading checks every
//! checksum `model.json` lists.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

/// The temp folder inside a model folder where a save stages its files.
pub const STAGING: &str = ".saving";

/// What a staged `model.json` lists: every other file's xxh3-64 (hex).
#[derive(Deserialize)]
struct Listed {
    checksums: BTreeMap<String, String>,
}

/// Writes `bytes` to `dir/name` atomically: temp file, fsync, rename, fsync the folder.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })()
    .with_context(|| format!("{}: cannot write", dst.display()))
}

/// Saves `files` (paths in the folder, bytes; `model.json`, which lists every other
/// file's checksum, last) into the model folder `dir` by the two-phase commit above.
pub(crate) fn commit(dir: &Path, mut files: Vec<(String, Vec<u8>)>) -> Result<()> {
    // One writer at a time (a trainer saving, a load finishing an interrupted save).
    let _lock = lock(dir)?;
    // An earlier save that crashed while moving its files in is finished first, so the
    // folder holds one whole model while this one stages.
    roll_forward_locked(dir)?;
    // Phase 1: stage every file, fsynced, in the temp folder (what an unfinished
    // earlier stage left there is overwritten or removed); model.json last, under a
    // temporary name renamed once it is whole, so that its presence means the stage is.
    let stage = dir.join(STAGING);
    if stage.is_dir() {
        // A stale model.json goes first: only this save's may mark the stage whole.
        let names: std::collections::BTreeSet<&str> = files
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != "model.json")
            .collect();
        remove_stale(&stage, "", &names)?;
    }
    let Some((meta_name, meta_bytes)) = files.pop() else {
        bail!("no model.json to save");
    };
    for (name, bytes) in &files {
        let path = stage.join(name);
        let parent = path.parent().unwrap_or(&stage);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
        write_synced(&path, bytes)?;
    }
    sync_dir(&stage.join("tables"));
    sync_dir(&stage);
    let part = stage.join(".model.json.part");
    write_synced(&part, &meta_bytes)?;
    std::fs::rename(&part, stage.join(&meta_name))
        .with_context(|| format!("{}: cannot rename", part.display()))?;
    sync_dir(&stage);
    sync_dir(dir);
    // Phase 2: move them in, model.json last.
    roll_forward_locked(dir)
}

/// Holds the model folder's writer lock (`.saving.lock`, an advisory `flock`) while
/// alive.
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".saving.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open the folder's lock", path.display()))?;
    f.lock()
        .with_context(|| format!("{}: cannot lock", path.display()))?;
    Ok(f)
}

/// Removes what an unfinished stage holds besides `keep` (paths relative to the stage).
fn remove_stale(dir: &Path, prefix: &str, keep: &std::collections::BTreeSet<&str>) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for entry in rd {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        let ty = entry
            .file_type()
            .with_context(|| format!("{}: cannot stat", path.display()))?;
        if ty.is_dir() {
            remove_stale(&path, &format!("{rel}/"), keep)?;
        } else if !keep.contains(rel.as_str()) {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: cannot remove an unfinished save", path.display()))?;
        }
    }
    Ok(())
}

/// Writes and fsyncs one file (no rename: its folder is a stage nothing reads yet).
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .with_context(|| format!("{}: cannot write", path.display()))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Finishes a save whose stage is complete: moves what is still staged into place,
/// `model.json` last, and removes the stage. The stage counts as complete when its
/// `model.json` parses and every file it lists is in the stage, or already in the folder,
/// with its checksum; anything else is a stage cut short while staging, left for the
/// next save to discard (the folder's own files are then the previous, whole model).
/// Takes the folder's writer lock only when there is a stage to finish, so loading a
/// read-only folder writes nothing. Idempotent.
pub fn roll_forward(dir: &Path) -> Result<()> {
    if !dir.join(STAGING).join("model.json").is_file() {
        return Ok(());
    }
    let _lock = lock(dir)?;
    roll_forward_locked(dir)
}

fn roll_forward_locked(dir: &Path) -> Result<()> {
    let stage = dir.join(STAGING);
    let Ok(meta_bytes) = std::fs::read(stage.join("model.json")) else {
        return Ok(());
    };
    let Ok(meta) = serde_json::from_slice::<Listed>(&meta_bytes) else {
        return Ok(());
    };
    let sum = |p: &Path| {
        std::fs::read(p)
            .ok()
            .map(|b| format!("{:016x}", xxh3_64(&b)))
    };
    let mut staged = Vec::new();
    for (name, want) in &meta.checksums {
        if !safe_name(name) {
            return Ok(());
        }
        let (from, to) = (stage.join(name), dir.join(name));
        if from.is_file() {
            if sum(&from).as_deref() != Some(want.as_str()) {
                return Ok(());
            }
            staged.push(name.as_str());
        } else if sum(&to).as_deref() != Some(want.as_str()) {
            return Ok(());
        }
    }
    let mv = |name: &str| -> Result<()> {
        let from = stage.join(name);
        let to = dir.join(name);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        std::fs::rename(&from, &to).with_context(|| {
            format!(
                "{}: cannot move a saved file into place (from {})",
                to.display(),
                from.display()
            )
        })
    };
    for name in staged {
        mv(name)?;
    }
    sync_dir(&dir.join("tables"));
    // Every other file's rename is durable before model.json's.
    sync_dir(dir);
    mv("model.json")?;
    sync_dir(dir);
    std::fs::remove_dir_all(&stage)
        .with_context(|| format!("{}: cannot remove", stage.display()))?;
    sync_dir(dir);
    Ok(())
}

/// A path inside the model folder: relative, no empty, `.` or `..` component.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))
}
