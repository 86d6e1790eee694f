//! Runs on thread ranks (and on one rank through the distributed code path) train the
//! one-process model.

use crate::common::{
    dense, edited, max_diff, max_metric_diff, metrics, opts, run_ranks, write_data,
};
use mfh_artifact::{collect_predictions, load_model};
use mfh_config::Config;
use mfh_distributed::{Comm, LocalComm, ReadMode, ThreadComm};
use std::sync::Arc;

#[test]
fn ranks_as_threads_train_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::load(&write_data(tmp.path())).unwrap();
    let reference = tmp.path().join("one");
    let s = mfh_train::train(&cfg, &opts(&reference)).unwrap();
    assert_eq!(s.steps, 25);

    // One rank through the distributed code path: the same model.
    let local = tmp.path().join("local");
    let (s1, _) = mfh_distributed::train(&cfg, &opts(&local), &mut LocalComm::new()).unwrap();
    assert_eq!((s1.steps, s1.best_step), (s.steps, s.best_step));
    let d1 = max_diff(&dense(&reference), &dense(&local));
    eprintln!("one rank: max |Δ| dense {d1:e}");
    assert_eq!(d1, 0.0, "one rank: dense parameters differ by {d1}");
    assert!(max_metric_diff(&metrics(&reference), &metrics(&local)) < 1e-6);

    for size in [2, 3] {
        let out = tmp.path().join(format!("ranks{size}"));
        let handles: Vec<_> = ThreadComm::world(size)
            .into_iter()
            .map(|mut comm| {
                let (cfg, out) = (cfg.clone(), out.clone());
                std::thread::spawn(move || {
                    let r = mfh_distributed::train(&cfg, &opts(&out), &mut comm).unwrap();
                    (comm.rank(), r.0.steps, r.1.comm.all_to_all_calls)
                })
            })
            .collect();
        for h in handles {
            let (_, steps, calls) = h.join().unwrap();
            assert_eq!(steps, 25);
            assert!(calls > 0);
        }
        let d = max_diff(&dense(&reference), &dense(&out));
        assert!(d < 1e-5, "{size} ranks: dense parameters differ by {d}");
        let m = max_metric_diff(&metrics(&reference), &metrics(&out));
        eprintln!("{size} ranks: max |Δ| dense {d:e}, metrics {m:e}");
        assert!(m < 1e-5, "{size} ranks: metrics differ by {m}");
        // The saved model holds every shard's rows: it scores like the reference.
        let mut a = load_model(&reference).unwrap();
        let mut b = load_model(&out).unwrap();
        // The ranks each fitted a share of the train split's statistics and merged them:
        // bit for bit the one-process statistics.
        assert_eq!(
            a.transforms, b.transforms,
            "{size} ranks: fitted statistics"
        );
        assert_eq!(
            a.transforms.features.len(),
            2,
            "{:?}",
            a.transforms.features
        );
        let (tables_a, tables_b) = (a.state.emb.tables(), b.state.emb.tables());
        assert_eq!(tables_a.len(), tables_b.len(), "{size} ranks: table count");
        assert!(!tables_a.is_empty(), "{size} ranks: no embedding table");
        for (ta, tb) in tables_a.iter().zip(tables_b) {
            assert_eq!(ta.len(), tb.len(), "{size} ranks: table {}", ta.name());
            assert!(!ta.is_empty(), "{size} ranks: table {} is empty", ta.name());
            let ids = |t: &mfh_embedding::EmbeddingTable| {
                let mut v: Vec<u64> = t.ids().map(|(id, _)| id).collect();
                v.sort_unstable();
                v
            };
            assert_eq!(ids(ta), ids(tb), "{size} ranks: table {} ids", ta.name());
        }
        for split in ["train", "valid"] {
            let pa = Arc::new(a.pipeline(&cfg).unwrap());
            let pb = Arc::new(b.pipeline(&cfg).unwrap());
            let batch = cfg.train.batch_size;
            let sa = collect_predictions(&mut a.state, &pa, split, batch).unwrap();
            let sb = collect_predictions(&mut b.state, &pb, split, batch).unwrap();
            assert_eq!(sa.rows(), sb.rows(), "{size} ranks, {split}: rows scored");
            assert!(sa.rows() > 0, "{size} ranks, {split}: no row scored");
            assert_eq!(sa.preds.len(), sb.preds.len(), "{size} ranks, {split}");
            assert_eq!(sa.preds.len(), sa.rows() * sa.n_behaviours);
            assert_eq!(sa.cells, sb.cells, "{size} ranks, {split}: cells");
            // Ranks sum gradients in another order than one process (dense parameters
            // agree to 1e-5, above), so the scores agree to a tolerance, not bit for bit.
            let worst = sa
                .preds
                .iter()
                .zip(&sb.preds)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            eprintln!("{size} ranks, {split}: max |Δ| score {worst:e}");
            assert!(
                worst < SCORE_TOLERANCE,
                "{size} ranks, {split}: scores differ by {worst}"
            );
        }
    }
}

