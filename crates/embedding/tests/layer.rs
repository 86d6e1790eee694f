//! Embedding layer tests: layout, eval behaviour, pooling forward/backward, persistence.

use mfh_embedding::{
    EmbeddingLayer, FieldSpec, MultiIds, Pooling, RowOptimizer, SparseInput, TableSpec,
};

const LR: f32 = 0.1;
const EPS: f32 = 1e-8;

/// Adagrad with a unit initial accumulator: unlike a zero start, the update is not
/// invariant to the gradient's scale, so a missing 1/k would show.
fn spec(name: &str, dim: usize, seed: u64) -> TableSpec {
    let mut s = TableSpec::new(name, dim);
    s.seed = seed;
    s.init_scale = 0.5;
    s.optimizer = RowOptimizer::Adagrad {
        lr: LR,
        eps: EPS,
        initial_accumulator: 1.0,
    };
    s
}

fn row_of(layer: &EmbeddingLayer, table: usize, id: u64) -> Vec<f32> {
    let t = &layer.tables()[table];
    t.row(t.lookup_eval(id).expect("row exists")).to_vec()
}

/// The Adagrad step from the table's hyperparameters, computed independently in f64.
fn adagrad_step(w: &[f32], g: &[f64]) -> Vec<f64> {
    let mean_sq = g.iter().map(|x| x * x).sum::<f64>() / g.len() as f64;
    let scale = LR as f64 / ((1.0 + mean_sq).sqrt() + EPS as f64);
    w.iter()
        .zip(g)
        .map(|(&w, g)| w as f64 - scale * g)
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol,
            "element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn field_dim_must_match_its_table() {
    let err = EmbeddingLayer::new(
        vec![spec("a", 4, 0), spec("b", 8, 0)],
        vec![
            FieldSpec::single("user", 0, 4),
            FieldSpec::single("item", 0, 8),
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("item") && err.contains("dim 8") && err.contains("dim 4"),
        "{err}"
    );

    let err =
        EmbeddingLayer::new(vec![spec("a", 4, 0)], vec![FieldSpec::single("u", 3, 4)]).unwrap_err();
    assert!(err.contains("table 3"), "{err}");
}

#[test]
fn forward_concatenates_fields_in_order_with_stride() {
    let mut layer = EmbeddingLayer::new(
        vec![spec("user", 2, 1), spec("item", 3, 2)],
        vec![
            FieldSpec::single("item", 1, 3),
            FieldSpec::multi("hist", 1, 3, Pooling::Sum),
            FieldSpec::single("user", 0, 2),
        ],
    )
    .unwrap();
    assert_eq!(layer.width(), 8);
    assert_eq!(layer.field_offset(2), 6);
    let single = [10u64, 100, 11, 101]; // (item, user) per example
    let multi = [MultiIds {
        offsets: vec![0, 1, 1],
        ids: vec![11],
    }];
    let input = SparseInput {
        n: 2,
        single: &single,
        multi: &multi,
    };
    let stride = 10;
    let mut out = vec![7.0f32; 2 * stride];
    layer.forward(&input, true, &mut out, stride);
    let item10 = row_of(&layer, 1, 10);
    let item11 = row_of(&layer, 1, 11);
    let user100 = row_of(&layer, 0, 100);
    let user101 = row_of(&layer, 0, 101);
    assert_eq!(&out[0..3], &item10[..]);
    assert_eq!(&out[3..6], &item11[..]);
    assert_eq!(&out[6..8], &user100[..]);
    assert_eq!(&out[10..13], &item11[..]);
    assert_eq!(&out[13..16], &[0.0; 3]);
    assert_eq!(&out[16..18], &user101[..]);
    // Dense-feature columns belong to the caller.
    assert_eq!(&out[8..10], &[7.0, 7.0]);
    assert_eq!(&out[18..20], &[7.0, 7.0]);
}

#[test]
fn eval_creates_nothing_and_reads_zeros_for_unseen_ids() {
    let mut layer = EmbeddingLayer::new(
        vec![spec("t", 2, 3)],
        vec![
            FieldSpec::single("u", 0, 2),
            FieldSpec::multi("h", 0, 2, Pooling::Mean),
        ],
    )
    .unwrap();
    let multi = [MultiIds {
        offsets: vec![0, 1],
        ids: vec![5],
    }];
    let mut out = vec![0.0f32; 4];
    layer.forward(
        &SparseInput {
            n: 1,
            single: &[5],
            multi: &multi,
        },
        true,
        &mut out,
        4,
    );
    assert_eq!(layer.tables()[0].len(), 1);
    let r5 = row_of(&layer, 0, 5);

    let multi = [MultiIds {
        offsets: vec![0, 2],
        ids: vec![5, 6],
    }];
    let mut out = vec![9.0f32; 4];
    layer.forward(
        &SparseInput {
            n: 1,
            single: &[7],
            multi: &multi,
        },
        false,
        &mut out,
        4,
    );
    assert_eq!(layer.tables()[0].len(), 1, "eval created rows");
    assert_eq!(&out[0..2], &[0.0, 0.0]);
    // Unseen 6 reads zeros but still counts in the mean.
    assert_eq!(&out[2..4], &[r5[0] / 2.0, r5[1] / 2.0]);
}

struct Pooled {
    layer: EmbeddingLayer,
    multi: Vec<MultiIds>,
}

/// Two multi-valued fields on one table: Sum and Mean.
fn pooled() -> Pooled {
    let layer = EmbeddingLayer::new(
        vec![spec("t", 2, 9)],
        vec![
            FieldSpec::multi("s", 0, 2, Pooling::Sum),
            FieldSpec::multi("m", 0, 2, Pooling::Mean),
        ],
    )
    .unwrap();
    let multi = vec![
        MultiIds {
            offsets: vec![0, 2, 2],
            ids: vec![1, 2],
        },
        MultiIds {
            offsets: vec![0, 3, 4],
            ids: vec![3, 4, 3, 4],
        },
    ];
    Pooled { layer, multi }
}

#[test]
fn sum_and_mean_pooling_forward_by_hand() {
    let Pooled { mut layer, multi } = pooled();
    let input = SparseInput {
        n: 2,
        single: &[],
        multi: &multi,
    };
    let mut out = vec![1.0f32; 8];
    layer.forward(&input, true, &mut out, 4);
    let r: Vec<Vec<f32>> = (1..=4).map(|id| row_of(&layer, 0, id)).collect();
    for c in 0..2 {
        assert_eq!(out[c], r[0][c] + r[1][c]);
        assert_eq!(out[4 + c], 0.0, "empty Sum pools to zero");
        let mean0 = (r[2][c] + r[3][c] + r[2][c]) / 3.0;
        assert!((out[2 + c] - mean0).abs() < 1e-7);
        assert_eq!(out[6 + c], r[3][c]);
    }
}

#[test]
fn sum_and_mean_pooling_backward_by_hand() {
    let Pooled { mut layer, multi } = pooled();
    let input = SparseInput {
        n: 2,
        single: &[],
        multi: &multi,
    };
    let mut out = vec![0.0f32; 8];
    layer.forward(&input, true, &mut out, 4);
    let before: Vec<Vec<f32>> = (1..=4).map(|id| row_of(&layer, 0, id)).collect();
    let d_out = [0.5f32, -1.0, 0.3, 0.6, /* row 1 */ 9.0, 9.0, -0.4, 0.8];
    layer.backward(&input, &d_out, 4, 1);

    // Sum field: ids 1 and 2 each get example 0's gradient for the field; the empty
    // list in example 1 sends its gradient nowhere.
    let g_sum = [0.5, -1.0];
    // Mean field: id 3 appears twice in a list of 3 → 2/3 of (0.3, 0.6);
    // id 4 once in that list (1/3) plus alone in example 1 (all of (-0.4, 0.8)).
    let g3 = [2.0 * 0.3 / 3.0, 2.0 * 0.6 / 3.0];
    let g4 = [0.3 / 3.0 - 0.4, 0.6 / 3.0 + 0.8];
    let want = [
        adagrad_step(&before[0], &g_sum),
        adagrad_step(&before[1], &g_sum),
        adagrad_step(&before[2], &g3),
        adagrad_step(&before[3], &g4),
    ];
    for (k, w) in want.iter().enumerate() {
        assert_close(&row_of(&layer, 0, k as u64 + 1), w, 1e-6);
    }
}

#[test]
fn fields_sharing_a_table_update_a_shared_row_once() {
    let make = || {
        EmbeddingLayer::new(
            vec![spec("shared", 2, 4)],
            vec![FieldSpec::single("a", 0, 2), FieldSpec::single("b", 0, 2)],
        )
        .unwrap()
    };
    let mut layer = make();
    let input = SparseInput {
        n: 1,
        single: &[8, 8],
        multi: &[],
    };
    let mut out = vec![0.0f32; 4];
    layer.forward(&input, true, &mut out, 4);
    assert_eq!(layer.tables()[0].len(), 1);
    let before = row_of(&layer, 0, 8);
    layer.backward(&input, &[0.25, 0.5, 0.75, -1.0], 4, 1);
    // One update with the summed gradient, not two consecutive updates.
    let want = adagrad_step(&before, &[1.0, -0.5]);
    assert_close(&row_of(&layer, 0, 8), &want, 1e-6);
    assert_close(
        layer.tables()[0].row_state(0),
        &[1.0 + (1.0 + 0.25) / 2.0],
        1e-6,
    );
}

#[test]
fn backward_leaves_rows_outside_the_batch_bit_identical() {
    let mut layer =
        EmbeddingLayer::new(vec![spec("t", 3, 5)], vec![FieldSpec::single("u", 0, 3)]).unwrap();
    let warm: Vec<u64> = (0..20).collect();
    let mut out = vec![0.0f32; 60];
    let input = SparseInput {
        n: 20,
        single: &warm,
        multi: &[],
    };
    layer.forward(&input, true, &mut out, 3);
    let snapshot: Vec<Vec<u32>> = (0..20)
        .map(|id| row_of(&layer, 0, id).iter().map(|v| v.to_bits()).collect())
        .collect();
    let batch = SparseInput {
        n: 2,
        single: &[4, 11],
        multi: &[],
    };
    let mut out = vec![0.0f32; 6];
    layer.forward(&batch, true, &mut out, 3);
    layer.backward(&batch, &[1.0; 6], 3, 1);
    for id in 0..20u64 {
        let now: Vec<u32> = row_of(&layer, 0, id).iter().map(|v| v.to_bits()).collect();
        if id == 4 || id == 11 {
            assert_ne!(now, snapshot[id as usize]);
        } else {
            assert_eq!(now, snapshot[id as usize], "id {id} changed");
        }
    }
}

#[test]
fn malformed_batches_are_reported_by_check_input() {
    let Pooled { layer, multi } = pooled();
    let ok = SparseInput {
        n: 2,
        single: &[],
        multi: &multi,
    };
    assert!(layer.check_input(&ok).is_ok());
    let err = layer.check_input(&SparseInput { n: 3, ..ok }).unwrap_err();
    assert!(err.contains("offsets"), "{err}");
    let mut bad = multi.clone();
    bad[1].offsets = vec![0, 5, 4];
    let err = layer
        .check_input(&SparseInput { multi: &bad, ..ok })
        .unwrap_err();
    assert!(err.contains("never decrease"), "{err}");
    let err = layer
        .check_input(&SparseInput {
            single: &[1, 2],
            ..ok
        })
        .unwrap_err();
    assert!(err.contains("single-valued"), "{err}");
}

#[test]
#[should_panic(expected = "train-mode forward")]
fn backward_after_eval_forward_panics() {
    let Pooled { mut layer, multi } = pooled();
    let input = SparseInput {
        n: 2,
        single: &[],
        multi: &multi,
    };
    let mut out = vec![0.0f32; 8];
    layer.forward(&input, false, &mut out, 4);
    layer.backward(&input, &out, 4, 1);
}

fn saved(layer: &EmbeddingLayer) -> Vec<u8> {
    let mut buf = Vec::new();
    layer.save(&mut buf).unwrap();
    buf
}

#[test]
fn layer_save_load_round_trip_and_corruption() {
    let mut layer = EmbeddingLayer::new(
        vec![spec("user", 2, 1), spec("item", 3, 2)],
        vec![
            FieldSpec::single("user", 0, 2),
            FieldSpec::multi("hist", 1, 3, Pooling::Mean),
            FieldSpec::single("item", 1, 3),
        ],
    )
    .unwrap();
    let multi = [MultiIds {
        offsets: vec![0, 2, 3],
        ids: vec![7, 8, 9],
    }];
    let input = SparseInput {
        n: 2,
        single: &[1, 7, 2, 10],
        multi: &multi,
    };
    let mut out = vec![0.0f32; 16];
    layer.forward(&input, true, &mut out, 8);
    layer.backward(&input, &out.clone(), 8, 1);

    let buf = saved(&layer);
    let mut loaded = EmbeddingLayer::load(&mut buf.as_slice()).unwrap();
    assert_eq!(loaded.fields(), layer.fields());
    assert_eq!(saved(&loaded), buf);
    let (mut a, mut b) = (vec![0.0f32; 16], vec![0.0f32; 16]);
    layer.forward(&input, false, &mut a, 8);
    loaded.forward(&input, false, &mut b, 8);
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );

    let mut bad = buf.clone();
    let at = bad.len() - 12; // inside the last table's last row
    bad[at] ^= 0x80;
    let err = EmbeddingLayer::load(&mut bad.as_slice()).unwrap_err();
    assert!(err.contains("checksum") && err.contains("item"), "{err}");
    for at in 0..buf.len() {
        let mut bad = buf.clone();
        bad[at] ^= 0x04;
        assert!(
            EmbeddingLayer::load(&mut bad.as_slice()).is_err(),
            "byte {at}"
        );
    }
}

