//! Train tiny models on a small generated log (two facets, a multi-valued and a
//! bucketised feature, admission, an ESMM funnel and negative down-sampling), export
//! them, and score the valid split in tract from the files the export wrote (row maps,
//! io.json): the scores match mfh's own predictions on the same rows within 1e-5. The
//! bundle is whole after an export; one that fails while moving in leaves the previous
//! bundle byte-identical.

mod common;

use mfh_artifact::load_model;
use mfh_config::Config;
use mfh_data::StreamOptions;
use mfh_train::{train, TrainOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// 600 rows over days 1–3; some IDs are seen once only (admission leaves them rowless).
fn log() -> String {
    let mut s = String::from("uid,item,day,price,tags,age,udays,inum,clicked,liked\n");
    for i in 0..600usize {
        let uid = if i % 23 == 0 {
            format!("once{i}")
        } else {
            format!("u{}", i % 13)
        };
        let tags = match i % 4 {
            0 => String::new(),
            1 => format!("t{}", i % 5),
            2 => format!("t{}|t{}", i % 5, i % 3),
            _ => format!("t{}|new{i}|t1", i % 2),
        };
        let clicked = ((i * 7 + i / 5) % 3 == 0) as u8;
        let liked = (clicked == 1 && i % 2 == 0) as u8;
        s.push_str(&format!(
            "{uid},i{},{},{}.25,\"{tags}\",{},{},{},{clicked},{liked}\n",
            i % 17,
            1 + i % 3,
            i % 11,
            (i * 13) % 70,
            (i * 7) % 30,
            i % 6,
        ));
    }
    s
}

fn config(model: &str) -> String {
    format!(
        r#"
[data]
sources = ["log.csv"]
[splits]
train = {{ where = "day <= 2" }}
valid = {{ where = "day == 3" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "categorical"
name = "item"
dim = 3
[[features]]
type = "multi"
name = "tags"
dim = 3
separator = "|"
[[features]]
type = "bucketized"
name = "age"
dim = 2
quantiles = 4
[[features]]
type = "numeric"
name = "price"
transform = ["log1p", "standardize"]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
negative_rate = 0.5
[[behaviours]]
type = "binary"
name = "like"
column = "liked"
[[facets]]
name = "user"
column = "udays"
thresholds = [10]
names = ["new", "old"]
[[facets]]
name = "item"
column = "inum"
thresholds = [2]
names = ["tail", "head"]
{model}
[train]
batch_size = 32
threads = 1
epochs = 2
eval_every = 0
embedding = {{ admit_after = 2 }}
[[train.loss.funnels]]
kind = "esmm"
from = "click"
to = "like"
"#
    )
}

const MODELS: &[(&str, &str)] = &[
    ("mmoe", "[models.mmoe]\ntype = \"mmoe\"\nexperts = 3\nexpert_layers = [8]\ntower = [4]\nbatch_norm = true"),
    ("mfh", "[models.mfh]\ntype = \"mfh\"\nlevel1 = { type = \"cgc\", task_experts = 1, shared_experts = 1, expert_layers = [8] }\nlevel2 = { type = \"mmoe\", experts = 2, expert_layers = [6] }\ntower = [4]"),
    ("ple", "[models.ple]\ntype = \"ple\"\nlevels = 2\ntask_experts = 1\nshared_experts = 1\nexpert_layers = [6]\ntower = [4]"),
    ("stem", "[models.stem]\ntype = \"stem\"\ntower = [5]"),
    ("pepnet", "[models.pepnet]\ntype = \"pepnet\"\ntower = [6, 4]\ngate_hidden = 5\npriors = [\"uid\", \"tags\"]"),
];

fn read_rows(path: &Path) -> HashMap<u64, i64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("key,row"));
    lines
        .map(|l| {
            let (k, r) = l.split_once(',').unwrap();
            (k.parse().unwrap(), r.parse().unwrap())
        })
        .collect()
}

/// Trains `model` in `dir`; returns its model folder.
fn train_model(dir: &Path, model: &str, section: &str) -> PathBuf {
    std::fs::write(dir.join("log.csv"), log()).unwrap();
    let cfg_path = dir.join(format!("{model}.toml"));
    std::fs::write(&cfg_path, config(section)).unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let out = dir.join(format!("model-{model}"));
    train(
        &cfg,
        &TrainOptions {
            hooks: Default::default(),
            tensorboard: None,
            publish: None,
            follow: None,
            model: Some(model.into()),
            out: out.clone(),
            seed: Some(5),
            progress: false,
            keep_checkpoints: false,
            resume: false,
            init_from: None,
        },
    )
    .unwrap();
    out
}

/// The temp folders under `dir` (exports' `.FILE.tmp-…`).
fn temp_folders(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// Every path under `dir` with its bytes (`None` for a folder).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.insert(p.clone(), None);
            out.extend(snapshot(&p));
        } else {
            out.insert(p.clone(), Some(std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// Trains `model`, exports it, and returns the largest |onnx − mfh| over the valid split.
fn train_export_compare(dir: &Path, model: &str, section: &str) -> f32 {
    let out = train_model(dir, model, section);
    let mut m = load_model(&out).unwrap();
    let onnx = dir.join(format!("{model}.onnx"));
    let summary = mfh_export::export(&m, &onnx).unwrap();
    assert!(
        summary.nodes > 10 && summary.onnx_bytes > 1000,
        "{summary:?}"
    );
    // The bundle is whole (every file io.json lists has its checksum), the graph carries
    // its id, and no temp folder is left.
    assert_eq!(mfh_export::verify(&onnx).unwrap(), summary.bundle);
    assert!(summary.other_temps.is_empty(), "{summary:?}");
    assert!(temp_folders(dir).is_empty(), "{:?}", temp_folders(dir));
    let io: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary.io_json).unwrap()).unwrap();
    let inputs = io["inputs"].as_array().unwrap();
    let names: Vec<&str> = inputs.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["uid", "item", "age", "tags", "dense", "cell"]);
    // Admission left some IDs without a row: they are not in the map (row 0).
    let uid_rows = read_rows(&dir.join(inputs[0]["rows"].as_str().unwrap()));
    assert!(!uid_rows.contains_key(&mfh_data::hash_value(b"once23")));
    assert!(uid_rows.contains_key(&mfh_data::hash_value(b"u1")));
    let maps: Vec<HashMap<u64, i64>> = inputs[..4]
        .iter()
        .map(|i| read_rows(&dir.join(i["rows"].as_str().unwrap())))
        .collect();
    // io.json's bucket rows (keyed with the documented bucket seed) are the age table's.
    let bucket_rows: Vec<i64> = inputs[2]["bucket_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(bucket_rows.len() >= 2, "{bucket_rows:?}");
    let mut want: Vec<i64> = maps[2].values().copied().collect();
    let mut have: Vec<i64> = bucket_rows.iter().copied().filter(|&r| r > 0).collect();
    want.sort_unstable();
    have.sort_unstable();
    assert_eq!(have, want);
    assert_eq!(
        io["outputs"][0]["columns"][1]["funnel_parent"].as_str(),
        Some("click")
    );
    let bytes = std::fs::read(&onnx).unwrap();
    assert_eq!(bytes.len(), summary.onnx_bytes);
    let tag = mfh_export::onnx::metadata_entry(mfh_export::BUNDLE_KEY, &summary.bundle);
    assert!(
        bytes.ends_with(&tag),
        "the graph's metadata names the bundle"
    );

    let p = Arc::new(m.pipeline(&m.config.clone()).unwrap());
    let mut worst = 0.0f32;
    let mut rows = 0;
    let mut preds = Vec::new();
    for batch in p.stream("valid", StreamOptions::in_order(64)).unwrap() {
        let mut batch = batch.unwrap();
        let n = batch.n;
        let row = |map: &HashMap<u64, i64>, id: u64| map.get(&id).copied().unwrap_or(0);
        let mut feeds = Vec::new();
        for (f, map) in maps[..3].iter().enumerate() {
            let ids: Vec<i64> = (0..n).map(|i| row(map, batch.single[i * 3 + f])).collect();
            feeds.push(common::ints(&ids));
        }
        let tags = &batch.multi[0];
        let l = (0..n)
            .map(|i| (tags.offsets[i + 1] - tags.offsets[i]) as usize)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut padded = vec![-1i64; n * l];
        for i in 0..n {
            let (a, b) = (tags.offsets[i] as usize, tags.offsets[i + 1] as usize);
            for (j, &id) in tags.ids[a..b].iter().enumerate() {
                padded[i * l + j] = row(&maps[3], id);
            }
        }
        feeds.push(common::ints2(&padded, n, l));
        feeds.push(common::floats2(&batch.dense, n, 1));
        let cells: Vec<i64> = batch.cells.iter().map(|&c| c as i64).collect();
        feeds.push(common::ints(&cells));
        let got = common::run(&bytes, feeds);

        let logits = m.state.forward(&mut batch).to_vec();
        m.state.loss.predict(&logits, &batch.cells, &mut preds);
        assert_eq!(got[0].len(), preds.len());
        for (i, (a, b)) in got[0].iter().zip(&preds).enumerate() {
            let d = (a - b).abs();
            worst = worst.max(d);
            assert!(
                d <= 1e-5,
                "{model}: row {} behaviour {}: onnx {a} vs mfh {b}",
                rows + i / 2,
                i % 2
            );
        }
        rows += n;
    }
    assert!(rows > 100, "{model}: only {rows} valid rows");
    worst
}

#[test]
fn trained_models_score_the_same_in_tract() {
    let tmp = tempfile::tempdir().unwrap();
    for (model, section) in MODELS {
        let worst = train_export_compare(tmp.path(), model, section);
        eprintln!("{model}: max |onnx - mfh| = {worst:e}");
    }
}

#[test]
fn a_failed_export_keeps_the_previous_bundle_and_a_retry_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mmoe, ple) = (MODELS[0], MODELS[2]);
    let first = load_model(&train_model(tmp.path(), mmoe.0, mmoe.1)).unwrap();
    let second = load_model(&train_model(tmp.path(), ple.0, ple.1)).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let onnx = out.join("m.onnx");
    let id = mfh_export::export(&first, &onnx).unwrap().bundle;
    // A folder where io.json must go: the last move fails, after the row maps and the
    // graph had moved in; they go back.
    let io = out.join("m.onnx.io.json");
    let io_bytes = std::fs::read(&io).unwrap();
    std::fs::remove_file(&io).unwrap();
    std::fs::create_dir_all(io.join("in-the-way")).unwrap();
    let before = snapshot(&out);
    let err = mfh_export::export(&second, &onnx).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot move into place"),
        "{err:#}"
    );
    assert_eq!(
        snapshot(&out),
        before,
        "the paths changed, or a temp folder is left"
    );
    // With io.json back, the first bundle is whole.
    std::fs::remove_dir_all(&io).unwrap();
    std::fs::write(&io, &io_bytes).unwrap();
    assert_eq!(mfh_export::verify(&onnx).unwrap(), id);
    // A retry replaces every part.
    let s = mfh_export::export(&second, &onnx).unwrap();
    assert_ne!(s.bundle, id);
    assert_eq!(mfh_export::verify(&onnx).unwrap(), s.bundle);
    assert!(temp_folders(&out).is_empty(), "{:?}", temp_folders(&out));
    let io: serde_json::Value = serde_json::from_slice(&std::fs::read(&io).unwrap()).unwrap();
    assert_eq!(io["model"], "ple");
    assert_eq!(io["bundle"]["id"], s.bundle.as_str());
}

#[test]
fn the_documented_hash_seeds_are_the_readers() {
    for v in [&b"42"[..], b"u1", b"", b"t3"] {
        assert_eq!(
            xxhash_rust::xxh3::xxh3_64_with_seed(v, mfh_export::ID_HASH_SEED),
            mfh_data::hash_value(v)
        );
    }
    // The figures docs/serving.md spells out.
    assert_eq!(mfh_data::MISSING_ID, 5569074031397586721);
    assert_eq!(mfh_export::BUCKET_HASH_SEED, 0x6d66_685f_6964_c3f5);
    assert_eq!(mfh_data::hash_value(b"12.0"), mfh_data::hash_value(b"12"));
}
