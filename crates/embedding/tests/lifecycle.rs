//! FTRL against a hand computation, admission, expiry and the row cap, and their
//! settings through save/load.

use mfh_embedding::{EmbeddingTable, Lifecycle, RowOptimizer, TableSpec, NO_ROW};

fn ftrl_spec(init_scale: f32) -> TableSpec {
    let mut s = TableSpec::new("t", 1);
    s.init_scale = init_scale;
    s.optimizer = RowOptimizer::Ftrl {
        alpha: 0.5,
        beta: 1.0,
        l1: 0.1,
        l2: 0.2,
    };
    s
}

#[test]
fn ftrl_matches_a_hand_computation() {
    // α = 0.5, β = 1, l1 = 0.1, l2 = 0.2, w₀ = 0 (z₀ = n₀ = 0); gradients 0.3, −0.2, 0.05.
    // Step 1: n = 0.09, σ = 0.6, z = 0.3, w = −(0.3 − 0.1) / ((1 + 0.3)/0.5 + 0.2) = −0.2/2.8.
    // Step 2: n = 0.13, σ = (√0.13 − 0.3)/0.5, z = 0.1 − σ·w = 0.108650733, w = −0.008650733
    //         / ((1 + √0.13)/0.5 + 0.2) = −0.002961454.
    // Step 3: n = 0.1325, z = 0.158671169, w = −0.058671169 / 2.928010988 = −0.020037892.
    let mut t = EmbeddingTable::new(ftrl_spec(0.0)).unwrap();
    let mut slots = Vec::new();
    t.lookup_train(&[42], &mut slots);
    assert_eq!(t.row(slots[0]), &[0.0]);
    for (step, (g, want)) in [
        (0.3f32, -0.2f64 / 2.8),
        (-0.2, -0.002_961_454),
        (0.05, -0.020_037_892),
    ]
    .into_iter()
    .enumerate()
    {
        t.apply_gradients(&slots, &[g], step as u64 + 1);
        let w = t.row(slots[0])[0] as f64;
        assert!(
            (w - want).abs() < 1e-6,
            "step {}: w = {w}, hand = {want}",
            step + 1
        );
    }
    let st = t.row_state(slots[0]);
    assert!((st[0] as f64 - 0.158_671_169).abs() < 1e-6, "z = {}", st[0]);
    assert!((st[1] as f64 - 0.1325).abs() < 1e-7, "n = {}", st[1]);
}

#[test]
fn ftrl_l1_gives_exact_zeros_and_keeps_the_initialisation() {
    let mut t = EmbeddingTable::new(ftrl_spec(0.0)).unwrap();
    let mut slots = Vec::new();
    t.lookup_train(&[7], &mut slots);
    // |z| = 0.05 ≤ l1: the weight is exactly zero.
    t.apply_gradients(&slots, &[0.05], 1);
    assert_eq!(t.row(slots[0]), &[0.0]);
    // A random initial weight survives a zero gradient (z was set to reproduce it).
    let mut t = EmbeddingTable::new(ftrl_spec(0.5)).unwrap();
    t.lookup_train(&[7, 8, 9], &mut slots);
    let before: Vec<f32> = slots.iter().map(|&s| t.row(s)[0]).collect();
    assert!(before.iter().any(|&w| w != 0.0));
    t.apply_gradients(&slots, &[0.0, 0.0, 0.0], 1);
    for (&s, &w0) in slots.iter().zip(&before) {
        assert!((t.row(s)[0] - w0).abs() < 1e-6, "{} vs {w0}", t.row(s)[0]);
    }
}

#[test]
fn admission_waits_for_the_count_then_creates_the_row() {
    let mut spec = TableSpec::new("t", 4);
    spec.lifecycle = Lifecycle {
        admit_after: 3,
        ..Default::default()
    };
    let mut t = EmbeddingTable::new(spec).unwrap();
    let mut slots = Vec::new();
    t.lookup_train(&[1, 2], &mut slots);
    assert_eq!(slots, [NO_ROW, NO_ROW]);
    t.lookup_train(&[1], &mut slots);
    assert_eq!(slots, [NO_ROW]);
    assert_eq!(t.len(), 0);
    // Pending slots take no update and do not disturb the others.
    t.apply_gradients(&[NO_ROW, NO_ROW], &[1.0; 8], 1);
    t.lookup_train(&[1, 1, 2], &mut slots);
    assert_eq!(slots[0], 0, "third sighting of 1 admits it");
    assert_eq!(slots[1], 0, "then it is a row like any other");
    assert_eq!(slots[2], NO_ROW, "second sighting of 2");
    t.lookup_train(&[2], &mut slots);
    assert_eq!(slots, [1], "third sighting of 2");
    let stats = t.lifecycle_stats();
    assert_eq!((stats.admitted, stats.pending_lookups), (2, 4));
    assert_eq!(t.lookup_eval(1), Some(0));
}

fn expiring(ttl: u64, cap: u64) -> EmbeddingTable {
    let mut spec = TableSpec::new("t", 3);
    spec.init_scale = 0.5;
    spec.lifecycle = Lifecycle {
        ttl_steps: ttl,
        max_rows: cap,
        ..Default::default()
    };
    EmbeddingTable::new(spec).unwrap()
}

fn row_of(t: &EmbeddingTable, id: u64) -> Vec<f32> {
    t.row(t.lookup_eval(id).expect("row")).to_vec()
}

