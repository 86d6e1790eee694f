//! Dynamic batching (`--batch-delay-us`, `--max-batch-rows`): requests for the same model
//! version that arrive within the delay are scored in one forward pass, up to the row cap.
//!
//! The first request of a group opens it; requests arriving while the group is open join
//! it. The request that fills the group closes it — it holds the row cap, or its lane's
//! share of the admitted requests (all of them with one lane: none can join; with L
//! lanes, 1/L of them, so that every lane has a group to score rather than one lane
//! scoring everything while others idle) — and so does a request that cannot join it.
//! One waiting thread per server (not a lane: the lanes stay free to score) closes the
//! group when its first request has waited the delay, or when the admitted requests have
//! fallen to its share. The closed group then takes a lane, which decodes every request's
//! rows after the previous one's, scores them together and hands each request its own
//! rows' scores (or its own decoding error); each request's answer is then written on
//! that lane. A small request is parsed where it was read (see [`PARSE_HERE_BYTES`]), a
//! larger one on a lane before it joins. No request
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

/// A request body of at most this many bytes is parsed on the async worker that read it
/// (tens of microseconds at most) rather than on a lane: handing it to a lane and back
/// would cost more than the parse, and batching is for small requests.
pub const PARSE_HERE_BYTES: usize = 16 << 10;

/// What a request does with its scores (builds and sends its answer), on the lane.
pub type Done = Box<dyn FnOnce(&ServedModel, &Parsed, Result<Scores, RequestError>) + Send>;

struct Item {
    parsed: Parsed,
    done: Done,
}

/// The group accepting requests.
struct Group {
    model: Arc<ServedModel>,
    opened: Instant,
    items: Vec<Item>,
    rows: usize,
}

/// The open group (at most one), and whether the batcher is gone.
struct Open {
    group: Option<Group>,
    stop: bool,
}

struct Shared {
    delay: Duration,
    max_rows: usize,
    open: Mutex<Open>,
    /// Wakes the waiting thread when a group opens (or the batcher is dropped).
    wake: Condvar,
    lanes: Arc<Lanes>,
    rt: tokio::runtime::Handle,
    stats: Arc<crate::metrics::Metrics>,
}

pub struct Batcher {
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            delay,
            max_rows: max_rows.max(1),
            open: Mutex::new(Open {
                group: None,
                stop: false,
            }),
            wake: Condvar::new(),
            lanes,
            rt: tokio::runtime::Handle::current(),
            stats: Arc::clone(&stats),
        });
        let waiter = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("mfh-batcher".into())
            .spawn(move || waiter.wait_out())?;
        Ok(Batcher { shared, stats })
    }

    /// Adds a parsed request; `done` runs on a lane with its scores. The group is closed
    /// here when this request fills it (the row cap, or its lane's share of the admitted
    /// requests), and a group this request cannot join (another model version, or too
    /// many rows) is closed here too: the waiting thread is only for the delay.
    pub fn submit(&self, model: Arc<ServedModel>, parsed: Parsed, done: Done) {
        let s = &self.shared;
        let n = parsed.n_rows();
        let item = Item { parsed, done };
        let mut ready = Vec::new();
        let mut open = s.open.lock().unwrap_or_else(|e| e.into_inner());
        let joins = open
            .group
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(&g.model, &model) && g.rows + n <= s.max_rows);
        if joins {
            let g = open.group.as_mut().expect("the group joined is open");
            g.rows += n;
            g.items.push(item);
        } else {
            ready.extend(open.group.take());
            open.group = Some(Group {
                model,
                opened: Instant::now(),
                items: vec![item],
                rows: n,
            });
            s.wake.notify_one();
        }
        if open.group.as_ref().is_some_and(|g| s.full(g)) {
            ready.extend(open.group.take());
        }
        drop(open);
        for g in ready {
            s.dispatch(g);
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        open.stop = true;
        // A group still open is scored: its requests are waiting for answers.
        if let Some(g) = open.group.take() {
            drop(open);
            self.shared.dispatch(g);
        } else {
            drop(open);
        }
        self.shared.wake.notify_one();
    }
}

impl Shared {
    /// Whether `g` must close now without waiting out the delay: it holds the row cap,
    /// or its lane's share of the admitted requests (all of them with one lane: waiting
    /// for more would leave another lane idle).
    fn full(&self, g: &Group) -> bool {
        let in_flight = self
            .stats
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        let share = in_flight.div_ceil(self.lanes.count() as u64).max(1);
        g.rows >= self.max_rows || g.items.len() as u64 >= share
    }

    /// The waiting thread: closes the open group when its first request has waited the
    /// delay, or when the admitted requests have fallen to its share (a request
    /// finishing elsewhere does not wake this thread, so that is looked at every 50 µs).
    fn wait_out(self: Arc<Self>) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if open.stop {
                return;
            }
            let Some(g) = open.group.as_ref() else {
                open = self.wake.wait(open).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let waited = g.opened.elapsed();
            if waited >= self.delay || self.full(g) {
                let g = open.group.take().expect("the group timed is open");
                drop(open);
                self.dispatch(g);
                open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let slice = (self.delay - waited).min(Duration::from_micros(50));
            open = self
                .wake
                .wait_timeout(open, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Hands a closed group to the next free lane.
    fn dispatch(self: &Arc<Self>, g: Group) {
        let me = Arc::clone(self);
        let lanes = Arc::clone(&self.lanes);
        self.rt.spawn(async move {
            lanes
                .run(move |lane| me.score(&g.model, g.items, lane))
                .await;
        });
    }

    /// On a lane: scores the group's requests in one pass and answers each.
    fn score(&self, model: &ServedModel, items: Vec<Item>, lane: usize) {
        self.stats.batch(items.len());
        let scores = crate::protocol::with_requests(items.iter().map(|i| &i.parsed), |r| {
            model.score_many(lane, r)
        });
        for (item, s) in items.into_iter().zip(scores) {
            (item.done)(model, &item.parsed, s);
        }
    }
}
