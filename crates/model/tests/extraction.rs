//! CGC, PLE and identity switchers, alone and as whole networks (`single`, `cgc`, `ple`):
//! finite-difference gradient checks (f64), PLE with one level against CGC, parameter
//! counts by hand, summaries, and the serialised specs.

use mfh_model::{
    build, Cgc, CgcShape, FlatSpec, GateKind, Identity, MmoeShape, ModelSpec, MultiTaskNet, Ple,
    PleShape, SharedBottomShape, Switcher, UnitSpec,
};
use mfh_nn::gradcheck::{check_module, compare, numeric_grad, Tolerance};
use mfh_nn::{GateActivation, Module, Rng};

fn randn(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.normal()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Moves every parameter off its initial value: zero-initialised biases would put a
/// ReLU exactly at its kink whenever a narrow layer's input row is all zeros, where
/// central differences disagree with any one-sided derivative.
fn jitter<M: Module<f64> + ?Sized>(m: &mut M) {
    let mut rng = Rng::new(99);
    m.visit_params("", &mut |_, p, _| {
        p.iter_mut().for_each(|v| *v += 0.1 * rng.normal())
    });
}

/// Checks every parameter gradient and the input gradient of Σ_k ⟨r_k, output_k⟩, with
/// the output gradients added as the switcher protocol asks.
fn check_switcher<S: Switcher<f64>>(sw: &mut S) {
    let (n, n_in, k, d) = (5, sw.in_dim(), sw.n_outputs(), sw.out_dim());
    let mut rng = Rng::new(11);
    let x = randn(&mut rng, n * n_in);
    let r: Vec<Vec<f64>> = (0..k).map(|_| randn(&mut rng, n * d)).collect();
    jitter(sw);
    let loss = |sw: &mut S, x: &[f64]| {
        sw.forward(x, n, true);
        (0..k).map(|j| dot(sw.output(j), &r[j])).sum::<f64>()
    };
    sw.zero_grad();
    loss(sw, &x);
    for (j, rj) in r.iter().enumerate() {
        for (g, v) in sw.d_output_mut(j).iter_mut().zip(rj) {
            *g += v;
        }
    }
    let mut dx = vec![0.0; n * n_in];
    sw.backward(&x, n, Some(&mut dx));
    let tol = Tolerance::default();
    check_module(sw, |m| loss(m, &x), tol).unwrap();
    let num = numeric_grad(&mut x.clone(), |xv| loss(sw, xv));
    compare("dx", &dx, &num, tol).unwrap();
}

/// `t` task and `s` shared experts 5→4 per output.
fn cgc_shape(t: usize, s: usize, gate: GateActivation, gate_hidden: &[usize]) -> CgcShape {
    CgcShape {
        task_experts: t,
        shared_experts: s,
        expert_layers: vec![5, 4],
        gate: gate.into(),
        gate_hidden: gate_hidden.to_vec(),
    }
}

fn ple_shape(levels: usize, level: CgcShape) -> PleShape {
    PleShape { levels, level }
}

#[allow(clippy::too_many_arguments)]
fn cgc(
    k: usize,
    t: usize,
    s: usize,
    gate: GateActivation,
    gate_hidden: &[usize],
    bn: bool,
    seed: u64,
) -> Cgc<f64> {
    let shape = cgc_shape(t, s, gate, gate_hidden);
    Cgc::new(7, k, &shape, bn, &mut Rng::new(seed))
}

fn ple(levels: usize, t: usize, s: usize, gate: GateActivation, bn: bool, seed: u64) -> Ple<f64> {
    let rng = &mut Rng::new(seed);
    Ple::new(
        7,
        3,
        &ple_shape(levels, cgc_shape(t, s, gate, &[])),
        bn,
        rng,
    )
}

#[test]
fn cgc_gradients() {
    use GateActivation::*;
    check_switcher(&mut cgc(3, 2, 1, Softmax, &[], false, 1));
    check_switcher(&mut cgc(3, 2, 1, SigmoidOverN, &[], false, 2));
    check_switcher(&mut cgc(3, 1, 2, Softmax, &[6], false, 3));
    check_switcher(&mut cgc(3, 1, 2, SigmoidOverN, &[6], false, 4));
    check_switcher(&mut cgc(3, 2, 1, Softmax, &[], true, 5));
}

#[test]
fn cgc_gradients_without_task_or_shared_experts() {
    check_switcher(&mut cgc(2, 0, 2, GateActivation::Softmax, &[], false, 6));
    check_switcher(&mut cgc(2, 2, 0, GateActivation::Softmax, &[], false, 7));
}

#[test]
fn ple_gradients_two_and_three_levels() {
    check_switcher(&mut ple(2, 2, 1, GateActivation::Softmax, false, 1));
    check_switcher(&mut ple(3, 1, 2, GateActivation::SigmoidOverN, false, 2));
    check_switcher(&mut ple(2, 1, 1, GateActivation::Softmax, true, 3));
    let rng = &mut Rng::new(4);
    let gate = GateActivation::Softmax;
    let shape = ple_shape(2, cgc_shape(2, 1, gate, &[3]));
    check_switcher(&mut Ple::new(7, 2, &shape, false, rng));
}

#[test]
fn ple_gradients_without_task_or_shared_experts() {
    check_switcher(&mut ple(3, 0, 2, GateActivation::Softmax, false, 5));
    check_switcher(&mut ple(3, 2, 0, GateActivation::Softmax, false, 6));
}

#[test]
fn identity_copies_the_input_and_sums_output_gradients() {
    let mut id = Identity::<f64>::new(4, 3);
    check_switcher(&mut id);
    let x: Vec<f64> = (0..8).map(f64::from).collect();
    id.forward(&x, 2, true);
    for k in 0..3 {
        assert_eq!(id.output(k), &x[..]);
        id.d_output_mut(k).iter_mut().for_each(|g| *g += 1.0);
    }
    let mut dx = vec![0.5; 8];
    id.backward(&x, 2, Some(&mut dx));
    assert_eq!(dx, vec![3.5; 8]);
    assert_eq!((id.param_count(), id.num_params()), (0, 0));
}

#[test]
fn ple_with_one_level_is_cgc() {
    let gate = GateActivation::SigmoidOverN;
    let level = cgc_shape(2, 1, gate, &[3]);
    let mut c = Cgc::<f64>::new(7, 3, &level, true, &mut Rng::new(9));
    let mut p = Ple::<f64>::new(7, 3, &ple_shape(1, level), true, &mut Rng::new(9));
    assert_eq!(c.param_count(), p.param_count());
    assert_eq!(c.num_params(), p.num_params());
    let params = |m: &mut dyn Module<f64>| {
        let mut v = Vec::new();
        m.visit_params("", &mut |_, p, _| v.extend_from_slice(p));
        v
    };
    assert_eq!(params(&mut c), params(&mut p));
    let x = randn(&mut Rng::new(10), 6 * 7);
    c.forward(&x, 6, true);
    p.forward(&x, 6, true);
    for k in 0..3 {
        assert_eq!(c.output(k), p.output(k));
    }
}

#[test]
fn parameter_counts_by_hand() {
    // 7 inputs, K = 2, 2 task + 1 shared experts 7→5→4, softmax gates without hidden.
    let lin = |i: usize, o: usize| i * o + o;
    let experts_over = |i: usize| 5 * (lin(i, 5) + lin(5, 4));
    let cgc_count = experts_over(7) + 2 * lin(7, 3);
    assert_eq!(cgc_count, 368);
    let level = cgc_shape(2, 1, GateActivation::Softmax, &[]);
    let mut c = Cgc::<f32>::new(7, 2, &level, false, &mut Rng::new(0));
    assert_eq!((c.param_count(), c.num_params()), (cgc_count, cgc_count));
    // PLE, 2 levels: level 1 adds a shared gate over all 5 experts; level 2 reads width 4.
    let ple_count = cgc_count + lin(7, 5) + experts_over(4) + 2 * lin(4, 3);
    assert_eq!(ple_count, 683);
    let mut p = Ple::<f32>::new(7, 2, &ple_shape(2, level), false, &mut Rng::new(0));
    assert_eq!((p.param_count(), p.num_params()), (ple_count, ple_count));
}

#[test]
fn describe_lists_experts_and_gates() {
    let c = cgc(3, 2, 1, GateActivation::Softmax, &[], false, 0);
    let lines = c.describe();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("CGC → 3 outputs"), "{lines:?}");
    assert!(
        lines[1].contains("3 × 2 task + 1 shared = 7 × 7→5→4"),
        "{lines:?}"
    );
    assert!(
        lines[2].contains("gates: 3 × softmax over 3 experts"),
        "{lines:?}"
    );

    let p = ple(2, 2, 1, GateActivation::SigmoidOverN, false, 0);
    let text = p.describe().join("\n");
    assert!(text.starts_with("PLE → 3 outputs, 2 levels"), "{text}");
    assert!(text.contains("level 2 ("), "{text}");
    assert!(text.contains("3 × 2 task + 1 shared = 7 × 4→5→4"), "{text}");
    assert!(
        text.contains("gates: 3 × sigmoid/n over 3 experts"),
        "{text}"
    );
    assert_eq!(
        text.matches("shared gate: sigmoid/n over 7 experts")
            .count(),
        1,
        "{text}"
    );
    let total: usize = p.levels().iter().map(|l| l.param_count()).sum();
    assert!(text.contains(&format!("({total} params)")), "{text}");
}

