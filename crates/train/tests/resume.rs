//! The training loop through the library (`mfh_train::train`): a resumed run ends with
//! the uninterrupted run's model bit for bit, a damaged newest checkpoint falls back to
//! the one before, a fresh run refuses an interrupted run's checkpoints, a warm start
//! begins from the model it is given, a stop request leaves a checkpoint the run resumes
//! from, and TensorBoard scalars are written as the run goes.

use mfh_config::Config;
use mfh_train::{
    checkpoint_name, load_checkpoint, train, Interrupted, LiveProgress, RunHooks, TrainOptions,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;
use common::{opts, setup};

fn ck(out: &Path, step: u64) -> PathBuf {
    out.join("checkpoints").join(checkpoint_name(step))
}

fn resume(out: &Path) -> TrainOptions {
    TrainOptions {
        resume: true,
        ..opts(out)
    }
}

const FILES: [&str; 4] = [
    "dense.bin",
    "embeddings.bin",
    "optimizer.bin",
    "metrics.json",
];

#[test]
fn a_resumed_run_ends_with_the_uninterrupted_model_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let full = setup(tmp.path(), "full.toml", "epochs = 2\ncheckpoint_every = 5");
    let short = setup(
        tmp.path(),
        "short.toml",
        "epochs = 2\nmax_steps = 21\ncheckpoint_every = 5",
    );
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let a = train(&full, &opts(&whole)).unwrap();
    let b0 = train(&short, &opts(&cut)).unwrap();
    // Cut at an evaluation (every 7 steps), so the stop adds none of its own.
    assert_eq!(b0.steps, 21);
    assert!(a.steps > 30, "two epochs: {}", a.steps);
    let b = train(&full, &resume(&cut)).unwrap();
    assert_eq!((a.steps, a.best_step), (b.steps, b.best_step));
    let steps = |s: &mfh_train::TrainSummary| s.history.iter().map(|h| h.0).collect::<Vec<_>>();
    assert_eq!(
        steps(&a),
        steps(&b),
        "the selection's history survives the resume"
    );
    assert_eq!(a.report.to_json(), b.report.to_json());
    for f in FILES {
        let x = std::fs::read(ck(&whole, a.steps).join(f)).unwrap();
        let y = std::fs::read(ck(&cut, b.steps).join(f)).unwrap();
        assert!(!x.is_empty() && x == y, "{f} differs after resuming");
    }
    for f in ["dense.bin", "embeddings.bin", "metrics.json"] {
        let x = std::fs::read(whole.join(f)).unwrap();
        let y = std::fs::read(cut.join(f)).unwrap();
        assert!(x == y, "the best model's {f} differs after resuming");
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_one_before() {
    let tmp = tempfile::tempdir().unwrap();
    let full = setup(tmp.path(), "full.toml", "epochs = 1\ncheckpoint_every = 5");
    let short = setup(
        tmp.path(),
        "short.toml",
        "epochs = 1\nmax_steps = 12\ncheckpoint_every = 5",
    );
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let a = train(&full, &opts(&whole)).unwrap();
    train(&short, &opts(&cut)).unwrap();
    // keep_last = 2: steps 10 and 12 (the stop's checkpoint). Damage step 12's rows.
    let newest = ck(&cut, 12);
    assert!(ck(&cut, 10).is_dir() && newest.is_dir());
    let emb = newest.join("embeddings.bin");
    let mut bytes = std::fs::read(&emb).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&emb, bytes).unwrap();
    assert!(load_checkpoint(&newest).is_err());
    let b = train(&full, &resume(&cut)).unwrap();
    assert_eq!(a.steps, b.steps);
    assert!(
        cut.join("checkpoints")
            .join(format!("unusable-{}", checkpoint_name(12)))
            .is_dir(),
        "the damaged checkpoint is set aside, not deleted"
    );
    for f in FILES {
        let x = std::fs::read(ck(&whole, a.steps).join(f)).unwrap();
        let y = std::fs::read(ck(&cut, b.steps).join(f)).unwrap();
        assert!(
            x == y,
            "{f} differs after resuming from the older checkpoint"
        );
    }
}

#[test]
fn a_fresh_run_refuses_an_interrupted_runs_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(
        tmp.path(),
        "c.toml",
        "epochs = 1\nmax_steps = 12\ncheckpoint_every = 5",
    );
    let out = tmp.path().join("m");
    train(&cfg, &opts(&out)).unwrap();
    let marker = out.join("checkpoints/complete");
    assert!(marker.is_file());
    // What a killed run leaves: checkpoints without the marker.
    std::fs::remove_file(&marker).unwrap();
    let e = format!("{:#}", train(&cfg, &opts(&out)).unwrap_err());
    assert!(
        e.contains("interrupted run") && e.contains("--resume"),
        "{e}"
    );
    assert!(ck(&out, 12).is_dir(), "the checkpoints are kept");
    train(&cfg, &resume(&out)).unwrap();
    assert!(marker.is_file(), "the resumed run finished");
    train(&cfg, &opts(&out)).unwrap();
}

