//! Every elementwise loop gives the same bits on every kernel path this CPU runs
//! (`MFH_KERNEL`'s avx512, avx2, portable), threaded and not; a whole MLP training step
//! gives equal bits on the two own tiles' paths and agrees with the portable path (the
//! `gemm` crate) within float rounding. Each test prints the paths it ran.

use mfh_cpu::Path;
use mfh_nn::adam::adam_update;
use mfh_nn::batchnorm::{bn_backward_dx, bn_backward_sums, col_affine, col_mean_var};
use mfh_nn::gate::{sigmoid_over_n, sigmoid_over_n_backward, softmax_backward_rows, softmax_rows};
use mfh_nn::kernels::{bias_act_rows, col_sums_acc, relu_mask_col_sums, relu_mask_rows};
use mfh_nn::{
    gated_sum_backward, gated_sum_forward, gated_sums_backward, gated_sums_forward, Activation,
    Adam, Mlp, Module, Rng,
};

fn randn(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn paths() -> Vec<Path> {
    let p = mfh_cpu::supported();
    println!("{}", mfh_cpu::describe());
    println!("testing kernel paths: {p:?}");
    assert!(p.contains(&Path::Portable));
    p
}

/// Every output of every elementwise loop, as bits, for one path.
fn elementwise_outputs(path: Path, threads: usize) -> Vec<Vec<u32>> {
    mfh_nn::init_thread_pool(2);
    mfh_nn::set_threads(threads);
    let mut rng = Rng::new(71);
    let mut out = Vec::new();
    mfh_cpu::with_path(path, || {
        // Large enough for the threaded branches; odd sizes for vector tails.
        let (n, w, ld) = (301, 333, 340);
        let y = randn(&mut rng, n * ld);
        let dy0 = randn(&mut rng, n * ld);
        let bias = randn(&mut rng, w);
        let mut b = y.clone();
        bias_act_rows(&mut b, ld, n, &bias, true);
        out.push(bits(&b));
        let mut b = y.clone();
        bias_act_rows(&mut b, ld, n, &bias, false);
        out.push(bits(&b));
        let mut dy = dy0.clone();
        relu_mask_rows(&mut dy, ld, &y, ld, n, w);
        out.push(bits(&dy));
        let mut acc = vec![0.5f32; w];
        col_sums_acc(&mut acc, &dy0, ld, n);
        out.push(bits(&acc));
        let mut dy = dy0.clone();
        let mut acc = vec![0.25f32; w];
        relu_mask_col_sums(&mut dy, ld, &y, ld, n, true, &mut acc);
        out.push(bits(&dy));
        out.push(bits(&acc));

        let (e, d, k) = (5, 67, 3);
        let g = randn(&mut rng, k * n * e);
        let x = randn(&mut rng, n * e * d);
        let dout = randn(&mut rng, n * d);
        let mut o = vec![0f32; n * d];
        gated_sum_forward(&g, &x, n, e, d, &mut o);
        out.push(bits(&o));
        let (mut dg, mut dx) = (vec![0.25f32; n * e], vec![0.75f32; n * e * d]);
        gated_sum_backward(&g, &x, &dout, n, e, d, &mut dg, &mut dx);
        out.push(bits(&dg));
        out.push(bits(&dx));
        let mut outs = vec![vec![0f32; n * d]; k];
        gated_sums_forward(&g, n * e, &x, n, e, d, &mut outs);
        outs.iter().for_each(|o| out.push(bits(o)));
        let douts: Vec<Vec<f32>> = (0..k).map(|_| randn(&mut rng, n * d)).collect();
        let (mut dg, mut dx) = (vec![0f32; k * n * e], vec![0f32; n * e * d]);
        gated_sums_backward(&g, n * e, &x, &douts, n, e, d, &mut dg, &mut dx);
        out.push(bits(&dg));
        out.push(bits(&dx));

        let z = randn(&mut rng, n * e);
        let mut p = vec![0f32; n * e];
        softmax_rows(&z, &mut p, n, e);
        out.push(bits(&p));
        let mut dz = vec![0f32; n * e];
        softmax_backward_rows(&p, &g[..n * e], &mut dz, n, e);
        out.push(bits(&dz));
        sigmoid_over_n(&z, &mut p, e);
        out.push(bits(&p));
        sigmoid_over_n_backward(&p, &g[..n * e], &mut dz, e);
        out.push(bits(&dz));

        let (mut mean, mut var) = (vec![0f32; w], vec![0f32; w]);
        col_mean_var(&y, ld, n, &mut mean, &mut var);
        out.push(bits(&mean));
        out.push(bits(&var));
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
        let mut yy = vec![0f32; n * w];
        col_affine(&y, ld, n, &inv_std, &mean, &mut yy, w);
        out.push(bits(&yy));
        let (mut s1, mut s2) = (vec![0f32; w], vec![0f32; w]);
        bn_backward_sums(&y, ld, &dy0, ld, n, &mean, &inv_std, &mut s1, &mut s2);
        out.push(bits(&s1));
        out.push(bits(&s2));
        let mut dxx = vec![0.5f32; n * w];
        bn_backward_dx(
            &y, ld, &dy0, ld, n, &mean, &inv_std, &bias, &s1, &s2, &mut dxx, w, true,
        );
        out.push(bits(&dxx));

        let len = 100_003;
        let mut p = randn(&mut rng, len);
        let gr = randn(&mut rng, len);
        let (mut m, mut v) = (vec![0.1f32; len], vec![0.2f32; len]);
        adam_update(
            &mut p, &gr, &mut m, &mut v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.001,
        );
        out.push(bits(&p));
        out.push(bits(&m));
        out.push(bits(&v));
    });
    mfh_nn::set_threads(1);
    out
}

#[test]
fn elementwise_loops_give_equal_bits_on_every_path() {
    for threads in [1, 2] {
        let want = elementwise_outputs(Path::Portable, threads);
        for path in paths() {
            println!("path {path}, {threads} threads");
            let got = elementwise_outputs(path, threads);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.len(), w.len(), "output {i}");
                assert!(
                    g == w,
                    "{path}, {threads} threads: output {i} differs from portable"
                );
            }
        }
    }
}