#[test]
fn ple_parameter_and_buffer_names() {
    let mut p = ple(2, 2, 1, GateActivation::Softmax, true, 0);
    let mut names = Vec::new();
    p.visit_params("", &mut |name, _, _| names.push(name.to_string()));
    for want in [
        "levels.0.experts.layer0.w",
        "levels.0.experts.6.layer1.w",
        "levels.0.gates.2.proj.b",
        "levels.0.shared_gate.proj.w",
        "levels.1.task_experts.2.layer0.w",
        "levels.1.task_experts.0.1.layer1.b",
        "levels.1.shared_experts.bn0.gamma",
        "levels.1.gates.0.proj.w",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing {want} in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.starts_with("levels.1.shared_gate")));
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate names");
    let mut bufs = Vec::new();
    p.visit_buffers("", &mut |name, _| bufs.push(name.to_string()));
    assert!(
        bufs.contains(&"levels.1.task_experts.1.bn0.running_mean".to_string()),
        "{bufs:?}"
    );
}

/// The one place these tests construct whole networks from a spec.
fn net(spec: &ModelSpec, n_in: usize, n_tasks: usize, seed: u64) -> MultiTaskNet<f64> {
    build(spec, n_in, n_tasks, seed).unwrap()
}

/// Checks every parameter gradient and the input gradient of the loss Σ r·logits.
fn check_net(spec: &ModelSpec, n_in: usize, n_tasks: usize) {
    let n = 6;
    let mut net = net(spec, n_in, n_tasks, 3);
    jitter(&mut net);
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

fn flat(switcher: UnitSpec, tower: Vec<usize>, batch_norm: bool) -> ModelSpec {
    ModelSpec::Flat(FlatSpec {
        switcher,
        tower,
        batch_norm,
    })
}

fn single(tower: Vec<usize>, batch_norm: bool) -> ModelSpec {
    flat(UnitSpec::Identity {}, tower, batch_norm)
}

fn cgc_spec(gate: GateKind, batch_norm: bool) -> ModelSpec {
    let level = CgcShape {
        task_experts: 2,
        shared_experts: 1,
        expert_layers: vec![5, 4],
        gate,
        gate_hidden: vec![],
    };
    flat(UnitSpec::Cgc(level), vec![3], batch_norm)
}

fn ple_spec(levels: usize, batch_norm: bool) -> ModelSpec {
    let level = CgcShape {
        task_experts: 1,
        shared_experts: 2,
        expert_layers: vec![5, 4],
        gate: GateKind::Softmax,
        gate_hidden: vec![3],
    };
    flat(
        UnitSpec::Ple(PleShape { levels, level }),
        vec![3],
        batch_norm,
    )
}

#[test]
fn single_cgc_and_ple_net_gradients() {
    for batch_norm in [false, true] {
        check_net(&single(vec![4, 3], batch_norm), 7, 3);
        check_net(&cgc_spec(GateKind::SigmoidOverN, batch_norm), 7, 3);
        check_net(&ple_spec(2, batch_norm), 7, 3);
    }
}

#[test]
fn nets_describe_their_switchers() {
    let single = net(&single(vec![4], false), 7, 3, 0);
    let text = single.describe();
    assert!(text.contains("switcher: identity → 3 outputs"), "{text}");
    assert!(text.contains("towers: 3 × 7→4→1"), "{text}");
    let text = net(&ple_spec(3, false), 7, 3, 0).describe();
    assert!(
        text.contains("switcher: PLE → 3 outputs, 3 levels"),
        "{text}"
    );
    assert_eq!(text.matches("shared gate:").count(), 2, "{text}");
}

#[test]
fn model_spec_variants_parse_with_defaults_and_validate() {
    let single: ModelSpec = toml::from_str("type = \"single\"\ntower = [64]\n").unwrap();
    assert_eq!(single, self::single(vec![64], false));
    let c: ModelSpec = toml::from_str(
        "type = \"cgc\"\ntask_experts = 2\nshared_experts = 1\nexpert_layers = [5, 4]\ntower = [3]\n",
    )
    .unwrap();
    assert_eq!(c, cgc_spec(GateKind::Softmax, false));
    let p: ModelSpec = toml::from_str(
        "type = \"ple\"\nlevels = 2\ntask_experts = 1\nshared_experts = 2\nexpert_layers = [5, 4]\n\
         gate_hidden = [3]\ntower = [3]\nbatch_norm = true\n",
    )
    .unwrap();
    assert_eq!(p, ple_spec(2, true));
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"type\":\"ple\""), "{json}");
    assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), p);

    for bad in [
        "type = \"single\"\ntower = [4]\ndropout = 0.1\n",
        "type = \"cgc\"\ntask_experts = 1\nshared_experts = 1\nexpert_layers = [4]\ntower = []\nlevels = 2\n",
        "type = \"ple\"\ntask_experts = 1\nshared_experts = 1\nexpert_layers = [4]\ntower = []\n",
    ] {
        assert!(toml::from_str::<ModelSpec>(bad).is_err(), "{bad}");
    }

    let err = |spec: &ModelSpec| build::<f32>(spec, 5, 2, 0).err().unwrap_or_default();
    assert!(err(&self::single(vec![], false)).contains("tower"));
    let mut no_experts = cgc_spec(GateKind::Softmax, false);
    if let ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::Cgc(c),
        ..
    }) = &mut no_experts
    {
        (c.task_experts, c.shared_experts) = (0, 0);
    }
    assert!(
        err(&no_experts).contains("at least one expert"),
        "{}",
        err(&no_experts)
    );
    let mut no_levels = ple_spec(0, false);
    assert!(err(&no_levels).contains("level"), "{}", err(&no_levels));
    if let ModelSpec::Flat(FlatSpec {
        switcher: UnitSpec::Ple(p),
        tower,
        ..
    }) = &mut no_levels
    {
        (p.levels, *tower) = (1, vec![3, 0]);
    }
    assert!(
        err(&no_levels).contains("tower layer 1 has width 0"),
        "{}",
        err(&no_levels)
    );
    let mut net = build::<f32>(&ple_spec(2, false), 5, 2, 0).unwrap();
    assert_eq!(net.forward(&[0.5; 15], 3, true).len(), 6);
}

