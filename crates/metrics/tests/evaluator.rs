//! Evaluator end to end: per-cell and pooled records against direct metric calls.

use mfh_metrics::{
    auc, calibration, gauc, logloss, mse, BehaviourInfo, Evaluator, Report, POOLED_CELL,
};

const NAN: f32 = f32::NAN;

/// One sample row: cell, (click score, click label), (watch score, watch label), group.
type Row = (u32, (f32, f32), (f32, f32), u64);

const ROWS: [Row; 8] = [
    (0, (0.9, 1.0), (0.5, 0.4), 1),
    (0, (0.2, 0.0), (0.1, NAN), 1),
    (1, (0.7, NAN), (0.8, 1.2), 2),
    (1, (0.4, 1.0), (0.3, 0.0), 2),
    (0, (0.6, 0.0), (0.9, 0.7), 2),
    (1, (0.3, 0.0), (0.2, 0.1), 1),
    (0, (0.6, 1.0), (0.6, 0.5), 3),
    (1, (0.1, 1.0), (0.4, NAN), 3),
];

fn evaluator() -> Evaluator {
    Evaluator::new(
        vec![
            BehaviourInfo::binary("click"),
            BehaviourInfo::regression("watch"),
        ],
        vec!["user=new".to_string(), "user=old".to_string()],
    )
}

/// Feeds `rows` as one batch in the evaluator's row-major layout.
fn add(ev: &mut Evaluator, rows: &[Row], with_groups: bool) -> Result<(), String> {
    let preds: Vec<f32> = rows.iter().flat_map(|r| [r.1 .0, r.2 .0]).collect();
    let labels: Vec<f32> = rows.iter().flat_map(|r| [r.1 .1, r.2 .1]).collect();
    let cells: Vec<u32> = rows.iter().map(|r| r.0).collect();
    let groups: Vec<u64> = rows.iter().map(|r| r.3).collect();
    ev.add_batch(&preds, &labels, &cells, with_groups.then_some(&groups[..]))
}

/// Labelled (score, label, group) of one behaviour, optionally restricted to one cell.
fn column(behaviour: usize, cell: Option<u32>) -> (Vec<f32>, Vec<f32>, Vec<u64>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for r in ROWS.iter().filter(|r| cell.is_none_or(|c| r.0 == c)) {
        let (score, label) = if behaviour == 0 { r.1 } else { r.2 };
        if !label.is_nan() {
            out.0.push(score);
            out.1.push(label);
            out.2.push(r.3);
        }
    }
    out
}

fn full_report() -> Report {
    let mut ev = evaluator();
    // Two batches, to check that accumulation across batches is seamless.
    add(&mut ev, &ROWS[..5], true).unwrap();
    add(&mut ev, &ROWS[5..], true).unwrap();
    assert_eq!(ev.rows(), 8);
    ev.finish("test")
}

#[test]
fn per_cell_and_pooled_values_match_direct_calls() {
    let report = full_report();
    let cells = [
        ("user=new", Some(0)),
        ("user=old", Some(1)),
        (POOLED_CELL, None),
    ];
    for (name, cell) in cells {
        let (s, l, g) = column(0, cell);
        assert_eq!(report.get("click", name, "auc"), auc(&s, &l), "{name}");
        assert_eq!(
            report.get("click", name, "gauc"),
            gauc(&s, &l, &g).map(|x| x.value),
            "{name}"
        );
        assert_eq!(report.get("click", name, "logloss"), logloss(&s, &l));
        assert_eq!(
            report.get("click", name, "calibration"),
            calibration(&s, &l)
        );
        assert_eq!(report.get("click", name, "mse"), None, "binary has no mse");

        let (s, l, _) = column(1, cell);
        assert_eq!(report.get("watch", name, "mse"), mse(&s, &l), "{name}");
        assert_eq!(
            report.get("watch", name, "calibration"),
            calibration(&s, &l)
        );
        assert_eq!(
            report.get("watch", name, "auc"),
            None,
            "regression has no auc"
        );
    }
    // Spot-check that the direct calls are themselves meaningful here.
    assert_eq!(report.get("click", "user=new", "auc"), Some(0.875));
    assert_eq!(report.get("click", "user=old", "auc"), Some(0.5));
    // 2 behaviours × 3 cells; click has 4 metrics, watch 2.
    assert_eq!(report.records.len(), 3 * 4 + 3 * 2);
}

