//! bf16 products: on every kernel path this CPU runs (the AMX and AVX512-BF16 kernels
//! where it has them, the reference elsewhere), the result equals the exact product of
//! the bf16-rounded operands within f32 summation error; the reference equals the f32
//! product of rounded copies bit for bit; every path is deterministic and independent of
//! the thread split. Each test prints the paths it ran.

use mfh_cpu::Path;
use mfh_nn::product::bf16::{round, round_f32, widen};
use mfh_nn::{matmul, matmul_bias_act, with_precision, Precision, Rng};

fn paths() -> Vec<Path> {
    let p = mfh_cpu::supported();
    println!("{}", mfh_cpu::describe());
    println!("testing kernel paths: {p:?}");
    p
}

#[test]
fn rounding_is_to_nearest_even() {
    assert_eq!(round(1.0), 0x3f80);
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even (1.0).
    assert_eq!(widen(round(1.0 + 1.0 / 256.0)), 1.0);
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
    assert_eq!(widen(round(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
    // Just above the tie rounds up.
    assert_eq!(widen(round(1.0 + 1.0 / 256.0 + 1e-6)), 1.0 + 1.0 / 128.0);
    assert_eq!(round_f32(-2.5), -2.5);
    assert!(round_f32(f32::NAN).is_nan());
    assert_eq!(round_f32(f32::INFINITY), f32::INFINITY);
    assert_eq!(
        round_f32(f32::MAX),
        f32::INFINITY,
        "f32::MAX rounds up past bf16's max"
    );
    // Relative error at most 2^-8 (half a unit in the 8th significant bit).
    let mut rng = Rng::new(5);
    for _ in 0..10_000 {
        let x = (rng.normal() * 100.0) as f32;
        assert!((round_f32(x) - x).abs() <= x.abs() / 256.0, "{x}");
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    alpha: f32,
    beta: f32,
    bias: bool,
    relu: bool,
}

/// Runs one bf16 product on the current path and checks it against the f64 product of
/// the rounded operands: within 2^-20 of Σ|a·b| per element (f32 sums in any order).
fn check(rng: &mut Rng, c: &Case) -> Vec<f32> {
    let (m, n, k) = (c.m, c.n, c.k);
    let (lda, ldb, ldc) = (
        if c.ta { m + 3 } else { k + 1 },
        if c.tb { k + 2 } else { n + 5 },
        n + 1,
    );
    let a: Vec<f32> = (0..lda * if c.ta { k } else { m })
        .map(|_| rng.normal() as f32)
        .collect();
    let b: Vec<f32> = (0..ldb * if c.tb { n } else { k })
        .map(|_| rng.normal() as f32)
        .collect();
    let c0: Vec<f32> = (0..ldc * m).map(|_| rng.normal() as f32).collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let at = |i: usize, p: usize| if c.ta { a[p * lda + i] } else { a[i * lda + p] };
    let bt = |p: usize, j: usize| if c.tb { b[j * ldb + p] } else { b[p * ldb + j] };
    let mut out = c0.clone();
    with_precision(Precision::Bf16, || {
        matmul_bias_act(
            m,
            n,
            k,
            c.alpha,
            &a,
            lda,
            c.ta,
            &b,
            ldb,
            c.tb,
            c.beta,
            &mut out,
            ldc,
            c.bias.then_some(&bias[..]),
            c.relu,
        )
    });
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0f64, 0f64);
            for p in 0..k {
                let v = f64::from(round_f32(at(i, p))) * f64::from(round_f32(bt(p, j)));
                s += v;
                mag += v.abs();
            }
            let mut want = f64::from(c.alpha) * s;
            if c.beta != 0.0 {
                want += f64::from(c.beta) * f64::from(c0[i * ldc + j]);
            }
            if c.bias {
                want += f64::from(bias[j]);
            }
            if c.relu {
                want = want.max(0.0);
            }
            let got = f64::from(out[i * ldc + j]);
            let tol = 2f64.powi(-20) * (f64::from(c.alpha.abs()) * mag + want.abs() + 4.0);
            assert!(
                (got - want).abs() <= tol,
                "{m}×{n}×{k} ta {} tb {} at ({i}, {j}): {got} vs {want} (tol {tol:e}) on {}",
                c.ta,
                c.tb,
                mfh_cpu::path()
            );
        }
    }
    out
}

fn cases() -> Vec<Case> {
    let shapes = [
        (1, 1, 1),
        (14, 32, 2),
        (15, 33, 3),
        (16, 16, 32),
        (17, 31, 33),
        (32, 32, 64),
        (33, 65, 429),
        (29, 70, 300),
        (64, 1, 64),
        (1, 64, 429),
        (100, 40, 7),
        (3, 130, 1000),
    ];
    let mut v = Vec::new();
    for (m, n, k) in shapes {
        for ta in [false, true] {
            for tb in [false, true] {
                v.push(Case {
                    m,
                    n,
                    k,
                    ta,
                    tb,
                    alpha: 1.0,
                    beta: 0.0,
                    bias: false,
                    relu: false,
                });
            }
        }
        v.push(Case {
            m,
            n,
            k,
            ta: false,
            tb: false,
            alpha: 0.5,
            beta: 2.0,
            bias: true,
            relu: true,
        });
        v.push(Case {
            m,
            n,
            k,
            ta: true,
            tb: true,
            alpha: -1.5,
            beta: 1.0,
            bias: true,
            relu: false,
        });
    }
    v
}

#[test]
fn bf16_products_equal_the_rounded_operands_product_on_every_path() {
    mfh_nn::set_threads(1);
    for path in paths() {
        println!("path {path}");
        let mut rng = Rng::new(17);
        mfh_cpu::with_path(path, || {
            for c in cases() {
                check(&mut rng, &c);
            }
        });
    }
}

/// The reference is the f32 product of rounded copies, bit for bit; the bf16 result
/// differs from the f32 product of the unrounded operands (the precision took effect).
#[test]
fn the_reference_is_the_f32_product_of_rounded_operands() {
    mfh_nn::set_threads(1);
    let (m, n, k) = (37, 45, 129);
    let mut rng = Rng::new(3);
    let a: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
    let (ra, rb): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|&x| round_f32(x)).collect(),
        b.iter().map(|&x| round_f32(x)).collect(),
    );
    for path in paths()
        .into_iter()
        .filter(|p| !matches!(p, Path::Amx | Path::Avx512Bf16))
    {
        mfh_cpu::with_path(path, || {
            let mut bf = vec![0f32; m * n];
            let mut want = vec![0f32; m * n];
            let mut f32s = vec![0f32; m * n];
            with_precision(Precision::Bf16, || {
                matmul(m, n, k, 1.0, &a, k, false, &b, n, false, 0.0, &mut bf, n)
            });
            matmul(
                m, n, k, 1.0, &ra, k, false, &rb, n, false, 0.0, &mut want, n,
            );
            matmul(m, n, k, 1.0, &a, k, false, &b, n, false, 0.0, &mut f32s, n);
            assert_eq!(bf, want, "{path}");
            assert_ne!(bf, f32s, "{path}: bf16 gave the f32 result");
        });
    }
}

