//! Gradient checks (f64, central differences) for every layer, plus kernel, optimiser
//! and precision tests.

use mfh_nn::gradcheck::{check_module, compare, numeric_grad, Tolerance};
use mfh_nn::matmul;
use mfh_nn::{
    gated_sum_backward, gated_sum_forward, Activation, Adam, BatchNorm, ExpertBank, Gate,
    GateActivation, Linear, Mlp, Module, Rng,
};

fn randn(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.normal()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn tol() -> Tolerance {
    Tolerance::default()
}

/// Checks parameter and input gradients of a layer under the loss Σ r·y.
/// `fwd` runs the forward and returns y; `bwd(layer, x, dy, dx)` accumulates grads.
fn check_layer<L: Module<f64>>(
    layer: &mut L,
    x: &[f64],
    n_out: usize,
    seed: u64,
    fwd: impl Fn(&mut L, &[f64]) -> Vec<f64>,
    bwd: impl Fn(&mut L, &[f64], &mut [f64], &mut [f64]),
) {
    let mut rng = Rng::new(seed);
    let r = randn(&mut rng, n_out);
    assert_eq!(fwd(layer, x).len(), n_out);
    layer.zero_grad();
    let mut dy = r.clone();
    let mut dx = vec![0.0; x.len()];
    bwd(layer, x, &mut dy, &mut dx);
    check_module(layer, |l| dot(&fwd(l, x), &r), tol()).unwrap();
    let mut xs = x.to_vec();
    let num = numeric_grad(&mut xs, |xv| dot(&fwd(layer, xv), &r));
    compare("dx", &dx, &num, tol()).unwrap();
}

#[test]
fn linear_identity_and_relu_gradients() {
    for act in [Activation::Identity, Activation::Relu] {
        let mut rng = Rng::new(1);
        let (n, ni, no) = (5, 4, 3);
        let mut lin = Linear::<f64>::new(ni, no, act, &mut rng);
        // A non-zero bias so that ReLU units are a mix of active and inactive.
        for b in lin.params_mut()[ni * no..].iter_mut() {
            *b = rng.uniform_range(-0.5, 0.5);
        }
        let x = randn(&mut rng, n * ni);
        check_layer(
            &mut lin,
            &x,
            n * no,
            2,
            |l, x| {
                let mut y = vec![0.0; n * no];
                l.forward(x, n, &mut y);
                y
            },
            |l, x, dy, dx| {
                let mut y = vec![0.0; n * no];
                l.forward(x, n, &mut y);
                l.backward(x, &y, dy, Some(dx), n);
            },
        );
    }
}

#[test]
fn linear_dx_accumulates() {
    let mut rng = Rng::new(3);
    let mut lin = Linear::<f64>::new(3, 2, Activation::Identity, &mut rng);
    let x = randn(&mut rng, 6);
    let mut y = vec![0.0; 4];
    lin.forward(&x, 2, &mut y);
    let mut dx1 = vec![0.0; 6];
    lin.backward(&x, &y, &mut [1.0; 4], Some(&mut dx1), 2);
    let mut dx2 = vec![1.0; 6];
    lin.backward(&x, &y, &mut [1.0; 4], Some(&mut dx2), 2);
    for (a, b) in dx1.iter().zip(&dx2) {
        assert!((a + 1.0 - b).abs() < 1e-12);
    }
}

#[test]
fn batchnorm_train_and_eval_gradients() {
    let (n, d) = (6, 3);
    for train in [true, false] {
        let mut rng = Rng::new(4);
        let mut bn = BatchNorm::<f64>::new(d);
        // Non-trivial gamma/beta and running statistics.
        bn.visit_params("", &mut |_, p, _| {
            p.iter_mut().for_each(|v| *v = 1.0 + 0.3 * rng.normal())
        });
        bn.visit_buffers("", &mut |_, b| {
            b.iter_mut().for_each(|v| *v = 1.0 + 0.2 * rng.uniform())
        });
        let x = randn(&mut rng, n * d);
        check_layer(
            &mut bn,
            &x,
            n * d,
            5,
            move |l, x| {
                let mut y = vec![0.0; n * d];
                l.forward(x, n, &mut y, train);
                y
            },
            move |l, x, dy, dx| {
                let mut y = vec![0.0; n * d];
                l.forward(x, n, &mut y, train);
                l.backward(x, dy, dx, n);
            },
        );
    }
}

#[test]
fn batchnorm_normalises_and_tracks_running_stats() {
    let mut rng = Rng::new(6);
    let (n, d) = (64, 2);
    let x: Vec<f64> = (0..n * d)
        .map(|i| 3.0 + 2.0 * rng.normal() + (i % 2) as f64)
        .collect();
    let mut bn = BatchNorm::<f64>::new(d);
    let mut y = vec![0.0; n * d];
    bn.forward(&x, n, &mut y, true);
    for j in 0..d {
        let col: Vec<f64> = (0..n).map(|i| y[i * d + j]).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 1e-9 && (var - 1.0).abs() < 1e-3);
        // One update from (0, 1) with momentum 0.99.
        let bmean = (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64;
        assert!((bn.running_mean()[j] - 0.01 * bmean).abs() < 1e-12);
    }
}

fn check_gate(act: GateActivation, hidden: &[usize]) {
    let (n, ni, e) = (5, 4, 3);
    let mut rng = Rng::new(7);
    let mut gate = Gate::<f64>::new(ni, hidden, e, act, &mut rng);
    let x = randn(&mut rng, n * ni);
    check_layer(
        &mut gate,
        &x,
        n * e,
        8,
        |g, x| g.forward(x, n, true).to_vec(),
        |g, x, dy, dx| {
            g.forward(x, n, true);
            g.backward(x, dy, Some(dx), n);
        },
    );
}

#[test]
fn gate_softmax_gradients() {
    check_gate(GateActivation::Softmax, &[]);
    check_gate(GateActivation::Softmax, &[6]);
}

#[test]
fn gate_sigmoid_over_n_gradients() {
    check_gate(GateActivation::SigmoidOverN, &[]);
    check_gate(GateActivation::SigmoidOverN, &[6]);
}

#[test]
fn gate_weights_are_well_formed() {
    let mut rng = Rng::new(9);
    let x = randn(&mut rng, 4 * 5);
    let mut soft = Gate::<f64>::new(5, &[], 4, GateActivation::Softmax, &mut rng);
    for row in soft.forward(&x, 4, false).chunks(4) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    let mut sig = Gate::<f64>::new(5, &[], 4, GateActivation::SigmoidOverN, &mut rng);
    assert!(sig
        .forward(&x, 4, false)
        .iter()
        .all(|&w| w > 0.0 && w < 0.25));
}

#[test]
fn gated_sum_gradients() {
    let (n, e, d) = (3, 4, 5);
    let mut rng = Rng::new(10);
    let g = randn(&mut rng, n * e);
    let x = randn(&mut rng, n * e * d);
    let r = randn(&mut rng, n * d);
    let fwd = |g: &[f64], x: &[f64]| {
        let mut out = vec![0.0; n * d];
        gated_sum_forward(g, x, n, e, d, &mut out);
        dot(&out, &r)
    };
    let (mut dg, mut dx) = (vec![0.0; n * e], vec![0.0; n * e * d]);
    gated_sum_backward(&g, &x, &r, n, e, d, &mut dg, &mut dx);
    let num_g = numeric_grad(&mut g.clone(), |gv| fwd(gv, &x));
    let num_x = numeric_grad(&mut x.clone(), |xv| fwd(&g, xv));
    compare("dg", &dg, &num_g, tol()).unwrap();
    compare("dx", &dx, &num_x, tol()).unwrap();
}

#[test]
fn mlp_gradients_with_and_without_batch_norm() {
    for (bn, last) in [
        (false, Activation::Identity),
        (true, Activation::Relu),
        (true, Activation::Identity),
    ] {
        let (n, ni) = (6, 5);
        let mut rng = Rng::new(11);
        let mut mlp = Mlp::<f64>::new(ni, &[7, 4, 3], last, bn, &mut rng);
        let x = randn(&mut rng, n * ni);
        check_layer(
            &mut mlp,
            &x,
            n * 3,
            12,
            |m, x| m.forward(x, n, true).to_vec(),
            |m, x, dy, dx| {
                m.forward(x, n, true);
                m.backward(x, dy, Some(dx), n);
            },
        );
    }
}

#[test]
fn expert_bank_gradients() {
    for (bn, widths) in [(false, vec![5, 4]), (true, vec![6, 5, 4]), (false, vec![3])] {
        let (n, ni, e) = (5, 7, 3);
        let mut rng = Rng::new(13);
        let mut bank = ExpertBank::<f64>::new(ni, e, &widths, Activation::Relu, bn, &mut rng);
        let x = randn(&mut rng, n * ni);
        let d = *widths.last().unwrap();
        check_layer(
            &mut bank,
            &x,
            n * e * d,
            14,
            |b, x| b.forward(x, n, true).to_vec(),
            |b, x, dy, dx| {
                b.forward(x, n, true);
                b.backward(x, dy, Some(dx), n);
            },
        );
    }
}

#[test]
fn expert_bank_matches_separate_experts() {
    // The fused first layer must compute exactly what E separate MLPs would.
    let (n, ni, e, widths) = (4, 6, 3, [5, 2]);
    let mut rng = Rng::new(15);
    let mut bank = ExpertBank::<f64>::new(ni, e, &widths, Activation::Relu, false, &mut rng);
    let x = randn(&mut rng, n * ni);
    let out = bank.forward(&x, n, false).to_vec();
    let mut w0 = Vec::new();
    let mut later = Vec::new();
    bank.visit_params("", &mut |name, p, _| {
        if name.starts_with("layer0.") {
            w0.push(p.to_vec());
        } else {
            later.push(p.to_vec());
        }
    });
    let (w, b) = (&w0[0], &w0[1]);
    for k in 0..e {
        let (w1, b1) = (&later[2 * k], &later[2 * k + 1]);
        for i in 0..n {
            let h: Vec<f64> = (0..5)
                .map(|c| {
                    let col = k * 5 + c;
                    let s: f64 = (0..ni).map(|j| x[i * ni + j] * w[j * e * 5 + col]).sum();
                    (s + b[col]).max(0.0)
                })
                .collect();
            for c in 0..2 {
                let s: f64 = (0..5).map(|j| h[j] * w1[j * 2 + c]).sum();
                let want = (s + b1[c]).max(0.0);
                assert!((out[i * e * 2 + k * 2 + c] - want).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn matmul_matches_naive_for_all_transposes() {
    let mut rng = Rng::new(16);
    let (m, n, k) = (5, 7, 3);
    for ta in [false, true] {
        for tb in [false, true] {
            let lda = if ta { m + 2 } else { k + 1 };
            let ldb = if tb { k + 3 } else { n + 1 };
            let a = randn(&mut rng, if ta { k * lda } else { m * lda });
            let b = randn(&mut rng, if tb { n * ldb } else { k * ldb });
            let ldc = n + 2;
            let c0 = randn(&mut rng, m * ldc);
            let mut c = c0.clone();
            matmul(m, n, k, 0.5, &a, lda, ta, &b, ldb, tb, 2.0, &mut c, ldc);
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k)
                        .map(|p| {
                            let av = if ta { a[p * lda + i] } else { a[i * lda + p] };
                            let bv = if tb { b[j * ldb + p] } else { b[p * ldb + j] };
                            av * bv
                        })
                        .sum();
                    let want = 0.5 * s + 2.0 * c0[i * ldc + j];
                    assert!((c[i * ldc + j] - want).abs() < 1e-12, "ta {ta} tb {tb}");
                }
            }
        }
    }
}

#[test]
fn threaded_matmul_is_deterministic_and_correct() {
    mfh_nn::init_thread_pool(2);
    mfh_nn::set_threads(2);
    let mut rng = Rng::new(17);
    // Row split (m ≥ n) and column split (m < n), with transposes and strides.
    for (m, n, k, ta, tb) in [(300, 257, 113, false, false), (70, 530, 90, true, true)] {
        let (lda, ldb) = (if ta { m } else { k } + 3, if tb { k } else { n } + 5);
        let a: Vec<f64> = (0..(if ta { k } else { m }) * lda)
            .map(|_| rng.normal())
            .collect();
        let b: Vec<f64> = (0..(if tb { n } else { k }) * ldb)
            .map(|_| rng.normal())
            .collect();
        let run = || {
            let mut c = vec![1.0f64; m * n];
            matmul(m, n, k, 1.0, &a, lda, ta, &b, ldb, tb, 0.5, &mut c, n);
            c
        };
        let first = run();
        for _ in 0..3 {
            assert_eq!(run(), first);
        }
        for (i, j) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3), (17, n - 2)] {
            let s: f64 = (0..k)
                .map(|p| {
                    let av = if ta { a[p * lda + i] } else { a[i * lda + p] };
                    let bv = if tb { b[j * ldb + p] } else { b[p * ldb + j] };
                    av * bv
                })
                .sum();
            assert!((first[i * n + j] - (s + 0.5)).abs() < 1e-9);
        }
    }
}

#[test]
fn adam_matches_hand_computation_for_two_steps() {
    let mut rng = Rng::new(18);
    let mut lin = Linear::<f64>::new(1, 1, Activation::Identity, &mut rng);
    lin.params_mut().copy_from_slice(&[0.5, -0.2]);
    let (lr, b1, b2, eps, wd) = (0.1, 0.9, 0.999, 1e-8, 0.01);
    let mut adam = Adam::<f64>::new(b1, b2, eps, wd);
    let grads = [[0.3, -0.4], [-0.1, 0.2]];
    let mut want = [0.5f64, -0.2];
    let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
    for (t, g) in grads.iter().enumerate() {
        lin.visit_params("", &mut |name, _, gr| {
            gr[0] = if name == "w" { g[0] } else { g[1] }
        });
        adam.step(&mut lin, lr);
        let t = (t + 1) as i32;
        for i in 0..2 {
            want[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mhat = m[i] / (1.0 - b1.powi(t));
            let vhat = v[i] / (1.0 - b2.powi(t));
            want[i] -= lr * mhat / (vhat.sqrt() + eps);
        }
        for (got, w) in lin.params().iter().zip(&want) {
            assert!((got - w).abs() < 1e-9, "step {t}");
        }
    }
    let (steps, ms, vs) = adam.state();
    assert_eq!(steps, 2);
    assert!((ms[0][0] - m[0]).abs() < 1e-15 && (vs[1][0] - v[1]).abs() < 1e-15);
}

#[test]
fn adam_state_round_trips() {
    let mut rng = Rng::new(19);
    let mut a = Mlp::<f64>::new(3, &[4, 2], Activation::Identity, false, &mut rng);
    let mut b = a.clone();
    let mut opt_a = Adam::<f64>::default();
    let x = randn(&mut rng, 2 * 3);
    let step = |m: &mut Mlp<f64>, opt: &mut Adam<f64>| {
        m.zero_grad();
        m.forward(&x, 2, true);
        m.backward(&x, &mut [1.0; 4], None, 2);
        opt.step(m, 0.01);
    };
    step(&mut a, &mut opt_a);
    step(&mut b, &mut Adam::default());
    let (s, m, v) = opt_a.state();
    let mut opt_b = Adam::<f64>::default();
    opt_b.set_state(&mut b, s, m.to_vec(), v.to_vec()).unwrap();
    assert!(opt_b.set_state(&mut b, s, vec![], vec![]).is_err());
    opt_b.set_state(&mut b, s, m.to_vec(), v.to_vec()).unwrap();
    step(&mut a, &mut opt_a);
    step(&mut b, &mut opt_b);
    assert_eq!(a.layers()[0].params(), b.layers()[0].params());
}

#[test]
fn f32_and_f64_forward_agree() {
    let (n, ni) = (16, 20);
    let mut m64 =
        ExpertBank::<f64>::new(ni, 3, &[12, 6], Activation::Relu, true, &mut Rng::new(20));
    let mut m32 =
        ExpertBank::<f32>::new(ni, 3, &[12, 6], Activation::Relu, true, &mut Rng::new(20));
    let x64 = randn(&mut Rng::new(21), n * ni);
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    let y64 = m64.forward(&x64, n, true).to_vec();
    let y32 = m32.forward(&x32, n, true);
    for (a, &b) in y64.iter().zip(y32) {
        assert!((a - b as f64).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

#[test]
fn param_names_and_counts() {
    let mut rng = Rng::new(22);
    let mut bank = ExpertBank::<f64>::new(4, 2, &[3, 2], Activation::Relu, true, &mut rng);
    let mut names = Vec::new();
    bank.visit_params("experts.", &mut |n, p, g| {
        assert_eq!(p.len(), g.len());
        names.push(n.to_string())
    });
    assert_eq!(names[0], "experts.layer0.w");
    assert!(names.contains(&"experts.1.layer1.w".to_string()));
    assert!(names.contains(&"experts.bn0.gamma".to_string()));
    let want = 4 * 6 + 6 + 2 * (3 * 2 + 2) + 2 * (6 + 4);
    assert_eq!(bank.num_params(), want);
    assert_eq!(bank.param_count(), want);
    let mut bufs = Vec::new();
    bank.visit_buffers("", &mut |n, _| bufs.push(n.to_string()));
    assert_eq!(
        bufs,
        [
            "bn0.running_mean",
            "bn0.running_var",
            "bn1.running_mean",
            "bn1.running_var"
        ]
    );
}

#[test]
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the strided layout
fn threaded_elementwise_kernels_match_scalar_reference() {
    use mfh_nn::adam::adam_update;
    use mfh_nn::kernels::{bias_act_rows, col_sums_acc, relu_mask_rows};
    mfh_nn::init_thread_pool(2);
    mfh_nn::set_threads(2);
    let mut rng = Rng::new(23);
    // Large enough to take the threaded paths; odd sizes and strides for the edges.
    let (n, w, ld) = (301, 333, 340);
    let y: Vec<f64> = (0..n * ld).map(|_| rng.normal()).collect();
    let dy0: Vec<f64> = (0..n * ld).map(|_| rng.normal()).collect();
    let bias: Vec<f64> = (0..w).map(|_| rng.normal()).collect();

    let mut dy = dy0.clone();
    relu_mask_rows(&mut dy, ld, &y, ld, n, w);
    let mut b = y.clone();
    bias_act_rows(&mut b, ld, n, &bias, true);
    let mut acc = vec![0.5f64; w];
    col_sums_acc(&mut acc, &dy0, ld, n);
    for i in 0..n {
        for j in 0..w {
            let k = i * ld + j;
            let want = if y[k] > 0.0 { dy0[k] } else { 0.0 };
            assert_eq!(dy[k], want);
            assert_eq!(b[k], (y[k] + bias[j]).max(0.0));
        }
        // Padding between rows is never touched.
        for j in w..ld.min(n * ld - i * ld) {
            assert_eq!(dy[i * ld + j], dy0[i * ld + j]);
            assert_eq!(b[i * ld + j], y[i * ld + j]);
        }
    }
    for (j, &a) in acc.iter().enumerate() {
        let mut s = 0.5;
        for i in 0..n {
            s += dy0[i * ld + j];
        }
        assert_eq!(a, s);
    }

    let (e, d) = (5, 67);
    let g: Vec<f64> = (0..n * e).map(|_| rng.normal()).collect();
    let x: Vec<f64> = (0..n * e * d).map(|_| rng.normal()).collect();
    let dout: Vec<f64> = (0..n * d).map(|_| rng.normal()).collect();
    let mut out = vec![0.0; n * d];
    gated_sum_forward(&g, &x, n, e, d, &mut out);
    let (mut dg, mut dx) = (vec![0.25; n * e], vec![0.75; n * e * d]);
    gated_sum_backward(&g, &x, &dout, n, e, d, &mut dg, &mut dx);
    for i in 0..n {
        for c in 0..d {
            let mut s = 0.0;
            for j in 0..e {
                s += g[i * e + j] * x[i * e * d + j * d + c];
            }
            assert!((out[i * d + c] - s).abs() < 1e-12);
        }
        for j in 0..e {
            let mut s = 0.0;
            for c in 0..d {
                s += dout[i * d + c] * x[i * e * d + j * d + c];
                let k = i * e * d + j * d + c;
                assert_eq!(dx[k], 0.75 + g[i * e + j] * dout[i * d + c]);
            }
            assert!((dg[i * e + j] - 0.25 - s).abs() < 1e-12);
        }
    }

    let len = 100_003;
    let p0: Vec<f64> = (0..len).map(|_| rng.normal()).collect();
    let gr: Vec<f64> = (0..len).map(|_| rng.normal()).collect();
    let (mut p, mut m, mut v) = (p0.clone(), vec![0.1; len], vec![0.2; len]);
    adam_update(
        &mut p, &gr, &mut m, &mut v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.001,
    );
    for i in 0..len {
        let mi = 0.9 * 0.1 + 0.1 * gr[i];
        let vi = 0.999 * 0.2 + 0.001 * gr[i] * gr[i];
        let pi =
            p0[i] * (1.0 - 1e-3 * 0.01) - (1e-3 / 0.1) * mi / (vi.sqrt() / 0.001f64.sqrt() + 1e-8);
        assert!((m[i] - mi).abs() < 1e-12);
        assert!((v[i] - vi).abs() < 1e-12);
        assert!((p[i] - pi).abs() < 1e-12);
    }
}

/// Every gradient of a module, flat in visiting order.
fn all_grads<M: Module<f64>>(m: &mut M) -> Vec<f64> {
    let mut out = Vec::new();
    m.visit_params("", &mut |_, _, g| out.extend_from_slice(g));
    out
}

#[test]
fn fused_gated_sums_equal_one_call_per_gate_bit_for_bit() {
    use mfh_nn::{gated_sums_backward, gated_sums_forward};
    for threads in [1, 2] {
        mfh_nn::init_thread_pool(2);
        mfh_nn::set_threads(threads);
        let mut rng = Rng::new(41);
        // Large enough for the threaded path; odd sizes for the block edges.
        let (n, e, d, k) = (203, 5, 67, 3);
        let gs = n * e + 7; // gate blocks at a stride larger than n·e
        let g = randn(&mut rng, k * gs);
        let x = randn(&mut rng, n * e * d);
        let douts: Vec<Vec<f64>> = (0..k).map(|_| randn(&mut rng, n * d)).collect();
        let mut outs = vec![vec![9.0; n * d]; k];
        gated_sums_forward(&g, gs, &x, n, e, d, &mut outs);
        let mut dg = vec![9.0; k * gs];
        let mut dx = vec![9.0; n * e * d];
        gated_sums_backward(&g, gs, &x, &douts, n, e, d, &mut dg, &mut dx);
        let mut want_dx = vec![0.0; n * e * d];
        for kk in 0..k {
            let gk = &g[kk * gs..kk * gs + n * e];
            let mut out = vec![0.0; n * d];
            gated_sum_forward(gk, &x, n, e, d, &mut out);
            assert_eq!(outs[kk], out, "output {kk}, {threads} threads");
            let mut want_dg = vec![0.0; n * e];
            gated_sum_backward(gk, &x, &douts[kk], n, e, d, &mut want_dg, &mut want_dx);
            assert_eq!(&dg[kk * gs..kk * gs + n * e], &want_dg[..], "dg {kk}");
            // The padding between gate blocks is left alone.
            assert!(dg[kk * gs + n * e..(kk + 1) * gs.min(dg.len())]
                .iter()
                .all(|&v| v == 9.0));
        }
        assert_eq!(dx, want_dx, "dx, {threads} threads");
    }
}

#[test]
fn fused_relu_mask_and_column_sums_equal_the_separate_kernels() {
    use mfh_nn::kernels::{col_sums_acc, relu_mask_col_sums, relu_mask_rows};
    for threads in [1, 2] {
        mfh_nn::init_thread_pool(2);
        mfh_nn::set_threads(threads);
        let mut rng = Rng::new(43);
        let (n, w, ld) = (301, 333, 340);
        let y = randn(&mut rng, n * ld);
        let dy0 = randn(&mut rng, n * ld);
        for relu in [true, false] {
            let (mut a, mut b) = (dy0.clone(), dy0.clone());
            let (mut acc_a, mut acc_b) = (vec![0.5; w], vec![0.5; w]);
            relu_mask_col_sums(&mut a, ld, &y, ld, n, relu, &mut acc_a);
            if relu {
                relu_mask_rows(&mut b, ld, &y, ld, n, w);
            }
            col_sums_acc(&mut acc_b, &b, ld, n);
            assert_eq!(a, b, "relu {relu}, {threads} threads");
            assert_eq!(acc_a, acc_b, "relu {relu}, {threads} threads");
        }
    }
}

#[test]
fn gate_bank_matches_separate_gates() {
    use mfh_nn::GateBank;
    for act in [GateActivation::Softmax, GateActivation::SigmoidOverN] {
        let mut rng = Rng::new(47);
        let (n, ni, e, k) = (37, 11, 4, 3);
        let mut gates: Vec<Gate<f64>> = (0..k)
            .map(|_| Gate::new(ni, &[], e, act, &mut rng))
            .collect();
        let mut fused_gates = gates.clone();
        assert!(GateBank::fusable(&fused_gates));
        let x = randn(&mut rng, n * ni);
        let dp = randn(&mut rng, k * n * e);
        let mut bank = GateBank::default();
        let p = bank.forward(&fused_gates, &x, n).to_vec();
        let mut dx_fused = vec![0.5; n * ni];
        bank.backward(&mut fused_gates, &x, &dp, Some(&mut dx_fused), n);
        let mut dx = vec![0.5; n * ni];
        for (kk, gate) in gates.iter_mut().enumerate() {
            let w = gate.forward(&x, n, true).to_vec();
            let pk = &p[kk * n * e..(kk + 1) * n * e];
            assert!(w.iter().zip(pk).all(|(a, b)| (a - b).abs() < 1e-12));
            assert_eq!(bank.weights(kk, e), pk);
            gate.backward(&x, &dp[kk * n * e..(kk + 1) * n * e], Some(&mut dx), n);
            let (ga, gb) = (all_grads(gate), all_grads(&mut fused_gates[kk]));
            assert!(ga.iter().zip(&gb).all(|(a, b)| (a - b).abs() < 1e-12));
        }
        assert!(dx.iter().zip(&dx_fused).all(|(a, b)| (a - b).abs() < 1e-12));
    }
    // Gates with hidden layers, or over different expert counts, are not fused.
    let mut rng = Rng::new(48);
    let hidden: Vec<Gate<f64>> = (0..2)
        .map(|_| Gate::new(5, &[3], 4, GateActivation::Softmax, &mut rng))
        .collect();
    assert!(!GateBank::fusable(&hidden));
    let mixed = vec![
        Gate::<f64>::new(5, &[], 4, GateActivation::Softmax, &mut rng),
        Gate::<f64>::new(5, &[], 3, GateActivation::Softmax, &mut rng),
    ];
    assert!(!GateBank::fusable(&mixed));
}
