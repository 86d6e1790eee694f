//! Connections: the accept loop with the connection cap, header read timeouts and
//! graceful shutdown, for the REST port (HTTP/1.1) and the gRPC port (HTTP/2).
//!
//! A connection over `--max-connections` is answered at once — a 503 on the REST port,
//! closed on the gRPC port (clients see UNAVAILABLE) — and counted in
//! `mfh_connections_refused_total`. A client that has not sent a whole request head within
//! `--header-timeout` is disconnected. Each connection's read buffer is capped at
//! [`READ_BUF`] bytes.

use crate::metrics::Metrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Largest read buffer of one HTTP/1 connection, bytes (request heads must fit).
pub const READ_BUF: usize = 64 << 10;

/// Most bytes one connection buffers before a request is admitted: the HTTP/1 read
/// buffer, or the HTTP/2 connection's flow-control window.
pub const CONN_BUF: usize = 256 << 10;

/// Which protocol a listener speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    #[cfg(feature = "grpc")]
    Http2,
}

pub struct Limits {
    pub conns: Arc<Semaphore>,
    pub max: usize,
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` turns true, then lets open requests end.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    proto: Proto,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                eprintln!("level=warn msg=\"accept failed\" error=\"{e}\"");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&limits.conns).try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            if proto == Proto::Http1 {
                let max = limits.max;
                tokio::spawn(async move {
                    let body = format!(
                        "{{\"error\":\"too many connections: this server holds at most {max}; retry later\"}}"
                    );
                    let msg = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let mut s = stream;
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        let _ = s.write_all(msg.as_bytes()).await;
                        let _ = s.shutdown().await;
                    })
                    .await;
                });
            }
            continue;
        };
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        let svc = TowerToHyperService::new(router.clone());
        let io = TokioIo::new(stream);
        let m = Arc::clone(&metrics);
        let done = move || {
            m.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        };
        match proto {
            Proto::Http1 => {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .max_buf_size(READ_BUF)
                    .serve_connection(io, svc);
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = fut.await;
                    done();
                });
            }
            #[cfg(feature = "grpc")]
            Proto::Http2 => {
                let conn =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .initial_connection_window_size(CONN_BUF as u32)
                        .initial_stream_window_size(CONN_BUF as u32)
                        .max_concurrent_streams(64)
                        .keep_alive_interval(Some(Duration::from_secs(30)))
                        .keep_alive_timeout(Duration::from_secs(20))
                        .serve_connection(io, svc);
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = fut.await;
                    done();
                });
            }
        }
    }
    drop(listener);
    // Open requests end (the request timeout bounds them); idle keep-alive connections
    // are closed at once.
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    Ok(())
}
