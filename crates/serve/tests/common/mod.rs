//! Shared by the server tests: a small model folder made here (a log with a user table
//! and an item-count table, like KuaiRand's), a server started in-process on a loopback
//! port, and a tiny blocking HTTP/1.1 client over a TcpStream.

#![allow(dead_code)]

pub mod storm;

use mfh_artifact::model_dir::{fresh_state, save_model, SaveInfo};
use mfh_config::Config;
use mfh_data::{Pipeline, StreamOptions};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub const USERS: usize = 6;
pub const ITEMS: usize = 9;

/// One log row: (uid, item, day, hour, price, item_prior, clicked, liked).
pub fn log_rows(n: usize) -> Vec<[String; 8]> {
    (0..n)
        .map(|i| {
            [
                format!("u{}", i % USERS),
                format!("i{}", (i * 7 + i / 5) % ITEMS),
                format!("{}", 1 + (i / 3) % 3),
                format!("{}", (i * 5) % 24),
                format!("{}.25", (i * 13) % 40),
                format!("{}", (i * 3) % 17),
                format!("{}", (i / 2) % 2),
                format!("{}", ((i / 3) % 4 == 0) as u8),
            ]
        })
        .collect()
}

pub const LOG_HEADER: [&str; 8] = [
    "uid",
    "item",
    "day",
    "hour",
    "price",
    "item_prior",
    "clicked",
    "liked",
];

const CONFIG: &str = r#"
[data]
sources = ["log.csv"]
[[data.side_tables]]
name = "user"
path = "users.csv"
key = "uid"
[[data.side_tables]]
name = "item_counts"
path = "item_counts.csv"
key = "item"
[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "categorical"
name = "item"
dim = 4
[[features]]
type = "categorical"
name = "hour"
dim = 4
[[features]]
type = "categorical"
name = "segment"
dim = 4
[[features]]
type = "numeric"
name = "price"
transform = ["log1p", "standardize"]
[[features]]
type = "numeric"
name = "register_days"
transform = ["log1p", "standardize"]
[[features]]
type = "bucketized"
name = "age"
dim = 4
quantiles = 3
[[features]]
type = "numeric"
name = "item_prior"
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
name = "user"
column = "user.register_days"
thresholds = [100]
names = ["new", "old"]
[[facets]]
name = "item"
column = "item_prior"
thresholds = [8]
names = ["tail", "head"]
[models.mmoe]
type = "mmoe"
experts = 2
expert_layers = [16]
tower = [8]
[train]
model = "mmoe"
batch_size = 16
threads = 1
"#;

pub const LOG_ROWS: usize = 240;

/// Writes the data and a model folder (embedding rows made by a pass of training steps)
/// under `root`; returns the model folder.
pub fn make_model(root: &Path, seed: u64) -> PathBuf {
    make_model_with(root, seed, "mmoe", MMOE)
}

const MMOE: &str =
    "[models.mmoe]\ntype = \"mmoe\"\nexperts = 2\nexpert_layers = [16]\ntower = [8]\n";

/// [`make_model`] with another model section (`section`, the table named `name`) in
/// place of the MMoE one; the folder is `model-NAME-SEED`.
pub fn make_model_with(root: &Path, seed: u64, name: &str, section: &str) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut log = LOG_HEADER.join(",") + "\n";
    for r in log_rows(LOG_ROWS) {
        log.push_str(&r.join(","));
        log.push('\n');
    }
    std::fs::write(data.join("log.csv"), log).unwrap();
    let mut users = String::from("uid,segment,register_days,age\n");
    for u in 0..USERS {
        users.push_str(&format!("u{u},s{},{},{}\n", u % 3, 30 + u * 60, 18 + u * 7));
    }
    std::fs::write(data.join("users.csv"), users).unwrap();
    let mut counts = String::from("item,item_prior\n");
    for i in 0..ITEMS {
        counts.push_str(&format!("i{i},{}\n", i * 3));
    }
    std::fs::write(data.join("item_counts.csv"), counts).unwrap();
    assert!(CONFIG.contains(MMOE), "the config's model section");
    let config = CONFIG
        .replace(MMOE, section)
        .replace("model = \"mmoe\"", &format!("model = \"{name}\""));
    std::fs::write(data.join("t.toml"), config).unwrap();
    let cfg = Config::load(&data.join("t.toml")).unwrap();
    let mut p = Pipeline::new(&cfg).unwrap();
    p.fit("train").unwrap();
    let layout = p.layout().clone();
    let transforms = p.transforms.clone();
    let (_, section) = cfg.model_section(None).unwrap();
    let spec = toml::Value::Table(section.clone()).try_into().unwrap();
    let mut state = fresh_state(&cfg, &layout, spec, seed).unwrap();
    let p = Arc::new(p);
    let mut step = 0;
    for b in p.stream("train", StreamOptions::in_order(16)).unwrap() {
        step += 1;
        state.train_step(&mut b.unwrap(), step);
    }
    let dir = if name == "mmoe" {
        root.join(format!("model-{seed}"))
    } else {
        root.join(format!("model-{name}-{seed}"))
    };
    save_model(
        &dir,
        &mut state,
        &SaveInfo {
            cfg: &cfg,
            model_name: name,
            layout: &layout,
            transforms: &transforms,
            seed,
            step,
            selection_split: "valid",
            selection_metric: "auc",
            selection_value: None,
            metrics_json: "{}",
        },
    )
    .unwrap();
    dir
}

/// One model folder for the whole test binary.
pub fn model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        make_model(&root, 7)
    })
}

pub struct Running {
    pub rt: tokio::runtime::Runtime,
    pub server: Option<mfh_serve::Server>,
    pub addr: SocketAddr,
}

impl Running {
    pub fn stop(mut self) {
        let s = self.server.take().unwrap();
        self.rt.block_on(s.shutdown()).unwrap();
    }
    pub fn metrics(&self) -> &mfh_serve::metrics::Metrics {
        &self.server.as_ref().unwrap().metrics
    }
}

pub fn start(opts: mfh_serve::ServeOptions) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(mfh_serve::start(mfh_serve::ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..opts
        }))
        .unwrap();
    let addr = server.addr;
    Running {
        rt,
        server: Some(server),
        addr,
    }
}

pub fn options(dir: &Path) -> mfh_serve::ServeOptions {
    mfh_serve::ServeOptions::new(dir.to_path_buf())
}

/// Sends one request (Connection: close) and returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a large body.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn post_json(addr: SocketAddr, path: &str, v: &Value) -> (u16, Value) {
    let (code, body) = http(addr, "POST", path, v.to_string().as_bytes());
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (code, v)
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path, b"")
}
