//! The served model and its versions. A model folder is loaded with `mfh_train`'s loader
//! and scored through the same request decoder and forward pass as `mfh predict`.
//!
//! `--model-dir` is either one model folder (version 1, never reloaded) or, TF-Serving
//! style, a root of numbered version folders (`1/`, `2/`…): a version is published once
//! its `DONE` file exists, and the server swaps atomically to the highest published one;
//! one that fails to load is tried again after 1 s, 2 s, 4 s… (at most 60 s).
//! A request holds the version it started on until it ends.

use anyhow::{bail, Context, Result};
use mfh_artifact::{load_model, ModelState, Scorer};
use mfh_data::{Input, RequestDecoder, RequestError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Rows per forward pass: a scorer's activations are those of this many rows at most,
/// however many rows a request has.
pub const CHUNK_ROWS: usize = 1024;

/// One loaded version: the model, read by every scorer, and one scorer per lane.
pub struct ServedModel {
    pub version: u64,
    pub dir: PathBuf,
    /// The model section name of the config it was trained with.
    pub model_name: String,
    pub behaviours: Vec<String>,
    pub cell_names: Vec<String>,
    pub decoder: RequestDecoder,
    state: ModelState,
    /// Lane `i` scores with `scorers[i]` (the lock is never contended: a lane runs one
    /// request at a time).
    scorers: Vec<Mutex<Scorer>>,
}

/// One request's rows for [`ServedModel::score_many`]: the context fields and each row's.
pub type Request<'a, V, R> = (&'a [(Input, V)], &'a [R]);

/// Scores of a request: rows × behaviours, each from its row's own cell's heads.
pub struct Scores {
    pub n: usize,
    pub preds: Vec<f32>,
    pub cells: Vec<u32>,
}

impl ServedModel {
    /// Loads a version with one scorer.
    pub fn load(dir: &Path, version: u64) -> Result<ServedModel> {
        ServedModel::load_with(dir, version, 1)
    }

    /// Loads a version with `lanes` scorers.
    pub fn load_with(dir: &Path, version: u64, lanes: usize) -> Result<ServedModel> {
        let mut m = load_model(dir)?;
        let p = Arc::new(m.serving_pipeline()?);
        let grid = m.state.grid.clone();
        let mut scorers = Vec::with_capacity(lanes.max(1));
        for _ in 0..lanes.max(1) {
            scorers.push(m.state.scorer()?);
        }
        // Each scorer scores a full chunk once: its activations are allocated at load,
        // part of the resident baseline, not of what a request adds.
        let layout = p.layout();
        let n = CHUNK_ROWS;
        let mut batch = RequestDecoder::new(Arc::clone(&p)).batch();
        batch.n = n;
        batch.single = vec![0; n * layout.single.len()];
        for mc in &mut batch.multi {
            mc.offsets = vec![0; n + 1];
        }
        batch.dense = vec![0.0; n * layout.dense.len()];
        batch.cells = vec![0; n];
        for sc in &mut scorers {
            let _ = m.state.score(sc, &mut batch, CHUNK_ROWS);
        }
        Ok(ServedModel {
            version,
            dir: dir.to_path_buf(),
            model_name: m.meta.model_name.clone(),
            behaviours: grid.behaviours.clone(),
            cell_names: grid.cell_names(),
            decoder: RequestDecoder::new(p),
            state: m.state,
            scorers: scorers.into_iter().map(Mutex::new).collect(),
        })
    }

    /// Switches factoring the rows' shared columns out of the first layers on or off
    /// (on by default; benchmarks compare the two).
    pub fn set_factored(&self, on: bool) {
        for s in &self.scorers {
            s.lock().unwrap_or_else(|e| e.into_inner()).factored = on;
        }
    }

    /// Switches running each tower on its own cell's rows only on or off (on by default;
    /// benchmarks compare the two).
    pub fn set_cell_towers(&self, on: bool) {
        for s in &self.scorers {
            s.lock().unwrap_or_else(|e| e.into_inner()).cell_towers = on;
        }
    }

    pub fn lanes(&self) -> usize {
        self.scorers.len()
    }

    /// Width of the network input (embeddings and numeric features), floats per row.
    pub fn input_width(&self) -> usize {
        self.state.n_in()
    }

    /// Decodes and scores `rows`, each with the `context` fields (which its own
    /// override), on scorer `lane` (taken modulo the lanes).
    pub fn score<V: AsRef<[u8]>, R: AsRef<[(Input, V)]>>(
        &self,
        lane: usize,
        context: &[(Input, V)],
        rows: &[R],
    ) -> Result<Scores, RequestError> {
        let mut one = self.score_many(lane, &[(context, rows)]);
        one.remove(0)
    }

    /// Decodes and scores several requests in one forward pass on scorer `lane` (dynamic
    /// batching): each request's rows are decoded after the previous one's, and each gets
    /// exactly its own rows' scores back, or its own decoding error.
    pub fn score_many<V: AsRef<[u8]>, R: AsRef<[(Input, V)]>>(
        &self,
        lane: usize,
        requests: &[Request<'_, V, R>],
    ) -> Vec<Result<Scores, RequestError>> {
        let mut batch = self.decoder.batch();
        let mut spans: Vec<Result<(usize, usize), RequestError>> = Vec::new();
        for (context, rows) in requests {
            let start = batch.n;
            match self.decoder.decode(context, rows, &mut batch) {
                Ok(()) => spans.push(Ok((start, batch.n))),
                Err(e) => {
                    batch.truncate_rows(start);
                    spans.push(Err(e));
                }
            }
        }
        let nb = self.behaviours.len();
        let nt = nb * self.cell_names.len();
        let mut sc = self.scorers[lane % self.scorers.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Each request's first row: its user's side is multiplied once.
        let starts: Vec<usize> = spans
            .iter()
            .filter_map(|s| s.as_ref().ok())
            .filter(|(a, b)| b > a)
            .map(|&(a, _)| a)
            .collect();
        let logits: &[f32] = if batch.n > 0 {
            self.state
                .score_requests(&mut sc, &mut batch, CHUNK_ROWS, &starts)
        } else {
            &[]
        };
        spans
            .into_iter()
            .map(|span| {
                let (a, b) = span?;
                let cells = batch.cells[a..b].to_vec();
                let mut preds = Vec::with_capacity((b - a) * nb);
                if b > a {
                    self.state
                        .loss
                        .predict(&logits[a * nt..b * nt], &cells, &mut preds);
                }
                Ok(Scores {
                    n: b - a,
                    preds,
                    cells,
                })
            })
            .collect()
    }

    /// Median milliseconds of the forward pass alone (no decoding) over `reps` runs on
    /// the decoded `rows`: the compute a request's latency is compared with.
    pub fn time_forward<V: AsRef<[u8]>, R: AsRef<[(Input, V)]>>(
        &self,
        context: &[(Input, V)],
        rows: &[R],
        reps: usize,
    ) -> f64 {
        let mut batch = self.decoder.batch();
        if self.decoder.decode(context, rows, &mut batch).is_err() || batch.n == 0 {
            return f64::NAN;
        }
        let mut sc = self.scorers[0].lock().unwrap_or_else(|e| e.into_inner());
        let mut t: Vec<f64> = (0..reps.max(1))
            .map(|_| {
                let t0 = std::time::Instant::now();
                let _ = self.state.score(&mut sc, &mut batch, CHUNK_ROWS);
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }
}

/// Where versions come from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// One model folder.
    Folder(PathBuf),
    /// A root of numbered version folders with `DONE` markers.
    Versions(PathBuf),
}

impl ModelSource {
    pub fn detect(dir: &Path) -> Result<ModelSource> {
        if dir.join("model.json").is_file() {
            return Ok(ModelSource::Folder(dir.to_path_buf()));
        }
        if !dir.is_dir() {
            bail!(
                "{}: not a folder (expected a model folder or a root of numbered versions)",
                dir.display()
            );
        }
        Ok(ModelSource::Versions(dir.to_path_buf()))
    }

    /// The highest published version, if any.
    pub fn latest(&self) -> Result<Option<(u64, PathBuf)>> {
        match self {
            ModelSource::Folder(d) => Ok(Some((1, d.clone()))),
            ModelSource::Versions(root) => {
                let rd = std::fs::read_dir(root)
                    .with_context(|| format!("{}: cannot list", root.display()))?;
                let best = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let v: u64 = e.file_name().to_str()?.parse().ok()?;
                        let p = e.path();
                        p.join("DONE").is_file().then_some((v, p))
                    })
                    .max_by_key(|(v, _)| *v);
                Ok(best)
            }
        }
    }
}

/// The current version, swapped atomically on reload.
pub struct ModelStore {
    pub source: ModelSource,
    /// Scorers each version is loaded with.
    lanes: usize,
    current: RwLock<Arc<ServedModel>>,
    /// The newest version that failed to load, retried with backoff.
    failed: Mutex<Option<Failure>>,
}

/// A published version that failed to load: how often, and when to try again.
#[derive(Debug, Clone, Copy)]
struct Failure {
    version: u64,
    attempts: u32,
    retry_at: Instant,
}

/// The wait after the `attempts`-th failed load of a version: 1 s, doubling, at most 60 s
/// (a version whose files were still being copied when `DONE` appeared loads later).
pub fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

impl ModelStore {
    pub fn open(dir: &Path) -> Result<ModelStore> {
        ModelStore::open_with(dir, 1)
    }

    /// Opens `dir` with `lanes` scorers per version.
    pub fn open_with(dir: &Path, lanes: usize) -> Result<ModelStore> {
        let source = ModelSource::detect(dir)?;
        let Some((v, path)) = source.latest()? else {
            bail!(
                "{}: no model.json and no published version folder (a number, with a DONE file)",
                dir.display()
            );
        };
        let m = ServedModel::load_with(&path, v, lanes)
            .with_context(|| format!("loading version {v} from {}", path.display()))?;
        Ok(ModelStore {
            source,
            lanes,
            current: RwLock::new(Arc::new(m)),
            failed: Mutex::new(None),
        })
    }

    pub fn current(&self) -> Arc<ServedModel> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads and swaps in a newer published version; returns it when it swapped. A
    /// version that failed to load is tried again after [`retry_delay`].
    pub fn reload(&self) -> Result<Option<u64>> {
        self.reload_at(Instant::now())
    }

    /// [`Self::reload`] at time `now`.
    pub fn reload_at(&self, now: Instant) -> Result<Option<u64>> {
        let Some((v, path)) = self.source.latest()? else {
            return Ok(None);
        };
        let failed = *self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = failed.is_some_and(|f| f.version == v && now < f.retry_at);
        if v <= self.current().version || waiting {
            return Ok(None);
        }
        match ServedModel::load_with(&path, v, self.lanes) {
            Ok(m) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(Some(v))
            }
            Err(e) => {
                let attempts = match failed {
                    Some(f) if f.version == v => f.attempts + 1,
                    _ => 1,
                };
                let wait = retry_delay(attempts);
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Failure {
                    version: v,
                    attempts,
                    retry_at: now + wait,
                });
                Err(e.context(format!(
                    "version {v} ({}) failed to load (attempt {attempts}; next in {} s)",
                    path.display(),
                    wait.as_secs()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retry_delay;
    use std::time::Duration;

    #[test]
    fn retries_back_off_to_a_minute() {
        let s: Vec<u64> = (1..=9).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(60));
    }
}