#[test]
fn rows_unseen_for_ttl_steps_expire_and_the_rest_keep_their_values() {
    let mut t = expiring(6, 0);
    let mut slots = Vec::new();
    t.set_clock(0);
    t.lookup_train(&[10, 11, 12], &mut slots);
    t.set_clock(5);
    t.lookup_train(&[12], &mut slots);
    let kept = row_of(&t, 12);
    t.set_clock(6);
    assert_eq!(t.evict(), 0, "6 steps unseen is not more than the ttl");
    t.set_clock(10);
    assert_eq!(t.evict(), 2);
    assert_eq!(t.len(), 1);
    assert_eq!(t.lookup_eval(10), None);
    assert_eq!(t.lookup_eval(11), None);
    assert_eq!(
        row_of(&t, 12),
        kept,
        "the survivor moved slot but kept its row"
    );
    assert_eq!(t.lifecycle_stats().evicted, 2);
    // An expired id comes back as a fresh row.
    t.lookup_train(&[10], &mut slots);
    assert_eq!(t.len(), 2);
}

#[test]
fn over_the_cap_the_least_frequent_rows_go_first() {
    let mut t = expiring(0, 2);
    let mut slots = Vec::new();
    t.lookup_train(&[1, 2, 3, 1, 3, 1, 4, 4], &mut slots);
    // Frequencies: 1 → 3, 2 → 1, 3 → 2, 4 → 2 (4 more recent than 3 only by position;
    // same step, so the lower id goes first among equals).
    let (r1, r4) = (row_of(&t, 1), row_of(&t, 4));
    assert_eq!(t.evict(), 2);
    assert_eq!(t.len(), 2);
    assert_eq!(t.lookup_eval(2), None);
    assert_eq!(t.lookup_eval(3), None);
    assert_eq!((row_of(&t, 1), row_of(&t, 4)), (r1.clone(), r4.clone()));
    // Slots stay dense and updates land on the right rows.
    t.lookup_train(&[4], &mut slots);
    t.apply_gradients(&slots, &[1.0, 1.0, 1.0], 1);
    assert_ne!(row_of(&t, 4), r4);
    assert_eq!(row_of(&t, 1), r1);
}

#[test]
fn ftrl_and_lifecycle_settings_survive_save_and_load() {
    let mut spec = ftrl_spec(0.5);
    spec.lifecycle = Lifecycle {
        admit_after: 2,
        ttl_steps: 100,
        max_rows: 1000,
    };
    let mut t = EmbeddingTable::new(spec.clone()).unwrap();
    let mut slots = Vec::new();
    t.lookup_train(&[5, 5, 6, 6, 6], &mut slots);
    t.apply_gradients(&slots, &[0.1, 0.2, 0.3, 0.4, 0.5], 1);
    let mut bytes = Vec::new();
    t.save(&mut bytes).unwrap();
    let back = EmbeddingTable::load(&mut bytes.as_slice()).unwrap();
    assert_eq!(back.spec(), &spec);
    assert_eq!(back.len(), 2);
    for id in [5, 6] {
        let (a, b) = (t.lookup_eval(id).unwrap(), back.lookup_eval(id).unwrap());
        assert_eq!(t.row(a), back.row(b));
        assert_eq!(t.row_state(a), back.row_state(b));
    }
}

#[test]
fn bad_ftrl_settings_are_refused() {
    let mut s = ftrl_spec(0.1);
    s.optimizer = RowOptimizer::Ftrl {
        alpha: 0.0,
        beta: 1.0,
        l1: 0.0,
        l2: 0.0,
    };
    let e = EmbeddingTable::new(s).unwrap_err();
    assert!(e.contains("'t'") && e.contains("Ftrl"), "{e}");
}

#[test]
fn a_pending_id_reads_zeros_in_the_layer_and_takes_no_update() {
    use mfh_embedding::{EmbeddingLayer, FieldSpec, MultiIds, Pooling, SparseInput};
    let mut spec = TableSpec::new("t", 2);
    spec.init_scale = 0.5;
    spec.lifecycle.admit_after = 2;
    let mut layer = EmbeddingLayer::new(
        vec![spec],
        vec![
            FieldSpec::single("a", 0, 2),
            FieldSpec::multi("b", 0, 2, Pooling::Sum),
        ],
    )
    .unwrap();
    // Row 0: single id 1, list [1, 2]; row 1: single id 3, list [1].
    let multi = vec![MultiIds {
        ids: vec![1, 2, 1],
        offsets: vec![0, 2, 3],
    }];
    let input = SparseInput {
        n: 2,
        single: &[1, 3],
        multi: &multi,
    };
    let mut out = vec![9.0; 8];
    layer.forward(&input, true, &mut out, 4);
    // Id 1 is seen once in the single column (pending); its first occurrence in the
    // list is its second sighting and admits it. Id 2 (once) and id 3 stay pending.
    assert_eq!(&out[0..2], &[0.0, 0.0], "row 0, field a: id 1 pending");
    assert_eq!(&out[4..6], &[0.0, 0.0], "row 1, field a: id 3 pending");
    let t = &layer.tables()[0];
    let r1 = t.row(t.lookup_eval(1).expect("admitted")).to_vec();
    assert_eq!(
        &out[2..4],
        r1.as_slice(),
        "row 0, field b: row of 1 + nothing for 2"
    );
    assert_eq!(&out[6..8], r1.as_slice(), "row 1, field b: id 1 admitted");
    layer.backward(&input, &[1.0; 8], 4, 1);
    let t = &layer.tables()[0];
    assert_eq!(t.len(), 1);
    assert_ne!(t.row(0), r1.as_slice(), "the admitted row took its update");
}
