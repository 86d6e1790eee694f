//! The reader on small files made here: joins, facets, splits, shuffling, and the cases
//! real logs throw at it (BOM, CRLF, quoted cells, missing values, duplicate keys).

use mfh_config::Config;
use mfh_data::{hash_value, Pipeline, StreamOptions, MISSING_ID};
use std::path::Path;
use std::sync::Arc;

fn cfg(dir: &Path, extra_facets: &str) -> Config {
    let text = format!(
        r#"
[data]
sources = ["log.csv"]
gauc_column = "uid"
[[data.side_tables]]
name = "user"
path = "users.csv"
key = "uid"
[splits]
train = {{ where = "day <= 2" }}
valid = {{ where = "day == 3 and user.tier != \"x\"" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "multi"
name = "tags"
dim = 4
separator = "|"
[[features]]
type = "numeric"
name = "age"
transform = ["standardize"]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "regression"
name = "ratio"
expr = "play / dur"
clip = [0.0, 2.0]
[[facets]]
name = "tier"
column = "user.tier"
groups = [{{ name = "gold", values = ["a", "b"] }}]
default = "rest"
{extra_facets}
"#
    );
    Config::from_toml_str(&text, Path::new("t.toml"), dir).unwrap()
}

fn write(dir: &Path, log: &str, users: &str) {
    std::fs::write(dir.join("log.csv"), log).unwrap();
    std::fs::write(dir.join("users.csv"), users).unwrap();
}

const USERS: &str = "\u{feff}uid,tier,age\r\nu1,a,30\r\nu2,c,\r\nu3,\"b\",50\r\n";
const LOG: &str = "uid,day,tags,clicked,play,dur\n\
u1,1,t1|t2,1,5,10\n\
u2,1,,0,3,0\n\
u3,2,t2,1,30,10\n\
u1,3,t3,0,1,2\n";

#[test]
fn joins_facets_labels_and_missing_values() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), LOG, USERS);
    let mut p = Pipeline::new(&cfg(tmp.path(), "")).unwrap();
    let fit = p.fit("train").unwrap();
    assert_eq!(fit.rows_used, 3);
    assert_eq!(fit.rows_read, 4);
    let p = Arc::new(p);
    let b: Vec<_> = p
        .stream("train", StreamOptions::in_order(8))
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let b = &b[0];
    assert_eq!(b.n, 3);
    assert_eq!(
        b.single,
        vec![hash_value(b"u1"), hash_value(b"u2"), hash_value(b"u3")]
    );
    assert_eq!(b.multi[0].offsets, vec![0, 2, 2, 3]);
    assert_eq!(b.multi[0].ids[2], hash_value(b"t2"));
    // u2's age is missing: fill 0; the others standardised over the train rows (30, 50).
    let sd = (200.0f64).sqrt();
    assert!((b.dense[0] as f64 - (30.0 - 40.0) / sd).abs() < 1e-6);
    assert_eq!(b.dense[1], 0.0);
    // Labels: click, ratio (play/dur; dur 0 masks it; 3.0 is clipped to 2).
    assert_eq!(b.labels[0..2], [1.0, 0.5]);
    assert!(b.labels[3].is_nan());
    assert_eq!(b.labels[4..6], [1.0, 2.0]);
    // Facet: a, b → gold (0); c → rest (1).
    assert_eq!(b.cells, vec![0, 1, 0]);
    assert_eq!(b.groups[0], hash_value(b"u1"));
    assert_ne!(b.groups[1], MISSING_ID);
}

#[test]
fn shuffling_is_deterministic_per_seed_and_loses_no_row() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = String::from("uid,day,tags,clicked,play,dur\n");
    for i in 0..500 {
        log.push_str(&format!("u{},1,t{},{},1,2\n", 1 + i % 3, i, i % 2));
    }
    write(tmp.path(), &log, USERS);
    let mut p = Pipeline::new(&cfg(tmp.path(), "")).unwrap();
    p.fit("train").unwrap();
    let p = Arc::new(p);
    let order = |seed: u64, buffer: usize| -> Vec<u64> {
        let opts = StreamOptions {
            batch_size: 64,
            shuffle_buffer: buffer,
            seed,
            prefetch: 2,
        };
        p.stream("train", opts)
            .unwrap()
            .flat_map(|b| b.unwrap().rows)
            .collect()
    };
    let a = order(1, 200);
    assert_eq!(a, order(1, 200));
    assert_ne!(a, order(2, 200));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..500).collect::<Vec<u64>>());
    assert_eq!(order(0, 0), (0..500).collect::<Vec<u64>>());
}

