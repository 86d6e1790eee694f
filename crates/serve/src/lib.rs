//! `mfh serve`: answers ranking requests over HTTP with a trained model folder.
//!
//! Endpoints (`{name}` is the served model's name, by default its config section):
//! - KServe v2 / Open Inference Protocol REST: `GET /v2/health/live`, `GET /v2/health/ready`,
//!   `GET /v2/models/{name}` (metadata), `GET /v2/models/{name}/ready`,
//!   `POST /v2/models/{name}/infer`;
//! - TF-Serving REST: `GET /v1/models/{name}` (version status), `POST
//!   /v1/models/{name}:predict` (`instances`), `POST /v1/models/{name}:regress` (`context`
//!   once + `examples`, the ranking form);
//! - `GET /metrics` (Prometheus text).
//!
//! Rows go through the same decoder (joins, hashing, fitted transforms) and forward pass as
//! `mfh predict`; see [`protocol`] for the wire formats. Status codes: 400 malformed JSON or
//! a bad row (with the reason), 404 unknown model or route, 413 body over the limit, 503
//! when the admission queue is full, 504 past the request timeout.
//!
//! Not here: training, the model folder format (`mfh-train`).

pub mod batcher;
pub mod bound;
pub mod conn;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod lanes;
pub mod metrics;
pub mod model;
pub mod protocol;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use lanes::Lanes;
use metrics::Metrics;
pub use model::{ModelStore, Scores, ServedModel};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// The binary tensor extension's header: bytes of JSON before the binary data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub model_dir: PathBuf,
    pub addr: SocketAddr,
    /// KServe v2 gRPC (`--grpc-addr`; needs the `grpc` feature).
    pub grpc_addr: Option<SocketAddr>,
    /// Served name (default: the model's config section, e.g. `mfh`).
    pub name: Option<String>,
    /// Requests scored at once, each by its own scorer (default: the cores the process
    /// may use, divided by `threads`).
    pub scorers: usize,
    /// Threads per scorer (default 1).
    pub threads: usize,
    /// Admitted requests waiting for a scorer beyond those; more get 503.
    pub queue: usize,
    /// Most rows per request; more get 413.
    pub max_rows: usize,
    /// Dynamic batching: requests arriving within this are scored together (0: off).
    pub batch_delay: Duration,
    /// Most rows scored together by dynamic batching.
    pub max_batch_rows: usize,
    /// Largest request body, bytes; more get 413.
    pub body_limit: usize,
    /// Open connections (REST and gRPC each); more are refused (503).
    pub max_connections: usize,
    /// A request head must arrive within this; then the connection is closed.
    pub header_timeout: Duration,
    /// A request body must arrive within this; past it 408.
    pub body_timeout: Duration,
    /// From arrival to response, queueing included; past it 504.
    pub timeout: Duration,
    /// How often to look for a newer published version (version roots only).
    pub poll: Duration,
    /// One `level=debug` line per request on stderr.
    pub debug_log: bool,
}

impl ServeOptions {
    pub fn new(model_dir: PathBuf) -> ServeOptions {
        ServeOptions {
            model_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_addr: None,
            name: None,
            scorers: 0,
            threads: 1,
            queue: 64,
            max_rows: 10_000,
            batch_delay: Duration::ZERO,
            max_batch_rows: 1024,
            body_limit: 16 << 20,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(2),
            debug_log: false,
        }
    }

    /// Scorers × threads: `scorers` when set, else the cores the process may use
    /// divided by `threads` (at least one).
    pub fn lanes(&self) -> (usize, usize) {
        let threads = self.threads.max(1);
        let scorers = if self.scorers > 0 {
            self.scorers
        } else {
            (mfh_cpu::available_threads() / threads).max(1)
        };
        (scorers, threads)
    }
}

pub(crate) struct App {
    pub(crate) store: Arc<ModelStore>,
    pub(crate) name: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lanes: Arc<Lanes>,
    /// Dynamic batching, when `--batch-delay-us` > 0.
    pub(crate) batcher: Option<Arc<batcher::Batcher>>,
    /// Bodies held in memory at once: one per scorer being fed and one waiting.
    pub(crate) bodies: Arc<Semaphore>,
    pub(crate) capacity: u64,
    pub(crate) max_rows: usize,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) timeout: Duration,
    debug_log: bool,
}

