//! KServe v2 / Open Inference Protocol over gRPC (`--grpc-addr`, feature `grpc`): the
//! `inference.GRPCInferenceService` of the vendored `proto/grpc_predict_v2.proto`
//! (Apache-2.0, KServe), which Triton's clients speak.
//!
//! ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, with
//! the same inputs, outputs, limits and errors as REST: inputs as `raw_input_contents`
//! (Triton's clients always send these) or typed `contents`; every output comes back in
//! `raw_output_contents` (FP32 little-endian; BYTES length-prefixed), as Triton answers.
//! Status codes: INVALID_ARGUMENT for a bad request (REST 400), RESOURCE_EXHAUSTED for too
//! many rows or a message over `--body-limit` (413), NOT_FOUND (404), UNAVAILABLE when
//! the queue is full (503), DEADLINE_EXCEEDED past the body or request timeout (408, 504),
//! INTERNAL (500).
//!
//! ModelInfer's message is read, within `--body-timeout-ms`, into one of the body slots
//! REST uses, and its wire form is scanned before prost decodes it: at most as many inputs
//! and raw contents as the model's data has columns, every output once, 64 parameters,
//! and `--max-rows` × columns typed values in all. So what the decoded message holds is
//! bounded by the same limits as a REST request (`bound.rs`).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

use crate::protocol::{self, Columns, OutputSpec, WireError};
use crate::{admit, read_body, served, App, BodyError};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use inference::model_infer_response::InferOutputTensor;
use inference::model_metadata_response::TensorMetadata;
use inference::*;
use mfh_data::InputKind;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tonic::{Code, Status};

/// The gRPC port's routes: the generated service behind admission.
pub(crate) fn router(app: Arc<App>) -> Router {
    let svc = GrpcInferenceServiceServer::new(Grpc {
        app: Arc::clone(&app),
    })
    .max_decoding_message_size(app.body_limit)
    .max_encoding_message_size(usize::MAX);
    tonic::service::Routes::new(svc)
        .into_axum_router()
        .layer(middleware::from_fn_with_state(app, admission))
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::NotFound => "NOT_FOUND",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::Unavailable => "UNAVAILABLE",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::Internal => "INTERNAL",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        _ => "OTHER",
    }
}

/// Taken by ModelInfer's scoring job, so that the body slot stays held until the job
/// ends even when the caller stops waiting.
#[derive(Clone)]
struct Slot(Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

fn status_response(st: Status) -> Response {
    st.into_http::<axum::body::Body>()
}

/// ModelInfer is admitted (or refused UNAVAILABLE) and its message read into a body slot
/// and checked (see the module's notes) before tonic decodes it; the answer keeps the
/// admission until it is sent.
async fn admission(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !req.uri().path().ends_with("/ModelInfer") {
        return next.run(req).await;
    }
    let refuse = |st: Status| {
        app.metrics.grpc(code_name(st.code()), 0.0);
        status_response(st)
    };
    let admitted = match admit(&app) {
        Ok(a) => a,
        Err(e) => return refuse(Status::unavailable(e)),
    };
    let deadline = tokio::time::Instant::now() + app.timeout;
    let slot =
        match tokio::time::timeout_at(deadline, Arc::clone(&app.bodies).acquire_owned()).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return refuse(Status::unavailable("shutting down")),
            Err(_) => return refuse(Status::deadline_exceeded("no body slot within the timeout")),
        };
    let (mut parts, body) = req.into_parts();
    // A gRPC frame is the message and a 5-byte prefix.
    let bytes = match read_body(body, app.body_limit + 5, None, app.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::Broken(e)) => {
            return refuse(Status::invalid_argument(format!("reading: {e}")))
        }
        Err(BodyError::TooLarge(_)) => {
            return refuse(Status::resource_exhausted(format!(
                "the message exceeds {} bytes (--body-limit)",
                app.body_limit
            )))
        }
        Err(BodyError::Late(within)) => {
            return refuse(Status::deadline_exceeded(format!(
                "the message did not arrive within {within:?}"
            )))
        }
    };
    let m = app.store.current();
    let limits = WireLimits {
        inputs: m.decoder.n_columns(),
        outputs: m.behaviours.len() + 1,
        values: app.max_rows.saturating_mul(m.decoder.n_columns()),
    };
    if let Err(st) = check_frame(&bytes, &limits) {
        return refuse(st);
    }
    parts
        .extensions
        .insert(Slot(Arc::new(std::sync::Mutex::new(Some(slot)))));
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    crate::hold(next.run(req).await, admitted)
}

/// What a ModelInfer message may hold.
struct WireLimits {
    inputs: usize,
    outputs: usize,
    values: usize,
}

/// One protobuf field: its number, wire type and (length-delimited) bytes; Err when the
/// message is malformed.
type Field<'a> = Result<(u64, u8, &'a [u8]), ()>;

