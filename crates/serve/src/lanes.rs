//! Scoring lanes: `--scorers` lanes, each a rayon pool of `--threads` threads that runs
//! one request at a time — parsing its body, decoding, the forward pass and writing the
//! response — with the scorer of the same index in the version the request holds. The
//! async workers only move bytes, so health, metadata and metrics stay answered while
//! every lane is busy.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};

/// Scorer threads run at a lower priority (nice +5) than the threads that move bytes:
/// when scoring fills every core, health checks, metadata and admission answers still get
/// the CPU at once.
fn yield_to_io() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain integers and change only this thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5);
    }
}

pub struct Lanes {
    pools: Vec<rayon::ThreadPool>,
    free: Mutex<Vec<usize>>,
    permits: Arc<Semaphore>,
    threads: usize,
}

impl Lanes {
    pub fn new(lanes: usize, threads: usize) -> anyhow::Result<Lanes> {
        let lanes = lanes.max(1);
        let threads = threads.max(1);
        let pools = (0..lanes)
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(move |t| format!("mfh-scorer-{i}.{t}"))
                    .start_handler(|_| yield_to_io())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lanes {
            pools,
            free: Mutex::new((0..lanes).rev().collect()),
            permits: Arc::new(Semaphore::new(lanes)),
            threads,
        })
    }

    /// How many lanes there are.
    pub fn count(&self) -> usize {
        self.pools.len()
    }

    /// Runs `job(lane)` on the next free lane, waiting for one. The lane stays taken
    /// until `job` ends, even when the caller stops waiting (a request past its
    /// timeout): the lanes bound the work in progress. None when `job` panicked.
    pub async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(usize) -> R + Send + 'static,
    ) -> Option<R> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        let lane = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        let (tx, rx) = oneshot::channel();
        let me = Arc::clone(self);
        let threads = self.threads;
        self.pools[lane].spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(|| {
                mfh_nn::kernels::with_threads(threads, || job(lane))
            }));
            me.free.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
            drop(permit);
            let _ = tx.send(r.ok());
        });
        rx.await.ok().flatten()
    }
}
