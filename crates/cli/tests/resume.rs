//! Crash-safe training: a run killed with SIGKILL mid-epoch and resumed with `--resume`
//! ends with the same model, bit for bit, as an uninterrupted run (same seed, one
//! thread); a corrupt newest checkpoint falls back to the previous one; divergence and
//! output failures stop with a clear error and leave the last checkpoint loadable.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bundled KuaiRand slice cut to one train day and one valid day, a small MMoE on one
/// thread: two epochs of 69 steps, evaluations at steps 30, 60, 69, 90, 120 and 138,
/// checkpoints every 7 steps and at every evaluation.
fn kuairand_small(tmp: &Path) -> PathBuf {
    prepared(
        tmp,
        &[],
        &[
            (
                "train = { where = \"date >= 20220428 and date <= 20220504\" }",
                "train = { where = \"date == 20220504\" }",
            ),
            (
                "valid = { where = \"date >= 20220505 and date <= 20220506\" }",
                "valid = { where = \"date == 20220506\" }",
            ),
            (
                "epochs = 4\nbatch_size = 512",
                "epochs = 2\nbatch_size = 256\nthreads = 1\nshuffle_buffer = 5000\ncheckpoint_every = 7\nkeep_last = 2",
            ),
            ("eval_every = 125", "eval_every = 30"),
            (
                "experts = 4\nexpert_layers = [256, 128]\ntower = [64]",
                "experts = 2\nexpert_layers = [32]\ntower = [16]",
            ),
        ],
    )
}

