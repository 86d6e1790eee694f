//! The wire formats: request JSON → named input values, scores → response JSON.
//!
//! - KServe v2 / Open Inference Protocol: `inputs` is a list of named columns
//!   (`{"name", "datatype", "shape", "data"}`, all of one length N); the response has one
//!   FP32 output per behaviour, plus `cell` (BYTES), the facet cell whose heads answered.
//! - TF-Serving `:predict`: `instances` is a list of objects, one per row; the response is
//!   `{"predictions": [{"click": p, …}, …]}`.
//! - TF-Serving `:regress`: `context` (one object, the user's side, sent once) and
//!   `examples` (one object per candidate); the response is `{"results": [[p_click, …],
//!   …]}` with one score per behaviour in the order of `behaviours`, also returned.
//!
//! A value is a JSON string or number (`null` = missing); an input the data does not have,
//! a boolean, an array or an object is a bad request.

use crate::model::{Scores, ServedModel};
use mfh_data::{Input, InputKind, RequestDecoder};
use serde_json::{json, Map, Value};

pub type Fields = Vec<(Input, Vec<u8>)>;

/// Rows to score: shared context fields and each row's own.
#[derive(Default)]
pub struct Parsed {
    pub context: Fields,
    pub rows: Vec<Fields>,
}

fn value_bytes(name: &str, v: &Value) -> Result<Option<Vec<u8>>, String> {
    match v {
        Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Value::Number(n) => Ok(Some(n.to_string().into_bytes())),
        Value::Null => Ok(None),
        Value::Bool(_) => Err(format!(
            "input `{name}`: a boolean is not a value here (send a string or a number)"
        )),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "input `{name}`: expected a string or a number, got {}",
            if v.is_array() {
                "an array"
            } else {
                "an object"
            }
        )),
    }
}

fn input(dec: &RequestDecoder, name: &str) -> Result<Input, String> {
    dec.input(name).ok_or_else(|| {
        let known: Vec<&str> = dec.inputs().iter().map(|i| i.name.as_str()).collect();
        format!(
            "unknown input `{name}` (the model reads: {})",
            known.join(", ")
        )
    })
}

fn object_fields(dec: &RequestDecoder, what: &str, v: &Value) -> Result<Fields, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "{what} must be a JSON object of input name → value"
        ));
    };
    let mut out = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        let i = input(dec, name)?;
        if let Some(b) = value_bytes(name, v).map_err(|e| format!("{what}: {e}"))? {
            out.push((i, b));
        }
    }
    Ok(out)
}

fn list<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>, String> {
    match body.get(key) {
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("`{key}` must be a JSON array")),
        None => Err(format!("the request has no `{key}`")),
    }
}

fn body_object(body: &Value) -> Result<&Map<String, Value>, String> {
    body.as_object()
        .ok_or_else(|| "the request body must be a JSON object".to_string())
}

/// TF-Serving `:predict` with `instances`.
pub fn parse_instances(dec: &RequestDecoder, body: &Value) -> Result<Parsed, String> {
    let b = body_object(body)?;
    let rows = list(b, "instances")?
        .iter()
        .enumerate()
        .map(|(i, v)| object_fields(dec, &format!("instances[{i}]"), v))
        .collect::<Result<_, _>>()?;
    Ok(Parsed {
        context: Vec::new(),
        rows,
    })
}

/// TF-Serving `:regress`: `context` once, then `examples`.
pub fn parse_regress(dec: &RequestDecoder, body: &Value) -> Result<Parsed, String> {
    let b = body_object(body)?;
    let context = match b.get("context") {
        Some(c) => object_fields(dec, "context", c)?,
        None => Vec::new(),
    };
    let rows = list(b, "examples")?
        .iter()
        .enumerate()
        .map(|(i, v)| object_fields(dec, &format!("examples[{i}]"), v))
        .collect::<Result<_, _>>()?;
    Ok(Parsed { context, rows })
}

