//! Tree models (H-MTL, MFH): leaf bookkeeping, masking, the degenerate case that must
//! equal flat MMoE, routed against dense computation, and finite-difference gradients
//! (f64), on grids 3 × 2 × 2 and 2 × 3 × 4.

use mfh_model::{
    build, CgcShape, FlatSpec, GridShape, MmoeShape, ModelSpec, MultiTaskModel, PleShape, TreeNet,
    TreeSpec, UnitSpec,
};
use mfh_nn::gradcheck::{check_module, compare, numeric_grad, Tolerance};
use mfh_nn::{Module, Rng};

mod common;
use common::*;

fn cgc(width: usize) -> UnitSpec {
    UnitSpec::Cgc(CgcShape {
        task_experts: 1,
        shared_experts: 1,
        expert_layers: vec![width],
        gate: Default::default(),
        gate_hidden: Vec::new(),
    })
}

#[test]
fn every_task_gets_one_leaf_per_tree_in_order() {
    for sizes in [vec![3, 2, 2], vec![2, 3, 4]] {
        let g = shape(&sizes);
        let net: TreeNet<f64> = TreeNet::new(&tree_spec(""), &g, 6, false, 1).unwrap();
        assert_eq!(
            net.tree_dims(),
            (0..sizes.len()).collect::<Vec<_>>(),
            "auto: one tree per dimension"
        );
        for (ti, &d) in net.tree_dims().iter().enumerate() {
            let k2 = g.n_tasks() / sizes[d];
            let mut seen = vec![false; g.n_tasks()];
            for t in 0..g.n_tasks() {
                let c = g.task_coords(t);
                let (v, k) = net.leaf_of_task(ti, t);
                assert_eq!(v, c[d], "tree {ti} task {t}: value");
                assert!(k < k2);
                // The leaf index enumerates the other dimensions in grid order.
                let mut expect = 0;
                for (e, &s) in sizes.iter().enumerate() {
                    if e != d {
                        expect = expect * s + c[e];
                    }
                }
                assert_eq!(k, expect, "tree {ti} task {t}: leaf");
                let slot = v * k2 + k;
                assert!(!seen[slot], "two tasks share leaf {slot} of tree {ti}");
                seen[slot] = true;
            }
            assert!(seen.iter().all(|&s| s));
        }
    }
}

#[test]
fn leaves_carry_each_tasks_own_representation() {
    // Marker test: with the towers' inputs inspected through a finite perturbation, a
    // task's logit depends on its own level-2 subtree in the user-first tree and on no
    // other value's subtree.
    let g = shape(&[3, 2, 2]);
    let mut net: TreeNet<f64> = TreeNet::new(&tree_spec(""), &g, 6, false, 2).unwrap();
    // Positive tower weights and biases over the (non-negative) leaves: no tower ReLU is
    // dead, so a changed leaf always shows in the logit.
    net.visit_params("", &mut |name, p, _| {
        if name.starts_with("towers.") {
            p.iter_mut().for_each(|v| *v = v.abs() + 0.1);
        }
    });
    let mut rng = Rng::new(9);
    let n = 8;
    let x = randn(&mut rng, n * 6);
    let cells = cells_for(&g, n, &mut rng);
    let before = net.forward(&x, &cells, n, false).to_vec();
    // Perturb every parameter of tree 1 (user-first), level-2 subtree of user value 0.
    net.visit_params("", &mut |name, p, _| {
        if name.starts_with("trees.1.level2.0.") {
            p.iter_mut().for_each(|v| *v += 0.5);
        }
    });
    let after = net.forward(&x, &cells, n, false).to_vec();
    let nt = g.n_tasks();
    for (i, &c) in cells.iter().enumerate() {
        let user = g.cell_value(c as usize, 1);
        for b in 0..3 {
            let t = b * g.n_cells() + c as usize;
            let changed = (before[i * nt + t] - after[i * nt + t]).abs() > 1e-12;
            assert_eq!(changed, user == 0, "row {i} (user {user}) task {t}");
        }
    }
}

fn grads_by_name(net: &mut dyn MultiTaskModel<f64>) -> NamedGrads {
    let mut out = Vec::new();
    net.visit_params("", &mut |name, _, g| {
        out.push((name.to_string(), g.to_vec()))
    });
    out
}

