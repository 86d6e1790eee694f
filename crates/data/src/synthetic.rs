//! `mfh prepare synthetic`: a generated log whose structure is known, so that what a
//! model's sharing gains can be measured against the truth rather than asserted.
//!
//! Users and items carry latent vectors. Each behaviour k's label logit is
//!
//! ```text
//! bias_k + sharing·<a_u, a_i>                                 shared by the behaviours
//!        + <b_u^k, b_i^k>                                     behaviour k's own part
//!        + facet_strength·(<c[g_u][k], a_i> + <a_u, e[g_i][k]>)   per facet cell
//! ```
//!
//! where `g_u` is the user's group (new / old) and `g_i` the item's (tail / head). The
//! group vectors of the small groups (new users, tail items) are correlated with the large
//! groups' ([`BORROW`]), so a small cell can borrow from a large one. New users are a
//! third of the users and `new_user_share` of the rows (fewer rows each); item
//! popularity is Zipf-like and the most popular fifth of the items are the head. Every
//! row stores the true probability of each label, so each cell's oracle AUC (the best
//! any model can reach) is known; the users' and items' observed features are noisy
//! buckets of their latent vectors, so a model can generalise to users it has seen little.
//!
//! Everything is drawn from one seeded generator: a seed and the knobs give the same
//! files on any run. Files are written under temporary names, synced, then renamed.

use crate::error::DataError;
use crate::SplitMix;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The behaviours, in grid order.
pub const BEHAVIOURS: [&str; 3] = ["click", "long_view", "like"];
/// Latent dimension.
const DIM: usize = 8;
/// Base logits: clicks common, likes rare.
const BIAS: [f64; 3] = [-0.4, -1.2, -2.4];
/// Correlation of a small group's vector (new users, tail items) with the large group's.
pub const BORROW: f64 = 0.6;
/// Noise (in latent standard deviations) on the observed features.
const FEATURE_NOISE: f64 = 0.5;
/// Popularity of the item of rank r ∝ 1 / (r + 1)^ZIPF.
const ZIPF: f64 = 0.9;
/// Share of the users that are new.
const NEW_USERS: f64 = 1.0 / 3.0;
/// Rows to train / select / report: 80 / 10 / 10 %.
const SPLIT: [f64; 2] = [0.8, 0.9];
/// The facet cells, mixed radix (user first): new×tail, new×head, old×tail, old×head.
pub const CELLS: [&str; 4] = ["new,tail", "new,head", "old,tail", "old,head"];

/// What `mfh prepare synthetic` generates.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticOptions {
    pub rows: u64,
    pub out: PathBuf,
    pub seed: u64,
    /// Users and items (0: rows / 40 and rows / 100, at least 100 and 50).
    pub users: usize,
    pub items: usize,
    /// Share of the rows from new users, in (0, 1).
    pub new_user_share: f64,
    /// Scale of the per-cell parts of the logits (0: no facet structure).
    pub facet_strength: f64,
    /// Scale of the part all behaviours share (0: none).
    pub sharing: f64,
}

