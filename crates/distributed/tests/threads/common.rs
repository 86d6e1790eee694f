//! The test data and config, running `train` on thread ranks, and reading saved models,
//! reports and checkpoints.

use mfh_artifact::load_model;
use mfh_config::Config;
use mfh_distributed::{StepTimes, ThreadComm};
use mfh_train::TrainOptions;
use std::collections::BTreeMap;
use std::path::Path;

pub fn write_data(dir: &Path) -> std::path::PathBuf {
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
[[features]]
type = "bucketized"
name = "price_band"
column = "price"
dim = 3
quantiles = 4
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

pub fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        hooks: Default::default(),
        tensorboard: None,
        publish: None,
        follow: None,
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
pub fn dense(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut m = load_model(dir).unwrap();
    let mut out = Vec::new();
    m.state
        .net_mut()
        .visit_params("", &mut |n, p, _| out.push((n.to_string(), p.to_vec())));
    out
}

pub fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty(), "no dense tensor");
    let mut d = 0.0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        for (x, y) in va.iter().zip(vb) {
            d = d.max((x - y).abs());
        }
    }
    d
}

pub fn metrics(dir: &Path) -> Vec<(String, f64)> {
    report_values(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
}

/// A report's values (JSON as in `metrics.json`), by behaviour, cell and metric.
pub fn report_values(json: &str) -> Vec<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let key = format!("{}/{}/{}", r["behaviour"], r["cell"], r["metric"]);
            r["value"].as_f64().map(|x| (key, x))
        })
        .collect()
}

pub fn max_metric_diff(a: &[(String, f64)], b: &[(String, f64)]) -> f64 {
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty(), "no metric");
    a.iter()
        .zip(b)
        .map(|((ka, x), (kb, y))| {
            assert_eq!(ka, kb);
            (x - y).abs()
        })
        .fold(0.0, f64::max)
}

/// Runs `train` on `size` thread ranks.
pub fn on_threads(size: usize, cfg: &Config, opts: &TrainOptions) {
    let handles: Vec<_> = ThreadComm::world(size)
        .into_iter()
        .map(|mut comm| {
            let (cfg, opts) = (cfg.clone(), opts.clone());
            std::thread::spawn(move || mfh_distributed::train(&cfg, &opts, &mut comm).unwrap().0)
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// The test data in `dir` with two configs checkpointing every 5 steps: the full run
/// (25 steps) and one cut at step 19.
pub fn full_and_cut_configs(dir: &Path) -> (Config, Config) {
    let path = write_data(dir);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_steps = 25", "max_steps = 25\ncheckpoint_every = 5");
    std::fs::write(&path, &text).unwrap();
    let short = dir.join("short.toml");
    std::fs::write(&short, text.replace("max_steps = 25", "max_steps = 19")).unwrap();
    (Config::load(&path).unwrap(), Config::load(&short).unwrap())
}

/// Copies a folder tree (a run's output, to resume it twice).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// The checkpoint of `step` in a run's output folder.
pub fn ck(out: &Path, step: u64) -> std::path::PathBuf {
    out.join("checkpoints")
        .join(mfh_train::checkpoint_name(step))
}

/// Every embedding row of the checkpoint in `dir` (gathered from every rank): (table,
/// id) → row then optimizer state.
pub fn checkpoint_rows(dir: &Path) -> BTreeMap<(usize, u64), Vec<f32>> {
    let c = mfh_train::load_checkpoint(dir).unwrap();
    let mut out = BTreeMap::new();
    for (t, table) in c.state.emb.tables().iter().enumerate() {
        for (id, s) in table.ids() {
            let v = table.row(s).iter().chain(table.row_state(s)).copied();
            let old = out.insert((t, id), v.collect());
            assert!(old.is_none(), "row ({t}, {id}) is in the checkpoint twice");
        }
    }
    assert!(!out.is_empty(), "{}: no embedding row", dir.display());
    out
}

/// A checkpoint's dense state: Adam's step count, then every parameter value and both
/// moments, in parameter order.
pub fn checkpoint_dense(dir: &Path) -> (u64, Vec<f32>) {
    mfh_train::load_checkpoint(dir).unwrap().dense_state()
}

/// `train` on `size` thread ranks; every rank's result, in rank order.
pub fn run_ranks(
    size: usize,
    cfg: &Config,
    opts: &TrainOptions,
) -> Vec<anyhow::Result<(mfh_train::TrainSummary, StepTimes)>> {
    let handles: Vec<_> = ThreadComm::world(size)
        .into_iter()
        .map(|mut comm| {
            let (cfg, opts) = (cfg.clone(), opts.clone());
            std::thread::spawn(move || mfh_distributed::train(&cfg, &opts, &mut comm))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// `write_data`'s config with `from` replaced by `to`.
pub fn edited(dir: &Path, name: &str, edits: &[(&str, &str)]) -> Config {
    let mut text = std::fs::read_to_string(write_data(dir)).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

/// Checkpoint folders (`ckpt-<step>`) under a run's output, sorted.
pub fn checkpoint_dirs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ckpt-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