#[test]
fn keep_last_zero_writes_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(
        tmp.path(),
        "c.toml",
        "epochs = 1\nmax_steps = 12\ncheckpoint_every = 5\nkeep_last = 0",
    );
    let out = tmp.path().join("m");
    train(&cfg, &opts(&out)).unwrap();
    assert!(out.join("model.json").is_file());
    let left: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_warm_start_begins_from_the_model_it_is_given() {
    // With both learning rates 1e-30 nothing moves measurably: the warm-started model's
    // dense weights and the rows it had are the initial model's (within 1e-20; training
    // at the usual rates moves them by ~1e-3).
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), "c.toml", "epochs = 1\nmax_steps = 12");
    let first = tmp.path().join("first");
    train(&cfg, &opts(&first)).unwrap();
    let frozen = setup(tmp.path(), "frozen.toml", "epochs = 1\nmax_steps = 6\n");
    let text = std::fs::read_to_string(&frozen.source_file)
        .unwrap()
        .replace("lr = 0.01", "lr = 1e-30")
        .replace("lr = 0.05", "lr = 1e-30");
    std::fs::write(&frozen.source_file, text).unwrap();
    let frozen = Config::load(&frozen.source_file).unwrap();
    let warm = tmp.path().join("warm");
    let s = train(
        &frozen,
        &TrainOptions {
            init_from: Some(first.clone()),
            seed: Some(99),
            ..opts(&warm)
        },
    )
    .unwrap();
    assert_eq!(s.steps, 6);
    let mut a = mfh_artifact::load_model(&first).unwrap();
    let mut b = mfh_artifact::load_model(&warm).unwrap();
    let dense = |m: &mut mfh_artifact::LoadedModel| {
        let mut v = Vec::new();
        m.state
            .net_mut()
            .visit_params("", &mut |_, p, _| v.extend_from_slice(p));
        v
    };
    let (da, db) = (dense(&mut a), dense(&mut b));
    assert!(!da.is_empty());
    assert!(
        da == db,
        "the warm start's dense weights are the initial model's"
    );
    let (ta, tb) = (a.state.emb.tables(), b.state.emb.tables());
    assert_eq!(ta.len(), tb.len());
    let mut shared = 0;
    for (x, y) in ta.iter().zip(tb) {
        for (id, slot) in x.ids() {
            let other = y.lookup_eval(id).expect("every initial row is kept");
            let (u, v) = (x.row(slot), y.row(other));
            assert_eq!(u.len(), v.len());
            let d = u
                .iter()
                .zip(v)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(
                d < 1e-20,
                "table {} ({}) id {id} moved by {d}: {u:?} vs {v:?}; steps {} {}",
                x.name(),
                y.name(),
                a.meta.step,
                b.meta.step
            );
            shared += 1;
        }
    }
    assert!(shared > 50, "{shared} rows compared");
    // Rows trained with Adagrad carry its state: a config asking for Adam is refused.
    let adam = setup(tmp.path(), "adam.toml", "epochs = 1\nmax_steps = 2");
    let text = std::fs::read_to_string(&adam.source_file)
        .unwrap()
        .replace("optimizer = \"adagrad\"", "optimizer = \"adam\"");
    std::fs::write(&adam.source_file, text).unwrap();
    let adam = Config::load(&adam.source_file).unwrap();
    let e = train(
        &adam,
        &TrainOptions {
            init_from: Some(first.clone()),
            ..opts(&tmp.path().join("adam"))
        },
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("--init-from") && e.contains("train.embedding.optimizer"),
        "{e}"
    );
    // A warm start from a folder that holds no model is refused, naming the flag.
    let other = tmp.path().join("other");
    let e = train(
        &cfg,
        &TrainOptions {
            init_from: Some(tmp.path().join("missing")),
            ..opts(&other)
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("--init-from"), "{e:#}");
}

