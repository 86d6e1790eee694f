//! The stated memory bound (docs/serving.md, "Memory"; `mfh_memory_bound_bytes`): 64
//! concurrent requests of 16 MiB — rows of long values that score, a column of four
//! million values over `--max-rows`, a body cut short at its end, one over the body limit
//! — are each answered 200, 400, 413 or 503, and the server's peak resident memory grows
//! by less than the bound over what the loaded model holds. A test binary of its own: the
//! peak is the process's.

mod common;

use common::{model, options, start};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak (VmHWM) to the current resident size.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("cannot reset the peak RSS (/proc/self/clear_refs): the bound cannot be checked");
    assert!(status_kib("VmHWM:") <= status_kib("VmRSS:") + 1024);
}

/// Sends `body` on its own thread while this one reads the answer (a server may answer
/// before it has read the body); returns the status.
fn ask(addr: SocketAddr, path: &str, body: Arc<Vec<u8>>) -> u16 {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut w = s.try_clone().unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&body);
    });
    let mut r = s;
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&buf[..buf.len().min(64)]).to_string();
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?} ({} bytes)", buf.len()))
}

/// `:regress` with `n` examples whose `hour` (hashed text) pads each row to `row_bytes`.
fn regress(n: usize, row_bytes: usize) -> Vec<u8> {
    let pad = "h".repeat(row_bytes.saturating_sub(48));
    let mut s = String::from(r#"{"context": {"uid": "u1"}, "examples": ["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"item": "i{}", "price": 1, "hour": "{pad}{i}"}}"#,
            i % 9
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

#[test]
fn sixty_four_concurrent_16_mib_requests_stay_under_the_stated_bound() {
    let srv = start(mfh_serve::ServeOptions {
        timeout: Duration::from_secs(600),
        body_timeout: Duration::from_secs(600),
        ..options(model())
    });
    let addr = srv.addr;
    let limit = 16 * MIB;
    // Scores: 10,000 rows (the default --max-rows) of ~1.6 KiB.
    let rows = regress(10_000, limit / 10_000 - 8);
    assert!(
        rows.len() <= limit && rows.len() > limit * 9 / 10,
        "{}",
        rows.len()
    );
    // Over --max-rows: one KServe column of four million short values.
    let mut column = br#"{"inputs": [{"name": "uid", "datatype": "BYTES", "data": ["#.to_vec();
    while column.len() < limit - 16 {
        column.extend_from_slice(br#""u1","#);
    }
    column.extend_from_slice(br#""u1"]}]}"#);
    // Malformed at its very end: every row decoded, then refused.
    let mut cut = rows.clone();
    cut.truncate(cut.len() - 1);
    // Over the body limit.
    let over = vec![b' '; limit + 1];
    let bodies: Vec<(&str, Arc<Vec<u8>>)> = vec![
        ("/v1/models/mmoe:regress", Arc::new(rows)),
        ("/v2/models/mmoe/infer", Arc::new(column)),
        ("/v1/models/mmoe:regress", Arc::new(cut)),
        ("/v1/models/mmoe:predict", Arc::new(over)),
    ];
    // Warm-up: each kind once, then the baseline.
    let first: Vec<u16> = bodies
        .iter()
        .map(|(p, b)| ask(addr, p, Arc::clone(b)))
        .collect();
    assert_eq!(first, [200, 413, 400, 413]);
    let bound = srv
        .metrics()
        .memory_bound
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(bound > 0);
    reset_peak();
    let base = status_kib("VmRSS:") * 1024;
    let codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..64)
            .map(|k| {
                let (p, b) = &bodies[k % bodies.len()];
                let b = Arc::clone(b);
                s.spawn(move || ask(addr, p, b))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let peak = status_kib("VmHWM:") * 1024;
    let grew = peak.saturating_sub(base);
    eprintln!(
        "64 × 16 MiB: peak RSS grew {} MiB over {} MiB (bound {} MiB); answers {:?}",
        grew >> 20,
        base >> 20,
        bound >> 20,
        codes
    );
    assert!(
        codes.iter().all(|c| [200, 400, 413, 503].contains(c)),
        "{codes:?}"
    );
    assert!(codes.contains(&200) && codes.contains(&413) && codes.contains(&400));
    assert!(
        grew <= bound,
        "peak RSS grew {grew} bytes, over the stated bound of {bound}"
    );
    assert_eq!(common::get(addr, "/v2/health/live").0, 200);
    srv.stop();
}