/// Set once a handler has read the request's body.
#[derive(Clone, Default)]
struct BodyRead(Arc<AtomicBool>);

/// Rows a response scored, for the batch-size histogram and the log line.
#[derive(Clone, Copy)]
struct RowsScored(usize, u64);

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    json_response(code, &json!({ "error": msg.into() }))
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    bytes_response(code, v.to_string().into_bytes())
}

fn bytes_response(code: StatusCode, body: Vec<u8>) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// The gRPC port, when one was asked for.
    pub grpc_addr: Option<SocketAddr>,
    pub store: Arc<ModelStore>,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_poll: Arc<AtomicBool>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.stop_poll.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap_or(Ok(()))?;
        }
        Ok(())
    }
}

/// Buffers of 1 MiB and more (bodies, decoded requests, responses) are mapped on their
/// own and returned to the system when freed. glibc's default raises that threshold to
/// the largest buffer freed so far (up to 32 MiB), after which request-sized buffers come
/// from per-thread heaps that keep their peak: the memory bound would not hold.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; any value is valid to pass.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Loads the model, binds `opts.addr` (port 0 picks one) and serves on the current runtime.
pub async fn start(opts: ServeOptions) -> anyhow::Result<Server> {
    #[cfg(not(feature = "grpc"))]
    if opts.grpc_addr.is_some() {
        anyhow::bail!("--grpc-addr: this build has no gRPC (build with `--features grpc`)");
    }
    if opts.body_limit > 1 << 30 {
        anyhow::bail!(
            "--body-limit {} is over 1 GiB (a request's values are addressed with 32 bits)",
            opts.body_limit
        );
    }
    fixed_mmap_threshold();
    let (scorers, threads) = opts.lanes();
    // Products inside a scorer split `threads` ways on its own pool.
    mfh_nn::set_threads(threads);
    let dir = opts.model_dir.clone();
    let store =
        Arc::new(tokio::task::spawn_blocking(move || ModelStore::open_with(&dir, scorers)).await??);
    let first = store.current();
    let metrics = Arc::new(Metrics::default());
    metrics.version.store(first.version, Ordering::Relaxed);
    let lanes = Arc::new(Lanes::new(scorers, threads)?);
    let body_slots = 2 * scorers;
    let limits = Arc::new(bound::Limits {
        scorers,
        body_slots,
        admitted: scorers + opts.queue,
        body_limit: opts.body_limit,
        max_rows: opts.max_rows,
        max_connections: opts.max_connections * if opts.grpc_addr.is_some() { 2 } else { 1 },
        batching: opts.batch_delay > Duration::ZERO,
    });
    metrics
        .memory_bound
        .store(bound::total(&first, &limits), Ordering::Relaxed);
    let app = Arc::new(App {
        store: Arc::clone(&store),
        name: opts
            .name
            .clone()
            .unwrap_or_else(|| first.model_name.clone()),
        metrics: Arc::clone(&metrics),
        batcher: match opts.batch_delay > Duration::ZERO {
            true => Some(Arc::new(batcher::Batcher::new(
                opts.batch_delay,
                opts.max_batch_rows,
                Arc::clone(&lanes),
                Arc::clone(&metrics),
            )?)),
            false => None,
        },
        lanes,
        bodies: Arc::new(Semaphore::new(body_slots)),
        capacity: (scorers + opts.queue) as u64,
        max_rows: opts.max_rows,
        body_limit: opts.body_limit,
        body_timeout: opts.body_timeout,
        timeout: opts.timeout,
        debug_log: opts.debug_log,
    });
    let (stop, stop_rx) = watch::channel(false);
    let conn_limits = |max: usize| {
        Arc::new(conn::Limits {
            conns: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            header_timeout: opts.header_timeout,
        })
    };
    let listener = tokio::net::TcpListener::bind(opts.addr).await?;
    let addr = listener.local_addr()?;
    #[allow(unused_mut)] // the gRPC port adds its task
    let mut tasks = vec![tokio::spawn(conn::serve(
        listener,
        router(Arc::clone(&app)),
        conn::Proto::Http1,
        conn_limits(opts.max_connections),
        Arc::clone(&metrics),
        stop_rx.clone(),
    ))];
    #[allow(unused_mut)]
    let mut grpc_addr = None;
    #[cfg(feature = "grpc")]
    if let Some(ga) = opts.grpc_addr {
        let l = tokio::net::TcpListener::bind(ga).await?;
        grpc_addr = Some(l.local_addr()?);
        tasks.push(tokio::spawn(conn::serve(
            l,
            grpc::router(Arc::clone(&app)),
            conn::Proto::Http2,
            conn_limits(opts.max_connections),
            Arc::clone(&metrics),
            stop_rx,
        )));
    }
    let stop_poll = Arc::new(AtomicBool::new(false));
    if matches!(store.source, model::ModelSource::Versions(_)) {
        tokio::spawn(poll_versions(
            Arc::clone(&store),
            Arc::clone(&metrics),
            limits,
            opts.poll,
            Arc::clone(&stop_poll),
        ));
    }
    Ok(Server {
        addr,
        grpc_addr,
        store,
        metrics,
        stop,
        tasks,
        stop_poll,
    })
}