/// A CGC level with softmax gates.
fn softmax_level(
    t: usize,
    s: usize,
    expert_layers: Vec<usize>,
    gate_hidden: Vec<usize>,
) -> CgcShape {
    CgcShape {
        task_experts: t,
        shared_experts: s,
        expert_layers,
        gate: GateKind::Softmax,
        gate_hidden,
    }
}

#[test]
fn unit_spec_parses_validates_and_builds() {
    let u: UnitSpec = toml::from_str("type = \"ple\"\nlevels = 2\ntask_experts = 1\nshared_experts = 1\nexpert_layers = [6, 3]\n").unwrap();
    assert_eq!(
        u,
        UnitSpec::Ple(PleShape {
            levels: 2,
            level: softmax_level(1, 1, vec![6, 3], vec![]),
        })
    );
    let sb: UnitSpec = toml::from_str("type = \"shared_bottom\"\nlayers = [8, 4]\n").unwrap();
    let m: UnitSpec = toml::from_str(
        "type = \"mmoe\"\nexperts = 3\nexpert_layers = [5]\ngate = \"sigmoid_over_n\"\n",
    )
    .unwrap();
    let c: UnitSpec = toml::from_str(
        "type = \"cgc\"\ntask_experts = 0\nshared_experts = 2\nexpert_layers = [2]\ngate_hidden = [4]\n",
    )
    .unwrap();
    assert!(matches!(
        m,
        UnitSpec::Mmoe(MmoeShape {
            gate: GateKind::SigmoidOverN,
            ..
        })
    ));
    for (unit, d) in [(&u, 3), (&sb, 4), (&m, 5), (&c, 2)] {
        unit.validate().unwrap();
        assert_eq!(unit.out_dim(9), d);
        let mut sw = unit.build::<f64>(9, 4, true, &mut Rng::new(1));
        assert_eq!((sw.in_dim(), sw.n_outputs(), sw.out_dim()), (9, 4, d));
        sw.forward(&[0.25; 18], 2, true);
        assert_eq!(sw.output(3).len(), 2 * d);
    }
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<UnitSpec>(&json).unwrap(), c);

    for bad in [
        "type = \"shared_bottom\"\nlayers = [4]\ntower = [2]\n",
        "type = \"mmoe\"\nexperts = 2\nexpert_layers = [4]\nbatch_norm = true\n",
        "type = \"cgc\"\ntask_experts = 1\nexpert_layers = [4]\n",
        "type = \"single\"\n",
    ] {
        assert!(toml::from_str::<UnitSpec>(bad).is_err(), "{bad}");
    }
    let invalid = [
        (
            UnitSpec::SharedBottom(SharedBottomShape { layers: vec![] }),
            "at least one layer",
        ),
        (
            UnitSpec::SharedBottom(SharedBottomShape { layers: vec![4, 0] }),
            "layer 1 has width 0",
        ),
        (
            UnitSpec::Mmoe(MmoeShape {
                experts: 0,
                expert_layers: vec![4],
                gate: GateKind::Softmax,
                gate_hidden: vec![],
            }),
            "at least one expert",
        ),
        (
            UnitSpec::Cgc(softmax_level(0, 0, vec![4], vec![])),
            "at least one expert per output",
        ),
        (
            UnitSpec::Ple(PleShape {
                levels: 0,
                level: softmax_level(1, 1, vec![4], vec![]),
            }),
            "at least one level",
        ),
        (
            UnitSpec::Ple(PleShape {
                levels: 2,
                level: softmax_level(1, 1, vec![4], vec![0]),
            }),
            "gate_hidden layer 0 has width 0",
        ),
    ];
    for (unit, want) in invalid {
        let e = unit.validate().unwrap_err();
        assert!(e.contains(want), "{e} lacks {want}");
    }
}
