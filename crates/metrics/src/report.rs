//! Metric records, their JSON form (metrics.json) and console tables.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Cell name of the records pooled over every facet cell.
pub const POOLED_CELL: &str = "all";

/// One metric of one behaviour in one facet cell (or "all") of one split.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MetricRecord {
    pub split: String,
    pub behaviour: String,
    pub cell: String,
    pub metric: String,
    /// `None` when undefined (one class only, no labelled rows, NaN scores, …).
    pub value: Option<f64>,
    /// Rows with a label.
    pub n: u64,
    /// Labelled rows with a positive label (binary: > 0.5, regression: > 0).
    pub positives: u64,
    /// Rows of the cell whose label was missing.
    pub missing: u64,
}

/// A flat list of records, possibly from several splits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub records: Vec<MetricRecord>,
}

/// Key that identifies a record up to its metric.
type RowKey<'a> = (&'a str, &'a str, &'a str);

impl Report {
    pub fn new(records: Vec<MetricRecord>) -> Self {
        Self { records }
    }

    /// Concatenates reports (e.g. train, valid and test splits) into one.
    pub fn merge(reports: impl IntoIterator<Item = Report>) -> Report {
        let mut merged = Report::default();
        for report in reports {
            merged.extend(report.records);
        }
        merged
    }

    /// Appends records, e.g. those of another split.
    pub fn extend(&mut self, records: impl IntoIterator<Item = MetricRecord>) {
        self.records.extend(records);
    }

    /// Value of the first record matching behaviour, cell and metric (any split).
    /// `None` both when no record matches and when the metric is undefined.
    pub fn get(&self, behaviour: &str, cell: &str, metric: &str) -> Option<f64> {
        self.record(None, behaviour, cell, metric)?.value
    }

    /// Like [`Report::get`], restricted to one split.
    pub fn get_in(&self, split: &str, behaviour: &str, cell: &str, metric: &str) -> Option<f64> {
        self.record(Some(split), behaviour, cell, metric)?.value
    }

    /// The first record matching, with its counts; `split: None` matches any split.
    pub fn record(
        &self,
        split: Option<&str>,
        behaviour: &str,
        cell: &str,
        metric: &str,
    ) -> Option<&MetricRecord> {
        self.records.iter().find(|r| {
            split.is_none_or(|s| r.split == s)
                && r.behaviour == behaviour
                && r.cell == cell
                && r.metric == metric
        })
    }

    /// Pretty JSON array of the records (the metrics.json format).
    pub fn to_json(&self) -> String {
        // Records hold only strings, integers and finite-or-null floats, which always serialise.
        serde_json::to_string_pretty(&self.records).expect("metric records always serialise")
    }

    /// Parses what [`Report::to_json`] wrote.
    pub fn from_json(json: &str) -> Result<Report, String> {
        serde_json::from_str(json)
            .map(Report::new)
            .map_err(|e| format!("metrics JSON: {e}"))
    }

    /// One block per split × behaviour; one line per cell (pooled "all" last); a column per
    /// metric plus n and positives. Values have 4 decimals, "-" when undefined.
    pub fn render_table(&self) -> String {
        let mut blocks = Vec::new();
        for (split, behaviour) in
            first_seen(self.records.iter().map(|r| (&*r.split, &*r.behaviour)))
        {
            let mine: Vec<&MetricRecord> = self
                .records
                .iter()
                .filter(|r| r.split == split && r.behaviour == behaviour)
                .collect();
            let metrics = first_seen(mine.iter().map(|r| &*r.metric));
            let cells = pooled_last(first_seen(mine.iter().map(|r| &*r.cell)), |c| *c);
            let by_key: HashMap<(&str, &str), &MetricRecord> = mine
                .iter()
                .map(|r| ((&*r.cell, &*r.metric), *r))
                .rev() // so the first record of a duplicate key wins, as in `get`
                .collect();

            let mut header = vec!["cell".to_string()];
            header.extend(metrics.iter().map(|m| m.to_string()));
            header.extend(["n".to_string(), "positives".to_string()]);
            let mut lines = vec![header];
            for cell in &cells {
                let mut line = vec![cell.to_string()];
                line.extend(
                    metrics
                        .iter()
                        .map(|m| format_value(by_key.get(&(*cell, *m)).and_then(|r| r.value))),
                );
                let counts = metrics.iter().find_map(|m| by_key.get(&(*cell, *m)));
                line.push(counts.map_or("-".to_string(), |r| r.n.to_string()));
                line.push(counts.map_or("-".to_string(), |r| r.positives.to_string()));
                lines.push(line);
            }
            blocks.push(format!("{behaviour} [{split}]\n{}", align(&lines, 1)));
        }
        blocks.join("\n")
    }
}

