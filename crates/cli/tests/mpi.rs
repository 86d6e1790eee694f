//! `mpirun -np 2 mfh train` against a one-process `mfh train` with the same global batch
//! on the bundled KuaiRand slice: the dense parameters and the valid metrics agree within
//! float tolerance, and the distributed model folder (every shard's rows gathered into
//! it) evaluates like any other. Needs the `mpi` feature and OpenMPI's `mpirun`:
//! `cargo test -p mfh --features mpi --test mpi`.
#![cfg(feature = "mpi")]

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// The dense tensors of `dense.bin` (see model_dir.rs): magic, then (kind, name, values)
/// entries, then a checksum.
fn dense_tensors(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let b = std::fs::read(dir.join("dense.bin")).unwrap();
    let body = &b[8..b.len() - 8];
    let mut out = Vec::new();
    let mut p = 0;
    let u32_at = |p: usize| u32::from_le_bytes(body[p..p + 4].try_into().unwrap()) as usize;
    while p < body.len() {
        let len = u32_at(p + 1);
        let name = String::from_utf8(body[p + 5..p + 5 + len].to_vec()).unwrap();
        p += 5 + len;
        let n = u64::from_le_bytes(body[p..p + 8].try_into().unwrap()) as usize;
        p += 8;
        let vals = body[p..p + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        p += 4 * n;
        out.push((name, vals));
    }
    out
}

fn metric_values(dir: &Path) -> Vec<(String, f64)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let key = format!("{}/{}/{}", r["behaviour"], r["cell"], r["metric"]);
            r["value"].as_f64().map(|x| (key, x))
        })
        .collect()
}

/// The binary under test; `MFH_MPI_BIN` overrides it where several builds share one
/// target folder and another build may have replaced `target/debug/mfh` (without MPI).
fn mfh_bin() -> String {
    std::env::var("MFH_MPI_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mfh").to_string())
}

fn mpirun(np: usize, args: &[&str]) -> Out {
    let o = Command::new("mpirun")
        .args(["-np", &np.to_string(), "--oversubscribe"])
        .arg(mfh_bin())
        .args(args)
        // OpenMPI refuses to run as root (CI containers) unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun runs (install openmpi-bin)");
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert_eq!(
        out.code, 0,
        "mpirun -np {np} mfh {args:?} failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    out
}

/// The one-process and the two-rank model folders: the same dense tensors, each value
/// within 1e-5, and the same valid metrics within 1e-5.
fn assert_same_dense_and_metrics(one: &Path, two: &Path) {
    let (a, b) = (dense_tensors(one), dense_tensors(two));
    assert_eq!(a.len(), b.len(), "dense tensor count");
    assert!(!a.is_empty(), "no dense tensor in {}", one.display());
    let mut max = 0.0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        assert!(!va.is_empty(), "{na}: empty");
        for (x, y) in va.iter().zip(vb) {
            max = max.max((x - y).abs());
        }
    }
    eprintln!("max |Δ| over dense parameters: {max:e}");
    assert!(max < 1e-5, "dense parameters differ by {max}");

    let (ma, mb) = (metric_values(one), metric_values(two));
    assert_eq!(ma.len(), mb.len(), "metric count:\n{ma:?}\n{mb:?}");
    assert!(!ma.is_empty(), "no metric value in {}", one.display());
    let mut worst = 0.0f64;
    for ((ka, x), (kb, y)) in ma.iter().zip(&mb) {
        assert_eq!(ka, kb);
        worst = worst.max((x - y).abs());
    }
    eprintln!("max |Δ| over valid metrics: {worst:e}");
    assert!(worst < 1e-5, "metrics differ by {worst}");
}

