//! Exporting the saved model to ONNX, with its input description and row maps.

use crate::common::s;
use crate::data::{CELLS, ITEMS};
use crate::{json_file, mfh_at};
use serde_json::{json, Value};
use std::path::Path;

/// Exports from `elsewhere` to a relative path: the ONNX file, its inputs and outputs
/// (`rt.onnx.io.json`) and one row map per embedding table.
pub fn export(elsewhere: &Path, model: &Path) {
    let x = mfh_at(
        elsewhere,
        &["export", "--model-dir", s(model), "--onnx", "rt.onnx"],
    );
    assert!(
        x.stdout.contains("rt.onnx") && x.stdout.contains("nodes"),
        "{}",
        x.stdout
    );
    let bytes = std::fs::read(elsewhere.join("rt.onnx")).unwrap();
    assert!(bytes.len() > 1000, "{} bytes", bytes.len());
    // ModelProto field 1 (ir_version) = 7 comes first.
    assert_eq!(&bytes[..2], &[0x08, 0x07]);
    check_io(&json_file(&elsewhere.join("rt.onnx.io.json")));
    check_row_maps(elsewhere);
}

/// `rt.onnx.io.json`: every input by name, with its table, shape, bucket boundaries and
/// cells; the behaviours' output columns.
fn check_io(io: &Value) {
    let inputs = io["inputs"].as_array().unwrap();
    let input = |name: &str| {
        inputs
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no input `{name}` in {io:#}"))
    };
    let mut names: Vec<&str> = inputs.iter().map(|i| i["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cell",
            "dense",
            "dur_b",
            "hist",
            "item",
            "prev_item",
            "price_q",
            "tags",
            "uid",
            "watch_b"
        ]
    );
    for f in ["item", "prev_item", "hist"] {
        assert_eq!(input(f)["table"], "items", "{f}");
    }
    assert_eq!(input("hist")["shape"], json!(["n", "l"]));
    assert_eq!(input("tags")["shape"], json!(["n", "l"]));
    assert_eq!(input("uid")["shape"], json!(["n"]));
    assert_eq!(input("dense")["shape"], json!(["n", 4]));
    assert_eq!(input("dur_b")["boundaries"], json!([5.0, 50.0, 500.0]));
    assert_eq!(input("watch_b")["boundaries"], json!([1.0, 2.0, 3.0]));
    let q = input("price_q")["boundaries"].as_array().unwrap();
    assert_eq!(q.len(), 3, "{q:?}");
    assert!(q.windows(2).all(|w| w[0].as_f64() < w[1].as_f64()), "{q:?}");
    for f in ["dur_b", "watch_b", "price_q"] {
        let n = input(f)["boundaries"].as_array().unwrap().len();
        assert_eq!(
            input(f)["bucket_rows"].as_array().unwrap().len(),
            n + 1,
            "{f}"
        );
    }
    assert_eq!(input("cell")["cells"], json!(CELLS));
    let cols: Vec<&Value> = io["outputs"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(cols, [&json!("click"), &json!("like")]);
}

/// One row map per table: the shared `items` table once.
fn check_row_maps(elsewhere: &Path) {
    let mut maps: Vec<String> = std::fs::read_dir(elsewhere.join("rt.onnx.rows"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    maps.sort_unstable();
    assert_eq!(
        maps,
        [
            "dur_b.csv",
            "items.csv",
            "price_q.csv",
            "tags.csv",
            "uid.csv",
            "watch_b.csv"
        ]
    );
    let items = std::fs::read_to_string(elsewhere.join("rt.onnx.rows/items.csv")).unwrap();
    let n_items = items.lines().count() - 1;
    assert!(
        (ITEMS / 2..=ITEMS + 1).contains(&n_items),
        "{n_items} rows in items:\n{items}"
    );
}
