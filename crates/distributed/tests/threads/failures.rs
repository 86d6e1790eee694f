//! Bad rows, refused settings, failed saves and refusals to discard checkpoints: every
//! rank stops, and says why.

use crate::common::{
    checkpoint_dirs, edited, full_and_cut_configs, on_threads, opts, run_ranks, write_data,
};
use mfh_config::Config;
use mfh_distributed::LocalComm;

#[test]
fn a_bad_row_read_by_one_rank_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::load(&write_data(tmp.path())).unwrap();
    // Break a label of the valid split (day 3), which the fit pass does not read: only
    // the rank whose stripe holds it meets it, at the first evaluation.
    let path = tmp.path().join("log.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let at = lines
        .iter()
        .position(|l| l.split(',').nth_back(2) == Some("3"))
        .unwrap();
    let mut cells: Vec<String> = lines[at].split(',').map(String::from).collect();
    let n = cells.len();
    cells[n - 2] = "maybe".into();
    lines[at] = cells.join(",");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let res = run_ranks(2, &cfg, &opts(&tmp.path().join("bad")));
    let errs: Vec<String> = res
        .into_iter()
        .map(|r| format!("{:#}", r.expect_err("every rank fails")))
        .collect();
    let line = format!("log.csv:{}", at + 1);
    let owners: Vec<&String> = errs.iter().filter(|e| e.contains(&line)).collect();
    assert_eq!(owners.len(), 1, "{errs:?}");
    assert!(owners[0].contains("maybe"), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("other rank(s) could not read")),
        "{errs:?}"
    );
}

#[test]
fn embedding_admission_and_expiry_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("admit_after", "3"),
        ("ttl_steps", "50"),
        ("max_rows", "100"),
    ] {
        let cfg = edited(
            tmp.path(),
            &format!("{key}.toml"),
            &[(
                "optimizer = \"adagrad\",",
                &format!("optimizer = \"adagrad\", {key} = {value},"),
            )],
        );
        let out = tmp.path().join(key);
        let e = mfh_distributed::train(&cfg, &opts(&out), &mut LocalComm::new())
            .expect_err("refused")
            .to_string();
        assert!(e.contains(&format!("train.embedding.{key}")), "{e}");
    }
}

// The defects the distributed fork of the training loop had (issue 17), each against the
// one-process trainer's behaviour (the others are in `resume`).

#[test]
fn a_fresh_run_refuses_to_discard_an_interrupted_runs_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, short_cfg) = full_and_cut_configs(tmp.path());
    let out = tmp.path().join("m");
    on_threads(2, &short_cfg, &opts(&out));
    let before = checkpoint_dirs(&out);
    assert!(!before.is_empty(), "the run wrote checkpoints");
    // A finished run marked its checkpoints; a killed one never does.
    let marker = out.join("checkpoints/complete");
    assert!(marker.is_file(), "a finished run is marked complete");
    std::fs::remove_file(&marker).unwrap();
    for r in run_ranks(2, &short_cfg, &opts(&out)) {
        let e = format!("{:#}", r.expect_err("a fresh run over an interrupted one"));
        assert!(
            e.contains("interrupted run") || e.contains("refused to start over"),
            "{e}"
        );
    }
    assert_eq!(
        checkpoint_dirs(&out),
        before,
        "the checkpoints are untouched"
    );
    // Once finished, a fresh run may replace them.
    std::fs::write(&marker, "training finished\n").unwrap();
    on_threads(2, &short_cfg, &opts(&out));
    assert_eq!(checkpoint_dirs(&out), before);
}

#[test]
fn a_failed_save_on_rank_0_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = edited(
        tmp.path(),
        "c.toml",
        &[("max_steps = 25", "max_steps = 12\nkeep_last = 0")],
    );
    let out = tmp.path().join("m");
    std::fs::create_dir_all(&out).unwrap();
    // The model's staging folder is a file: rank 0 cannot save the best model.
    std::fs::write(out.join(".saving"), "in the way").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_ranks(3, &cfg, &opts(&out)));
    });
    let results = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("every rank returns (none waits in a collective)");
    assert_eq!(results.len(), 3);
    for (rank, r) in results.into_iter().enumerate() {
        let e = format!("{:#}", r.expect_err("the save failed"));
        assert!(
            e.contains("save") || e.contains(".saving"),
            "rank {rank}: {e}"
        );
    }
}
