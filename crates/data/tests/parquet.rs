//! Parquet and CSV copies of one table decode to identical batches (feature `parquet`).
#![cfg(feature = "parquet")]

use mfh_config::Config;
use mfh_data::{Pipeline, StreamOptions};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

const UIDS: [&str; 5] = ["u1", "u2", "u1", "u3", "u2"];
const DAYS: [i64; 5] = [1, 1, 2, 2, 3];
const PRICES: [Option<f64>; 5] = [Some(3.5), None, Some(1.0), Some(4.0), Some(2.5)];
const CLICKS: [i32; 5] = [1, 0, 1, 0, 1];

fn write_parquet(path: &Path) {
    let schema = Arc::new(
        parse_message_type(
            "message t { REQUIRED BYTE_ARRAY uid (UTF8); REQUIRED INT64 day; OPTIONAL DOUBLE price; REQUIRED INT32 clicked; }",
        )
        .unwrap(),
    );
    let props = Arc::new(WriterProperties::builder().build());
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut idx = 0;
    while let Some(mut col) = rg.next_column().unwrap() {
        match idx {
            0 => {
                let v: Vec<ByteArray> = UIDS.iter().map(|s| ByteArray::from(*s)).collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&v, None, None)
                    .unwrap();
            }
            1 => {
                col.typed::<Int64Type>()
                    .write_batch(&DAYS, None, None)
                    .unwrap();
            }
            2 => {
                let vals: Vec<f64> = PRICES.iter().flatten().copied().collect();
                let def: Vec<i16> = PRICES.iter().map(|p| p.is_some() as i16).collect();
                col.typed::<DoubleType>()
                    .write_batch(&vals, Some(&def), None)
                    .unwrap();
            }
            _ => {
                col.typed::<Int32Type>()
                    .write_batch(&CLICKS, None, None)
                    .unwrap();
            }
        }
        col.close().unwrap();
        idx += 1;
    }
    rg.close().unwrap();
    w.close().unwrap();
}

