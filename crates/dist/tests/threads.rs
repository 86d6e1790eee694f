//! Distributed training with ranks as threads ([`ThreadComm`]), against the
//! one-process trainer on the same config: a made-up log with a shared table, a
//! multi-valued field, a numeric feature, two behaviours and a facet. Needs no MPI.

use mfh_config::Config;
use mfh_dist::{Comm, LocalComm, ThreadComm};
use mfh_train::{load_model, TrainOptions};
use std::path::Path;

fn write_data(dir: &Path) -> std::path::PathBuf {
    let mut log = String::from("uid,author,item,tags,price,day,clicked,liked\n");
    for i in 0..1500u64 {
        let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        let tags: Vec<String> = (0..(h % 4))
            .map(|k| format!("t{}", (h + k * 7) % 13))
            .collect();
        log.push_str(&format!(
            "u{},u{},i{},\"{}\",{}.5,{},{},{}\n",
            h % 41,
            (h >> 5) % 41,
            (h >> 3) % 97,
            tags.join(","),
            h % 17,
            1 + i % 3,
            ((h >> 7) % 3 == 0) as u8,
            if i % 5 == 0 {
                String::new()
            } else {
                (((h >> 9) % 4) == 0)
                    .to_string()
                    .replace("true", "1")
                    .replace("false", "0")
            },
        ));
    }
    std::fs::write(dir.join("log.csv"), log).unwrap();
    let cfg = r#"
[data]
sources = ["log.csv"]
gauc_column = "uid"
[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
[[features]]
type = "categorical"
name = "uid"
dim = 4
table = "users"
[[features]]
type = "categorical"
name = "author"
dim = 4
table = "users"
[[features]]
type = "categorical"
name = "item"
dim = 3
[[features]]
type = "multi"
name = "tags"
dim = 3
separator = ","
pooling = "mean"
[[features]]
type = "numeric"
name = "price"
transform = ["log1p", "standardize"]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "binary"
name = "like"
column = "liked"
[[facets]]
name = "cheap"
column = "price"
thresholds = [8]
names = ["low", "high"]
[models.mmoe]
type = "mmoe"
experts = 2
expert_layers = [8]
tower = [4]
[train]
batch_size = 64
epochs = 2
max_steps = 25
threads = 1
eval_every = 10
lr = 0.01
early_stopping = { metric = "auc", patience = 100 }
embedding = { optimizer = "adagrad", lr = 0.05 }
"#;
    let path = dir.join("cfg.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        model: None,
        out: out.to_path_buf(),
        seed: Some(3),
        progress: false,
        keep_checkpoints: false,
        resume: false,
        init_from: None,
    }
}

/// Dense tensors of a saved model, by name.
fn dense(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut m = load_model(dir).unwrap();
    let mut out = Vec::new();
    m.state
        .net
        .visit_params("", &mut |n, p, _| out.push((n.to_string(), p.to_vec())));
    out
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut d = 0.0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            d = d.max((x - y).abs());
        }
    }
    d
}

fn metrics(dir: &Path) -> Vec<(String, f64)> {
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

fn max_metric_diff(a: &[(String, f64)], b: &[(String, f64)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((ka, x), (kb, y))| {
            assert_eq!(ka, kb);
            (x - y).abs()
        })
        .fold(0.0, f64::max)
}

#[test]
fn ranks_as_threads_train_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::load(&write_data(tmp.path())).unwrap();
    let reference = tmp.path().join("one");
    let s = mfh_train::train(&cfg, &opts(&reference)).unwrap();
    assert_eq!(s.steps, 25);

    // One rank through the distributed code path: the same model.
    let local = tmp.path().join("local");
    let (s1, _) = mfh_dist::train(&cfg, &opts(&local), &mut LocalComm::new()).unwrap();
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
                    let r = mfh_dist::train(&cfg, &opts(&out), &mut comm).unwrap();
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
        for (ta, tb) in a.state.emb.tables().iter().zip(b.state.emb.tables()) {
            assert_eq!(ta.len(), tb.len(), "table {}", ta.name());
        }
        let _ = (&mut a, &mut b);
    }
}

/// Runs `train` on `size` thread ranks.
fn on_threads(size: usize, cfg: &Config, opts: &TrainOptions) {
    let handles: Vec<_> = ThreadComm::world(size)
        .into_iter()
        .map(|mut comm| {
            let (cfg, opts) = (cfg.clone(), opts.clone());
            std::thread::spawn(move || mfh_dist::train(&cfg, &opts, &mut comm).unwrap().0)
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn a_resumed_run_writes_the_uninterrupted_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_data(tmp.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_steps = 25", "max_steps = 25\ncheckpoint_every = 5");
    std::fs::write(&path, &text).unwrap();
    let short = tmp.path().join("short.toml");
    std::fs::write(&short, text.replace("max_steps = 25", "max_steps = 19")).unwrap();
    let (full_cfg, short_cfg) = (Config::load(&path).unwrap(), Config::load(&short).unwrap());

    let whole = tmp.path().join("whole");
    on_threads(2, &full_cfg, &opts(&whole));
    // Stopped at step 19 (its last checkpoint: step 19, mid-epoch 2), then resumed.
    let cut = tmp.path().join("cut");
    on_threads(2, &short_cfg, &opts(&cut));
    assert!(cut.join("checkpoints/step19/manifest.json").is_file());
    on_threads(
        2,
        &full_cfg,
        &TrainOptions {
            resume: true,
            ..opts(&cut)
        },
    );
    for f in ["dense.bin", "shard-0.bin", "shard-1.bin"] {
        let a = std::fs::read(whole.join("checkpoints/step25").join(f)).unwrap();
        let b = std::fs::read(cut.join("checkpoints/step25").join(f)).unwrap();
        assert!(a == b, "{f} differs after resuming");
    }
    // A checkpoint of 2 ranks does not resume on 3.
    let handles: Vec<_> = ThreadComm::world(3)
        .into_iter()
        .map(|mut comm| {
            let (cfg, o) = (
                full_cfg.clone(),
                TrainOptions {
                    resume: true,
                    ..opts(&cut)
                },
            );
            std::thread::spawn(move || {
                mfh_dist::train(&cfg, &o, &mut comm)
                    .err()
                    .map(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        let e = h.join().unwrap().expect("resuming on 3 ranks fails");
        assert!(e.contains("written by 2 ranks"), "{e}");
    }
}
