//! Console tables: layout, ordering, 4-decimal values and "-" for undefined.

use mfh_metrics::{render_side_by_side, MetricRecord, Report};

fn rec(split: &str, behaviour: &str, cell: &str, metric: &str, value: Option<f64>) -> MetricRecord {
    MetricRecord {
        split: split.into(),
        behaviour: behaviour.into(),
        cell: cell.into(),
        metric: metric.into(),
        value,
        n: 120,
        positives: 7,
        missing: 3,
    }
}

fn sample(split: &str, shift: f64) -> Report {
    Report::new(vec![
        rec(split, "click", "all", "auc", Some(0.7 + shift)),
        rec(split, "click", "all", "logloss", Some(0.25)),
        rec(split, "click", "user=new,item=tail", "auc", None),
        rec(split, "click", "user=new,item=tail", "logloss", Some(1.5)),
        rec(split, "click", "user=old", "auc", Some(0.812345 + shift)),
        rec(split, "click", "user=old", "logloss", Some(0.3)),
        rec(split, "watch", "user=old", "mse", Some(12.0)),
        rec(split, "watch", "all", "mse", Some(11.0)),
    ])
}

#[test]
fn table_has_one_aligned_block_per_behaviour_with_pooled_last() {
    let table = sample("test", 0.0).render_table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "click [test]");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(header, ["cell", "auc", "logloss", "n", "positives"]);
    let cells: Vec<&str> = lines[2..5]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(cells, ["user=new,item=tail", "user=old", "all"]);
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["user=new,item=tail", "-", "1.5000", "120", "7"]
    );
    assert!(lines[3].contains(" 0.8123 "));
    // Right-aligned numbers and a padded name column: every line of a block has one width,
    // and each column ends at the same offset.
    let width = lines[1].len();
    assert!(lines[1..5].iter().all(|l| l.len() == width), "{table}");
    let end_of_auc = lines[1].find("auc").unwrap() + 3;
    assert!(lines[2..5]
        .iter()
        .all(|l| l.as_bytes()[end_of_auc - 1] != b' ' && l.as_bytes()[end_of_auc] == b' '));

    let watch = lines.iter().position(|l| *l == "watch [test]").unwrap();
    assert_eq!(
        lines[watch + 1].split_whitespace().collect::<Vec<_>>(),
        ["cell", "mse", "n", "positives"]
    );
    assert!(lines[watch + 2].starts_with("user=old"));
    assert!(lines[watch + 3].starts_with("all"));
    assert!(lines[watch + 3].contains("11.0000"));
}

#[test]
fn side_by_side_has_one_column_per_model() {
    let base = sample("test", 0.0);
    let better = sample("test", 0.01);
    let table = render_side_by_side(&[("base", &base), ("better", &better)], "auc");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "auc");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["behaviour", "cell", "base", "better"]
    );
    let rows: Vec<Vec<&str>> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["click", "user=new,item=tail", "-", "-"],
            vec!["click", "user=old", "0.8123", "0.8223"],
            vec!["click", "all", "0.7000", "0.7100"],
        ]
    );
}

#[test]
fn side_by_side_marks_records_a_model_lacks_and_separates_splits() {
    let a = Report::merge([sample("valid", 0.0), sample("test", 0.0)]);
    let b = Report::new(vec![rec("test", "watch", "all", "mse", Some(9.5))]);
    let table = render_side_by_side(&[("a", &a), ("b", &b)], "mse");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["split", "behaviour", "cell", "a", "b"],
            vec!["valid", "watch", "user=old", "12.0000", "-"],
            vec!["valid", "watch", "all", "11.0000", "-"],
            vec!["test", "watch", "user=old", "12.0000", "-"],
            vec!["test", "watch", "all", "11.0000", "9.5000"],
        ]
    );
}

#[test]
fn empty_report_renders_without_panicking() {
    let empty = Report::default();
    assert_eq!(empty.render_table(), "");
    assert_eq!(
        render_side_by_side(&[("m", &empty)], "auc"),
        "auc\nbehaviour  cell  m\n"
    );
    assert_eq!(empty.get("click", "all", "auc"), None);
    assert_eq!(Report::from_json(&empty.to_json()).unwrap(), empty);
}

#[test]
#[ignore = "prints the tables for a human to look at"]
fn show_tables() {
    let a = sample("test", 0.0);
    let b = sample("test", 0.01);
    println!("{}", a.render_table());
    println!(
        "{}",
        render_side_by_side(&[("base", &a), ("better", &b)], "auc")
    );
}
