//! Dynamic batching (`--batch-delay-us`, `--max-batch-rows`): requests for the same model
//! version that arrive within the delay are scored in one forward pass, up to the row cap.
//!
//! The first request of a group starts it and asks for a lane; requests arriving while the
//! group is open join it. The lane waits until the first request has waited the delay, the
//! group holds the row cap, or every admitted request is in the group (none can join),
//! then closes the group, decodes every request's rows after the
//! previous one's, scores them together and hands each request its own rows' scores (or
//! its own decoding error); each request's answer is then written on that lane. No request
//! waits for others longer than the delay: a request joining late waits less, and a group
//! that is full is scored at once. A request of more rows than the cap is scored alone.

use crate::lanes::Lanes;
use crate::model::{Scores, ServedModel};
use crate::protocol::Parsed;
use mfh_data::RequestError;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A request whose decoded form is larger than this keeps its body slot while it waits in
/// a group (so the body slots bound it); smaller ones let it go (their count is bounded
/// by the admitted requests).
pub const HOLD_SLOT_BYTES: usize = 1 << 20;

/// What a request does with its scores (builds and sends its answer), on the lane.
pub type Done = Box<dyn FnOnce(&ServedModel, &Parsed, Result<Scores, RequestError>) + Send>;

struct Item {
    parsed: Parsed,
    done: Done,
}

struct State {
    items: Vec<Item>,
    rows: usize,
    closed: bool,
}

struct Group {
    model: Arc<ServedModel>,
    opened: Instant,
    state: Mutex<State>,
    full: Condvar,
}

pub struct Batcher {
    delay: Duration,
    max_rows: usize,
    open: Mutex<Option<Arc<Group>>>,
    lanes: Arc<Lanes>,
    /// The server's runtime: requests are submitted from lanes, outside it.
    rt: tokio::runtime::Handle,
    /// Groups scored and requests in them, for /metrics.
    pub stats: Arc<crate::metrics::Metrics>,
}

impl Batcher {
    /// Must be called on the server's runtime.
    pub fn new(
        delay: Duration,
        max_rows: usize,
        lanes: Arc<Lanes>,
        stats: Arc<crate::metrics::Metrics>,
    ) -> Batcher {
        Batcher {
            delay,
            max_rows: max_rows.max(1),
            open: Mutex::new(None),
            lanes,
            rt: tokio::runtime::Handle::current(),
            stats,
        }
    }

    /// Adds a parsed request; `done` runs on a lane with its scores.
    pub fn submit(self: &Arc<Self>, model: Arc<ServedModel>, parsed: Parsed, done: Done) {
        let n = parsed.n_rows();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = open.as_ref() {
            if Arc::ptr_eq(&g.model, &model) {
                let mut st = g.state.lock().unwrap_or_else(|e| e.into_inner());
                if !st.closed && st.rows + n <= self.max_rows {
                    st.rows += n;
                    st.items.push(Item { parsed, done });
                    g.full.notify_all();
                    return;
                }
            }
        }
        let g = Arc::new(Group {
            model,
            opened: Instant::now(),
            state: Mutex::new(State {
                rows: n,
                items: vec![Item { parsed, done }],
                closed: false,
            }),
            full: Condvar::new(),
        });
        *open = Some(Arc::clone(&g));
        drop(open);
        let me = Arc::clone(self);
        let lanes = Arc::clone(&self.lanes);
        self.rt.spawn(async move {
            lanes.run(move |lane| me.run_group(&g, lane)).await;
        });
    }

    /// On a lane: waits out the delay (or a full group), then scores the group.
    fn run_group(&self, g: &Group, lane: usize) {
        let items = {
            let mut st = g.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let waited = g.opened.elapsed();
                // Every admitted request is in the group: none can join it.
                let all_in = st.items.len() as u64
                    >= self
                        .stats
                        .in_flight
                        .load(std::sync::atomic::Ordering::Relaxed);
                if st.rows >= self.max_rows || waited >= self.delay || all_in {
                    break;
                }
                // Joins wake the wait; a request finishing elsewhere does not, so the
                // condition is looked at again every 50 µs.
                let slice = (self.delay - waited).min(Duration::from_micros(50));
                st = g
                    .full
                    .wait_timeout(st, slice)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            st.closed = true;
            std::mem::take(&mut st.items)
        };
        self.stats.batch(items.len());
        let views: Vec<_> = items.iter().map(|i| i.parsed.views()).collect();
        let rows: Vec<Vec<_>> = views.iter().map(|v| v.rows()).collect();
        let requests: Vec<(&[_], &[_])> = views
            .iter()
            .zip(&rows)
            .map(|(v, r)| (&v.context[..], &r[..]))
            .collect();
        let scores = g.model.score_many(lane, &requests);
        drop(requests);
        drop(rows);
        drop(views);
        for (item, s) in items.into_iter().zip(scores) {
            (item.done)(&g.model, &item.parsed, s);
        }
    }
}
