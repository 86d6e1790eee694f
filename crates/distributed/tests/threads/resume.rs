//! Checkpoints, and resuming them across numbers of ranks and across engines.

use crate::common::{
    checkpoint_dense, checkpoint_dirs, checkpoint_rows, ck, copy_dir, edited, full_and_cut_configs,
    max_metric_diff, on_threads, opts, report_values, run_ranks,
};
use mfh_config::Config;
use mfh_distributed::LocalComm;
use mfh_train::TrainOptions;
use std::path::Path;

#[test]
fn a_resumed_run_writes_the_uninterrupted_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());

    let whole = tmp.path().join("whole");
    on_threads(2, &full_cfg, &opts(&whole));
    // Stopped at step 19 (its last checkpoint: step 19, mid-epoch 2), then resumed.
    let cut = tmp.path().join("cut");
    on_threads(2, &short_cfg, &opts(&cut));
    assert!(ck(&cut, 19).join("checkpoint.json").is_file());
    on_threads(
        2,
        &full_cfg,
        &TrainOptions {
            resume: true,
            ..opts(&cut)
        },
    );
    for f in ["dense.bin", "embeddings.bin", "optimizer.bin"] {
        let a = std::fs::read(ck(&whole, 25).join(f)).unwrap();
        let b = std::fs::read(ck(&cut, 25).join(f)).unwrap();
        assert!(a == b, "{f} differs after resuming");
    }
    // The number of ranks may change on resume (see below), the global batch may not:
    // every rank refuses, and says why.
    let text = std::fs::read_to_string(&full_cfg.source_file).unwrap();
    let halved = tmp.path().join("halved.toml");
    std::fs::write(&halved, text.replace("batch_size = 64", "batch_size = 32")).unwrap();
    let resume = TrainOptions {
        resume: true,
        ..opts(&cut)
    };
    for r in run_ranks(3, &Config::load(&halved).unwrap(), &resume) {
        let e = format!("{:#}", r.expect_err("a changed batch size is refused"));
        assert!(
            e.contains("global batch of 64 rows") && e.contains("train.batch_size = 32"),
            "{e}"
        );
    }
}

#[test]
fn a_run_resumed_on_another_number_of_ranks_continues_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());

    // The last evaluation's values (step 25) of a run's summary.
    let last_eval = |s: &mfh_train::TrainSummary| {
        let (step, report) = s.history.last().expect("evaluated");
        assert_eq!(*step, 25);
        report_values(&report.to_json())
    };
    let whole = tmp.path().join("whole");
    let res = run_ranks(2, &full_cfg, &opts(&whole));
    let want_eval = last_eval(&res[0].as_ref().unwrap().0);
    assert!(res.iter().all(Result::is_ok));
    // Two ranks stop at step 19 (mid-epoch 2); the run goes on over 3 ranks and over 1.
    let cut = tmp.path().join("cut");
    on_threads(2, &short_cfg, &opts(&cut));
    let at_cut = checkpoint_rows(&ck(&cut, 19));
    let (on3, on1) = (tmp.path().join("on3"), tmp.path().join("on1"));
    copy_dir(&cut, &on3);
    copy_dir(&cut, &on1);
    let resume = |out: &Path| TrainOptions {
        resume: true,
        ..opts(out)
    };
    let mut evals = Vec::new();
    for r in run_ranks(3, &full_cfg, &resume(&on3)) {
        let (s, t) = r.unwrap();
        assert_eq!((s.steps, t.steps), (25, 6), "3 ranks train steps 20..=25");
        evals.push(last_eval(&s));
    }
    let (s1, t1) = mfh_distributed::train(&full_cfg, &resume(&on1), &mut LocalComm::new()).unwrap();
    assert_eq!(
        (s1.steps, t1.steps),
        (25, 6),
        "one rank trains steps 20..=25"
    );
    assert_eq!(evals.len(), 3, "one evaluation per rank");
    assert!(
        evals.windows(2).all(|w| w[0] == w[1]),
        "every rank reports the same"
    );
    evals.truncate(1);
    evals.push(last_eval(&s1));
    assert_eq!(evals.len(), 2, "resumed on 3 ranks and on 1");

    let want = checkpoint_rows(&ck(&whole, 25));
    for ((size, out), got_eval) in [(3, &on3), (1, &on1)].into_iter().zip(&evals) {
        // The valid metrics of step 25 (the model folder holds the best step's, which
        // the cut run's extra evaluation at step 19 may have moved).
        let m = max_metric_diff(&want_eval, got_eval);
        eprintln!("resumed on {size}: max |Δ| valid metrics at step 25 {m:e}");
        assert!(m < 1e-5, "resumed on {size}: metrics differ by {m}");
        // The step-25 state: dense parameters and Adam's moments.
        let (ws, wv) = checkpoint_dense(&ck(&whole, 25));
        let (gs, gv) = checkpoint_dense(&ck(out, 25));
        assert_eq!((gs, gv.len()), (ws, wv.len()));
        assert!(!wv.is_empty(), "no dense state");
        let d = gv
            .iter()
            .zip(&wv)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        eprintln!("resumed on {size}: max |Δ| dense and Adam state at step 25 {d:e}");
        assert!(
            d < 1e-5,
            "resumed on {size}: step-25 dense state differs by {d}"
        );
        // Every row (and its optimizer state) once (each rank kept the rows it owns
        // under the new size, and the checkpoint gathers them), equal to the
        // uninterrupted run's.
        let got = checkpoint_rows(&ck(out, 25));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "resumed on {size}: other rows"
        );
        let mut worst = 0.0f32;
        for ((t, id), v) in &got {
            let w = &want[&(*t, *id)];
            assert_eq!(v.len(), w.len(), "table {t} id {id}: row and state length");
            for (x, y) in v.iter().zip(w) {
                worst = worst.max((x - y).abs());
            }
        }
        eprintln!("resumed on {size}: max |Δ| embedding rows and state {worst:e}");
        assert!(worst < 1e-5, "resumed on {size}: rows differ by {worst}");
    }
    // The step-19 rows were all carried over: an id the cut run had is in the resumed
    // run's first checkpoint (step 20).
    for (size, out) in [(3, &on3), (1, &on1)] {
        let after = checkpoint_rows(&ck(out, 20));
        for (t, id) in at_cut.keys() {
            assert!(
                after.contains_key(&(*t, *id)),
                "resumed on {size}: row ({t}, {id}) lost"
            );
        }
    }
}