#[test]
fn counts_per_cell_and_pooled() {
    let report = full_report();
    let counts = |b: &str, cell: &str, metric: &str| {
        let r = report.record(Some("test"), b, cell, metric).unwrap();
        (r.n, r.positives, r.missing)
    };
    // click: new = rows 0,1,4,6 (labels 1,0,0,1); old = rows 2(NaN),3,5,7 (labels 1,0,1).
    assert_eq!(counts("click", "user=new", "auc"), (4, 2, 0));
    assert_eq!(counts("click", "user=old", "logloss"), (3, 2, 1));
    assert_eq!(counts("click", POOLED_CELL, "calibration"), (7, 4, 1));
    // watch: new = 0.4, NaN, 0.7, 0.5; old = 1.2, 0.0, 0.1, NaN (positives: label > 0).
    assert_eq!(counts("watch", "user=new", "mse"), (3, 3, 1));
    assert_eq!(counts("watch", "user=old", "calibration"), (3, 2, 1));
    assert_eq!(counts("watch", POOLED_CELL, "mse"), (6, 5, 2));
    // Every record of one behaviour × cell carries the same counts.
    for m in ["gauc", "logloss", "calibration"] {
        assert_eq!(counts("click", "user=new", m), (4, 2, 0));
    }
}

#[test]
fn gauc_only_when_groups_are_given() {
    let mut ev = evaluator();
    add(&mut ev, &ROWS, false).unwrap();
    let report = ev.finish("valid");
    assert!(report.records.iter().all(|r| r.metric != "gauc"));
    assert!(report.get("click", POOLED_CELL, "auc").is_some());
    // Mixing batches with and without groups is refused, not silently averaged.
    assert!(add(&mut ev, &ROWS, true).is_err());
    assert_eq!(ev.rows(), 8);
}

#[test]
fn nan_labels_are_masked_not_used() {
    // Same rows, but every missing label replaced by a wild value: the result must
    // differ, proving the NaN rows were left out rather than read as some number.
    let mut filled = ROWS;
    for r in filled.iter_mut() {
        if r.1 .1.is_nan() {
            r.1 .1 = 0.0;
        }
        if r.2 .1.is_nan() {
            r.2 .1 = 100.0;
        }
    }
    let mut ev = evaluator();
    add(&mut ev, &filled, true).unwrap();
    let filled_report = ev.finish("test");
    let report = full_report();
    assert_ne!(
        report.get("watch", POOLED_CELL, "mse"),
        filled_report.get("watch", POOLED_CELL, "mse")
    );
    assert_ne!(
        report.get("click", "user=old", "auc"),
        filled_report.get("click", "user=old", "auc")
    );
    // And a NaN score on a row whose label is missing does not poison the metrics.
    let mut ev = evaluator();
    let mut rows = ROWS;
    rows[2].1 .0 = NAN;
    add(&mut ev, &rows, true).unwrap();
    assert_eq!(ev.finish("test"), report);
}

#[test]
fn nan_score_on_labelled_row_gives_none() {
    let mut rows = ROWS;
    rows[0].1 .0 = NAN;
    let mut ev = evaluator();
    add(&mut ev, &rows, true).unwrap();
    let report = ev.finish("test");
    for m in ["auc", "gauc", "logloss", "calibration"] {
        assert_eq!(report.get("click", "user=new", m), None, "{m}");
        assert_eq!(report.get("click", POOLED_CELL, m), None, "{m}");
    }
    assert!(report.get("click", "user=old", "auc").is_some());
}