#[test]
fn one_user_group_leaves_the_others_with_zero_gradient() {
    let g = shape(&[3, 2, 2]);
    for routing in [true, false] {
        let s = tree_spec(&format!("routing = {routing}"));
        let mut net: TreeNet<f64> = TreeNet::new(&s, &g, 6, false, 3).unwrap();
        let mut rng = Rng::new(5);
        let n = 10;
        let x = randn(&mut rng, n * 6);
        // Every row is user value 1 (cells 2 and 3: user=u1, item=i0/i1).
        let cells: Vec<u32> = (0..n).map(|i| 2 + (i % 2) as u32).collect();
        let r = masked_weights(&g, &cells, &mut rng);
        net.zero_grad();
        net.forward(&x, &cells, n, true);
        net.backward(&x, &cells, &r, None, n);
        let grads = grads_by_name(&mut net);
        for (name, grad) in &grads {
            let zero = grad.iter().all(|&v| v == 0.0);
            let other_group_tower = name.starts_with("towers.") && {
                let t: usize = name.split('.').nth(1).unwrap().parse().unwrap();
                g.cell_value(t % g.n_cells(), 1) == 0
            };
            if other_group_tower || name.starts_with("trees.1.level2.0.") {
                assert!(zero, "routing {routing}: {name} should have zero gradient");
            }
        }
        // Units shared across user groups learn from these rows.
        for prefix in [
            "trees.0.level1.",
            "trees.1.level1.",
            "trees.2.level1.",
            "trees.1.level2.1.",
        ] {
            let learns = grads
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .any(|(_, g)| g.iter().any(|&v| v != 0.0));
            assert!(learns, "routing {routing}: {prefix} should learn");
        }
    }
}

#[test]
fn degenerate_mfh_is_flat_mmoe() {
    let g = GridShape::flat(4);
    let mmoe_unit = UnitSpec::Mmoe(MmoeShape {
        experts: 3,
        expert_layers: vec![5, 4],
        gate: Default::default(),
        gate_hidden: Vec::new(),
    });
    let tree_spec = TreeSpec {
        level1: mmoe_unit.clone(),
        level2: mmoe_unit,
        ..tree_spec("")
    };
    let mut tree: TreeNet<f64> = TreeNet::new(&tree_spec, &g, 7, false, 11).unwrap();
    let flat_spec = ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::Mmoe(MmoeShape {
            experts: 3,
            expert_layers: vec![5, 4],
            gate: Default::default(),
            gate_hidden: Vec::new(),
        }),
        tower: vec![3],
        batch_norm: false,
    });
    let mut flat = build::<f64>(&flat_spec, 7, 4, 99).unwrap();
    assert_eq!(tree.num_params(), flat.num_params());
    // Same weights (copied in visit order, shapes checked) → same outputs.
    let mut weights = Vec::new();
    flat.visit_params("", &mut |_, p, _| weights.push(p.to_vec()));
    let mut i = 0;
    tree.visit_params("", &mut |name, p, _| {
        assert_eq!(p.len(), weights[i].len(), "{name}");
        p.copy_from_slice(&weights[i]);
        i += 1;
    });
    assert_eq!(i, weights.len());
    let mut rng = Rng::new(1);
    let n = 5;
    let x = randn(&mut rng, n * 7);
    let cells = vec![0u32; n];
    let a = MultiTaskModel::forward(&mut flat, &x, &cells, n, false).to_vec();
    let b = tree.forward(&x, &cells, n, false).to_vec();
    assert_eq!(a, b);
}

/// Loss Σ r·logits with r masked to each row's cell; returns (loss, param grads, dx).
fn run(
    net: &mut TreeNet<f64>,
    x: &[f64],
    cells: &[u32],
    r: &[f64],
    n: usize,
    n_in: usize,
) -> (f64, NamedGrads, Vec<f64>) {
    net.zero_grad();
    let loss = dot(net.forward(x, cells, n, true), r);
    let mut dx = vec![0.0; n * n_in];
    net.backward(x, cells, r, Some(&mut dx), n);
    (loss, grads_by_name(net), dx)
}

