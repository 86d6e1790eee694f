//! Load generator for `mfh serve` (bench/, not a test): replays ranking requests — one
//! user × N candidate videos, TF-Serving `:regress` — over loopback keep-alive connections
//! and reports latency percentiles and throughput, next to the in-process cost of scoring
//! the same N rows on the same model; then a storm of malformed requests that must be
//! answered 4xx only, leaving the server healthy.
//!
//! ```sh
//! cargo run --profile fastrel -p mfh-serve --example loadgen -- MODEL_DIR [CANDIDATES] [SECONDS]
//! ```
//! MODEL_DIR is a KuaiRand model folder (`mfh train` on data from `mfh prepare kuairand`).
//! The server runs in this process on 127.0.0.1 (port picked by the OS), so client and
//! server share the machine's cores, as on any loopback benchmark.

#[path = "../tests/common/storm.rs"]
mod storm;

use flate2::read::GzDecoder;
use mfh_serve::model::ServedModel;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use storm::{ask, status_kib};

fn column(dir: &Path, table: &str, col: &str, limit: usize) -> Vec<String> {
    let f = std::fs::File::open(dir.join("tables").join(format!("{table}.csv.gz")))
        .unwrap_or_else(|e| panic!("{}: tables/{table}.csv.gz: {e}", dir.display()));
    let r = BufReader::new(GzDecoder::new(f));
    let mut lines = r.lines();
    let header = lines.next().unwrap().unwrap();
    let i = header.split(',').position(|c| c == col).unwrap();
    lines
        .take(limit)
        .map(|l| l.unwrap().split(',').nth(i).unwrap().to_string())
        .collect()
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let w = TcpStream::connect(addr).unwrap();
        w.set_nodelay(true).unwrap();
        w.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    /// Sends one request and reads the answer: (status, body). `closing` tells whether
    /// the server closes the connection after it (`Connection: close`).
    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        self.send_full(method, path, body).map(|(c, b, _)| (c, b))
    }

    fn send_full(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>, bool)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // Head and body in one write, as HTTP clients send a small request (two writes
        // would be two segments, and two wake-ups of the server); a server may answer 413
        // without reading a large body: read the answer anyway.
        let wrote = if body.len() <= 64 << 10 {
            let mut msg = head.into_bytes();
            msg.extend_from_slice(body);
            self.w.write_all(&msg)
        } else {
            self.w
                .write_all(head.as_bytes())
                .and_then(|_| self.w.write_all(body))
        };
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        if line.is_empty() {
            wrote?;
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        let mut closing = false;
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    closing = true;
                }
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok((status, body, closing))
    }
}