/// Every path gives the same bits twice and with 1, 2 or 3 threads (rows split or
/// columns split; on the hardware paths the operands are packed once, shared by the
/// threads, in uneven shares at 3), transposed operands, bias, ReLU and beta included,
/// so a bf16 run repeats for a fixed seed.
#[test]
fn bf16_products_are_deterministic_and_split_independent() {
    mfh_nn::init_thread_pool(3);
    let mut rng = Rng::new(9);
    for path in paths() {
        for (m, n, k, ta, tb) in [
            (600, 300, 429, false, false),
            (40, 900, 256, false, false),
            (601, 45, 255, true, false),
            (47, 901, 129, false, true),
            (333, 333, 1001, true, true),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| rng.normal() as f32).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let (lda, ldb) = (if ta { m } else { k }, if tb { k } else { n });
            let run = |threads: usize, beta: f32| {
                mfh_nn::set_threads(threads);
                let mut c = c0.clone();
                mfh_cpu::with_path(path, || {
                    with_precision(Precision::Bf16, || {
                        matmul_bias_act(
                            m,
                            n,
                            k,
                            0.75,
                            &a,
                            lda,
                            ta,
                            &b,
                            ldb,
                            tb,
                            beta,
                            &mut c,
                            n,
                            Some(&bias),
                            beta == 0.0,
                        )
                    })
                });
                c.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
            };
            for beta in [0.0, 0.5] {
                let one = run(1, beta);
                assert_eq!(one, run(1, beta), "{path} {m}×{n}×{k}: not repeatable");
                for threads in [2, 3] {
                    assert_eq!(
                        one,
                        run(threads, beta),
                        "{path} {m}×{n}×{k} ta {ta} tb {tb} beta {beta}: {threads} threads differ from 1"
                    );
                }
            }
        }
    }
    mfh_nn::set_threads(1);
}