#[test]
fn duplicate_side_key_names_both_lines() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), LOG, "uid,tier,age\nu1,a,1\nu2,b,2\nu1,c,3\n");
    let e = Pipeline::new(&cfg(tmp.path(), ""))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("users.csv:4:1") && e.contains("first on line 2"),
        "{e}"
    );
}

#[test]
fn missing_side_key_is_a_row_error_only_inside_the_split() {
    let tmp = tempfile::tempdir().unwrap();
    // u9 is on day 3 (valid only): the train pass does not care.
    write(tmp.path(), &LOG.replace("u1,3,t3", "u9,3,t3"), USERS);
    let mut p = Pipeline::new(&cfg(tmp.path(), "")).unwrap();
    assert_eq!(p.fit("train").unwrap().rows_used, 3);
    let e = p.fit("valid").err().unwrap().to_string();
    assert!(
        e.contains("log.csv:5:1") && e.contains("u9") && e.contains("side table `user`"),
        "{e}"
    );
}

#[test]
fn threshold_facet_without_default_refuses_missing_values() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), LOG, USERS);
    let extra = "[[facets]]\nname = \"age\"\ncolumn = \"user.age\"\nthresholds = [40]\nnames = [\"young\", \"old\"]\n";
    let mut p = Pipeline::new(&cfg(tmp.path(), extra)).unwrap();
    let e = p.fit("train").err().unwrap().to_string();
    assert!(
        e.contains("users.csv:3:3") && e.contains("facet `age`"),
        "{e}"
    );
}

#[test]
fn split_from_a_file_of_row_indices() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), LOG, USERS);
    std::fs::write(tmp.path().join("rows.txt"), "# rows 0 and 3\n0\n3\n").unwrap();
    let mut c = cfg(tmp.path(), "");
    c.splits.get_mut("valid").unwrap().predicate = None;
    c.splits.get_mut("valid").unwrap().rows = Some(tmp.path().join("rows.txt"));
    let p = Arc::new(Pipeline::new(&c).unwrap());
    let rows: Vec<u64> = p
        .stream("valid", StreamOptions::in_order(8))
        .unwrap()
        .flat_map(|b| b.unwrap().rows)
        .collect();
    assert_eq!(rows, vec![0, 3]);
    std::fs::write(tmp.path().join("rows.txt"), "0\nx\n").unwrap();
    let e = Pipeline::new(&c).err().unwrap().to_string();
    assert!(e.contains("rows.txt:2:1"), "{e}");
}

#[test]
fn kuairand_config_never_feeds_an_outcome_column() {
    let c = Config::from_toml_str(
        mfh_data::kuairand::CONFIG,
        Path::new("k.toml"),
        Path::new("/x"),
    )
    .unwrap();
    for f in &c.features {
        let col = f.column().rsplit('.').next().unwrap();
        // User-table attributes such as is_video_author are inputs; the log's labels are not.
        assert!(
            !mfh_data::kuairand::OUTCOME_COLUMNS.contains(&col),
            "feature {} reads outcome column {col}",
            f.name()
        );
    }
    let g = c.grid();
    assert_eq!((g.n_behaviours(), g.n_cells()), (3, 4));
}

#[test]
fn explicit_bucket_boundaries_need_no_fitted_entry() {
    // A model's saved transforms hold fitted statistics only; a bucketised feature with
    // configured boundaries must load with them (it failed: "no entry for feature").
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), LOG, USERS);
    let explicit =
        "[[features]]\ntype = \"bucketized\"\nname = \"day\"\ndim = 4\nboundaries = [1.5, 2.5]\n";
    let c = cfg(dir.path(), explicit);
    let mut p = Pipeline::new(&c).unwrap();
    p.fit("train").unwrap();
    let fitted = p.transforms.clone();
    let mut again = Pipeline::new(&c).unwrap();
    again.set_transforms(fitted.clone()).unwrap();
    // Quantile buckets still need their fitted entry.
    let quantiles = "[[features]]\ntype = \"bucketized\"\nname = \"day\"\ndim = 4\nquantiles = 2\n";
    let q = cfg(dir.path(), quantiles);
    let mut p = Pipeline::new(&q).unwrap();
    let mut t = fitted;
    t.features.remove("day");
    let e = p.set_transforms(t).unwrap_err().to_string();
    assert!(e.contains("no entry for feature `day`"), "{e}");
}