#[test]
fn routed_equals_dense_loss_and_every_gradient() {
    for (sizes, extra) in [
        (vec![3, 2, 2], ""),
        (
            vec![2, 3, 4],
            "bottom = [6]\nfusion = \"concat\"\ncondition = true",
        ),
        (vec![3, 2, 2], "tower_overrides = { \"user=u0\" = [5, 2] }"),
    ] {
        let g = shape(&sizes);
        let n_in = 6;
        let mut rng = Rng::new(21);
        let n = 40;
        let x = randn(&mut rng, n * n_in);
        let cells = cells_for(&g, n, &mut rng);
        let r = masked_weights(&g, &cells, &mut rng);
        let mut routed: TreeNet<f64> = TreeNet::new(
            &tree_spec(&format!("routing = true\n{extra}")),
            &g,
            n_in,
            false,
            4,
        )
        .unwrap();
        let mut dense: TreeNet<f64> = TreeNet::new(
            &tree_spec(&format!("routing = false\n{extra}")),
            &g,
            n_in,
            false,
            4,
        )
        .unwrap();
        let (la, ga, dxa) = run(&mut routed, &x, &cells, &r, n, n_in);
        let (lb, gb, dxb) = run(&mut dense, &x, &cells, &r, n, n_in);
        let tol = Tolerance {
            atol: 1e-8,
            rtol: 1e-6,
        };
        compare("loss", &[la], &[lb], tol).unwrap();
        compare("dx", &dxa, &dxb, tol).unwrap();
        assert_eq!(ga.len(), gb.len());
        for ((na, a), (nb, b)) in ga.iter().zip(&gb) {
            assert_eq!(na, nb);
            compare(na, a, b, tol).unwrap();
        }
    }
}

/// Routing with units that route (CGC) and units that do not (MMoE, PLE, Shared-Bottom)
/// mixed across the levels, and with empty cells and an empty facet value: the same loss
/// and gradients as the dense mode.
#[test]
fn routed_equals_dense_with_mixed_units_and_empty_cells() {
    let units = [
        ("cgc", "{ type = \"cgc\", task_experts = 1, shared_experts = 2, expert_layers = [5] }"),
        ("cgc-no-task", "{ type = \"cgc\", task_experts = 0, shared_experts = 2, expert_layers = [5] }"),
        ("mmoe", "{ type = \"mmoe\", experts = 2, expert_layers = [5] }"),
        ("ple", "{ type = \"ple\", levels = 2, task_experts = 1, shared_experts = 1, expert_layers = [5] }"),
        ("sb", "{ type = \"shared_bottom\", layers = [5] }"),
    ];
    let g = shape(&[3, 2, 3]);
    let n_in = 6;
    let tol = Tolerance {
        atol: 1e-8,
        rtol: 1e-6,
    };
    for (i, (n1, u1)) in units.iter().enumerate() {
        for (n2, u2) in units.iter().skip(i % 2) {
            let mut rng = Rng::new(5);
            let n = 30;
            let x = randn(&mut rng, n * n_in);
            // User value 0 never appears; cell (u1, i2) neither.
            let cells: Vec<u32> = (0..n)
                .map(|_| loop {
                    let c = rng.below(g.n_cells() as u64) as usize;
                    if g.cell_value(c, 1) == 1 && g.cell_value(c, 2) != 2 {
                        break c as u32;
                    }
                })
                .collect();
            let r = masked_weights(&g, &cells, &mut rng);
            let spec = |routing: bool| -> TreeSpec {
                toml::from_str(&format!(
                    "level1 = {u1}\nlevel2 = {u2}\ntower = [3]\nrouting = {routing}\n"
                ))
                .unwrap()
            };
            let mut routed: TreeNet<f64> = TreeNet::new(&spec(true), &g, n_in, false, 8).unwrap();
            let mut dense: TreeNet<f64> = TreeNet::new(&spec(false), &g, n_in, false, 8).unwrap();
            let (la, ga, dxa) = run(&mut routed, &x, &cells, &r, n, n_in);
            let (lb, gb, dxb) = run(&mut dense, &x, &cells, &r, n, n_in);
            let what = format!("level1 {n1}, level2 {n2}");
            compare(&format!("{what}: loss"), &[la], &[lb], tol).unwrap();
            compare(&format!("{what}: dx"), &dxa, &dxb, tol).unwrap();
            assert_eq!(ga.len(), gb.len());
            for ((na, a), (nb, b)) in ga.iter().zip(&gb) {
                assert_eq!(na, nb);
                compare(&format!("{what}: {na}"), a, b, tol).unwrap();
            }
        }
    }
}

fn fd_check(mut net: TreeNet<f64>, g: &GridShape, n_in: usize) {
    let mut rng = Rng::new(8);
    // Zero-initialised biases would put ReLUs exactly on their kink for rows whose
    // input is all zeros (a dead expert feeding the next level), where finite
    // differences are one-sided: move every parameter off its initial value.
    net.visit_params("", &mut |_, p, _| {
        p.iter_mut().for_each(|v| *v += 0.1 * rng.normal())
    });
    let n = 2 * g.n_cells();
    let x = randn(&mut rng, n * n_in);
    let cells = cells_for(g, n, &mut rng);
    let r = masked_weights(g, &cells, &mut rng);
    let (_, _, dx) = run(&mut net, &x, &cells, &r, n, n_in);
    let tol = Tolerance::default();
    check_module(&mut net, |m| dot(m.forward(&x, &cells, n, true), &r), tol).unwrap();
    let num = numeric_grad(&mut x.clone(), |xv| {
        dot(net.forward(xv, &cells, n, true), &r)
    });
    compare("dx", &dx, &num, tol).unwrap();
}