#[test]
fn eval_forward_of_a_large_batch_equals_row_by_row_lookups() {
    // Large enough for the row blocks to run on several threads; widths 4 and 16 (the
    // inlined row copy).
    let n = 1500;
    let fields = 8;
    let dim = |f: usize| if f.is_multiple_of(2) { 4 } else { 16 };
    let col = |f: usize| (0..f).map(dim).sum::<usize>();
    let width = col(fields);
    let mut layer = EmbeddingLayer::new(
        vec![spec("a", 4, 1), spec("b", 16, 2)],
        (0..fields)
            .map(|f| FieldSpec::single(format!("f{f}"), f % 2, dim(f)))
            .collect(),
    )
    .unwrap();
    let single: Vec<u64> = (0..n * fields).map(|i| (i as u64 * 7919) % 3001).collect();
    let multi = vec![];
    let input = SparseInput {
        n,
        single: &single,
        multi: &multi,
    };
    let stride = width + 3;
    let mut out = vec![0.0; n * stride];
    layer.forward(&input, true, &mut out, stride);
    // Half the ids again plus unseen ones, in eval mode; some fields repeat an id over
    // runs of rows (across the 64-row chunks of lookups and the threads' row blocks),
    // one an unseen id on every row, one a seen id on every row (a request's user side).
    let eval_ids: Vec<u64> = single
        .iter()
        .enumerate()
        .map(|(p, &id)| match (p % fields, p / fields) {
            (2, i) => single[(i / 70) * fields + 2] * 2,
            (3, _) => 999_999_937,
            (4, _) => single[4],
            _ => id * 2,
        })
        .collect();
    let input = SparseInput {
        n,
        single: &eval_ids,
        multi: &multi,
    };
    let mut got = vec![-1.0; n * stride];
    layer.forward(&input, false, &mut got, stride);
    for i in 0..n {
        for f in 0..fields {
            let t = &layer.tables()[f % 2];
            let want: Vec<f32> = match t.lookup_eval(eval_ids[i * fields + f]) {
                Some(s) => t.row(s).to_vec(),
                None => vec![0.0; dim(f)],
            };
            assert_eq!(
                &got[i * stride + col(f)..][..dim(f)],
                want.as_slice(),
                "row {i} field {f}"
            );
        }
        assert_eq!(&got[i * stride + width..(i + 1) * stride], &[-1.0; 3]);
    }
}

