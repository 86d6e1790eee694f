//! The f32 product (`matmul` with `T = f32`) on every kernel path this CPU runs (the
//! AVX-512 and AVX2 tiles, the `gemm` crate): against an f64 reference over shapes that
//! cross every tile and block edge, all transposes, strides and scalars; with the own
//! tiles a row's result never depends on the split, and the two tiles give equal bits.
//! Each test prints the paths it ran.

use mfh_cpu::Path;
use mfh_nn::matmul;
use mfh_nn::Rng;

fn randn(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

/// Checks `matmul(m, n, k, alpha, A, B, beta, C)` against the f64 sum, element-wise within
/// a bound scaled by Σ|a·b|.
#[allow(clippy::too_many_arguments)]
fn check(rng: &mut Rng, m: usize, n: usize, k: usize, ta: bool, tb: bool, alpha: f32, beta: f32) {
    let lda = if ta { m + 3 } else { k + 1 };
    let ldb = if tb { k + 2 } else { n + 5 };
    let ldc = n + 7;
    let a = randn(rng, if ta { k * lda } else { m * lda });
    let b = randn(rng, if tb { n * ldb } else { k * ldb });
    let mut c0 = randn(rng, m * ldc);
    if beta == 0.0 {
        // Not read when beta is zero, whatever it holds.
        c0.iter_mut().step_by(3).for_each(|v| *v = f32::NAN);
    }
    let mut c = c0.clone();
    matmul(m, n, k, alpha, &a, lda, ta, &b, ldb, tb, beta, &mut c, ldc);
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0f64, 0f64);
            for p in 0..k {
                let av = if ta { a[p * lda + i] } else { a[i * lda + p] } as f64;
                let bv = if tb { b[j * ldb + p] } else { b[p * ldb + j] } as f64;
                s += av * bv;
                mag += (av * bv).abs();
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c0[i * ldc + j] as f64
            };
            let want = alpha as f64 * s + old;
            let got = c[i * ldc + j] as f64;
            let tol = 1e-6 * (alpha.abs() as f64 * mag + old.abs()) + 1e-30;
            assert!(
                (got - want).abs() <= tol,
                "m {m} n {n} k {k} ta {ta} tb {tb} alpha {alpha} beta {beta}: C[{i},{j}] = {got}, want {want}"
            );
        }
        // Padding columns of C are left alone.
        for j in n..ldc.min(c.len() - i * ldc) {
            let (got, was) = (c[i * ldc + j], c0[i * ldc + j]);
            assert!(
                got == was || (got.is_nan() && was.is_nan()),
                "padding of row {i} written"
            );
        }
    }
}

/// The paths this CPU runs, printed (so a log shows which ran).
fn paths() -> Vec<Path> {
    let p = mfh_cpu::supported();
    println!("{}", mfh_cpu::describe());
    println!("testing kernel paths: {p:?}");
    p
}

/// The own tiles' paths (split-independent, equal bits).
fn own_paths() -> Vec<Path> {
    paths()
        .into_iter()
        .filter(|&p| p != Path::Portable)
        .collect()
}

#[test]
fn f32_matmul_matches_f64_reference_across_block_edges() {
    for path in paths() {
        mfh_cpu::with_path(path, || matches_reference(path));
    }
}

fn matches_reference(path: Path) {
    println!("path {path}");
    let mut rng = Rng::new(31);
    // Tile edges (6 rows, 16 columns), the k block (256), the row block (144), the column
    // block (4096), and degenerate sizes.
    let shapes = [
        (1, 1, 1),
        (6, 16, 8),
        (7, 17, 3),
        (5, 15, 257),
        (13, 33, 600),
        (150, 40, 31),
        (145, 70, 513),
        (3, 4100, 5),
        (15, 33, 40),
        (29, 65, 300),
        (140, 32, 17),
        (141, 31, 7),
        (64, 1, 64),
        (1, 64, 429),
        // At most 8 columns (the narrow product): k below, at and past 8 lanes.
        (37, 3, 206),
        (9, 5, 9),
        (4, 7, 8),
        (3, 2, 1),
        (11, 6, 15),
        (5, 8, 64),
    ];
    for (m, n, k) in shapes {
        for ta in [false, true] {
            for tb in [false, true] {
                check(&mut rng, m, n, k, ta, tb, 1.0, 0.0);
            }
        }
        check(&mut rng, m, n, k, false, false, 0.5, 2.0);
        check(&mut rng, m, n, k, true, false, -1.5, 1.0);
    }
}

