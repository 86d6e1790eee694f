//! Timed training windows, shared by the synthetic and the routing benchmarks.

use mfh_artifact::ModelState;
use mfh_data::Batch;
use mfh_nn::Adam;
use std::time::Instant;

/// The dense optimiser every benchmark trains with (Adam, no weight decay; lr 1e-3 in
/// [`time_steps`]).
pub(crate) fn adam() -> Adam<f32> {
    Adam::new(0.9, 0.999, 1e-8, 0.0)
}

/// Times `steps` training steps over `batches` (cycled from step `*step` on), returning
/// samples/s; the dense Adam's share of the time is added to `adam_secs`.
pub(crate) fn time_steps(
    state: &mut ModelState,
    adam: &mut Adam<f32>,
    batches: &mut [Batch],
    step: &mut u64,
    steps: usize,
    adam_secs: &mut f64,
) -> f64 {
    let t = Instant::now();
    let mut rows = 0;
    for _ in 0..steps {
        let i = *step as usize % batches.len();
        state.net_mut().zero_grad();
        state.train_step(&mut batches[i], *step + 1);
        let a = Instant::now();
        adam.step(state.net_mut(), 1e-3);
        *adam_secs += a.elapsed().as_secs_f64();
        rows += batches[i].n;
        *step += 1;
    }
    rows as f64 / t.elapsed().as_secs_f64()
}

/// The median of the windows' figures (the upper one of an even count).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