/// One train step (forward, then backward with a fixed output gradient) on a fresh
/// layer inside a rayon pool of `threads`; returns the output and every table's rows.
fn step_on_threads(threads: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        // Three tables; "item" is read by two fields, one of them multi-valued.
        let mut layer = EmbeddingLayer::new(
            vec![spec("user", 4, 1), spec("item", 3, 2), spec("tab", 2, 3)],
            vec![
                FieldSpec::single("user", 0, 4),
                FieldSpec::single("item", 1, 3),
                FieldSpec::multi("hist", 1, 3, Pooling::Mean),
                FieldSpec::single("tab", 2, 2),
            ],
        )
        .unwrap();
        let n = 3000; // above the size where the work is split over threads
        let single: Vec<u64> = (0..n)
            .flat_map(|i| [(i % 97) as u64, (i * 7 % 501) as u64, (i % 5) as u64])
            .collect();
        let mut offsets = vec![0u32];
        let mut ids = Vec::new();
        for i in 0..n {
            for j in 0..i % 4 {
                ids.push(((i + 13 * j) % 600) as u64);
            }
            offsets.push(ids.len() as u32);
        }
        let multi = vec![MultiIds { offsets, ids }];
        let input = SparseInput {
            n,
            single: &single,
            multi: &multi,
        };
        let stride = layer.width() + 1;
        let mut out = vec![7.0; n * stride];
        layer.forward(&input, true, &mut out, stride);
        let d: Vec<f32> = (0..n * stride)
            .map(|k| ((k % 11) as f32 - 5.0) * 0.01)
            .collect();
        layer.backward(&input, &d, stride, 1);
        let rows = layer
            .tables()
            .iter()
            .map(|t| {
                (0..t.len())
                    .flat_map(|s| t.row(s as u32).to_vec())
                    .collect()
            })
            .collect();
        (out, rows)
    })
}

#[test]
fn train_forward_and_update_do_not_depend_on_the_thread_count() {
    let (out1, rows1) = step_on_threads(1);
    let (out2, rows2) = step_on_threads(2);
    assert_eq!(out1, out2);
    assert_eq!(rows1, rows2);
    // The column past the embeddings is never written.
    let w = out1.len() / 3000;
    assert!(out1.chunks(w).all(|r| r[w - 1] == 7.0));
}
