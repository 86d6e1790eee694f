//! Hand-computed checks on tiny batches (2 behaviours × 2 cells, tasks
//! `[b0c0, b0c1, b1c0, b1c1]`) and finite-difference checks of every gradient.

use crate::*;
use mfh_nn::{Adam, Module};

const NAN: f32 = f32::NAN;

fn sig(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Logloss of logit `z` against `y`, straight from the definition.
fn ll(z: f64, y: f64) -> f64 {
    -(y * sig(z).ln() + (1.0 - y) * (1.0 - sig(z)).ln())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-10 * b.abs()
}

fn assert_grads(d: &[f64], expect: &[(usize, f64)]) {
    for (i, &x) in d.iter().enumerate() {
        let want = expect.iter().find(|e| e.0 == i).map_or(0.0, |e| e.1);
        assert!(close(x, want), "d_logits[{i}] = {x}, expected {want}");
    }
}

fn loss(spec: LossSpec) -> GridLoss<f64> {
    GridLoss::new(spec).expect("valid spec")
}

fn set_log_vars(g: &mut GridLoss<f64>, s: &[f64]) {
    g.visit_params("", &mut |_, p, _| p.copy_from_slice(s));
}

// The regression batch: behaviour 0 binary, 1 regression; rows in cells 0, 1, 0.
const CELLS: [u32; 3] = [0, 1, 0];
#[rustfmt::skip]
const LOGITS: [f64; 12] = [
    0.3, 9.0, 1.5, 9.0,
    9.0, -0.7, 9.0, 9.0,
    9.0, 9.0, 0.2, 9.0,
];
const LABELS: [f32; 6] = [1.0, 2.0, 0.0, NAN, NAN, 0.5];
const WEIGHTS: [f64; 4] = [1.0, 2.0, 0.5, 3.0];

fn mixed(reduction: Reduction) -> GridLoss<f64> {
    loss(LossSpec {
        weights: WEIGHTS.to_vec(),
        reduction,
        ..LossSpec::new(2, vec![true, false])
    })
}

/// The four active pairs' losses: (row 0, b0c0), (row 0, b1c0), (row 1, b0c1), (row 2, b1c0).
fn pair_losses() -> (f64, f64, f64, f64) {
    (ll(0.3, 1.0), 0.25, ll(-0.7, 0.0), 0.09)
}

#[test]
fn active_mean_by_hand() {
    let (la, lb, lc, ld) = pair_losses();
    let mut g = mixed(Reduction::ActiveMean);
    let mut d = [0.0; 12];
    let v = g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
    assert_eq!(v.active, 4);
    assert!(close(v.loss, (la + 0.5 * lb + 2.0 * lc + 0.5 * ld) / 4.0));
    assert_grads(
        &d,
        &[
            (0, (sig(0.3) - 1.0) / 4.0),
            (2, 0.5 * 2.0 * (1.5 - 2.0) / 4.0),
            (5, 2.0 * sig(-0.7) / 4.0),
            (10, 0.5 * 2.0 * (0.2 - 0.5) / 4.0),
        ],
    );
}

#[test]
fn task_mean_by_hand() {
    let (la, lb, lc, ld) = pair_losses();
    let mut g = mixed(Reduction::TaskMean);
    let mut d = [0.0; 12];
    let v = g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
    // Task b1c1 has no active row and adds nothing.
    assert!(close(v.loss, la + 2.0 * lc + 0.5 * (lb + ld) / 2.0));
    assert_grads(
        &d,
        &[
            (0, sig(0.3) - 1.0),
            (2, 0.5 * 2.0 * (1.5 - 2.0) / 2.0),
            (5, 2.0 * sig(-0.7)),
            (10, 0.5 * 2.0 * (0.2 - 0.5) / 2.0),
        ],
    );
}

#[test]
fn batch_mean_by_hand() {
    let (la, lb, lc, ld) = pair_losses();
    let mut g = mixed(Reduction::BatchMean);
    let mut d = [0.0; 12];
    let v = g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
    // Every row counts in the denominator, whichever labels it has.
    assert!(close(v.loss, (la + 2.0 * lc + 0.5 * (lb + ld)) / 3.0));
    assert_grads(
        &d,
        &[
            (0, (sig(0.3) - 1.0) / 3.0),
            (2, 0.5 * 2.0 * (1.5 - 2.0) / 3.0),
            (5, 2.0 * sig(-0.7) / 3.0),
            (10, 0.5 * 2.0 * (0.2 - 0.5) / 3.0),
        ],
    );
}

#[test]
fn per_task_and_per_behaviour_sums_are_unweighted() {
    let (la, lb, lc, ld) = pair_losses();
    let v = mixed(Reduction::TaskMean).value(&LOGITS, &LABELS, &CELLS);
    let expect_task = [(la, 1), (lc, 1), (lb + ld, 2), (0.0, 0)];
    for (t, (&(s, k), &(es, ek))) in v.per_task.iter().zip(&expect_task).enumerate() {
        assert!(close(s, es) && k == ek, "task {t}: ({s}, {k})");
    }
    assert_eq!(v.per_behaviour.len(), 2);
    assert!(close(v.per_behaviour[0].0, la + lc) && v.per_behaviour[0].1 == 2);
    assert!(close(v.per_behaviour[1].0, lb + ld) && v.per_behaviour[1].1 == 2);
}

#[test]
fn value_equals_compute() {
    for r in Reduction::ALL {
        let mut g = mixed(r);
        let mut d = [0.0; 12];
        let a = g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
        assert_eq!(a, g.value(&LOGITS, &LABELS, &CELLS), "{r}");
    }
}

#[test]
fn task_weights_expand_and_override() {
    let w = task_weights(2, &[1.0, 0.5], &[(1, 2.0), (3, 3.0)]).unwrap();
    assert_eq!(w, WEIGHTS);
    assert!(task_weights(2, &[1.0, 0.5], &[(4, 1.0)]).is_err());
}

#[test]
fn static_weights_scale_each_task_alone() {
    // Unit weights against WEIGHTS: only the loss of b0c1 (weight 2) and of b1c0
    // (weight 0.5) change, each by its own factor.
    let (la, lb, lc, ld) = pair_losses();
    let unit = loss(LossSpec {
        reduction: Reduction::TaskMean,
        ..LossSpec::new(2, vec![true, false])
    });
    let v = unit.value(&LOGITS, &LABELS, &CELLS);
    assert!(close(v.loss, la + lc + (lb + ld) / 2.0));
    // A zero weight silences the task's gradient but not its reported sums.
    let mut w = WEIGHTS.to_vec();
    w[2] = 0.0;
    let mut g = loss(LossSpec {
        weights: w,
        reduction: Reduction::TaskMean,
        ..LossSpec::new(2, vec![true, false])
    });
    let mut d = [0.0; 12];
    let v = g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
    assert!(close(v.loss, la + 2.0 * lc));
    assert_eq!((d[2], d[10]), (0.0, 0.0));
    assert!(close(v.per_task[2].0, lb + ld));
}

#[test]
fn uncertainty_weighting_by_hand() {
    let (la, lb, lc, ld) = pair_losses();
    let mut g = loss(LossSpec {
        reduction: Reduction::TaskMean,
        uncertainty: true,
        ..LossSpec::new(2, vec![true, false])
    });
    assert_eq!(g.log_vars(), &[0.0; 4]);
    let s = [0.5, -0.3, 0.2, 0.7];
    set_log_vars(&mut g, &s);
    let task_means = [la, lc, (lb + ld) / 2.0];
    let mut d = [0.0; 12];
    let v = g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
    let expect: f64 = (0..3).map(|t| (-s[t]).exp() * task_means[t] + s[t]).sum();
    assert!(close(v.loss, expect), "{} vs {expect}", v.loss);
    for t in 0..3 {
        let want = 1.0 - (-s[t]).exp() * task_means[t];
        assert!(close(g.log_var_grads()[t], want), "s_{t}");
    }
    // The absent task gets neither a term nor a gradient.
    assert_eq!(g.log_var_grads()[3], 0.0);
    assert_grads(
        &d,
        &[
            (0, (-0.5f64).exp() * (sig(0.3) - 1.0)),
            (2, (-0.2f64).exp() * 2.0 * (1.5 - 2.0) / 2.0),
            (5, 0.3f64.exp() * sig(-0.7)),
            (10, (-0.2f64).exp() * 2.0 * (0.2 - 0.5) / 2.0),
        ],
    );
    // Gradients accumulate until zeroed, like the network's.
    let once = g.log_var_grads().to_vec();
    g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
    for (a, b) in g.log_var_grads().iter().zip(&once) {
        assert!(close(*a, 2.0 * b));
    }
    g.zero_grad();
    assert_eq!(g.log_var_grads(), &[0.0; 4]);
}

#[test]
fn log_vars_are_a_module_parameter_the_optimiser_steps() {
    let mut g = loss(LossSpec {
        reduction: Reduction::TaskMean,
        uncertainty: true,
        ..LossSpec::new(2, vec![true, false])
    });
    let mut names = Vec::new();
    g.visit_params("loss.", &mut |n, p, gr| {
        names.push((n.to_string(), p.len(), gr.len()))
    });
    assert_eq!(names, [("loss.log_vars".to_string(), 4, 4)]);
    assert_eq!(g.num_params(), 4);
    let mut d = [0.0; 12];
    g.compute(&LOGITS, &LABELS, &CELLS, &mut d);
    // At s = 0 the gradient 1 − L_t is positive for the small loss of b0c1, so Adam
    // lowers s there; the absent task's s stays put.
    assert!(g.log_var_grads()[1] > 0.0);
    Adam::<f64>::default().step(&mut g, 0.1);
    assert!(g.log_vars()[1] < 0.0);
    assert_eq!(g.log_vars()[3], 0.0);
    // Without uncertainty weighting there is nothing to train.
    let mut plain = mixed(Reduction::TaskMean);
    assert_eq!(plain.num_params(), 0);
    assert!(plain.log_vars().is_empty());
}

// The ESMM batch: click (0) → like (1), both binary; rows in cells 0, 1, 0.
#[rustfmt::skip]
const ESMM_LOGITS: [f64; 12] = [
    0.4, 9.0, -0.2, 9.0,
    9.0, 1.1, 9.0, 0.6,
    -0.5, 9.0, 0.8, 9.0,
];
// Row 0 clicked and liked; row 1 clicked, like unknown; row 2 not liked, click unknown.
const ESMM_LABELS: [f32; 6] = [1.0, 1.0, 1.0, NAN, NAN, 0.0];

fn esmm(reduction: Reduction, uncertainty: bool) -> GridLoss<f64> {
    loss(LossSpec {
        reduction,
        uncertainty,
        funnels: vec![(0, 1)],
        ..LossSpec::new(2, vec![true, true])
    })
}

#[test]
fn esmm_loss_and_gradients_by_hand() {
    let mut g = esmm(Reduction::ActiveMean, false);
    let mut d = [0.0; 12];
    let v = g.compute(&ESMM_LOGITS, &ESMM_LABELS, &CELLS, &mut d);
    // Like on row 0 (y = 1): −ln σ(z_a) − ln σ(z_b). On row 2 (y = 0): −ln(1 − q), q the
    // product, trained although the click label is missing.
    let q = sig(-0.5) * sig(0.8);
    let like0 = -(sig(0.4) * sig(-0.2)).ln();
    let like2 = -(1.0 - q).ln();
    let expect = (ll(0.4, 1.0) + like0 + ll(1.1, 1.0) + like2) / 4.0;
    assert_eq!(v.active, 4);
    assert!(close(v.loss, expect), "{} vs {expect}", v.loss);
    assert!(close(v.per_task[2].0, like0 + like2) && v.per_task[2].1 == 2);
    assert_grads(
        &d,
        &[
            // z_a of row 0: its own click loss and the like loss through the product.
            (0, 2.0 * (sig(0.4) - 1.0) / 4.0),
            (2, (sig(-0.2) - 1.0) / 4.0),
            (5, (sig(1.1) - 1.0) / 4.0),
            (8, q * (1.0 - sig(-0.5)) / (1.0 - q) / 4.0),
            (10, q * (1.0 - sig(0.8)) / (1.0 - q) / 4.0),
        ],
    );
}

#[test]
fn esmm_predicts_the_product() {
    let g = esmm(Reduction::ActiveMean, false);
    let mut out = Vec::new();
    g.predict(&ESMM_LOGITS, &CELLS, &mut out);
    let expect = [
        sig(0.4),
        sig(0.4) * sig(-0.2),
        sig(1.1),
        sig(1.1) * sig(0.6),
        sig(-0.5),
        sig(-0.5) * sig(0.8),
    ];
    for (o, e) in out.iter().zip(expect) {
        assert!((*o as f64 - e).abs() < 1e-7, "{o} vs {e}");
    }
}

#[test]
fn esmm_clips_the_product_without_nan() {
    let mut g = esmm(Reduction::ActiveMean, false);
    let logits = [-30.0, 0.0, -30.0, 0.0];
    let mut d = [0.0; 4];
    let v = g.compute(&logits, &[NAN, 1.0], &[0], &mut d);
    assert!(close(v.loss, -(1e-7f64).ln()));
    // Below the clip the clipped loss is flat.
    assert_eq!(d, [0.0; 4]);
}

#[test]
fn funnel_chains_multiply() {
    // view → click → like, one cell.
    let mut g = loss(LossSpec {
        funnels: vec![(1, 2), (0, 1)],
        ..LossSpec::new(1, vec![true, true, true])
    });
    let z = [0.3, -0.4, 1.2];
    let mut out = Vec::new();
    g.predict(&z, &[0], &mut out);
    let p = sig(0.3) * sig(-0.4) * sig(1.2);
    assert!((out[2] as f64 - p).abs() < 1e-7);
    assert!((out[1] as f64 - sig(0.3) * sig(-0.4)).abs() < 1e-7);
    // Only the like label: its loss −ln p̂ sends σ(z_k) − 1 to every logit of the chain.
    let mut d = [0.0; 3];
    let v = g.compute(&z, &[NAN, NAN, 1.0], &[0], &mut d);
    assert!(close(v.loss, -p.ln()));
    assert_grads(
        &d,
        &[
            (0, sig(0.3) - 1.0),
            (1, sig(-0.4) - 1.0),
            (2, sig(1.2) - 1.0),
        ],
    );
}

/// Central differences of `value` against `compute` for the logits and, when present,
/// the log-variances.
fn finite_difference_check(
    mut g: GridLoss<f64>,
    logits: &[f64],
    labels: &[f32],
    cells: &[u32],
    what: &str,
) {
    let h = 1e-6;
    let ok = |a: f64, b: f64| (a - b).abs() <= 1e-8 + 1e-6 * b.abs();
    let mut d = vec![0.0; logits.len()];
    g.zero_grad();
    g.compute(logits, labels, cells, &mut d);
    let mut p = logits.to_vec();
    for k in 0..p.len() {
        p[k] = logits[k] + h;
        let up = g.value(&p, labels, cells).loss;
        p[k] = logits[k] - h;
        let down = g.value(&p, labels, cells).loss;
        p[k] = logits[k];
        let fd = (up - down) / (2.0 * h);
        assert!(ok(d[k], fd), "{what}: logit {k}: {} vs {fd}", d[k]);
    }
    let s0 = g.log_vars().to_vec();
    let ds = g.log_var_grads().to_vec();
    for t in 0..s0.len() {
        let mut s = s0.clone();
        s[t] += h;
        set_log_vars(&mut g, &s);
        let up = g.value(logits, labels, cells).loss;
        s[t] -= 2.0 * h;
        set_log_vars(&mut g, &s);
        let down = g.value(logits, labels, cells).loss;
        set_log_vars(&mut g, &s0);
        let fd = (up - down) / (2.0 * h);
        assert!(ok(ds[t], fd), "{what}: s_{t}: {} vs {fd}", ds[t]);
    }
}

#[test]
fn gradients_match_finite_differences() {
    // Rows in cells 1, 0, 1; task b0c0 has no active row.
    let cells = [1u32, 0, 1];
    #[rustfmt::skip]
    let logits = [
        0.3, -1.0, 1.5, 0.4,
        2.0, -0.7, 0.1, 0.2,
        -0.6, 0.9, -1.3, 0.5,
    ];
    let s = [0.3, -0.4, 0.1, 0.6];
    for r in Reduction::ALL {
        for uncertainty in [false, true] {
            for funnel in [false, true] {
                let (binary, funnels, labels) = if funnel {
                    (
                        vec![true, true],
                        vec![(0, 1)],
                        [1.0, 1.0, NAN, 0.0, 0.0, NAN],
                    )
                } else {
                    (vec![true, false], vec![], [1.0, 0.7, NAN, 1.2, 0.0, NAN])
                };
                let mut g = loss(LossSpec {
                    weights: vec![0.7, 1.3, 0.4, 2.0],
                    reduction: r,
                    uncertainty,
                    funnels,
                    ..LossSpec::new(2, binary)
                });
                if uncertainty {
                    set_log_vars(&mut g, &s);
                }
                let what = format!("{r}, uncertainty {uncertainty}, funnel {funnel}");
                finite_difference_check(g, &logits, &labels, &cells, &what);
            }
        }
    }
    // A three-step chain with labels at every level.
    let g = loss(LossSpec {
        funnels: vec![(0, 1), (1, 2)],
        reduction: Reduction::TaskMean,
        uncertainty: true,
        ..LossSpec::new(2, vec![true, true, true])
    });
    #[rustfmt::skip]
    let logits = [
        0.3, -1.0, 1.5, 0.4, -0.2, 0.8,
        2.0, -0.7, 0.1, 0.2, 1.1, -0.9,
    ];
    let labels = [1.0, 1.0, 0.0, NAN, 1.0, 1.0];
    finite_difference_check(g, &logits, &labels, &[0, 1], "chain");
}

#[test]
fn no_active_pair_is_zero_loss_and_zero_gradients() {
    for r in Reduction::ALL {
        for (uncertainty, funnel) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut g = loss(LossSpec {
                reduction: r,
                uncertainty,
                funnels: if funnel { vec![(0, 1)] } else { vec![] },
                ..LossSpec::new(2, vec![true, true])
            });
            if uncertainty {
                set_log_vars(&mut g, &[0.5; 4]);
            }
            let mut d = [1.0; 8];
            let v = g.compute(&[0.5; 8], &[NAN; 4], &[0, 1], &mut d);
            assert_eq!((v.loss, v.active), (0.0, 0), "{r}");
            assert!(d.iter().all(|&x| x == 0.0));
            assert!(g.log_var_grads().iter().all(|&x| x == 0.0));
            // An empty batch too.
            let v = g.compute(&[], &[], &[], &mut []);
            assert_eq!((v.loss, v.active), (0.0, 0));
            assert!(v.per_task.iter().all(|&(s, k)| s == 0.0 && k == 0));
        }
    }
}

