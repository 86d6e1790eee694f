//! The stated bound on what requests and connections may hold in memory, beyond the
//! loaded model and its warmed scorers (docs/serving.md, "Memory"). Every term is a
//! buffer the server sizes from the limits: body bytes, the decoded fields of at most
//! `max_rows` rows (each naming an input at most once), the batch, the network input,
//! the logits and the response. Scorer activations are not here: they are those of
//! [`crate::model::CHUNK_ROWS`] rows at most and are allocated when a version loads
//! (each scorer scores a full chunk then), so they are part of the baseline.

use crate::conn::CONN_BUF;
use crate::model::ServedModel;
use mfh_data::Input;

/// The limits the bound is computed from.
pub struct Limits {
    pub scorers: usize,
    /// Bodies read at once (those of the requests on a lane and those waiting for one).
    pub body_slots: usize,
    /// Requests admitted at once (scorers + queue): each may hold its answer until a
    /// slow client has read it.
    pub admitted: usize,
    pub body_limit: usize,
    pub max_rows: usize,
    /// Connections on every port together.
    pub max_connections: usize,
    /// Dynamic batching is on: decoded requests wait in groups without a body slot.
    pub batching: bool,
}

/// Bytes one request may hold while a scorer works on it, body included.
pub fn request(m: &ServedModel, body: usize, rows: usize) -> u64 {
    let (b, r) = (body as u64, rows as u64);
    let c = m.decoder.n_columns() as u64;
    let layout = m.decoder.pipeline().layout();
    let (single, multi, dense) = (
        layout.single.len() as u64,
        layout.multi.len() as u64,
        layout.dense.len() as u64,
    );
    let nb = m.behaviours.len() as u64;
    let tasks = nb * m.cell_names.len() as u64;
    let field = std::mem::size_of::<(Input, (u32, u32))>() as u64;
    let view = std::mem::size_of::<(Input, &[u8])>() as u64;
    // The body itself, and over gRPC tonic's copy and the decoded message: at most C
    // inputs, raw contents and outputs and 64 parameters (a few hundred bytes each), and
    // R·C typed values (a bytes value's own 24 bytes; its data is within the body).
    let body = 3 * b + r * c * 32 + (c + 64) * 512;
    // Value bytes: strings as sent (at most the body); a number as text, ≤ 24 bytes
    // (also from 2-, 4- or 8-byte binary numbers).
    let arena = b + r * c * 24;
    // Decoded fields (and KServe's per-column spans before they become rows), the views
    // the decoder reads and one slice per row; twice, for vectors grown by doubling.
    let fields = 2 * (r * c * (field + view + 12) + r * 24);
    // The batch: IDs, a multi-valued feature's IDs (one per ≥ 2 bytes of text, 8 bytes
    // each), numeric features, cells and row bookkeeping.
    // Twice, for vectors grown by doubling.
    let multi_ids = if multi > 0 { 4 * arena } else { 0 };
    let batch = 2 * (r * (single * 8 + dense * 4 + 32) + multi * (r + 1) * 4 + multi_ids);
    // The network input and the logits.
    let net = r * m.input_width() as u64 * 4 + r * tasks * 4;
    // Scores, output columns and the response.
    let out = r * nb * 4 * 3 + response(m, rows);
    body + arena + fields + batch + net + out
}

/// Bytes of the largest answer to a request of `rows` rows (JSON text, or binary plus its
/// JSON, twice for the vector it grows in).
pub fn response(m: &ServedModel, rows: usize) -> u64 {
    let longest = |v: &[String]| v.iter().map(String::len).max().unwrap_or(0) as u64;
    let nb = m.behaviours.len() as u64;
    2 * (rows as u64 * (nb * (longest(&m.behaviours) + 24) + longest(&m.cell_names) + 24) + 4096)
}

/// The total: every scorer with a request of the limits, the other body slots holding a
/// whole body, every admitted request's answer waiting to be read, and every
/// connection's buffers.
pub fn total(m: &ServedModel, l: &Limits) -> u64 {
    l.scorers as u64 * request(m, l.body_limit, l.max_rows)
        + l.body_slots.saturating_sub(l.scorers) as u64 * l.body_limit as u64
        + l.admitted as u64 * response(m, l.max_rows)
        + if l.batching {
            l.admitted as u64 * crate::batcher::HOLD_SLOT_BYTES as u64
        } else {
            0
        }
        + l.max_connections as u64 * (CONN_BUF as u64 + (16 << 10))
}