/// Adam's learning rate in [`mlp_step`].
const LR: f32 = 1e-2;

/// Forward, backward and two Adam steps of a ReLU MLP with a batch-norm layer; returns
/// the first step's outputs and input gradient, and the parameters after both steps.
fn mlp_step(path: Path, threads: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    mfh_nn::init_thread_pool(2);
    mfh_nn::set_threads(threads);
    let r = mfh_cpu::with_path(path, || {
        let mut rng = Rng::new(5);
        let (n, n_in) = (300, 61);
        // 80 k parameters in six slices: Adam takes its parallel pass at 2 threads.
        let mut mlp = Mlp::<f32>::new(n_in, &[300, 200, 9], Activation::Identity, true, &mut rng);
        let x = randn(&mut rng, n * n_in);
        let mut adam = Adam::<f32>::default();
        let (mut y, mut dx) = (Vec::new(), vec![0f32; n * n_in]);
        for s in 0..2 {
            mlp.zero_grad();
            let out = mlp.forward(&x, n, true).to_vec();
            let mut dy: Vec<f32> = out.iter().map(|v| v * 0.01).collect();
            let mut d = vec![0f32; n * n_in];
            mlp.backward(&x, &mut dy, Some(&mut d), n);
            if s == 0 {
                (y, dx) = (out, d);
            }
            adam.step(&mut mlp, LR);
        }
        let mut params = Vec::new();
        mlp.visit_params("", &mut |_, p, _| params.extend_from_slice(p));
        (y, dx, params)
    });
    mfh_nn::set_threads(1);
    r
}

/// On the own tiles' paths a training step does not depend on the thread count: row
/// splits of products, column splits of sums and Adam's pieces give the same bits.
#[test]
fn mlp_training_steps_equal_at_one_and_two_threads() {
    for p in paths().into_iter().filter(|&p| p != Path::Portable) {
        println!("path {p}");
        let (one, two) = (mlp_step(p, 1), mlp_step(p, 2));
        assert_eq!(bits(&one.0), bits(&two.0), "{p}: outputs");
        assert_eq!(bits(&one.1), bits(&two.1), "{p}: dx");
        assert_eq!(bits(&one.2), bits(&two.2), "{p}: parameters after Adam");
    }
}

#[test]
fn mlp_training_steps_agree_across_paths() {
    for threads in [1, 2] {
        let portable = mlp_step(Path::Portable, threads);
        let own: Vec<_> = paths()
            .into_iter()
            .filter(|&p| p != Path::Portable)
            .map(|p| (p, mlp_step(p, threads)))
            .collect();
        for (p, r) in &own {
            println!("path {p}, {threads} threads");
            // The own tiles: equal bits whichever of them ran.
            let first = &own[0].1;
            assert_eq!(bits(&r.0), bits(&first.0), "{p}: outputs");
            assert_eq!(bits(&r.1), bits(&first.1), "{p}: dx");
            assert_eq!(bits(&r.2), bits(&first.2), "{p}: parameters");
            // Against the gemm crate: float rounding only.
            for (name, a, b) in [("y", &r.0, &portable.0), ("dx", &r.1, &portable.1)] {
                assert_eq!(a.len(), b.len(), "{name}");
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    worst <= 1e-4 * scale,
                    "{p} vs portable, {name}: differs by {worst} (scale {scale})"
                );
            }
            // Adam turns rounding-sized gradient differences near zero into steps of up
            // to about lr each, so after two steps parameters agree within 2·2·lr.
            assert_eq!(r.2.len(), portable.2.len());
            let worst =
                r.2.iter()
                    .zip(&portable.2)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= 4.0 * LR,
                "{p} vs portable, parameters: differ by {worst}"
            );
        }
    }
}
