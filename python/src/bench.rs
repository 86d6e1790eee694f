//! The yardstick `Model.predict` is measured against: the server's request path (rows
//! already split into `(input, bytes)` fields, as a parsed KServe or TF-Serving request
//! holds them) decoded and scored in process.

use anyhow::Result;
use mfh_data::{Batch, Input, RequestDecoder, RowTable};

/// Median seconds of decode + score of every row of `t` over `reps` runs.
pub fn request_path(
    dec: &RequestDecoder,
    mut score: impl FnMut(&mut Batch) -> Vec<f32>,
    t: &dyn RowTable,
    reps: usize,
) -> Result<f64> {
    let cols: Vec<Option<Input>> = t
        .columns()
        .iter()
        .map(|c| dec.input(c).filter(|i| dec.reads(*i)))
        .collect();
    // The request's rows, as the JSON parser leaves them.
    let mut rows: Vec<Vec<(Input, Vec<u8>)>> = Vec::with_capacity(t.rows() as usize);
    for i in 0..t.rows() {
        let cells = mfh_data::memory::read_cells(t, i, b"")
            .map_err(|(c, m)| anyhow::anyhow!("row {i}, column {c}: {m}"))?;
        rows.push(
            cols.iter()
                .zip(&cells)
                .filter_map(|(c, v)| c.map(|c| (c, v.clone())))
                .collect(),
        );
    }
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t0 = std::time::Instant::now();
        let mut batch = dec.batch();
        dec.decode::<Vec<u8>, _>(&[], &rows, &mut batch)
            .map_err(anyhow::Error::new)?;
        let scores = score(&mut batch);
        std::hint::black_box(&scores);
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