#[test]
fn rows_outside_the_grid_are_skipped() {
    let mut g = mixed(Reduction::ActiveMean);
    let mut d = [1.0f64; 8];
    let v = g.compute(&[0.1; 8], &[1.0, 2.0, 0.0, 1.0], &[7, 0], &mut d);
    assert_eq!((v.skipped_rows, v.active), (1, 2));
    assert!(d[..4].iter().all(|&x| x == 0.0));
    let mut out = Vec::new();
    g.predict(&[0.1; 8], &[7, 0], &mut out);
    assert!(out[0].is_nan() && out[1].is_nan() && out[2].is_finite());
}

#[test]
fn f32_logits_work_like_f64() {
    let mut g = GridLoss::<f32>::new(LossSpec {
        weights: WEIGHTS.to_vec(),
        ..LossSpec::new(2, vec![true, false])
    })
    .unwrap();
    let logits: Vec<f32> = LOGITS.iter().map(|&x| x as f32).collect();
    let mut d = [0.0f32; 12];
    let v = g.compute(&logits, &LABELS, &CELLS, &mut d);
    let w = mixed(Reduction::ActiveMean).value(&LOGITS, &LABELS, &CELLS);
    assert!((v.loss - w.loss).abs() < 1e-6);
    assert!((d[0] as f64 - (sig(0.3) - 1.0) / 4.0).abs() < 1e-7);
}