#[test]
fn a_checkpoint_of_the_old_distributed_layout_is_refused_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), "c.toml", "epochs = 1\nmax_steps = 4");
    let out = tmp.path().join("m");
    let old = out.join("checkpoints/step5");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("manifest.json"), "{}").unwrap();
    let e = format!("{:#}", train(&cfg, &resume(&out)).unwrap_err());
    assert!(e.contains("older mfh's distributed trainer"), "{e}");
    assert!(!out.join("model.json").exists(), "nothing trained over it");
}

#[test]
fn a_stop_request_checkpoints_and_the_resumed_run_ends_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let full = setup(tmp.path(), "full.toml", "epochs = 2\ncheckpoint_every = 5");
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let a = train(&full, &opts(&whole)).unwrap();
    // A stop already requested: the run stops after its first step, with a checkpoint.
    let stop = Arc::new(AtomicBool::new(true));
    let live = Arc::new(LiveProgress::default());
    let mut o = opts(&cut);
    o.hooks = RunHooks {
        stop: Some(stop.clone()),
        progress: Some(live.clone()),
        ..Default::default()
    };
    let e = train(&full, &o).unwrap_err();
    let i = e
        .downcast_ref::<Interrupted>()
        .unwrap_or_else(|| panic!("not an interruption: {e:#}"));
    assert_eq!(i.step, 1);
    assert_eq!(i.checkpoint.as_deref(), Some(ck(&cut, 1).as_path()));
    assert_eq!(live.step.load(Ordering::Relaxed), 1);
    assert!(live.rows_done.load(Ordering::Relaxed) > 0 && live.loss().is_some());
    assert!(
        !cut.join("dense.bin").exists(),
        "no model saved before an evaluation"
    );
    let b = train(&full, &resume(&cut)).unwrap();
    assert_eq!((a.steps, a.best_step), (b.steps, b.best_step));
    for f in ["dense.bin", "embeddings.bin", "metrics.json"] {
        let x = std::fs::read(whole.join(f)).unwrap();
        let y = std::fs::read(cut.join(f)).unwrap();
        assert!(
            x == y,
            "the best model's {f} differs after a stop and resume"
        );
    }
}

#[test]
fn tensorboard_scalars_are_written_as_the_run_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), "tb.toml", "epochs = 2");
    let out = tmp.path().join("run");
    let mut o = opts(&out);
    o.tensorboard = Some(out.join("tensorboard"));
    let s = train(&cfg, &o).unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(out.join("tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let scalars = mfh_report::tensorboard::read_scalars(&files[0]).unwrap();
    let steps = |tag: &str| -> Vec<i64> {
        scalars
            .iter()
            .filter(|(t, _, _)| t == tag)
            .map(|(_, s, _)| *s)
            .collect()
    };
    let loss = steps("train/loss");
    assert!(
        !loss.is_empty() && loss.iter().all(|s| s % 10 == 0),
        "{loss:?}"
    );
    let evals: Vec<i64> = s.history.iter().map(|(st, _)| *st as i64).collect();
    assert!(evals.len() >= 2);
    let split = &cfg.train.valid_split;
    assert_eq!(steps(&format!("{split}/loss")), evals);
    let b = &cfg.grid().behaviours[0];
    assert_eq!(steps(&format!("{split}/auc/{b}/all")), evals);
    assert_eq!(steps(&format!("{split}/logloss/{b}/all")), evals);
}
