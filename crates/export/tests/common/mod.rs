//! Runs exported ONNX bytes in tract, the second runtime the exports are checked with.

#![allow(dead_code)]

use tract_onnx::prelude::*;

/// An int64 input `[n]`.
pub fn ints(v: &[i64]) -> Tensor {
    tract_ndarray::Array1::from_vec(v.to_vec()).into_tensor()
}

/// An int64 input `[n, l]`.
pub fn ints2(v: &[i64], n: usize, l: usize) -> Tensor {
    tract_ndarray::Array2::from_shape_vec((n, l), v.to_vec())
        .unwrap()
        .into_tensor()
}

/// A float input `[n, w]`.
pub fn floats2(v: &[f32], n: usize, w: usize) -> Tensor {
    tract_ndarray::Array2::from_shape_vec((n, w), v.to_vec())
        .unwrap()
        .into_tensor()
}

/// Loads the model from its bytes, optimises it and runs it on `inputs` (graph order);
/// returns every output flattened.
pub fn run(bytes: &[u8], inputs: Vec<Tensor>) -> Vec<Vec<f32>> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads the exported file")
        .into_optimized()
        .expect("tract optimises the graph")
        .into_runnable()
        .expect("tract plans the graph");
    let out = model
        .run(inputs.into_iter().map(|t| t.into()).collect())
        .expect("tract runs the graph");
    out.iter()
        .map(|t| {
            let v = t.to_plain_array_view::<f32>().expect("float output");
            v.iter().copied().collect()
        })
        .collect()
}
