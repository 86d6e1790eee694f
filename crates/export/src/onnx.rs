//! ONNX encoding: a hand-written protobuf writer for the few messages an inference
//! graph needs (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto,
//! AttributeProto, OperatorSetIdProto). Field numbers are those of `onnx.proto`.
//!
//! Protobuf wire format: each field is a key `(number << 3) | wire type` (a varint)
//! then its value: wire type 0 a varint, 2 a length (varint) then that many bytes, 5
//! four little-endian bytes. Repeated scalars are written one key per element (the
//! unpacked form, which every proto2 and proto3 reader accepts); tensor values go in
//! `raw_data` as little-endian bytes.

use mfh_nn::graph::{Attr, Constant, GraphBuilder, Node, TensorData, OPSET};

/// ONNX IR version matching opset 13.
pub const IR_VERSION: i64 = 7;

/// TensorProto.DataType values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    Float = 1,
    Int64 = 7,
}

/// One graph input or output: name, element type and shape (`None`: a dynamic
/// dimension, named `n` first (the batch), then `l`, `l2`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem: ElemType,
    pub dims: Vec<Option<usize>>,
}

/// Protobuf message bytes under construction.
#[derive(Default)]
pub struct Message {
    buf: Vec<u8>,
}

const VARINT: u32 = 0;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn key(&mut self, field: u32, wire: u32) {
        put_varint(&mut self.buf, u64::from((field << 3) | wire));
    }

    /// An int32/int64/enum field (negative values as 10-byte two's complement).
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, VARINT);
        put_varint(&mut self.buf, v as u64);
        self
    }

    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, LEN);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    pub fn message(&mut self, field: u32, m: Message) -> &mut Self {
        self.bytes(field, &m.buf)
    }
}

// Field numbers of onnx.proto.
mod field {
    pub const MODEL_IR_VERSION: u32 = 1;
    pub const MODEL_PRODUCER_NAME: u32 = 2;
    pub const MODEL_PRODUCER_VERSION: u32 = 3;
    pub const MODEL_DOC_STRING: u32 = 6;
    pub const MODEL_GRAPH: u32 = 7;
    pub const MODEL_OPSET_IMPORT: u32 = 8;
    pub const MODEL_METADATA_PROPS: u32 = 14;
    pub const ENTRY_KEY: u32 = 1;
    pub const ENTRY_VALUE: u32 = 2;
    pub const OPSET_DOMAIN: u32 = 1;
    pub const OPSET_VERSION: u32 = 2;
    pub const GRAPH_NODE: u32 = 1;
    pub const GRAPH_NAME: u32 = 2;
    pub const GRAPH_INITIALIZER: u32 = 5;
    pub const GRAPH_INPUT: u32 = 11;
    pub const GRAPH_OUTPUT: u32 = 12;
    pub const NODE_INPUT: u32 = 1;
    pub const NODE_OUTPUT: u32 = 2;
    pub const NODE_NAME: u32 = 3;
    pub const NODE_OP_TYPE: u32 = 4;
    pub const NODE_ATTRIBUTE: u32 = 5;
    pub const ATTR_NAME: u32 = 1;
    pub const ATTR_F: u32 = 2;
    pub const ATTR_I: u32 = 3;
    pub const ATTR_INTS: u32 = 8;
    pub const ATTR_TYPE: u32 = 20;
    pub const TENSOR_DIMS: u32 = 1;
    pub const TENSOR_DATA_TYPE: u32 = 2;
    pub const TENSOR_NAME: u32 = 8;
    pub const TENSOR_RAW_DATA: u32 = 9;
    pub const VALUE_NAME: u32 = 1;
    pub const VALUE_TYPE: u32 = 2;
    pub const TYPE_TENSOR: u32 = 1;
    pub const TENSOR_TYPE_ELEM: u32 = 1;
    pub const TENSOR_TYPE_SHAPE: u32 = 2;
    pub const SHAPE_DIM: u32 = 1;
    pub const DIM_VALUE: u32 = 1;
    pub const DIM_PARAM: u32 = 2;
}

// AttributeProto.AttributeType values.
const ATTR_FLOAT: i64 = 1;
const ATTR_INT: i64 = 2;
const ATTR_INTS: i64 = 7;

