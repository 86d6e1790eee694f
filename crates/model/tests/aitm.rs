//! AITM transfers between towers: finite-difference gradients (flat nets and MFH trees,
//! f64), routed against dense computation, that a transfer carries information (and
//! only along its pairs), stable names and initialisation, and refused pairs.

use mfh_model::{
    build_model, build_model_with_transfers, FlatSpec, GridShape, MmoeShape, ModelSpec,
    MultiTaskModel, SharedBottomShape, TreeNet, UnitSpec,
};
use mfh_nn::gradcheck::{check_module, compare, numeric_grad, Tolerance};
use mfh_nn::{Module, Rng};

mod common;
use common::*;

fn names(net: &mut dyn MultiTaskModel<f64>) -> Vec<String> {
    let mut out = Vec::new();
    net.visit_params("", &mut |name, _, _| out.push(name.to_string()));
    out
}

/// Loss Σ r·logits; returns (loss, parameter gradients by name, dx).
fn run(
    net: &mut dyn MultiTaskModel<f64>,
    x: &[f64],
    cells: &[u32],
    r: &[f64],
    n: usize,
) -> (f64, NamedGrads, Vec<f64>) {
    net.zero_grad();
    let loss = dot(net.forward(x, cells, n, true), r);
    let mut dx = vec![0.0; n * net.n_in()];
    net.backward(x, cells, r, Some(&mut dx), n);
    let mut grads = Vec::new();
    net.visit_params("", &mut |name, _, g| {
        grads.push((name.to_string(), g.to_vec()))
    });
    (loss, grads, dx)
}

/// Every parameter gradient and the input gradient against central differences, after
/// moving the parameters off their initial values (zero biases put ReLUs on their kink).
fn fd_check(mut net: Box<dyn MultiTaskModel<f64>>, g: &GridShape, masked: bool) {
    let mut rng = Rng::new(8);
    net.visit_params("", &mut |_, p, _| {
        p.iter_mut().for_each(|v| *v += 0.1 * rng.normal())
    });
    let n_in = net.n_in();
    let n = 2 * g.n_cells();
    let x = randn(&mut rng, n * n_in);
    let cells = cells_for(g, n, &mut rng);
    let r = if masked {
        masked_weights(g, &cells, &mut rng)
    } else {
        randn(&mut rng, n * g.n_tasks())
    };
    let (_, grads, dx) = run(net.as_mut(), &x, &cells, &r, n);
    // The check must exercise live transfers, not only dead ReLUs.
    assert!(
        grads
            .iter()
            .any(|(name, g)| name.ends_with(".transfer.w") && g.iter().any(|&v| v != 0.0)),
        "no transfer has a gradient"
    );
    let tol = Tolerance::default();
    check_module(
        net.as_mut(),
        |m| dot(m.forward(&x, &cells, n, true), &r),
        tol,
    )
    .unwrap();
    let num = numeric_grad(&mut x.clone(), |xv| {
        dot(net.forward(xv, &cells, n, true), &r)
    });
    compare("dx", &dx, &num, tol).unwrap();
}

fn mmoe(tower: Vec<usize>, batch_norm: bool) -> ModelSpec {
    ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::Mmoe(MmoeShape {
            experts: 2,
            expert_layers: vec![5, 4],
            gate: Default::default(),
            gate_hidden: Vec::new(),
        }),
        tower,
        batch_norm,
    })
}

#[test]
fn flat_net_with_transfers_matches_finite_differences() {
    // 3 behaviours × 2 cells, a chain b0 → b1 → b2 in each cell; every row runs every
    // tower, so the logit gradient is dense.
    let g = shape(&[3, 2]);
    for batch_norm in [false, true] {
        let net =
            build_model_with_transfers(&mmoe(vec![3], batch_norm), &g, 5, 3, &[(0, 1), (1, 2)])
                .unwrap();
        fd_check(net, &g, false);
    }
    // No tower hidden layer: q is the tower's input (the shared bottom's output).
    let sb = ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::SharedBottom(SharedBottomShape { layers: vec![4] }),
        tower: vec![],
        batch_norm: false,
    });
    let net = build_model_with_transfers(&sb, &g, 5, 3, &[(2, 0)]).unwrap();
    fd_check(net, &g, false);
}

