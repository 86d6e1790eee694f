//! Publishing the model as it trains into a serving root: numbered version folders with a
//! `DONE` marker, the layout `mfh serve --model-dir ROOT` hot-reloads (TF-Serving style).
//!
//! A version is written as any model folder is (files committed atomically), then its
//! `DONE` file is written and synced: the server never sees a version without every file.
//! Versions count up from one more than the highest numbered folder already in the root
//! (published or not, so that an interrupted publish is never overwritten), and after
//! each publish only the newest `keep` published versions stay (older ones are removed;
//! a server that loaded one keeps it in memory). The published model is the current
//! state at that step, not the best-scoring one (`out/` holds that).

use crate::ctx::Ctx;
use crate::engine::Engine;
use anyhow::{Context, Result};
use mfh_artifact::ModelState;
use std::path::{Path, PathBuf};

/// Where and how often to publish (`mfh train --publish ROOT`).
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub root: PathBuf,
    /// Publish every this many steps (and at the end of the run); 0: only at the end.
    pub every: u64,
    /// Published versions kept in the root (at least 1).
    pub keep: usize,
}

/// The numbered folders of `root` (any content), ascending.
fn numbered(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("{}: cannot list the serving root", root.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u64 = e.file_name().to_str()?.parse().ok()?;
            e.path().is_dir().then(|| (v, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Writes the current model as the next version of `p.root` (collective: rank 0 writes),
/// marks it published and prunes the old ones. Returns the version.
pub(crate) fn publish(
    ctx: &Ctx,
    eng: &mut dyn Engine,
    state: &mut ModelState,
    step: u64,
    p: &Publish,
) -> Result<u64> {
    let lead = eng.rank() == 0;
    let next = if lead {
        std::fs::create_dir_all(&p.root)
            .with_context(|| format!("{}: cannot create the serving root", p.root.display()))
            .and_then(|_| numbered(&p.root))
            .map(|v| v.last().map_or(1, |(n, _)| n + 1))
    } else {
        Ok(0)
    };
    let ok = eng.all_ok(next.is_ok());
    let next = next?;
    if !ok {
        anyhow::bail!("rank 0 could not prepare the serving root (see its error)");
    }
    let mut v = vec![next];
    eng.broadcast_u64(&mut v);
    let version = v[0];
    let dir = p.root.join(version.to_string());
    eng.save_model(state, &dir, &ctx.save_info(step, None, "{}"))
        .with_context(|| format!("publishing version {version} to {}", dir.display()))?;
    let r = if lead {
        mark_done(&dir).and_then(|_| prune(&p.root, p.keep))
    } else {
        Ok(())
    };
    eng.agree(r, "rank 0 could not publish the version")?;
    Ok(version)
}

/// Writes and syncs `dir/DONE` (and the folder, so the marker survives a crash).
fn mark_done(dir: &Path) -> Result<()> {
    let path = dir.join("DONE");
    let f = std::fs::File::create(&path)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    f.sync_all()
        .with_context(|| format!("{}: cannot sync", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes all but the newest `keep` published versions.
fn prune(root: &Path, keep: usize) -> Result<()> {
    let published: Vec<(u64, PathBuf)> = numbered(root)?
        .into_iter()
        .filter(|(_, d)| d.join("DONE").is_file())
        .collect();
    let drop = published.len().saturating_sub(keep.max(1));
    for (_, d) in &published[..drop] {
        // The marker first: a half-removed folder is never taken for a published one.
        std::fs::remove_file(d.join("DONE"))
            .and_then(|_| std::fs::remove_dir_all(d))
            .with_context(|| format!("{}: cannot remove an old version", d.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_published_versions_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for v in [1, 2, 3, 5, 7] {
            std::fs::create_dir_all(root.join(v.to_string())).unwrap();
            if v != 7 {
                std::fs::write(root.join(format!("{v}/DONE")), "").unwrap();
            }
        }
        std::fs::create_dir_all(root.join("notes")).unwrap();
        prune(root, 2).unwrap();
        let left: Vec<u64> = numbered(root)
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        // 7 is not published (no DONE): neither counted nor removed.
        assert_eq!(left, [3, 5, 7]);
        assert!(root.join("notes").is_dir());
        prune(root, 0).unwrap();
        let left: Vec<u64> = numbered(root)
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(left, [5, 7], "at least one version stays");
    }
}