/// Rows = split × behaviour × cell, one column per model, for one metric. The split column
/// only appears when the reports hold more than one split. "-" where a model lacks the
/// record or the value is undefined.
pub fn render_side_by_side(reports: &[(&str, &Report)], metric: &str) -> String {
    let chosen = || {
        reports
            .iter()
            .flat_map(|(_, report)| report.records.iter())
            .filter(|r| r.metric == metric)
    };
    let splits = first_seen(chosen().map(|r| &*r.split));
    let behaviours = first_seen(chosen().map(|r| &*r.behaviour));
    let mut rows: Vec<RowKey> = first_seen(chosen().map(|r| (&*r.split, &*r.behaviour, &*r.cell)));
    let rank = |list: &[&str], x: &str| list.iter().position(|y| *y == x);
    // Stable sort: keeps cells in first-seen order within each block, moves "all" last.
    rows.sort_by_key(|&(s, b, c)| (rank(&splits, s), rank(&behaviours, b), c == POOLED_CELL));

    let per_model: Vec<HashMap<RowKey, Option<f64>>> = reports
        .iter()
        .map(|(_, report)| {
            report
                .records
                .iter()
                .filter(|r| r.metric == metric)
                .map(|r| ((&*r.split, &*r.behaviour, &*r.cell), r.value))
                .rev()
                .collect()
        })
        .collect();

    let show_split = splits.len() > 1;
    let name_columns = if show_split { 3 } else { 2 };
    let mut header = Vec::new();
    if show_split {
        header.push("split".to_string());
    }
    header.extend(["behaviour".to_string(), "cell".to_string()]);
    header.extend(reports.iter().map(|(name, _)| name.to_string()));
    let mut lines = vec![header];
    for key @ (split, behaviour, cell) in rows {
        let mut line = Vec::new();
        if show_split {
            line.push(split.to_string());
        }
        line.extend([behaviour.to_string(), cell.to_string()]);
        line.extend(
            per_model
                .iter()
                .map(|values| format_value(values.get(&key).copied().flatten())),
        );
        lines.push(line);
    }
    format!("{metric}\n{}", align(&lines, name_columns))
}

fn format_value(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.4}"))
}

/// Distinct items in order of first appearance.
fn first_seen<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// Moves the pooled cell to the end, keeping the others in order.
fn pooled_last<T>(mut items: Vec<T>, cell: impl Fn(&T) -> &str) -> Vec<T> {
    items.sort_by_key(|item| cell(item) == POOLED_CELL);
    items
}

/// Lays out a table: the first `name_columns` columns left-aligned, the rest (numbers)
/// right-aligned, two spaces between columns, no trailing spaces.
fn align(lines: &[Vec<String>], name_columns: usize) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .filter_map(|line| line.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c > 0 {
                text.push_str("  ");
            }
            let pad = " ".repeat(widths[c] - cell.chars().count());
            if c < name_columns {
                text.push_str(cell);
                text.push_str(&pad);
            } else {
                text.push_str(&pad);
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}
