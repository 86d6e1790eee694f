//! Row blocks on copies of the network ([`DataParallel`]) give the same logits, input
//! gradients and parameter gradients as the network on the whole batch.

mod common;

use common::{cells_for, masked_weights, randn, shape};
use mfh_model::{DataParallel, ModelSpec, MultiTaskModel};
use mfh_nn::Rng;

fn grads(net: &mut dyn MultiTaskModel<f64>) -> Vec<f64> {
    let mut out = Vec::new();
    net.visit_params("", &mut |_, _, g| out.extend_from_slice(g));
    out
}

fn close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-10 * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

fn check(spec_text: &str, sizes: &[usize], threads: usize) {
    mfh_nn::init_thread_pool(2);
    let spec: ModelSpec = toml::from_str(spec_text).unwrap();
    let g = shape(sizes);
    let (n, n_in) = (300, 7);
    let build = || mfh_model::build_model::<f64>(&spec, &g, n_in, 5);
    let mut whole = build().unwrap();
    let mut split = build().unwrap();
    let mut dp = DataParallel::default();
    let blocks = dp.blocks_for(split.as_mut(), n, threads);
    assert_eq!(blocks, threads.min(n / mfh_model::parallel::MIN_BLOCK_ROWS));
    let mut rng = Rng::new(11);
    let x = randn(&mut rng, n * n_in);
    let cells = cells_for(&g, n, &mut rng);
    let r = masked_weights(&g, &cells, &mut rng);
    // Two steps, with the parameters changed in between, so the copies must follow.
    for step in 0..2 {
        // Scoring (twice: the copies keep their parameters between passes) ...
        let want = whole.forward(&x, &cells, n, false).to_vec();
        for _ in 0..2 {
            let got = dp
                .forward(split.as_mut(), &build, &x, &cells, n, false, blocks)
                .to_vec();
            close("eval logits", &got, &want);
        }
        // ... then training.
        let want = whole.forward(&x, &cells, n, true).to_vec();
        let got = dp
            .forward(split.as_mut(), &build, &x, &cells, n, true, blocks)
            .to_vec();
        close("logits", &got, &want);
        whole.zero_grad();
        split.zero_grad();
        let (mut dx_w, mut dx_s) = (vec![0.5; n * n_in], vec![0.5; n * n_in]);
        whole.backward(&x, &cells, &r, Some(&mut dx_w), n);
        dp.backward(split.as_mut(), &x, &cells, &r, Some(&mut dx_s), n);
        close("dx", &dx_s, &dx_w);
        close(
            "parameter gradients",
            &grads(split.as_mut()),
            &grads(whole.as_mut()),
        );
        // A plain SGD step on both.
        for net in [&mut whole, &mut split] {
            net.visit_params("", &mut |_, p, g| {
                for (p, g) in p.iter_mut().zip(g.iter()) {
                    *p -= 0.1 * (step as f64 + 1.0) * g;
                }
            });
        }
        dp.params_changed();
    }
    // Told nothing, the copies keep the parameters they had: a change made without
    // `params_changed` reaches only the main network's block.
    split.visit_params("", &mut |_, p, _| p.iter_mut().for_each(|v| *v += 0.25));
    whole.visit_params("", &mut |_, p, _| p.iter_mut().for_each(|v| *v += 0.25));
    let want = whole.forward(&x, &cells, n, false).to_vec();
    let stale = dp
        .forward(split.as_mut(), &build, &x, &cells, n, false, blocks)
        .to_vec();
    let nt = want.len() / n;
    let first = n.div_ceil(blocks) * nt;
    close("main block", &stale[..first], &want[..first]);
    assert!(
        stale[first..] != want[first..],
        "the copies took parameters unasked"
    );
    dp.params_changed();
    let fresh = dp
        .forward(split.as_mut(), &build, &x, &cells, n, false, blocks)
        .to_vec();
    close("refreshed logits", &fresh, &want);
}

#[test]
fn mmoe_in_row_blocks_equals_the_whole_batch() {
    let spec = "type = \"mmoe\"\nexperts = 3\nexpert_layers = [6, 5]\ntower = [4]\n";
    check(spec, &[3], 2);
    check(spec, &[3], 3);
}

#[test]
fn routed_mfh_in_row_blocks_equals_the_whole_batch() {
    let spec = "type = \"mfh\"\ntrees = \"auto\"\ntower = [4]\n\
                level1 = { type = \"cgc\", task_experts = 1, shared_experts = 1, expert_layers = [5] }\n\
                level2 = { type = \"cgc\", task_experts = 1, shared_experts = 1, expert_layers = [4] }\n";
    check(spec, &[2, 2, 3], 2);
}

#[test]
fn networks_with_batch_norm_are_not_split() {
    let spec: ModelSpec = toml::from_str(
        "type = \"mmoe\"\nexperts = 2\nexpert_layers = [4]\ntower = [3]\nbatch_norm = true\n",
    )
    .unwrap();
    let mut net = mfh_model::build_model::<f64>(&spec, &shape(&[2]), 5, 1).unwrap();
    let mut dp = DataParallel::<f64>::default();
    assert_eq!(dp.blocks_for(net.as_mut(), 1024, 2), 1);
    // Nor are small batches.
    let plain: ModelSpec =
        toml::from_str("type = \"mmoe\"\nexperts = 2\nexpert_layers = [4]\ntower = [3]\n").unwrap();
    let mut net = mfh_model::build_model::<f64>(&plain, &shape(&[2]), 5, 1).unwrap();
    let mut dp = DataParallel::<f64>::default();
    assert_eq!(dp.blocks_for(net.as_mut(), 100, 2), 1);
}