/// Two bf16 training steps of an MLP on `path` at `threads` threads: the first step's
/// outputs, its input gradient and the parameters after the second.
fn mlp_steps(path: Path, threads: usize, prec: Precision) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    use mfh_nn::{Activation, Adam, Mlp, Module};
    mfh_nn::init_thread_pool(2);
    mfh_nn::set_threads(threads);
    let r = mfh_cpu::with_path(path, || {
        with_precision(prec, || {
            let mut rng = Rng::new(5);
            let (n, n_in) = (300, 61);
            let mut mlp =
                Mlp::<f32>::new(n_in, &[300, 200, 9], Activation::Identity, true, &mut rng);
            let x: Vec<f32> = (0..n * n_in).map(|_| rng.normal() as f32).collect();
            let mut adam = Adam::<f32>::default();
            let (mut y, mut dx) = (Vec::new(), Vec::new());
            for s in 0..2 {
                mlp.zero_grad();
                let out = mlp.forward(&x, n, true).to_vec();
                let mut dy: Vec<f32> = out.iter().map(|v| v * 0.01).collect();
                let mut d = vec![0f32; n * n_in];
                mlp.backward(&x, &mut dy, Some(&mut d), n);
                if s == 0 {
                    (y, dx) = (out, d);
                }
                adam.step(&mut mlp, 1e-3);
            }
            let mut params = Vec::new();
            mlp.visit_params("", &mut |_, p, _| params.extend_from_slice(p));
            (y, dx, params)
        })
    });
    mfh_nn::set_threads(1);
    r
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// A bf16 training step on every path: the same bits at one and two threads and when
/// repeated; close to the reference path's (f32 sums in another order) and to f32 (bf16
/// rounding); the parameters stay f32 (master weights, not rounded to bf16).
#[test]
fn bf16_training_steps_are_deterministic_and_keep_f32_weights() {
    let reference = mlp_steps(Path::Portable, 1, Precision::Bf16);
    let f32s = mlp_steps(Path::Portable, 1, Precision::F32);
    for p in paths() {
        println!("path {p}");
        let one = mlp_steps(p, 1, Precision::Bf16);
        let two = mlp_steps(p, 2, Precision::Bf16);
        assert_eq!(one, mlp_steps(p, 1, Precision::Bf16), "{p}: not repeatable");
        if p != Path::Portable {
            // The `gemm` crate's own threading is not used, but its sums depend on
            // the block a thread gets; the own kernels' and the bf16 tiles' do not.
            assert_eq!(one, two, "{p}: 2 threads differ from 1");
        }
        // A layer's output that differs from the reference's in its last f32 bits may
        // round to the neighbouring bf16 value where it feeds the next product, so
        // across paths outputs agree to bf16's precision, not f32's.
        let (ry, rd, rp) = (
            max_rel(&one.0, &reference.0),
            max_rel(&one.1, &reference.1),
            max_rel(&one.2, &reference.2),
        );
        let (dy, dd) = (max_rel(&one.0, &f32s.0), max_rel(&one.1, &f32s.1));
        println!("  vs reference: outputs {ry:e}, dx {rd:e}, parameters {rp:e}; vs f32: outputs {dy:e}, dx {dd:e}");
        assert!(
            ry < 4e-3 && rd < 4e-3 && rp < 1e-2,
            "{p}: far from the reference"
        );
        assert!(dy > 0.0 && dy < 2e-2, "{p}: outputs vs f32 {dy}");
        // dx is small beside its terms: this MLP has batch norm and no nonlinearity, and
        // dy is proportional to the output, so batch norm's backward cancels most of it
        // and bf16's rounding shows relative to what is left.
        assert!(dd > 0.0 && dd < 3e-1, "{p}: dx vs f32 {dd}");
        let unrounded = one.2.iter().filter(|&&w| round_f32(w) != w).count();
        assert!(
            unrounded > one.2.len() / 2,
            "{p}: {unrounded} of {} weights off the bf16 grid",
            one.2.len()
        );
    }
}

/// An empty reduction or `alpha == 0` computes no product on any path (as in f32): the
/// result is `epi(beta·C)`, even with an Inf in the operands.
#[test]
fn bf16_products_without_a_product_scale_c() {
    mfh_nn::set_threads(1);
    let (m, n) = (5, 37);
    let bias: Vec<f32> = (0..n).map(|j| j as f32 - 3.0).collect();
    for path in paths() {
        for (k, alpha) in [(0usize, 1.0f32), (19, 0.0)] {
            let a = vec![f32::INFINITY; m * k.max(1)];
            let b = vec![1.0f32; k.max(1) * n];
            let c0: Vec<f32> = (0..m * n).map(|v| v as f32 * 0.5 - 20.0).collect();
            let mut c = c0.clone();
            mfh_cpu::with_path(path, || {
                with_precision(Precision::Bf16, || {
                    matmul_bias_act(
                        m,
                        n,
                        k,
                        alpha,
                        &a[..m * k],
                        k.max(1),
                        false,
                        &b[..k * n],
                        n,
                        false,
                        2.0,
                        &mut c,
                        n,
                        Some(&bias),
                        true,
                    )
                })
            });
            for i in 0..m {
                for j in 0..n {
                    let want = (2.0 * c0[i * n + j] + bias[j]).max(0.0);
                    assert_eq!(
                        c[i * n + j],
                        want,
                        "{path} k {k} alpha {alpha} at ({i}, {j})"
                    );
                }
            }
        }
    }
}
