//! Follow mode (`TrainOptions::follow`): after the epochs, each new complete file of a
//! folder is scored, then trained on once, in arrival order; files being written (hidden
//! names) are never read; a run stopped inside a followed file resumes after its last
//! checkpointed batch and ends with the uninterrupted run's model bit for bit; versions
//! are published after each file.

use mfh_train::{checkpoint_name, train, Follow, Publish, TrainOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{opts, setup};

/// A followed file of `n` rows in the log's columns; `seed` varies the rows.
fn write_file(path: &Path, n: u64, seed: u64) {
    let mut log = String::from("uid,item,tags,price,day,clicked,liked\n");
    for i in 0..n {
        let h = (i + seed * 1000).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        log.push_str(&format!(
            "u{},i{},\"t{}\",{}.5,{},{},{}\n",
            h % 31,
            (h >> 3) % 53,
            h % 7,
            h % 17,
            4,
            (h >> 7).is_multiple_of(3) as u8,
            (h >> 9).is_multiple_of(4) as u8,
        ));
    }
    // Written under a hidden name, then renamed into place (the completeness rule).
    let tmp = path.with_file_name(format!(".{}", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, log).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn follow(dir: &Path, idle_s: f64) -> Follow {
    Follow {
        dir: dir.to_path_buf(),
        success_marker: false,
        poll: Duration::from_millis(20),
        idle_exit: Some(Duration::from_secs_f64(idle_s)),
    }
}

fn follow_log(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("follow.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn files_of(log: &[serde_json::Value]) -> Vec<String> {
    log.iter()
        .map(|l| {
            let f = l["file"].as_str().unwrap();
            Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn new_files_are_scored_then_trained_once_in_arrival_order() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), "c.toml", "epochs = 1");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(inbox.join("date=2")).unwrap();
    write_file(&inbox.join("date=2/b.csv"), 70, 1);
    write_file(&inbox.join("a.csv"), 45, 2);
    // Never complete: a file still being written, a writer's marker and temp folder.
    std::fs::write(inbox.join(".c.csv.tmp"), "uid,item\nhalf").unwrap();
    std::fs::write(inbox.join("date=2/_SUCCESS"), "").unwrap();
    std::fs::create_dir_all(inbox.join("_temporary")).unwrap();
    std::fs::write(inbox.join("_temporary/x.csv"), "garbage").unwrap();
    let base = train(&cfg, &opts(&tmp.path().join("base"))).unwrap();
    let out = tmp.path().join("out");
    let (cfg2, out2, inbox2) = (cfg.clone(), out.clone(), inbox.clone());
    let run = std::thread::spawn(move || {
        train(
            &cfg2,
            &TrainOptions {
                follow: Some(follow(&inbox2, 1.5)),
                ..opts(&out2)
            },
        )
    });
    // A file arriving while the run follows: trained after the first two though its
    // name sorts first.
    let waited = std::time::Instant::now();
    let lines = |out: &Path| {
        std::fs::read_to_string(out.join("follow.jsonl")).map_or(0, |t| t.matches('\n').count())
    };
    while lines(&out) < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the first files were not followed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    write_file(&inbox.join("0-late.csv"), 33, 3);
    let s = run.join().unwrap().unwrap();
    let log = follow_log(&out);
    assert_eq!(files_of(&log), ["a.csv", "b.csv", "0-late.csv"]);
    // Each file's batches once (batch 32): 45 → 2, 70 → 3, 33 → 2.
    assert_eq!(s.steps, base.steps + 2 + 3 + 2);
    // Scored before training: the step recorded is where training on it began.
    let steps: Vec<u64> = log.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [base.steps, base.steps + 2, base.steps + 5]);
    for l in &log {
        assert!(l["loss"].as_f64().unwrap().is_finite());
        assert!(
            l["metrics"].to_string().contains("auc"),
            "per-cell metrics: {l}"
        );
    }
}

#[test]
fn a_success_marker_rule_waits_for_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(inbox.join("date=1")).unwrap();
    std::fs::create_dir_all(inbox.join("date=2")).unwrap();
    write_file(&inbox.join("date=1/part-0.csv"), 5, 1);
    write_file(&inbox.join("date=2/part-0.csv"), 5, 2);
    std::fs::write(inbox.join("date=2/_SUCCESS"), "").unwrap();
    let all = mfh_data::complete_files(&inbox, false).unwrap();
    let marked = mfh_data::complete_files(&inbox, true).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(marked, [inbox.join("date=2/part-0.csv")]);
}

fn ck(out: &Path, step: u64) -> PathBuf {
    out.join("checkpoints").join(checkpoint_name(step))
}

#[test]
fn a_run_stopped_inside_a_followed_file_resumes_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let full = setup(tmp.path(), "full.toml", "epochs = 1\ncheckpoint_every = 3");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write_file(&inbox.join("a.csv"), 100, 1);
    write_file(&inbox.join("b.csv"), 200, 2);
    let base = train(&full, &opts(&tmp.path().join("base"))).unwrap();
    // Stopped 5 steps into b.csv (a.csv: 4 batches of 32, b.csv 7).
    let cut_at = base.steps + 4 + 5;
    let short = setup(
        tmp.path(),
        "short.toml",
        &format!("epochs = 1\ncheckpoint_every = 3\nmax_steps = {cut_at}"),
    );
    let with = |out: &Path, resume: bool| TrainOptions {
        follow: Some(follow(&inbox, 0.2)),
        resume,
        ..opts(out)
    };
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let a = train(&full, &with(&whole, false)).unwrap();
    let b0 = train(&short, &with(&cut, false)).unwrap();
    assert_eq!(b0.steps, cut_at);
    assert_eq!(a.steps, base.steps + 4 + 7);
    // Resumed under another `train.epochs` (a resume may change it): the epochs are over,
    // the run takes up inside b.csv all the same.
    let more = setup(tmp.path(), "more.toml", "epochs = 3\ncheckpoint_every = 3");
    let b = train(&more, &with(&cut, true)).unwrap();
    assert_eq!(a.steps, b.steps);
    for f in ["dense.bin", "embeddings.bin", "optimizer.bin"] {
        let x = std::fs::read(ck(&whole, a.steps).join(f)).unwrap();
        let y = std::fs::read(ck(&cut, b.steps).join(f)).unwrap();
        assert!(
            !x.is_empty() && x == y,
            "{f} differs after resuming inside a followed file"
        );
    }
    // A file that cannot be read, moved away, is passed over on resume: stopped 2 steps
    // into a.csv, a.csv removed, the resume trains b.csv alone.
    let gone = tmp.path().join("gone");
    let early = setup(
        tmp.path(),
        "early.toml",
        &format!(
            "epochs = 1\ncheckpoint_every = 3\nmax_steps = {}",
            base.steps + 2
        ),
    );
    train(&early, &with(&gone, false)).unwrap();
    std::fs::remove_file(inbox.join("a.csv")).unwrap();
    let c = train(&full, &with(&gone, true)).unwrap();
    assert_eq!(
        c.steps,
        base.steps + 2 + 7,
        "a.csv passed over, b.csv trained"
    );
    // Each file was scored once: the resumed run did not score b.csv again.
    assert_eq!(files_of(&follow_log(&cut)), ["a.csv", "b.csv"]);
    assert_eq!(files_of(&follow_log(&whole)), ["a.csv", "b.csv"]);
}

#[test]
fn a_version_is_published_after_each_followed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), "c.toml", "epochs = 1");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write_file(&inbox.join("a.csv"), 40, 1);
    write_file(&inbox.join("b.csv"), 40, 2);
    let root = tmp.path().join("serving");
    let s = train(
        &cfg,
        &TrainOptions {
            follow: Some(follow(&inbox, 0.2)),
            publish: Some(Publish {
                root: root.clone(),
                every: 0,
                keep: 5,
            }),
            ..opts(&tmp.path().join("out"))
        },
    )
    .unwrap();
    let mut versions: Vec<u64> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().parse().ok())
        .collect();
    versions.sort();
    // One per followed file (the end of the run publishes the same step again: no new
    // version).
    assert_eq!(versions, [1, 2]);
    for v in versions {
        assert!(root.join(v.to_string()).join("DONE").exists());
    }
    assert!(s.steps > 0);
}
