//! Embedding table tests: optimizer arithmetic, duplicate handling, init, persistence.

use mfh_embedding::{EmbeddingTable, RowOptimizer, TableSpec};

fn table(dim: usize, optimizer: RowOptimizer, seed: u64) -> EmbeddingTable {
    let mut spec = TableSpec::new("t", dim);
    spec.optimizer = optimizer;
    spec.seed = seed;
    EmbeddingTable::new(spec).unwrap()
}

fn slots_of(t: &mut EmbeddingTable, ids: &[u64]) -> Vec<u32> {
    let mut s = Vec::new();
    t.lookup_train(ids, &mut s);
    s
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol,
            "element {i}: got {g}, want {w}"
        );
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn adagrad_two_steps_match_hand_computation() {
    let opt = RowOptimizer::Adagrad {
        lr: 0.1,
        eps: 0.01,
        initial_accumulator: 0.1,
    };
    let mut t = table(2, opt, 7);
    let s = slots_of(&mut t, &[42]);
    let w0: Vec<f64> = t.row(s[0]).iter().map(|&v| v as f64).collect();

    // Step 1: g = (0.3, -0.4); mean g² = (0.09 + 0.16)/2 = 0.125; acc = 0.225.
    t.apply_gradients(&s, &[0.3, -0.4], 1);
    let d1 = 0.1 / (0.225f64.sqrt() + 0.01);
    let w1 = [w0[0] - d1 * 0.3, w0[1] + d1 * 0.4];
    assert_close(t.row(s[0]), &w1, 1e-6);
    assert_close(t.row_state(s[0]), &[0.225], 1e-7);

    // Step 2: g = (1.0, 0.5); mean g² = 0.625; acc = 0.85.
    t.apply_gradients(&s, &[1.0, 0.5], 2);
    let d2 = 0.1 / (0.85f64.sqrt() + 0.01);
    let w2 = [w1[0] - d2 * 1.0, w1[1] - d2 * 0.5];
    assert_close(t.row(s[0]), &w2, 1e-6);
    assert_close(t.row_state(s[0]), &[0.85], 1e-6);
}

#[test]
fn adam_two_steps_match_hand_computation() {
    let opt = RowOptimizer::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-3,
    };
    let mut t = table(2, opt, 7);
    let s = slots_of(&mut t, &[42]);
    let w0: Vec<f64> = t.row(s[0]).iter().map(|&v| v as f64).collect();

    // Step 1: m = 0.1·g, v = 0.001·g², step size = lr·sqrt(1-0.999)/(1-0.9).
    t.apply_gradients(&s, &[0.5, -1.0], 1);
    let m1 = [0.05, -0.1];
    let v1 = [0.001f64 * 0.25, 0.001 * 1.0];
    let ss1 = 0.01 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
    let w1 = [
        w0[0] - ss1 * m1[0] / (v1[0].sqrt() + 1e-3),
        w0[1] - ss1 * m1[1] / (v1[1].sqrt() + 1e-3),
    ];
    assert_close(t.row(s[0]), &w1, 1e-6);
    assert_close(t.row_state(s[0]), &[m1[0], m1[1], v1[0], v1[1]], 1e-7);

    // Step 2: g = (0.2, 0.0).
    t.apply_gradients(&s, &[0.2, 0.0], 2);
    let m2 = [0.9 * m1[0] + 0.1 * 0.2, 0.9 * m1[1]];
    let v2 = [0.999 * v1[0] + 0.001 * 0.04, 0.999 * v1[1]];
    let ss2 = 0.01 * (1.0f64 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.9f64.powi(2));
    let w2 = [
        w1[0] - ss2 * m2[0] / (v2[0].sqrt() + 1e-3),
        w1[1] - ss2 * m2[1] / (v2[1].sqrt() + 1e-3),
    ];
    assert_close(t.row(s[0]), &w2, 1e-6);
    assert_close(t.row_state(s[0]), &[m2[0], m2[1], v2[0], v2[1]], 1e-7);
}

#[test]
fn adam_is_lazy_rows_missing_from_a_batch_keep_their_moments() {
    let opt = RowOptimizer::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let mut t = table(1, opt, 3);
    let s = slots_of(&mut t, &[1, 2]);
    t.apply_gradients(&s, &[1.0, 1.0], 1);
    let row2_after_1 = t.row(s[1])[0] as f64;
    let state2_after_1 = bits(t.row_state(s[1]));
    // Step 2 touches only id 1: id 2's row and moments must not decay.
    t.apply_gradients(&s[..1], &[1.0], 2);
    assert_eq!(bits(t.row_state(s[1])), state2_after_1);
    // Step 3 touches id 2 again: its moments resume from step 1, bias correction uses t = 3.
    t.apply_gradients(&s[1..], &[-2.0], 3);
    let m = 0.9 * 0.1 + 0.1 * -2.0;
    let v = 0.999 * 0.001 + 0.001 * 4.0;
    let ss = 0.01 * (1.0 - 0.999f64.powi(3)).sqrt() / (1.0 - 0.9f64.powi(3));
    let want = row2_after_1 - ss * m / (f64::sqrt(v) + 1e-8);
    assert_close(t.row(s[1]), &[want], 1e-6);
}