/// How far a score (a probability) of the model trained on thread ranks may be from the
/// one-process model's: the parameters agree to 1e-5, the scores to about 1e-7.
const SCORE_TOLERANCE: f32 = 1e-5;

#[test]
fn each_rank_decodes_only_its_rows_and_the_model_is_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    // Whole epochs (no max_steps), so that every stripe read is trained on.
    let cfg = edited(
        tmp.path(),
        "epochs.toml",
        &[("max_steps = 25", "max_steps = 0")],
    );
    let reference = tmp.path().join("one");
    let s = mfh_train::train(&cfg, &opts(&reference)).unwrap();
    let train_rows = s.train_rows;
    assert!(train_rows > 500, "{train_rows}");
    let local = tmp.path().join("local");
    let (_, t1) = mfh_distributed::train(&cfg, &opts(&local), &mut LocalComm::new()).unwrap();
    assert_eq!(t1.read_mode, Some(ReadMode::Striped));
    assert_eq!(t1.rows_decoded, 2 * train_rows);
    assert_eq!(max_diff(&dense(&reference), &dense(&local)), 0.0);
    for size in [2, 3] {
        let out = tmp.path().join(format!("striped{size}"));
        let res = run_ranks(size, &cfg, &opts(&out));
        let mut locals = 0;
        for (rank, r) in res.into_iter().enumerate() {
            let (summary, t) = r.unwrap();
            assert_eq!(summary.steps, s.steps);
            assert_eq!(t.read_mode, Some(ReadMode::Striped));
            // Two epochs of the global batches; this rank decoded its rows and no other.
            assert_eq!(t.rows, 2 * train_rows);
            assert_eq!(t.rows_decoded, t.rows_local, "rank {rank} of {size}");
            let share = 2 * train_rows / size as u64;
            assert!(
                t.rows_local.abs_diff(share) <= summary.steps,
                "rank {rank} of {size}: {} rows, share {share}",
                t.rows_local
            );
            locals += t.rows_local;
        }
        assert_eq!(locals, 2 * train_rows);
        let d = max_diff(&dense(&reference), &dense(&out));
        let m = max_metric_diff(&metrics(&reference), &metrics(&out));
        eprintln!("striped, {size} ranks: max |Δ| dense {d:e}, metrics {m:e}");
        assert!(d < 1e-5 && m < 1e-5, "{size} ranks: dense {d}, metrics {m}");
    }
}

#[test]
fn skipping_bad_rows_reads_whole_batches_and_still_trains_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = edited(
        tmp.path(),
        "skip.toml",
        &[(
            "gauc_column = \"uid\"",
            "gauc_column = \"uid\"\non_error = \"skip\"",
        )],
    );
    let reference = tmp.path().join("one");
    mfh_train::train(&cfg, &opts(&reference)).unwrap();
    let out = tmp.path().join("two");
    for r in run_ranks(2, &cfg, &opts(&out)) {
        let (_, t) = r.unwrap();
        assert_eq!(t.read_mode, Some(ReadMode::Whole));
        assert_eq!(t.rows_decoded, 0, "the whole-batch stream does not count");
    }
    let d = max_diff(&dense(&reference), &dense(&out));
    assert!(d < 1e-5, "dense parameters differ by {d}");
}

#[test]
fn ranks_publish_the_one_process_versions() {
    // `--publish`: the ranks save each version together (rank 0 writes it and its DONE
    // marker); the versions hold the one-process model at the same steps.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::load(&write_data(tmp.path())).unwrap();
    let publish = |root: &std::path::Path| {
        Some(mfh_train::Publish {
            root: root.to_path_buf(),
            every: 10,
            keep: 5,
        })
    };
    let mut one = opts(&tmp.path().join("one"));
    one.publish = publish(&tmp.path().join("served-one"));
    mfh_train::train(&cfg, &one).unwrap();
    let mut two = opts(&tmp.path().join("two"));
    two.publish = publish(&tmp.path().join("served-two"));
    for r in crate::common::run_ranks(2, &cfg, &two) {
        r.unwrap();
    }
    // Steps 10, 20 and the end (25).
    for (v, step) in [(1, 10), (2, 20), (3, 25)] {
        let a = tmp.path().join(format!("served-one/{v}"));
        let b = tmp.path().join(format!("served-two/{v}"));
        assert!(
            a.join("DONE").is_file() && b.join("DONE").is_file(),
            "version {v}"
        );
        assert_eq!(load_model(&b).unwrap().meta.step, step);
        let d = max_diff(&dense(&a), &dense(&b));
        assert!(d < 1e-5, "version {v}: dense parameters differ by {d}");
    }
    assert!(!tmp.path().join("served-two/4").exists());
}
