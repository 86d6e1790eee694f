//! `mfh bench sgemm`: f32 product throughput, n × n × n through mfh's product kernel and
//! through the `gemm` crate itself; with `--shapes`, each product of one MMoE-ref
//! training step on its own; with `--bf16`, the same in bf16 ([`mfh_nn::Precision::Bf16`]:
//! AMX or AVX512-BF16 where the kernel path has them) beside f32.

use crate::print::summary;
use crate::workload::BATCH;
use mfh_data::SplitMix;
use mfh_nn::{with_precision, Precision};
use std::time::Instant;

/// Times the square product `repeats` times after a warm-up on each side (default
/// threads: the cores this process may use), then the MMoE-ref shapes when `shapes`.
pub fn sgemm(n: usize, threads: Option<usize>, repeats: usize, shapes: bool, bf16: bool) {
    square(
        n,
        threads.unwrap_or_else(mfh_cpu::available_threads),
        repeats,
        bf16,
    );
    if shapes {
        step_shapes(repeats, Precision::F32);
        if bf16 {
            step_shapes(repeats, Precision::Bf16);
        }
    }
}

/// sgemm throughput on n × n × n f32 through mfh's product kernel (row blocks over the
/// compute threads) and the `gemm` crate, in GFLOP/s per repetition.
fn square(n: usize, threads: usize, repeats: usize, bf16: bool) {
    mfh_nn::use_threads(threads);
    let mut rng = SplitMix(3);
    let mut m = || -> Vec<f32> {
        (0..n * n)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect()
    };
    let (a, b) = (m(), m());
    let mut c = vec![0f32; n * n];
    // mfh's product (what the models run), then the `gemm` crate itself with its own
    // rayon parallelism: the definition of sgemm throughput.
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    type Product<'a> = &'a dyn Fn(&mut [f32]);
    let base: [(&str, Product); 2] = [
        ("mfh kernel", &|c: &mut [f32]| {
            mfh_nn::matmul(n, n, n, 1.0, &a, n, false, &b, n, false, 0.0, c, n)
        }),
        ("gemm crate", &|c: &mut [f32]| {
            // SAFETY: a, b and c are n × n row-major buffers, c is not read (the
            // `read_dst` flag is false) and aliases neither input.
            unsafe {
                gemm::gemm(
                    n,
                    n,
                    n,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    n as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            }
        }),
    ];
    let bf16_product = |c: &mut [f32]| {
        with_precision(Precision::Bf16, || {
            mfh_nn::matmul(n, n, n, 1.0, &a, n, false, &b, n, false, 0.0, c, n)
        })
    };
    let mut runs = base.to_vec();
    if bf16 {
        runs.insert(1, ("mfh kernel, bf16 operands", &bf16_product));
    }
    for (name, product) in runs {
        let mut rates = Vec::new();
        for r in 0..=repeats {
            let t = Instant::now();
            product(&mut c);
            let dt = t.elapsed().as_secs_f64();
            if r > 0 {
                rates.push(2.0 * (n as f64).powi(3) / dt / 1e9);
            }
        }
        std::hint::black_box(&c);
        summary(
            &format!("sgemm {n}³ ({name}), {threads} threads"),
            "GFLOP/s",
            rates,
        );
    }
}

/// One product of a training step: C[m × n] (row stride ldc) = A[m × k] · B[k × n], A
/// and B each stored as is or transposed with its own row stride; `count` per step.
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    trans_a: bool,
    ldb: usize,
    trans_b: bool,
    ldc: usize,
    count: usize,
}

/// `Shape` in one line: (name, m, n, k, lda, trans_a, ldb, trans_b, ldc, count).
#[allow(clippy::too_many_arguments)] // a table row
const fn shape(
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    trans_a: bool,
    ldb: usize,
    trans_b: bool,
    ldc: usize,
    count: usize,
) -> Shape {
    Shape {
        name,
        m,
        n,
        k,
        lda,
        trans_a,
        ldb,
        trans_b,
        ldc,
        count,
    }
}

/// The products of one MMoE-ref training step (batch 1024; experts fused at layer 1).
#[rustfmt::skip]
const STEP_SHAPES: [Shape; 10] = [
    shape("fwd experts layer 1 (fused)", BATCH, 2048, 429, 429, false, 2048, false, 2048, 1),
    shape("fwd expert layer 2", BATCH, 128, 256, 2048, false, 128, false, 1024, 8),
    shape("fwd gate", BATCH, 8, 429, 429, false, 8, false, 8, 4),
    shape("fwd tower layer 1", BATCH, 64, 128, 128, false, 64, false, 64, 4),
    shape("bwd dW experts layer 1", 429, 2048, BATCH, 429, true, 2048, false, 2048, 1),
    shape("bwd dx experts layer 1", BATCH, 429, 2048, 2048, false, 2048, true, 429, 1),
    shape("bwd dW expert layer 2", 256, 128, BATCH, 2048, true, 1024, false, 128, 8),
    shape("bwd dx expert layer 2", BATCH, 256, 128, 1024, false, 128, true, 2048, 8),
    shape("bwd dW gate", 429, 8, BATCH, 429, true, 8, false, 8, 4),
    shape("bwd dx gate", BATCH, 429, 8, 8, false, 8, true, 429, 4),
];

/// GFLOP/s of each product in one MMoE-ref training step, then of all of them together,
/// in precision `prec`.
fn step_shapes(repeats: usize, prec: Precision) {
    outln!("MMoE-ref step products, {prec} operands:");
    let mut total_flops = 0.0;
    let mut total_time = 0.0;
    for s in &STEP_SHAPES {
        let t = with_precision(prec, || time_shape(s, repeats.max(3) * 4));
        let (m, n, k, count) = (s.m, s.n, s.k, s.count);
        let flops = 2.0 * (m * n * k) as f64;
        total_flops += flops * count as f64;
        total_time += t * count as f64;
        outln!(
            "  {:<28} {m}×{n}×{k}{}: {:.1} GFLOP/s ({:.2} ms × {count})",
            s.name,
            match (s.trans_a, s.trans_b) {
                (true, _) => " (Aᵀ)",
                (_, true) => " (Bᵀ)",
                _ => "",
            },
            flops / t / 1e9,
            t * 1e3
        );
    }
    outln!(
        "  these products: {:.1} ms per step, {:.1} GFLOP/s together",
        total_time * 1e3,
        total_flops / total_time / 1e9
    );
}

/// The median seconds of `repeats` timed runs of one product, after a warm-up.
fn time_shape(s: &Shape, repeats: usize) -> f64 {
    let a_len = if s.trans_a { s.k * s.lda } else { s.m * s.lda };
    let b_len = if s.trans_b { s.n * s.ldb } else { s.k * s.ldb };
    let a: Vec<f32> = (0..a_len).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..b_len).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; s.m * s.ldc];
    let mut times = Vec::new();
    for r in 0..=repeats {
        let t = Instant::now();
        mfh_nn::matmul(
            s.m, s.n, s.k, 1.0, &a, s.lda, s.trans_a, &b, s.ldb, s.trans_b, 0.0, &mut c, s.ldc,
        );
        if r > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