#[test]
fn duplicate_ids_accumulate_like_one_summed_gradient() {
    let optimizers = [
        RowOptimizer::default_adagrad(),
        RowOptimizer::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
        },
    ];
    for opt in optimizers {
        let a = [0.25f32, -1.5, 0.125];
        let b = [0.5f32, 0.75, -2.0];
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();

        let mut dup = table(3, opt.clone(), 11);
        let s = slots_of(&mut dup, &[9, 5, 9]);
        let mut grads = a.to_vec();
        grads.extend_from_slice(&[0.1, 0.2, 0.3]);
        grads.extend_from_slice(&b);
        dup.apply_gradients(&s, &grads, 1);

        let mut once = table(3, opt.clone(), 11);
        let s1 = slots_of(&mut once, &[9, 5]);
        let mut grads1 = sum.clone();
        grads1.extend_from_slice(&[0.1, 0.2, 0.3]);
        once.apply_gradients(&s1, &grads1, 1);

        // Same duplicates in the other order.
        let mut swapped = table(3, opt.clone(), 11);
        let s2 = slots_of(&mut swapped, &[9, 9, 5]);
        let mut grads2 = b.to_vec();
        grads2.extend_from_slice(&a);
        grads2.extend_from_slice(&[0.1, 0.2, 0.3]);
        swapped.apply_gradients(&s2, &grads2, 1);

        for id in [9u64, 5] {
            let r = |t: &EmbeddingTable| {
                let s = t.lookup_eval(id).unwrap();
                (bits(t.row(s)), bits(t.row_state(s)))
            };
            assert_eq!(r(&dup), r(&once), "{opt:?} id {id}");
            assert_eq!(r(&dup), r(&swapped), "{opt:?} id {id}");
        }
    }
}

#[test]
fn untouched_rows_stay_bit_identical() {
    for opt in [
        RowOptimizer::default_adagrad(),
        RowOptimizer::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
    ] {
        let mut t = table(4, opt, 5);
        let ids: Vec<u64> = (0..50).map(|i| i * 7919).collect();
        let all = slots_of(&mut t, &ids);
        let before: Vec<_> = all
            .iter()
            .map(|&s| (bits(t.row(s)), bits(t.row_state(s))))
            .collect();
        let touched = [all[3], all[17], all[3]];
        t.apply_gradients(&touched, &[1.0; 12], 1);
        for (k, &s) in all.iter().enumerate() {
            let now = (bits(t.row(s)), bits(t.row_state(s)));
            if s == all[3] || s == all[17] {
                assert_ne!(now.0, before[k].0);
            } else {
                assert_eq!(now, before[k], "row {k} changed");
            }
        }
    }
}

#[test]
fn row_init_depends_only_on_seed_and_id() {
    let ids: Vec<u64> = (0..200).map(|i| i * 0x9E37_79B9 + 13).collect();
    let mut fwd = table(8, RowOptimizer::default_adagrad(), 99);
    let mut rev = table(8, RowOptimizer::default_adagrad(), 99);
    slots_of(&mut fwd, &ids);
    let mut reversed = ids.clone();
    reversed.reverse();
    // Interleave creation with other ids in the second table too.
    slots_of(&mut rev, &[1_000_001, 1_000_002]);
    slots_of(&mut rev, &reversed);
    for &id in &ids {
        let a = fwd.row(fwd.lookup_eval(id).unwrap());
        let b = rev.row(rev.lookup_eval(id).unwrap());
        assert_eq!(bits(a), bits(b), "id {id}");
        assert!(a.iter().all(|v| (-0.05..0.05).contains(v)));
    }
    let mut other_seed = table(8, RowOptimizer::default_adagrad(), 100);
    let s = slots_of(&mut other_seed, &ids[..1]);
    assert_ne!(
        bits(other_seed.row(s[0])),
        bits(fwd.row(fwd.lookup_eval(ids[0]).unwrap()))
    );
}

#[test]
fn eval_lookup_never_creates_rows() {
    let mut t = table(4, RowOptimizer::default_adagrad(), 1);
    slots_of(&mut t, &[1, 2, 3]);
    assert_eq!(t.len(), 3);
    assert_eq!(t.lookup_eval(77), None);
    assert!(t.lookup_eval(2).is_some());
    assert_eq!(t.len(), 3);
    // Repeated training lookups reuse slots.
    let s = slots_of(&mut t, &[3, 3, 1]);
    assert_eq!(s[0], s[1]);
    assert_eq!(t.len(), 3);
}

