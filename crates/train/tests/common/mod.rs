//! The made-up log and config the training-loop tests share.

use mfh_config::Config;
use mfh_train::TrainOptions;
use std::path::Path;

/// A made-up log (a user table, a multi-valued field, a numeric feature, two behaviours,
/// a facet) and its config; `train` replaces the `[train]` keys after `batch_size`.
pub fn setup(dir: &Path, name: &str, train: &str) -> Config {
    let mut log = String::from("uid,item,tags,price,day,clicked,liked\n");
    for i in 0..900u64 {
        let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        let tags: Vec<String> = (0..(h % 3)).map(|k| format!("t{}", (h + k) % 7)).collect();
        log.push_str(&format!(
            "u{},i{},\"{}\",{}.5,{},{},{}\n",
            h % 31,
            (h >> 3) % 53,
            tags.join(","),
            h % 17,
            1 + i % 3,
            ((h >> 7) % 3 == 0) as u8,
            ((h >> 9) % 4 == 0) as u8,
        ));
    }
    std::fs::write(dir.join("log.csv"), log).unwrap();
    let text = format!(
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
dim = 4
[[features]]
type = "multi"
name = "tags"
dim = 3
separator = ","
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
batch_size = 32
threads = 1
eval_every = 7
lr = 0.01
early_stopping = {{ metric = "auc", patience = 100 }}
embedding = {{ optimizer = "adagrad", lr = 0.05 }}
{train}
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

pub fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        hooks: Default::default(),
        tensorboard: None,
        publish: None,
        follow: None,
        model: None,
        out: out.to_path_buf(),
        seed: Some(11),
        progress: false,
        keep_checkpoints: false,
        resume: false,
        init_from: None,
    }
}