/// KServe v2 `infer`: named columns of one length.
pub fn parse_kserve(dec: &RequestDecoder, body: &Value) -> Result<Parsed, String> {
    let b = body_object(body)?;
    let inputs = list(b, "inputs")?;
    let mut n: Option<usize> = None;
    let mut rows: Vec<Fields> = Vec::new();
    for (k, col) in inputs.iter().enumerate() {
        let Value::Object(col) = col else {
            return Err(format!(
                "inputs[{k}] must be an object with name, datatype, shape and data"
            ));
        };
        let name = col
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("inputs[{k}] has no string `name`"))?;
        let i = input(dec, name)?;
        let datatype = col
            .get("datatype")
            .and_then(Value::as_str)
            .unwrap_or("BYTES");
        let mut data = Vec::new();
        flatten(
            col.get("data")
                .ok_or_else(|| format!("input `{name}` has no `data`"))?,
            &mut data,
        );
        check_datatype(name, datatype, &data)?;
        match n {
            None => {
                n = Some(data.len());
                rows = vec![Vec::new(); data.len()];
            }
            Some(m) if m != data.len() => {
                return Err(format!(
                    "input `{name}` has {} values but the inputs before it have {m}",
                    data.len()
                ))
            }
            Some(_) => {}
        }
        for (row, v) in rows.iter_mut().zip(data) {
            if let Some(b) = value_bytes(name, v)? {
                row.push((i, b));
            }
        }
    }
    Ok(Parsed {
        context: Vec::new(),
        rows,
    })
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        x => out.push(x),
    }
}

/// The data's JSON types against the declared datatype. (A BYTES column may feed a
/// numeric input: its strings are parsed as a file's cells are.)
fn check_datatype(name: &str, datatype: &str, data: &[&Value]) -> Result<(), String> {
    let ok = |f: &dyn Fn(&Value) -> bool| data.iter().all(|v| v.is_null() || f(v));
    let fits = match datatype {
        "BYTES" => ok(&|v| v.is_string() || v.is_number()),
        "INT8" | "INT16" | "INT32" | "INT64" => ok(&|v| v.is_i64()),
        "UINT8" | "UINT16" | "UINT32" | "UINT64" => ok(&|v| v.is_u64()),
        "FP16" | "FP32" | "FP64" => ok(&|v| v.is_number()),
        other => {
            return Err(format!(
                "input `{name}`: datatype {other} is not supported (BYTES, INT*, UINT*, FP*)"
            ))
        }
    };
    if !fits {
        return Err(format!(
            "input `{name}`: its data does not match datatype {datatype}"
        ));
    }
    Ok(())
}

/// `{"predictions": [{behaviour: score, …}, …]}`.
pub fn predict_response(m: &ServedModel, s: &Scores) -> Value {
    let nb = m.behaviours.len();
    let preds: Vec<Value> = (0..s.n)
        .map(|r| {
            let mut o = Map::new();
            for (b, name) in m.behaviours.iter().enumerate() {
                o.insert(name.clone(), json!(s.preds[r * nb + b]));
            }
            Value::Object(o)
        })
        .collect();
    json!({ "predictions": preds })
}

/// `{"results": [[score per behaviour], …], "behaviours": […]}`.
pub fn regress_response(m: &ServedModel, s: &Scores) -> Value {
    let nb = m.behaviours.len();
    let results: Vec<&[f32]> = (0..s.n).map(|r| &s.preds[r * nb..(r + 1) * nb]).collect();
    json!({ "results": results, "behaviours": m.behaviours })
}

pub fn kserve_response(name: &str, m: &ServedModel, s: &Scores, id: Option<&Value>) -> Value {
    let nb = m.behaviours.len();
    let mut outputs: Vec<Value> = m
        .behaviours
        .iter()
        .enumerate()
        .map(|(b, bname)| {
            let data: Vec<f32> = (0..s.n).map(|r| s.preds[r * nb + b]).collect();
            json!({ "name": bname, "datatype": "FP32", "shape": [s.n], "data": data })
        })
        .collect();
    let cells: Vec<&str> = s
        .cells
        .iter()
        .map(|&c| m.cell_names[c as usize].as_str())
        .collect();
    outputs.push(json!({ "name": "cell", "datatype": "BYTES", "shape": [s.n], "data": cells }));
    let mut r = json!({
        "model_name": name,
        "model_version": m.version.to_string(),
        "outputs": outputs,
    });
    if let Some(id) = id {
        r["id"] = id.clone();
    }
    r
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
