//! `mfh train --follow` with the real binary: files dropped into a folder are published
//! as versions that a running `mfh serve` swaps in (a round trip on loopback), and a
//! trainer killed with SIGKILL inside a followed file resumes (`--resume`) to the model an
//! uninterrupted run ends with, bit for bit: no row lost or read twice.
//! Needs the `serve` feature (`cargo test -p mfh --features serve --test follow`).
#![cfg(all(feature = "serve", unix))]

mod common;
use common::{s, tiny_config, tiny_log};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Written under a hidden name, then renamed into place.
fn drop_file(inbox: &Path, name: &str, rows: usize) {
    let tmp = inbox.join(format!(".{name}"));
    std::fs::write(&tmp, tiny_log(rows)).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `mfh train --follow` in the background.
fn trainer(dir: &Path, out: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "train",
        "--config",
        "c.toml",
        "--out",
        out,
        "--follow",
        "inbox",
        "--follow-poll-ms",
        "20",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_mfh"))
        .args(&args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mfh train starts")
}

fn finish(mut c: Child, what: &str) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            assert!(st.success(), "{what} failed: {st}");
            return;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            c.kill().ok();
            panic!("{what} did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The newest checkpoint's loop state.
fn newest_trainer(out: &Path) -> Option<serde_json::Value> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("trainer.json").exists())
        .collect();
    dirs.sort();
    let text = std::fs::read_to_string(dirs.last()?.join("trainer.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn last_checkpoint(out: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("trainer.json").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a checkpoint")
}

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    std::fs::write(dir.join("log.csv"), tiny_log(60)).unwrap();
    std::fs::write(
        dir.join("c.toml"),
        tiny_config(
            "log.csv",
            "",
            "epochs = 1\ncheckpoint_every = 7\nkeep_last = 3",
        ),
    )
    .unwrap();
}

#[test]
fn a_killed_follower_resumes_inside_its_file_to_the_uninterrupted_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    drop_file(&dir.join("inbox"), "a.csv", 40);
    drop_file(&dir.join("inbox"), "b.csv", 3000);
    let whole = trainer(dir, "whole", &["--follow-idle-exit", "0.5"]);
    finish(whole, "the uninterrupted run");
    // The same files, and a kill while b.csv (1,500 batches) trains.
    let cut = trainer(dir, "cut", &[]);
    let mut cut = Some(cut);
    let out = dir.join("cut");
    wait_for("a checkpoint inside b.csv", 120, || {
        newest_trainer(&out).is_some_and(|t| {
            t["follow_files"].as_array().is_some_and(|f| f.len() == 2)
                && t["batches_done"].as_u64().unwrap_or(0) > 0
        })
    });
    let mut c = cut.take().unwrap();
    assert!(
        c.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
    let t = newest_trainer(&out).unwrap();
    let (step, done) = (
        t["step"].as_u64().unwrap(),
        t["batches_done"].as_u64().unwrap(),
    );
    assert!(
        done > 0 && done < 1500,
        "killed inside b.csv: {done} batches of it done"
    );
    let resumed = trainer(dir, "cut", &["--resume", "--follow-idle-exit", "0.5"]);
    finish(resumed, "the resumed run");
    let (a, b) = (last_checkpoint(&dir.join("whole")), last_checkpoint(&out));
    assert_eq!(a.file_name(), b.file_name(), "the same number of steps");
    assert!(newest_trainer(&out).unwrap()["step"].as_u64().unwrap() > step);
    for f in ["dense.bin", "embeddings.bin", "optimizer.bin"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(
            !x.is_empty() && x == y,
            "{f} differs after kill -9 and --resume"
        );
    }
    // Each file scored once, in order.
    let log = std::fs::read_to_string(out.join("follow.jsonl")).unwrap();
    let files: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["file"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(files.len(), 2, "{log}");
    assert!(files[0].ends_with("a.csv") && files[1].ends_with("b.csv"));
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn followed_files_are_published_and_hot_reloaded_by_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let inbox = dir.join("inbox");
    let root = dir.join("serving");
    let t = trainer(
        dir,
        "out",
        &["--publish", s(&root), "--follow-idle-exit", "120"],
    );
    drop_file(&inbox, "a.csv", 30);
    wait_for("version 1", 120, || root.join("1/DONE").exists());
    let mut srv = Command::new(env!("CARGO_BIN_EXE_mfh"))
        .args([
            "serve",
            "--model-dir",
            s(&root),
            "--addr",
            "127.0.0.1:0",
            "--name",
            "f",
            "--poll-ms",
            "50",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "serving `f` version 1 from DIR on http://127.0.0.1:PORT (…)"
    let mut lines = std::io::BufReader::new(srv.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("mfh serve says where it listens")
            .unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert!(get(addr, "/v1/models/f").contains(r#""version":"1""#));
    drop_file(&inbox, "b.csv", 30);
    wait_for("version 2 served", 120, || {
        get(addr, "/v1/models/f").contains(r#""version":"2""#)
    });
    srv.kill().ok();
    srv.wait().ok();
    let mut t = t;
    assert!(
        t.try_wait().unwrap().is_none(),
        "the follower keeps following"
    );
    t.kill().unwrap();
    t.wait().unwrap();
    assert!(root.join("2/DONE").exists());
}
