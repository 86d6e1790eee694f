//! Dynamic batching (`--batch-delay-us`, `--max-batch-rows`): requests for the same model
//! version that arrive within the delay are scored in one forward pass, up to the row cap.
//!
//! The first request of a group opens it; requests arriving while the group is open join
//! it. One waiting thread per server (not a lane: the lanes stay free to parse the
//! requests that will join) closes the group when its first request has waited the delay,
//! when it holds the row cap, or when it holds its lane's share of the admitted requests
//! (all of them with one lane: none can join; with L lanes, 1/L of them, so that every
//! lane has a group to score rather than one lane scoring everything while others idle);
//! the group then takes a lane, which decodes every request's rows after the previous
//! one's, scores them together and hands each request its own rows' scores (or its own
//! decoding error); each request's answer is then written on that lane. No request
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

/// The groups waiting to close, shared by the server and its waiting thread.
struct Waiting {
    queue: Mutex<(std::collections::VecDeque<Arc<Group>>, bool)>,
    wake: Condvar,
}

pub struct Batcher {
    max_rows: usize,
    open: Mutex<Option<Arc<Group>>>,
    waiting: Arc<Waiting>,
    /// Groups scored and requests in them, for /metrics.
    pub stats: Arc<crate::metrics::Metrics>,
}

impl Batcher {
    /// Must be called on the server's runtime (closed groups are handed to the lanes
    /// through it); starts the waiting thread, which ends when the batcher is dropped.
    pub fn new(
        delay: Duration,
        max_rows: usize,
        lanes: Arc<Lanes>,
        stats: Arc<crate::metrics::Metrics>,
    ) -> std::io::Result<Batcher> {
        let waiting = Arc::new(Waiting {
            queue: Mutex::new((Default::default(), false)),
            wake: Condvar::new(),
        });
        let closer = Closer {
            delay,
            max_rows: max_rows.max(1),
            waiting: Arc::clone(&waiting),
            lanes,
            rt: tokio::runtime::Handle::current(),
            stats: Arc::clone(&stats),
        };
        std::thread::Builder::new()
            .name("mfh-batcher".into())
            .spawn(move || closer.run())?;
        Ok(Batcher {
            max_rows: max_rows.max(1),
            open: Mutex::new(None),
            waiting,
            stats,
        })
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
        let mut q = self.waiting.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.0.push_back(g);
        drop(q);
        self.waiting.wake.notify_one();
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.waiting
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = true;
        self.waiting.wake.notify_one();
    }
}

/// The waiting thread: closes groups in the order they opened and hands them to lanes.
struct Closer {
    delay: Duration,
    max_rows: usize,
    waiting: Arc<Waiting>,
    lanes: Arc<Lanes>,
    rt: tokio::runtime::Handle,
    stats: Arc<crate::metrics::Metrics>,
}

impl Closer {
    fn run(self) {
        let me = Arc::new(self);
        loop {
            let g = {
                let mut q = me.waiting.queue.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if let Some(g) = q.0.pop_front() {
                        break g;
                    }
                    if q.1 {
                        return;
                    }
                    q = me.waiting.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let items = me.close(&g);
            let (me2, lanes) = (Arc::clone(&me), Arc::clone(&me.lanes));
            me.rt.spawn(async move {
                lanes
                    .run(move |lane| me2.score(&g.model, items, lane))
                    .await;
            });
        }
    }

    /// Waits out the delay (or a full group, or every admitted request in it), then
    /// closes the group and takes its requests.
    fn close(&self, g: &Group) -> Vec<Item> {
        let mut st = g.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let waited = g.opened.elapsed();
            // The group holds its lane's share of the admitted requests (all of them
            // with one lane): waiting for more would leave another lane idle.
            let in_flight = self
                .stats
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed);
            let share = in_flight.div_ceil(self.lanes.count() as u64).max(1);
            if st.rows >= self.max_rows || waited >= self.delay || st.items.len() as u64 >= share {
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
    }

    /// On a lane: scores the group's requests in one pass and answers each.
    fn score(&self, model: &ServedModel, items: Vec<Item>, lane: usize) {
        self.stats.batch(items.len());
        let views: Vec<_> = items.iter().map(|i| i.parsed.views()).collect();
        let rows: Vec<Vec<_>> = views.iter().map(|v| v.rows()).collect();
        let requests: Vec<(&[_], &[_])> = views
            .iter()
            .zip(&rows)
            .map(|(v, r)| (&v.context[..], &r[..]))
            .collect();
        let scores = model.score_many(lane, &requests);
        drop(requests);
        drop(rows);
        drop(views);
        for (item, s) in items.into_iter().zip(scores) {
            (item.done)(model, &item.parsed, s);
        }
    }
}