#[test]
fn mfh_with_transfers_matches_finite_differences() {
    let g = shape(&[3, 2, 2]);
    for (extra, pairs) in [
        ("", vec![(0, 1)]),
        (
            "bottom = [6]\nfusion = \"concat\"\ncondition = true\ntower_overrides = { \"user=u0\" = [5, 2] }",
            vec![(0, 1), (1, 2)],
        ),
    ] {
        let net = TreeNet::with_transfers(&tree_spec(extra), &g, 5, false, 6, &pairs).unwrap();
        fd_check(Box::new(net), &g, true);
    }
    // H-MTL split on a facet, dense.
    let net = TreeNet::with_transfers(
        &tree_spec("split = \"user\"\nrouting = false"),
        &g,
        5,
        true,
        6,
        &[(2, 1)],
    )
    .unwrap();
    fd_check(Box::new(net), &g, true);
}

#[test]
fn routed_equals_dense_with_transfers() {
    for (sizes, extra, pairs) in [
        (vec![3, 2, 2], "", vec![(0, 1)]),
        (
            vec![3, 2, 2],
            "tower_overrides = { \"user=u0\" = [5, 2] }",
            vec![(0, 1), (1, 2)],
        ),
        (
            vec![2, 3, 4],
            "bottom = [6]\nfusion = \"concat\"\ncondition = true",
            vec![(1, 0)],
        ),
    ] {
        let g = shape(&sizes);
        let n_in = 6;
        let mut rng = Rng::new(21);
        let n = 40;
        let x = randn(&mut rng, n * n_in);
        let cells = cells_for(&g, n, &mut rng);
        let r = masked_weights(&g, &cells, &mut rng);
        let build = |routing: bool| {
            let s = tree_spec(&format!("routing = {routing}\n{extra}"));
            TreeNet::<f64>::with_transfers(&s, &g, n_in, false, 4, &pairs).unwrap()
        };
        let (mut routed, mut dense) = (build(true), build(false));
        let (la, ga, dxa) = run(&mut routed, &x, &cells, &r, n);
        let (lb, gb, dxb) = run(&mut dense, &x, &cells, &r, n);
        let tol = Tolerance {
            atol: 1e-8,
            rtol: 1e-6,
        };
        compare("loss", &[la], &[lb], tol).unwrap();
        compare("dx", &dxa, &dxb, tol).unwrap();
        assert_eq!(ga.len(), gb.len());
        assert!(ga.iter().any(|(name, _)| name.contains(".ait.")));
        for ((na, a), (nb, b)) in ga.iter().zip(&gb) {
            assert_eq!(na, nb);
            compare(na, a, b, tol).unwrap();
            // Every AIT unit learns from the batch (all cells have rows). (A transfer's
            // ReLU may start dead on a cell's few rows at these tiny widths.)
            if na.contains(".ait.") {
                assert!(a.iter().any(|&v| v != 0.0), "{na} has no gradient");
            }
        }
    }
}

#[test]
fn transfer_carries_information_along_its_pair_only() {
    // Behaviours b0 → b1 in every cell of a 3 × 2 × 2 grid (4 cells, tasks b·4 + c).
    let g = shape(&[3, 2, 2]);
    let mut rng = Rng::new(3);
    let n = 12;
    let x = randn(&mut rng, n * 5);
    let cells = cells_for(&g, n, &mut rng);
    let nt = g.n_tasks();
    // Tower (b0, cell 1) is task 1; its pair's receiver (b1, cell 1) is task 5.
    for with_pair in [true, false] {
        let pairs = if with_pair { vec![(0, 1)] } else { vec![] };
        let mut net = TreeNet::with_transfers(&tree_spec(""), &g, 5, false, 2, &pairs).unwrap();
        let before = net.forward(&x, &cells, n, false).to_vec();
        net.visit_params("", &mut |name, p, _| {
            if name.starts_with("towers.1.layer0.") {
                p.iter_mut().for_each(|v| *v += 0.3);
            }
        });
        let after = net.forward(&x, &cells, n, false).to_vec();
        // Backward: a loss on task 5's logits alone trains tower 1 only through the pair.
        let mut r = vec![0.0; n * nt];
        for (i, &c) in cells.iter().enumerate() {
            if c == 1 {
                r[i * nt + 5] = 1.0;
            }
        }
        let (_, grads, _) = run(&mut net, &x, &cells, &r, n);
        let learns = grads
            .iter()
            .filter(|(name, _)| name.starts_with("towers.1."))
            .any(|(_, g)| g.iter().any(|&v| v != 0.0));
        assert_eq!(
            learns, with_pair,
            "pair {with_pair}: tower 1 learns from task 5"
        );
        for (i, &c) in cells.iter().enumerate() {
            for t in 0..nt {
                if t % g.n_cells() != c as usize {
                    continue;
                }
                let changed = (before[i * nt + t] - after[i * nt + t]).abs() > 1e-12;
                let expect = t == 1 || (with_pair && t == 5);
                assert_eq!(changed, expect, "pair {with_pair}: row {i} task {t}");
            }
        }
    }
}

