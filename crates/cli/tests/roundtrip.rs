//! Every feature type and transform through the whole life of a model, with the `mfh`
//! binary: train → save → load (eval, from another working directory) → predict → serve
//! → export. The config has a categorical feature, two multi-valued ones (sum and mean
//! pooling, two separators, empty cells), numeric features with no transform, `log1p`,
//! `standardize` and both (missing cells filled), bucketized features with quantiles and
//! with explicit boundaries (one after `log1p`), three features sharing one embedding
//! table, a side table, a groups facet and a thresholds facet (both with defaults), two
//! binary behaviours (one with missing labels) and a split read from a row file.
//! Needs the `serve` feature: `cargo test -p mfh --features serve --test roundtrip`.
#![cfg(feature = "serve")]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROWS: usize = 360;
const USERS: usize = 12;
const ITEMS: usize = 20;
/// Steps of training: fewer than two epochs of 240 train rows in batches of 16.
const MAX_STEPS: usize = 20;

fn mix(i: usize, salt: u64) -> u64 {
    // splitmix64
    let mut z = (i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One generated log row; `None` is an empty cell.
struct Row {
    uid: usize,
    item: usize,
    prev_item: usize,
    hist: Vec<usize>,
    tags: Vec<usize>,
    day: usize,
    price: Option<String>,
    watch: String,
    dur: Option<String>,
    clicked: u8,
    liked: Option<u8>,
}

const HEADER: &str = "uid,item,prev_item,hist,tags,day,price,watch,dur,clicked,liked";

impl Row {
    fn new(i: usize) -> Row {
        let item = (mix(i, 1) % ITEMS as u64) as usize;
        let hist = (0..mix(i, 3) % 4)
            .map(|k| (mix(i, 30 + k) % ITEMS as u64) as usize)
            .collect();
        let tags = (0..mix(i, 4) % 3)
            .map(|k| (mix(i, 40 + k) % 6) as usize)
            .collect();
        let price = (!mix(i, 5).is_multiple_of(10)).then(|| format!("{}.25", mix(i, 50) % 80));
        let cheap = price
            .as_deref()
            .is_some_and(|p| p.parse::<f64>().unwrap() < 20.0);
        let clicked =
            ((item < 8) as u8 + cheap as u8 + mix(i, 8).is_multiple_of(3) as u8 >= 2) as u8;
        Row {
            uid: i % USERS,
            item,
            prev_item: (mix(i, 2) % ITEMS as u64) as usize,
            hist,
            tags,
            day: 1 + (i / 4) % 3,
            price,
            watch: format!("{}", (mix(i, 6) % 50) as f64 * 0.5),
            dur: (!mix(i, 7).is_multiple_of(13)).then(|| format!("{}", 1 + mix(i, 70) % 900)),
            clicked,
            liked: (i % 7 != 3).then(|| (clicked == 1 && mix(i, 9).is_multiple_of(2)) as u8),
        }
    }

    fn hist_cell(&self) -> String {
        let v: Vec<String> = self.hist.iter().map(|h| format!("i{h}")).collect();
        v.join("|")
    }

    fn tags_cell(&self) -> String {
        let v: Vec<String> = self.tags.iter().map(|t| format!("t{t}")).collect();
        v.join(";")
    }

    fn csv_line(&self) -> String {
        [
            format!("u{}", self.uid),
            format!("i{}", self.item),
            format!("i{}", self.prev_item),
            self.hist_cell(),
            self.tags_cell(),
            self.day.to_string(),
            self.price.clone().unwrap_or_default(),
            self.watch.clone(),
            self.dur.clone().unwrap_or_default(),
            self.clicked.to_string(),
            self.liked.map(|l| l.to_string()).unwrap_or_default(),
        ]
        .join(",")
    }

    /// The facet cell mfh should put the row in (see `CONFIG`).
    fn cell(&self) -> String {
        let device = match device(self.uid) {
            None => "ios", // the facet's default
            Some("ios") => "ios",
            Some(_) => "android",
        };
        let band = match &self.price {
            None => "dear", // the facet's default
            Some(p) if p.parse::<f64>().unwrap() <= 20.0 => "cheap",
            Some(_) => "dear",
        };
        format!("device={device},price_band={band}")
    }
}

/// A user's device in the side table; the last user has none.
fn device(uid: usize) -> Option<&'static str> {
    (uid != USERS - 1).then(|| ["ios", "android", "other"][uid % 3])
}

const CONFIG: &str = r#"
[data]
sources = ["data/log.csv.gz"]
gauc_column = "uid"
[[data.side_tables]]
name = "user"
path = "data/users.csv"
key = "uid"

[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
all = { where = "day >= 1" }
test = { rows = "data/test_rows.txt" }

[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "categorical"
name = "item"
dim = 4
table = "items"
[[features]]
type = "categorical"
name = "prev_item"
dim = 4
table = "items"
[[features]]
type = "multi"
name = "hist"
dim = 4
table = "items"
separator = "|"
pooling = "sum"
[[features]]
type = "multi"
name = "tags"
dim = 3
separator = ";"
pooling = "mean"
[[features]]
type = "numeric"
name = "price"
fill = 1.5
[[features]]
type = "numeric"
name = "watch"
transform = ["log1p"]
[[features]]
type = "numeric"
name = "age"
transform = ["standardize"]
[[features]]
type = "numeric"
name = "dur"
transform = ["log1p", "standardize"]
[[features]]
type = "bucketized"
name = "price_q"
column = "price"
dim = 3
quantiles = 4
[[features]]
type = "bucketized"
name = "dur_b"
column = "dur"
dim = 3
boundaries = [5.0, 50.0, 500.0]
[[features]]
type = "bucketized"
name = "watch_b"
column = "watch"
dim = 2
boundaries = [1.0, 2.0, 3.0]
log1p = true

[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "binary"
name = "like"
column = "liked"

[[facets]]
name = "device"
column = "device"
groups = [{ name = "ios", values = ["ios"] }, { name = "android", values = ["android", "other"] }]
default = "ios"
[[facets]]
name = "price_band"
column = "price"
thresholds = [20.0]
names = ["cheap", "dear"]
default = "dear"

[models.rt]
type = "mfh"
trees = "auto"
level1 = { type = "cgc", task_experts = 1, shared_experts = 1, expert_layers = [8] }
level2 = { type = "cgc", task_experts = 1, shared_experts = 1, expert_layers = [8] }
tower = [4]

[train]
epochs = 2
max_steps = 20
batch_size = 16
threads = 1
seed = 3
"#;

const CELLS: [&str; 4] = [
    "device=ios,price_band=cheap",
    "device=ios,price_band=dear",
    "device=android,price_band=cheap",
    "device=android,price_band=dear",
];

/// Writes the data (gzip log, side table, row file) and the config under `work`.
fn write_inputs(work: &Path, rows: &[Row]) {
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut log = format!("{HEADER}\n");
    for r in rows {
        log.push_str(&r.csv_line());
        log.push('\n');
    }
    let f = std::fs::File::create(data.join("log.csv.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(log.as_bytes()).unwrap();
    gz.finish().unwrap();
    let mut users = String::from("uid,age,device\n");
    for u in 0..USERS {
        users.push_str(&format!(
            "u{u},{},{}\n",
            18 + 4 * u,
            device(u).unwrap_or_default()
        ));
    }
    std::fs::write(data.join("users.csv"), users).unwrap();
    let mut test_rows = String::from("# every ninth row\n");
    for i in (0..ROWS).step_by(9) {
        test_rows.push_str(&format!("{i}\n"));
    }
    std::fs::write(data.join("test_rows.txt"), test_rows).unwrap();
    std::fs::write(work.join("c.toml"), CONFIG).unwrap();
}

/// Runs `mfh` in the working directory `dir`.
fn mfh_at(dir: &Path, args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_mfh"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the mfh binary runs");
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        !out.stderr.contains("panicked"),
        "mfh {args:?} (in {}) panicked:\n{}",
        dir.display(),
        out.stderr
    );
    assert_eq!(
        out.code,
        0,
        "mfh {args:?} (in {}) failed:\n{}\n{}",
        dir.display(),
        out.stdout,
        out.stderr
    );
    out
}

fn json_file(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", p.display()))
}

/// The record of one (behaviour, cell, metric) in a metrics list.
fn record<'a>(recs: &'a Value, behaviour: &str, cell: &str, metric: &str) -> &'a Value {
    recs.as_array()
        .unwrap()
        .iter()
        .find(|r| r["behaviour"] == behaviour && r["cell"] == cell && r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {behaviour}/{cell}/{metric} record in {recs:#}"))
}

/// One row of `mfh predict`'s CSV: cell and, per behaviour, (score, label).
struct Pred {
    cell: String,
    scores: [f64; 2],
    labels: [Option<f64>; 2],
}

fn read_predictions(path: &Path) -> BTreeMap<usize, Pred> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "row",
            "cell",
            "click_pred",
            "click_label",
            "like_pred",
            "like_label"
        ]
    );
    let mut out = BTreeMap::new();
    let label = |s: &str| (!s.is_empty()).then(|| s.parse::<f64>().unwrap());
    for rec in r.records() {
        let rec = rec.unwrap();
        assert_eq!(rec.len(), 6, "{rec:?}");
        let row: usize = rec[0].parse().unwrap();
        let p = Pred {
            cell: rec[1].to_string(),
            scores: [rec[2].parse().unwrap(), rec[4].parse().unwrap()],
            labels: [label(&rec[3]), label(&rec[5])],
        };
        assert!(out.insert(row, p).is_none(), "row {row} predicted twice");
    }
    out
}

/// Exact AUC by counting pairs (ties count one half).
fn pairwise_auc(scored: &[(f64, bool)]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for &(sp, _) in scored.iter().filter(|x| x.1) {
        for &(sn, _) in scored.iter().filter(|x| !x.1) {
            pairs += 1.0;
            wins += if sp > sn {
                1.0
            } else if sp == sn {
                0.5
            } else {
                0.0
            };
        }
    }
    assert!(pairs > 0.0, "both classes are needed for an AUC");
    wins / pairs
}

/// A running `mfh serve`; killed if still running when dropped (a failed assertion).
struct Server {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(dir: &Path, model: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mfh"))
            .args([
                "serve",
                "--model-dir",
                s(model),
                "--addr",
                "127.0.0.1:0",
                "--name",
                "rt",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mfh serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut srv = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            seen: Vec::new(),
        };
        // "serving `rt` version 0 from DIR on http://127.0.0.1:PORT"
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match srv.log.recv_timeout(left) {
                Ok(line) => {
                    srv.seen.push(line.clone());
                    if let Some(a) = line
                        .strip_prefix("serving `")
                        .and_then(|l| l.rsplit_once(" on http://"))
                    {
                        srv.addr = a.1.trim().parse().unwrap();
                        return srv;
                    }
                }
                Err(e) => panic!(
                    "mfh serve did not say where it listens ({e:?}); its stderr:\n{}",
                    srv.seen.join("\n")
                ),
            }
        }
    }

    /// SIGTERM, then the graceful shutdown: exit status 0 and the drain message.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "mfh serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(l) = self.log.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        let log = self.seen.join("\n");
        assert!(status.success(), "mfh serve exited with {status}:\n{log}");
        assert!(log.contains("shutting down"), "{log}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// POSTs JSON (Connection: close); returns the status and the parsed body.
fn post_json(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {buf:?}"));
    let text = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
    (status, v)
}

/// Rows for the server: one of each kind of missing cell, the user without a device, and
/// one row in each cell.
fn serve_rows(rows: &[Row]) -> Vec<usize> {
    let mut picks: Vec<usize> = Vec::new();
    let conds: [&dyn Fn(&Row) -> bool; 11] = [
        &|r| r.price.is_none(),
        &|r| r.dur.is_none(),
        &|r| r.hist.is_empty(),
        &|r| r.tags.is_empty(),
        &|r| r.hist.len() == 3 && r.tags.len() == 2,
        &|r| device(r.uid).is_none(),
        &|r| r.liked.is_none(),
        &|r| r.cell() == CELLS[0],
        &|r| r.cell() == CELLS[1],
        &|r| r.cell() == CELLS[2],
        &|r| r.cell() == CELLS[3],
    ];
    for c in conds {
        let i = (0..rows.len())
            .find(|&i| c(&rows[i]) && !picks.contains(&i))
            .expect("the generated data has a row of each kind");
        picks.push(i);
    }
    for cell in CELLS {
        assert!(
            picks.iter().any(|&i| rows[i].cell() == cell),
            "no served row in {cell}"
        );
    }
    picks
}

#[test]
fn every_feature_type_round_trips_through_train_eval_predict_serve_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let rows: Vec<Row> = (0..ROWS).map(Row::new).collect();
    write_inputs(&work, &rows);
    let valid: Vec<&Row> = rows.iter().filter(|r| r.day == 3).collect();
    let test_n = ROWS.div_ceil(9);
    for (name, n) in [
        ("train", rows.iter().filter(|r| r.day <= 2).count()),
        ("valid", valid.len()),
    ] {
        assert!(n > 50, "{name}: {n} rows");
    }
    for label in [|r: &Row| Some(r.clicked), |r: &Row| r.liked] {
        let pos = |day: &dyn Fn(usize) -> bool| {
            rows.iter()
                .filter(|r| day(r.day) && label(r) == Some(1))
                .count()
        };
        assert!(pos(&|d| d <= 2) > 5 && pos(&|d| d == 3) > 5);
    }

    // Train, in `work`, with paths relative to it.
    let t = mfh_at(
        &work,
        &["train", "--config", "c.toml", "--out", "model", "--quiet"],
    );
    assert!(
        t.stdout.contains("model `rt`") && t.stdout.contains(&format!("of {MAX_STEPS};")),
        "{}",
        t.stdout
    );
    let model = work.join("model");
    for f in [
        "model.json",
        "config.toml",
        "transforms.json",
        "dense.bin",
        "embeddings.bin",
        "metrics.json",
    ] {
        let len = std::fs::metadata(model.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .len();
        assert!(len > 0, "{f} is empty");
    }
    // The saved config names its files by absolute paths.
    let saved_cfg: toml::Table = std::fs::read_to_string(model.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let paths = [
        &saved_cfg["data"]["sources"][0],
        &saved_cfg["data"]["side_tables"][0]["path"],
        &saved_cfg["splits"]["test"]["rows"],
    ];
    for p in paths {
        let p = Path::new(p.as_str().unwrap());
        assert!(p.is_absolute() && p.is_file(), "config.toml: {p:?}");
    }
    // Fitted statistics: standardised features have a mean and a deviation, the quantile
    // buckets their boundaries.
    let transforms = std::fs::read_to_string(model.join("transforms.json")).unwrap();
    for f in ["age", "dur", "price_q"] {
        assert!(transforms.contains(&format!("\"{f}\"")), "{transforms}");
    }

    // metrics.json: the valid split, both behaviours, every cell, the counts of the data.
    let saved = json_file(&model.join("metrics.json"));
    let recs = saved.as_array().expect("metrics.json is a list");
    assert!(!recs.is_empty());
    assert!(recs.iter().all(|r| r["split"] == "valid"), "{saved:#}");
    let click_n = record(&saved, "click", "all", "auc");
    assert_eq!(click_n["n"], valid.len(), "{click_n}");
    assert_eq!(
        click_n["positives"],
        valid.iter().filter(|r| r.clicked == 1).count()
    );
    let like_n = record(&saved, "like", "all", "auc");
    let like_missing = valid.iter().filter(|r| r.liked.is_none()).count();
    assert_eq!(like_n["n"], valid.len() - like_missing, "{like_n}");
    assert_eq!(like_n["missing"], like_missing, "{like_n}");
    for cell in CELLS {
        let want = valid.iter().filter(|r| r.cell() == cell).count();
        assert!(want > 0, "no valid row in {cell}");
        assert_eq!(
            record(&saved, "click", cell, "logloss")["n"],
            want,
            "{cell}"
        );
    }

    // Load and evaluate from another working directory: the same metrics, exactly.
    let e = mfh_at(&elsewhere, &["eval", "--model-dir", s(&model), "--json"]);
    let again: Value = serde_json::from_str(&e.stdout).unwrap();
    assert_eq!(saved, again, "eval differs from metrics.json");
    let e = mfh_at(&elsewhere, &["eval", "--model-dir", s(&model)]);
    assert!(
        e.stdout
            .contains(&format!("valid: {} rows, loss ", valid.len())),
        "{}",
        e.stdout
    );
    let e = mfh_at(
        &elsewhere,
        &[
            "eval",
            "--model-dir",
            s(&model),
            "--split",
            "test",
            "--json",
        ],
    );
    let test: Value = serde_json::from_str(&e.stdout).unwrap();
    let rec = record(&test, "click", "all", "logloss");
    assert_eq!(rec["split"], "test");
    assert_eq!(rec["n"], test_n, "{rec}");

    // Predict every row, with the config the model folder saved.
    let saved_config = model.join("config.toml");
    let p = mfh_at(
        &elsewhere,
        &[
            "predict",
            "--model-dir",
            s(&model),
            "--config",
            s(&saved_config),
            "--split",
            "all",
            "--out",
            "pred.csv",
        ],
    );
    assert!(
        p.stdout.starts_with(&format!("{ROWS} rows")),
        "{}",
        p.stdout
    );
    let preds = read_predictions(&elsewhere.join("pred.csv"));
    assert_eq!(preds.len(), ROWS);
    assert_eq!(
        preds.keys().copied().collect::<Vec<_>>(),
        (0..ROWS).collect::<Vec<_>>()
    );
    for (&i, p) in &preds {
        let r = &rows[i];
        assert_eq!(p.cell, r.cell(), "row {i}: {}", r.csv_line());
        for (b, &v) in p.scores.iter().enumerate() {
            assert!(
                v.is_finite() && (0.0..=1.0).contains(&v),
                "row {i}: score {v}"
            );
            let want = [Some(r.clicked), r.liked][b].map(f64::from);
            assert_eq!(p.labels[b], want, "row {i}, behaviour {b}");
        }
    }
    // Not all one score: the features reach the heads.
    let distinct: std::collections::BTreeSet<u64> =
        preds.values().map(|p| p.scores[0].to_bits()).collect();
    assert!(
        distinct.len() > ROWS / 4,
        "{} distinct click scores",
        distinct.len()
    );
    // The valid rows' predictions give eval's AUCs.
    for (b, name) in ["click", "like"].iter().enumerate() {
        let scored: Vec<(f64, bool)> = preds
            .iter()
            .filter(|(&i, _)| rows[i].day == 3)
            .filter_map(|(_, p)| p.labels[b].map(|l| (p.scores[b], l > 0.5)))
            .collect();
        let want = record(&saved, name, "all", "auc")["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: no AUC in metrics.json"));
        let got = pairwise_auc(&scored);
        assert!(
            (got - want).abs() < 1e-9,
            "{name}: AUC of the predictions {got}, metrics.json {want}"
        );
    }

    // Serve, from elsewhere, and ask for a few rows two ways.
    let picks = serve_rows(&rows);
    let srv = Server::start(&elsewhere, &model);
    // KServe v2: columns of strings as the file has them (an empty cell: "").
    let served = [
        "uid",
        "item",
        "prev_item",
        "hist",
        "tags",
        "price",
        "watch",
        "dur",
    ];
    let columns: Vec<(&str, Value)> = served
        .iter()
        .map(|&name| {
            let k = HEADER.split(',').position(|h| h == name).unwrap();
            let data = picks
                .iter()
                .map(|&i| json!(rows[i].csv_line().split(',').nth(k).unwrap()))
                .collect();
            (name, Value::Array(data))
        })
        .collect();
    let inputs: Vec<Value> = columns
        .iter()
        .map(|(name, data)| {
            json!({ "name": name, "datatype": "BYTES", "shape": [picks.len()], "data": data })
        })
        .collect();
    let (code, r) = post_json(
        srv.addr,
        "/v2/models/rt/infer",
        &json!({ "id": "rt1", "inputs": inputs }),
    );
    assert_eq!(code, 200, "{r}");
    let outs = r["outputs"].as_array().expect("outputs");
    let names: Vec<&str> = outs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["click", "like", "cell"], "{r}");
    for o in outs {
        let n = o["data"].as_array().map_or(0, Vec::len);
        assert_eq!(n, picks.len(), "{o}");
    }
    for (k, &i) in picks.iter().enumerate() {
        let want = &preds[&i];
        assert_eq!(outs[2]["data"][k], want.cell.as_str(), "row {i}");
        for (b, out) in outs[..2].iter().enumerate() {
            let got = out["data"][k].as_f64().unwrap();
            assert!(
                (got - want.scores[b]).abs() <= 1e-5,
                "v2 row {i} ({}), behaviour {b}: served {got}, predicted {}",
                rows[i].csv_line(),
                want.scores[b]
            );
        }
    }
    // TF-Serving :predict: one object per row, numbers as JSON numbers, empty cells as "".
    let number = |v: &Option<String>| {
        v.as_deref()
            .map_or(json!(""), |x| json!(x.parse::<f64>().unwrap()))
    };
    let instances: Vec<Value> = picks
        .iter()
        .map(|&i| {
            let r = &rows[i];
            json!({
                "uid": format!("u{}", r.uid),
                "item": format!("i{}", r.item),
                "prev_item": format!("i{}", r.prev_item),
                "hist": r.hist_cell(),
                "tags": r.tags_cell(),
                "price": number(&r.price),
                "watch": r.watch.parse::<f64>().unwrap(),
                "dur": number(&r.dur),
            })
        })
        .collect();
    let (code, r) = post_json(
        srv.addr,
        "/v1/models/rt:predict",
        &json!({ "instances": instances }),
    );
    assert_eq!(code, 200, "{r}");
    let got = r["predictions"].as_array().expect("predictions");
    assert_eq!(got.len(), picks.len(), "{r}");
    assert!(!got.is_empty());
    for (g, &i) in got.iter().zip(&picks) {
        for (b, name) in ["click", "like"].iter().enumerate() {
            let v = g[name].as_f64().unwrap_or_else(|| panic!("{g}"));
            let want = preds[&i].scores[b];
            assert!(
                (v - want).abs() <= 1e-5,
                ":predict row {i} ({}), {name}: served {v}, predicted {want}",
                rows[i].csv_line()
            );
        }
    }
    srv.stop();

    // Export to ONNX, from elsewhere, to a relative path.
    let x = mfh_at(
        &elsewhere,
        &["export", "--model-dir", s(&model), "--onnx", "rt.onnx"],
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
    let io = json_file(&elsewhere.join("rt.onnx.io.json"));
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
    // One row map per table: the shared `items` table once.
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
