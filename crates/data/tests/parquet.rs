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