#[test]
fn two_ranks_train_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    // A dozen steps of a small MMoE (6 144 rows), one thread, no batch norm, evaluated
    // once. Longer runs drift apart slowly: Adam divides each gradient by its running
    // RMS, so where a rarely active task's gradient nearly cancels, rounding noise
    // from the other summation order becomes an update of up to `lr` (measured: 4e-7
    // after 12 steps, 1e-4 after 20, 3e-3 after 40; pooled AUC still within 2e-6).
    let cfg_path = prepared(
        tmp.path(),
        &[],
        &[
            ("epochs = 4", "epochs = 1\nmax_steps = 12\nthreads = 1"),
            ("eval_every = 125", "eval_every = 0"),
            (
                "experts = 4\nexpert_layers = [256, 128]",
                "experts = 2\nexpert_layers = [32]",
            ),
        ],
    );
    let cfg = s(&cfg_path);
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    let common = ["--model", "mmoe", "--quiet", "--seed", "5"];
    let mut args = vec!["train", "--config", cfg, "--out", s(&one)];
    args.extend(common);
    ok(&args);
    let mut args = vec!["train", "--config", cfg, "--out", s(&two)];
    args.extend(common);
    let t = mpirun(2, &args);
    assert!(t.stderr.contains("over 2 ranks"), "{}", t.stderr);
    // Only rank 0 prints the report.
    assert_eq!(
        t.stdout.matches("dense parameters): best").count(),
        1,
        "{}",
        t.stdout
    );

    assert_same_dense_and_metrics(&one, &two);

    // The gathered model folder scores like a one-process one.
    let e = ok(&["eval", "--model-dir", s(&two), "--json"]);
    let again: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("metrics.json")).unwrap()).unwrap();
    let (again, saved) = (again.as_array().unwrap(), saved.as_array().unwrap());
    assert_eq!(again.len(), saved.len(), "eval:\n{}", e.stdout);
    assert!(!again.is_empty(), "eval reports nothing:\n{}", e.stdout);
    let key = |r: &serde_json::Value| {
        (
            r["behaviour"].clone(),
            r["cell"].clone(),
            r["metric"].clone(),
        )
    };
    let close = again.iter().zip(saved).all(|(x, y)| {
        key(x) == key(y)
            && match (x["value"].as_f64(), y["value"].as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-4,
                (a, b) => a == b,
            }
    });
    assert!(close, "eval of the distributed model:\n{}", e.stdout);
    let times: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("distributed.json")).unwrap())
            .unwrap();
    assert_eq!(times["world_size"], 2);
    assert_eq!(times["steps"], 12);
    // Striped reading: rank 0 decoded its half of each batch (and of the few batches its
    // reader had decoded ahead), not the whole batch.
    assert_eq!(times["read_mode"], "striped");
    let (local, decoded) = (
        times["rows_local"].as_u64().unwrap(),
        times["rows_decoded"].as_u64().unwrap(),
    );
    let global = times["rows"].as_u64().unwrap();
    assert_eq!(local, global / 2, "{times}");
    assert!(decoded >= local && decoded < global, "{times}");
}

/// A checkpoint's dense state: Adam's step count, then every parameter value and both
/// moments, in parameter order.
fn checkpoint_dense(dir: &Path) -> (u64, Vec<f32>) {
    mfh_train::load_checkpoint(dir).unwrap().dense_state()
}

/// The checkpoint of `step` in a run's output folder.
fn ck(out: &Path, step: u64) -> std::path::PathBuf {
    out.join("checkpoints")
        .join(mfh_train::checkpoint_name(step))
}

#[test]
fn a_two_rank_run_resumes_on_one_process() {
    // A tiny log (600 train rows, batch 32): `-np 2` to step 12, and `-np 2` stopped at
    // step 6 then continued by `-np 1 --resume`: one checkpoint layout for every engine,
    // so one process continues the two ranks' run, each row now on the one rank.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("log.csv"), tiny_log(900)).unwrap();
    let config = |name: &str, max_steps: u64| {
        let train = format!("epochs = 1\nmax_steps = {max_steps}\ncheckpoint_every = 3");
        let text = tiny_config("log.csv", "", &train).replace("batch_size = 2", "batch_size = 32");
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (full, short) = (config("full.toml", 12), config("short.toml", 6));
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let train = |cfg: &Path, out: &Path, np: usize, resume: bool| {
        let mut args = vec!["train", "--config", s(cfg), "--out", s(out), "--quiet"];
        args.extend(["--seed", "5"]);
        if resume {
            args.push("--resume");
        }
        mpirun(np, &args)
    };
    let plain = tmp.path().join("plain");
    train(&full, &whole, 2, false);
    train(&short, &cut, 2, false);
    train(&short, &plain, 2, false);
    let r = train(&full, &cut, 1, true);
    assert!(r.stderr.contains("(step 6)"), "{}", r.stderr);
    assert!(
        r.stderr.contains("written by 2 rank(s), this run has 1"),
        "{}",
        r.stderr
    );
    let (a, b) = (ck(&whole, 12), ck(&cut, 12));
    let trainer = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("trainer.json")).unwrap()).unwrap()
    };
    let (ta, tb) = (trainer(&a), trainer(&b));
    assert_eq!(
        (ta["world_size"].as_u64(), tb["world_size"].as_u64()),
        (Some(2), Some(1))
    );
    let loss = |t: &serde_json::Value| f64::from_bits(t["loss_ema"].as_u64().unwrap());
    assert!((loss(&ta) - loss(&tb)).abs() < 1e-5, "{ta} {tb}");
    // Dense parameters and Adam's moments at step 12, as if never interrupted.
    let ((sa, va), (sb, vb)) = (checkpoint_dense(&a), checkpoint_dense(&b));
    assert_eq!((sa, va.len()), (sb, vb.len()));
    assert!(!va.is_empty(), "no dense state in {}", a.display());
    let d = va
        .iter()
        .zip(&vb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    eprintln!("-np 2 then -np 1 --resume: max |Δ| dense and Adam state {d:e}");
    assert!(d < 1e-5, "dense state differs by {d}");

    // Without mpirun, `mfh train --resume` continues the distributed run the same way.
    let o = Command::new(mfh_bin())
        .args(["train", "--config", s(&full), "--out", s(&plain), "--quiet"])
        .args(["--seed", "5", "--resume"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("written by 2 rank(s)"), "{stderr}");
    let (sc, vc) = checkpoint_dense(&ck(&plain, 12));
    assert_eq!((sc, vc.len()), (sb, vb.len()));
    assert!(
        vc == vb,
        "a world of one: the same state with or without mpirun"
    );
}
