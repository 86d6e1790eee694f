//! Serving the saved model and asking it for a few rows, KServe v2 and TF-Serving style.

use crate::common::s;
use crate::data::{device, Row, CELLS, HEADER};
use crate::predict::Pred;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
        // "serving `rt` version 0 from DIR on http://127.0.0.1:PORT (…)"
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
                        // "… on http://ADDR (2 scorers x 1 threads; memory bound …)"
                        srv.addr = a.1.split_whitespace().next().unwrap().parse().unwrap();
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

/// Serves from `elsewhere` and asks for a few rows two ways: the scores are the
/// predictions' (`preds`), the cells theirs; then a graceful shutdown.
pub fn serve(elsewhere: &Path, model: &Path, rows: &[Row], preds: &BTreeMap<usize, Pred>) {
    let picks = serve_rows(rows);
    let srv = Server::start(elsewhere, model);
    infer_v2(srv.addr, rows, &picks, preds);
    predict_v1(srv.addr, rows, &picks, preds);
    srv.stop();
}

/// KServe v2: columns of strings as the file has them (an empty cell: "").
fn infer_v2(addr: SocketAddr, rows: &[Row], picks: &[usize], preds: &BTreeMap<usize, Pred>) {
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
        addr,
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
}

/// TF-Serving :predict: one object per row, numbers as JSON numbers, empty cells as "".
fn predict_v1(addr: SocketAddr, rows: &[Row], picks: &[usize], preds: &BTreeMap<usize, Pred>) {
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
        addr,
        "/v1/models/rt:predict",
        &json!({ "instances": instances }),
    );
    assert_eq!(code, 200, "{r}");
    let got = r["predictions"].as_array().expect("predictions");
    assert_eq!(got.len(), picks.len(), "{r}");
    assert!(!got.is_empty());
    for (g, &i) in got.iter().zip(picks) {
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
}