#[test]
fn predictions_come_from_the_rows_cell() {
    let g = mixed(Reduction::ActiveMean);
    let logits = [0.0, 2.0, 5.0, 7.0];
    let mut out = Vec::new();
    g.predict(&logits, &[1], &mut out);
    assert!((out[0] as f64 - sig(2.0)).abs() < 1e-7);
    assert_eq!(out[1], 7.0);
}

#[test]
fn logloss_is_stable_for_large_logits() {
    let (l, d) = logloss_with_logit(800.0, 0.0);
    assert!((l - 800.0).abs() < 1e-9 && (d - 1.0).abs() < 1e-12);
    let (l, _) = logloss_with_logit(-800.0, 0.0);
    assert!(l.abs() < 1e-12);
}

#[test]
fn invalid_specs_are_refused() {
    let base = || LossSpec::new(2, vec![true, true, false]);
    let bad = [
        (
            "short weights",
            LossSpec {
                weights: vec![1.0; 5],
                ..base()
            },
        ),
        (
            "negative weight",
            LossSpec {
                weights: vec![1.0, -1.0, 1.0, 1.0, 1.0, 1.0],
                ..base()
            },
        ),
        (
            "NaN weight",
            LossSpec {
                weights: vec![f64::NAN; 6],
                ..base()
            },
        ),
        (
            "regression funnel",
            LossSpec {
                funnels: vec![(0, 2)],
                ..base()
            },
        ),
        (
            "out of range",
            LossSpec {
                funnels: vec![(0, 3)],
                ..base()
            },
        ),
        (
            "self",
            LossSpec {
                funnels: vec![(1, 1)],
                ..base()
            },
        ),
        (
            "duplicate",
            LossSpec {
                funnels: vec![(0, 1), (0, 1)],
                ..base()
            },
        ),
        (
            "two parents",
            LossSpec {
                funnels: vec![(0, 1), (2, 1)],
                ..base()
            },
        ),
        (
            "cycle",
            LossSpec {
                funnels: vec![(0, 1), (1, 0)],
                ..base()
            },
        ),
        ("no cells", LossSpec::new(0, vec![true])),
        ("no behaviours", LossSpec::new(2, vec![])),
    ];
    for (what, spec) in bad {
        assert!(GridLoss::<f32>::new(spec).is_err(), "{what} accepted");
    }
    let chain = LossSpec {
        funnels: vec![(1, 0), (0, 2)],
        binary: vec![true; 3],
        ..base()
    };
    assert!(GridLoss::<f32>::new(chain).is_ok());
}

