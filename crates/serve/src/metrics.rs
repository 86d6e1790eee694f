//! Counters for `GET /metrics`, in Prometheus' text format: requests by status code,
//! request latency and rows per scored request as histograms, the served version, the
//! queue. Lock-free on the request path (atomics).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency buckets, seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
/// Upper bounds of the rows-per-request buckets.
const ROWS_BOUNDS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

struct Histogram<const N: usize> {
    bounds: [f64; N],
    /// One per bound, then +Inf; not cumulative (summed when rendered).
    counts: [AtomicU64; N],
    over: AtomicU64,
    /// Sum in millionths, to stay an integer.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, x: f64) {
        match self.bounds.iter().position(|&b| x <= b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add((x * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        acc += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {acc}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {acc}");
    }
}

/// A counter per label value (a status code).
struct Counts<K>(Mutex<BTreeMap<K, u64>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts(Mutex::new(BTreeMap::new()))
    }
}

impl<K: Ord + Copy + std::fmt::Display> Counts<K> {
    fn add(&self, k: K) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k)
            .or_default() += 1;
    }

    fn get(&self, k: K) -> u64 {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&k).copied().unwrap_or(0)
    }

    /// A Prometheus counter with one line per value: `name{code="k"} n`.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (k, n) in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "{name}{{code=\"{k}\"}} {n}");
        }
    }
}

pub struct Metrics {
    by_code: Counts<u16>,
    latency: Histogram<14>,
    rows: Histogram<10>,
    pub version: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Requests admitted and not finished (running or waiting for a scorer).
    pub in_flight: AtomicU64,
    /// Open connections (REST and gRPC).
    pub connections: AtomicU64,
    /// Connections refused over `--max-connections`.
    pub connections_refused: AtomicU64,
    /// gRPC calls by status code name.
    grpc: Counts<&'static str>,
    /// The stated bound on the memory requests may hold, bytes (docs/serving.md).
    pub memory_bound: AtomicU64,
    /// Dynamic batching: groups scored, and requests in them.
    pub batches: AtomicU64,
    pub batched_requests: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            by_code: Counts::default(),
            latency: Histogram::new(LATENCY_BOUNDS),
            rows: Histogram::new(ROWS_BOUNDS),
            version: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            grpc: Counts::default(),
            memory_bound: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched_requests: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn request(&self, code: u16, seconds: f64) {
        self.by_code.add(code);
        self.latency.observe(seconds);
    }

    /// A gRPC call answered with `code` (`OK`, `INVALID_ARGUMENT`…).
    pub fn grpc(&self, code: &'static str, seconds: f64) {
        self.grpc.add(code);
        self.latency.observe(seconds);
    }

    /// A group of `n` requests scored together (dynamic batching).
    pub fn batch(&self, n: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_requests.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn rows(&self, n: usize) {
        self.rows.observe(n as f64);
    }

    /// Requests answered with `code` so far.
    pub fn count(&self, code: u16) -> u64 {
        self.by_code.get(code)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        self.by_code.render(
            &mut s,
            "mfh_requests_total",
            "HTTP requests by status code.",
        );
        self.grpc.render(
            &mut s,
            "mfh_grpc_requests_total",
            "gRPC calls by status code.",
        );
        self.latency.render(
            &mut s,
            "mfh_request_duration_seconds",
            "Time from a request's arrival to its response, queueing included.",
        );
        self.rows.render(
            &mut s,
            "mfh_batch_rows",
            "Rows scored per request (the batch the network sees).",
        );
        let g = |s: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        g(
            &mut s,
            "mfh_model_version",
            "The version being served.",
            "gauge",
            self.version.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_model_reloads_total",
            "Swaps to a newer version.",
            "counter",
            self.reloads.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_model_reload_failures_total",
            "Failed loads of published versions (each retry counts).",
            "counter",
            self.reload_failures.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_requests_in_flight",
            "Scoring requests admitted and not finished.",
            "gauge",
            self.in_flight.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_connections",
            "Open connections (REST and gRPC).",
            "gauge",
            self.connections.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_connections_refused_total",
            "Connections refused over --max-connections.",
            "counter",
            self.connections_refused.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_batches_total",
            "Dynamic batching: forward passes over requests grouped together.",
            "counter",
            self.batches.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_batched_requests_total",
            "Dynamic batching: requests in those groups.",
            "counter",
            self.batched_requests.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "mfh_memory_bound_bytes",
            "Stated bound on what admitted requests and connections hold, beyond the loaded model and its warmed scorers.",
            "gauge",
            self.memory_bound.load(Ordering::Relaxed),
        );
        s
    }
}
