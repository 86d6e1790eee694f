//! The wire formats: request bodies → named input values, scores → response bodies.
//!
//! - KServe v2 / Open Inference Protocol: `inputs` is a list of named columns
//!   (`{"name", "datatype", "shape", "data"}`, all of one length N); the response has one
//!   FP32 output per behaviour, plus `cell` (BYTES), the facet cell whose heads answered.
//!   Binary tensors (Triton's HTTP binary tensor extension): with an
//!   `Inference-Header-Content-Length: L` header, the first L bytes of the body are the
//!   JSON and the rest holds the data of every input whose `parameters.binary_data_size`
//!   is set, in input order (numbers little-endian, BYTES elements each a 4-byte
//!   little-endian length then the bytes). Outputs asked for with
//!   `parameters.binary_data: true` (or every output, with the request's
//!   `parameters.binary_data_output: true`) come back the same way.
//! - TF-Serving `:predict`: `instances` is a list of objects, one per row; the response is
//!   `{"predictions": [{"click": p, …}, …]}`.
//! - TF-Serving `:regress`: `context` (one object, the user's side, sent once) and
//!   `examples` (one object per candidate); the response is `{"results": [[p_click, …],
//!   …]}` with one score per behaviour in the order of `behaviours`, also returned.
//!
//! A value is a JSON string or number (`null` = missing); an input the data does not have,
//! an input given twice, a boolean, an array or an object is a bad request, and so is a
//! non-finite binary number. JSON is decoded by typed visitors straight into one byte
//! arena and a list of (input, span) fields — no JSON tree — and a request with more rows
//! than `max_rows` stops being stored at that row (the rest is only counted, for the 413).

use crate::model::{Request, Scores, ServedModel};
use mfh_data::{Input, InputKind, RequestDecoder};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};
use std::fmt;

/// Why a request cannot be scored: a 400 (bad request) or a 413 (too many rows).
#[derive(Debug, Clone, PartialEq)]
pub enum WireError {
    Bad(String),
    TooManyRows { rows: usize, max: usize },
}

impl WireError {
    pub fn status(&self) -> u16 {
        match self {
            WireError::Bad(_) => 400,
            WireError::TooManyRows { .. } => 413,
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Bad(m) => f.write_str(m),
            WireError::TooManyRows { rows, max } => write!(
                f,
                "the request has {rows} rows; this server scores at most {max} per request (--max-rows)"
            ),
        }
    }
}

fn bad(m: impl Into<String>) -> WireError {
    WireError::Bad(m.into())
}

/// A value's place in [`Parsed::arena`].
type Span = (u32, u32);
const NULL: Span = (u32::MAX, 0);

/// Rows to score: shared context fields and each row's own, their bytes in one arena.
#[derive(Default)]
pub struct Parsed {
    pub arena: Vec<u8>,
    pub context: Vec<(Input, Span)>,
    /// Every row's fields, row after row.
    pub fields: Vec<(Input, Span)>,
    /// End of each row's fields in `fields`.
    pub row_ends: Vec<u32>,
    /// KServe: the request's `id`, echoed.
    pub id: Option<String>,
    /// KServe: which outputs to return, and how.
    pub outputs: OutputSpec,
}

/// The outputs a KServe request asks for.
#[derive(Default, Clone, Debug)]
pub struct OutputSpec {
    /// None: every output.
    pub names: Option<Vec<(String, Option<bool>)>>,
    /// `parameters.binary_data_output`.
    pub all_binary: bool,
}

/// Borrowed views of a [`Parsed`], in the shape [`RequestDecoder::decode`] takes.
pub struct Views<'a> {
    pub context: Vec<(Input, &'a [u8])>,
    fields: Vec<(Input, &'a [u8])>,
    ends: &'a [u32],
}

impl Views<'_> {
    pub fn rows(&self) -> Vec<&[(Input, &[u8])]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&e| {
                let r = &self.fields[start..e as usize];
                start = e as usize;
                r
            })
            .collect()
    }
}

/// Runs `f` on parsed requests in the shape [`ServedModel::score_many`] takes: each
/// request's context fields and rows, borrowed from its body (built once for all of `f`).
pub fn with_requests<'p, T>(
    parsed: impl IntoIterator<Item = &'p Parsed>,
    f: impl FnOnce(&[Request<'_, &[u8], &[(Input, &[u8])]>]) -> T,
) -> T {
    let views: Vec<_> = parsed.into_iter().map(Parsed::views).collect();
    let rows: Vec<Vec<_>> = views.iter().map(Views::rows).collect();
    let requests: Vec<Request<_, _>> = views
        .iter()
        .zip(&rows)
        .map(|(v, r)| (&v.context[..], &r[..]))
        .collect();
    f(&requests)
}

impl Parsed {
    pub fn n_rows(&self) -> usize {
        self.row_ends.len()
    }

    pub fn views(&self) -> Views<'_> {
        let get = |&(i, (s, e)): &(Input, Span)| (i, &self.arena[s as usize..e as usize]);
        Views {
            context: self.context.iter().map(get).collect(),
            fields: self.fields.iter().map(get).collect(),
            ends: &self.row_ends,
        }
    }

    /// Bytes held, for the memory bound's bookkeeping and tests.
    pub fn bytes(&self) -> usize {
        self.arena.capacity()
            + (self.context.capacity() + self.fields.capacity())
                * std::mem::size_of::<(Input, Span)>()
            + self.row_ends.capacity() * 4
    }
}

