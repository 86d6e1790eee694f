//! Distributed training with ranks as threads ([`ThreadComm`]), against the
//! one-process trainer on the same config: a made-up log with a shared table, a
//! multi-valued field, a numeric feature, two behaviours and a facet. Needs no MPI.

use mfh_artifact::{collect_predictions, load_model};
use mfh_config::Config;
use mfh_distributed::{Comm, LocalComm, ReadMode, StepTimes, ThreadComm};
use mfh_train::TrainOptions;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn write_data(dir: &Path) -> std::path::PathBuf {
    let mut log = String::from("uid,author,item,tags,price,day,clicked,liked\n");
    for i in 0..1500u64 {
        let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        let tags: Vec<String> = (0..(h % 4))
            .map(|k| format!("t{}", (h + k * 7) % 13))
            .collect();
        log.push_str(&format!(
            "u{},u{},i{},\"{}\",{}.5,{},{},{}\n",
            h % 41,
            (h >> 5) % 41,
            (h >> 3) % 97,
            tags.join(","),
            h % 17,
            1 + i % 3,
            ((h >> 7) % 3 == 0) as u8,
            if i % 5 == 0 {
                String::new()
            } else {
                (((h >> 9) % 4) == 0)
                    .to_string()
                    .replace("true", "1")
                    .replace("false", "0")
            },
        ));
    }
    std::fs::write(dir.join("log.csv"), log).unwrap();
    let cfg = r#"
[data]
sources = ["log.csv"]
gauc_column = "uid"
[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
[[features]]
type = "categorical"
name = "uid"
dim = 4
table = "users"
[[features]]
type = "categorical"
name = "author"
dim = 4
table = "users"
[[features]]
type = "categorical"
name = "item"
dim = 3
[[features]]
type = "multi"
name = "tags"
dim = 3
separator = ","
pooling = "mean"
[[features]]
type = "numeric"
name = "price"
transform = ["log1p", "standardize"]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "binary"
name = "like"
column = "liked"
[[facets]]
name = "cheap"
column = "price"
thresholds = [8]
names = ["low", "high"]
[models.mmoe]
type = "mmoe"
experts = 2
expert_layers = [8]
tower = [4]
[train]
batch_size = 64
epochs = 2
max_steps = 25
threads = 1
eval_every = 10
lr = 0.01
early_stopping = { metric = "auc", patience = 100 }
embedding = { optimizer = "adagrad", lr = 0.05 }
"#;
    let path = dir.join("cfg.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        model: None,
        out: out.to_path_buf(),
        seed: Some(3),
        progress: false,
        keep_checkpoints: false,
        resume: false,
        init_from: None,
    }
}

/// Dense tensors of a saved model, by name.
fn dense(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut m = load_model(dir).unwrap();
    let mut out = Vec::new();
    m.state
        .net_mut()
        .visit_params("", &mut |n, p, _| out.push((n.to_string(), p.to_vec())));
    out
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty(), "no dense tensor");
    let mut d = 0.0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        for (x, y) in va.iter().zip(vb) {
            d = d.max((x - y).abs());
        }
    }
    d
}

fn metrics(dir: &Path) -> Vec<(String, f64)> {
    report_values(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
}

/// A report's values (JSON as in `metrics.json`), by behaviour, cell and metric.
fn report_values(json: &str) -> Vec<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let key = format!("{}/{}/{}", r["behaviour"], r["cell"], r["metric"]);
            r["value"].as_f64().map(|x| (key, x))
        })
        .collect()
}

fn max_metric_diff(a: &[(String, f64)], b: &[(String, f64)]) -> f64 {
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty(), "no metric");
    a.iter()
        .zip(b)
        .map(|((ka, x), (kb, y))| {
            assert_eq!(ka, kb);
            (x - y).abs()
        })
        .fold(0.0, f64::max)
}