#[test]
fn f32_matmul_with_empty_reduction_scales_c() {
    for path in paths() {
        mfh_cpu::with_path(path, empty_reduction);
    }
}

fn empty_reduction() {
    let mut c = vec![2.0f32; 6];
    matmul(2, 3, 0, 1.0, &[], 1, false, &[], 3, false, 0.5, &mut c, 3);
    assert_eq!(c, vec![1.0; 6]);
    let mut c = vec![f32::NAN; 6];
    matmul(2, 3, 0, 1.0, &[], 1, false, &[], 3, false, 0.0, &mut c, 3);
    assert_eq!(c, vec![0.0; 6]);
}

#[test]
fn f32_rows_do_not_depend_on_the_split() {
    for path in own_paths() {
        println!("path {path}");
        mfh_cpu::with_path(path, rows_do_not_depend_on_the_split);
    }
}

fn rows_do_not_depend_on_the_split() {
    mfh_nn::init_thread_pool(2);
    let mut rng = Rng::new(32);
    let (m, n, k) = (300, 200, 700);
    let a = randn(&mut rng, m * k);
    let b = randn(&mut rng, k * n);
    let whole = |threads| {
        mfh_nn::set_threads(threads);
        let mut c = vec![0f32; m * n];
        matmul(m, n, k, 1.0, &a, k, false, &b, n, false, 0.0, &mut c, n);
        mfh_nn::set_threads(1);
        c
    };
    let one = whole(1);
    assert_eq!(whole(2), one, "2 threads differ from 1");
    // Rows 37..120 alone, and columns 5..190 alone: bit for bit the same elements.
    let (lo, hi) = (37, 120);
    let mut part = vec![0f32; (hi - lo) * n];
    matmul(
        hi - lo,
        n,
        k,
        1.0,
        &a[lo * k..],
        k,
        false,
        &b,
        n,
        false,
        0.0,
        &mut part,
        n,
    );
    assert_eq!(part[..], one[lo * n..hi * n]);
    let (cl, ch) = (5, 190);
    let mut cols = vec![0f32; m * (ch - cl)];
    matmul(
        m,
        ch - cl,
        k,
        1.0,
        &a,
        k,
        false,
        &b[cl..],
        n,
        false,
        0.0,
        &mut cols,
        ch - cl,
    );
    for i in 0..m {
        assert_eq!(
            cols[i * (ch - cl)..(i + 1) * (ch - cl)],
            one[i * n + cl..i * n + ch]
        );
    }
}

/// Products at most 8 columns wide (one dot product per element): a row's result is the
/// same at 1 and 2 threads and when its rows are multiplied alone, for every width.
#[test]
fn narrow_rows_do_not_depend_on_the_split() {
    mfh_nn::init_thread_pool(2);
    for path in own_paths() {
        println!("path {path}");
        let mut rng = Rng::new(35);
        let (m, k) = (1500, 206);
        let a = randn(&mut rng, m * k);
        for n in 1..=8 {
            let b = randn(&mut rng, k * n);
            let run = |rows: usize, a: &[f32], threads| {
                mfh_nn::set_threads(threads);
                let mut c = vec![0f32; rows * n];
                mfh_cpu::with_path(path, || {
                    matmul(rows, n, k, 1.0, a, k, false, &b, n, false, 0.0, &mut c, n)
                });
                mfh_nn::set_threads(1);
                c
            };
            let one = run(m, &a, 1);
            assert_eq!(run(m, &a, 2), one, "n {n}: 2 threads differ from 1");
            let (lo, hi) = (37, 41);
            assert_eq!(
                run(hi - lo, &a[lo * k..], 1)[..],
                one[lo * n..hi * n],
                "n {n}"
            );
        }
    }
}

/// `matmul_bias_act` equals `matmul` then `bias_act_rows` bit for bit, in f32 (tiles with
/// edges, k past one block, rows and columns split over 2 threads) and in f64.
#[test]
fn fused_bias_and_relu_equal_the_separate_pass() {
    for path in own_paths() {
        println!("path {path}");
        mfh_cpu::with_path(path, fused_bias_and_relu);
    }
}

