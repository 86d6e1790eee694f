//! PEPNet: finite-difference gradients (f64) with ID and facet priors, the stopped
//! gradients of the gates' general inputs, towers per cell against every tower on every
//! row, binding prior names to input columns, and the spec's table form.

use mfh_model::{build_model, GridShape, InputField, ModelSpec, MultiTaskModel, Pepnet};
use mfh_nn::gradcheck::{check_module, compare, numeric_grad, Tolerance};
use mfh_nn::{Module, Rng};

mod common;
use common::*;

fn fields() -> Vec<InputField> {
    // uid (3 wide) at 0, item (2 wide) at 3, then two numeric inputs.
    vec![
        InputField {
            name: "uid".into(),
            offset: 0,
            width: 3,
        },
        InputField {
            name: "item".into(),
            offset: 3,
            width: 2,
        },
        InputField {
            name: "price".into(),
            offset: 5,
            width: 1,
        },
        InputField {
            name: "hour".into(),
            offset: 6,
            width: 1,
        },
    ]
}

fn spec(extra: &str) -> ModelSpec {
    let tower = if extra.contains("tower") {
        ""
    } else {
        "tower = [4, 3]\n"
    };
    let mut s: ModelSpec = toml::from_str(&format!(
        "type = \"pepnet\"\n{tower}gate_hidden = 5\n{extra}"
    ))
    .unwrap();
    s.bind(&fields()).unwrap();
    s
}

fn net(spec: &ModelSpec, g: &GridShape, seed: u64) -> Box<dyn MultiTaskModel<f64>> {
    let mut net = build_model::<f64>(spec, g, 7, seed).unwrap();
    // Biases start at 0: move every parameter off its initial value so that no ReLU
    // sits on its kink, where finite differences are one-sided.
    let mut rng = Rng::new(seed + 100);
    net.visit_params("", &mut |_, p, _| {
        p.iter_mut().for_each(|v| *v += 0.1 * rng.normal())
    });
    net
}

/// Every parameter gradient, and the input gradient against finite differences over the
/// input with the gates' general inputs held at their values (the stopped gradient).
fn fd_check(extra: &str, sizes: &[usize]) {
    let g = shape(sizes);
    let s = spec(extra);
    let ModelSpec::Pepnet(ps) = &s else {
        unreachable!()
    };
    let mut m: Pepnet<f64> = Pepnet::new(ps, &g, 7, 3).unwrap();
    let mut rng = Rng::new(13);
    // Biases start at 0: move every parameter off its initial value so that no ReLU sits
    // on its kink, where finite differences are one-sided.
    m.visit_params("", &mut |_, p, _| {
        p.iter_mut().for_each(|v| *v += 0.1 * rng.normal())
    });
    let n = 2 * g.n_cells();
    let x = randn(&mut rng, n * 7);
    let cells = cells_for(&g, n, &mut rng);
    let r = masked_weights(&g, &cells, &mut rng);
    m.zero_grad();
    m.forward(&x, &cells, n, true);
    let mut dx = vec![0.0; n * 7];
    m.backward(&x, &cells, &r, Some(&mut dx), n);
    let tol = Tolerance::default();
    let held_x = x.clone();
    let held_xe = m.scaled_input().to_vec();
    check_module(
        &mut m,
        |m| dot(m.forward_frozen(&x, &held_x, &held_xe, &cells, n), &r),
        tol,
    )
    .unwrap_or_else(|e| panic!("{extra}: {e}"));
    let num = numeric_grad(&mut x.clone(), |xv| {
        dot(m.forward_frozen(xv, &held_x, &held_xe, &cells, n), &r)
    });
    compare(&format!("{extra}: dx"), &dx, &num, tol).unwrap();
    // Without the stop the gradient would differ: finite differences of the whole map.
    let full = numeric_grad(&mut x.clone(), |xv| dot(m.forward(xv, &cells, n, true), &r));
    assert!(
        compare("full", &dx, &full, tol).is_err(),
        "{extra}: the gates' general inputs should not be differentiated"
    );
}

#[test]
fn gradients_match_finite_differences() {
    fd_check("priors = [\"uid\", \"item\"]", &[3, 2, 2]);
    fd_check("priors = [\"item\"]\nfacet_priors = false", &[2, 3]);
    fd_check("priors = []\ngamma = 1.5", &[2, 2, 3]);
    fd_check("priors = [\"hour\", \"uid\"]\ntower = [4]", &[2]);
}

#[test]
fn binding_naming_and_the_table_form() {
    let g = shape(&[2, 2, 2]);
    let s = spec("priors = [\"uid\", \"item\"]");
    let ModelSpec::Pepnet(p) = &s else {
        unreachable!()
    };
    assert_eq!(p.prior_columns, vec![[0, 3], [3, 2]]);
    // The bound table form reads back as the same spec.
    let text = toml::to_string(&s).unwrap();
    assert!(
        text.contains("type = \"pepnet\"") && text.contains("prior_columns"),
        "{text}"
    );
    let back: ModelSpec = toml::from_str(&text).unwrap();
    assert_eq!(back, s);
    // The same seed builds the same network; another seed another.
    let mut rng = Rng::new(1);
    let n = g.n_cells();
    let x = randn(&mut rng, n * 7);
    let cells = cells_for(&g, n, &mut rng);
    let a = net(&s, &g, 3).forward(&x, &cells, n, false).to_vec();
    let b = net(&s, &g, 3).forward(&x, &cells, n, false).to_vec();
    let c = net(&s, &g, 4).forward(&x, &cells, n, false).to_vec();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let d = net(&s, &g, 3).describe();
    assert!(
        d.contains("priors: uid (3), item (2), 4 facet values one-hot (9 inputs)"),
        "{d}"
    );
    // Unknown prior names, bad keys and values are refused, naming them.
    let mut bad: ModelSpec =
        toml::from_str("type = \"pepnet\"\ntower = [4]\npriors = [\"nope\"]").unwrap();
    let e = bad.bind(&fields()).unwrap_err();
    assert!(
        e.contains("`nope`") && e.contains("uid, item, price, hour"),
        "{e}"
    );
    let e = toml::from_str::<ModelSpec>("type = \"pepnet\"\ntower = [4]\ngates = 3").unwrap_err();
    assert!(e.to_string().contains("gates"), "{e}");
    for (extra, key) in [
        ("tower = []", "tower"),
        ("tower = [4]\ngamma = 0.0", "gamma"),
        ("tower = [4]\ngate_hidden = 0", "gate_hidden"),
    ] {
        let s: ModelSpec = toml::from_str(&format!("type = \"pepnet\"\n{extra}")).unwrap();
        let e = build_model::<f64>(&s, &g, 7, 1).err().unwrap();
        assert!(e.contains(key), "{extra}: {e}");
    }
    // Priors named but not resolved (a spec built without its data) are refused.
    let unbound: ModelSpec =
        toml::from_str("type = \"pepnet\"\ntower = [4]\npriors = [\"uid\"]").unwrap();
    assert!(build_model::<f64>(&unbound, &g, 7, 1).is_err());
    // Columns beyond the input are refused.
    let e = build_model::<f64>(&s, &g, 4, 1).err().unwrap();
    assert!(e.contains("prior_columns"), "{e}");
    // AITM transfers are not built for PEPNet towers.
    assert!(mfh_model::build_model_with_transfers::<f64>(&s, &g, 7, 1, &[(0, 1)]).is_err());
}