#[test]
fn ranks_as_threads_train_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::load(&write_data(tmp.path())).unwrap();
    let reference = tmp.path().join("one");
    let s = mfh_train::train(&cfg, &opts(&reference)).unwrap();
    assert_eq!(s.steps, 25);

    // One rank through the distributed code path: the same model.
    let local = tmp.path().join("local");
    let (s1, _) = mfh_distributed::train(&cfg, &opts(&local), &mut LocalComm::new()).unwrap();
    assert_eq!((s1.steps, s1.best_step), (s.steps, s.best_step));
    let d1 = max_diff(&dense(&reference), &dense(&local));
    eprintln!("one rank: max |Δ| dense {d1:e}");
    assert_eq!(d1, 0.0, "one rank: dense parameters differ by {d1}");
    assert!(max_metric_diff(&metrics(&reference), &metrics(&local)) < 1e-6);

    for size in [2, 3] {
        let out = tmp.path().join(format!("ranks{size}"));
        let handles: Vec<_> = ThreadComm::world(size)
            .into_iter()
            .map(|mut comm| {
                let (cfg, out) = (cfg.clone(), out.clone());
                std::thread::spawn(move || {
                    let r = mfh_distributed::train(&cfg, &opts(&out), &mut comm).unwrap();
                    (comm.rank(), r.0.steps, r.1.comm.all_to_all_calls)
                })
            })
            .collect();
        for h in handles {
            let (_, steps, calls) = h.join().unwrap();
            assert_eq!(steps, 25);
            assert!(calls > 0);
        }
        let d = max_diff(&dense(&reference), &dense(&out));
        assert!(d < 1e-5, "{size} ranks: dense parameters differ by {d}");
        let m = max_metric_diff(&metrics(&reference), &metrics(&out));
        eprintln!("{size} ranks: max |Δ| dense {d:e}, metrics {m:e}");
        assert!(m < 1e-5, "{size} ranks: metrics differ by {m}");
        // The saved model holds every shard's rows: it scores like the reference.
        let mut a = load_model(&reference).unwrap();
        let mut b = load_model(&out).unwrap();
        let (tables_a, tables_b) = (a.state.emb.tables(), b.state.emb.tables());
        assert_eq!(tables_a.len(), tables_b.len(), "{size} ranks: table count");
        assert!(!tables_a.is_empty(), "{size} ranks: no embedding table");
        for (ta, tb) in tables_a.iter().zip(tables_b) {
            assert_eq!(ta.len(), tb.len(), "{size} ranks: table {}", ta.name());
            assert!(!ta.is_empty(), "{size} ranks: table {} is empty", ta.name());
            let ids = |t: &mfh_embedding::EmbeddingTable| {
                let mut v: Vec<u64> = t.ids().map(|(id, _)| id).collect();
                v.sort_unstable();
                v
            };
            assert_eq!(ids(ta), ids(tb), "{size} ranks: table {} ids", ta.name());
        }
        for split in ["train", "valid"] {
            let pa = Arc::new(a.pipeline(&cfg).unwrap());
            let pb = Arc::new(b.pipeline(&cfg).unwrap());
            let batch = cfg.train.batch_size;
            let sa = collect_predictions(&mut a.state, &pa, split, batch).unwrap();
            let sb = collect_predictions(&mut b.state, &pb, split, batch).unwrap();
            assert_eq!(sa.rows(), sb.rows(), "{size} ranks, {split}: rows scored");
            assert!(sa.rows() > 0, "{size} ranks, {split}: no row scored");
            assert_eq!(sa.preds.len(), sb.preds.len(), "{size} ranks, {split}");
            assert_eq!(sa.preds.len(), sa.rows() * sa.n_behaviours);
            assert_eq!(sa.cells, sb.cells, "{size} ranks, {split}: cells");
            // Ranks sum gradients in another order than one process (dense parameters
            // agree to 1e-5, above), so the scores agree to a tolerance, not bit for bit.
            let worst = sa
                .preds
                .iter()
                .zip(&sb.preds)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            eprintln!("{size} ranks, {split}: max |Δ| score {worst:e}");
            assert!(
                worst < SCORE_TOLERANCE,
                "{size} ranks, {split}: scores differ by {worst}"
            );
        }
    }
}

/// How far a score (a probability) of the model trained on thread ranks may be from the
/// one-process model's: the parameters agree to 1e-5, the scores to about 1e-7.
const SCORE_TOLERANCE: f32 = 1e-5;

