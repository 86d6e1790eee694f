//! The model folder's save protocol: every file under model.json's checksums, a crash
//! while staging leaves the previous model, a crash while moving files in is finished by
//! the next load, and a folder with any listed file changed refuses to load.

use mfh_artifact::{fresh_state, load_model, save_model, SaveInfo, STAGING};
use mfh_config::Config;
use mfh_data::Pipeline;
use std::path::{Path, PathBuf};

const CONFIG: &str = r#"
[data]
sources = ["log.csv"]
[[data.side_tables]]
name = "user"
path = "users.csv"
key = "uid"
[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "bucketized"
name = "age"
column = "user.age"
dim = 4
boundaries = [20.0, 30.0]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[models.sb]
type = "shared_bottom"
bottom = [8]
tower = [4]
[train]
model = "sb"
threads = 1
"#;

fn setup(root: &Path) -> Config {
    let mut log = String::from("uid,day,clicked\n");
    for i in 0..60 {
        log.push_str(&format!("u{},{},{}\n", i % 5, 1 + i % 3, (i / 2) % 2));
    }
    std::fs::write(root.join("log.csv"), log).unwrap();
    let mut users = String::from("uid,age\n");
    for u in 0..5 {
        users.push_str(&format!("u{u},{}\n", 15 + u * 6));
    }
    std::fs::write(root.join("users.csv"), users).unwrap();
    Config::from_toml_str(CONFIG, &root.join("t.toml"), root).unwrap()
}

/// Saves a fresh model of `seed` at `step` into `dir`.
fn save(cfg: &Config, dir: &Path, seed: u64, step: u64) {
    let mut p = Pipeline::new(cfg).unwrap();
    p.fit("train").unwrap();
    let layout = p.layout().clone();
    let spec = toml::Value::Table(cfg.model_section(None).unwrap().1.clone())
        .try_into()
        .unwrap();
    let mut state = fresh_state(cfg, &layout, spec, seed).unwrap();
    let info = SaveInfo {
        cfg,
        model_name: "sb",
        layout: &layout,
        transforms: &p.transforms,
        seed,
        step,
        selection_split: "valid",
        selection_metric: "auc",
        selection_value: None,
        metrics_json: "[]",
    };
    save_model(dir, &mut state, &info).unwrap();
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_file_is_checksummed_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    let dir = tmp.path().join("m");
    save(&cfg, &dir, 1, 7);
    assert!(!dir.join(STAGING).exists());
    let m = load_model(&dir).unwrap();
    let listed: Vec<&str> = m.meta.checksums.keys().map(String::as_str).collect();
    assert_eq!(
        listed,
        [
            "config.toml",
            "dense.bin",
            "embeddings.bin",
            "metrics.json",
            "serving.json",
            "tables/user.csv",
            "transforms.json"
        ]
    );
    for name in [
        "config.toml",
        "metrics.json",
        "transforms.json",
        "tables/user.csv",
    ] {
        let p = dir.join(name);
        let keep = std::fs::read(&p).unwrap();
        let mut bad = keep.clone();
        bad.push(b'\n');
        std::fs::write(&p, &bad).unwrap();
        let e = format!(
            "{:#}",
            load_model(&dir)
                .err()
                .expect("a changed file must not load")
        );
        assert!(e.contains(name) && e.contains("checksum"), "{name}: {e}");
        std::fs::write(&p, &keep).unwrap();
    }
    load_model(&dir).unwrap();
}

/// Copies every file of the model folder `from` into `to` (a stage), model.json too
/// unless `complete` is false.
fn stage_copy(from: &Path, to: &Path, complete: bool) -> Vec<PathBuf> {
    std::fs::create_dir_all(to.join("tables")).unwrap();
    let mut out = Vec::new();
    for name in files(from) {
        if name == "tables" {
            for t in files(&from.join("tables")) {
                std::fs::copy(from.join("tables").join(&t), to.join("tables").join(&t)).unwrap();
            }
            continue;
        }
        if name == "model.json" && !complete {
            continue;
        }
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        out.push(to.join(&name));
    }
    out
}

#[test]
fn an_interrupted_save_leaves_a_whole_model_old_or_new() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    save(&cfg, &old, 1, 10);
    save(&cfg, &new, 2, 20);
    let dense = |d: &Path| std::fs::read(d.join("dense.bin")).unwrap();
    assert_ne!(dense(&old), dense(&new), "two seeds, two models");

    // Cut short while staging (no model.json in the stage yet): the old model loads.
    let dir = tmp.path().join("a");
    save(&cfg, &dir, 1, 10);
    stage_copy(&new, &dir.join(STAGING), false);
    let m = load_model(&dir).unwrap();
    assert_eq!(m.meta.step, 10);
    assert_eq!(dense(&dir), dense(&old));

    // Cut short while moving in: dense.bin and the tables are already new, the rest not.
    let dir = tmp.path().join("b");
    save(&cfg, &dir, 1, 10);
    let stage = dir.join(STAGING);
    stage_copy(&new, &stage, true);
    std::fs::rename(stage.join("dense.bin"), dir.join("dense.bin")).unwrap();
    std::fs::rename(stage.join("tables/user.csv"), dir.join("tables/user.csv")).unwrap();
    let m = load_model(&dir).unwrap();
    assert_eq!(m.meta.step, 20, "the load finishes the interrupted save");
    assert_eq!(dense(&dir), dense(&new));
    assert!(!stage.exists());
    assert_eq!(files(&dir), files(&new));

    // A stage whose model.json was cut short (a full disk) is not whole: nothing moves,
    // and the old model loads.
    let dir = tmp.path().join("d");
    save(&cfg, &dir, 1, 10);
    let stage = dir.join(STAGING);
    stage_copy(&new, &stage, true);
    let meta = std::fs::read(stage.join("model.json")).unwrap();
    std::fs::write(stage.join("model.json"), &meta[..meta.len() / 2]).unwrap();
    assert_eq!(load_model(&dir).unwrap().meta.step, 10);
    assert_eq!(dense(&dir), dense(&old));
    // Nor one whose model.json lists a file that is neither staged nor in place.
    std::fs::write(stage.join("model.json"), &meta).unwrap();
    std::fs::remove_file(stage.join("embeddings.bin")).unwrap();
    assert_eq!(load_model(&dir).unwrap().meta.step, 10);
    assert_eq!(dense(&dir), dense(&old));

    // A new save over an unfinished stage: the stale stage is discarded.
    let dir = tmp.path().join("c");
    save(&cfg, &dir, 1, 10);
    stage_copy(&new, &dir.join(STAGING), false);
    std::fs::write(dir.join(STAGING).join("stale.txt"), "left over").unwrap();
    std::fs::write(dir.join(STAGING).join("tables/gone.csv"), "left over").unwrap();
    save(&cfg, &dir, 3, 30);
    assert_eq!(load_model(&dir).unwrap().meta.step, 30);
    assert!(!dir.join(STAGING).exists());
    assert!(!dir.join("stale.txt").exists() && !dir.join("tables/gone.csv").exists());
}

#[test]
fn a_folder_loads_from_any_working_directory() {
    // The config is stored with absolute paths, so nothing depends on where training ran.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    let dir = tmp.path().join("m");
    save(&cfg, &dir, 1, 5);
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let root = std::path::absolute(tmp.path()).unwrap();
    let want = format!("{}", root.join("log.csv").display());
    assert!(text.contains(&want), "config.toml names {want}:\n{text}");
    let m = load_model(&dir).unwrap();
    assert!(m.config.data.sources.iter().all(|p| p.is_absolute()));
    m.pipeline(&m.config).unwrap();
}
