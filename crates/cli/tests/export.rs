//! `mfh export`: the command writes the ONNX file and its sidecars as one bundle, and
//! refuses what it cannot read. (The graph's numbers are checked in tract by
//! `cargo test -p mfh-export`.)

mod common;

use common::*;

#[test]
fn export_writes_the_graph_the_row_maps_and_io_json() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("log.csv"), tiny_log(60)).unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, tiny_config("log.csv", "", "epochs = 1")).unwrap();
    let model = tmp.path().join("m");
    ok(&["train", "--config", s(&cfg), "--out", s(&model), "--quiet"]);
    let onnx = tmp.path().join("m.onnx");
    let o = ok(&["export", "--model-dir", s(&model), "--onnx", s(&onnx)]);
    assert!(
        o.stdout.contains("m.onnx") && o.stdout.contains("nodes"),
        "{}",
        o.stdout
    );
    let bytes = std::fs::read(&onnx).unwrap();
    // ModelProto field 1 (ir_version) = 7 comes first.
    assert_eq!(&bytes[..2], &[0x08, 0x07]);
    let io: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("m.onnx.io.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = io["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["uid", "dense", "cell"]);
    assert_eq!(io["outputs"][0]["columns"][0]["name"], "click");
    let rows = std::fs::read_to_string(tmp.path().join("m.onnx.rows/uid.csv")).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    // Five users in the log, rows 1..=5 (0 is the zero row of unknown keys).
    assert_eq!(lines[0], "key,row");
    assert_eq!(lines.len(), 6, "{rows}");
    assert!(lines[1..].iter().any(|l| l.ends_with(",5")), "{rows}");
    // One bundle: io.json lists the graph's and each row map's checksum, and no temp
    // folder is left.
    let id = mfh_export::verify(&onnx).unwrap();
    assert_eq!(io["bundle"]["id"], id.as_str());
    assert!(o.stdout.contains(&format!("bundle {id}")), "{}", o.stdout);
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(),
        [
            "c.toml",
            "log.csv",
            "m",
            "m.onnx",
            "m.onnx.io.json",
            "m.onnx.rows"
        ]
    );
    // Another export's temp folder (one cut short) is left as it is, and named.
    let theirs = tmp.path().join(".m.onnx.tmp-1-0");
    std::fs::create_dir(&theirs).unwrap();
    let o = ok(&["export", "--model-dir", s(&model), "--onnx", s(&onnx)]);
    assert!(
        o.stderr
            .contains(".m.onnx.tmp-1-0 is the temp folder of another export"),
        "{}",
        o.stderr
    );
    assert!(theirs.is_dir());
    assert_eq!(
        mfh_export::verify(&onnx).unwrap(),
        id,
        "the same model, the same bundle"
    );
}

#[test]
fn export_of_a_folder_that_is_no_model_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let e = fails(&[
        "export",
        "--model-dir",
        s(tmp.path()),
        "--onnx",
        s(&tmp.path().join("x.onnx")),
    ]);
    assert!(e.stderr.contains("model.json"), "{}", e.stderr);
    assert!(!tmp.path().join("x.onnx").exists());
}