/// Runs `train` on `size` thread ranks.
fn on_threads(size: usize, cfg: &Config, opts: &TrainOptions) {
    let handles: Vec<_> = ThreadComm::world(size)
        .into_iter()
        .map(|mut comm| {
            let (cfg, opts) = (cfg.clone(), opts.clone());
            std::thread::spawn(move || mfh_distributed::train(&cfg, &opts, &mut comm).unwrap().0)
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// The test data in `dir` with two configs checkpointing every 5 steps: the full run
/// (25 steps) and one cut at step 19.
fn full_and_cut_configs(dir: &Path) -> (Config, Config) {
    let path = write_data(dir);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_steps = 25", "max_steps = 25\ncheckpoint_every = 5");
    std::fs::write(&path, &text).unwrap();
    let short = dir.join("short.toml");
    std::fs::write(&short, text.replace("max_steps = 25", "max_steps = 19")).unwrap();
    (Config::load(&path).unwrap(), Config::load(&short).unwrap())
}

#[test]
fn a_resumed_run_writes_the_uninterrupted_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());

    let whole = tmp.path().join("whole");
    on_threads(2, &full_cfg, &opts(&whole));
    // Stopped at step 19 (its last checkpoint: step 19, mid-epoch 2), then resumed.
    let cut = tmp.path().join("cut");
    on_threads(2, &short_cfg, &opts(&cut));
    assert!(ck(&cut, 19).join("checkpoint.json").is_file());
    on_threads(
        2,
        &full_cfg,
        &TrainOptions {
            resume: true,
            ..opts(&cut)
        },
    );
    for f in ["dense.bin", "embeddings.bin", "optimizer.bin"] {
        let a = std::fs::read(ck(&whole, 25).join(f)).unwrap();
        let b = std::fs::read(ck(&cut, 25).join(f)).unwrap();
        assert!(a == b, "{f} differs after resuming");
    }
    // The number of ranks may change on resume (see below), the global batch may not:
    // every rank refuses, and says why.
    let text = std::fs::read_to_string(&full_cfg.source_file).unwrap();
    let halved = tmp.path().join("halved.toml");
    std::fs::write(&halved, text.replace("batch_size = 64", "batch_size = 32")).unwrap();
    let resume = TrainOptions {
        resume: true,
        ..opts(&cut)
    };
    for r in run_ranks(3, &Config::load(&halved).unwrap(), &resume) {
        let e = format!("{:#}", r.expect_err("a changed batch size is refused"));
        assert!(
            e.contains("global batch of 64 rows") && e.contains("train.batch_size = 32"),
            "{e}"
        );
    }
}

/// Copies a folder tree (a run's output, to resume it twice).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// The checkpoint of `step` in a run's output folder.
fn ck(out: &Path, step: u64) -> std::path::PathBuf {
    out.join("checkpoints")
        .join(mfh_train::checkpoint_name(step))
}

/// Every embedding row of the checkpoint in `dir` (gathered from every rank): (table,
/// id) → row then optimizer state.
fn checkpoint_rows(dir: &Path) -> BTreeMap<(usize, u64), Vec<f32>> {
    let c = mfh_train::load_checkpoint(dir).unwrap();
    let mut out = BTreeMap::new();
    for (t, table) in c.state.emb.tables().iter().enumerate() {
        for (id, s) in table.ids() {
            let v = table.row(s).iter().chain(table.row_state(s)).copied();
            let old = out.insert((t, id), v.collect());
            assert!(old.is_none(), "row ({t}, {id}) is in the checkpoint twice");
        }
    }
    assert!(!out.is_empty(), "{}: no embedding row", dir.display());
    out
}

/// A checkpoint's dense state: Adam's step count, then every parameter value and both
/// moments, in parameter order.
fn checkpoint_dense(dir: &Path) -> (u64, Vec<f32>) {
    mfh_train::load_checkpoint(dir).unwrap().dense_state()
}

#[test]
fn a_run_resumed_on_another_number_of_ranks_continues_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());

    // The last evaluation's values (step 25) of a run's summary.
    let last_eval = |s: &mfh_train::TrainSummary| {
        let (step, report) = s.history.last().expect("evaluated");
        assert_eq!(*step, 25);
        report_values(&report.to_json())
    };
    let whole = tmp.path().join("whole");
    let res = run_ranks(2, &full_cfg, &opts(&whole));
    let want_eval = last_eval(&res[0].as_ref().unwrap().0);
    assert!(res.iter().all(Result::is_ok));
    // Two ranks stop at step 19 (mid-epoch 2); the run goes on over 3 ranks and over 1.
    let cut = tmp.path().join("cut");
    on_threads(2, &short_cfg, &opts(&cut));
    let at_cut = checkpoint_rows(&ck(&cut, 19));
    let (on3, on1) = (tmp.path().join("on3"), tmp.path().join("on1"));
    copy_dir(&cut, &on3);
    copy_dir(&cut, &on1);
    let resume = |out: &Path| TrainOptions {
        resume: true,
        ..opts(out)
    };
    let mut evals = Vec::new();
    for r in run_ranks(3, &full_cfg, &resume(&on3)) {
        let (s, t) = r.unwrap();
        assert_eq!((s.steps, t.steps), (25, 6), "3 ranks train steps 20..=25");
        evals.push(last_eval(&s));
    }
    let (s1, t1) = mfh_distributed::train(&full_cfg, &resume(&on1), &mut LocalComm::new()).unwrap();
    assert_eq!(
        (s1.steps, t1.steps),
        (25, 6),
        "one rank trains steps 20..=25"
    );
    assert_eq!(evals.len(), 3, "one evaluation per rank");
    assert!(
        evals.windows(2).all(|w| w[0] == w[1]),
        "every rank reports the same"
    );
    evals.truncate(1);
    evals.push(last_eval(&s1));
    assert_eq!(evals.len(), 2, "resumed on 3 ranks and on 1");

    let want = checkpoint_rows(&ck(&whole, 25));
    for ((size, out), got_eval) in [(3, &on3), (1, &on1)].into_iter().zip(&evals) {
        // The valid metrics of step 25 (the model folder holds the best step's, which
        // the cut run's extra evaluation at step 19 may have moved).
        let m = max_metric_diff(&want_eval, got_eval);
        eprintln!("resumed on {size}: max |Δ| valid metrics at step 25 {m:e}");
        assert!(m < 1e-5, "resumed on {size}: metrics differ by {m}");
        // The step-25 state: dense parameters and Adam's moments.
        let (ws, wv) = checkpoint_dense(&ck(&whole, 25));
        let (gs, gv) = checkpoint_dense(&ck(out, 25));
        assert_eq!((gs, gv.len()), (ws, wv.len()));
        assert!(!wv.is_empty(), "no dense state");
        let d = gv
            .iter()
            .zip(&wv)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        eprintln!("resumed on {size}: max |Δ| dense and Adam state at step 25 {d:e}");
        assert!(
            d < 1e-5,
            "resumed on {size}: step-25 dense state differs by {d}"
        );
        // Every row (and its optimizer state) once (each rank kept the rows it owns
        // under the new size, and the checkpoint gathers them), equal to the
        // uninterrupted run's.
        let got = checkpoint_rows(&ck(out, 25));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "resumed on {size}: other rows"
        );
        let mut worst = 0.0f32;
        for ((t, id), v) in &got {
            let w = &want[&(*t, *id)];
            assert_eq!(v.len(), w.len(), "table {t} id {id}: row and state length");
            for (x, y) in v.iter().zip(w) {
                worst = worst.max((x - y).abs());
            }
        }
        eprintln!("resumed on {size}: max |Δ| embedding rows and state {worst:e}");
        assert!(worst < 1e-5, "resumed on {size}: rows differ by {worst}");
    }
    // The step-19 rows were all carried over: an id the cut run had is in the resumed
    // run's first checkpoint (step 20).
    for (size, out) in [(3, &on3), (1, &on1)] {
        let after = checkpoint_rows(&ck(out, 20));
        for (t, id) in at_cut.keys() {
            assert!(
                after.contains_key(&(*t, *id)),
                "resumed on {size}: row ({t}, {id}) lost"
            );
        }
    }
}