fn config(source: &str, dir: &Path) -> Config {
    let text = format!(
        r#"
[data]
sources = ["{source}"]
[splits]
train = {{ where = "day <= 2" }}
valid = {{ where = "day == 3" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "numeric"
name = "price"
transform = ["log1p", "standardize"]
fill = -1.0
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
"#
    );
    Config::from_toml_str(&text, Path::new("t.toml"), dir).unwrap()
}

fn batches(cfg: &Config) -> Vec<mfh_data::Batch> {
    let mut p = Pipeline::new(cfg).unwrap();
    p.fit("train").unwrap();
    let p = Arc::new(p);
    p.stream("train", StreamOptions::in_order(10))
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn parquet_and_csv_decode_identically() {
    let tmp = tempfile::tempdir().unwrap();
    write_parquet(&tmp.path().join("t.parquet"));
    let mut csv = String::from("uid,day,price,clicked\n");
    for i in 0..5 {
        let price = PRICES[i].map(|p| p.to_string()).unwrap_or_default();
        csv.push_str(&format!(
            "{},{},{},{}\n",
            UIDS[i], DAYS[i], price, CLICKS[i]
        ));
    }
    std::fs::write(tmp.path().join("t.csv"), csv).unwrap();
    let a = batches(&config("t.parquet", tmp.path()));
    let b = batches(&config("t.csv", tmp.path()));
    assert_eq!(a, b);
    assert_eq!(a[0].n, 4);
    // The null price took the fill value.
    assert_eq!(a[0].dense[1], -1.0);
}

/// A larger table through every typed use (numeric, bucketised, weight, binary and
/// regression labels, a threshold facet, numeric split clauses) beside text uses of integer
/// columns (categorical ids, GAUC): int32, int64, uint64, boolean and double columns, nulls,
/// values past 2^53 and 2^63, and negative zero.
fn write_wide(path: &Path, n: usize) -> Vec<String> {
    use parquet::data_type::BoolType;
    let schema = Arc::new(
        parse_message_type(
            "message t { REQUIRED INT64 uid; OPTIONAL INT64 big (UINT_64); REQUIRED INT32 day;
             OPTIONAL DOUBLE price; REQUIRED BOOLEAN clicked; OPTIONAL INT32 liked (INT_8);
             REQUIRED DOUBLE play; REQUIRED INT32 age (UINT_16); OPTIONAL DOUBLE w; }",
        )
        .unwrap(),
    );
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut rows: Vec<[Option<String>; 9]> = Vec::new();
    let (mut uid, mut big, mut day, mut price, mut clicked, mut liked, mut play, mut age, mut w) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for i in 0..n {
        let r = next();
        let u = (r % 997) as i64 - 300;
        let b = (r % 5 != 0).then(|| next() >> (next() % 64));
        let d = (i % 7) as i32;
        let p = (r % 6 != 1).then(|| match r % 11 {
            0 => -0.0,
            1 => 0.0,
            _ => (next() % 100_000) as f64 / 7.0 - 2000.0,
        });
        let c = r % 3 == 0;
        let l = (r % 4 != 2).then_some(((r >> 8) % 2) as i32);
        let pl = (next() % 1_000_000) as f64 / 3.0;
        let a = (r >> 20) as u16;
        let wt = (r % 9 != 4).then(|| (r % 13) as f64 / 4.0);
        uid.push(u);
        big.extend(b.map(|x| x as i64));
        day.push(d);
        price.extend(p);
        clicked.push(c);
        liked.extend(l);
        play.push(pl);
        age.push(a as i32);
        w.extend(wt);
        rows.push([
            Some(u.to_string()),
            b.map(|x| x.to_string()),
            Some(d.to_string()),
            p.map(|x| x.to_string()),
            Some((c as u8).to_string()),
            l.map(|x| x.to_string()),
            Some(pl.to_string()),
            Some(a.to_string()),
            wt.map(|x| x.to_string()),
        ]);
    }
    let defs = |k: usize| -> Vec<i16> { rows.iter().map(|r| r[k].is_some() as i16).collect() };
    let props = Arc::new(WriterProperties::builder().build());
    let mut wr =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut rg = wr.next_row_group().unwrap();
    let mut idx = 0;
    while let Some(mut col) = rg.next_column().unwrap() {
        match idx {
            0 => col.typed::<Int64Type>().write_batch(&uid, None, None),
            1 => col
                .typed::<Int64Type>()
                .write_batch(&big, Some(&defs(1)), None),
            2 => col.typed::<Int32Type>().write_batch(&day, None, None),
            3 => col
                .typed::<DoubleType>()
                .write_batch(&price, Some(&defs(3)), None),
            4 => col.typed::<BoolType>().write_batch(&clicked, None, None),
            5 => col
                .typed::<Int32Type>()
                .write_batch(&liked, Some(&defs(5)), None),
            6 => col.typed::<DoubleType>().write_batch(&play, None, None),
            7 => col.typed::<Int32Type>().write_batch(&age, None, None),
            _ => col
                .typed::<DoubleType>()
                .write_batch(&w, Some(&defs(8)), None),
        }
        .unwrap();
        col.close().unwrap();
        idx += 1;
    }
    rg.close().unwrap();
    wr.close().unwrap();
    let mut csv = vec!["uid,big,day,price,clicked,liked,play,age,w".to_string()];
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(|c| c.as_deref().unwrap_or("")).collect();
        csv.push(cells.join(","));
    }
    csv
}

fn wide_config(source: &str, dir: &Path, on_error: &str) -> Config {
    let text = format!(
        r#"
[data]
sources = ["{source}"]
gauc_column = "uid"
weight_column = "w"
on_error = "{on_error}"
[splits]
train = {{ where = "day <= 4" }}
valid = {{ where = "day > 4" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "numeric"
name = "big"
transform = ["log1p", "standardize"]
[[features]]
type = "numeric"
name = "price"
transform = ["standardize"]
fill = -1.0
[[features]]
type = "bucketized"
name = "play"
dim = 4
quantiles = 8
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "binary"
name = "like"
column = "liked"
[[behaviours]]
type = "regression"
name = "rate"
expr = "play / (price + 3000)"
[[facets]]
name = "age"
column = "age"
thresholds = [20000, 40000]
names = ["young", "mid", "old"]
"#
    );
    Config::from_toml_str(&text, Path::new("t.toml"), dir).unwrap()
}

fn wide_batches(cfg: &Config, split: &str) -> Result<Vec<mfh_data::Batch>, String> {
    let mut p = Pipeline::new(cfg).map_err(|e| e.to_string())?;
    p.fit("train").map_err(|e| e.to_string())?;
    let p = Arc::new(p);
    p.stream(split, StreamOptions::in_order(256))
        .map_err(|e| e.to_string())?
        .map(|b| b.map_err(|e| e.to_string()))
        .collect()
}

/// Equal field by field, floats by their bits (missing labels are NaN), naming the first
/// difference.
fn same_batch(a: &mfh_data::Batch, b: &mfh_data::Batch, at: &str) {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.n, b.n, "{at}: rows");
    assert_eq!(a.rows, b.rows, "{at}: row indexes");
    let f32s = [
        ("dense", &a.dense, &b.dense),
        ("labels", &a.labels, &b.labels),
        ("weights", &a.weights, &b.weights),
    ];
    for (name, x, y) in f32s {
        assert_eq!(x.len(), y.len(), "{at}: {name} length");
        if let Some(i) = (0..x.len()).find(|&i| x[i].to_bits() != y[i].to_bits()) {
            panic!("{at}: {name}[{i}] Parquet {} CSV {}", x[i], y[i]);
        }
    }
    assert_eq!(bits(&a.dense), bits(&b.dense));
    assert_eq!(a.single, b.single, "{at}: ids");
    assert_eq!(a.multi, b.multi, "{at}: lists");
    assert_eq!(a.cells, b.cells, "{at}: cells");
    assert_eq!(a.groups, b.groups, "{at}: GAUC groups");
}

/// Columns read only as numbers come from Parquet as numbers, without text: every id,
/// number, label, weight, facet cell and split decision equals the CSV copy's.
#[test]
fn typed_parquet_columns_decode_as_their_text() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = write_wide(&tmp.path().join("t.parquet"), 3000);
    std::fs::write(tmp.path().join("t.csv"), csv.join("\n") + "\n").unwrap();
    for split in ["train", "valid"] {
        let a = wide_batches(&wide_config("t.parquet", tmp.path(), "skip"), split).unwrap();
        let b = wide_batches(&wide_config("t.csv", tmp.path(), "skip"), split).unwrap();
        assert_eq!(a.len(), b.len());
        assert!(a.iter().map(|b| b.n).sum::<usize>() > 500);
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            same_batch(x, y, &format!("split {split}, batch {k}"));
        }
    }
}

