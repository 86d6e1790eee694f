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

pub mod metrics;
pub mod model;
pub mod protocol;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics::Metrics;
use model::{ModelStore, ServedModel};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub model_dir: PathBuf,
    pub addr: SocketAddr,
    /// Served name (default: the model's config section, e.g. `mfh`).
    pub name: Option<String>,
    /// Requests scored at once.
    pub concurrency: usize,
    /// Requests waiting for a scorer beyond those; more get 503.
    pub queue: usize,
    /// Largest request body, bytes; more get 413.
    pub body_limit: usize,
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
            name: None,
            concurrency: 2,
            queue: 64,
            body_limit: 16 << 20,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(2),
            debug_log: false,
        }
    }
}

struct App {
    store: Arc<ModelStore>,
    name: String,
    metrics: Arc<Metrics>,
    scorers: Arc<Semaphore>,
    capacity: u64,
    timeout: Duration,
    debug_log: bool,
}

/// Rows a response scored, for the batch-size histogram and the log line.
#[derive(Clone, Copy)]
struct RowsScored(usize, u64);

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    json_response(code, &json!({ "error": msg.into() }))
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<ModelStore>,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_poll: Arc<AtomicBool>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.stop_poll.store(true, Ordering::Relaxed);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Loads the model, binds `opts.addr` (port 0 picks one) and serves on the current runtime.
pub async fn start(opts: ServeOptions) -> anyhow::Result<Server> {
    let dir = opts.model_dir.clone();
    let store = Arc::new(tokio::task::spawn_blocking(move || ModelStore::open(&dir)).await??);
    let first = store.current();
    let metrics = Arc::new(Metrics::default());
    metrics.version.store(first.version, Ordering::Relaxed);
    let app = Arc::new(App {
        store: Arc::clone(&store),
        name: opts
            .name
            .clone()
            .unwrap_or_else(|| first.model_name.clone()),
        metrics: Arc::clone(&metrics),
        scorers: Arc::new(Semaphore::new(opts.concurrency.max(1))),
        capacity: (opts.concurrency.max(1) + opts.queue) as u64,
        timeout: opts.timeout,
        debug_log: opts.debug_log,
    });
    let router = router(Arc::clone(&app), opts.body_limit);
    let listener = tokio::net::TcpListener::bind(opts.addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    let stop_poll = Arc::new(AtomicBool::new(false));
    if matches!(store.source, model::ModelSource::Versions(_)) {
        tokio::spawn(poll_versions(
            Arc::clone(&store),
            Arc::clone(&metrics),
            opts.poll,
            Arc::clone(&stop_poll),
        ));
    }
    Ok(Server {
        addr,
        store,
        metrics,
        shutdown: Some(tx),
        task,
        stop_poll,
    })
}

async fn poll_versions(
    store: Arc<ModelStore>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let s = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || s.reload()).await {
            Ok(Ok(Some(v))) => {
                metrics.version.store(v, Ordering::Relaxed);
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
            "serving `{}` version {} from {} on http://{}",
            m.model_name,
            m.version,
            m.dir.display(),
            server.addr
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

fn router(app: Arc<App>, body_limit: usize) -> Router {
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
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(kserve_infer))
        .route("/v1/models/{spec}", get(tf_status).post(tf_post))
        .route("/metrics", get(prometheus))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), track))
        .with_state(app)
}

/// Timeout, metrics and the per-request log line, around every route.
async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = match tokio::time::timeout(app.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {:?}", app.timeout),
        ),
    };
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
        &json!({"name": "mfh", "version": env!("CARGO_PKG_VERSION"), "extensions": []}),
    )
}

fn unknown_model(app: &App, name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("unknown model `{name}` (this server serves `{}`)", app.name),
    )
}

async fn kserve_metadata(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    if name != app.name {
        return unknown_model(&app, &name);
    }
    json_response(
        StatusCode::OK,
        &protocol::kserve_metadata(&app.name, &app.store.current()),
    )
}

async fn model_ready(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    if name != app.name {
        return unknown_model(&app, &name);
    }
    json_response(StatusCode::OK, &json!({"name": name, "ready": true}))
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
        return unknown_model(&app, &spec);
    }
    let v = app.store.current().version;
    json_response(
        StatusCode::OK,
        &json!({"model_version_status": [{"version": v.to_string(), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}),
    )
}

#[derive(Clone, Copy)]
enum Form {
    KServe,
    Predict,
    Regress,
}

async fn kserve_infer(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    score(app, &name, body, Form::KServe).await
}

async fn tf_post(
    State(app): State<Arc<App>>,
    UrlPath(spec): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
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
    score(app, name, body, form).await
}

/// Decrements the in-flight count when a request ends, however it ends.
struct Admitted(Arc<Metrics>);
impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn score(
    app: Arc<App>,
    name: &str,
    body: Result<Bytes, BytesRejection>,
    form: Form,
) -> Response {
    if name != app.name {
        return unknown_model(&app, name);
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    // The version is fixed here: a reload does not change what this request scores with.
    let model: Arc<ServedModel> = app.store.current();
    let parsed = match form {
        Form::KServe => protocol::parse_kserve(&model.decoder, &json),
        Form::Predict => protocol::parse_instances(&model.decoder, &json),
        Form::Regress => protocol::parse_regress(&model.decoder, &json),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if app.metrics.in_flight.fetch_add(1, Ordering::Relaxed) >= app.capacity {
        app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "overloaded: {} requests are running or queued; retry later",
                app.capacity
            ),
        );
    }
    let _admitted = Admitted(Arc::clone(&app.metrics));
    let Ok(permit) = Arc::clone(&app.scorers).acquire_owned().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let m = Arc::clone(&model);
    // The permit moves into the blocking task: a request that times out still holds its
    // scorer until the forward pass ends, so concurrency stays bounded.
    let scored = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        m.score(&parsed.context, &parsed.rows)
    })
    .await;
    let scores = match scored {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("scoring failed: {e}"),
            )
        }
    };
    let v = match form {
        Form::KServe => protocol::kserve_response(&app.name, &model, &scores, json.get("id")),
        Form::Predict => protocol::predict_response(&model, &scores),
        Form::Regress => protocol::regress_response(&model, &scores),
    };
    let mut resp = json_response(StatusCode::OK, &v);
    resp.extensions_mut()
        .insert(RowsScored(scores.n, model.version));
    resp
}
