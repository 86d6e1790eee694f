//! Every model kind of the zoo, built at a tiny size with non-trivial batch-norm
//! statistics, exported and run in tract: the logits match mfh's eval-mode forward.

mod common;

use mfh_export::onnx::{encode_model, ElemType, ValueInfo};
use mfh_model::{build_model_with_transfers, GridShape, ModelSpec, MultiTaskModel};
use mfh_nn::graph::GraphBuilder;
use mfh_nn::Rng;
use serde_json::json;

fn grid() -> GridShape {
    GridShape {
        dims: vec![
            ("behaviour".into(), vec!["click".into(), "like".into()]),
            ("user".into(), vec!["new".into(), "old".into()]),
            (
                "item".into(),
                vec!["tail".into(), "head".into(), "mid".into()],
            ),
        ],
    }
}

/// A case: its name, the model section (as JSON) and the AITM behaviour pairs.
type Case = (&'static str, serde_json::Value, Vec<(usize, usize)>);

fn specs() -> Vec<Case> {
    let cgc =
        json!({"type": "cgc", "task_experts": 1, "shared_experts": 2, "expert_layers": [6, 5]});
    let mmoe_unit = json!({"type": "mmoe", "experts": 2, "expert_layers": [5], "gate_hidden": [3]});
    vec![
        (
            "single",
            json!({"type": "single", "tower": [6, 4], "batch_norm": true}),
            vec![],
        ),
        (
            "shared_bottom",
            json!({"type": "shared_bottom", "bottom": [8, 6], "tower": [4], "batch_norm": true}),
            vec![],
        ),
        (
            "mmoe",
            json!({"type": "mmoe", "experts": 3, "expert_layers": [8, 6], "gate_hidden": [5], "tower": [4]}),
            vec![],
        ),
        (
            "mmoe sigmoid/E + batch norm",
            json!({"type": "mmoe", "experts": 3, "expert_layers": [8, 6], "gate": "sigmoid_over_n", "tower": [4], "batch_norm": true}),
            vec![],
        ),
        (
            "mmoe + AITM",
            json!({"type": "mmoe", "experts": 2, "expert_layers": [6], "tower": [4]}),
            vec![(0, 1)],
        ),
        (
            "cgc",
            json!({"type": "cgc", "task_experts": 1, "shared_experts": 2, "expert_layers": [8, 6], "tower": [4], "batch_norm": true}),
            vec![],
        ),
        (
            "ple",
            json!({"type": "ple", "levels": 2, "task_experts": 1, "shared_experts": 2, "expert_layers": [8, 6], "gate_hidden": [4], "tower": [4]}),
            vec![],
        ),
        (
            "ple without shared experts",
            json!({"type": "ple", "levels": 3, "task_experts": 2, "shared_experts": 0, "expert_layers": [6], "tower": []}),
            vec![],
        ),
        (
            "hmtl",
            json!({"type": "hmtl", "split": "user", "level1": cgc, "level2": mmoe_unit, "tower": [4]}),
            vec![],
        ),
        (
            "mfh",
            json!({"type": "mfh", "level1": cgc, "level2": {"type": "cgc", "task_experts": 1, "shared_experts": 1, "expert_layers": [5]}, "bottom": [10], "tower": [4], "condition": true, "batch_norm": true, "tower_overrides": {"user=new": [3]}}),
            vec![],
        ),
        (
            "mfh concat, dense",
            json!({"type": "mfh", "trees": [["item", "behaviour", "user"], ["behaviour", "user", "item"]], "level1": {"type": "shared_bottom", "layers": [6]}, "level2": {"type": "ple", "levels": 2, "task_experts": 1, "shared_experts": 1, "expert_layers": [5]}, "fusion": "concat", "routing": false, "tower": [4]}),
            vec![],
        ),
        (
            "mfh + AITM",
            json!({"type": "mfh", "level1": cgc, "level2": mmoe_unit, "tower": [4]}),
            vec![(0, 1)],
        ),
        (
            "pepnet",
            json!({"type": "pepnet", "tower": [6, 4], "gate_hidden": 5, "priors": ["u", "i"], "prior_columns": [[0, 2], [4, 1]]}),
            vec![],
        ),
        (
            "stem",
            json!({"type": "stem", "tower": [6, 4], "field_columns": [[0, 3], [3, 3]]}),
            vec![],
        ),
        (
            "stem, batch norm",
            json!({"type": "stem", "tower": [5], "batch_norm": true, "field_columns": [[0, 6]]}),
            vec![],
        ),
        (
            "pepnet, facets only",
            json!({"type": "pepnet", "tower": [5], "gate_hidden": 3, "gamma": 1.5}),
            vec![],
        ),
    ]
}

/// The network alone as ONNX: inputs `x` (n × n_in) and `cell`, output `logits`.
fn export_net(net: &dyn MultiTaskModel<f32>) -> Vec<u8> {
    let mut g = GraphBuilder::new();
    for name in ["x", "cell", "logits"] {
        g.reserve(name);
    }
    let logits = net
        .export(&mut g, "x", "cell")
        .expect("every zoo model exports");
    g.op_into("Identity", &[&logits], vec![], "logits");
    let inputs = [
        ValueInfo {
            name: "x".into(),
            elem: ElemType::Float,
            dims: vec![None, Some(net.n_in())],
        },
        ValueInfo {
            name: "cell".into(),
            elem: ElemType::Int64,
            dims: vec![None],
        },
    ];
    let outputs = [ValueInfo {
        name: "logits".into(),
        elem: ElemType::Float,
        dims: vec![None, Some(net.n_tasks())],
    }];
    encode_model(&g, "net", "", &inputs, &outputs)
}

#[test]
fn every_zoo_model_exports_and_tract_matches_the_forward() {
    let shape = grid();
    let (n_in, n) = (7, 37);
    let n_cells = shape.n_cells();
    let mut rng = Rng::new(7);
    let x: Vec<f32> = (0..n * n_in)
        .map(|_| rng.uniform_range(-2.0, 2.0) as f32)
        .collect();
    let cells: Vec<u32> = (0..n).map(|i| ((i * 5 + i / 3) % n_cells) as u32).collect();
    let mut worst = 0.0f32;
    for (name, spec, transfers) in specs() {
        let spec: ModelSpec = serde_json::from_value(spec).unwrap();
        let mut net =
            build_model_with_transfers::<f32>(&spec, &shape, n_in, 3, &transfers).unwrap();
        // Training-mode passes move the batch-norm running statistics off their start.
        for k in 0..3 {
            let shifted: Vec<f32> = x.iter().map(|v| v * (1.0 + k as f32) + 0.5).collect();
            net.forward(&shifted, &cells, n, true);
        }
        let want = net.forward(&x, &cells, n, false).to_vec();
        let bytes = export_net(net.as_ref());
        let cell_ids: Vec<i64> = cells.iter().map(|&c| c as i64).collect();
        let got = common::run(
            &bytes,
            vec![common::floats2(&x, n, n_in), common::ints(&cell_ids)],
        );
        let nt = shape.n_tasks();
        assert_eq!(got[0].len(), n * nt, "{name}");
        // Routed trees, and flat models' towers in eval passes, leave the tasks outside a
        // row's cell at 0: compare own cells.
        let routed = match &spec {
            ModelSpec::Mfh(t) | ModelSpec::Hmtl(t) => t.routing,
            ModelSpec::Flat(_) | ModelSpec::Pepnet(_) | ModelSpec::Stem(_) => true,
        };
        for i in 0..n {
            for t in 0..nt {
                if routed && t % n_cells != cells[i] as usize {
                    continue;
                }
                let (a, b) = (got[0][i * nt + t], want[i * nt + t]);
                let d = (a - b).abs();
                worst = worst.max(d);
                assert!(d <= 1e-5, "{name}: row {i} task {t}: onnx {a} vs mfh {b}");
            }
        }
    }
    eprintln!("zoo: max |onnx - mfh| = {worst:e}");
}

/// One user × many candidates: with the input's shared columns factored out of every
/// first-layer product (`mfh_nn::product::with_factored_input`, what a server's scorer
/// does), every zoo model gives the logits of the plain forward.
#[test]
fn every_zoo_model_scores_a_shared_user_side_like_the_row_by_row_forward() {
    let shape = grid();
    let (n_in, n) = (7, 41);
    let n_cells = shape.n_cells();
    let mut rng = Rng::new(9);
    // Columns 0, 2 and 3 are the user's: equal on every row.
    let user: Vec<f32> = (0..n_in)
        .map(|_| rng.uniform_range(-2.0, 2.0) as f32)
        .collect();
    let x: Vec<f32> = (0..n * n_in)
        .map(|i| {
            let j = i % n_in;
            if [0, 2, 3].contains(&j) {
                user[j]
            } else {
                rng.uniform_range(-2.0, 2.0) as f32
            }
        })
        .collect();
    let cells: Vec<u32> = (0..n).map(|i| ((i * 7 + i / 2) % n_cells) as u32).collect();
    let mut worst = 0.0f32;
    for (name, spec, transfers) in specs() {
        let spec: ModelSpec = serde_json::from_value(spec).unwrap();
        let mut net =
            build_model_with_transfers::<f32>(&spec, &shape, n_in, 5, &transfers).unwrap();
        for k in 0..2 {
            let shifted: Vec<f32> = x.iter().map(|v| v * (1.0 + k as f32) - 0.25).collect();
            net.forward(&shifted, &cells, n, true);
        }
        let want = net.forward(&x, &cells, n, false).to_vec();
        let got = mfh_nn::product::with_factored_input_from(1, || {
            net.forward(&x, &cells, n, false).to_vec()
        });
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(
            got.iter().zip(&want).any(|(a, b)| a != b),
            "{name}: the factored path was not taken (equal bits)"
        );
        // With the input pinned (as a scorer pins it), the products that read it share
        // one search for its shared columns: the same logits, bit for bit.
        use std::sync::atomic::Ordering::Relaxed;
        let reused = mfh_nn::product::REUSED_OPERANDS.load(Relaxed);
        let pinned =
            mfh_nn::product::with_factored_input_over_from(1, &x, n, n_in, n_in, &[0], || {
                net.forward(&x, &cells, n, false).to_vec()
            });
        assert_eq!(pinned, got, "{name}: pinned input");
        // MMoE's expert bank and its gates read the input: the gates reuse what the
        // bank's product found. (The zoo's MFH reads it in its bottom alone.)
        if name == "mmoe" {
            assert!(
                mfh_nn::product::REUSED_OPERANDS.load(Relaxed) > reused,
                "{name}: no product reused the pinned input's columns"
            );
        }
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let d = (a - b).abs();
            worst = worst.max(d / (1.0 + b.abs()));
            assert!(d <= 1e-5 * (1.0 + b.abs()), "{name}: logit {i}: {a} vs {b}");
        }
    }
    eprintln!("zoo: max relative |factored - plain| = {worst:e}");
}

