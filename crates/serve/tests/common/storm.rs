//! The 64 × 16 MiB storm, shared by the memory test (tests/memory.rs) and the load
//! benchmark (examples/loadgen.rs, which includes this file by path): the four kinds of
//! large request, a client that writes a body on one thread while it reads the answer on
//! another, and the process's resident and peak memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A field of /proc/self/status, in KiB.
pub fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak (VmHWM) to the current resident size; false when the kernel refuses.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// This thread at nice +10: the storm's client threads share the server's cores here,
/// where a deployment's clients run elsewhere; below the server's threads (its scorers run
/// at +5), they do not delay what is measured.
fn client_priority() {
    // SAFETY: gettid and setpriority take plain integers and change only this thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// Sends `body` on its own thread while this one reads the answer (a server may answer
/// before it has read the body); returns the status.
pub fn ask(addr: SocketAddr, path: &str, body: Arc<Vec<u8>>) -> u16 {
    client_priority();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    let mut w = s.try_clone().unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = std::thread::spawn(move || {
        client_priority();
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

/// The four kinds of `limit`-byte request for a model served as `name`: `rows` (a
/// `:regress` body that scores), one KServe column of `input` holding millions of values
/// (over --max-rows), `rows` cut at its last byte, and a body over the limit.
pub fn bodies(name: &str, limit: usize, rows: Vec<u8>, input: &str) -> Vec<(String, Arc<Vec<u8>>)> {
    let mut column =
        format!(r#"{{"inputs": [{{"name": "{input}", "datatype": "BYTES", "data": ["#).into_bytes();
    while column.len() < limit - 16 {
        column.extend_from_slice(br#""u1","#);
    }
    column.extend_from_slice(br#""u1"]}]}"#);
    let mut cut = rows.clone();
    cut.truncate(cut.len() - 1);
    let regress = format!("/v1/models/{name}:regress");
    vec![
        (regress.clone(), Arc::new(rows)),
        (format!("/v2/models/{name}/infer"), Arc::new(column)),
        (regress.clone(), Arc::new(cut)),
        (regress, Arc::new(vec![b' '; limit + 1])),
    ]
}

/// `n` concurrent requests, the kinds of `bodies` in turn; their statuses.
pub fn fire(addr: SocketAddr, bodies: &[(String, Arc<Vec<u8>>)], n: usize) -> Vec<u16> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|k| {
                let (p, b) = &bodies[k % bodies.len()];
                let b = Arc::clone(b);
                s.spawn(move || ask(addr, p, b))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