#[test]
fn a_number_beyond_float32_after_its_transforms_is_a_row_error() {
    let tmp = tempfile::tempdir().unwrap();
    // u4 (valid only) is 1e300 years old: finite as f64, infinite as the model's f32.
    let users = format!("{USERS}u4,a,1e300\r\n");
    write(tmp.path(), &LOG.replace("u1,3,t3", "u4,3,t3"), &users);
    let mut p = Pipeline::new(&cfg(tmp.path(), "")).unwrap();
    assert_eq!(p.fit("train").unwrap().rows_used, 3);
    let p = Arc::new(p);
    let e = p
        .stream("valid", StreamOptions::in_order(8))
        .unwrap()
        .find_map(|b| b.err())
        .expect("the row is refused")
        .to_string();
    assert!(
        e.contains("users.csv") && e.contains("age") && e.contains("beyond the float32 range"),
        "{e}"
    );
}

/// What follows a key column: the column itself and what is joined on it (here the
/// user's side, as a ranking request's items follow the item key).
#[test]
fn fields_following_a_column_are_it_and_its_joins() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), LOG, USERS);
    let p = Pipeline::new(&cfg(tmp.path(), "")).unwrap();
    let f = p.fields_following("uid").unwrap();
    // uid (categorical), tags (multi, from the log), age (numeric, from users.csv).
    assert_eq!(f.single, vec![true]);
    assert_eq!(f.multi, vec![false]);
    assert_eq!(f.dense, vec![true]);
    // The facet reads user.tier: joined on uid.
    assert_eq!(f.facets, vec![(2, true)]);
    let g = p.fields_following("tags").unwrap();
    assert_eq!(
        (g.single, g.multi, g.dense),
        (vec![false], vec![true], vec![false])
    );
    assert_eq!(g.facets, vec![(2, false)]);
    let e = p.fields_following("nope").unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("uid"), "{e}");
}

/// A ranking request's user side is decoded once and copied to every candidate row; a
/// row that changes the user (its key, a user-table column, a main column) gets its own.
/// Every row must decode exactly as the same fields sent alone, context merged in.
#[test]
fn a_request_decodes_as_its_rows_sent_one_by_one() {
    use mfh_data::{Batch, RequestDecoder};
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), LOG, USERS);
    let mut p = Pipeline::new(&cfg(tmp.path(), "")).unwrap();
    p.fit("train").unwrap();
    let d = RequestDecoder::new(Arc::new(p));
    let i = |n: &str| d.input(n).unwrap_or_else(|| panic!("input {n}"));
    let context = vec![(i("uid"), "u1"), (i("tags"), "t1|t2")];
    let rows: Vec<Vec<(mfh_data::Input, &str)>> = vec![
        vec![(i("day"), "1")],
        vec![(i("tags"), "t3")],
        vec![(i("age"), "77")],
        vec![(i("uid"), "u3")],
        vec![(i("user.tier"), "c")],
        vec![],
        vec![(i("uid"), "nobody")],
        vec![(i("day"), "2")],
    ];
    // Once in front of an earlier request's rows, so the template is not row 0.
    let mut got = d.batch();
    d.decode(&[(i("uid"), "u2"), (i("tags"), "t2")], &rows[..2], &mut got)
        .unwrap();
    d.decode(&context, &rows, &mut got).unwrap();
    let mut want = d.batch();
    let none: [(mfh_data::Input, &str); 0] = [];
    d.decode(
        &[(i("uid"), "u2"), (i("tags"), "t2")],
        &rows[..2],
        &mut want,
    )
    .unwrap();
    for r in &rows {
        let mut merged = context.clone();
        merged.retain(|(c, _)| !r.iter().any(|(x, _)| x == c));
        merged.extend(r.iter().cloned());
        d.decode(&none, &[merged], &mut want).unwrap();
    }
    assert_eq!(got.n, 2 + rows.len());
    let strip = |b: &Batch| {
        let mut b = b.clone();
        b.rows.clear();
        let labels: Vec<u32> = b.labels.drain(..).map(f32::to_bits).collect();
        (b, labels)
    };
    // Row indices count within each call; everything else must match (labels by bits:
    // a request has none, NaN).
    assert_eq!(strip(&got), strip(&want));
    // The user's side really differs between the rows that change it.
    let age = |b: &Batch, r: usize| b.dense[r];
    assert_ne!(age(&got, 2), age(&got, 4));
    assert_ne!(age(&got, 2), age(&got, 5));
    assert_ne!(got.cells[2], got.cells[6]);
}
