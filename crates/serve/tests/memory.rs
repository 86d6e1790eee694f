//! The stated memory bound (docs/serving.md, "Memory"; `mfh_memory_bound_bytes`): 64
//! concurrent requests of 16 MiB — rows of long values that score, a column of four
//! million values over `--max-rows`, a body cut short at its end, one over the body limit
//! — are each answered 200, 400, 413 or 503, and the server's peak resident memory grows
//! by less than the bound over what the loaded model holds. A test binary of its own: the
//! peak is the process's.

mod common;

use common::storm::{self, ask, status_kib};
use common::{model, options, start};
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// `:regress` with `n` examples whose `hour` (hashed text) pads each row to `row_bytes`.
fn regress(n: usize, row_bytes: usize) -> Vec<u8> {
    let pad = "h".repeat(row_bytes.saturating_sub(48));
    let mut s = String::from(r#"{"context": {"uid": "u1"}, "examples": ["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"item": "i{}", "price": 1, "hour": "{pad}{i}"}}"#,
            i % 9
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

#[test]
fn sixty_four_concurrent_16_mib_requests_stay_under_the_stated_bound() {
    let srv = start(mfh_serve::ServeOptions {
        timeout: Duration::from_secs(600),
        body_timeout: Duration::from_secs(600),
        ..options(model())
    });
    let addr = srv.addr;
    let limit = 16 * MIB;
    // Scores: 10,000 rows (the default --max-rows) of ~1.6 KiB.
    let rows = regress(10_000, limit / 10_000 - 8);
    assert!(
        rows.len() <= limit && rows.len() > limit * 9 / 10,
        "{}",
        rows.len()
    );
    let bodies = storm::bodies("mmoe", limit, rows, "uid");
    // Warm-up: each kind once, then the baseline.
    let first: Vec<u16> = bodies
        .iter()
        .map(|(p, b)| ask(addr, p, Arc::clone(b)))
        .collect();
    assert_eq!(first, [200, 413, 400, 413]);
    let bound = srv
        .metrics()
        .memory_bound
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(bound > 0);
    assert!(
        storm::reset_peak(),
        "cannot reset the peak RSS (/proc/self/clear_refs): the bound cannot be checked"
    );
    assert!(status_kib("VmHWM:") <= status_kib("VmRSS:") + 1024);
    let base = status_kib("VmRSS:") * 1024;
    let codes = storm::fire(addr, &bodies, 64);
    let peak = status_kib("VmHWM:") * 1024;
    let grew = peak.saturating_sub(base);
    eprintln!(
        "64 × 16 MiB: peak RSS grew {} MiB over {} MiB (bound {} MiB); answers {:?}",
        grew >> 20,
        base >> 20,
        bound >> 20,
        codes
    );
    assert!(
        codes.iter().all(|c| [200, 400, 413, 503].contains(c)),
        "{codes:?}"
    );
    assert!(codes.contains(&200) && codes.contains(&413) && codes.contains(&400));
    assert!(
        grew <= bound,
        "peak RSS grew {grew} bytes, over the stated bound of {bound}"
    );
    assert_eq!(common::get(addr, "/v2/health/live").0, 200);
    srv.stop();
}