/// Three users' requests scored together (a server's batch), each request's rows
/// pinned with the input: every zoo model factors each request's user columns once per
/// request and gives the logits of the plain forward.
#[test]
fn every_zoo_model_scores_several_requests_like_the_row_by_row_forward() {
    let shape = grid();
    let n_in = 7;
    let n_cells = shape.n_cells();
    let mut rng = Rng::new(10);
    let (sizes, starts) = ([15, 12, 14], [0, 15, 27]);
    let mut x = Vec::new();
    for &rows in &sizes {
        // Columns 0, 2 and 3 are this request's user's.
        let user: Vec<f32> = (0..n_in)
            .map(|_| rng.uniform_range(-2.0, 2.0) as f32)
            .collect();
        x.extend((0..rows * n_in).map(|i| {
            let j = i % n_in;
            if [0, 2, 3].contains(&j) {
                user[j]
            } else {
                rng.uniform_range(-2.0, 2.0) as f32
            }
        }));
    }
    let n = x.len() / n_in;
    assert_eq!(n, sizes.iter().sum::<usize>());
    let cells: Vec<u32> = (0..n).map(|i| ((i * 5 + i / 3) % n_cells) as u32).collect();
    for (name, spec, transfers) in specs() {
        let spec: ModelSpec = serde_json::from_value(spec).unwrap();
        let mut net =
            build_model_with_transfers::<f32>(&spec, &shape, n_in, 5, &transfers).unwrap();
        let want = net.forward(&x, &cells, n, false).to_vec();
        let got =
            mfh_nn::product::with_factored_input_over_from(1, &x, n, n_in, n_in, &starts, || {
                net.forward(&x, &cells, n, false).to_vec()
            });
        assert_eq!(got.len(), want.len(), "{name}");
        // The stem's towers read the input in rows gathered per cell, which mix the
        // requests (one request's rows share their user columns; a cell's do not), and
        // with batch norm after their hidden layer nothing else is factored.
        if name != "stem, batch norm" {
            assert!(
                got.iter().zip(&want).any(|(a, b)| a != b),
                "{name}: the per-request factored path was not taken (equal bits)"
            );
        }
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{name}: logit {i}: {a} vs {b}"
            );
        }
    }
}

