//! Striped reading (one rank's share of each global batch) against the single-process
//! stream on a small log made here: the ranks' stripes put together are the stream's
//! batches, row for row, and each rank decodes only its own rows.

use mfh_config::Config;
use mfh_data::{stripe_range, Batch, Pipeline, StreamOptions};
use std::path::Path;
use std::sync::Arc;

fn cfg(dir: &Path, extra: &str) -> Config {
    let text = format!(
        r#"
[data]
sources = ["log.csv", "log2.csv"]
gauc_column = "uid"
{extra}
[[data.side_tables]]
name = "user"
path = "users.csv"
key = "uid"
[splits]
train = {{ where = "day <= 2" }}
valid = {{ where = "day == 3 and user.tier != \"c\"" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "multi"
name = "tags"
dim = 4
separator = "|"
[[features]]
type = "numeric"
name = "age"
transform = ["standardize"]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "regression"
name = "ratio"
expr = "play / dur"
[[facets]]
name = "tier"
column = "user.tier"
groups = [{{ name = "gold", values = ["a", "b"] }}]
default = "rest"
"#
    );
    Config::from_toml_str(&text, Path::new("t.toml"), dir).unwrap()
}

/// 900 rows over two files; `bad` puts an unparsable label on that data row.
fn write(dir: &Path, bad: Option<usize>) {
    let users = "uid,tier,age\nu0,a,30\nu1,c,\nu2,b,50\nu3,a,41\n";
    std::fs::write(dir.join("users.csv"), users).unwrap();
    let mut logs = [String::new(), String::new()];
    for i in 0..900usize {
        let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        let click = if bad == Some(i) {
            "maybe".to_string()
        } else {
            if h.is_multiple_of(3) { "1" } else { "0" }.to_string()
        };
        logs[i / 450].push_str(&format!(
            "u{},{},t{}|t{},{click},{},{}\n",
            h % 4,
            1 + h % 3,
            h % 11,
            h % 5,
            h % 7,
            1 + h % 9
        ));
    }
    for (name, body) in ["log.csv", "log2.csv"].iter().zip(logs) {
        std::fs::write(
            dir.join(name),
            format!("uid,day,tags,clicked,play,dur\n{body}"),
        )
        .unwrap();
    }
}

fn pipeline(dir: &Path, extra: &str) -> Arc<Pipeline> {
    let mut p = Pipeline::new(&cfg(dir, extra)).unwrap();
    p.fit("train").unwrap();
    Arc::new(p)
}

fn opts(batch_size: usize, shuffle_buffer: usize) -> StreamOptions {
    StreamOptions {
        batch_size,
        shuffle_buffer,
        seed: 11,
        prefetch: 2,
    }
}

#[test]
fn the_ranks_stripes_make_the_single_process_batches() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), None);
    let p = pipeline(tmp.path(), "");
    for (split, bs, buffer) in [
        ("train", 64, 0),
        ("train", 64, 100),
        ("train", 7, 250),
        ("train", 50, 5000),
        ("valid", 32, 0),
    ] {
        let want: Vec<Batch> = p
            .stream(split, opts(bs, buffer))
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let total: usize = want.iter().map(|b| b.n).sum();
        assert!(total > 100, "{split}: {total} rows");
        for size in [1, 2, 3] {
            let mut streams: Vec<_> = (0..size)
                .map(|r| p.stream_striped(split, opts(bs, buffer), r, size).unwrap())
                .collect();
            let mut decoded = vec![0usize; size];
            for (k, w) in want.iter().enumerate() {
                let mut got = w.empty_like();
                for (r, s) in streams.iter_mut().enumerate() {
                    let stripe = s.next().expect("as many stripes as batches").unwrap();
                    assert_eq!(stripe.global_rows, w.n, "{split} batch {k}");
                    assert_eq!(stripe.batch.n, stripe_range(w.n, r, size).len());
                    decoded[r] += stripe.batch.n;
                    let all: Vec<usize> = (0..stripe.batch.n).collect();
                    got.extend_from(&stripe.batch, &all);
                }
                assert_eq!(
                    &got, w,
                    "{split} bs {bs} buffer {buffer}: batch {k}, {size} ranks"
                );
            }
            for (r, s) in streams.iter_mut().enumerate() {
                assert!(s.next().is_none(), "no stripe after the last batch");
                let stats = s.stats().unwrap();
                assert_eq!(stats.rows_used, total as u64);
                assert_eq!(stats.rows_read, 900);
                // Each rank decoded only its own rows: its share of every batch.
                let c = s.counts();
                assert_eq!(c.rows_decoded, decoded[r] as u64);
                assert_eq!(c.rows_scanned, total as u64);
                assert!(
                    decoded[r] <= total / size + want.len(),
                    "rank {r} of {size} decoded {} of {total}",
                    decoded[r]
                );
            }
            assert_eq!(decoded.iter().sum::<usize>(), total);
        }
    }
}

#[test]
fn a_bad_row_fails_only_on_the_rank_that_decodes_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Data row 4 (line 6 of log.csv, day 2) is among the first rows of the train split:
    // read in file order as one batch, it is in rank 0's half.
    write(tmp.path(), Some(4));
    let p = pipeline_unfitted(tmp.path());
    let in_order = |r: usize| {
        p.stream_striped("train", StreamOptions::in_order(1000), r, 2)
            .unwrap()
            .map(|s| s.map(|s| s.batch.n))
            .collect::<Vec<_>>()
    };
    let (a, b) = (in_order(0), in_order(1));
    let err = a[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("log.csv:6"), "{err}");
    assert!(err.contains("maybe"), "{err}");
    assert!(b[0].is_ok(), "rank 1 decodes other rows: {:?}", b[0]);
}

/// A pipeline without fitted statistics (fitting would read the bad row and fail).
fn pipeline_unfitted(dir: &Path) -> Arc<Pipeline> {
    let p = Pipeline::new(&cfg(dir, "")).unwrap();
    Arc::new(p)
}

#[test]
fn skipping_rows_or_sampling_negatives_rules_out_striping() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), None);
    let p = pipeline(tmp.path(), "on_error = \"skip\"");
    let e = p
        .stream_striped("train", opts(64, 0), 0, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("on_error"), "{e}");
    let p = pipeline(tmp.path(), "");
    assert!(p.striping_blocker("train").is_none());
    assert!(p.stream_striped("train", opts(64, 0), 2, 2).is_err());
}
