//! The server over real HTTP on loopback: scores against `mfh predict`'s, bad requests,
//! overload, timeouts, hot reload, metrics and graceful shutdown.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `mfh predict`'s output for the valid split: row → (cell, [click, like]).
fn predicted() -> BTreeMap<u64, (String, [f64; 2])> {
    predicted_by(model())
}

/// [`predicted`] for the model folder `dir`.
fn predicted_by(dir: &std::path::Path) -> BTreeMap<u64, (String, [f64; 2])> {
    let mut m = mfh_artifact::load_model(dir).unwrap();
    let p = std::sync::Arc::new(m.pipeline(&m.config.clone()).unwrap());
    let out = dir
        .parent()
        .unwrap()
        .join(format!("pred-{:?}.csv", std::thread::current().id()));
    mfh_artifact::predict_to_csv(&mut m.state, &p, "valid", 16, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "row,cell,click_pred,click_label,like_pred,like_label"
    );
    lines
        .map(|l| {
            // row,"cell (with commas)",click_pred,click_label,like_pred,like_label
            let (row, rest) = l.split_once(",\"").unwrap();
            let (cell, rest) = rest.split_once("\",").unwrap();
            let c: Vec<&str> = rest.split(',').collect();
            (
                row.parse().unwrap(),
                (
                    cell.to_string(),
                    [c[0].parse().unwrap(), c[2].parse().unwrap()],
                ),
            )
        })
        .collect()
}

