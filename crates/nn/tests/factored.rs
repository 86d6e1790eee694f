//! The factored product of one user's request (`mfh_nn::product::with_factored_input*`):
//! which products take it, and that they give the plain product's values.

use mfh_nn::product::{
    matmul_bias_act, with_factored_input, with_factored_input_over,
    with_factored_input_over_requests,
};
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

/// `C = relu?(x·op(W) + bias + beta·C0)` with `W` stored n × k when `trans_b`.
#[allow(clippy::too_many_arguments)]
fn product_full(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    trans_b: bool,
    bias: &[f32],
    beta: f32,
    c0: &[f32],
    relu: bool,
) -> Vec<f32> {
    let mut c = c0.to_vec();
    let ldb = if trans_b { k } else { n };
    matmul_bias_act(
        m,
        n,
        k,
        1.0,
        x,
        k,
        false,
        w,
        ldb,
        trans_b,
        beta,
        &mut c,
        n,
        Some(bias),
        relu,
    );
    c
}

/// Several requests scored together (a server's batch): each request's user columns
/// are multiplied once per request when their first rows are pinned with the input,
/// and the results are the plain product's up to rounding, with a bias, beta·C, a ReLU
/// and a transposed weight, and with a request of one row among them. Pinned as one
/// request, the same input is not factored (its user columns vary between requests);
/// nor is it when the requests average fewer than two rows.
#[test]
fn several_requests_are_factored_each_over_its_own_user_columns() {
    let mut rng = Rng::new(43);
    let (k, shared) = (60, 40);
    let sizes = [20, 1, 35, 3, 41];
    let mut x = Vec::new();
    let mut starts = Vec::new();
    for &rows in &sizes {
        starts.push(x.len() / k);
        x.extend(request(&mut rng, rows, k, shared));
    }
    let m = x.len() / k;
    assert_eq!(m, sizes.iter().sum::<usize>());
    let (wide, narrow) = (48, 4);
    for trans_b in [false, true] {
        let w1: Vec<f32> = (0..k * wide).map(|_| rng.normal() as f32).collect();
        let b1: Vec<f32> = (0..wide).map(|_| rng.normal() as f32).collect();
        let c0: Vec<f32> = (0..m * wide).map(|_| rng.normal() as f32).collect();
        let w2: Vec<f32> = (0..k * narrow).map(|_| rng.normal() as f32).collect();
        let b2: Vec<f32> = (0..narrow).map(|_| rng.normal() as f32).collect();
        let wide_of = || product_full(&x, m, k, &w1, wide, trans_b, &b1, 0.5, &c0, true);
        let gate_of = || product(&x, m, k, &w2, narrow, &b2);
        let (plain_wide, plain_gate) = (wide_of(), gate_of());
        let what = format!("trans_b {trans_b}");

        let (wide_r, gate_r) =
            with_factored_input_over_requests(&x, m, k, k, &starts, || (wide_of(), gate_of()));
        assert_ne!(wide_r, plain_wide, "{what}: not factored per request");
        close(&wide_r, &plain_wide, &format!("{what}: wide, per request"));
        assert_ne!(gate_r, plain_gate, "{what}: gate not factored per request");
        close(&gate_r, &plain_gate, &format!("{what}: gate, per request"));

        let (wide_one, _) = with_factored_input_over(&x, m, k, k, || (wide_of(), gate_of()));
        assert_eq!(wide_one, plain_wide, "{what}: factored as one request");

        let every_row: Vec<usize> = (0..m).collect();
        let wide_tiny = with_factored_input_over_requests(&x, m, k, k, &every_row, wide_of);
        assert_eq!(
            wide_tiny, plain_wide,
            "{what}: factored over one-row requests"
        );
    }
}