/// Appends a number's text as a file's cell would hold it: an integral value as an
/// integer (`1e15` → `1000000000000000`), others in the shortest text that reads back as
/// the same value of its own type (an f32 `0.1` as `0.1`, not `0.10000000149011612`).
fn push_float<F: ryu::Float + Into<f64>>(arena: &mut Vec<u8>, v: F) {
    let d: f64 = v.into();
    if d.fract() == 0.0 && d.abs() < 9.2e18 {
        arena.extend_from_slice(itoa::Buffer::new().format(d as i64).as_bytes());
    } else {
        arena.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

/// `DeserializeSeed` for a seed that is its own visitor, deserialized with `$how`.
macro_rules! seed_is_visitor {
    ($ty:ty, $value:ty, $how:ident) => {
        impl<'de> DeserializeSeed<'de> for $ty {
            type Value = $value;
            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                d.$how(self)
            }
        }
    };
}

/// The state of a row-form request (`:predict`, `:regress`) being decoded.
struct Rows<'d> {
    dec: &'d RequestDecoder,
    max_rows: usize,
    out: Parsed,
    /// Rows seen, stored or not.
    seen: usize,
    key: String,
}

impl<'d> Rows<'d> {
    fn new(dec: &'d RequestDecoder, max_rows: usize) -> Self {
        Rows {
            dec,
            max_rows,
            out: Parsed::default(),
            seen: 0,
            key: String::new(),
        }
    }
}

/// One JSON object of input name → value: the context (`row` None) or a row.
struct ObjectSeed<'a, 'd> {
    rows: &'a mut Rows<'d>,
    row: Option<usize>,
    what: &'static str,
}

seed_is_visitor!(ObjectSeed<'_, '_>, (), deserialize_any);

impl<'de> Visitor<'de> for ObjectSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} as a JSON object of input name → value", self.what)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let rows = self.rows;
        let start = if self.row.is_some() {
            rows.out.fields.len()
        } else {
            rows.out.context.len()
        };
        let (what, row) = (self.what, self.row);
        let where_ = || match row {
            Some(r) => format!("{what}[{r}]"),
            None => what.to_string(),
        };
        while map.next_key_seed(KeySeed(&mut rows.key))?.is_some() {
            let Some(input) = rows.dec.input(&rows.key) else {
                return Err(de::Error::custom(format!(
                    "{}: {}",
                    where_(),
                    unknown_input(rows.dec, &rows.key)
                )));
            };
            let list = if self.row.is_some() {
                &mut rows.out.fields
            } else {
                &mut rows.out.context
            };
            if list[start..].iter().any(|(i, _)| *i == input) {
                return Err(de::Error::custom(format!(
                    "{}: input `{}` appears twice",
                    where_(),
                    rows.key
                )));
            }
            let span = map.next_value_seed(ValueSeed {
                arena: &mut rows.out.arena,
                name: &rows.key,
            })?;
            if span != NULL {
                list.push((input, span));
            }
        }
        Ok(())
    }
}

/// A map key, into a reused buffer.
struct KeySeed<'a>(&'a mut String);

seed_is_visitor!(KeySeed<'_>, (), deserialize_str);

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.clear();
        self.0.push_str(v);
        Ok(())
    }
}

/// One scalar value into the arena; NULL for `null`.
struct ValueSeed<'a> {
    arena: &'a mut Vec<u8>,
    name: &'a str,
}

impl ValueSeed<'_> {
    fn put(self, bytes: &[u8]) -> Span {
        let s = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        (s, self.arena.len() as u32)
    }
}

