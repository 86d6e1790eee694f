//! STEM: finite-difference gradients (f64) on the columns a task's gradient may reach,
//! exact zeros on the other groups' blocks, per behaviour and per task, and the table
//! form.

use mfh_model::{build_model, GridShape, InputField, ModelSpec, MultiTaskModel};
use mfh_nn::gradcheck::{check_module, compare, numeric_grad, Tolerance};
use mfh_nn::Rng;

mod common;
use common::*;

/// Two embedded fields of base widths 2 and 1 (each `copies` blocks wide) and two
/// numeric inputs; returns the fields and the input width.
fn fields(copies: usize) -> (Vec<InputField>, usize) {
    let f = vec![
        InputField {
            name: "uid".into(),
            offset: 0,
            width: 2 * copies,
        },
        InputField {
            name: "item".into(),
            offset: 2 * copies,
            width: copies,
        },
    ];
    (f, 3 * copies + 2)
}

fn spec(extra: &str, g: &GridShape) -> (ModelSpec, usize) {
    let mut s: ModelSpec =
        toml::from_str(&format!("type = \"stem\"\ntower = [5, 3]\n{extra}")).unwrap();
    let (f, n_in) = fields(s.embedding_copies(g));
    s.bind(&f).unwrap();
    (s, n_in)
}

/// Which specific group (None: shared or numeric) input column j belongs to.
fn group_of_column(j: usize, copies: usize) -> Option<usize> {
    let (d_uid, d_item) = (2, 1);
    let block = |off: usize, d: usize| (j >= off && j < off + d * copies).then(|| (j - off) / d);
    match block(0, d_uid).or_else(|| block(2 * copies, d_item)) {
        Some(0) | None => None,
        Some(b) => Some(b - 1),
    }
}

fn net(s: &ModelSpec, g: &GridShape, n_in: usize) -> Box<dyn MultiTaskModel<f64>> {
    let mut m = build_model::<f64>(s, g, n_in, 3).unwrap();
    let mut rng = Rng::new(21);
    m.visit_params("", &mut |_, p, _| {
        p.iter_mut().for_each(|v| *v += 0.1 * rng.normal())
    });
    m
}

#[test]
fn gradients_reach_only_the_shared_and_own_blocks() {
    for (extra, sizes, per_task) in [
        ("", vec![3, 2, 2], false),
        ("specific = \"task\"", vec![2, 3], true),
        ("batch_norm = true", vec![2, 2], false),
    ] {
        let g = shape(&sizes);
        let (s, n_in) = spec(extra, &g);
        let copies = s.embedding_copies(&g);
        let groups = if per_task { g.n_tasks() } else { sizes[0] };
        assert_eq!(copies, 1 + groups, "{extra}");
        let mut m = net(&s, &g, n_in);
        let mut rng = Rng::new(5);
        let n = 2 * g.n_cells();
        let x = randn(&mut rng, n * n_in);
        let cells = cells_for(&g, n, &mut rng);
        let r = masked_weights(&g, &cells, &mut rng);
        let tol = Tolerance::default();
        // Parameters see everything: the towers read the whole input.
        m.zero_grad();
        m.forward(&x, &cells, n, true);
        m.backward(&x, &cells, &r, None, n);
        check_module(m.as_mut(), |m| dot(m.forward(&x, &cells, n, true), &r), tol)
            .unwrap_or_else(|e| panic!("{extra}: {e}"));
        // The input gradient of one group's tasks alone: finite differences on the
        // columns it may reach, exactly 0 on the other groups' blocks.
        let nt = g.n_tasks();
        for grp in 0..groups {
            let in_group = |t: usize| {
                if per_task {
                    t == grp
                } else {
                    t / g.n_cells() == grp
                }
            };
            let rg: Vec<f64> = (0..n * nt)
                .map(|k| if in_group(k % nt) { r[k] } else { 0.0 })
                .collect();
            m.forward(&x, &cells, n, true);
            let mut dx = vec![0.0; n * n_in];
            m.backward(&x, &cells, &rg, Some(&mut dx), n);
            let num = numeric_grad(&mut x.clone(), |xv| {
                dot(m.forward(xv, &cells, n, true), &rg)
            });
            let (mut reached, mut foreign_read) = (0, 0);
            for i in 0..n {
                for j in 0..n_in {
                    let k = i * n_in + j;
                    match group_of_column(j, copies) {
                        Some(o) if o != grp => {
                            assert_eq!(
                                dx[k], 0.0,
                                "{extra}: group {grp} reached group {o}'s block at [{i},{j}]"
                            );
                            // ... though the towers do read it.
                            foreign_read += (num[k].abs() > 1e-9) as usize;
                        }
                        _ => {
                            compare(
                                &format!("{extra}: group {grp} dx[{i},{j}]"),
                                &[dx[k]],
                                &[num[k]],
                                tol,
                            )
                            .unwrap();
                            reached += (dx[k] != 0.0) as usize;
                        }
                    }
                }
            }
            assert!(reached > 0, "{extra}: group {grp} sent no gradient");
            assert!(
                foreign_read > 0,
                "{extra}: group {grp}'s towers should read the other blocks"
            );
        }
    }
}

#[test]
fn table_form_and_errors() {
    let g = shape(&[3, 2]);
    let (s, n_in) = spec("", &g);
    let ModelSpec::Stem(st) = &s else {
        unreachable!()
    };
    assert_eq!(st.field_columns, vec![[0, 8], [8, 4]]);
    let text = toml::to_string(&s).unwrap();
    let back: ModelSpec = toml::from_str(&text).unwrap();
    assert_eq!(back, s);
    let d = build_model::<f64>(&s, &g, n_in, 1).unwrap().describe();
    assert!(
        d.contains("2 fields, each a shared block + 3 specific (one per behaviour)"),
        "{d}"
    );
    // A model bound for a grid of 3 behaviours does not build over 2.
    let e = build_model::<f64>(&s, &shape(&[2, 2]), n_in, 1)
        .err()
        .unwrap();
    assert!(e.contains("field_columns"), "{e}");
    let e = toml::from_str::<ModelSpec>("type = \"stem\"\ntower = [4]\nspecific = \"cell\"")
        .unwrap_err();
    assert!(e.to_string().contains("cell"), "{e}");
    // AITM transfers would carry one behaviour's loss into another's blocks: refused.
    let (s2, n2) = spec("", &g);
    let e = mfh_model::build_model_with_transfers::<f64>(&s2, &g, n2, 1, &[(0, 1)])
        .err()
        .unwrap();
    assert!(e.contains("AITM"), "{e}");
    // A spec never bound to its input is refused, not built without masks.
    let unbound: ModelSpec = toml::from_str("type = \"stem\"\ntower = [4]").unwrap();
    let e = build_model::<f64>(&unbound, &g, n2, 1).err().unwrap();
    assert!(e.contains("field_columns"), "{e}");
    let s: ModelSpec = toml::from_str("type = \"stem\"\ntower = []").unwrap();
    assert!(build_model::<f64>(&s, &g, 4, 1)
        .err()
        .unwrap()
        .contains("tower"));
}