/// `train` on `size` thread ranks; every rank's result, in rank order.
fn run_ranks(
    size: usize,
    cfg: &Config,
    opts: &TrainOptions,
) -> Vec<anyhow::Result<(mfh_train::TrainSummary, StepTimes)>> {
    let handles: Vec<_> = ThreadComm::world(size)
        .into_iter()
        .map(|mut comm| {
            let (cfg, opts) = (cfg.clone(), opts.clone());
            std::thread::spawn(move || mfh_distributed::train(&cfg, &opts, &mut comm))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// `write_data`'s config with `from` replaced by `to`.
fn edited(dir: &Path, name: &str, edits: &[(&str, &str)]) -> Config {
    let mut text = std::fs::read_to_string(write_data(dir)).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

#[test]
fn each_rank_decodes_only_its_rows_and_the_model_is_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    // Whole epochs (no max_steps), so that every stripe read is trained on.
    let cfg = edited(
        tmp.path(),
        "epochs.toml",
        &[("max_steps = 25", "max_steps = 0")],
    );
    let reference = tmp.path().join("one");
    let s = mfh_train::train(&cfg, &opts(&reference)).unwrap();
    let train_rows = s.train_rows;
    assert!(train_rows > 500, "{train_rows}");
    let local = tmp.path().join("local");
    let (_, t1) = mfh_distributed::train(&cfg, &opts(&local), &mut LocalComm::new()).unwrap();
    assert_eq!(t1.read_mode, Some(ReadMode::Striped));
    assert_eq!(t1.rows_decoded, 2 * train_rows);
    assert_eq!(max_diff(&dense(&reference), &dense(&local)), 0.0);
    for size in [2, 3] {
        let out = tmp.path().join(format!("striped{size}"));
        let res = run_ranks(size, &cfg, &opts(&out));
        let mut locals = 0;
        for (rank, r) in res.into_iter().enumerate() {
            let (summary, t) = r.unwrap();
            assert_eq!(summary.steps, s.steps);
            assert_eq!(t.read_mode, Some(ReadMode::Striped));
            // Two epochs of the global batches; this rank decoded its rows and no other.
            assert_eq!(t.rows, 2 * train_rows);
            assert_eq!(t.rows_decoded, t.rows_local, "rank {rank} of {size}");
            let share = 2 * train_rows / size as u64;
            assert!(
                t.rows_local.abs_diff(share) <= summary.steps,
                "rank {rank} of {size}: {} rows, share {share}",
                t.rows_local
            );
            locals += t.rows_local;
        }
        assert_eq!(locals, 2 * train_rows);
        let d = max_diff(&dense(&reference), &dense(&out));
        let m = max_metric_diff(&metrics(&reference), &metrics(&out));
        eprintln!("striped, {size} ranks: max |Δ| dense {d:e}, metrics {m:e}");
        assert!(d < 1e-5 && m < 1e-5, "{size} ranks: dense {d}, metrics {m}");
    }
}

#[test]
fn skipping_bad_rows_reads_whole_batches_and_still_trains_the_one_process_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = edited(
        tmp.path(),
        "skip.toml",
        &[(
            "gauc_column = \"uid\"",
            "gauc_column = \"uid\"\non_error = \"skip\"",
        )],
    );
    let reference = tmp.path().join("one");
    mfh_train::train(&cfg, &opts(&reference)).unwrap();
    let out = tmp.path().join("two");
    for r in run_ranks(2, &cfg, &opts(&out)) {
        let (_, t) = r.unwrap();
        assert_eq!(t.read_mode, Some(ReadMode::Whole));
        assert_eq!(t.rows_decoded, 0, "the whole-batch stream does not count");
    }
    let d = max_diff(&dense(&reference), &dense(&out));
    assert!(d < 1e-5, "dense parameters differ by {d}");
}

#[test]
fn a_bad_row_read_by_one_rank_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::load(&write_data(tmp.path())).unwrap();
    // Break a label of the valid split (day 3), which the fit pass does not read: only
    // the rank whose stripe holds it meets it, at the first evaluation.
    let path = tmp.path().join("log.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let at = lines
        .iter()
        .position(|l| l.split(',').nth_back(2) == Some("3"))
        .unwrap();
    let mut cells: Vec<String> = lines[at].split(',').map(String::from).collect();
    let n = cells.len();
    cells[n - 2] = "maybe".into();
    lines[at] = cells.join(",");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let res = run_ranks(2, &cfg, &opts(&tmp.path().join("bad")));
    let errs: Vec<String> = res
        .into_iter()
        .map(|r| format!("{:#}", r.expect_err("every rank fails")))
        .collect();
    let line = format!("log.csv:{}", at + 1);
    let owners: Vec<&String> = errs.iter().filter(|e| e.contains(&line)).collect();
    assert_eq!(owners.len(), 1, "{errs:?}");
    assert!(owners[0].contains("maybe"), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("other rank(s) could not read")),
        "{errs:?}"
    );
}

#[test]
fn embedding_admission_and_expiry_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("admit_after", "3"),
        ("ttl_steps", "50"),
        ("max_rows", "100"),
    ] {
        let cfg = edited(
            tmp.path(),
            &format!("{key}.toml"),
            &[(
                "optimizer = \"adagrad\",",
                &format!("optimizer = \"adagrad\", {key} = {value},"),
            )],
        );
        let out = tmp.path().join(key);
        let e = mfh_distributed::train(&cfg, &opts(&out), &mut LocalComm::new())
            .expect_err("refused")
            .to_string();
        assert!(e.contains(&format!("train.embedding.{key}")), "{e}");
    }
}

