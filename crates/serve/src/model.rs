//! The served model and its versions. A model folder is loaded with `mfh_train`'s loader
//! and scored through the same request decoder and forward pass as `mfh predict`.
//!
//! `--model-dir` is either one model folder (version 1, never reloaded) or, TF-Serving
//! style, a root of numbered version folders (`1/`, `2/`…): a version is published once
//! its `DONE` file exists, and the server swaps atomically to the highest published one;
//! one that fails to load is tried again after 1 s, 2 s, 4 s… (at most 60 s).
//! A request holds the version it started on until it ends.

use anyhow::{bail, Context, Result};
use mfh_artifact::{load_model, ModelState};
use mfh_data::{Input, RequestDecoder, RequestError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One loaded version.
pub struct ServedModel {
    pub version: u64,
    pub dir: PathBuf,
    /// The model section name of the config it was trained with.
    pub model_name: String,
    pub behaviours: Vec<String>,
    pub cell_names: Vec<String>,
    pub decoder: RequestDecoder,
    state: Mutex<ModelState>,
}

/// Scores of a request: rows × behaviours, each from its row's own cell's heads.
pub struct Scores {
    pub n: usize,
    pub preds: Vec<f32>,
    pub cells: Vec<u32>,
}

impl ServedModel {
    pub fn load(dir: &Path, version: u64) -> Result<ServedModel> {
        let m = load_model(dir)?;
        let p = Arc::new(m.serving_pipeline()?);
        let threads = m.config.train.threads.resolve();
        mfh_nn::use_threads(threads);
        let grid = m.state.grid.clone();
        Ok(ServedModel {
            version,
            dir: dir.to_path_buf(),
            model_name: m.meta.model_name.clone(),
            behaviours: grid.behaviours.clone(),
            cell_names: grid.cell_names(),
            decoder: RequestDecoder::new(p),
            state: Mutex::new(m.state),
        })
    }

    /// Decodes and scores `rows`, each with the `context` fields (which its own override).
    pub fn score<V: AsRef<[u8]>, R: AsRef<[(Input, V)]>>(
        &self,
        context: &[(Input, V)],
        rows: &[R],
    ) -> Result<Scores, RequestError> {
        let mut batch = self.decoder.batch();
        self.decoder.decode(context, rows, &mut batch)?;
        let nb = self.behaviours.len();
        if batch.n == 0 {
            return Ok(Scores {
                n: 0,
                preds: Vec::new(),
                cells: Vec::new(),
            });
        }
        let mut preds = Vec::with_capacity(batch.n * nb);
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let st = &mut *st;
            let logits = st.forward(&mut batch).to_vec();
            st.loss.predict(&logits, &batch.cells, &mut preds);
        }
        Ok(Scores {
            n: batch.n,
            preds,
            cells: batch.cells,
        })
    }
}

impl ServedModel {
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
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut t: Vec<f64> = (0..reps.max(1))
            .map(|_| {
                let t0 = std::time::Instant::now();
                let _ = st.forward(&mut batch);
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
        let source = ModelSource::detect(dir)?;
        let Some((v, path)) = source.latest()? else {
            bail!(
                "{}: no model.json and no published version folder (a number, with a DONE file)",
                dir.display()
            );
        };
        let m = ServedModel::load(&path, v)
            .with_context(|| format!("loading version {v} from {}", path.display()))?;
        Ok(ModelStore {
            source,
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
        match ServedModel::load(&path, v) {
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
