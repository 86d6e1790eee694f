//! Row weights and negative down-sampling at read time.

use mfh_config::Config;
use mfh_data::{Pipeline, StreamOptions};
use std::path::Path;
use std::sync::Arc;

fn cfg(dir: &Path, weight: &str, rate: &str) -> Config {
    let text = format!(
        r#"
[data]
sources = ["log.csv"]
{weight}
[splits]
train = {{ where = "day <= 1" }}
valid = {{ where = "day == 2" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[behaviours]]
type = "binary"
name = "click"
column = "click"
{rate}
[[behaviours]]
type = "binary"
name = "like"
column = "like"
"#
    );
    Config::from_toml_str(&text, Path::new("t.toml"), dir).unwrap()
}

/// 4000 rows per day; click on every 10th row, like on every 20th.
fn write_log(dir: &Path) {
    let mut log = String::from("uid,day,click,like,w\n");
    for day in 1..=2 {
        for i in 0..4000 {
            let click = (i % 10 == 0) as u8;
            let like = (i % 20 == 0) as u8;
            log.push_str(&format!(
                "u{},{day},{click},{like},{}\n",
                i % 37,
                0.5 + (i % 3) as f64
            ));
        }
    }
    std::fs::write(dir.join("log.csv"), log).unwrap();
}

fn collect(p: &Arc<Pipeline>, split: &str) -> (Vec<f32>, Vec<f32>, u64) {
    let mut s = p.stream(split, StreamOptions::in_order(256)).unwrap();
    let (mut labels, mut weights) = (Vec::new(), Vec::new());
    for b in s.by_ref() {
        let b = b.unwrap();
        labels.extend(b.labels);
        weights.extend(b.weights);
    }
    (labels, weights, s.stats().unwrap().sampled_out)
}

#[test]
fn negatives_are_kept_at_the_rate_on_the_train_split_only() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path());
    let p = Arc::new(Pipeline::new(&cfg(tmp.path(), "", "negative_rate = 0.2")).unwrap());
    let (train, _, dropped) = collect(&p, "train");
    let clicks = train.chunks(2).map(|r| r[0]);
    let pos = clicks.clone().filter(|&y| y == 1.0).count();
    let neg = clicks.clone().filter(|&y| y == 0.0).count();
    let masked = clicks.filter(|y| y.is_nan()).count();
    assert_eq!(pos, 400, "every positive is kept");
    // 3600 negatives kept at 0.2: 720 expected; a binomial sd is 24.
    assert!((620..=820).contains(&neg), "{neg} negatives kept");
    assert_eq!(neg + masked, 3600, "the rest are masked, not lost");
    // Like is not sampled, so every row keeps a label and none is dropped.
    assert_eq!(dropped, 0);
    assert!(train.chunks(2).all(|r| r[1].is_finite()));
    // The same labels every pass.
    assert_eq!(
        collect(&p, "train")
            .0
            .iter()
            .map(|y| y.to_bits())
            .collect::<Vec<_>>(),
        train.iter().map(|y| y.to_bits()).collect::<Vec<_>>()
    );
    // The valid split is read whole.
    let (valid, _, _) = collect(&p, "valid");
    assert!(valid.iter().all(|y| y.is_finite()));
    assert_eq!(valid.len(), 8000);
}

#[test]
fn a_row_left_without_labels_is_dropped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path());
    let text = cfg(tmp.path(), "", "negative_rate = 0.2");
    // Sample like as well: a row negative on both may lose both labels.
    let mut c = text.clone();
    if let mfh_config::BehaviourConfig::Binary { negative_rate, .. } = &mut c.behaviours[1] {
        *negative_rate = Some(0.5);
    }
    let p = Arc::new(Pipeline::new(&c).unwrap());
    let (train, _, dropped) = collect(&p, "train");
    let rows = train.len() / 2;
    assert!(dropped > 1000, "{dropped} rows dropped");
    assert_eq!(
        rows as u64 + dropped,
        4000,
        "every row is either kept or counted"
    );
    assert!(train.chunks(2).all(|r| r.iter().any(|y| y.is_finite())));
}

#[test]
fn weights_are_read_and_bad_ones_name_the_cell() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path());
    let p = Arc::new(Pipeline::new(&cfg(tmp.path(), "weight_column = \"w\"", "")).unwrap());
    let (_, w, _) = collect(&p, "train");
    assert_eq!(w.len(), 4000);
    assert_eq!(&w[..4], &[0.5, 1.5, 2.5, 0.5]);
    std::fs::write(
        tmp.path().join("log.csv"),
        "uid,day,click,like,w\nu1,1,0,0,1\nu2,1,1,0,-2\n",
    )
    .unwrap();
    let mut s = p.stream("train", StreamOptions::in_order(8)).unwrap();
    let e = s
        .find_map(|b| b.err())
        .expect("a negative weight is an error")
        .to_string();
    // Line 3, column 5 (the weight cell).
    assert!(e.contains("log.csv:3:5"), "{e}");
    assert!(e.contains("weight"), "{e}");
}