// The defects the distributed fork of the training loop had (issue 17), each against the
// one-process trainer's behaviour.

/// Checkpoint folders (`ckpt-<step>`) under a run's output, sorted.
fn checkpoint_dirs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ckpt-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_fresh_run_refuses_to_discard_an_interrupted_runs_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, short_cfg) = full_and_cut_configs(tmp.path());
    let out = tmp.path().join("m");
    on_threads(2, &short_cfg, &opts(&out));
    let before = checkpoint_dirs(&out);
    assert!(!before.is_empty(), "the run wrote checkpoints");
    // A finished run marked its checkpoints; a killed one never does.
    let marker = out.join("checkpoints/complete");
    assert!(marker.is_file(), "a finished run is marked complete");
    std::fs::remove_file(&marker).unwrap();
    for r in run_ranks(2, &short_cfg, &opts(&out)) {
        let e = format!("{:#}", r.expect_err("a fresh run over an interrupted one"));
        assert!(
            e.contains("interrupted run") || e.contains("refused to start over"),
            "{e}"
        );
    }
    assert_eq!(
        checkpoint_dirs(&out),
        before,
        "the checkpoints are untouched"
    );
    // Once finished, a fresh run may replace them.
    std::fs::write(&marker, "training finished\n").unwrap();
    on_threads(2, &short_cfg, &opts(&out));
    assert_eq!(checkpoint_dirs(&out), before);
}