#[test]
fn reduction_names_round_trip() {
    assert_eq!(Reduction::default(), Reduction::ActiveMean);
    for r in Reduction::ALL {
        assert_eq!(r.to_string().parse::<Reduction>(), Ok(r));
    }
    assert!("mean".parse::<Reduction>().is_err());
}

// The AITM batch: click (0) → buy (1), both binary, α = 0.5; rows in cells 0, 1, 0.
#[rustfmt::skip]
const AITM_LOGITS: [f64; 12] = [
    0.2, 9.0, 0.9, 9.0,
    9.0, 1.0, 9.0, -0.5,
    -1.0, 9.0, 2.0, 9.0,
];
// Row 0: both labels, σ(z_buy) > σ(z_click): penalised. Row 1: both labels, σ(z_buy) <
// σ(z_click): no penalty. Row 2: buy label only: no penalty although σ(z_buy) > σ(z_click).
const AITM_LABELS: [f32; 6] = [1.0, 0.0, 1.0, 1.0, NAN, 0.0];

fn aitm(reduction: Reduction, uncertainty: bool) -> GridLoss<f64> {
    loss(LossSpec {
        reduction,
        uncertainty,
        calibration: vec![(0, 1, 0.5)],
        ..LossSpec::new(2, vec![true, true])
    })
}