impl SyntheticOptions {
    /// The defaults for `rows` rows into `out`.
    pub fn new(rows: u64, out: PathBuf) -> SyntheticOptions {
        SyntheticOptions {
            rows,
            out,
            seed: 1,
            users: 0,
            items: 0,
            new_user_share: 0.1,
            facet_strength: 1.0,
            sharing: 1.0,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticReport {
    pub rows: u64,
    pub users: usize,
    pub new_users: usize,
    pub items: usize,
    pub head_items: usize,
    /// Rows of train / valid / test.
    pub split_rows: [u64; 3],
    /// Rows per cell ([`CELLS`]) over all splits.
    pub cell_rows: [u64; 4],
    /// Positive labels per behaviour over all splits.
    pub positives: [u64; 3],
    /// Per cell and behaviour, the AUC of the stored true probabilities on the test
    /// split (None where a cell has no positive or no negative there).
    pub oracle_auc: [[Option<f64>; 3]; 4],
    pub config: PathBuf,
}

/// Seeded draws: uniforms and normals from SplitMix.
struct Draw(SplitMix);

impl Draw {
    fn uniform(&mut self) -> f64 {
        self.0.uniform()
    }
    fn normal(&mut self) -> f64 {
        loop {
            let u = self.uniform();
            if u > 0.0 {
                let v = self.uniform();
                return (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            }
        }
    }
    /// A latent vector whose dot product with another has variance 1.
    fn latent(&mut self) -> [f64; DIM] {
        let sd = (DIM as f64).powf(-0.25);
        std::array::from_fn(|_| self.normal() * sd)
    }
    /// `rho·like + sqrt(1 - rho²)·fresh`: a vector correlated with `like`.
    fn correlated(&mut self, like: &[f64; DIM], rho: f64) -> [f64; DIM] {
        let fresh = self.latent();
        std::array::from_fn(|j| rho * like[j] + (1.0 - rho * rho).sqrt() * fresh[j])
    }
}

fn dot(a: &[f64; DIM], b: &[f64; DIM]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One user or item: its group (0 = the small one), shared and per-behaviour vectors.
struct Entity {
    small: bool,
    a: [f64; DIM],
    b: [[f64; DIM]; 3],
}

/// Observed features of a latent vector: four buckets of 8 and one number.
fn features(d: &mut Draw, a: &[f64; DIM], line: &mut String) {
    let sd = (DIM as f64).powf(-0.25);
    for x in &a[..4] {
        let z = x / sd + FEATURE_NOISE * d.normal();
        let bucket = ((z + 2.0) * 2.0).floor().clamp(0.0, 7.0) as u32;
        line.push_str(&format!(",{bucket}"));
    }
    let z = a[4] / sd + FEATURE_NOISE * d.normal();
    line.push_str(&format!(",{z:.4}"));
}

fn check(o: &SyntheticOptions) -> Result<(), DataError> {
    let bad = |m: String| Err(DataError::config(m));
    if o.rows < 100 {
        return bad(format!("--rows {}: at least 100", o.rows));
    }
    if !(o.new_user_share > 0.0 && o.new_user_share < 1.0) {
        return bad(format!(
            "--new-user-share {}: must be in (0, 1)",
            o.new_user_share
        ));
    }
    for (name, v) in [
        ("--facet-strength", o.facet_strength),
        ("--sharing", o.sharing),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return bad(format!("{name} {v}: must be finite and at least 0"));
        }
    }
    if o.users != 0 && o.users < 4 {
        return bad(format!("--users {}: at least 4", o.users));
    }
    if o.items != 0 && o.items < 10 {
        return bad(format!("--items {}: at least 10", o.items));
    }
    Ok(())
}

/// A gzip CSV written under a temporary name, synced, then renamed into place.
struct GzFile {
    tmp: PathBuf,
    dst: PathBuf,
    w: flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>,
}

impl GzFile {
    fn create(dst: PathBuf) -> Result<GzFile, DataError> {
        let tmp = dst.with_extension("gz.tmp");
        let f = std::fs::File::create(&tmp)
            .map_err(|e| DataError::file(&tmp, "io", format!("cannot create: {e}")))?;
        Ok(GzFile {
            w: flate2::write::GzEncoder::new(
                std::io::BufWriter::new(f),
                flate2::Compression::fast(),
            ),
            tmp,
            dst,
        })
    }
    fn line(&mut self, s: &str) -> Result<(), DataError> {
        self.w
            .write_all(s.as_bytes())
            .and_then(|_| self.w.write_all(b"\n"))
            .map_err(|e| DataError::file(&self.tmp, "io", format!("cannot write: {e}")))
    }
    fn finish(self) -> Result<(), DataError> {
        let err =
            |e: std::io::Error| DataError::file(&self.tmp, "io", format!("cannot write: {e}"));
        let buf = self.w.finish().map_err(err)?;
        let f = buf.into_inner().map_err(|e| err(e.into_error()))?;
        f.sync_all().map_err(err)?;
        rename(&self.tmp, &self.dst)
    }
}

fn rename(tmp: &Path, dst: &Path) -> Result<(), DataError> {
    std::fs::rename(tmp, dst)
        .map_err(|e| DataError::file(dst, "io", format!("cannot move into place: {e}")))
}

/// Writes `text` to `dst` through a synced temporary file.
fn write_text(dst: &Path, text: &str) -> Result<(), DataError> {
    let tmp = dst.with_extension("tmp");
    let err = |e: std::io::Error| DataError::file(&tmp, "io", format!("cannot write: {e}"));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    rename(&tmp, dst)
}

/// Generates the log, the user and item tables and a config into `o.out`.
pub fn prepare(o: &SyntheticOptions) -> Result<SyntheticReport, DataError> {
    check(o)?;
    let n_users = if o.users == 0 {
        ((o.rows / 40) as usize).max(100)
    } else {
        o.users
    };
    let n_items = if o.items == 0 {
        ((o.rows / 100) as usize).max(50)
    } else {
        o.items
    };
    let n_new = ((n_users as f64 * NEW_USERS).round() as usize).clamp(1, n_users - 1);
    let n_head = (n_items / 5).max(1);
    let mut d = Draw(SplitMix(o.seed));
    // Group vectors per behaviour: large groups first, small ones correlated with them.
    let c_old: [[f64; DIM]; 3] = std::array::from_fn(|_| d.latent());
    let c_new: [[f64; DIM]; 3] = std::array::from_fn(|k| d.correlated(&c_old[k], BORROW));
    let e_head: [[f64; DIM]; 3] = std::array::from_fn(|_| d.latent());
    let e_tail: [[f64; DIM]; 3] = std::array::from_fn(|k| d.correlated(&e_head[k], BORROW));
    let entity = |small: bool, d: &mut Draw| Entity {
        small,
        a: d.latent(),
        b: std::array::from_fn(|_| d.latent()),
    };
    let users: Vec<Entity> = (0..n_users).map(|u| entity(u < n_new, &mut d)).collect();
    // Items by popularity rank; ids are a shuffle of the ranks.
    let items: Vec<Entity> = (0..n_items).map(|r| entity(r >= n_head, &mut d)).collect();
    let mut item_id: Vec<usize> = (0..n_items).collect();
    for i in (1..n_items).rev() {
        item_id.swap(i, d.0.below(i + 1));
    }
    let mut cdf: Vec<f64> = Vec::with_capacity(n_items);
    let mut acc = 0.0;
    for r in 0..n_items {
        acc += 1.0 / ((r + 1) as f64).powf(ZIPF);
        cdf.push(acc);
    }

    std::fs::create_dir_all(&o.out).map_err(|e| {
        DataError::file(
            &o.out,
            "io",
            format!("cannot create the output folder: {e}"),
        )
    })?;
    let mut f = GzFile::create(o.out.join("users.csv.gz"))?;
    f.line("user_id,user_group,u_f0,u_f1,u_f2,u_f3,u_x")?;
    for (u, e) in users.iter().enumerate() {
        let mut line = format!("u{u},{}", if e.small { "new" } else { "old" });
        features(&mut d, &e.a, &mut line);
        f.line(&line)?;
    }
    f.finish()?;
    let mut f = GzFile::create(o.out.join("items.csv.gz"))?;
    f.line("item_id,item_group,i_f0,i_f1,i_f2,i_f3,i_x")?;
    for (r, e) in items.iter().enumerate() {
        let mut line = format!("i{},{}", item_id[r], if e.small { "tail" } else { "head" });
        features(&mut d, &e.a, &mut line);
        f.line(&line)?;
    }
    f.finish()?;

    let mut f = GzFile::create(o.out.join("log.csv.gz"))?;
    f.line("user_id,item_id,part,click,long_view,like,p_click,p_long_view,p_like")?;
    let (mut split_rows, mut cell_rows, mut positives) = ([0u64; 3], [0u64; 4], [0u64; 3]);
    // The test split's stored probabilities and labels, per cell and behaviour.
    let mut oracle: Vec<[(Vec<f32>, Vec<f32>); 3]> = (0..4)
        .map(|_| std::array::from_fn(|_| Default::default()))
        .collect();
    let mut line = String::new();
    for _ in 0..o.rows {
        let u = if d.uniform() < o.new_user_share {
            d.0.below(n_new)
        } else {
            n_new + d.0.below(n_users - n_new)
        };
        let x = d.uniform() * acc;
        let r = cdf.partition_point(|&c| c < x).min(n_items - 1);
        let (ue, ie) = (&users[u], &items[r]);
        let part = match d.uniform() {
            p if p < SPLIT[0] => 0,
            p if p < SPLIT[1] => 1,
            _ => 2,
        };
        let cell = if ue.small { 0 } else { 2 } + if ie.small { 0 } else { 1 };
        split_rows[part] += 1;
        cell_rows[cell] += 1;
        line.clear();
        line.push_str(&format!("u{u},i{},{part}", item_id[r]));
        let mut probs = [0.0f64; 3];
        for k in 0..3 {
            let c = if ue.small { &c_new[k] } else { &c_old[k] };
            let e = if ie.small { &e_tail[k] } else { &e_head[k] };
            let logit = BIAS[k]
                + o.sharing * dot(&ue.a, &ie.a)
                + dot(&ue.b[k], &ie.b[k])
                + o.facet_strength * (dot(c, &ie.a) + dot(&ue.a, e));
            probs[k] = 1.0 / (1.0 + (-logit).exp());
        }
        let labels: [bool; 3] = std::array::from_fn(|k| d.uniform() < probs[k]);
        for (k, &y) in labels.iter().enumerate() {
            line.push_str(if y { ",1" } else { ",0" });
            positives[k] += y as u64;
        }
        let stored: [String; 3] = std::array::from_fn(|k| format!("{:.6}", probs[k]));
        for s in &stored {
            line.push(',');
            line.push_str(s);
        }
        f.line(&line)?;
        if part == 2 {
            for k in 0..3 {
                // The value a reader of the file gets.
                let p: f32 = stored[k].parse().unwrap_or(f32::NAN);
                oracle[cell][k].0.push(p);
                oracle[cell][k].1.push(labels[k] as u8 as f32);
            }
        }
    }
    f.finish()?;
    let oracle_auc: [[Option<f64>; 3]; 4] = std::array::from_fn(|c| {
        std::array::from_fn(|k| mfh_metrics::auc(&oracle[c][k].0, &oracle[c][k].1))
    });
    let report = SyntheticReport {
        rows: o.rows,
        users: n_users,
        new_users: n_new,
        items: n_items,
        head_items: n_head,
        split_rows,
        cell_rows,
        positives,
        oracle_auc,
        config: o.out.join("synthetic.toml"),
    };
    write_text(&o.out.join("synthetic.json"), &describe(o, &report))?;
    write_text(&report.config, CONFIG)?;
    Ok(report)
}

/// The knobs and counts, as JSON.
fn describe(o: &SyntheticOptions, r: &SyntheticReport) -> String {
    let oracle: serde_json::Map<String, serde_json::Value> = CELLS
        .iter()
        .zip(&r.oracle_auc)
        .map(|(c, aucs)| {
            let per: serde_json::Map<String, serde_json::Value> = BEHAVIOURS
                .iter()
                .zip(aucs)
                .map(|(b, a)| (b.to_string(), serde_json::json!(a)))
                .collect();
            (format!("user={},item={}", &c[..3], &c[4..]), per.into())
        })
        .collect();
    let v = serde_json::json!({
        "generator": "mfh prepare synthetic",
        "seed": o.seed,
        "rows": o.rows,
        "users": r.users,
        "new_users": r.new_users,
        "items": r.items,
        "head_items": r.head_items,
        "new_user_share": o.new_user_share,
        "facet_strength": o.facet_strength,
        "sharing": o.sharing,
        "borrow": BORROW,
        "split_rows": {"train": r.split_rows[0], "valid": r.split_rows[1], "test": r.split_rows[2]},
        "cell_rows": CELLS.iter().zip(r.cell_rows).map(|(c, n)| (c.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
        "positives": BEHAVIOURS.iter().zip(r.positives).map(|(b, n)| (b.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
        "oracle_auc_test": oracle,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// The config written beside the generated data.
pub const CONFIG: &str = include_str!("synthetic.toml");