#[test]
fn keep_last_zero_writes_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = edited(
        tmp.path(),
        "none.toml",
        &[(
            "max_steps = 25",
            "max_steps = 12\ncheckpoint_every = 5\nkeep_last = 0",
        )],
    );
    let out = tmp.path().join("m");
    on_threads(2, &cfg, &opts(&out));
    assert!(out.join("model.json").is_file(), "the model is saved");
    assert_eq!(checkpoint_dirs(&out), Vec::<String>::new());
}

#[test]
fn resume_falls_back_to_an_older_intact_checkpoint_and_keeps_the_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());
    let whole = tmp.path().join("whole");
    let full = run_ranks(2, &full_cfg, &opts(&whole));
    let cut = tmp.path().join("cut");
    on_threads(2, &short_cfg, &opts(&cut));
    // keep_last = 2: the end of epoch 1 (step 16) and step 19. Damage step 19's rows.
    assert_eq!(
        checkpoint_dirs(&cut),
        [
            mfh_train::checkpoint_name(16),
            mfh_train::checkpoint_name(19)
        ]
    );
    let shard = ck(&cut, 19).join("embeddings.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let resumed = run_ranks(
        2,
        &full_cfg,
        &TrainOptions {
            resume: true,
            ..opts(&cut)
        },
    );
    assert_eq!(resumed.len(), 2);
    assert_eq!(full.len(), 2);
    let (a, _) = full[0].as_ref().unwrap();
    let (b, _) = resumed[0].as_ref().expect("resumed from step 16");
    // The same run: the same steps, the same best step, and the selection's whole state
    // (every evaluation's report, the best one's report) carried over the resume.
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.best_step, b.best_step);
    assert!(!a.report.records.is_empty());
    assert_eq!(a.report.records.len(), b.report.records.len());
    for (x, y) in a.report.records.iter().zip(&b.report.records) {
        assert_eq!(
            (&x.behaviour, &x.cell, &x.metric),
            (&y.behaviour, &y.cell, &y.metric)
        );
        match (x.value, y.value) {
            (Some(u), Some(v)) => assert!((u - v).abs() < 1e-6, "{x:?} vs {y:?}"),
            (u, v) => assert_eq!(u.is_some(), v.is_some(), "{x:?} vs {y:?}"),
        }
    }
    let steps = |s: &mfh_train::TrainSummary| s.history.iter().map(|h| h.0).collect::<Vec<_>>();
    assert_eq!(steps(a), steps(b), "the history survives the resume");
    assert!(steps(a).len() >= 3, "{:?}", steps(a));
    for r in &resumed {
        r.as_ref().unwrap();
    }
}