#[test]
fn defaults_and_state_width() {
    assert_eq!(
        RowOptimizer::default_adagrad(),
        RowOptimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
            initial_accumulator: 0.0
        }
    );
    assert_eq!(RowOptimizer::default_adagrad().state_width(16), 1);
    let adam = RowOptimizer::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    assert_eq!(adam.state_width(16), 32);
    assert_eq!(TableSpec::new("x", 4).init_scale, 0.05);
    assert!(EmbeddingTable::new(TableSpec::new("zero", 0)).is_err());
}

#[test]
fn bytes_grow_with_rows() {
    let mut t = table(16, RowOptimizer::default_adagrad(), 1);
    let empty = t.bytes();
    slots_of(&mut t, &(0..1000).collect::<Vec<u64>>());
    // At least the row and accumulator floats themselves.
    assert!(t.bytes() >= empty + 1000 * 17 * 4);
}

fn trained(opt: RowOptimizer) -> EmbeddingTable {
    let mut t = table(3, opt, 21);
    let ids: Vec<u64> = (0..40).map(|i| (i * 0xABCD_EF12_3457) ^ 0x55).collect();
    let s = slots_of(&mut t, &ids);
    let grads: Vec<f32> = (0..s.len() * 3).map(|i| ((i as f32) * 0.7).sin()).collect();
    t.apply_gradients(&s, &grads, 1);
    t.apply_gradients(&s[..10], &grads[..30], 2);
    t
}

fn saved(t: &EmbeddingTable) -> Vec<u8> {
    let mut buf = Vec::new();
    t.save(&mut buf).unwrap();
    buf
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    for opt in [
        RowOptimizer::Adagrad {
            lr: 0.1,
            eps: 1e-6,
            initial_accumulator: 0.01,
        },
        RowOptimizer::Adam {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-7,
        },
    ] {
        let mut t = trained(opt);
        let buf = saved(&t);
        let mut loaded = EmbeddingTable::load(&mut buf.as_slice()).unwrap();
        assert_eq!(loaded.spec(), t.spec());
        assert_eq!(loaded.len(), t.len());
        let ids: Vec<u64> = (0..40).map(|i| (i * 0xABCD_EF12_3457) ^ 0x55).collect();
        for &id in &ids {
            let (a, b) = (t.lookup_eval(id).unwrap(), loaded.lookup_eval(id).unwrap());
            assert_eq!(bits(t.row(a)), bits(loaded.row(b)));
            assert_eq!(bits(t.row_state(a)), bits(loaded.row_state(b)));
        }
        // Saving again gives the same bytes, and training continues identically.
        assert_eq!(saved(&loaded), buf);
        let more = [ids[0], ids[5], 123_456_789];
        let (sa, sb) = (slots_of(&mut t, &more), slots_of(&mut loaded, &more));
        t.apply_gradients(&sa, &[0.5; 9], 3);
        loaded.apply_gradients(&sb, &[0.5; 9], 3);
        assert_eq!(saved(&t), saved(&loaded));
    }
}

#[test]
fn empty_table_round_trips() {
    let t = table(5, RowOptimizer::default_adagrad(), 0);
    let buf = saved(&t);
    let loaded = EmbeddingTable::load(&mut buf.as_slice()).unwrap();
    assert!(loaded.is_empty());
    assert_eq!(loaded.dim(), 5);
}

#[test]
fn corrupted_row_byte_is_reported_as_checksum_mismatch() {
    let t = trained(RowOptimizer::default_adagrad());
    let mut buf = saved(&t);
    // A byte inside the float data of the last row.
    let at = buf.len() - 8 - 5;
    buf[at] ^= 0x10;
    let err = EmbeddingTable::load(&mut buf.as_slice()).unwrap_err();
    assert!(err.contains("checksum"), "{err}");
}

#[test]
fn every_corrupted_byte_is_an_error_never_a_panic() {
    let t = trained(RowOptimizer::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    });
    let buf = saved(&t);
    for at in 0..buf.len() {
        let mut bad = buf.clone();
        bad[at] ^= 0x01;
        assert!(
            EmbeddingTable::load(&mut bad.as_slice()).is_err(),
            "flipping byte {at} went unnoticed"
        );
    }
}

#[test]
fn header_errors_name_what_does_not_match() {
    let t = trained(RowOptimizer::default_adagrad());
    let buf = saved(&t);

    let mut bad = buf.clone();
    bad[0] = b'X';
    let err = EmbeddingTable::load(&mut bad.as_slice()).unwrap_err();
    assert!(err.contains("magic"), "{err}");

    let mut bad = buf.clone();
    bad[8] = 9;
    let err = EmbeddingTable::load(&mut bad.as_slice()).unwrap_err();
    assert!(err.contains("version 9"), "{err}");

    let err = EmbeddingTable::load(&mut &buf[..buf.len() - 20]).unwrap_err();
    assert!(err.contains("truncated"), "{err}");

    let err = EmbeddingTable::load(&mut &buf[..buf.len() - 3]).unwrap_err();
    assert!(
        err.contains("truncated") && err.contains("checksum"),
        "{err}"
    );
}