async fn poll_versions(
    store: Arc<ModelStore>,
    metrics: Arc<Metrics>,
    limits: Arc<bound::Limits>,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let s = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || s.reload()).await {
            Ok(Ok(Some(v))) => {
                metrics.version.store(v, Ordering::Relaxed);
                metrics
                    .memory_bound
                    .store(bound::total(&store.current(), &limits), Ordering::Relaxed);
                metrics.reloads.fetch_add(1, Ordering::Relaxed);
                eprintln!("level=info msg=\"serving a new version\" version={v}");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("level=error msg=\"reload failed\" error=\"{e:#}\"");
            }
            Err(_) => {}
        }
    }
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
pub fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = start(opts).await?;
        let m = server.store.current();
        eprintln!(
            "serving `{}` version {} from {} on http://{}{} ({} scorers x {} threads; memory bound {} MiB)",
            m.model_name,
            m.version,
            m.dir.display(),
            server.addr,
            server
                .grpc_addr
                .map(|a| format!(" and grpc://{a}"))
                .unwrap_or_default(),
            m.lanes(),
            mfh_nn::kernels::threads(),
            server.metrics.memory_bound.load(Ordering::Relaxed) >> 20,
        );
        shutdown_signal().await;
        eprintln!("shutting down: finishing in-flight requests");
        server.shutdown().await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("cannot install a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/v2/health/live",
            get(|| async { json_response(StatusCode::OK, &json!({"live": true})) }),
        )
        .route(
            "/v2/health/ready",
            get(|| async { json_response(StatusCode::OK, &json!({"ready": true})) }),
        )
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(kserve_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(kserve_metadata_v),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{name}/infer", post(kserve_infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(kserve_infer_v),
        )
        .route("/v1/models/{spec}", get(tf_status).post(tf_post))
        .route("/metrics", get(prometheus))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(Arc::clone(&app), track))
        .with_state(app)
}

/// Timeout, metrics and the per-request log line, around every route.
async fn track(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    // A request answered without its body being read (unknown model, admission, a
    // Content-Length over the limit) is answered `Connection: close`: the connection
    // cannot carry another request, and the client learns it from the answer.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || header_usize(req.headers(), header::CONTENT_LENGTH.as_str())
            .ok()
            .flatten()
            .is_some_and(|n| n > 0);
    let read = BodyRead::default();
    req.extensions_mut().insert(read.clone());
    let resp = next.run(req).await;
    let mut resp = resp;
    if has_body && !read.0.load(Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let secs = t0.elapsed().as_secs_f64();
    let code = resp.status().as_u16();
    app.metrics.request(code, secs);
    let scored = resp.extensions().get::<RowsScored>().copied();
    if let Some(RowsScored(n, _)) = scored {
        app.metrics.rows(n);
    }
    if app.debug_log {
        let (rows, version) = scored.map_or((0, 0), |RowsScored(n, v)| (n, v));
        eprintln!(
            "level=debug msg=request method={method} path={path} status={code} rows={rows} version={version} ms={:.3}",
            secs * 1e3
        );
    }
    resp
}

async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"name": "mfh", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
    )
}