/// Largest absolute difference between two score lists of the same length.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "score lists of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// CPU time (user + system) of this process (`RUSAGE_SELF`) or of the calling thread
/// (`RUSAGE_THREAD`), in seconds.
fn cpu_seconds_of(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given, and `who` is one of the two
    // values the callers pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut u) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Closed loop: `clients` connections, each sending back to back for `secs`.
fn load(addr: SocketAddr, path: &str, body: &[u8], clients: usize, secs: f64) -> (Vec<f64>, f64) {
    let (lat, wall, _) = load_each(addr, path, &[body], clients, secs);
    (lat, wall)
}

/// [`load`] with client `c` sending `bodies[c % bodies.len()]`; also returns the CPU
/// seconds the client threads used.
fn load_each(
    addr: SocketAddr,
    path: &str,
    bodies: &[&[u8]],
    clients: usize,
    secs: f64,
) -> (Vec<f64>, f64, f64) {
    let t0 = Instant::now();
    let lat: Vec<(Vec<f64>, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                let body = bodies[c % bodies.len()];
                s.spawn(move || {
                    let mut c = Conn::open(addr);
                    let mut lat = Vec::new();
                    while t0.elapsed().as_secs_f64() < secs {
                        let t = Instant::now();
                        let (code, b) = c.send("POST", path, body).unwrap();
                        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    (lat, cpu_seconds_of(libc::RUSAGE_THREAD))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = t0.elapsed().as_secs_f64();
    let cpu = lat.iter().map(|(_, c)| c).sum();
    let mut all: Vec<f64> = lat.into_iter().flat_map(|(l, _)| l).collect();
    all.sort_by(f64::total_cmp);
    (all, wall, cpu)
}

fn storm(addr: SocketAddr, name: &str, n: usize) -> std::collections::BTreeMap<u16, usize> {
    let predict = format!("/v1/models/{name}:predict");
    let regress = format!("/v1/models/{name}:regress");
    let infer = format!("/v2/models/{name}/infer");
    let big = vec![b' '; 20 << 20];
    let bad: Vec<(&str, String, Vec<u8>)> = vec![
        ("POST", predict.clone(), b"{\"instances\": [".to_vec()),
        ("POST", predict.clone(), b"\xff\xfe not utf8".to_vec()),
        ("POST", predict.clone(), b"[]".to_vec()),
        ("POST", predict.clone(), br#"{"instances": 3}"#.to_vec()),
        ("POST", predict.clone(), br#"{"instances": [{"video_id": "1"}]}"#.to_vec()),
        ("POST", predict.clone(), br#"{"instances": [{"user_id": {"a": 1}, "video_id": "1", "tab": 1, "hourmin": 1}]}"#.to_vec()),
        ("POST", predict.clone(), br#"{"instances": [{"user_id": "0", "video_id": "1", "tab": 1, "hourmin": 1, "nope": 1}]}"#.to_vec()),
        ("POST", predict.clone(), br#"{"instances": [{"user_id": "0", "video_id": "1", "tab": 1, "hourmin": 1, "item_prior_impressions": "many"}]}"#.to_vec()),
        ("POST", regress.clone(), br#"{"context": [], "examples": []}"#.to_vec()),
        ("POST", regress.clone(), br#"{"context": {"user_id": "no-such-user"}, "examples": [{"video_id": "1", "tab": 1, "hourmin": 1}]}"#.to_vec()),
        ("POST", infer.clone(), br#"{"inputs": [{"name": "user_id", "datatype": "FP32", "data": ["x"]}]}"#.to_vec()),
        ("POST", infer.clone(), br#"{"inputs": [{"name": "user_id", "data": [1, 2]}, {"name": "video_id", "data": [1]}]}"#.to_vec()),
        ("POST", "/v1/models/nobody:predict".into(), br#"{"instances": []}"#.to_vec()),
        ("POST", "/v2/models/nobody/infer".into(), br#"{"inputs": []}"#.to_vec()),
        ("GET", "/v2/models/nobody".into(), Vec::new()),
        ("POST", format!("/v1/models/{name}:explode"), b"{}".to_vec()),
        ("GET", "/no/such/route".into(), Vec::new()),
    ];
    let mut codes = std::collections::BTreeMap::new();
    let mut c = Conn::open(addr);
    for i in 0..n {
        // One in 500 is over the body limit (16 MiB).
        let (m, p, b) = if i % 500 == 499 {
            ("POST", &predict, &big)
        } else {
            let (m, p, b) = &bad[i % bad.len()];
            (*m, p, b)
        };
        let (code, closing) = match c.send_full(m, p, b) {
            Ok((code, _, closing)) => (code, closing),
            Err(_) => (0, true),
        };
        *codes.entry(code).or_insert(0) += 1;
        // A request answered before its body was read (413, 404 for an unknown model)
        // is answered `Connection: close`: reconnect, as an HTTP client does.
        if closing {
            c = Conn::open(addr);
        }
    }
    codes
}

/// The batching server's delay, microseconds.
const BATCH_DELAY_US: u64 = 1000;

/// 64 concurrent 16 MiB requests (10,000 candidates with long IDs, which score; a column
/// of four million values, over --max-rows; the same candidates cut at the last byte; one
/// over the body limit) while another connection asks /v2/health/live every 5 ms: the
/// answers, the peak RSS over the stated bound, and the health check's latency.
fn memory_storm(server: &mfh_serve::Server, name: &str, user: &str, videos: &[String]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let addr = server.addr;
    let limit = 16usize << 20;
    let pad = "v".repeat(limit / 10_000 - 80);
    let ex: Vec<String> = (0..10_000)
        .map(|i| {
            format!(
                r#"{{"video_id": "{pad}{}", "item_prior_impressions": {}}}"#,
                videos[i % videos.len()],
                i % 50
            )
        })
        .collect();
    let rows = format!(
        r#"{{"context": {{"user_id": "{user}", "tab": 1, "hourmin": 1300}}, "examples": [{}]}}"#,
        ex.join(",")
    )
    .into_bytes();
    let bodies = storm::bodies(name, limit, rows, "user_id");
    let warm: Vec<u16> = bodies
        .iter()
        .map(|(p, b)| ask(addr, p, Arc::clone(b)))
        .collect();
    let bound = server.metrics.memory_bound.load(Ordering::Relaxed);
    let reset = storm::reset_peak();
    let base = status_kib("VmRSS:") << 10;
    let done = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&done);
    let health = std::thread::spawn(move || {
        let mut c = Conn::open(addr);
        let mut lat = Vec::new();
        while !d.load(Ordering::Relaxed) {
            let t = Instant::now();
            let code = c.send("GET", "/v2/health/live", b"").map_or(0, |r| r.0);
            assert_eq!(code, 200);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            std::thread::sleep(Duration::from_millis(5));
        }
        lat.sort_by(f64::total_cmp);
        lat
    });
    let t0 = Instant::now();
    let codes = storm::fire(addr, &bodies, 64);
    let secs = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let lat = health.join().unwrap();
    let peak = status_kib("VmHWM:") << 10;
    let mut count = std::collections::BTreeMap::new();
    for c in &codes {
        *count.entry(*c).or_insert(0) += 1;
    }
    println!(
        "64 concurrent 16 MiB requests (warm-up answers {warm:?}) in {secs:.1} s: answers {count:?}; peak RSS {} MiB over a {} MiB baseline{} (stated bound {} MiB): {}; /v2/health/live meanwhile: {} checks, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        peak.saturating_sub(base) >> 20,
        base >> 20,
        if reset { "" } else { " (peak not reset: includes warm-up)" },
        bound >> 20,
        if peak.saturating_sub(base) <= bound { "under" } else { "OVER" },
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(
        args.get(1)
            .expect("usage: loadgen MODEL_DIR [CANDIDATES] [SECONDS]"),
    );
    let n: usize = args.get(2).map_or(500, |s| s.parse().unwrap());
    let secs: f64 = args.get(3).map_or(10.0, |s| s.parse().unwrap());
    let small_users = column(dir, "user", "user_id", 8);
    let users = &small_users[..1];
    // Videos with an impression count (the item facet needs one).
    let videos = column(dir, "item_counts", "video_id", n);
    let context = json!({"user_id": users[0], "tab": 1, "hourmin": 1300});
    let examples: Vec<Value> = videos.iter().map(|v| json!({"video_id": v})).collect();
    let body = json!({"context": context, "examples": examples}).to_string();

    // In process: the same N rows, decode + forward, then forward alone, with the
    // products split as a server's scorer splits them (`mfh serve`'s default: one thread
    // per scorer, one scorer per core), so that the latencies below compare with these.
    let (_, scorer_threads) = mfh_serve::ServeOptions::new(dir.to_path_buf()).lanes();
    mfh_nn::set_threads(scorer_threads);
    let scorer_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(scorer_threads)
        .build()
        .unwrap();
    let m = ServedModel::load(dir, 1).unwrap();
    let parsed = mfh_serve::protocol::parse_regress(&m.decoder, body.as_bytes(), 10_000).unwrap();
    let views = parsed.views();
    let rows = views.rows();
    // Decode + score three ways, interleaved: as a server scores (the user's side
    // decoded once and factored out of the first layers, each tower on its own cell's
    // rows), factoring alone, and row by row with every row decoded in full and every
    // tower on every row (the path before issue 21).
    let ways = [
        ("served", true, true),
        ("factored only", true, false),
        ("row by row", false, false),
    ];
    scorer_pool.install(|| {
        let mut t: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
        m.set_factored(false);
        m.set_cell_towers(false);
        let want = m.score(0, &views.context, &rows).unwrap();
        for _ in 0..200 {
            for (&(name, factored, towers), into) in ways.iter().zip(&mut t) {
                m.set_factored(factored);
                m.set_cell_towers(towers);
                m.decoder.set_context_once(towers);
                let t0 = Instant::now();
                let s = m.score(0, &views.context, &rows).unwrap();
                into.push(t0.elapsed().as_secs_f64() * 1e3);
                assert_eq!(s.n, n);
                let d = max_diff(&s.preds, &want.preds);
                assert!(d <= 1e-6, "{name}: scores differ by {d}");
            }
        }
        m.set_factored(true);
        m.set_cell_towers(true);
        m.decoder.set_context_once(true);
        println!(
            "factored products: {} of {} examined",
            mfh_nn::product::FACTORED_PRODUCTS.load(std::sync::atomic::Ordering::Relaxed),
            mfh_nn::product::EXAMINED_PRODUCTS.load(std::sync::atomic::Ordering::Relaxed)
        );
        for v in &mut t {
            v.sort_by(f64::total_cmp);
        }
        let med: Vec<f64> = t.iter().map(|v| pct(v, 0.5)).collect();
        println!(
            "in process, {n} rows, 1 user: decode+score median {:.3} ms served, {:.3} ms factoring only, {:.3} ms row by row: {:.2}x rows/s served / row by row ({:.2}x factoring only)",
            med[0],
            med[1],
            med[2],
            med[2] / med[0],
            med[2] / med[1]
        );
        let t = &t[0];
        let forward = m.time_forward(&views.context, &rows, 200);
        let mut d = Vec::new();
        for _ in 0..200 {
            let mut b = m.decoder.batch();
            let t0 = Instant::now();
            m.decoder.decode(&views.context, &rows, &mut b).unwrap();
            d.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        d.sort_by(f64::total_cmp);
        println!(
            "in process, {n} rows: decode+score median {:.3} ms ({:.0} rows/s); forward alone median {:.3} ms ({:.0} rows/s); decode alone median {:.3} ms",
            pct(t, 0.5),
            n as f64 / pct(t, 0.5) * 1e3,
            forward,
            n as f64 / forward * 1e3,
            pct(&d, 0.5)
        );
    });
    drop(rows);
    drop(views);
    // Each client is another user asking about other candidates (so a batch holds
    // several users, as a server's batches do).
    let small: Vec<String> = (0..8)
        .map(|c| {
            let user = &small_users[c % small_users.len()];
            let lo = (c * 20) % n.saturating_sub(19).max(1);
            let context = json!({"user_id": user, "tab": 1, "hourmin": 1300});
            json!({"context": context, "examples": examples[lo..(lo + 20).min(n)]}).to_string()
        })
        .collect();
    let small: Vec<&[u8]> = small.iter().map(|b| b.as_bytes()).collect();
    // The compute batching saves, in process: the eight small requests decoded and scored
    // one at a time, and together in one pass (each request's user side once, and with
    // factoring off), checked against one another.
    let (one_at_a_time_ms, together_ms) = {
        let parsed: Vec<_> = small
            .iter()
            .map(|b| mfh_serve::protocol::parse_regress(&m.decoder, b, 10_000).unwrap())
            .collect();
        let mut t = [Vec::new(), Vec::new(), Vec::new()];
        mfh_serve::protocol::with_requests(&parsed, |requests| {
            let alone: Vec<_> = requests
                .iter()
                .map(|(c, r)| m.score(0, c, r).unwrap())
                .collect();
            scorer_pool.install(|| {
                for _ in 0..200 {
                    let t0 = Instant::now();
                    for (c, r) in requests {
                        m.score(0, c, r).unwrap();
                    }
                    t[0].push(t0.elapsed().as_secs_f64() * 1e3);
                    for (way, factored) in [(1, true), (2, false)] {
                        m.set_factored(factored);
                        let t0 = Instant::now();
                        let together = m.score_many(0, requests);
                        t[way].push(t0.elapsed().as_secs_f64() * 1e3);
                        assert_eq!(together.len(), alone.len());
                        for (a, b) in together.iter().zip(&alone) {
                            let a = a.as_ref().unwrap();
                            let d = max_diff(&a.preds, &b.preds);
                            assert!(d <= 1e-6, "scored together: scores differ by {d}");
                        }
                    }
                    m.set_factored(true);
                }
            });
        });
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let [a, b, c] = &mut t;
        let (a, b, c) = (med(a), med(b), med(c));
        println!(
            "in process, 8 requests of 1 x 20 (8 users): one at a time {a:.3} ms; together {b:.3} ms ({:.2}x), together without factoring {c:.3} ms ({:.2}x)",
            a / b,
            a / c
        );
        (a, b)
    };
    drop(m);
    if secs == 0.0 {
        // `loadgen MODEL N 0`: the in-process figures only (for a profiler).
        return;
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(mfh_serve::start(mfh_serve::ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..mfh_serve::ServeOptions::new(dir.to_path_buf())
        }))
        .unwrap();
    let addr = server.addr;
    let name = server.store.current().model_name.clone();
    let path = format!("/v1/models/{name}:regress");
    println!(
        "request: 1 user x {n} candidates, {} bytes of JSON, :regress",
        body.len()
    );
    // `loadgen MODEL N SECS small`: the many-small-requests rounds only (for a profiler).
    let small_only = args.get(4).is_some_and(|a| a == "small");
    for clients in if small_only { vec![] } else { vec![1, 2, 4] } {
        let (lat, wall) = load(addr, &path, body.as_bytes(), clients, secs);
        println!(
            "{clients} client(s), {secs:.0} s: {} requests, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, {:.1} requests/s = {:.0} candidates/s",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 0.999),
            lat.len() as f64 / wall,
            (lat.len() * n) as f64 / wall
        );
    }
    if !small_only {
        let (lat1, wall1) = load(addr, &path, body.as_bytes(), 1, secs);
        let (lat4, wall4) = load(addr, &path, body.as_bytes(), 4, secs);
        println!(
            "4 clients / 1 client, candidates/s, interleaved rerun: {:.2}x ({:.0} / {:.0})",
            (lat4.len() as f64 / wall4) / (lat1.len() as f64 / wall1),
            (lat4.len() * n) as f64 / wall4,
            (lat1.len() * n) as f64 / wall1
        );
    }
    // Many small requests (1 user x 20 candidates, 8 clients), without and with dynamic
    // batching, interleaved twice.
    let batching = rt
        .block_on(mfh_serve::start(mfh_serve::ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            batch_delay: Duration::from_micros(BATCH_DELAY_US),
            max_batch_rows: 1024,
            ..mfh_serve::ServeOptions::new(dir.to_path_buf())
        }))
        .unwrap();
    for round in 0..2 {
        let cpu = cpu_seconds_of(libc::RUSAGE_SELF);
        let (l0, w0, clients0) = load_each(addr, &path, &small, 8, secs);
        let cpu0 = (cpu_seconds_of(libc::RUSAGE_SELF) - cpu) / l0.len() as f64 * 1e6;
        let clients0 = clients0 / l0.len() as f64 * 1e6;
        let cpu = cpu_seconds_of(libc::RUSAGE_SELF);
        let (l1, w1, clients1) = load_each(batching.addr, &path, &small, 8, secs);
        let cpu1 = (cpu_seconds_of(libc::RUSAGE_SELF) - cpu) / l1.len() as f64 * 1e6;
        let clients1 = clients1 / l1.len() as f64 * 1e6;
        let (c0, c1) = ((l0.len() * 20) as f64 / w0, (l1.len() * 20) as f64 / w1);
        println!(
            "1 x 20 candidates, 8 clients (8 users), round {}: without batching {c0:.0} candidates/s (p99 {:.2} ms); batching {BATCH_DELAY_US} us: {c1:.0} candidates/s (p99 {:.2} ms); ratio {:.2}x; {} requests in {} batches",
            round + 1,
            pct(&l0, 0.99),
            pct(&l1, 0.99),
            c1 / c0,
            batching.metrics.batched_requests.load(std::sync::atomic::Ordering::Relaxed),
            batching.metrics.batches.load(std::sync::atomic::Ordering::Relaxed),
        );
        // What 2x would take, in CPU per request (the cores are saturated, so candidates/s
        // goes as its inverse; the process's CPU holds the server, the clients and every
        // hand-off): half of the unbatched figure, of which decode + score take at least
        // what they take in process for the eight requests together, and the clients what
        // they took in this round; the rest is what the server's HTTP, JSON and batching
        // may cost, against what they cost now (their share of the batched figure, with
        // decode + score taken as in process).
        let alone_us = one_at_a_time_ms * 1e3 / 8.0;
        let eight_us = together_ms * 1e3 / 8.0;
        println!(
            "  CPU per request: without batching {cpu0:.0} us (clients {clients0:.0}, decode + score {alone_us:.0}, the server's HTTP, JSON and hand-offs {:.0}); batching {cpu1:.0} us (clients {clients1:.0}, decode + score in process {eight_us:.0}, the rest {:.0}); 2x needs {:.0} us, which leaves {:.0} us for the rest",
            cpu0 - clients0 - alone_us,
            cpu1 - clients1 - eight_us,
            cpu0 / 2.0,
            cpu0 / 2.0 - clients1 - eight_us,
        );
    }
    rt.block_on(batching.shutdown()).unwrap();
    if small_only {
        return;
    }
    memory_storm(&server, &name, &users[0], &videos);
    let t0 = Instant::now();
    let codes = storm(addr, &name, 10_000);
    println!(
        "storm: 10000 malformed requests in {:.1} s, answered {codes:?}",
        t0.elapsed().as_secs_f64()
    );
    let mut c = Conn::open(addr);
    let live = c.send("GET", "/v2/health/live", b"").unwrap().0;
    let ok = c.send("POST", &path, body.as_bytes()).unwrap().0;
    println!("after the storm: live {live}, a valid request {ok}");
    let only_4xx = codes.keys().all(|c| (400..500).contains(c));
    println!(
        "storm left the server healthy with only 4xx: {}",
        only_4xx && live == 200 && ok == 200
    );
    rt.block_on(server.shutdown()).unwrap();
    std::thread::sleep(Duration::from_millis(10));
}
