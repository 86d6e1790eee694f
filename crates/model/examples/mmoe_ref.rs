//! Throughput of one training step (forward, backward, Adam) of the reference MMoE shape
//! in f32: batch 1024, 429 inputs, 8 experts 429→256→128, 4 tasks, towers 128→64→1.
//! Prints the median samples/s over several timing windows.
//!
//! `MFH_THREADS` sets the thread count (default 2).

use mfh_model::{build, FlatSpec, GateKind, MmoeShape, ModelSpec, UnitSpec};
use mfh_nn::{Adam, Module, Rng};
use std::time::Instant;

fn main() {
    let threads: usize = std::env::var("MFH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    mfh_nn::init_thread_pool(threads);
    mfh_nn::set_threads(threads);

    let (batch, n_in, n_tasks) = (1024, 429, 4);
    let spec = ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::Mmoe(MmoeShape {
            experts: 8,
            expert_layers: vec![256, 128],
            gate: GateKind::Softmax,
            gate_hidden: vec![],
        }),
        tower: vec![64],
        batch_norm: false,
    });
    let mut net = build::<f32>(&spec, n_in, n_tasks, 42).expect("valid spec");
    print!("{}", net.describe());

    let mut rng = Rng::new(7);
    let x: Vec<f32> = (0..batch * n_in).map(|_| rng.normal() as f32).collect();
    let labels: Vec<f32> = (0..batch * n_tasks)
        .map(|_| (rng.uniform() < 0.3) as u8 as f32)
        .collect();
    let mut d_logits = vec![0.0f32; batch * n_tasks];
    let mut adam = Adam::<f32>::default();

    let mut step = |net: &mut mfh_model::MultiTaskNet<f32>| {
        net.zero_grad();
        let logits = net.forward(&x, batch, true);
        // Mean binary cross-entropy gradient, so the step does realistic work.
        let scale = 1.0 / batch as f32;
        for ((d, &z), &y) in d_logits.iter_mut().zip(logits).zip(&labels) {
            *d = (1.0 / (1.0 + (-z).exp()) - y) * scale;
        }
        net.backward(&x, &d_logits, None, batch);
        adam.step(net, 1e-3);
    };

    for _ in 0..5 {
        step(&mut net);
    }
    let (windows, steps_per_window) = (7, 10);
    let mut rates = Vec::with_capacity(windows);
    for _ in 0..windows {
        let t0 = Instant::now();
        for _ in 0..steps_per_window {
            step(&mut net);
        }
        let secs = t0.elapsed().as_secs_f64();
        rates.push((steps_per_window * batch) as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "threads {threads}: median {:.0} samples/s (min {:.0}, max {:.0}; {} windows of {} steps)",
        rates[windows / 2],
        rates[0],
        rates[windows - 1],
        windows,
        steps_per_window
    );
}