/// A typed cell that is no binary label fails as its text does, naming the same row,
/// column and value (or is skipped and counted alike).
#[test]
fn typed_parquet_label_errors_match_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(
        parse_message_type(
            "message t { REQUIRED INT64 uid; REQUIRED INT32 day; REQUIRED DOUBLE clicked; }",
        )
        .unwrap(),
    );
    let props = Arc::new(WriterProperties::builder().build());
    let path = tmp.path().join("t.parquet");
    let mut wr =
        SerializedFileWriter::new(std::fs::File::create(&path).unwrap(), schema, props).unwrap();
    let mut rg = wr.next_row_group().unwrap();
    let clicks = [1.0, 0.0, -0.0, 2.0, 1.0];
    let mut idx = 0;
    while let Some(mut col) = rg.next_column().unwrap() {
        match idx {
            0 => col
                .typed::<Int64Type>()
                .write_batch(&[1, 2, 3, 4, 5], None, None),
            1 => col.typed::<Int32Type>().write_batch(&[1; 5], None, None),
            _ => col.typed::<DoubleType>().write_batch(&clicks, None, None),
        }
        .unwrap();
        col.close().unwrap();
        idx += 1;
    }
    rg.close().unwrap();
    wr.close().unwrap();
    let csv = "uid,day,clicked\n1,1,1\n2,1,0\n3,1,-0\n4,1,2\n5,1,1\n";
    std::fs::write(tmp.path().join("t.csv"), csv).unwrap();
    let cfg = |src: &str, on_error: &str| {
        let text = format!(
            "[data]\nsources = [\"{src}\"]\non_error = \"{on_error}\"\n[splits]\ntrain = {{ where = \"day >= 1\" }}\nvalid = {{ where = \"day > 1\" }}\n\
             [[features]]\ntype = \"categorical\"\nname = \"uid\"\ndim = 4\n\
             [[behaviours]]\ntype = \"binary\"\nname = \"click\"\ncolumn = \"clicked\"\n"
        );
        Config::from_toml_str(&text, Path::new("t.toml"), tmp.path()).unwrap()
    };
    let a = wide_batches(&cfg("t.parquet", "fail"), "train").unwrap_err();
    let b = wide_batches(&cfg("t.csv", "fail"), "train").unwrap_err();
    assert!(a.contains("`-0` is not a binary label"), "{a}");
    assert_eq!(
        a.replace("t.parquet:3:", "F:4:"),
        b.replace("t.csv:", "F:"),
        "the same message apart from the file and its numbering (row 3, line 4 after the header)"
    );
    let a = wide_batches(&cfg("t.parquet", "skip"), "train").unwrap();
    let b = wide_batches(&cfg("t.csv", "skip"), "train").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.iter().map(|b| b.n).sum::<usize>(), 3);
}