/// The valid split's rows as request instances (numbers as JSON numbers, IDs as strings).
fn valid_instances() -> Vec<(u64, Value)> {
    log_rows(LOG_ROWS)
        .into_iter()
        .enumerate()
        .filter(|(_, r)| r[2] == "3")
        .map(|(i, r)| {
            (
                i as u64,
                json!({
                    "uid": r[0],
                    "item": r[1],
                    "hour": r[3].parse::<u64>().unwrap(),
                    "price": r[4].parse::<f64>().unwrap(),
                    "item_prior": r[5].parse::<u64>().unwrap(),
                }),
            )
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6
}

#[test]
fn scores_equal_mfh_predict_on_every_endpoint() {
    let want = predicted();
    let rows = valid_instances();
    assert_eq!(
        want.len(),
        rows.len(),
        "mfh predict's rows and the valid split's"
    );
    assert!(!rows.is_empty(), "no valid row to score");
    let srv = start(options(model()));

    // TF-Serving :predict, one object per row.
    let instances: Vec<Value> = rows.iter().map(|(_, v)| v.clone()).collect();
    let (code, r) = post_json(
        srv.addr,
        "/v1/models/mmoe:predict",
        &json!({ "instances": instances }),
    );
    assert_eq!(code, 200, "{r}");
    let preds = r["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), rows.len(), "one prediction per instance");
    for ((row, _), p) in rows.iter().zip(preds) {
        let (_, w) = &want[row];
        assert!(
            close(p["click"].as_f64().unwrap(), w[0]),
            "row {row}: {p} vs {w:?}"
        );
        assert!(
            close(p["like"].as_f64().unwrap(), w[1]),
            "row {row}: {p} vs {w:?}"
        );
    }

    // TF-Serving :regress, the ranking form: per user, context once and the candidates.
    regress_every_user(&srv, "mmoe", &rows, &want);

    // KServe v2 infer: named columns.
    let col = |k: &str| -> Vec<Value> { rows.iter().map(|(_, v)| v[k].clone()).collect() };
    let n = rows.len();
    let (code, r) = post_json(
        srv.addr,
        "/v2/models/mmoe/infer",
        &json!({ "id": "r1", "inputs": [
            { "name": "uid", "datatype": "BYTES", "shape": [n], "data": col("uid") },
            { "name": "item", "datatype": "BYTES", "shape": [n], "data": col("item") },
            { "name": "hour", "datatype": "INT64", "shape": [n], "data": col("hour") },
            { "name": "price", "datatype": "FP64", "shape": [n], "data": col("price") },
            { "name": "item_prior", "datatype": "INT64", "shape": [n, 1], "data": col("item_prior") },
        ]}),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["id"], "r1");
    assert_eq!(r["model_version"], "1");
    let outs = r["outputs"].as_array().unwrap();
    let names: Vec<&str> = outs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["click", "like", "cell"]);
    for o in outs {
        let data = o["data"].as_array().unwrap();
        assert_eq!(data.len(), n, "{}: one value per row", o["name"]);
    }
    for (k, (row, _)) in rows.iter().enumerate() {
        let (cell, w) = &want[row];
        for b in 0..2 {
            assert!(
                close(outs[b]["data"][k].as_f64().unwrap(), w[b]),
                "row {row}"
            );
        }
        assert_eq!(outs[2]["data"][k], json!(cell), "row {row}");
    }
    assert!(srv.metrics().count(200) >= 2 + USERS as u64);
    srv.stop();
}

/// Each user's valid rows sent to model `name` over :regress (the user once as the
/// context, the rest of each row as a candidate); every score must equal `want`'s.
fn regress_every_user(
    srv: &Running,
    name: &str,
    rows: &[(u64, Value)],
    want: &BTreeMap<u64, (String, [f64; 2])>,
) {
    let mut regressed = 0;
    for u in 0..USERS {
        let uid = format!("u{u}");
        let mine: Vec<&(u64, Value)> = rows.iter().filter(|(_, v)| v["uid"] == uid).collect();
        assert!(!mine.is_empty(), "{uid} has no valid row");
        regressed += mine.len();
        let examples: Vec<Value> = mine
            .iter()
            .map(|(_, v)| {
                let mut e = v.clone();
                e.as_object_mut().unwrap().remove("uid");
                e
            })
            .collect();
        let (code, r) = post_json(
            srv.addr,
            &format!("/v1/models/{name}:regress"),
            &json!({ "context": { "uid": uid }, "examples": examples }),
        );
        assert_eq!(code, 200, "{name}: {r}");
        assert_eq!(r["behaviours"], json!(["click", "like"]));
        let results = r["results"].as_array().unwrap();
        assert_eq!(
            results.len(),
            mine.len(),
            "{name} {uid}: one result per example"
        );
        for ((row, _), res) in mine.iter().zip(results) {
            let (_, w) = &want[row];
            assert_eq!(res.as_array().map(Vec::len), Some(2), "row {row}: {res}");
            for b in 0..2 {
                assert!(
                    close(res[b].as_f64().unwrap(), w[b]),
                    "{name} row {row}: {res} vs {w:?}"
                );
            }
        }
    }
    assert_eq!(
        regressed,
        rows.len(),
        "{name}: every valid row, through some user"
    );
}

/// PEPNet and STEM (the model kinds added after the first zoo) serve over :regress exactly
/// what `mfh predict` scores from the file.
#[test]
fn newer_model_kinds_serve_what_mfh_predict_scores() {
    let root = tempfile::tempdir().unwrap();
    let kinds = [
        (
            "pepnet",
            "[models.pepnet]\ntype = \"pepnet\"\ntower = [8, 4]\ngate_hidden = 6\npriors = [\"uid\", \"item\"]\n",
        ),
        ("stem", "[models.stem]\ntype = \"stem\"\ntower = [8]\n"),
    ];
    let rows = valid_instances();
    for (name, section) in kinds {
        let dir = make_model_with(root.path(), 3, name, section);
        let want = predicted_by(&dir);
        assert_eq!(want.len(), rows.len(), "{name}: predict's rows");
        let srv = start(options(&dir));
        regress_every_user(&srv, name, &rows, &want);
        srv.stop();
    }
}

#[test]
fn columns_a_request_omits_come_from_the_side_tables_and_it_may_override_them() {
    let srv = start(options(model()));
    let ask = |inst: Value| -> Value {
        let (code, r) = post_json(
            srv.addr,
            "/v2/models/mmoe/infer",
            &json!({ "inputs": inst.as_object().unwrap().iter().map(|(k, v)|
                json!({"name": k, "datatype": "BYTES", "shape": [1], "data": [v]})).collect::<Vec<_>>() }),
        );
        assert_eq!(code, 200, "{r}");
        r["outputs"].clone()
    };
    // item i5 has 15 impressions in item_counts.csv: a head item.
    let base = json!({"uid": "u1", "item": "i5", "hour": "3", "price": "2.5"});
    let filled = ask(base.clone());
    let mut explicit = base.clone();
    explicit["item_prior"] = json!("15");
    assert_eq!(filled, ask(explicit));
    assert_eq!(filled[2]["data"][0], "user=new,item=head");
    let mut tail = base.clone();
    tail["item_prior"] = json!("2");
    assert_eq!(ask(tail)[2]["data"][0], "user=new,item=tail");
    // u1 registered 90 days ago (new); overriding the user table's column moves the row.
    let mut old = base.clone();
    old["register_days"] = json!("400");
    assert_eq!(ask(old.clone())[2]["data"][0], "user=old,item=head");
    let mut qualified = base;
    qualified["user.register_days"] = json!("400");
    assert_eq!(ask(qualified), ask(old));
    srv.stop();
}

#[test]
fn bad_requests_get_4xx_with_a_reason() {
    let srv = start(mfh_serve::ServeOptions {
        body_limit: 64 << 10,
        ..options(model())
    });
    let a = srv.addr;
    let bad = |path: &str, body: &str, code: u16, reason: &str| {
        let (c, b) = http(a, "POST", path, body.as_bytes());
        assert_eq!(c, code, "{path} {body}: {b}");
        assert!(b.contains(reason), "{path} {body}: {b} lacks {reason:?}");
    };
    let p = "/v1/models/mmoe:predict";
    bad(p, "{not json", 400, "malformed JSON");
    bad(p, "[1,2]", 400, "must be a JSON object");
    bad(p, r#"{"rows": []}"#, 400, "no `instances`");
    bad(
        p,
        r#"{"instances": [{"item": "i1", "hour": 1, "price": 1}]}"#,
        400,
        "missing input `uid`",
    );
    bad(
        p,
        r#"{"instances": [{"uid": "u1", "item": "i1", "hour": 1, "price": "cheap"}]}"#,
        400,
        "`cheap` is not a number (input `price`)",
    );
    // 1e300 is beyond float32, but `price` is log1p'd first: a finite input, real scores
    // (an input still beyond float32 after its transforms is a 400, tested in mfh-data).
    let (c, b) = http(
        a,
        "POST",
        p,
        br#"{"instances": [{"uid": "u1", "item": "i1", "hour": 1, "price": 1e300}]}"#,
    );
    assert_eq!(c, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(v["predictions"][0]["click"].is_f64(), "{b}");
    bad(
        p,
        r#"{"instances": [{"uid": "u1", "item": "i1", "hour": true, "price": 1}]}"#,
        400,
        "boolean",
    );
    bad(
        p,
        r#"{"instances": [{"uid": ["u1"], "item": "i1", "hour": 1, "price": 1}]}"#,
        400,
        "an array",
    );
    bad(
        p,
        r#"{"instances": [{"uid": "u1", "item": "i1", "hour": 1, "price": 1, "colour": "red"}]}"#,
        400,
        "unknown input `colour`",
    );
    bad(
        "/v1/models/other:predict",
        r#"{"instances": []}"#,
        404,
        "unknown model `other`",
    );
    bad(
        "/v2/models/other/infer",
        r#"{"inputs": []}"#,
        404,
        "unknown model `other`",
    );
    bad("/v1/models/mmoe:classify", "{}", 404, "no such route");
    bad(
        "/v2/models/mmoe/infer",
        r#"{"inputs": [{"name": "uid", "datatype": "INT64", "data": ["u1"]}]}"#,
        400,
        "does not match datatype INT64",
    );
    bad(
        "/v2/models/mmoe/infer",
        r#"{"inputs": [{"name": "uid", "data": ["u1", "u2"]}, {"name": "item", "data": ["i1"]}]}"#,
        400,
        "has 1 values",
    );
    // A new user (no user-table row) has no value for the user facet.
    bad(
        "/v1/models/mmoe:regress",
        r#"{"context": {"uid": "nobody"}, "examples": [{"item": "i1", "hour": 1, "price": 1}]}"#,
        400,
        "row 0: no value of facet `user`",
    );
    let big = format!(
        r#"{{"instances": [{}]}}"#,
        vec![r#"{"uid": "u1"}"#; 10_000].join(",")
    );
    bad(p, &big, 413, "");
    let (c, _) = get(a, "/nowhere");
    assert_eq!(c, 404);
    let (c, b) = get(a, "/v2/health/ready");
    assert_eq!((c, b.as_str()), (200, r#"{"ready":true}"#));
    assert_eq!(srv.metrics().count(500), 0);
    srv.stop();
}

/// A request of `n` rows for user u1.
fn many_rows(n: usize) -> Value {
    let ex: Vec<Value> = (0..n)
        .map(|i| json!({"item": format!("i{}", i % 9), "hour": i % 24, "price": i % 40}))
        .collect();
    json!({"context": {"uid": "u1"}, "examples": ex})
}

#[test]
fn a_full_queue_answers_503_and_the_timeout_504() {
    let srv = start(mfh_serve::ServeOptions {
        scorers: 1,
        queue: 0,
        max_rows: 20_000,
        ..options(model())
    });
    let body = many_rows(20_000).to_string();
    let codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| http(srv.addr, "POST", "/v1/models/mmoe:regress", body.as_bytes()).0)
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
    assert!(codes.contains(&503), "{codes:?}");
    assert!(codes.contains(&200), "{codes:?}");
    srv.stop();

    let srv = start(mfh_serve::ServeOptions {
        timeout: Duration::from_millis(1),
        max_rows: 20_000,
        ..options(model())
    });
    let (c, b) = http(srv.addr, "POST", "/v1/models/mmoe:regress", body.as_bytes());
    assert_eq!(c, 504, "{b}");
    // The server is still healthy.
    assert_eq!(get(srv.addr, "/v2/health/live").0, 200);
    srv.stop();
}

#[test]
fn a_new_published_version_is_swapped_in() {
    let root = tempfile::tempdir().unwrap();
    let v1 = root.path().join("1");
    copy_dir(model(), &v1);
    std::fs::write(v1.join("DONE"), "").unwrap();
    let srv = start(mfh_serve::ServeOptions {
        poll: Duration::from_millis(50),
        max_rows: 30_000,
        ..options(root.path())
    });
    let status = || get(srv.addr, "/v1/models/mmoe").1;
    assert!(status().contains(r#""version":"1""#), "{}", status());
    let one = post_json(srv.addr, "/v1/models/mmoe:regress", &many_rows(3)).1;
    // Version 2: another model, copied in but not yet published.
    let other = make_model(&root.path().join("src"), 99);
    let v2 = root.path().join("2");
    copy_dir(&other, &v2);
    std::thread::sleep(Duration::from_millis(200));
    assert!(status().contains(r#""version":"1""#));
    // A long request in flight while version 2 is published finishes on version 1.
    let n = 30_000;
    let uids: Vec<String> = (0..n).map(|i| format!("u{}", i % USERS)).collect();
    let long = json!({"inputs": [
        {"name": "uid", "data": uids},
        {"name": "item", "data": vec!["i1"; n]},
        {"name": "hour", "data": vec![3; n]},
        {"name": "price", "data": vec![1.5; n]},
    ]})
    .to_string();
    let addr = srv.addr;
    let in_flight = std::thread::spawn(move || {
        let (c, b) = http(addr, "POST", "/v2/models/mmoe/infer", long.as_bytes());
        assert_eq!(c, 200, "{b}");
        serde_json::from_str::<Value>(&b).unwrap()["model_version"].clone()
    });
    let t0 = Instant::now();
    while srv
        .metrics()
        .in_flight
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
        && !in_flight.is_finished()
    {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::write(v2.join("DONE"), "").unwrap();
    let t0 = Instant::now();
    while !status().contains(r#""version":"2""#) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "version 2 never served"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(in_flight.join().unwrap(), "1");
    let two = post_json(srv.addr, "/v1/models/mmoe:regress", &many_rows(3)).1;
    assert_ne!(one["results"], two["results"]);
    let (_, m) = get(srv.addr, "/metrics");
    assert!(m.contains("mfh_model_version 2"), "{m}");
    assert!(m.contains("mfh_model_reloads_total 1"), "{m}");
    srv.stop();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn health_metadata_and_metrics() {
    let srv = start(options(model()));
    let a = srv.addr;
    assert_eq!(get(a, "/v2/health/live"), (200, r#"{"live":true}"#.into()));
    let (c, meta) = get(a, "/v2/models/mmoe");
    assert_eq!(c, 200);
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["name"], "mmoe");
    let inputs: Vec<(&str, bool)> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                i["optional"].as_bool().unwrap(),
            )
        })
        .collect();
    for required in ["uid", "item", "hour", "price"] {
        assert!(inputs.contains(&(required, false)), "{inputs:?}");
    }
    for optional in ["item_prior", "segment", "register_days", "age"] {
        assert!(inputs.contains(&(optional, true)), "{inputs:?}");
    }
    let outs: Vec<&str> = meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(outs, ["click", "like", "cell"]);
    assert_eq!(get(a, "/v2/models/nope").0, 404);
    assert_eq!(
        post_json(a, "/v1/models/mmoe:regress", &many_rows(500)).0,
        200
    );
    let _ = http(a, "POST", "/v1/models/mmoe:predict", b"{");
    let (c, m) = get(a, "/metrics");
    assert_eq!(c, 200);
    for line in [
        "mfh_requests_total{code=\"200\"}",
        "mfh_requests_total{code=\"400\"} 1",
        "mfh_request_duration_seconds_bucket{le=\"+Inf\"}",
        "mfh_batch_rows_bucket{le=\"500\"} 1",
        "mfh_batch_rows_count 1",
        "mfh_model_version 1",
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }
    srv.stop();
}

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    let srv = start(mfh_serve::ServeOptions {
        max_rows: 20_000,
        ..options(model())
    });
    let addr = srv.addr;
    let body = many_rows(20_000).to_string();
    let h =
        std::thread::spawn(move || http(addr, "POST", "/v1/models/mmoe:regress", body.as_bytes()));
    // Let the request arrive before shutting down.
    let t0 = Instant::now();
    while srv
        .metrics()
        .in_flight
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
        && srv.metrics().count(200) == 0
    {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
    srv.stop();
    let (c, b) = h.join().unwrap();
    assert_eq!(c, 200, "{b}");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_storm_of_malformed_requests_gets_only_4xx_and_leaves_the_server_healthy() {
    let srv = start(mfh_serve::ServeOptions {
        body_limit: 4 << 10,
        ..options(model())
    });
    let a = srv.addr;
    let too_big = format!(
        r#"{{"instances": [{}]}}"#,
        vec![r#"{"uid": "u1"}"#; 1000].join(",")
    );
    let cases: Vec<(&str, &str, &[u8])> = vec![
        ("POST", "/v1/models/mmoe:predict", b"{\"instances\": ["),
        ("POST", "/v1/models/mmoe:predict", b"\xff\xfe\x00"),
        ("POST", "/v1/models/mmoe:predict", b"{\"instances\": 7}"),
        (
            "POST",
            "/v1/models/mmoe:predict",
            br#"{"instances": [{"uid": null, "item": "i1", "hour": 1, "price": 1}]}"#,
        ),
        (
            "POST",
            "/v1/models/mmoe:predict",
            br#"{"instances": [{"uid": "u1", "item": "i1", "hour": 1, "price": "1e999"}]}"#,
        ),
        (
            "POST",
            "/v1/models/mmoe:regress",
            br#"{"context": "u1", "examples": []}"#,
        ),
        (
            "POST",
            "/v1/models/mmoe:regress",
            br#"{"context": {"uid": "u1"}, "examples": [[]]}"#,
        ),
        (
            "POST",
            "/v2/models/mmoe/infer",
            br#"{"inputs": [{"name": 3, "data": []}]}"#,
        ),
        (
            "POST",
            "/v2/models/mmoe/infer",
            br#"{"inputs": [{"name": "uid", "datatype": "COMPLEX64", "data": [1]}]}"#,
        ),
        ("POST", "/v2/models/x/infer", b"{}"),
        ("GET", "/v2/models/x", b""),
        ("POST", "/v1/models/mmoe", b"{}"),
        ("DELETE", "/v2/health/live", b""),
        ("POST", "/v1/models/mmoe:predict", too_big.as_bytes()),
    ];
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..2000 {
        let (m, p, b) = cases[i % cases.len()];
        *codes.entry(http(a, m, p, b).0).or_insert(0) += 1;
    }
    assert!(codes.keys().all(|c| (400..500).contains(c)), "{codes:?}");
    assert_eq!(get(a, "/v2/health/live").0, 200);
    assert_eq!(
        post_json(a, "/v1/models/mmoe:regress", &many_rows(5)).0,
        200
    );
    srv.stop();
}

#[test]
fn a_version_published_before_its_files_were_complete_is_retried() {
    let root = tempfile::tempdir().unwrap();
    let v1 = root.path().join("1");
    copy_dir(model(), &v1);
    std::fs::write(v1.join("DONE"), "").unwrap();
    let srv = start(mfh_serve::ServeOptions {
        poll: Duration::from_millis(50),
        ..options(root.path())
    });
    // Version 2's DONE appears while its dense weights are still half copied.
    let v2 = root.path().join("2");
    copy_dir(model(), &v2);
    let dense = std::fs::read(v2.join("dense.bin")).unwrap();
    std::fs::write(v2.join("dense.bin"), &dense[..dense.len() / 2]).unwrap();
    std::fs::write(v2.join("DONE"), "").unwrap();
    let failures = || {
        let (_, m) = get(srv.addr, "/metrics");
        m.lines()
            .find_map(|l| l.strip_prefix("mfh_model_reload_failures_total "))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap_or_else(|| panic!("no failure counter in {m}"))
    };
    let t0 = Instant::now();
    while failures() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the broken version was never tried"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Retried after a wait, not on every poll.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(failures(), 1, "retried before its backoff");
    // The copy completes: the next retry serves version 2.
    std::fs::write(v2.join("dense.bin"), &dense).unwrap();
    let status = || get(srv.addr, "/v1/models/mmoe").1;
    while !status().contains(r#""version":"2""#) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "version 2 never served: {}",
            status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(failures() >= 1);
    srv.stop();
}

#[test]
fn limits_rows_connections_and_slow_heads() {
    let srv = start(mfh_serve::ServeOptions {
        max_rows: 5,
        max_connections: 2,
        header_timeout: Duration::from_millis(300),
        ..options(model())
    });
    let a = srv.addr;
    // Rows over --max-rows: a 413 naming the count, in every form.
    let (c, b) = post_json(a, "/v1/models/mmoe:regress", &many_rows(7));
    assert_eq!(c, 413, "{b}");
    assert!(b.to_string().contains("has 7 rows") && b.to_string().contains("at most 5"));
    let col = json!({"inputs": [{"name": "uid", "datatype": "BYTES", "data": vec!["u1"; 6]}]});
    let (c, b) = post_json(a, "/v2/models/mmoe/infer", &col);
    assert_eq!(c, 413, "{b}");
    assert!(b.to_string().contains("has 6 rows"), "{b}");
    assert_eq!(
        post_json(a, "/v1/models/mmoe:regress", &many_rows(5)).0,
        200
    );
    // An input named twice, a version that is not served, the served one.
    let twice =
        json!({"inputs": [{"name": "uid", "data": ["u1"]}, {"name": "uid", "data": ["u2"]}]});
    let (c, b) = post_json(a, "/v2/models/mmoe/infer", &twice);
    assert_eq!(c, 400);
    assert!(b.to_string().contains("appears twice"), "{b}");
    // Outputs asked for twice, and more inputs than the data has columns: refused while
    // parsing (what is stored stays bounded).
    let outs = json!({"inputs": [{"name": "uid", "data": ["u1"]}],
        "outputs": [{"name": "cell"}, {"name": "cell"}]});
    let (c, b) = post_json(a, "/v2/models/mmoe/infer", &outs);
    assert_eq!(c, 400);
    assert!(b.to_string().contains("asked for twice"), "{b}");
    let many: Vec<Value> = (0..1000).map(|_| json!({"name": ""})).collect();
    let (c, b) = post_json(a, "/v2/models/mmoe/infer", &json!({ "inputs": many }));
    assert_eq!(c, 400);
    assert!(
        b.to_string().contains("inputs: the model's data has"),
        "{b}"
    );
    assert_eq!(get(a, "/v2/models/mmoe/versions/9").0, 404);
    assert_eq!(get(a, "/v2/models/mmoe/versions/1/ready").0, 200);
    // Two idle connections fill --max-connections: a third is answered 503 at once.
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(50));
    let mut third = TcpStream::connect(a).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = String::new();
    let _ = third.read_to_string(&mut buf);
    assert!(buf.starts_with("HTTP/1.1 503"), "{buf:?}");
    assert!(buf.contains("too many connections"), "{buf:?}");
    // A head that does not arrive within --header-timeout: the connection is closed
    // (freeing its slot).
    let mut slow = idle.into_iter().next().unwrap();
    slow.write_all(b"GET /v2/health/live HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(
        srv.metrics()
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    srv.stop();
}

#[test]
fn dynamic_batching_gives_each_request_exactly_its_own_rows() {
    // The answers without batching, one request at a time.
    let plain = start(options(model()));
    let requests: Vec<Value> = (0..24)
        .map(|k| {
            let ex: Vec<Value> = (0..1 + k % 7)
                .map(|i| json!({"item": format!("i{}", (i + k) % 9), "hour": (i * 5 + k) % 24, "price": (k * 3 + i) % 40}))
                .collect();
            json!({"context": {"uid": format!("u{}", k % USERS)}, "examples": ex})
        })
        .collect();
    let want: Vec<Value> = requests
        .iter()
        .map(|r| {
            let (c, v) = post_json(plain.addr, "/v1/models/mmoe:regress", r);
            assert_eq!(c, 200, "{v}");
            v
        })
        .collect();
    plain.stop();
    let srv = start(mfh_serve::ServeOptions {
        batch_delay: Duration::from_millis(20),
        max_batch_rows: 40,
        ..options(model())
    });
    let a = srv.addr;
    // Eight clients interleaving the requests; every answer checked row by row.
    std::thread::scope(|s| {
        for c in 0..8 {
            let (requests, want) = (&requests, &want);
            s.spawn(move || {
                for round in 0..3 {
                    for k in (c..requests.len()).step_by(8) {
                        let k = (k + round) % requests.len();
                        if c == 0 {
                            // A row that cannot be decoded, grouped with the others,
                            // fails alone.
                            let bad = json!({"context": {"uid": "nobody"},
                                "examples": [{"item": "i1", "hour": 1, "price": 1}]});
                            let (code, b) = post_json(a, "/v1/models/mmoe:regress", &bad);
                            assert_eq!(code, 400, "{b}");
                        }
                        let (code, got) = post_json(a, "/v1/models/mmoe:regress", &requests[k]);
                        assert_eq!(code, 200, "{got}");
                        let (g, w) = (&got["results"], &want[k]["results"]);
                        let (g, w) = (g.as_array().unwrap(), w.as_array().unwrap());
                        assert_eq!(g.len(), w.len(), "request {k}");
                        for (x, y) in g.iter().zip(w) {
                            let (x, y) = (x.as_array().unwrap(), y.as_array().unwrap());
                            assert_eq!(x.len(), y.len());
                            for (p, q) in x.iter().zip(y) {
                                let d = (p.as_f64().unwrap() - q.as_f64().unwrap()).abs();
                                assert!(d <= 1e-6, "request {k}: {p} vs {q}");
                            }
                        }
                    }
                }
            });
        }
    });
    let m = srv.metrics();
    let batches = m.batches.load(std::sync::atomic::Ordering::Relaxed);
    let requests_n = m
        .batched_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        requests_n,
        8 * 3 * 3 + 9,
        "every request went through the batcher"
    );
    assert!(
        batches < requests_n,
        "no two requests were scored together ({batches} batches)"
    );
    // A lone request is the only admitted one: none can join it, it is scored at once.
    let before = m.batches.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    assert_eq!(post_json(a, "/v1/models/mmoe:regress", &requests[0]).0, 200);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        m.batches.load(std::sync::atomic::Ordering::Relaxed),
        before + 1
    );
    srv.stop();
}