fn attribute(name: &str, value: &Attr) -> Message {
    let mut m = Message::new();
    m.string(field::ATTR_NAME, name);
    match value {
        Attr::Float(f) => {
            m.float(field::ATTR_F, *f).int(field::ATTR_TYPE, ATTR_FLOAT);
        }
        Attr::Int(i) => {
            m.int(field::ATTR_I, *i).int(field::ATTR_TYPE, ATTR_INT);
        }
        Attr::Ints(v) => {
            for i in v {
                m.int(field::ATTR_INTS, *i);
            }
            m.int(field::ATTR_TYPE, ATTR_INTS);
        }
    }
    m
}

fn node(n: &Node) -> Message {
    let mut m = Message::new();
    for i in &n.inputs {
        m.string(field::NODE_INPUT, i);
    }
    for o in &n.outputs {
        m.string(field::NODE_OUTPUT, o);
    }
    m.string(field::NODE_NAME, &n.name);
    m.string(field::NODE_OP_TYPE, &n.op_type);
    for (k, v) in &n.attrs {
        m.message(field::NODE_ATTRIBUTE, attribute(k, v));
    }
    m
}

fn tensor(c: &Constant) -> Message {
    let mut m = Message::new();
    for &d in &c.dims {
        m.int(field::TENSOR_DIMS, d);
    }
    let (elem, raw): (ElemType, Vec<u8>) = match &c.data {
        TensorData::F32(v) => (
            ElemType::Float,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        TensorData::I64(v) => (
            ElemType::Int64,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
    };
    m.int(field::TENSOR_DATA_TYPE, elem as i64);
    m.string(field::TENSOR_NAME, &c.name);
    m.bytes(field::TENSOR_RAW_DATA, &raw);
    m
}

fn value_info(v: &ValueInfo) -> Message {
    let mut shape = Message::new();
    let mut dynamic = 0;
    for d in &v.dims {
        let mut dim = Message::new();
        match d {
            Some(size) => dim.int(field::DIM_VALUE, *size as i64),
            None => {
                let name = match dynamic {
                    0 => "n".to_string(),
                    1 => "l".to_string(),
                    k => format!("l{k}"),
                };
                dynamic += 1;
                dim.string(field::DIM_PARAM, &name)
            }
        };
        shape.message(field::SHAPE_DIM, dim);
    }
    let mut tensor_type = Message::new();
    tensor_type
        .int(field::TENSOR_TYPE_ELEM, v.elem as i64)
        .message(field::TENSOR_TYPE_SHAPE, shape);
    let mut ty = Message::new();
    ty.message(field::TYPE_TENSOR, tensor_type);
    let mut m = Message::new();
    m.string(field::VALUE_NAME, &v.name)
        .message(field::VALUE_TYPE, ty);
    m
}

/// The ONNX file's bytes: one graph of `g`'s nodes and constants with these inputs and
/// outputs, opset [`OPSET`] of the default domain.
pub fn encode_model(
    g: &GraphBuilder,
    graph_name: &str,
    doc: &str,
    inputs: &[ValueInfo],
    outputs: &[ValueInfo],
) -> Vec<u8> {
    let mut graph = Message::new();
    for n in g.nodes() {
        graph.message(field::GRAPH_NODE, node(n));
    }
    graph.string(field::GRAPH_NAME, graph_name);
    for c in g.constants() {
        graph.message(field::GRAPH_INITIALIZER, tensor(c));
    }
    for v in inputs {
        graph.message(field::GRAPH_INPUT, value_info(v));
    }
    for v in outputs {
        graph.message(field::GRAPH_OUTPUT, value_info(v));
    }
    let mut opset = Message::new();
    opset
        .string(field::OPSET_DOMAIN, "")
        .int(field::OPSET_VERSION, OPSET);
    let mut model = Message::new();
    model
        .int(field::MODEL_IR_VERSION, IR_VERSION)
        .string(field::MODEL_PRODUCER_NAME, "mfh")
        .string(field::MODEL_PRODUCER_VERSION, env!("CARGO_PKG_VERSION"))
        .string(field::MODEL_DOC_STRING, doc)
        .message(field::MODEL_GRAPH, graph)
        .message(field::MODEL_OPSET_IMPORT, opset);
    model.into_bytes()
}

/// One `metadata_props` entry of a ModelProto (`key` → `value`), as bytes to append to
/// [`encode_model`]'s: a reader merges the fields of concatenated message bytes, so the
/// model gains the entry (onnxruntime lists it in `custom_metadata_map`).
pub fn metadata_entry(key: &str, value: &str) -> Vec<u8> {
    let mut entry = Message::new();
    entry
        .string(field::ENTRY_KEY, key)
        .string(field::ENTRY_VALUE, value);
    let mut m = Message::new();
    m.message(field::MODEL_METADATA_PROPS, entry);
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_examples() {
        // From the protobuf encoding guide: 1 → 01, 150 → 96 01, 300 → ac 02.
        for (v, want) in [
            (1u64, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
            (0, vec![0x00]),
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b, want, "{v}");
        }
        // A negative int64 takes ten bytes.
        let mut m = Message::new();
        m.int(1, -1);
        let b = m.into_bytes();
        assert_eq!(b.len(), 11);
        assert_eq!(b[0], 0x08);
        assert_eq!(b[10], 0x01);
    }

    #[test]
    fn a_small_node_encodes_to_hand_derived_bytes() {
        // NodeProto { input: "x", output: "y", name: "n", op_type: "Relu" }.
        let n = Node {
            name: "n".into(),
            op_type: "Relu".into(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attrs: vec![],
        };
        let want: Vec<u8> = [
            &[0x0a, 0x01, b'x'][..],               // field 1, LEN, "x"
            &[0x12, 0x01, b'y'][..],               // field 2, LEN, "y"
            &[0x1a, 0x01, b'n'][..],               // field 3, LEN, "n"
            &[0x22, 0x04, b'R', b'e', b'l', b'u'], // field 4, LEN, "Relu"
        ]
        .concat();
        assert_eq!(node(&n).into_bytes(), want);
    }

    #[test]
    fn attributes_and_tensors_encode_to_hand_derived_bytes() {
        // AttributeProto { name: "axis", i: 1, type: INT }.
        let a = attribute("axis", &Attr::Int(1)).into_bytes();
        let want: Vec<u8> = [
            &[0x0a, 0x04, b'a', b'x', b'i', b's'][..],
            &[0x18, 0x01],       // field 3 (i), varint 1
            &[0xa0, 0x01, 0x02], // field 20 (type) needs a two-byte key: 160 = a0 01
        ]
        .concat();
        assert_eq!(a, want);
        // AttributeProto { name: "a", f: 0.5, type: FLOAT }.
        let f = attribute("a", &Attr::Float(0.5)).into_bytes();
        assert_eq!(
            f,
            [0x0a, 0x01, b'a', 0x15, 0x00, 0x00, 0x00, 0x3f, 0xa0, 0x01, 0x01]
        );
        // TensorProto { dims: [2], data_type: INT64, name: "c", raw_data: 1i64, 2i64 }.
        let t = tensor(&Constant {
            name: "c".into(),
            dims: vec![2],
            data: TensorData::I64(vec![1, 2]),
        })
        .into_bytes();
        let mut want = vec![0x08, 0x02, 0x10, 0x07, 0x42, 0x01, b'c', 0x4a, 0x10];
        want.extend_from_slice(&1i64.to_le_bytes());
        want.extend_from_slice(&2i64.to_le_bytes());
        assert_eq!(t, want);
    }

    #[test]
    fn a_metadata_entry_encodes_to_hand_derived_bytes() {
        // ModelProto { metadata_props: [StringStringEntryProto { key: "k", value: "v" }] }:
        // field 14, LEN (key 14 << 3 | 2 = 0x72), then key (1) and value (2).
        assert_eq!(
            metadata_entry("k", "v"),
            [0x72, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']
        );
    }

    #[test]
    fn value_info_names_the_dynamic_dimension() {
        let v = value_info(&ValueInfo {
            name: "x".into(),
            elem: ElemType::Float,
            dims: vec![None, Some(3)],
        })
        .into_bytes();
        // name, then type { tensor_type { elem 1, shape { dim { param "n" } dim { value 3 } } } }
        let dim_n = [0x12, 0x01, b'n'];
        let dim_3 = [0x08, 0x03];
        let mut shape = vec![0x0a, dim_n.len() as u8];
        shape.extend_from_slice(&dim_n);
        shape.extend_from_slice(&[0x0a, dim_3.len() as u8]);
        shape.extend_from_slice(&dim_3);
        let mut tt = vec![0x08, 0x01, 0x12, shape.len() as u8];
        tt.extend_from_slice(&shape);
        let mut ty = vec![0x0a, tt.len() as u8];
        ty.extend_from_slice(&tt);
        let mut want = vec![0x0a, 0x01, b'x', 0x12, ty.len() as u8];
        want.extend_from_slice(&ty);
        assert_eq!(v, want);
    }
}