#[test]
fn single_class_and_empty_cells_give_none_and_render_dash() {
    let mut ev = Evaluator::new(
        vec![BehaviourInfo::binary("like")],
        vec!["head".into(), "tail".into(), "unseen".into()],
    );
    // "tail" has negatives only; "unseen" has no rows at all.
    ev.add_batch(
        &[0.9, 0.1, 0.3, 0.4],
        &[1.0, 0.0, 0.0, 0.0],
        &[0, 0, 1, 1],
        None,
    )
    .unwrap();
    let report = ev.finish("test");
    assert_eq!(report.get("like", "head", "auc"), Some(1.0));
    assert_eq!(report.get("like", "tail", "auc"), None);
    assert_eq!(report.get("like", "tail", "calibration"), None);
    assert!(report.get("like", "tail", "logloss").is_some());
    let unseen = report.record(None, "like", "unseen", "logloss").unwrap();
    assert_eq!((unseen.value, unseen.n, unseen.positives), (None, 0, 0));

    let table = report.render_table();
    let tail = table.lines().find(|l| l.starts_with("tail")).unwrap();
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // cell, auc, logloss, calibration, n, positives
    assert_eq!(fields[0], "tail");
    assert_eq!(fields[1], "-");
    assert_ne!(fields[2], "-");
    assert_eq!(fields[3], "-");
    assert_eq!(&fields[4..], ["2", "0"]);
}

#[test]
fn bad_batches_are_rejected_and_add_nothing() {
    let mut ev = evaluator();
    let cells = [0u32, 1];
    let four = [0.5f32; 4];
    assert!(ev.add_batch(&four[..3], &four, &cells, None).is_err());
    assert!(ev.add_batch(&four, &four[..3], &cells, None).is_err());
    assert!(ev.add_batch(&four, &four, &cells, Some(&[1])).is_err());
    let err = ev.add_batch(&four, &four, &[0, 2], None).unwrap_err();
    assert!(err.contains("cell index 2"), "{err}");
    assert_eq!(ev.rows(), 0);
    let report = ev.finish("test");
    assert!(report.records.iter().all(|r| r.n == 0 && r.value.is_none()));
    // An empty batch is fine.
    assert!(ev.add_batch(&[], &[], &[], None).is_ok());
}

#[test]
fn json_round_trip_keeps_every_record() {
    let mut report = full_report();
    let mut ev = Evaluator::new(vec![BehaviourInfo::binary("click")], vec!["x".into()]);
    ev.add_batch(&[0.2], &[1.0], &[0], None).unwrap();
    report.extend(ev.finish("valid").records);
    assert!(report.records.iter().any(|r| r.value.is_none()));

    let json = report.to_json();
    assert!(json.trim_start().starts_with('['));
    assert!(json.contains("null"));
    assert_eq!(Report::from_json(&json).unwrap(), report);
    assert!(Report::from_json("{").is_err());
}

#[test]
fn merged_splits_stay_apart() {
    let test = full_report();
    let mut ev = evaluator();
    add(&mut ev, &ROWS[..4], true).unwrap();
    let valid = ev.finish("valid");
    let merged = Report::merge([test.clone(), valid.clone()]);
    assert_eq!(
        merged.records.len(),
        test.records.len() + valid.records.len()
    );
    assert_eq!(
        merged.get_in("valid", "watch", POOLED_CELL, "mse"),
        valid.get("watch", POOLED_CELL, "mse")
    );
    assert_eq!(
        merged.get_in("test", "watch", POOLED_CELL, "mse"),
        test.get("watch", POOLED_CELL, "mse")
    );
    assert_ne!(
        merged.get_in("valid", "watch", POOLED_CELL, "mse"),
        merged.get_in("test", "watch", POOLED_CELL, "mse")
    );
}