seed_is_visitor!(ValueSeed<'_>, Span, deserialize_any);

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Span;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "input `{}`: a string or a number", self.name)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
        Ok(self.put(v.as_bytes()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
        Ok(self.put(itoa::Buffer::new().format(v).as_bytes()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Span, E> {
        Ok(self.put(itoa::Buffer::new().format(v).as_bytes()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Span, E> {
        let s = self.arena.len() as u32;
        push_float(self.arena, v);
        Ok((s, self.arena.len() as u32))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Span, E> {
        Ok(NULL)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Span, E> {
        Err(E::custom(format!(
            "input `{}`: a boolean is not a value here (send a string or a number)",
            self.name
        )))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Span, A::Error> {
        Err(de::Error::custom(format!(
            "input `{}`: expected a string or a number, got an array",
            self.name
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Span, A::Error> {
        Err(de::Error::custom(format!(
            "input `{}`: expected a string or a number, got an object",
            self.name
        )))
    }
}

/// `examples` / `instances`: rows, stored up to `max_rows`, then only counted.
struct RowListSeed<'a, 'd> {
    rows: &'a mut Rows<'d>,
    what: &'static str,
}

seed_is_visitor!(RowListSeed<'_, '_>, (), deserialize_any);

impl<'de> Visitor<'de> for RowListSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "`{}` as a JSON array", self.what)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let rows = self.rows;
        loop {
            let r = rows.seen;
            if r >= rows.max_rows {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
            } else {
                let seed = ObjectSeed {
                    rows: &mut *rows,
                    row: Some(r),
                    what: self.what,
                };
                if seq.next_element_seed(seed)?.is_none() {
                    break;
                }
                rows.out.row_ends.push(rows.out.fields.len() as u32);
            }
            rows.seen += 1;
        }
        Ok(())
    }
}

/// The top-level object of `:predict` (`instances`) or `:regress` (`context`, `examples`).
struct RowRequest<'a, 'd> {
    rows: &'a mut Rows<'d>,
    list: &'static str,
    context: bool,
}

impl<'de> Visitor<'de> for RowRequest<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the request body as a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut key = String::new();
        let mut saw_list = false;
        while map.next_key_seed(KeySeed(&mut key))?.is_some() {
            if key == self.list {
                map.next_value_seed(RowListSeed {
                    rows: &mut *self.rows,
                    what: self.list,
                })?;
                saw_list = true;
            } else if self.context && key == "context" {
                map.next_value_seed(ObjectSeed {
                    rows: &mut *self.rows,
                    row: None,
                    what: "context",
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(saw_list)
    }
}

/// A body whose first token is not `{` cannot be a request.
fn object_body(body: &[u8]) -> Result<(), WireError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(bad("the request body is empty (expected a JSON object)")),
        Some(_) => Err(bad("the request body must be a JSON object")),
    }
}

fn json_error(e: serde_json::Error) -> WireError {
    if e.is_syntax() || e.is_eof() {
        bad(format!("malformed JSON: {e}"))
    } else {
        bad(e.to_string())
    }
}

fn parse_rows(
    dec: &RequestDecoder,
    body: &[u8],
    max_rows: usize,
    list: &'static str,
    context: bool,
) -> Result<Parsed, WireError> {
    object_body(body)?;
    let mut rows = Rows::new(dec, max_rows);
    // Values are at most as long as their JSON text: one allocation, no doubling.
    rows.out.arena.reserve_exact(body.len());
    let mut de = serde_json::Deserializer::from_slice(body);
    let visitor = RowRequest {
        rows: &mut rows,
        list,
        context,
    };
    let saw = de::Deserializer::deserialize_any(&mut de, visitor).map_err(json_error)?;
    de.end().map_err(json_error)?;
    if !saw {
        return Err(bad(format!("the request has no `{list}`")));
    }
    if rows.seen > max_rows {
        return Err(WireError::TooManyRows {
            rows: rows.seen,
            max: max_rows,
        });
    }
    Ok(rows.out)
}

/// TF-Serving `:predict` with `instances`.
pub fn parse_instances(
    dec: &RequestDecoder,
    body: &[u8],
    max_rows: usize,
) -> Result<Parsed, WireError> {
    parse_rows(dec, body, max_rows, "instances", false)
}

/// TF-Serving `:regress`: `context` once, then `examples`.
pub fn parse_regress(
    dec: &RequestDecoder,
    body: &[u8],
    max_rows: usize,
) -> Result<Parsed, WireError> {
    parse_rows(dec, body, max_rows, "examples", true)
}

// ---- KServe v2: named columns ------------------------------------------------------

/// The JSON types a column's values had, checked against its datatype.
#[derive(Default, Clone, Copy, Debug)]
struct Seen {
    text: bool,
    negative: bool,
    fraction: bool,
}

/// One KServe input column as received, over JSON, binary data or gRPC.
#[derive(Default, Debug)]
pub struct Column {
    pub name: String,
    pub datatype: String,
    pub shape: Option<Vec<i64>>,
    /// `parameters.binary_data_size`: the data follows the JSON.
    pub binary_size: Option<usize>,
    spans: Vec<Span>,
    /// Values seen, stored or not (beyond the row cap only counted).
    count: usize,
    seen: Seen,
    has_data: bool,
}

/// KServe columns being built, their values in one arena.
pub struct Columns {
    max_rows: usize,
    /// Most input columns (the columns a request may name).
    max_cols: usize,
    /// Most outputs asked for (every output once).
    max_outputs: usize,
    pub arena: Vec<u8>,
    pub cols: Vec<Column>,
    pub id: Option<String>,
    pub outputs: OutputSpec,
}

impl Columns {
    /// Columns of at most `max_rows` values each, for `dec`'s model.
    pub fn new(dec: &RequestDecoder, max_rows: usize, outputs: usize) -> Columns {
        Columns {
            max_rows,
            max_cols: dec.n_columns(),
            max_outputs: outputs,
            arena: Vec::new(),
            cols: Vec::new(),
            id: None,
            outputs: OutputSpec::default(),
        }
    }

    fn store(&self, col: &Column) -> bool {
        col.count < self.max_rows
    }

    /// Counts a value of column `c` and, below the row cap, stores the text `write`
    /// appends to the arena.
    fn put(&mut self, c: usize, write: impl FnOnce(&mut Vec<u8>)) {
        if self.store(&self.cols[c]) {
            let s = self.arena.len() as u32;
            write(&mut self.arena);
            let e = self.arena.len() as u32;
            self.cols[c].spans.push((s, e));
        }
        self.cols[c].count += 1;
    }

    pub fn push_text(&mut self, c: usize, v: &[u8]) {
        self.put(c, |a| a.extend_from_slice(v));
        self.cols[c].seen.text = true;
    }

    pub fn push_i64(&mut self, c: usize, v: i64) {
        self.put(c, |a| {
            a.extend_from_slice(itoa::Buffer::new().format(v).as_bytes())
        });
        self.cols[c].seen.negative |= v < 0;
    }

    pub fn push_u64(&mut self, c: usize, v: u64) {
        self.put(c, |a| {
            a.extend_from_slice(itoa::Buffer::new().format(v).as_bytes())
        });
    }

    /// A float (f64, or f32 from binary FP32 data, written in its own shortest form); a
    /// non-finite one is an error naming the input.
    pub fn push_float<F: ryu::Float + Into<f64>>(
        &mut self,
        c: usize,
        v: F,
    ) -> Result<(), WireError> {
        let d: f64 = v.into();
        if !d.is_finite() {
            return Err(bad(format!(
                "input `{}`: {d} is not a value (numbers must be finite)",
                self.cols[c].name
            )));
        }
        self.put(c, |a| push_float(a, v));
        let seen = &mut self.cols[c].seen;
        seen.fraction |= d.fract() != 0.0;
        seen.negative |= d < 0.0;
        Ok(())
    }

    pub fn push_null(&mut self, c: usize) {
        if self.store(&self.cols[c]) {
            self.cols[c].spans.push(NULL);
        }
        self.cols[c].count += 1;
    }

    /// Says column `c` has its data (from binary or typed contents).
    pub fn set_has_data(&mut self, c: usize) {
        self.cols[c].has_data = true;
    }

    /// Starts a column; returns its index. More columns than the model's data has is an
    /// error (an input named twice, or one the data does not have, is refused in
    /// [`Columns::finish`]; this keeps what is stored before that bounded).
    pub fn column(
        &mut self,
        name: String,
        datatype: String,
        shape: Option<Vec<i64>>,
    ) -> Result<usize, WireError> {
        if self.cols.len() >= self.max_cols {
            return Err(bad(format!(
                "more than {} inputs: the model's data has {} columns (an input may be sent once)",
                self.max_cols, self.max_cols
            )));
        }
        self.cols.push(Column {
            name,
            datatype,
            shape,
            ..Column::default()
        });
        Ok(self.cols.len() - 1)
    }

    /// Sets the outputs asked for; more than every output once is an error.
    pub fn set_outputs(&mut self, names: Vec<(String, Option<bool>)>) -> Result<(), WireError> {
        for (k, (n, _)) in names.iter().enumerate() {
            if names[..k].iter().any(|(m, _)| m == n) {
                return Err(bad(format!("output `{n}` is asked for twice")));
            }
        }
        if names.len() > self.max_outputs {
            return Err(bad(format!(
                "{} outputs asked for; the model has {}",
                names.len(),
                self.max_outputs
            )));
        }
        self.outputs.names = Some(names);
        Ok(())
    }

    /// Appends the values of column `c` from its binary form (Triton's binary tensors,
    /// gRPC `raw_input_contents`): little-endian numbers, BYTES as length-prefixed.
    pub fn push_raw(&mut self, c: usize, raw: &[u8]) -> Result<(), WireError> {
        let name = self.cols[c].name.clone();
        let dt = self.cols[c].datatype.clone();
        let size = match dt.as_str() {
            "BYTES" => 0,
            "INT8" | "UINT8" | "BOOL" => 1,
            "INT16" | "UINT16" | "FP16" | "BF16" => 2,
            "INT32" | "UINT32" | "FP32" => 4,
            "INT64" | "UINT64" | "FP64" => 8,
            other => return Err(unsupported(&name, other)),
        };
        if size == 0 {
            let mut rest = raw;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(bad(format!(
                        "input `{name}`: binary BYTES data ends inside an element's length"
                    )));
                }
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let Some(v) = rest.get(4..4 + len) else {
                    return Err(bad(format!(
                        "input `{name}`: a binary BYTES element of {len} bytes runs past the data"
                    )));
                };
                self.push_text(c, v);
                rest = &rest[4 + len..];
            }
            return Ok(());
        }
        if !raw.len().is_multiple_of(size) {
            return Err(bad(format!(
                "input `{name}`: {} bytes of binary {dt} data is not a whole number of {size}-byte values",
                raw.len()
            )));
        }
        for b in raw.chunks_exact(size) {
            match dt.as_str() {
                "INT8" => self.push_i64(c, b[0] as i8 as i64),
                "UINT8" => self.push_u64(c, b[0] as u64),
                "BOOL" => return Err(unsupported(&name, "BOOL")),
                "INT16" => self.push_i64(c, i16::from_le_bytes([b[0], b[1]]) as i64),
                "UINT16" => self.push_u64(c, u16::from_le_bytes([b[0], b[1]]) as u64),
                "FP16" => self.push_float(c, f16_to_f64(u16::from_le_bytes([b[0], b[1]])))?,
                "BF16" => self.push_float(
                    c,
                    f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
                )?,
                "INT32" => self.push_i64(c, i32::from_le_bytes(b.try_into().unwrap()) as i64),
                "UINT32" => self.push_u64(c, u32::from_le_bytes(b.try_into().unwrap()) as u64),
                "FP32" => self.push_float(c, f32::from_le_bytes(b.try_into().unwrap()))?,
                "INT64" => self.push_i64(c, i64::from_le_bytes(b.try_into().unwrap())),
                "UINT64" => self.push_u64(c, u64::from_le_bytes(b.try_into().unwrap())),
                _ => self.push_float(c, f64::from_le_bytes(b.try_into().unwrap()))?,
            }
        }
        Ok(())
    }

    /// Checks the columns (known inputs, datatypes, shapes, equal lengths, the row cap)
    /// and lays them out as rows.
    pub fn finish(self, dec: &RequestDecoder) -> Result<Parsed, WireError> {
        let mut n: Option<(usize, &str)> = None;
        let mut inputs: Vec<Input> = Vec::with_capacity(self.cols.len());
        for col in &self.cols {
            let name = col.name.as_str();
            let input = dec
                .input(name)
                .ok_or_else(|| bad(unknown_input(dec, name)))?;
            if let Some(k) = inputs.iter().position(|i| *i == input) {
                return Err(bad(format!(
                    "input `{name}` appears twice (as `{}` and `{name}`)",
                    self.cols[k].name
                )));
            }
            inputs.push(input);
            if !col.has_data {
                return Err(bad(format!("input `{name}` has no `data`")));
            }
            check_datatype(name, &col.datatype, col.seen)?;
            if let Some(shape) = &col.shape {
                let elems =
                    shape
                        .iter()
                        .try_fold(1i64, |a, &d| if d < 0 { None } else { a.checked_mul(d) });
                if elems != Some(col.count as i64) {
                    return Err(bad(format!(
                        "input `{name}`: shape {shape:?} does not hold its {} values",
                        col.count
                    )));
                }
            }
            match n {
                None => n = Some((col.count, name)),
                Some((m, first)) if m != col.count => {
                    return Err(bad(format!(
                        "input `{name}` has {} values but input `{first}` has {m}",
                        col.count
                    )))
                }
                Some(_) => {}
            }
        }
        let rows = n.map_or(0, |(m, _)| m);
        if rows > self.max_rows {
            return Err(WireError::TooManyRows {
                rows,
                max: self.max_rows,
            });
        }
        let mut out = Parsed {
            id: self.id,
            outputs: self.outputs,
            ..Parsed::default()
        };
        out.fields.reserve(rows * self.cols.len());
        out.row_ends.reserve(rows);
        for r in 0..rows {
            for (col, &input) in self.cols.iter().zip(&inputs) {
                let span = col.spans[r];
                if span != NULL {
                    out.fields.push((input, span));
                }
            }
            out.row_ends.push(out.fields.len() as u32);
        }
        out.arena = self.arena;
        Ok(out)
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

fn unsupported(name: &str, dt: &str) -> WireError {
    bad(format!(
        "input `{name}`: datatype {dt} is not supported (BYTES, INT*, UINT*, FP16, BF16, FP32, FP64)"
    ))
}

/// The values' JSON types against the declared datatype. (A BYTES column may feed a
/// numeric input: its strings are parsed as a file's cells are.)
fn check_datatype(name: &str, datatype: &str, seen: Seen) -> Result<(), WireError> {
    let fits = match datatype {
        "BYTES" => true,
        "INT8" | "INT16" | "INT32" | "INT64" => !seen.text && !seen.fraction,
        "UINT8" | "UINT16" | "UINT32" | "UINT64" => !seen.text && !seen.fraction && !seen.negative,
        "FP16" | "BF16" | "FP32" | "FP64" => !seen.text,
        other => return Err(unsupported(name, other)),
    };
    if !fits {
        return Err(bad(format!(
            "input `{name}`: its data does not match datatype {datatype}"
        )));
    }
    Ok(())
}

/// The values of `data`, nested arrays flattened, into column `c`.
struct DataSeed<'a> {
    cols: &'a mut Columns,
    c: usize,
}

seed_is_visitor!(DataSeed<'_>, (), deserialize_any);

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "input `{}`: data as an array of strings or numbers",
            self.cols.cols[self.c].name
        )
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(DataSeed {
                cols: &mut *self.cols,
                c: self.c,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.cols.push_text(self.c, v.as_bytes());
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.cols.push_i64(self.c, v);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.cols.push_u64(self.c, v);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.cols.push_float(self.c, v).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.cols.push_null(self.c);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(format!(
            "input `{}`: a boolean is not a value here (send a string or a number)",
            self.cols.cols[self.c].name
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(format!(
            "input `{}`: expected a string or a number, got an object",
            self.cols.cols[self.c].name
        )))
    }
}

/// `parameters` of an input or output: the binary extension's keys, others ignored.
#[derive(Default)]
struct Params {
    binary_data_size: Option<u64>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
}

impl<'de> serde::Deserialize<'de> for Params {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`parameters` as a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut p = Params::default();
                let mut key = String::new();
                while map.next_key_seed(KeySeed(&mut key))?.is_some() {
                    match key.as_str() {
                        "binary_data_size" => p.binary_data_size = Some(map.next_value()?),
                        "binary_data" => p.binary_data = Some(map.next_value()?),
                        "binary_data_output" => p.binary_data_output = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// One element of `inputs`.
struct InputSeed<'a>(&'a mut Columns);

seed_is_visitor!(InputSeed<'_>, (), deserialize_any);

impl<'de> Visitor<'de> for InputSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input as an object with name, datatype, shape and data")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let cols = self.0;
        let k = cols.cols.len();
        let c = cols
            .column(String::new(), "BYTES".into(), None)
            .map_err(de::Error::custom)?;
        let mut key = String::new();
        let mut named = false;
        while map.next_key_seed(KeySeed(&mut key))?.is_some() {
            match key.as_str() {
                "name" => {
                    cols.cols[c].name = map.next_value()?;
                    named = true;
                }
                "datatype" => cols.cols[c].datatype = map.next_value()?,
                "shape" => cols.cols[c].shape = Some(map.next_value()?),
                "data" => {
                    if cols.cols[c].name.is_empty() {
                        cols.cols[c].name = format!("inputs[{k}]");
                    }
                    map.next_value_seed(DataSeed {
                        cols: &mut *cols,
                        c,
                    })?;
                    cols.cols[c].has_data = true;
                }
                "parameters" => {
                    let p: Params = map.next_value()?;
                    if let Some(s) = p.binary_data_size {
                        cols.cols[c].binary_size = Some(s as usize);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !named {
            return Err(de::Error::custom(format!(
                "inputs[{k}] has no string `name`"
            )));
        }
        Ok(())
    }
}

struct InputsSeed<'a>(&'a mut Columns);

seed_is_visitor!(InputsSeed<'_>, (), deserialize_any);

impl<'de> Visitor<'de> for InputsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`inputs` as a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(InputSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One element of `outputs`: `{"name", "parameters": {"binary_data"}}`.
struct OutputReq(String, Option<bool>);

impl<'de> serde::Deserialize<'de> for OutputReq {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutputReq;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an output as an object with a name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OutputReq, A::Error> {
                let (mut name, mut binary) = (None, None);
                let mut key = String::new();
                while map.next_key_seed(KeySeed(&mut key))?.is_some() {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "parameters" => binary = map.next_value::<Params>()?.binary_data,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let name = name.ok_or_else(|| de::Error::custom("an output has no `name`"))?;
                Ok(OutputReq(name, binary))
            }
        }
        d.deserialize_map(V)
    }
}

/// `outputs`: at most `.0` of them are kept (one more, and the request is refused).
struct OutputsSeed(usize);

seed_is_visitor!(OutputsSeed, Vec<(String, Option<bool>)>, deserialize_seq);

impl<'de> Visitor<'de> for OutputsSeed {
    type Value = Vec<(String, Option<bool>)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`outputs` as a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(o) = seq.next_element::<OutputReq>()? {
            if out.len() > self.0 {
                return Err(de::Error::custom(format!(
                    "more than {} outputs asked for; the model has {}",
                    self.0, self.0
                )));
            }
            out.push((o.0, o.1));
        }
        Ok(out)
    }
}

struct KServeRequest<'a>(&'a mut Columns);

impl<'de> Visitor<'de> for KServeRequest<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the request body as a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut key = String::new();
        let mut saw = false;
        while map.next_key_seed(KeySeed(&mut key))?.is_some() {
            match key.as_str() {
                "inputs" => {
                    map.next_value_seed(InputsSeed(&mut *self.0))?;
                    saw = true;
                }
                "id" => self.0.id = Some(map.next_value()?),
                "outputs" => {
                    let o = map.next_value_seed(OutputsSeed(self.0.max_outputs))?;
                    self.0.set_outputs(o).map_err(de::Error::custom)?;
                }
                "parameters" => {
                    let p: Params = map.next_value()?;
                    self.0.outputs.all_binary = p.binary_data_output.unwrap_or(false);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(saw)
    }
}

/// KServe v2 `infer` over REST: the JSON, then (binary tensor extension) the binary data
/// of the inputs that declare `binary_data_size`, in input order.
pub fn parse_kserve(
    dec: &RequestDecoder,
    json: &[u8],
    binary: &[u8],
    max_rows: usize,
    outputs: usize,
) -> Result<Parsed, WireError> {
    object_body(json)?;
    let mut cols = Columns::new(dec, max_rows, outputs);
    cols.arena.reserve_exact(json.len() + binary.len());
    let mut de = serde_json::Deserializer::from_slice(json);
    let saw =
        de::Deserializer::deserialize_any(&mut de, KServeRequest(&mut cols)).map_err(json_error)?;
    de.end().map_err(json_error)?;
    if !saw {
        return Err(bad("the request has no `inputs`"));
    }
    let mut at = 0usize;
    for c in 0..cols.cols.len() {
        let Some(size) = cols.cols[c].binary_size else {
            continue;
        };
        if cols.cols[c].has_data {
            return Err(bad(format!(
                "input `{}` has both `data` and binary_data_size",
                cols.cols[c].name
            )));
        }
        let Some(raw) = at.checked_add(size).and_then(|e| binary.get(at..e)) else {
            return Err(bad(format!(
                "input `{}`: binary_data_size {size} runs past the {} bytes of binary data",
                cols.cols[c].name,
                binary.len()
            )));
        };
        cols.push_raw(c, raw)?;
        cols.cols[c].has_data = true;
        at += size;
    }
    if at != binary.len() {
        return Err(bad(format!(
            "{} bytes of binary data follow the JSON but the inputs declare {at}",
            binary.len()
        )));
    }
    cols.finish(dec)
}

fn unknown_input(dec: &RequestDecoder, name: &str) -> String {
    let known: Vec<&str> = dec.inputs().iter().map(|i| i.name.as_str()).collect();
    format!(
        "unknown input `{name}` (the model reads: {})",
        known.join(", ")
    )
}

/// A score as JSON (serde_json's form: shortest round-trip text, `null` when not finite).
fn push_score(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON needs.
    out.extend_from_slice(&serde_json::to_vec(s).unwrap_or_default());
}

/// `{"predictions": [{behaviour: score, …}, …]}`, written straight to bytes.
pub fn predict_response(m: &ServedModel, s: &Scores) -> Vec<u8> {
    let nb = m.behaviours.len();
    let keys: Vec<Vec<u8>> = m
        .behaviours
        .iter()
        .map(|b| {
            let mut k = Vec::new();
            push_json_str(&mut k, b);
            k.push(b':');
            k
        })
        .collect();
    let mut out = Vec::with_capacity(24 + s.n * nb * 24);
    out.extend_from_slice(b"{\"predictions\":[");
    for r in 0..s.n {
        if r > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (b, k) in keys.iter().enumerate() {
            if b > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k);
            push_score(&mut out, s.preds[r * nb + b]);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// `{"results": [[score per behaviour], …], "behaviours": […]}`, written straight to bytes.
pub fn regress_response(m: &ServedModel, s: &Scores) -> Vec<u8> {
    let nb = m.behaviours.len();
    let mut out = Vec::with_capacity(48 + s.n * nb * 14);
    out.extend_from_slice(b"{\"results\":[");
    for r in 0..s.n {
        if r > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for b in 0..nb {
            if b > 0 {
                out.push(b',');
            }
            push_score(&mut out, s.preds[r * nb + b]);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"],\"behaviours\":");
    out.extend_from_slice(&serde_json::to_vec(&m.behaviours).unwrap_or_default());
    out.push(b'}');
    out
}

/// One KServe output: FP32 scores of a behaviour, or the BYTES cell names.
pub enum Output<'a> {
    Scores { name: &'a str, data: Vec<f32> },
    Cells(Vec<&'a str>),
}

impl Output<'_> {
    pub fn name(&self) -> &str {
        match self {
            Output::Scores { name, .. } => name,
            Output::Cells(_) => "cell",
        }
    }
    pub fn datatype(&self) -> &'static str {
        match self {
            Output::Scores { .. } => "FP32",
            Output::Cells(_) => "BYTES",
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Output::Scores { data, .. } => data.len(),
            Output::Cells(c) => c.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The binary form: FP32 little-endian, or BYTES length-prefixed.
    pub fn raw(&self) -> Vec<u8> {
        match self {
            Output::Scores { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Output::Cells(c) => {
                let mut out = Vec::with_capacity(c.iter().map(|s| s.len() + 4).sum());
                for s in c {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                out
            }
        }
    }
}

/// The outputs a KServe request asked for (all, by default), each with whether it goes
/// back in binary form.
pub fn kserve_outputs<'m>(
    m: &'m ServedModel,
    s: &Scores,
    spec: &OutputSpec,
) -> Result<Vec<(Output<'m>, bool)>, WireError> {
    let nb = m.behaviours.len();
    let make = |name: &str| -> Option<Output<'m>> {
        if name == "cell" {
            return Some(Output::Cells(
                s.cells
                    .iter()
                    .map(|&c| m.cell_names[c as usize].as_str())
                    .collect(),
            ));
        }
        let b = m.behaviours.iter().position(|x| x == name)?;
        Some(Output::Scores {
            name: &m.behaviours[b],
            data: (0..s.n).map(|r| s.preds[r * nb + b]).collect(),
        })
    };
    match &spec.names {
        None => Ok(m
            .behaviours
            .iter()
            .map(String::as_str)
            .chain(["cell"])
            .filter_map(|n| make(n).map(|o| (o, spec.all_binary)))
            .collect()),
        Some(names) => names
            .iter()
            .map(|(n, binary)| {
                let o = make(n).ok_or_else(|| {
                    bad(format!(
                        "unknown output `{n}` (the model answers: {}, cell)",
                        m.behaviours.join(", ")
                    ))
                })?;
                Ok((o, binary.unwrap_or(spec.all_binary)))
            })
            .collect(),
    }
}

/// A KServe REST response: the JSON and, when any output is binary, the binary data to
/// append after it (sent with `Inference-Header-Content-Length`).
pub fn kserve_response(
    name: &str,
    m: &ServedModel,
    outputs: &[(Output, bool)],
    id: Option<&str>,
) -> (Vec<u8>, Vec<u8>) {
    let mut binary = Vec::new();
    let mut out =
        Vec::with_capacity(128 + outputs.iter().map(|(o, _)| o.len() * 14).sum::<usize>());
    out.extend_from_slice(b"{\"model_name\":");
    push_json_str(&mut out, name);
    out.extend_from_slice(b",\"model_version\":");
    push_json_str(&mut out, &m.version.to_string());
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        push_json_str(&mut out, id);
    }
    out.extend_from_slice(b",\"outputs\":[");
    for (k, (o, bin)) in outputs.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        push_json_str(&mut out, o.name());
        out.extend_from_slice(b",\"datatype\":\"");
        out.extend_from_slice(o.datatype().as_bytes());
        out.extend_from_slice(format!("\",\"shape\":[{}]", o.len()).as_bytes());
        if *bin {
            let raw = o.raw();
            out.extend_from_slice(
                format!(",\"parameters\":{{\"binary_data_size\":{}}}", raw.len()).as_bytes(),
            );
            binary.extend_from_slice(&raw);
        } else {
            out.extend_from_slice(b",\"data\":[");
            match o {
                Output::Scores { data, .. } => {
                    for (i, v) in data.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        push_score(&mut out, *v);
                    }
                }
                Output::Cells(c) => {
                    for (i, v) in c.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        push_json_str(&mut out, v);
                    }
                }
            }
            out.push(b']');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    (out, binary)
}

/// KServe v2 model metadata.
pub fn kserve_metadata(name: &str, m: &ServedModel) -> Value {
    let inputs: Vec<Value> = m
        .decoder
        .inputs()
        .iter()
        .map(|i| {
            json!({
                "name": i.name,
                "datatype": match i.kind { InputKind::Number => "FP64", InputKind::Text => "BYTES" },
                "shape": [-1],
                "optional": !i.required,
            })
        })
        .collect();
    let mut outputs: Vec<Value> = m
        .behaviours
        .iter()
        .map(|b| json!({ "name": b, "datatype": "FP32", "shape": [-1] }))
        .collect();
    outputs.push(json!({ "name": "cell", "datatype": "BYTES", "shape": [-1] }));
    json!({
        "name": name,
        "versions": [m.version.to_string()],
        "platform": format!("mfh/{}", m.model_name),
        "inputs": inputs,
        "outputs": outputs,
    })
}
