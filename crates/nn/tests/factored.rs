//! The factored product of one user's request (`mfh_nn::product::with_factored_input*`):
//! which products take it, and that they give the plain product's values.

use mfh_nn::product::{matmul_bias_act, with_factored_input, with_factored_input_over};
use mfh_nn::Rng;

/// `rows` rows of `k` inputs, the first `shared` columns equal on every row.
fn request(rng: &mut Rng, rows: usize, k: usize, shared: usize) -> Vec<f32> {
    let user: Vec<f32> = (0..shared).map(|_| rng.normal() as f32).collect();
    (0..rows * k)
        .map(|i| {
            let j = i % k;
            if j < shared {
                user[j]
            } else {
                rng.normal() as f32
            }
        })
        .collect()
}

fn product(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    matmul_bias_act(
        m,
        n,
        k,
        1.0,
        x,
        k,
        false,
        w,
        n,
        false,
        0.0,
        &mut c,
        n,
        Some(bias),
        false,
    );
    c
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

/// A gate (3 outputs) is factored only over the pinned input, and only once a wider
/// product has sorted its columns; wide products are factored with or without the pin.
/// Factored results differ from the plain ones by rounding only.
#[test]
fn narrow_products_are_factored_only_over_the_prepared_pinned_input() {
    let mut rng = Rng::new(41);
    let (m, k) = (200, 50);
    let x = request(&mut rng, m, k, 30);
    let (wide, narrow) = (64, 3);
    let w1: Vec<f32> = (0..k * wide).map(|_| rng.normal() as f32).collect();
    let b1: Vec<f32> = (0..wide).map(|_| rng.normal() as f32).collect();
    let w2: Vec<f32> = (0..k * narrow).map(|_| rng.normal() as f32).collect();
    let b2: Vec<f32> = (0..narrow).map(|_| rng.normal() as f32).collect();
    let plain_wide = product(&x, m, k, &w1, wide, &b1);
    let plain_gate = product(&x, m, k, &w2, narrow, &b2);

    // Not pinned: the wide product is factored (other bits), the gate is not (same bits).
    let (wide_f, gate_f) = with_factored_input(|| {
        (
            product(&x, m, k, &w1, wide, &b1),
            product(&x, m, k, &w2, narrow, &b2),
        )
    });
    assert_ne!(wide_f, plain_wide, "the wide product was not factored");
    close(&wide_f, &plain_wide, "wide, factored");
    assert_eq!(gate_f, plain_gate, "a gate was factored without a pin");

    // Pinned, the gate first: its columns are not sorted yet, so it is not factored.
    let gate_first = with_factored_input_over(&x, m, k, k, || product(&x, m, k, &w2, narrow, &b2));
    assert_eq!(gate_first, plain_gate, "a gate sorted the pinned columns");

    // Pinned, after the wide product: factored over the varying columns.
    let (wide_p, gate_p) = with_factored_input_over(&x, m, k, k, || {
        (
            product(&x, m, k, &w1, wide, &b1),
            product(&x, m, k, &w2, narrow, &b2),
        )
    });
    assert_eq!(wide_p, wide_f, "pinning changed the wide product");
    assert_ne!(
        gate_p, plain_gate,
        "the gate over the pinned input was not factored"
    );
    close(&gate_p, &plain_gate, "gate, factored");

    // Another operand of the same shape (not the pinned one) is not mistaken for it.
    let y = request(&mut rng, m, k, 30);
    let (_, gate_y) = with_factored_input_over(&x, m, k, k, || {
        (
            product(&x, m, k, &w1, wide, &b1),
            product(&y, m, k, &w2, narrow, &b2),
        )
    });
    assert_eq!(gate_y, product(&y, m, k, &w2, narrow, &b2), "y taken for x");
}