#[test]
fn calibration_penalty_by_hand() {
    let dsig = |z: f64| sig(z) * (1.0 - sig(z));
    // Active pairs: b0c0 row 0; b0c1 row 1; b1c0 rows 0, 2; b1c1 row 1 (5 in all).
    let pair = [
        (0, ll(0.2, 1.0), sig(0.2) - 1.0),
        (5, ll(1.0, 1.0), sig(1.0) - 1.0),
        (2, ll(0.9, 0.0), sig(0.9)),
        (10, ll(2.0, 0.0), sig(2.0)),
        (7, ll(-0.5, 1.0), sig(-0.5) - 1.0),
    ];
    let penalty = 0.5 * (sig(0.9) - sig(0.2));
    for r in Reduction::ALL {
        // Denominator of each pair's task, and of task b1c0 for the penalty.
        let denom = |k: usize| match r {
            Reduction::ActiveMean => 5.0,
            Reduction::TaskMean => [1.0, 1.0, 2.0, 2.0, 1.0][k],
            Reduction::BatchMean => 3.0,
        };
        let pen_denom = denom(2);
        let mut g = aitm(r, false);
        let mut d = [0.0; 12];
        let v = g.compute(&AITM_LOGITS, &AITM_LABELS, &CELLS, &mut d);
        let base: f64 = pair.iter().enumerate().map(|(k, p)| p.1 / denom(k)).sum();
        assert!(close(v.calibration, penalty / pen_denom), "{r}");
        assert!(close(v.loss, base + penalty / pen_denom), "{r}: {}", v.loss);
        // The penalty leaves the task sums alone.
        assert!(close(v.per_task[2].0, ll(0.9, 0.0) + ll(2.0, 0.0)));
        let mut expect: Vec<(usize, f64)> = pair
            .iter()
            .enumerate()
            .map(|(k, p)| (p.0, p.2 / denom(k)))
            .collect();
        expect[0].1 -= 0.5 * dsig(0.2) / pen_denom;
        expect[2].1 += 0.5 * dsig(0.9) / pen_denom;
        assert_grads(&d, &expect);
        assert_eq!(v, g.value(&AITM_LOGITS, &AITM_LABELS, &CELLS), "{r}");
    }
    // α = 0 is the plain loss; predictions are plain sigmoids either way.
    let mut zero = loss(LossSpec {
        calibration: vec![(0, 1, 0.0)],
        ..LossSpec::new(2, vec![true, true])
    });
    let plain = loss(LossSpec::new(2, vec![true, true]));
    let mut d = [0.0; 12];
    let v = zero.compute(&AITM_LOGITS, &AITM_LABELS, &CELLS, &mut d);
    assert_eq!(v, plain.value(&AITM_LOGITS, &AITM_LABELS, &CELLS));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    aitm(Reduction::ActiveMean, false).predict(&AITM_LOGITS, &CELLS, &mut a);
    plain.predict(&AITM_LOGITS, &CELLS, &mut b);
    assert_eq!(a, b);
    assert!((a[1] as f64 - sig(0.9)).abs() < 1e-7);
}