fn checkpoints(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .unwrap()
                            .to_string_lossy()
                            .starts_with("ckpt-")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Starts `mfh train` and SIGKILLs it as soon as a checkpoint exists; returns the
/// checkpoints left behind.
fn train_and_kill(cfg: &Path, out: &Path) -> Vec<PathBuf> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mfh"))
        .args(["train", "--config", s(cfg), "--out", s(out), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while checkpoints(out).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before its first checkpoint"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL: no destructors, no flushing, as in a crash or an OOM kill.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed");
    checkpoints(out)
}

fn trainer_json(ckpt: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer.json")).unwrap()).unwrap()
}

fn assert_same_model(a: &Path, b: &Path) {
    for f in ["metrics.json", "dense.bin", "embeddings.bin"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn killed_mid_epoch_resumes_to_the_same_model_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = kuairand_small(tmp.path());
    let straight = tmp.path().join("straight");
    ok(&[
        "train",
        "--config",
        s(&cfg),
        "--out",
        s(&straight),
        "--quiet",
    ]);
    // keep_last = 2 checkpoints, the last at the final evaluation.
    let kept = checkpoints(&straight);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[1].ends_with("ckpt-000000000138"), "{kept:?}");

    let resumed = tmp.path().join("resumed");
    let left = train_and_kill(&cfg, &resumed);
    let newest = left.last().unwrap();
    let t = trainer_json(newest);
    let done = t["batches_done"].as_u64().unwrap();
    assert!(
        done > 0 && t["epoch"] == 0,
        "killed at {newest:?}, not mid-epoch: {t}"
    );
    let o = ok(&[
        "train",
        "--config",
        s(&cfg),
        "--out",
        s(&resumed),
        "--resume",
        "--quiet",
    ]);
    assert!(o.stderr.contains("resuming from"), "{}", o.stderr);
    assert_same_model(&straight, &resumed);
    assert!(o.stdout.contains("at step 138 of 138"), "{}", o.stdout);

    corrupt_newest_checkpoint_falls_back(&cfg, &tmp.path().join("again"), &straight);
    finished_run_resumes_and_another_config_is_refused(&cfg, &straight);
}

/// Two checkpoints are needed to fall back: when the killed run left fewer, resumes once
/// more and kills it once a second one exists; returns the checkpoints left.
fn resume_to_two_checkpoints(cfg: &Path, out: &Path, left: Vec<PathBuf>) -> Vec<PathBuf> {
    if left.len() >= 2 {
        return left;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_mfh"))
        .args(["train", "--config", s(cfg), "--out", s(out)])
        .args(["--resume", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while checkpoints(out).len() < 2 && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    checkpoints(out)
}

/// A corrupt newest checkpoint: said so, and the previous one is used.
fn corrupt_newest_checkpoint_falls_back(cfg: &Path, again: &Path, straight: &Path) {
    let left = train_and_kill(cfg, again);
    let left = resume_to_two_checkpoints(cfg, again, left);
    assert!(
        left.len() >= 2,
        "two checkpoints are needed to fall back from a corrupt one: {left:?}"
    );
    let newest = left.last().unwrap();
    let dense = newest.join("dense.bin");
    let mut bytes = std::fs::read(&dense).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&dense, bytes).unwrap();
    let o = ok(&[
        "train",
        "--config",
        s(cfg),
        "--out",
        s(again),
        "--resume",
        "--quiet",
    ]);
    assert!(
        o.stderr.contains("unusable") && o.stderr.contains("checksum"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains(&format!("resuming from {}", left[left.len() - 2].display())),
        "{}",
        o.stderr
    );
    assert_same_model(straight, again);
    let name = newest.file_name().unwrap().to_string_lossy();
    assert!(
        again
            .join("checkpoints")
            .join(format!("unusable-{name}"))
            .is_dir(),
        "the corrupt checkpoint was not set aside"
    );
}

/// A finished run resumes to itself; another config is refused.
fn finished_run_resumes_and_another_config_is_refused(cfg: &Path, straight: &Path) {
    let o = ok(&[
        "train",
        "--config",
        s(cfg),
        "--out",
        s(straight),
        "--resume",
        "--quiet",
    ]);
    assert!(o.stdout.contains("at step 138 of 138"), "{}", o.stdout);
    let text = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(cfg, text.replace("lr = 0.001", "lr = 0.002")).unwrap();
    let e = fails(&[
        "train",
        "--config",
        s(cfg),
        "--out",
        s(straight),
        "--resume",
        "--quiet",
    ])
    .stderr;
    assert!(
        e.contains("config differs") && e.contains("lr = 0.002"),
        "{e}"
    );
    // The refused resume left the finished run finished: a fresh run may replace it.
    assert!(straight.join("checkpoints/complete").is_file());
}

/// Writes the tiny data set and a config with `train_extra`; returns the config path.
fn tiny(dir: &Path, train_extra: &str) -> PathBuf {
    std::fs::write(dir.join("log.csv"), tiny_log(60)).unwrap();
    let c = dir.join("c.toml");
    std::fs::write(&c, tiny_config("log.csv", "", train_extra)).unwrap();
    c
}

#[test]
fn divergence_names_the_step_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tiny(tmp.path(), "lr = 1e30\ncheckpoint_every = 1");
    let out = tmp.path().join("m");
    let e = fails(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]).stderr;
    assert!(e.contains("training diverged at step"), "{e}");
    let left = checkpoints(&out);
    let last = left.last().expect("a checkpoint before the divergence");
    assert!(e.contains(s(last)) && e.contains("intact"), "{e}");
    // The step named is the one after the last checkpoint.
    let step: u64 = trainer_json(last)["step"].as_u64().unwrap();
    assert!(e.contains(&format!("at step {}", step + 1)), "{e}");
    ok(&["eval", "--model-dir", s(last)]);
}

#[test]
fn unwritable_output_fails_before_training_and_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tiny(tmp.path(), "");
    // Regular files where folders should be (tests run as root, so permissions would not
    // stop a write): the output folder itself, a folder under it, and the checkpoints.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for out in [file.clone(), file.join("sub")] {
        let o = fails(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
        assert!(
            o.stderr.contains(s(&out)) && o.stderr.contains("cannot create the output folder"),
            "{}",
            o.stderr
        );
        assert!(!o.stderr.contains("training `"), "{}", o.stderr);
    }
    let out = tmp.path().join("m");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("checkpoints"), "x").unwrap();
    let o = fails(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
    assert!(
        o.stderr.contains(s(&out.join("checkpoints")))
            && o.stderr.contains("cannot create the checkpoint folder"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("training `"), "{}", o.stderr);
}

#[test]
fn a_failed_checkpoint_write_stops_and_keeps_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tiny(
        tmp.path(),
        "epochs = 3\ncheckpoint_every = 2\nshuffle_buffer = 0",
    );
    let straight = tmp.path().join("straight");
    ok(&["train", "--config", s(&c), "--out", s(&straight), "--quiet"]);

    // A regular file where step 4's temporary checkpoint folder goes makes its write fail
    // (a stand-in for a full disk: tests run as root, so a read-only folder would not).
    let out = tmp.path().join("m");
    let blocker = out.join("checkpoints/.ckpt-000000000004.tmp");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "x").unwrap();
    let e = fails(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]).stderr;
    let prev = out.join("checkpoints/ckpt-000000000002");
    assert!(
        e.contains("cannot write the checkpoint of step 4")
            && e.contains(s(&blocker))
            && e.contains(&format!(
                "the previous checkpoint, {}, is intact",
                prev.display()
            )),
        "{e}"
    );
    assert_eq!(checkpoints(&out), vec![prev.clone()]);
    ok(&["eval", "--model-dir", s(&prev)]);

    // A fresh run would throw the interrupted run's checkpoints away: refused.
    let e = fails(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]).stderr;
    assert!(
        e.contains("an interrupted run's checkpoints are here") && e.contains("--resume"),
        "{e}"
    );
    assert_eq!(checkpoints(&out), vec![prev.clone()]);

    // With the obstacle gone the run resumes and ends as if nothing had happened.
    std::fs::remove_file(&blocker).unwrap();
    ok(&[
        "train",
        "--config",
        s(&c),
        "--out",
        s(&out),
        "--resume",
        "--quiet",
    ]);
    assert_same_model(&straight, &out);
    // A finished run's folder takes a fresh run.
    ok(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
}

/// Linux only: the full disk is Linux's `/dev/full` (every write fails with ENOSPC),
/// which other systems lack; on Linux a missing `/dev/full` fails the test rather than
/// skipping it.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_while_saving_the_best_model_stops_and_keeps_the_checkpoints() {
    let full = Path::new("/dev/full");
    assert!(
        full.exists(),
        "/dev/full is missing: this test needs Linux's always-full device (mknod -m 666 /dev/full c 1 7)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let c = tiny(tmp.path(), "checkpoint_every = 2\nshuffle_buffer = 0");
    // The best model's dense.bin is staged as `.saving/dense.bin` (an unfinished
    // stage's files are written over): pointed at /dev/full, its write fails with ENOSPC
    // at the first evaluation (end of epoch 1, step 20).
    let out = tmp.path().join("m");
    std::fs::create_dir_all(out.join(".saving")).unwrap();
    std::os::unix::fs::symlink(full, out.join(".saving/dense.bin")).unwrap();
    let e = fails(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]).stderr;
    assert!(
        e.contains(s(&out.join(".saving/dense.bin")))
            && e.contains("No space left on device")
            && e.contains("training stopped at step 20")
            && e.contains("ckpt-000000000020, is intact"),
        "{e}"
    );
    let left = checkpoints(&out);
    let last = left.last().expect("checkpoints before the evaluation");
    assert!(last.ends_with("ckpt-000000000020"), "{left:?}");
    ok(&["eval", "--model-dir", s(last)]);
}
