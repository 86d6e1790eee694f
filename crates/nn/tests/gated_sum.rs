//! The gated sum over expert banks (what CGC levels mix with) against the one-buffer
//! kernel, bit for bit, with and without a bank read at other rows; and the row gathers.

use mfh_nn::{
    gated_sum_backward, gated_sum_banks_backward, gated_sum_banks_forward, gated_sum_forward,
    gather_rows, scatter_add_rows, Bank, Rng, Slot,
};

fn randn(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

#[test]
fn one_bank_with_every_expert_is_the_one_buffer_kernel() {
    let mut rng = Rng::new(3);
    let (n, e, d) = (37, 5, 19);
    let g = randn(&mut rng, n * e);
    let x = randn(&mut rng, n * e * d);
    let dout = randn(&mut rng, n * d);
    let banks = [Bank {
        out: &x[..],
        experts: e,
        rows: None,
    }];
    let members: Vec<Slot> = (0..e).map(|expert| Slot { bank: 0, expert }).collect();
    let (mut want, mut got) = (vec![0f32; n * d], vec![1f32; n * d]);
    gated_sum_forward(&g, &x, n, e, d, &mut want);
    gated_sum_banks_forward(&g, &banks, &members, n, d, &mut got);
    assert_eq!(want, got);
    let (mut dg, mut dx) = (vec![0.5f32; n * e], vec![0.25f32; n * e * d]);
    gated_sum_backward(&g, &x, &dout, n, e, d, &mut dg, &mut dx);
    let (mut bdg, mut bdx) = (vec![0.5f32; n * e], vec![vec![0.25f32; n * e * d]]);
    gated_sum_banks_backward(&g, &banks, &members, &dout, n, d, &mut bdg, &mut bdx);
    assert_eq!(dg, bdg);
    assert_eq!(dx, bdx[0]);
}

/// Two banks, the second over every row of a batch and read at some of its rows (a
/// routed CGC's shared experts), equal the one-buffer kernel over the experts gathered
/// side by side in member order.
#[test]
fn banks_read_at_other_rows_equal_the_gathered_experts() {
    let mut rng = Rng::new(5);
    let (n, d, t, s) = (9, 7, 2, 3);
    let rows = [1usize, 4, 5, 8];
    let m = rows.len();
    let task = randn(&mut rng, m * t * d);
    let shared = randn(&mut rng, n * s * d);
    let g = randn(&mut rng, m * (t + s));
    let dout = randn(&mut rng, m * d);
    let banks = [
        Bank {
            out: &task[..],
            experts: t,
            rows: None,
        },
        Bank {
            out: &shared[..],
            experts: s,
            rows: Some(&rows[..]),
        },
    ];
    let members: Vec<Slot> = (0..t)
        .map(|expert| Slot { bank: 0, expert })
        .chain((0..s).map(|expert| Slot { bank: 1, expert }))
        .collect();
    // The same experts side by side: row j = task row j, then shared row rows[j].
    let e = t + s;
    let mut x = vec![0f32; m * e * d];
    for (j, &r) in rows.iter().enumerate() {
        x[j * e * d..(j * e + t) * d].copy_from_slice(&task[j * t * d..(j + 1) * t * d]);
        x[(j * e + t) * d..(j + 1) * e * d].copy_from_slice(&shared[r * s * d..(r + 1) * s * d]);
    }
    let (mut want, mut got) = (vec![0f32; m * d], vec![0f32; m * d]);
    gated_sum_forward(&g, &x, m, e, d, &mut want);
    gated_sum_banks_forward(&g, &banks, &members, m, d, &mut got);
    assert_eq!(want, got);
    let (mut dg, mut dx) = (vec![0f32; m * e], vec![0f32; m * e * d]);
    gated_sum_backward(&g, &x, &dout, m, e, d, &mut dg, &mut dx);
    let mut bdg = vec![0f32; m * e];
    let mut d_banks = vec![vec![0f32; m * t * d], vec![0f32; n * s * d]];
    gated_sum_banks_backward(&g, &banks, &members, &dout, m, d, &mut bdg, &mut d_banks);
    assert_eq!(dg, bdg);
    for (j, &r) in rows.iter().enumerate() {
        assert_eq!(
            &dx[j * e * d..(j * e + t) * d],
            &d_banks[0][j * t * d..(j + 1) * t * d]
        );
        assert_eq!(
            &dx[(j * e + t) * d..(j + 1) * e * d],
            &d_banks[1][r * s * d..(r + 1) * s * d]
        );
    }
    // Shared rows no sum row reads keep a zero gradient.
    assert!(d_banks[1][..s * d].iter().all(|&v| v == 0.0));
}

#[test]
fn gather_then_scatter_add_returns_each_row_once() {
    let (w, rows) = (3, [4usize, 0, 2]);
    let src: Vec<f64> = (0..5 * w).map(|v| v as f64).collect();
    let mut compact = vec![0.0; rows.len() * w];
    gather_rows(&src, w, &rows, &mut compact);
    assert_eq!(compact, [12.0, 13.0, 14.0, 0.0, 1.0, 2.0, 6.0, 7.0, 8.0]);
    let mut back = vec![1.0; 5 * w];
    scatter_add_rows(&compact, w, &rows, &mut back);
    for r in 0..5 {
        let want = if rows.contains(&r) { 1.0 } else { 0.0 };
        for c in 0..w {
            assert_eq!(back[r * w + c], 1.0 + want * src[r * w + c]);
        }
    }
}
