//! Virtual-time drivers: run one engine against arrivals without any real clock.
//!
//! The same loop a real-time server runs, minus the sleeping: requests arriving before a step
//! starts join that step's scheduling; tokens appear at step ends. Used by the calibration,
//! the tests, and later the fleet simulator.

use crate::engine::{Engine, Finished, StepOutput};
use crate::request::NewRequest;

/// Runs `arrivals` (sorted by time) to completion; returns every finished request in end order.
pub fn run_open_loop(engine: &mut Engine, arrivals: Vec<(f64, NewRequest)>) -> Vec<Finished> {
    let mut done = Vec::new();
    let mut pending = arrivals.into_iter().peekable();
    let mut now = 0.0_f64;
    loop {
        while let Some((arrival, req)) = pending.next_if(|(t, _)| *t <= now) {
            // A refused request is the caller's bug in a study; skip it rather than stall.
            let _ = engine.add_request(req, arrival);
        }
        match engine.step(now) {
            Some(out) => {
                now = out.end.max(now);
                done.extend(out.finished);
            }
            None => match pending.peek() {
                Some((t, _)) => now = *t,
                None => return done,
            },
        }
    }
}

/// Keeps `concurrency` requests in flight until `total` have finished, like a benchmark client
/// with that many workers; `make(i)` builds the i-th request. Returns finished requests and
/// the virtual time at the end.
pub fn run_closed_loop(
    engine: &mut Engine,
    concurrency: usize,
    total: usize,
    mut make: impl FnMut(u64) -> NewRequest,
) -> (Vec<Finished>, f64) {
    let mut done = Vec::with_capacity(total);
    let mut issued = 0usize;
    let mut now = 0.0;
    let mut in_flight = 0usize;
    let mut issue = |engine: &mut Engine, now: f64, issued: &mut usize, in_flight: &mut usize| {
        while *in_flight < concurrency && *issued < total {
            if engine.add_request(make(*issued as u64), now).is_ok() {
                *in_flight += 1;
            }
            *issued += 1;
        }
    };
    issue(engine, now, &mut issued, &mut in_flight);
    while let Some(StepOutput { end, finished, .. }) = engine.step(now) {
        now = end;
        in_flight -= finished.len();
        done.extend(finished);
        issue(engine, now, &mut issued, &mut in_flight);
    }
    (done, now)
}
