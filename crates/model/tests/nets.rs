//! Whole-network tests: finite-difference gradient checks (f64), seeding, parameter
//! counts, names and the serialised spec.

use mfh_model::{
    build, FlatSpec, GateKind, MmoeShape, ModelSpec, MultiTaskNet, SharedBottomShape, UnitSpec,
};
use mfh_nn::gradcheck::{check_module, compare, numeric_grad, Tolerance};
use mfh_nn::{Module, Rng};

fn randn(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.normal()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn mmoe(gate: GateKind, gate_hidden: Vec<usize>, batch_norm: bool) -> ModelSpec {
    ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::Mmoe(MmoeShape {
            experts: 3,
            expert_layers: vec![5, 4],
            gate,
            gate_hidden,
        }),
        tower: vec![3],
        batch_norm,
    })
}

/// Checks every parameter gradient and the input gradient of the loss Σ r·logits.
fn check_net(spec: &ModelSpec, n_in: usize, n_tasks: usize) {
    let n = 6;
    let mut net: MultiTaskNet<f64> = build(spec, n_in, n_tasks, 3).unwrap();
    let mut rng = Rng::new(4);
    let x = randn(&mut rng, n * n_in);
    let r = randn(&mut rng, n * n_tasks);
    net.zero_grad();
    net.forward(&x, n, true);
    let mut dx = vec![0.0; n * n_in];
    net.backward(&x, &r, Some(&mut dx), n);
    let tol = Tolerance::default();
    check_module(&mut net, |m| dot(m.forward(&x, n, true), &r), tol).unwrap();
    let num = numeric_grad(&mut x.clone(), |xv| dot(net.forward(xv, n, true), &r));
    compare("dx", &dx, &num, tol).unwrap();
}

#[test]
fn mmoe_net_gradients() {
    check_net(&mmoe(GateKind::Softmax, vec![], false), 7, 4);
}

#[test]
fn mmoe_net_gradients_sigmoid_gates_hidden_and_batch_norm() {
    check_net(&mmoe(GateKind::SigmoidOverN, vec![6], false), 7, 4);
    check_net(&mmoe(GateKind::Softmax, vec![], true), 7, 4);
}

#[test]
fn shared_bottom_net_gradients() {
    for batch_norm in [false, true] {
        let spec = ModelSpec::Flat(FlatSpec {
            switcher: UnitSpec::SharedBottom(SharedBottomShape { layers: vec![6, 5] }),
            tower: vec![3],
            batch_norm,
        });
        check_net(&spec, 7, 4);
    }
}

#[test]
fn same_seed_same_outputs_different_seed_differs() {
    let spec = mmoe(GateKind::Softmax, vec![], true);
    let x = randn(&mut Rng::new(5), 8 * 7);
    let run = |seed| {
        build::<f64>(&spec, 7, 4, seed)
            .unwrap()
            .forward(&x, 8, true)
            .to_vec()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn mmoe_ref_parameter_count() {
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
    let mut net = build::<f32>(&spec, 429, 4, 0).unwrap();
    let experts = 8 * (429 * 256 + 256) + 8 * (256 * 128 + 128);
    let gates = 4 * (429 * 8 + 8);
    let towers = 4 * ((128 * 64 + 64) + (64 + 1));
    assert_eq!(experts + gates + towers, 1_190_852);
    assert_eq!(net.num_params(), 1_190_852);
    let text = net.describe();
    assert!(text.contains("1190852 params"), "{text}");
    assert!(text.contains("8 × 429→256→128"), "{text}");
}

#[test]
fn parameter_and_buffer_names() {
    let mut net = build::<f64>(&mmoe(GateKind::Softmax, vec![], true), 7, 4, 0).unwrap();
    let mut names = Vec::new();
    net.visit_params("", &mut |name, _, _| names.push(name.to_string()));
    for want in [
        "switcher.experts.layer0.w",
        "switcher.experts.2.layer1.w",
        "switcher.gates.3.proj.b",
        "towers.3.layer0.w",
        "towers.3.bn0.gamma",
        "towers.0.layer1.b",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing {want} in {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate names");
    let mut bufs = Vec::new();
    net.visit_buffers("", &mut |name, _| bufs.push(name.to_string()));
    assert!(bufs.contains(&"switcher.experts.bn1.running_var".to_string()));
}

#[test]
fn eval_mode_is_deterministic_and_batch_independent() {
    // In eval mode batch norm uses running statistics, so a row's logits must not depend
    // on the other rows of its batch.
    let mut net = build::<f64>(&mmoe(GateKind::Softmax, vec![], true), 7, 4, 9).unwrap();
    let x = randn(&mut Rng::new(6), 5 * 7);
    net.forward(&x, 5, true);
    let all = net.forward(&x, 5, false).to_vec();
    let first = net.forward(&x[..7], 1, false).to_vec();
    for (a, b) in first.iter().zip(&all[..4]) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn spec_serde_defaults_and_errors() {
    let spec: ModelSpec =
        toml::from_str("type = \"mmoe\"\nexperts = 8\nexpert_layers = [256, 128]\ntower = [64]\n")
            .unwrap();
    assert_eq!(
        spec,
        ModelSpec::Flat(FlatSpec {
            switcher: UnitSpec::Mmoe(MmoeShape {
                experts: 8,
                expert_layers: vec![256, 128],
                gate: GateKind::Softmax,
                gate_hidden: vec![],
            }),
            tower: vec![64],
            batch_norm: false,
        })
    );
    let json = serde_json::to_string(&mmoe(GateKind::SigmoidOverN, vec![2], true)).unwrap();
    assert!(
        json.contains("\"type\":\"mmoe\"") && json.contains("\"sigmoid_over_n\""),
        "{json}"
    );
    let back: ModelSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, mmoe(GateKind::SigmoidOverN, vec![2], true));
    let sb: ModelSpec =
        serde_json::from_str(r#"{"type":"shared_bottom","bottom":[8],"tower":[]}"#).unwrap();
    assert!(matches!(
        sb,
        ModelSpec::Flat(FlatSpec {
            switcher: UnitSpec::SharedBottom(_),
            batch_norm: false,
            ..
        })
    ));

    let unknown = r#"{"type":"shared_bottom","bottom":[8],"tower":[],"dropout":0.1}"#;
    assert!(serde_json::from_str::<ModelSpec>(unknown).is_err());
    assert!(serde_json::from_str::<ModelSpec>(r#"{"type":"ple"}"#).is_err());

    let zero = ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::SharedBottom(SharedBottomShape { layers: vec![8, 0] }),
        tower: vec![],
        batch_norm: false,
    });
    assert!(build::<f32>(&zero, 5, 2, 0).is_err());
    let ok = ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::SharedBottom(SharedBottomShape { layers: vec![8] }),
        tower: vec![],
        batch_norm: false,
    });
    assert!(build::<f32>(&ok, 0, 2, 0).is_err());
    assert!(build::<f32>(&ok, 5, 0, 0).is_err());
    let no_experts = ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::Mmoe(MmoeShape {
            experts: 0,
            expert_layers: vec![4],
            gate: GateKind::Softmax,
            gate_hidden: vec![],
        }),
        tower: vec![],
        batch_norm: false,
    });
    assert!(build::<f32>(&no_experts, 5, 2, 0).is_err());
    let mut net = build::<f32>(&ok, 5, 2, 0).unwrap();
    assert_eq!(net.forward(&[0.5; 10], 2, true).len(), 4);
}