// The defects the distributed fork of the training loop had (issue 17), each against the
// one-process trainer's behaviour (the others are in `failures`).

#[test]
fn keep_last_zero_writes_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = edited(
        tmp.path(),
        "none.toml",
        &[(
            "max_steps = 25",
            "max_steps = 12\ncheckpoint_every = 5\nkeep_last = 0",
        )],
    );
    let out = tmp.path().join("m");
    on_threads(2, &cfg, &opts(&out));
    assert!(out.join("model.json").is_file(), "the model is saved");
    assert_eq!(checkpoint_dirs(&out), Vec::<String>::new());
}

#[test]
fn resume_falls_back_to_an_older_intact_checkpoint_and_keeps_the_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());
    let whole = tmp.path().join("whole");
    let full = run_ranks(2, &full_cfg, &opts(&whole));
    let cut = tmp.path().join("cut");
    on_threads(2, &short_cfg, &opts(&cut));
    // keep_last = 2: the end of epoch 1 (step 16) and step 19. Damage step 19's rows.
    assert_eq!(
        checkpoint_dirs(&cut),
        [
            mfh_train::checkpoint_name(16),
            mfh_train::checkpoint_name(19)
        ]
    );
    let shard = ck(&cut, 19).join("embeddings.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let resumed = run_ranks(
        2,
        &full_cfg,
        &TrainOptions {
            resume: true,
            ..opts(&cut)
        },
    );
    assert_eq!(resumed.len(), 2);
    assert_eq!(full.len(), 2);
    let (a, _) = full[0].as_ref().unwrap();
    let (b, _) = resumed[0].as_ref().expect("resumed from step 16");
    // The same run: the same steps, the same best step, and the selection's whole state
    // (every evaluation's report, the best one's report) carried over the resume.
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.best_step, b.best_step);
    assert!(!a.report.records.is_empty());
    assert_eq!(a.report.records.len(), b.report.records.len());
    for (x, y) in a.report.records.iter().zip(&b.report.records) {
        assert_eq!(
            (&x.behaviour, &x.cell, &x.metric),
            (&y.behaviour, &y.cell, &y.metric)
        );
        match (x.value, y.value) {
            (Some(u), Some(v)) => assert!((u - v).abs() < 1e-6, "{x:?} vs {y:?}"),
            (u, v) => assert_eq!(u.is_some(), v.is_some(), "{x:?} vs {y:?}"),
        }
    }
    let steps = |s: &mfh_train::TrainSummary| s.history.iter().map(|h| h.0).collect::<Vec<_>>();
    assert_eq!(steps(a), steps(b), "the history survives the resume");
    assert!(steps(a).len() >= 3, "{:?}", steps(a));
    for r in &resumed {
        r.as_ref().unwrap();
    }
}

#[test]
fn local_and_distributed_runs_resume_each_others_checkpoints() {
    // One checkpoint layout for both engines: a one-process run cut at step 19 goes on
    // over 2 ranks, a 2-rank run cut at step 19 goes on on one process, and a 1-rank
    // distributed run is resumed by the one-process trainer; each ends with the
    // uninterrupted run's step-25 state.
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());
    let whole = tmp.path().join("whole");
    mfh_train::train(&full_cfg, &opts(&whole)).unwrap();
    let resume = |out: &Path| TrainOptions {
        resume: true,
        ..opts(out)
    };
    let (a, b, c) = (
        tmp.path().join("local-then-2"),
        tmp.path().join("2-then-local"),
        tmp.path().join("1-then-local"),
    );
    mfh_train::train(&short_cfg, &opts(&a)).unwrap();
    on_threads(2, &full_cfg, &resume(&a));
    on_threads(2, &short_cfg, &opts(&b));
    assert_eq!(
        mfh_train::load_checkpoint(&ck(&b, 19)).unwrap().world_size,
        2
    );
    let s = mfh_train::train(&full_cfg, &resume(&b)).unwrap();
    assert_eq!(s.steps, 25);
    mfh_distributed::train(&short_cfg, &opts(&c), &mut LocalComm::new()).unwrap();
    let s = mfh_train::train(&full_cfg, &resume(&c)).unwrap();
    assert_eq!(s.steps, 25);
    let (ws, wv) = checkpoint_dense(&ck(&whole, 25));
    let want = checkpoint_rows(&ck(&whole, 25));
    for out in [&a, &b, &c] {
        let (gs, gv) = checkpoint_dense(&ck(out, 25));
        assert_eq!((gs, gv.len()), (ws, wv.len()), "{}", out.display());
        assert!(!wv.is_empty());
        let d = gv
            .iter()
            .zip(&wv)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{}: dense state differs by {d}", out.display());
        let got = checkpoint_rows(&ck(out, 25));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{}: other rows",
            out.display()
        );
        let mut worst = 0.0f32;
        for (k, v) in &got {
            let w = &want[k];
            assert_eq!(v.len(), w.len());
            for (x, y) in v.iter().zip(w) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(worst < 1e-5, "{}: rows differ by {worst}", out.display());
    }
}
