//! KServe v2 / Open Inference Protocol over gRPC (`--grpc-addr`, feature `grpc`): the
//! `inference.GRPCInferenceService` of the vendored `proto/grpc_predict_v2.proto`
//! (Apache-2.0, KServe), which Triton's clients speak.
//!
//! ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, with
//! the same inputs, outputs, limits and errors as REST: inputs as `raw_input_contents`
//! (Triton's clients always send these) or typed `contents`; every output comes back in
//! `raw_output_contents` (FP32 little-endian; BYTES length-prefixed), as Triton answers.
//! Status codes: INVALID_ARGUMENT for a bad request (REST 400), RESOURCE_EXHAUSTED for too
//! many rows or too large a message (413), NOT_FOUND (404), UNAVAILABLE when the queue is
//! full (503), DEADLINE_EXCEEDED past the request timeout (504), INTERNAL (500).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

use crate::protocol::{self, Columns, OutputSpec, WireError};
use crate::{admit, served, App};
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

/// ModelInfer is admitted (or refused UNAVAILABLE) and takes a body slot before tonic
/// reads its message; both are held until the answer.
async fn admission(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !req.uri().path().ends_with("/ModelInfer") {
        return next.run(req).await;
    }
    let refuse = |msg: String| {
        app.metrics.grpc("UNAVAILABLE", 0.0);
        Status::unavailable(msg)
            .into_http::<axum::body::Body>()
            .map(axum::body::Body::new)
    };
    let admitted = match admit(&app) {
        Ok(a) => a,
        Err(e) => return refuse(e),
    };
    let Ok(slot) = Arc::clone(&app.bodies).acquire_owned().await else {
        return refuse("shutting down".into());
    };
    let resp = next.run(req).await;
    drop(slot);
    drop(admitted);
    resp
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
fn columns(req: &ModelInferRequest, max_rows: usize) -> Result<Columns, WireError> {
    let mut cols = Columns::new(max_rows);
    let raw = &req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(WireError::Bad(format!(
            "raw_input_contents has {} entries for {} inputs (use it for every input or none)",
            raw.len(),
            req.inputs.len()
        )));
    }
    for (k, t) in req.inputs.iter().enumerate() {
        let c = cols.column(t.name.clone(), t.datatype.clone(), Some(t.shape.clone()));
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
                cols.push_f64(c, x as f64)?;
            }
            for &x in &v.fp64_contents {
                cols.push_f64(c, x)?;
            }
        } else {
            return Err(WireError::Bad(format!("input `{}` has no data", t.name)));
        }
        cols.set_has_data(c);
    }
    cols.id = (!req.id.is_empty()).then(|| req.id.clone());
    cols.outputs = OutputSpec {
        names: (!req.outputs.is_empty())
            .then(|| req.outputs.iter().map(|o| (o.name.clone(), None)).collect()),
        all_binary: true,
    };
    Ok(cols)
}

impl Grpc {
    fn model(&self, name: &str, version: &str) -> Result<Arc<crate::ServedModel>, Status> {
        served(&self.app, name, Some(version)).map_err(Status::not_found)
    }

    async fn infer(&self, req: ModelInferRequest) -> Result<ModelInferResponse, Status> {
        let m = self.model(&req.model_name, &req.model_version)?;
        let max_rows = self.app.max_rows;
        let name = self.app.name.clone();
        let mm = Arc::clone(&m);
        let job = move |lane: usize| -> Result<ModelInferResponse, Status> {
            let cols = columns(&req, max_rows).map_err(wire_status)?;
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
        let out = self.infer(r.into_inner()).await;
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