/// The served model for `name` (and `version`, when the URL names one), or the 404.
pub(crate) fn served(
    app: &App,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<ServedModel>, String> {
    if name != app.name {
        return Err(format!(
            "unknown model `{name}` (this server serves `{}`)",
            app.name
        ));
    }
    let m = app.store.current();
    match version {
        Some(v) if !v.is_empty() && v != m.version.to_string() => Err(format!(
            "model `{name}` version {v} is not served (version {} is)",
            m.version
        )),
        _ => Ok(m),
    }
}

async fn kserve_metadata(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    metadata(&app, &name, None)
}

async fn kserve_metadata_v(
    State(app): State<Arc<App>>,
    UrlPath((name, v)): UrlPath<(String, String)>,
) -> Response {
    metadata(&app, &name, Some(&v))
}

fn metadata(app: &App, name: &str, v: Option<&str>) -> Response {
    match served(app, name, v) {
        Ok(m) => json_response(StatusCode::OK, &protocol::kserve_metadata(&app.name, &m)),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn model_ready(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    ready(&app, &name, None)
}

async fn model_ready_v(
    State(app): State<Arc<App>>,
    UrlPath((name, v)): UrlPath<(String, String)>,
) -> Response {
    ready(&app, &name, Some(&v))
}

fn ready(app: &App, name: &str, v: Option<&str>) -> Response {
    match served(app, name, v) {
        Ok(_) => json_response(StatusCode::OK, &json!({"name": name, "ready": true})),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn prometheus(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

async fn tf_status(State(app): State<Arc<App>>, UrlPath(spec): UrlPath<String>) -> Response {
    if spec != app.name {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown model `{spec}` (this server serves `{}`)", app.name),
        );
    }
    let v = app.store.current().version;
    json_response(
        StatusCode::OK,
        &json!({"model_version_status": [{"version": v.to_string(), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}),
    )
}

#[derive(Clone, Copy)]
pub(crate) enum Form {
    KServe,
    Predict,
    Regress,
}

async fn kserve_infer(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    req: Request,
) -> Response {
    score(app, &name, None, req, Form::KServe).await
}

async fn kserve_infer_v(
    State(app): State<Arc<App>>,
    UrlPath((name, v)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    score(app, &name, Some(&v), req, Form::KServe).await
}

async fn tf_post(
    State(app): State<Arc<App>>,
    UrlPath(spec): UrlPath<String>,
    req: Request,
) -> Response {
    let (name, form) = match spec.rsplit_once(':') {
        Some((n, "predict")) => (n, Form::Predict),
        Some((n, "regress")) => (n, Form::Regress),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no such route: POST /v1/models/{spec} (use NAME:predict or NAME:regress)"),
            )
        }
    };
    score(app, name, None, req, form).await
}

/// Decrements the in-flight count when a request ends, however it ends.
pub(crate) struct Admitted(Arc<Metrics>);
impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Admission, before any of the body is read: a request beyond the scorers and the
/// queue is refused.
pub(crate) fn admit(app: &App) -> Result<Admitted, String> {
    if app.metrics.in_flight.fetch_add(1, Ordering::Relaxed) >= app.capacity {
        app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        return Err(format!(
            "overloaded: {} requests are running or queued; retry later",
            app.capacity
        ));
    }
    Ok(Admitted(Arc::clone(&app.metrics)))
}

/// What a scoring job answers.
pub(crate) struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    /// Binary tensor data after the JSON (KServe binary outputs).
    binary: Vec<u8>,
    rows: usize,
}

impl Reply {
    fn err(status: u16, msg: String) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body: json!({ "error": msg }).to_string().into_bytes(),
            binary: Vec::new(),
            rows: 0,
        }
    }
}

/// Reads a body of at most `limit` bytes into one buffer, within `within`.
/// Why a body could not be read.
pub(crate) enum BodyError {
    /// The connection failed mid-body.
    Broken(String),
    /// More than the limit, bytes.
    TooLarge(usize),
    /// Not whole within the timeout.
    Late(Duration),
}

/// Reads a body of at most `limit` bytes into one buffer (`expect` bytes reserved),
/// within `within`. REST and gRPC both read theirs here.
pub(crate) async fn read_body(
    mut body: Body,
    limit: usize,
    expect: Option<usize>,
    within: Duration,
) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(expect.unwrap_or(0).min(limit));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(within, read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::Late(within)),
    }
}

fn header_usize(h: &HeaderMap, name: &str) -> Result<Option<usize>, String> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("header {name}: not a byte count")),
    }
}