#[test]
fn mfh_gradients_match_finite_differences() {
    let g = shape(&[3, 2, 2]);
    fd_check(
        TreeNet::new(&tree_spec(""), &g, 5, false, 6).unwrap(),
        &g,
        5,
    );
    let g = shape(&[2, 3, 4]);
    fd_check(
        TreeNet::new(&tree_spec("bottom = [6]\nfusion = \"concat\"\ncondition = true\ntrees = [[\"user\", \"behaviour\", \"item\"], [\"item\", \"user\", \"behaviour\"]]"), &g, 5, false, 7).unwrap(),
        &g,
        5,
    );
}

#[test]
fn hmtl_gradients_match_finite_differences() {
    let g = shape(&[3, 2, 2]);
    for split in ["user", "behaviour"] {
        fd_check(
            TreeNet::new(&tree_spec(&format!("split = \"{split}\"")), &g, 5, true, 6).unwrap(),
            &g,
            5,
        );
    }
    // PLE at level 1, MMoE at level 2.
    let mut s = tree_spec("split = \"item\"");
    s.level1 = UnitSpec::Ple(PleShape {
        levels: 2,
        level: CgcShape {
            task_experts: 1,
            shared_experts: 1,
            expert_layers: vec![4],
            gate: Default::default(),
            gate_hidden: Vec::new(),
        },
    });
    s.level2 = UnitSpec::Mmoe(MmoeShape {
        experts: 2,
        expert_layers: vec![3],
        gate: Default::default(),
        gate_hidden: Vec::new(),
    });
    fd_check(TreeNet::new(&s, &g, 5, true, 2).unwrap(), &g, 5);
}

#[test]
fn bad_tree_specs_are_refused_with_reasons() {
    let g = shape(&[3, 2, 2]);
    let e = |s: &str, hmtl: bool| {
        TreeNet::<f64>::new(&tree_spec(s), &g, 5, hmtl, 1)
            .err()
            .unwrap()
    };
    assert!(e("split = \"region\"", true).contains("region"));
    assert!(e("", true).contains("split"));
    assert!(e("trees = \"some\"", false).contains("auto"));
    assert!(e("trees = [[\"user\", \"item\"]]", false).contains("every grid dimension"));
    assert!(e("tower_overrides = { \"user=zz\" = [2] }", false).contains("zz"));
    let mut s = tree_spec("");
    s.level2 = cgc(7);
    s.fusion = Default::default();
    // The behaviour tree's leaves come from level 2 (width 7), as do the others: fine.
    assert!(TreeNet::<f64>::new(&s, &g, 5, false, 1).is_ok());
}

#[test]
fn tree_specs_parse_as_model_sections_and_build() {
    let mfh: ModelSpec = toml::from_str(
        "type = \"mfh\"\ntrees = \"auto\"\ntower = [4]\nlevel2 = { type = \"mmoe\", experts = 2, expert_layers = [3] }\n",
    )
    .unwrap();
    let g = shape(&[3, 2, 2]);
    let m = mfh_model::build_model::<f64>(&mfh, &g, 5, 1).unwrap();
    assert_eq!(m.n_tasks(), 12);
    assert!(
        m.describe().contains("MFH") && m.describe().contains("tree 2: split on item"),
        "{}",
        m.describe()
    );
    let hmtl: ModelSpec =
        toml::from_str("type = \"hmtl\"\nsplit = \"user\"\ntower = [4]\n").unwrap();
    let m = mfh_model::build_model::<f64>(&hmtl, &g, 5, 1).unwrap();
    assert!(m.describe().contains("H-MTL"), "{}", m.describe());
    let e = toml::from_str::<ModelSpec>("type = \"mfh\"\ntower = [4]\nspilt = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("spilt"), "{e}");
    let flat: ModelSpec =
        toml::from_str("type = \"mmoe\"\nexperts = 2\nexpert_layers = [3]\ntower = [2]\n").unwrap();
    assert_eq!(
        mfh_model::build_model::<f64>(&flat, &g, 5, 1)
            .unwrap()
            .n_tasks(),
        12
    );
}
