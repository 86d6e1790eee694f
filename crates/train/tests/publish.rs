//! `--publish ROOT`: numbered versions with DONE markers as the run trains, the newest
//! kept, never overwriting what a root already holds; each version is the model at its
//! step (the last one equals the run's final state, not its best-scoring one).

use mfh_artifact::load_model;
use mfh_train::{train, Publish};

mod common;
use common::{opts, setup};

fn versions(root: &std::path::Path) -> Vec<(u64, bool)> {
    let mut v: Vec<(u64, bool)> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let n: u64 = e.file_name().to_str()?.parse().ok()?;
            Some((n, e.path().join("DONE").is_file()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn versions_are_published_numbered_pruned_and_loadable() {
    let tmp = tempfile::tempdir().unwrap();
    // 600 train rows in batches of 32, stopped at step 20.
    let cfg = setup(
        tmp.path(),
        "p.toml",
        "epochs = 2\nmax_steps = 20\ncheckpoint_every = 0",
    );
    let root = tmp.path().join("serving");
    let mut o = opts(&tmp.path().join("out"));
    o.publish = Some(Publish {
        root: root.clone(),
        every: 6,
        keep: 2,
    });
    let s = train(&cfg, &o).unwrap();
    assert_eq!(s.steps, 20);
    // Steps 6, 12, 18 and the end (20): versions 1..=4, the newest two kept.
    assert_eq!(versions(&root), [(3, true), (4, true)]);
    let last = load_model(&root.join("4")).unwrap();
    let third = load_model(&root.join("3")).unwrap();
    assert_eq!(last.meta.step, 20);
    assert_eq!(third.meta.step, 18);
    // The final version is the last state: the model folder holds the best one, which
    // is another step's unless the best was the last.
    let best = load_model(&tmp.path().join("out")).unwrap();
    assert_eq!(best.meta.step, s.best_step);
    if best.meta.step != 20 {
        assert_ne!(
            std::fs::read(root.join("4/dense.bin")).unwrap(),
            std::fs::read(tmp.path().join("out/dense.bin")).unwrap()
        );
    }

    // A second run into the same root counts on (an unpublished folder left by an
    // interrupted publish is skipped, never overwritten).
    std::fs::create_dir_all(root.join("5")).unwrap();
    std::fs::write(root.join("5/partial"), "x").unwrap();
    o.publish = Some(Publish {
        root: root.clone(),
        every: 0,
        keep: 3,
    });
    o.out = tmp.path().join("out2");
    train(&cfg, &o).unwrap();
    assert_eq!(
        versions(&root),
        [(3, true), (4, true), (5, false), (6, true)]
    );
    assert!(root.join("5/partial").is_file());
    assert_eq!(load_model(&root.join("6")).unwrap().meta.step, 20);
}
