//! The statistics pass split across ranks and merged through the words the ranks
//! exchange: the same fitted transforms, bit for bit, as one pass over everything.

use mfh_config::Config;
use mfh_data::{FitPart, FittedFeature, Pipeline, SplitMix};
use std::path::Path;

/// `rows` rows over `files` files `log-K.csv`.
fn write_log(dir: &Path, rows: usize, files: usize) {
    let mut rng = SplitMix(5);
    let header = "uid,x,y,clicked,liked,day\n";
    let mut texts = vec![String::from(header); files];
    for i in 0..rows {
        let text = &mut texts[i * files / rows];
        let x = (rng.uniform() * 6.0).exp();
        let y = if rng.below(4) == 0 { 0 } else { rng.below(50) };
        let click = rng.below(3) == 0;
        let like = click && rng.below(2) == 0 || rng.below(50) == 0;
        text.push_str(&format!(
            "u{},{x:.3},{y},{},{},{}\n",
            i % 17,
            click as u8,
            like as u8,
            1 + i % 3
        ));
    }
    for (k, text) in texts.iter().enumerate() {
        std::fs::write(dir.join(format!("log-{k:02}.csv")), text).unwrap();
    }
}

fn config(dir: &Path) -> Config {
    let text = r#"
[data]
sources = ["log-*.csv"]
[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
[train.loss]
funnels = [{ kind = "esmm", from = "click", to = "like" }]
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "numeric"
name = "x"
transform = ["log1p", "standardize"]
[[features]]
type = "bucketized"
name = "y"
dim = 4
quantiles = 6
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "binary"
name = "like"
column = "liked"
"#;
    Config::from_toml_str(text, Path::new("t.toml"), dir).unwrap()
}

/// Fits on `size` ranks through the words they exchange: the merged transforms, the
/// rows read in all, and each rank's files opened.
fn fit_on(cfg: &Config, size: usize) -> (mfh_data::FittedTransforms, u64, Vec<u64>) {
    let mut p = Pipeline::new(cfg).unwrap();
    let mut words = Vec::new();
    let mut opened = Vec::new();
    for rank in 0..size {
        let (part, s) = p.fit_part("train", rank, size).unwrap();
        words.push(part.to_words());
        opened.push(s.files_read);
    }
    let parts: Vec<FitPart> = words
        .iter()
        .map(|w| FitPart::from_words(&p, w).unwrap())
        .collect();
    let rows_read = p.finish_fit(parts).unwrap();
    (p.transforms.clone(), rows_read, opened)
}

#[test]
fn striped_parts_merge_into_the_one_pass_statistics() {
    // One file: striped by row (every rank reads everything). Five files: by file (a
    // rank opens only its stripes' files).
    for files in [1, 5] {
        let tmp = tempfile::tempdir().unwrap();
        write_log(tmp.path(), 5000, files);
        let cfg = config(tmp.path());
        let mut one = Pipeline::new(&cfg).unwrap();
        let stats = one.fit("train").unwrap();
        let want = one.transforms.clone();
        assert_eq!(stats.rows_read, 5000);
        assert_eq!(want.rows, stats.rows_used);
        assert!(want.rows > 3000, "{}", want.rows);
        assert!(want.funnel_violations["click->like"] > 0);
        let FittedFeature::Buckets { boundaries } = &want.features["y"] else {
            panic!("y is not bucketised");
        };
        assert_eq!(boundaries.len(), 5, "{boundaries:?}");
        assert!(matches!(
            want.features["x"],
            FittedFeature::Standardize { .. }
        ));
        // More ranks than stripes: the ranks past the stripes fit nothing.
        for size in [2, 3, 7, mfh_data::STRIPES + 5] {
            let (got, rows_read, opened) = fit_on(&cfg, size);
            // The stripes do not depend on the number of ranks: bit-identical statistics.
            assert_eq!(got, want, "{files} files, {size} ranks");
            assert_eq!(rows_read, 5000, "{files} files, {size} ranks");
            let want_opened: Vec<u64> = (0..size)
                .map(|r| match files {
                    1 => 1,
                    _ => (0..files).filter(|f| f % size == r).count() as u64,
                })
                .collect();
            assert_eq!(opened, want_opened, "{files} files, {size} ranks");
        }
        // A rank's part missing, or sent twice, is an error rather than a partial fit.
        let mut p = Pipeline::new(&cfg).unwrap();
        let parts: Vec<FitPart> = (0..2)
            .map(|r| p.fit_part("train", r, 2).unwrap().0)
            .collect();
        let e = p.finish_fit(vec![parts[0].clone()]).unwrap_err();
        assert!(e.to_string().contains("no rank sent stripe 1"), "{e}");
        let twice = vec![parts[0].clone(), parts[1].clone(), parts[1].clone()];
        let e = p.finish_fit(twice).unwrap_err();
        assert!(e.to_string().contains("came from two ranks"), "{e}");
    }
}

#[test]
fn malformed_words_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 200, 1);
    let cfg = config(tmp.path());
    let p = Pipeline::new(&cfg).unwrap();
    let (part, _) = p.fit_part("train", 0, 2).unwrap();
    let w = part.to_words();
    assert!(FitPart::from_words(&p, &w).is_ok());
    for bad in [&w[..w.len() - 1], &[&w[..], &[1.0]].concat()[..], &[][..]] {
        let e = FitPart::from_words(&p, bad).unwrap_err().to_string();
        assert!(e.contains("malformed"), "{e}");
    }
}