#[test]
fn a_failed_save_on_rank_0_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = edited(
        tmp.path(),
        "c.toml",
        &[("max_steps = 25", "max_steps = 12\nkeep_last = 0")],
    );
    let out = tmp.path().join("m");
    std::fs::create_dir_all(&out).unwrap();
    // The model's staging folder is a file: rank 0 cannot save the best model.
    std::fs::write(out.join(".saving"), "in the way").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_ranks(3, &cfg, &opts(&out)));
    });
    let results = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("every rank returns (none waits in a collective)");
    assert_eq!(results.len(), 3);
    for (rank, r) in results.into_iter().enumerate() {
        let e = format!("{:#}", r.expect_err("the save failed"));
        assert!(
            e.contains("save") || e.contains(".saving"),
            "rank {rank}: {e}"
        );
    }
}

#[test]
fn local_and_distributed_runs_resume_each_others_checkpoints() {
    // One checkpoint layout for both engines: a one-process run cut at step 19 goes on
    // over 2 ranks, a 2-rank run cut at step 19 goes on on one process, and a 1-rank
    // distributed run is resumed by the one-process trainer; each ends with the
    // uninterrupted run's step-25 state.
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, short_cfg) = full_and_cut_configs(tmp.path());
    let whole = tmp.path().join("whole");
    mfh_train::train(&full_cfg, &opts(&whole)).unwrap();
    let resume = |out: &Path| TrainOptions {
        resume: true,
        ..opts(out)
    };
    let (a, b, c) = (
        tmp.path().join("local-then-2"),
        tmp.path().join("2-then-local"),
        tmp.path().join("1-then-local"),
    );
    mfh_train::train(&short_cfg, &opts(&a)).unwrap();
    on_threads(2, &full_cfg, &resume(&a));
    on_threads(2, &short_cfg, &opts(&b));
    assert_eq!(
        mfh_train::load_checkpoint(&ck(&b, 19)).unwrap().world_size,
        2
    );
    let s = mfh_train::train(&full_cfg, &resume(&b)).unwrap();
    assert_eq!(s.steps, 25);
    mfh_distributed::train(&short_cfg, &opts(&c), &mut LocalComm::new()).unwrap();
    let s = mfh_train::train(&full_cfg, &resume(&c)).unwrap();
    assert_eq!(s.steps, 25);
    let (ws, wv) = checkpoint_dense(&ck(&whole, 25));
    let want = checkpoint_rows(&ck(&whole, 25));
    for out in [&a, &b, &c] {
        let (gs, gv) = checkpoint_dense(&ck(out, 25));
        assert_eq!((gs, gv.len()), (ws, wv.len()), "{}", out.display());
        assert!(!wv.is_empty());
        let d = gv
            .iter()
            .zip(&wv)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{}: dense state differs by {d}", out.display());
        let got = checkpoint_rows(&ck(out, 25));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{}: other rows",
            out.display()
        );
        let mut worst = 0.0f32;
        for (k, v) in &got {
            let w = &want[k];
            assert_eq!(v.len(), w.len());
            for (x, y) in v.iter().zip(w) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(worst < 1e-5, "{}: rows differ by {worst}", out.display());
    }
}