fn fused_bias_and_relu() {
    use mfh_nn::kernels::bias_act_rows;
    use mfh_nn::matmul_bias_act;
    mfh_nn::init_thread_pool(2);
    let mut rng = Rng::new(33);
    for threads in [1, 2] {
        mfh_nn::set_threads(threads);
        for (m, n, k, tb) in [
            (7, 17, 5, false),
            (300, 70, 300, false),
            (40, 530, 260, true),
        ] {
            for relu in [false, true] {
                let ldc = n + 3;
                let a = randn(&mut rng, m * k);
                let b = randn(&mut rng, k * n);
                let ldb = if tb { k } else { n };
                let bias = randn(&mut rng, n);
                let mut want = vec![f32::NAN; m * ldc];
                matmul(m, n, k, 1.0, &a, k, false, &b, ldb, tb, 0.0, &mut want, ldc);
                bias_act_rows(&mut want, ldc, m, &bias, relu);
                let mut got = vec![f32::NAN; m * ldc];
                matmul_bias_act(
                    m,
                    n,
                    k,
                    1.0,
                    &a,
                    k,
                    false,
                    &b,
                    ldb,
                    tb,
                    0.0,
                    &mut got,
                    ldc,
                    Some(&bias),
                    relu,
                );
                for i in 0..m {
                    let (g, w) = (&got[i * ldc..i * ldc + n], &want[i * ldc..i * ldc + n]);
                    assert_eq!(
                        g, w,
                        "row {i} of {m}×{n}×{k}, relu {relu}, {threads} threads"
                    );
                    if relu {
                        assert!(g.iter().all(|&v| v >= 0.0));
                    }
                }
                // f64 (the library product) agrees the same way.
                let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
                let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
                let bias64: Vec<f64> = bias.iter().map(|&v| v as f64).collect();
                let mut want64 = vec![0f64; m * n];
                matmul(
                    m,
                    n,
                    k,
                    1.0,
                    &a64,
                    k,
                    false,
                    &b64,
                    ldb,
                    tb,
                    0.0,
                    &mut want64,
                    n,
                );
                bias_act_rows(&mut want64, n, m, &bias64, relu);
                let mut got64 = vec![f64::NAN; m * n];
                matmul_bias_act(
                    m,
                    n,
                    k,
                    1.0,
                    &a64,
                    k,
                    false,
                    &b64,
                    ldb,
                    tb,
                    0.0,
                    &mut got64,
                    n,
                    Some(&bias64),
                    relu,
                );
                assert_eq!(got64, want64);
            }
        }
    }
    mfh_nn::set_threads(1);
}

/// The AVX-512 and AVX2 tiles compute the same sums in the same order: equal bits on
/// every shape, transpose, scalar pair and epilogue, at 1 and 2 threads.
#[test]
fn avx512_and_avx2_tiles_give_equal_bits() {
    use mfh_nn::matmul_bias_act;
    let own = own_paths();
    if !own.contains(&Path::Avx512) {
        println!("SKIPPED: this CPU has no AVX-512 ({})", mfh_cpu::describe());
        return;
    }
    mfh_nn::init_thread_pool(2);
    let mut rng = Rng::new(34);
    for threads in [1, 2] {
        mfh_nn::set_threads(threads);
        for (m, n, k) in [
            (1, 1, 1),
            (14, 32, 256),
            (15, 33, 257),
            (300, 70, 600),
            (29, 8, 429),
            (512, 256, 429),
            (500, 3, 206),
            (7, 5, 9),
            (2000, 4, 64),
        ] {
            for (ta, tb, alpha, beta, relu) in [
                (false, false, 1.0, 0.0, true),
                (true, false, 1.0, 1.0, false),
                (false, true, -0.5, 2.0, true),
            ] {
                let lda = if ta { m } else { k };
                let ldb = if tb { k } else { n };
                let a = randn(&mut rng, m * k);
                let b = randn(&mut rng, k * n);
                let bias = randn(&mut rng, n);
                let c0 = randn(&mut rng, m * n);
                let run = |path| {
                    let mut c = c0.clone();
                    mfh_cpu::with_path(path, || {
                        matmul_bias_act(
                            m,
                            n,
                            k,
                            alpha,
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
                            relu,
                        )
                    });
                    c
                };
                let (wide, narrow) = (run(Path::Avx512), run(Path::Avx2));
                assert_eq!(wide.len(), narrow.len());
                for (idx, (x, y)) in wide.iter().zip(&narrow).enumerate() {
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "{m}×{n}×{k} ta {ta} tb {tb}, {threads} threads: element {idx}"
                    );
                }
            }
        }
    }
    mfh_nn::set_threads(1);
}