/// Scoring reads only a row's own cell's tasks: an eval pass runs each flat model's
/// towers on their own cell's rows (`set_cell_towers`, on by default), giving the logits
/// of every tower on every row there and 0 elsewhere; a backward pass after it gives the
/// gradients it gives after the pass with every tower on every row. Trees given one
/// cell's rows only (one user's request on a user split: no gather) score those rows as
/// they do among other rows.
#[test]
fn every_zoo_model_scores_own_cells_alike_with_towers_per_cell() {
    let shape = grid();
    let (n_in, n) = (7, 29);
    let (n_cells, nt) = (shape.n_cells(), shape.n_tasks());
    let mut rng = Rng::new(11);
    let x: Vec<f32> = (0..n * n_in)
        .map(|_| rng.uniform_range(-2.0, 2.0) as f32)
        .collect();
    let cells: Vec<u32> = (0..n).map(|i| ((i * 5 + 1) % n_cells) as u32).collect();
    let d_logits: Vec<f32> = (0..n * nt)
        .map(|k| {
            if k % nt % n_cells == cells[k / nt] as usize {
                rng.uniform_range(-1.0, 1.0) as f32
            } else {
                0.0
            }
        })
        .collect();
    let grads = |net: &mut Box<dyn MultiTaskModel<f32>>| {
        let mut g = Vec::new();
        net.visit_params("", &mut |_, _, d| g.extend_from_slice(d));
        g
    };
    for (name, spec, transfers) in specs() {
        let spec: ModelSpec = serde_json::from_value(spec).unwrap();
        // Two copies of one network: every tower on every row, and towers per cell.
        let build = || {
            let mut net =
                build_model_with_transfers::<f32>(&spec, &shape, n_in, 3, &transfers).unwrap();
            net.forward(&x, &cells, n, true);
            net
        };
        let (mut all, mut net) = (build(), build());
        all.set_cell_towers(false);
        let dense = all.forward(&x, &cells, n, false).to_vec();
        all.backward(&x, &cells, &d_logits, None, n);
        let g_dense = grads(&mut all);
        let routed = net.forward(&x, &cells, n, false).to_vec();
        net.backward(&x, &cells, &d_logits, None, n);
        let g_routed = grads(&mut net);
        assert_eq!(routed.len(), dense.len(), "{name}");
        let flat = matches!(
            spec,
            ModelSpec::Flat(_) | ModelSpec::Pepnet(_) | ModelSpec::Stem(_)
        );
        for i in 0..n {
            for t in 0..nt {
                let (a, b) = (routed[i * nt + t], dense[i * nt + t]);
                if t % n_cells == cells[i] as usize {
                    assert!(
                        (a - b).abs() <= 1e-6,
                        "{name}: row {i} task {t}: {a} vs {b}"
                    );
                } else if flat {
                    assert_eq!(a, 0.0, "{name}: row {i} task {t} outside its cell");
                }
            }
        }
        assert_eq!(g_routed.len(), g_dense.len(), "{name}");
        assert!(g_dense.iter().any(|g| *g != 0.0), "{name}: no gradient");
        for (k, (a, b)) in g_routed.iter().zip(&g_dense).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{name}: grad {k}: {a} vs {b}"
            );
        }
        // One cell's rows alone, then the same rows after one row of another cell.
        let c = cells[0];
        let one: Vec<u32> = vec![c; n - 1];
        let alone = net.forward(&x[n_in..], &one, n - 1, false).to_vec();
        let mut mixed_cells = vec![(c + 1) % n_cells as u32];
        mixed_cells.extend_from_slice(&one);
        let mixed = net.forward(&x, &mixed_cells, n, false).to_vec();
        for i in 0..n - 1 {
            let t = c as usize;
            for b in 0..nt / n_cells {
                let k = b * n_cells + t;
                let (a, m) = (alone[i * nt + k], mixed[(i + 1) * nt + k]);
                assert!(
                    (a - m).abs() <= 1e-6,
                    "{name}: one cell, row {i} task {k}: {a} vs {m}"
                );
            }
        }
    }
}