/// A scoring request: admission, the body (into one of the body slots), then parsing,
/// decoding, scoring and the response on a scorer's lane.
async fn score(
    app: Arc<App>,
    name: &str,
    version: Option<&str>,
    req: Request,
    form: Form,
) -> Response {
    // The version is fixed here: a reload does not change what this request scores with.
    let model = match served(&app, name, version) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let admitted = match admit(&app) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    // --timeout-ms counts the waits and the scoring, not the body's transfer (that has
    // --body-timeout-ms).
    let mut deadline = tokio::time::Instant::now() + app.timeout;
    let late = || {
        error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {:?}", app.timeout),
        )
    };
    let (parts, body) = req.into_parts();
    let length = match header_usize(&parts.headers, header::CONTENT_LENGTH.as_str()) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(l) = length.filter(|&l| l > app.body_limit) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body has {l} bytes; this server takes at most {} (--body-limit)",
                app.body_limit
            ),
        );
    }
    let json_len = match header_usize(&parts.headers, HEADER_LENGTH) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if json_len.is_some() && !matches!(form, Form::KServe) {
        return error(
            StatusCode::BAD_REQUEST,
            "binary tensor data is only for KServe v2 infer",
        );
    }
    let slot =
        match tokio::time::timeout_at(deadline, Arc::clone(&app.bodies).acquire_owned()).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
            Err(_) => return late(),
        };
    let reading = tokio::time::Instant::now();
    let bytes = match read_body(body, app.body_limit, length, app.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::Broken(e)) => {
            return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
        }
        Err(BodyError::TooLarge(limit)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body exceeds {limit} bytes (--body-limit)"),
            )
        }
        Err(BodyError::Late(within)) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {within:?}"),
            )
        }
    };
    deadline += reading.elapsed();
    if let Some(r) = parts.extensions.get::<BodyRead>() {
        r.0.store(true, Ordering::Relaxed);
    }
    if let Some(j) = json_len.filter(|&j| j > bytes.len()) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{HEADER_LENGTH} is {j} but the body has {} bytes",
                bytes.len()
            ),
        );
    }
    let served_name = app.name.clone();
    let max_rows = app.max_rows;
    let m = Arc::clone(&model);
    let reply = if let Some(batcher) = &app.batcher {
        // Parsed here when small (on a lane when not), then scored with whatever else
        // arrives within the delay.
        let (tx, rx) = tokio::sync::oneshot::channel::<Reply>();
        let b = Arc::clone(batcher);
        let here = bytes.len() <= batcher::PARSE_HERE_BYTES;
        let job = move |_lane: usize| {
            let parsed = parse_request(&m, &bytes, json_len, max_rows, form);
            drop(bytes);
            let parsed = match parsed {
                Ok(p) => p,
                Err(r) => {
                    let _ = tx.send(r);
                    return;
                }
            };
            // A large request keeps its body slot until answered; a small one lets it go.
            let slot = (parsed.bytes() > batcher::HOLD_SLOT_BYTES).then_some(slot);
            let done: batcher::Done = Box::new(move |m, parsed, scores| {
                let _slot = slot;
                let _ = tx.send(respond(m, &served_name, parsed, scores, form));
            });
            b.submit(Arc::clone(&m), parsed, done);
        };
        let run = async {
            if here {
                job(0);
            } else {
                app.lanes.run(job).await?;
            }
            rx.await.ok()
        };
        match tokio::time::timeout_at(deadline, run).await {
            Ok(Some(r)) => r,
            Ok(None) => return error(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed"),
            Err(_) => return late(),
        }
    } else {
        let job = move |lane: usize| {
            let reply = score_job(&m, &served_name, lane, &bytes, json_len, max_rows, form);
            drop(bytes);
            drop(slot);
            reply
        };
        match tokio::time::timeout_at(deadline, app.lanes.run(job)).await {
            Ok(Some(r)) => r,
            Ok(None) => return error(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed"),
            Err(_) => return late(),
        }
    };
    let mut resp = if reply.binary.is_empty() {
        bytes_response(reply.status, reply.body)
    } else {
        let json_len = reply.body.len();
        let mut body = reply.body;
        body.extend_from_slice(&reply.binary);
        let mut r = (
            reply.status,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            body,
        )
            .into_response();
        r.headers_mut()
            .insert(HEADER_LENGTH, HeaderValue::from(json_len));
        r
    };
    if reply.status == StatusCode::OK {
        resp.extensions_mut()
            .insert(RowsScored(reply.rows, model.version));
    }
    // The request counts as admitted until its answer has been sent: answers waiting
    // for slow clients are bounded by the admitted requests.
    hold(resp, admitted)
}

/// A response body that keeps `guard` until the body has been sent (or dropped).
struct Hold<G> {
    inner: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> http_body::Body for Hold<G> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pub(crate) fn hold<G: Send + Unpin + 'static>(resp: Response, guard: G) -> Response {
    resp.map(|inner| {
        Body::new(Hold {
            inner,
            _guard: guard,
        })
    })
}

/// Parses, decodes and scores one REST request on scorer `lane`; writes the response.
fn parse_request(
    m: &ServedModel,
    body: &[u8],
    json_len: Option<usize>,
    max_rows: usize,
    form: Form,
) -> Result<protocol::Parsed, Reply> {
    let (json_part, binary) = match json_len {
        Some(j) => body.split_at(j),
        None => (body, &[][..]),
    };
    let parsed = match form {
        Form::KServe => protocol::parse_kserve(
            &m.decoder,
            json_part,
            binary,
            max_rows,
            m.behaviours.len() + 1,
        ),
        Form::Predict => protocol::parse_instances(&m.decoder, json_part, max_rows),
        Form::Regress => protocol::parse_regress(&m.decoder, json_part, max_rows),
    };
    parsed.map_err(|e| Reply::err(e.status(), e.to_string()))
}

/// The answer to a scored request.
fn respond(
    m: &ServedModel,
    name: &str,
    parsed: &protocol::Parsed,
    scores: Result<Scores, mfh_data::RequestError>,
    form: Form,
) -> Reply {
    let scores = match scores {
        Ok(s) => s,
        Err(e) => return Reply::err(400, e.to_string()),
    };
    let rows = scores.n;
    let (body, binary) = match form {
        Form::KServe => match protocol::kserve_outputs(m, &scores, &parsed.outputs) {
            Ok(outs) => protocol::kserve_response(name, m, &outs, parsed.id.as_deref()),
            Err(e) => return Reply::err(e.status(), e.to_string()),
        },
        Form::Predict => (protocol::predict_response(m, &scores), Vec::new()),
        Form::Regress => (protocol::regress_response(m, &scores), Vec::new()),
    };
    Reply {
        status: StatusCode::OK,
        body,
        binary,
        rows,
    }
}

/// Parses, decodes and scores one REST request on scorer `lane`; writes the response.
fn score_job(
    m: &ServedModel,
    name: &str,
    lane: usize,
    body: &[u8],
    json_len: Option<usize>,
    max_rows: usize,
    form: Form,
) -> Reply {
    let parsed = match parse_request(m, body, json_len, max_rows, form) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let views = parsed.views();
    let scores = m.score(lane, &views.context, &views.rows());
    drop(views);
    respond(m, name, &parsed, scores, form)
}