/// A protobuf reader over one message's bytes.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    /// The next field: (number, wire type, the bytes of a length-delimited one).
    fn field(&mut self) -> Option<Field<'a>> {
        if self.0.is_empty() {
            return None;
        }
        let Some(key) = self.varint() else {
            return Some(Err(()));
        };
        let (num, wt) = (key >> 3, (key & 7) as u8);
        let ok = match wt {
            0 => self.varint().map(|_| &[][..]),
            1 => self.take(8),
            2 => match self.varint() {
                Some(n) => self.take(n as usize),
                None => None,
            },
            5 => self.take(4),
            _ => None,
        };
        Some(ok.map(|b| (num, wt, b)).ok_or(()))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
}

/// Checks one gRPC frame holding a ModelInferRequest against `l` without decoding it.
fn check_frame(body: &[u8], l: &WireLimits) -> Result<(), Status> {
    let bad = || Status::invalid_argument("a malformed gRPC message");
    if body.len() < 5 {
        return Err(bad());
    }
    if body[0] != 0 {
        return Err(Status::unimplemented(
            "compressed messages are not accepted; send them uncompressed",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len != body.len() - 5 {
        return Err(bad());
    }
    let too_many = |what: &str, max: usize| {
        Status::invalid_argument(format!("more than {max} {what} in the request"))
    };
    let (mut inputs, mut outputs, mut raws, mut params, mut values) = (0, 0, 0, 0, 0usize);
    let mut w = Wire(&body[5..]);
    while let Some(f) = w.field() {
        let (num, wt, bytes) = f.map_err(|_| bad())?;
        match (num, wt) {
            (4, 2) => params += 1,
            (5, 2) => {
                inputs += 1;
                values += input_values(bytes, &mut params).ok_or_else(bad)?;
            }
            (6, 2) => outputs += 1,
            (7, 2) => raws += 1,
            _ => {}
        }
        if inputs > l.inputs || raws > l.inputs {
            return Err(too_many("inputs", l.inputs));
        }
        if outputs > l.outputs {
            return Err(too_many("outputs", l.outputs));
        }
        if params > 64 {
            return Err(too_many("parameters", 64));
        }
        if values > l.values {
            return Err(Status::resource_exhausted(format!(
                "more than {} values (--max-rows × the model's columns)",
                l.values
            )));
        }
    }
    Ok(())
}

/// Typed values in one InferInputTensor's `contents` (its parameters are added to
/// `params`); None when it is malformed.
fn input_values(input: &[u8], params: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    let mut w = Wire(input);
    while let Some(f) = w.field() {
        let (num, _, bytes) = f.ok()?;
        match num {
            3 if bytes.len() > 64 * 10 => return None,
            4 => *params += 1,
            5 => {
                let mut c = Wire(bytes);
                while let Some(f) = c.field() {
                    let (num, wt, b) = f.ok()?;
                    n += match (num, wt) {
                        // Packed varints: one value per final byte.
                        (1..=5, 2) => b.iter().filter(|&&x| x < 0x80).count(),
                        (6, 2) => b.len() / 4,
                        (7, 2) => b.len() / 8,
                        _ => 1,
                    };
                }
            }
            _ => {}
        }
    }
    Some(n)
}

struct Grpc {
    app: Arc<App>,
}

fn wire_status(e: WireError) -> Status {
    match e {
        WireError::Bad(m) => Status::invalid_argument(m),
        e @ WireError::TooManyRows { .. } => Status::resource_exhausted(e.to_string()),
    }
}

/// A request's inputs as KServe columns: raw contents when sent, else typed contents.
fn columns(
    req: &ModelInferRequest,
    dec: &mfh_data::RequestDecoder,
    max_rows: usize,
    outputs: usize,
) -> Result<Columns, WireError> {
    let mut cols = Columns::new(dec, max_rows, outputs);
    let raw = &req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(WireError::Bad(format!(
            "raw_input_contents has {} entries for {} inputs (use it for every input or none)",
            raw.len(),
            req.inputs.len()
        )));
    }
    for (k, t) in req.inputs.iter().enumerate() {
        let c = cols.column(t.name.clone(), t.datatype.clone(), Some(t.shape.clone()))?;
        if let Some(r) = raw.get(k) {
            cols.push_raw(c, r)?;
        } else if let Some(v) = &t.contents {
            if !v.bool_contents.is_empty() {
                return Err(WireError::Bad(format!(
                    "input `{}`: a boolean is not a value here (send a string or a number)",
                    t.name
                )));
            }
            for b in &v.bytes_contents {
                cols.push_text(c, b);
            }
            for &x in &v.int_contents {
                cols.push_i64(c, x as i64);
            }
            for &x in &v.int64_contents {
                cols.push_i64(c, x);
            }
            for &x in &v.uint_contents {
                cols.push_u64(c, x as u64);
            }
            for &x in &v.uint64_contents {
                cols.push_u64(c, x);
            }
            for &x in &v.fp32_contents {
                cols.push_float(c, x)?;
            }
            for &x in &v.fp64_contents {
                cols.push_float(c, x)?;
            }
        } else {
            return Err(WireError::Bad(format!("input `{}` has no data", t.name)));
        }
        cols.set_has_data(c);
    }
    cols.id = (!req.id.is_empty()).then(|| req.id.clone());
    cols.outputs = OutputSpec {
        names: None,
        all_binary: true,
    };
    if !req.outputs.is_empty() {
        cols.set_outputs(req.outputs.iter().map(|o| (o.name.clone(), None)).collect())?;
    }
    Ok(cols)
}

impl Grpc {
    fn model(&self, name: &str, version: &str) -> Result<Arc<crate::ServedModel>, Status> {
        served(&self.app, name, Some(version)).map_err(Status::not_found)
    }

    async fn infer(
        &self,
        req: ModelInferRequest,
        slot: Option<Slot>,
    ) -> Result<ModelInferResponse, Status> {
        let m = self.model(&req.model_name, &req.model_version)?;
        let max_rows = self.app.max_rows;
        let name = self.app.name.clone();
        let mm = Arc::clone(&m);
        // The body slot moves into the job: it is held until the job ends.
        let slot = slot.and_then(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).take());
        let job = move |lane: usize| -> Result<ModelInferResponse, Status> {
            let _slot = slot;
            let outputs = mm.behaviours.len() + 1;
            let cols = columns(&req, &mm.decoder, max_rows, outputs).map_err(wire_status)?;
            drop(req);
            let parsed = cols.finish(&mm.decoder).map_err(wire_status)?;
            let views = parsed.views();
            let scores = mm
                .score(lane, &views.context, &views.rows())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            drop(views);
            let outs =
                protocol::kserve_outputs(&mm, &scores, &parsed.outputs).map_err(wire_status)?;
            Ok(ModelInferResponse {
                model_name: name,
                model_version: mm.version.to_string(),
                id: parsed.id.clone().unwrap_or_default(),
                parameters: Default::default(),
                outputs: outs
                    .iter()
                    .map(|(o, _)| InferOutputTensor {
                        name: o.name().to_string(),
                        datatype: o.datatype().to_string(),
                        shape: vec![o.len() as i64],
                        parameters: Default::default(),
                        contents: None,
                    })
                    .collect(),
                raw_output_contents: outs.iter().map(|(o, _)| o.raw()).collect(),
            })
        };
        let run = self.app.lanes.run(job);
        match tokio::time::timeout(self.app.timeout, run).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(Status::internal("scoring failed")),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {:?}",
                self.app.timeout
            ))),
        }
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(
        &self,
        _: tonic::Request<ServerLiveRequest>,
    ) -> Result<tonic::Response<ServerLiveResponse>, Status> {
        Ok(tonic::Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: tonic::Request<ServerReadyRequest>,
    ) -> Result<tonic::Response<ServerReadyResponse>, Status> {
        Ok(tonic::Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        r: tonic::Request<ModelReadyRequest>,
    ) -> Result<tonic::Response<ModelReadyResponse>, Status> {
        let r = r.into_inner();
        self.model(&r.name, &r.version)?;
        Ok(tonic::Response::new(ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<ServerMetadataRequest>,
    ) -> Result<tonic::Response<ServerMetadataResponse>, Status> {
        Ok(tonic::Response::new(ServerMetadataResponse {
            name: "mfh".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        r: tonic::Request<ModelMetadataRequest>,
    ) -> Result<tonic::Response<ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = self.model(&r.name, &r.version)?;
        let tensor = |name: &str, dt: &str| TensorMetadata {
            name: name.into(),
            datatype: dt.into(),
            shape: vec![-1],
        };
        Ok(tonic::Response::new(ModelMetadataResponse {
            name: self.app.name.clone(),
            versions: vec![m.version.to_string()],
            platform: format!("mfh/{}", m.model_name),
            inputs: m
                .decoder
                .inputs()
                .iter()
                .map(|i| {
                    tensor(
                        &i.name,
                        match i.kind {
                            InputKind::Number => "FP64",
                            InputKind::Text => "BYTES",
                        },
                    )
                })
                .collect(),
            outputs: m
                .behaviours
                .iter()
                .map(|b| tensor(b, "FP32"))
                .chain([tensor("cell", "BYTES")])
                .collect(),
            properties: Default::default(),
        }))
    }

    async fn model_infer(
        &self,
        r: tonic::Request<ModelInferRequest>,
    ) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let t0 = Instant::now();
        let slot = r.extensions().get::<Slot>().cloned();
        let out = self.infer(r.into_inner(), slot).await;
        let code = out.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
        self.app
            .metrics
            .grpc(code_name(code), t0.elapsed().as_secs_f64());
        if let Ok(resp) = &out {
            self.app.metrics.rows(
                resp.outputs
                    .first()
                    .map_or(0, |o| o.shape.first().copied().unwrap_or(0).max(0) as usize),
            );
        }
        out.map(tonic::Response::new)
    }
}