#[test]
fn calibration_is_not_uncertainty_weighted() {
    let mut g = aitm(Reduction::TaskMean, true);
    let s = [0.5, -0.3, 0.2, 0.7];
    set_log_vars(&mut g, &s);
    let mut d = [0.0; 12];
    let v = g.compute(&AITM_LOGITS, &AITM_LABELS, &CELLS, &mut d);
    let task_means = [
        ll(0.2, 1.0),
        ll(1.0, 1.0),
        (ll(0.9, 0.0) + ll(2.0, 0.0)) / 2.0,
        ll(-0.5, 1.0),
    ];
    let penalty = 0.5 * (sig(0.9) - sig(0.2)) / 2.0;
    let expect: f64 = (0..4).map(|t| (-s[t]).exp() * task_means[t] + s[t]).sum();
    assert!(
        close(v.loss, expect + penalty),
        "{} vs {}",
        v.loss,
        expect + penalty
    );
    for t in 0..4 {
        let want = 1.0 - (-s[t]).exp() * task_means[t];
        assert!(close(g.log_var_grads()[t], want), "s_{t}");
    }
}

#[test]
fn calibration_gradients_match_finite_differences() {
    // 3 behaviours × 2 cells; rows in cells 1, 0, 1, 0; no logit pair tied.
    let cells = [1u32, 0, 1, 0];
    #[rustfmt::skip]
    let logits = [
        0.3, -1.0, 1.5, 0.4, -0.2, 0.8,
        2.0, -0.7, 0.1, 0.2, 1.1, -0.9,
        -0.6, 0.9, -1.3, 1.7, 0.5, 2.2,
        0.7, 0.3, 1.4, -0.1, -0.8, 0.6,
    ];
    #[rustfmt::skip]
    let labels = [
        1.0, 0.0, 1.0,
        1.0, 1.0, NAN,
        0.0, 1.0, 1.0,
        NAN, 0.0, 0.0,
    ];
    let s = [0.3, -0.4, 0.1, 0.6, -0.2, 0.5];
    for r in Reduction::ALL {
        for uncertainty in [false, true] {
            // A calibration chain 0 → 1 → 2, or ESMM 0 → 1 beside a calibration 0 → 2.
            for esmm in [false, true] {
                let (funnels, calibration) = if esmm {
                    (vec![(0, 1)], vec![(0, 2, 0.8)])
                } else {
                    (vec![], vec![(0, 1, 0.5), (1, 2, 1.5)])
                };
                let mut g = loss(LossSpec {
                    weights: vec![0.7, 1.3, 0.4, 2.0, 1.1, 0.6],
                    reduction: r,
                    uncertainty,
                    funnels,
                    calibration,
                    ..LossSpec::new(2, vec![true; 3])
                });
                if uncertainty {
                    set_log_vars(&mut g, &s);
                }
                let v = g.value(&logits, &labels, &cells);
                assert!(v.calibration > 0.0);
                let what = format!("calibration: {r}, uncertainty {uncertainty}, esmm {esmm}");
                finite_difference_check(g, &logits, &labels, &cells, &what);
            }
        }
    }
}