#[test]
fn names_and_initial_towers_are_stable_without_transfers() {
    let g = shape(&[3, 2, 2]);
    let spec = ModelSpec::Mfh(tree_spec(""));
    let mut plain = build_model::<f64>(&spec, &g, 5, 9).unwrap();
    let mut aitm = build_model_with_transfers::<f64>(&spec, &g, 5, 9, &[(0, 2)]).unwrap();
    let plain_names = names(plain.as_mut());
    let aitm_names = names(aitm.as_mut());
    assert!(plain_names.contains(&"towers.11.layer1.w".to_string()));
    assert!(plain_names.iter().all(|n| !n.contains("ait")));
    // The extra names: one transfer and three AIT maps per receiver (b2, every cell).
    let extra: Vec<&String> = aitm_names
        .iter()
        .filter(|n| !plain_names.contains(n))
        .collect();
    let mut want = Vec::new();
    for t in 8..12 {
        for part in ["transfer", "ait.value", "ait.key", "ait.query"] {
            for wb in ["w", "b"] {
                want.push(format!("towers.{t}.{part}.{wb}"));
            }
        }
    }
    let mut got: Vec<String> = extra.into_iter().cloned().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // h = 3: four h × h maps with biases per receiver.
    assert_eq!(aitm.num_params() - plain.num_params(), 4 * 4 * (3 * 3 + 3));
    // Same seed: every shared parameter starts equal (transfers are drawn last).
    let mut a = Vec::new();
    plain.visit_params("", &mut |n, p, _| a.push((n.to_string(), p.to_vec())));
    let mut b = Vec::new();
    aitm.visit_params("", &mut |n, p, _| b.push((n.to_string(), p.to_vec())));
    for (name, p) in &a {
        let q = &b.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(p, q, "{name}");
    }
    assert!(
        aitm.describe().contains("AITM transfers: b0→b2"),
        "{}",
        aitm.describe()
    );
    assert!(!plain.describe().contains("AITM"));
    // A flat net too: with no pair, `build_model` and the flat `build` agree exactly.
    let flat = mmoe(vec![3], false);
    let mut f1 = build_model_with_transfers::<f64>(&flat, &g, 5, 1, &[]).unwrap();
    let mut f2 = mfh_model::build::<f64>(&flat, 5, 12, 1).unwrap();
    let xs = randn(&mut Rng::new(1), 4 * 5);
    let cells = [0u32, 1, 2, 3];
    // Every tower on every row (an eval pass over the grid runs a row's own cell's only).
    f1.set_cell_towers(false);
    let y1 = f1.forward(&xs, &cells, 4, false).to_vec();
    assert_eq!(y1, f2.forward(&xs, 4, false).to_vec());
    let mut f3 = build_model_with_transfers::<f64>(&flat, &g, 5, 1, &[(1, 0)]).unwrap();
    let n3 = names(f3.as_mut());
    assert!(n3.contains(&"towers.0.ait.query.b".to_string()), "{n3:?}");
    assert!(!n3.contains(&"towers.4.ait.query.b".to_string()));
    assert!(
        f3.describe().contains("AITM transfers"),
        "{}",
        f3.describe()
    );
}

#[test]
fn bad_transfers_are_refused_with_reasons() {
    let g = shape(&[3, 2, 2]);
    let err = |extra: &str, pairs: &[(usize, usize)]| {
        TreeNet::<f64>::with_transfers(&tree_spec(extra), &g, 5, false, 1, pairs)
            .err()
            .unwrap_or_default()
    };
    // Tower widths [3] for b0 but [5] → last width 5 for b1.
    let e = err("tower_overrides = { \"behaviour=b1\" = [5] }", &[(0, 1)]);
    assert!(
        e.contains("b0[user=u0,item=i0]")
            && e.contains("b1[user=u0,item=i0]")
            && e.contains("width"),
        "{e}"
    );
    // Equal last widths are fine, whatever comes before.
    assert_eq!(
        err("tower_overrides = { \"behaviour=b1\" = [6, 3] }", &[(0, 1)]),
        ""
    );
    assert!(err("", &[(0, 3)]).contains("only 3 behaviours"));
    assert!(err("", &[(1, 1)]).contains("itself"));
    assert!(err("", &[(0, 2), (1, 2)]).contains("two transfers"));
    assert!(err("", &[(0, 1), (1, 2), (2, 0)]).contains("cycle"));
    let flat = mmoe(vec![3], false);
    assert!(
        build_model_with_transfers::<f64>(&flat, &g, 5, 1, &[(1, 0), (0, 1)])
            .err()
            .unwrap_or_default()
            .contains("cycle")
    );
}