#[test]
fn invalid_calibrations_are_refused() {
    let base = || LossSpec::new(2, vec![true, true, false, true]);
    type Case = (&'static str, Vec<(usize, usize)>, Vec<(usize, usize, f64)>);
    let bad: [Case; 9] = [
        ("out of range", vec![], vec![(0, 4, 1.0)]),
        ("self", vec![], vec![(1, 1, 1.0)]),
        ("regression", vec![], vec![(0, 2, 1.0)]),
        ("negative α", vec![], vec![(0, 1, -0.1)]),
        ("NaN α", vec![], vec![(0, 1, f64::NAN)]),
        ("infinite α", vec![], vec![(0, 1, f64::INFINITY)]),
        ("twice", vec![], vec![(0, 1, 1.0), (0, 1, 2.0)]),
        ("ESMM and AITM", vec![(0, 1)], vec![(0, 1, 1.0)]),
        ("ESMM conditional", vec![(0, 1)], vec![(1, 3, 1.0)]),
    ];
    for (what, funnels, calibration) in bad {
        let spec = LossSpec {
            funnels,
            calibration,
            ..base()
        };
        assert!(GridLoss::<f32>::new(spec).is_err(), "{what} accepted");
    }
    let e = GridLoss::<f32>::new(LossSpec {
        funnels: vec![(0, 1)],
        calibration: vec![(0, 1, 1.0)],
        ..base()
    })
    .unwrap_err();
    assert!(e.contains("both an ESMM funnel and an AITM"), "{e}");
    // ESMM on one pair, AITM on another sharing the funnel's `a`; chains; α = 0.
    let ok = LossSpec {
        funnels: vec![(0, 1)],
        calibration: vec![(0, 3, 0.0), (3, 0, 1.0)],
        ..base()
    };
    assert!(GridLoss::<f32>::new(ok).is_ok());
}

#[test]
fn row_weights_multiply_each_rows_terms_by_hand() {
    let (la, lb, lc, ld) = pair_losses();
    let mut g = mixed(Reduction::ActiveMean);
    let w = [2.0f32, 0.5, 3.0];
    let mut d = [0.0; 12];
    let v = g.compute_weighted(&LOGITS, &LABELS, &CELLS, &w, &mut d);
    // Rows 0 (pairs a, b), 1 (pair c), 2 (pair d); denominators stay the count, 4.
    let want = (2.0 * la + 2.0 * 0.5 * lb + 0.5 * 2.0 * lc + 3.0 * 0.5 * ld) / 4.0;
    assert!(close(v.loss, want), "{} vs {want}", v.loss);
    assert_grads(
        &d,
        &[
            (0, 2.0 * (sig(0.3) - 1.0) / 4.0),
            (2, 2.0 * 0.5 * 2.0 * (1.5 - 2.0) / 4.0),
            (5, 0.5 * 2.0 * sig(-0.7) / 4.0),
            (10, 3.0 * 0.5 * 2.0 * (0.2 - 0.5) / 4.0),
        ],
    );
    // Unit weights are the unweighted loss.
    let plain = g.value(&LOGITS, &LABELS, &CELLS).loss;
    let ones = g.value_weighted(&LOGITS, &LABELS, &CELLS, &[1.0; 3]).loss;
    assert_eq!(plain, ones);
}

#[test]
fn weighted_gradients_match_finite_differences() {
    let cells = [1u32, 0, 1];
    #[rustfmt::skip]
    let logits = [
        0.3, -1.0, 1.5, 0.4,
        2.0, -0.7, 0.1, 0.2,
        -0.6, 0.9, -1.3, 0.5,
    ];
    let labels = [1.0, 1.0, NAN, 0.0, 0.0, 1.0];
    let w = [0.3f32, 2.5, 1.7];
    for r in Reduction::ALL {
        let mut g = loss(LossSpec {
            reduction: r,
            calibration: vec![(0, 1, 0.8)],
            ..LossSpec::new(2, vec![true, true])
        });
        let h = 1e-6;
        let mut d = vec![0.0; logits.len()];
        g.compute_weighted(&logits, &labels, &cells, &w, &mut d);
        let mut p = logits.to_vec();
        for k in 0..p.len() {
            p[k] = logits[k] + h;
            let up = g.value_weighted(&p, &labels, &cells, &w).loss;
            p[k] = logits[k] - h;
            let down = g.value_weighted(&p, &labels, &cells, &w).loss;
            p[k] = logits[k];
            let fd = (up - down) / (2.0 * h);
            assert!(
                (d[k] - fd).abs() <= 1e-8 + 1e-6 * fd.abs(),
                "{r}: logit {k}: {} vs {fd}",
                d[k]
            );
        }
    }
}

#[test]
fn negative_sampling_correction_restores_the_odds() {
    // Negatives kept at r = 0.2: a model trained on the sample predicts odds 5× too
    // high; p = 0.5 on the sample is p = 1/6 on the full data.
    let g = loss(LossSpec {
        negative_rates: vec![0.2, 1.0],
        ..LossSpec::new(1, vec![true, true])
    });
    let mut out = Vec::new();
    g.predict(&[0.0, 0.0], &[0], &mut out);
    assert!((out[0] as f64 - 1.0 / 6.0).abs() < 1e-7, "{}", out[0]);
    assert_eq!(out[1], 0.5, "an unsampled behaviour is untouched");
    for (rates, binary, why) in [
        (vec![0.0, 1.0], vec![true, true], "not in (0, 1]"),
        (vec![1.5, 1.0], vec![true, true], "not in (0, 1]"),
        (
            vec![0.5],
            vec![true, true],
            "1 negative sampling rates for 2 behaviours",
        ),
        (
            vec![1.0, 0.5],
            vec![true, false],
            "needs a binary behaviour",
        ),
    ] {
        let e = GridLoss::<f64>::new(LossSpec {
            negative_rates: rates,
            ..LossSpec::new(1, binary)
        })
        .unwrap_err();
        assert!(e.contains(why), "{e}");
    }
}
