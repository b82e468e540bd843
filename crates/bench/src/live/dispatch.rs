//! When each request is sent: open loop (at its scheduled time, whatever the server is doing)
//! or closed loop (N users, each sending the next request when its last one ends).
//!
//! Open loop: one dispatcher sleeps until each unit's due time and spawns it; it never waits on
//! a response, so a slow server cannot delay later arrivals (no coordinated omission). A
//! multi-turn session is one unit: its turn k+1 is released `think_s` after turn k ends, and
//! that release time is its scheduled time. Whatever lateness remains (a saturated runtime) is
//! the record's `sent_s − scheduled_s`, the client lag.
//!
//! Closed loop: N workers share one queue. A worker takes a session's next turn once it is
//! released (think time over), else the next fresh request, else waits; so a session's turns
//! stay in order and at most N requests are in flight. Scheduled time is when the worker took
//! it, so client lag measures only the client's own overhead.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Client;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep_until};

use super::client::{self, Target};
use super::progress::Progress;
use crate::report::RequestRecord;

/// One request, its prompt already rendered.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Workload id.
    pub(crate) id: u64,
    /// Session and turn, for multi-turn workloads.
    pub(crate) session: Option<(u64, u32)>,
    /// Open loop: due time of a first turn or single request, seconds after the start.
    pub(crate) at_s: f64,
    /// Seconds after the previous turn's end before this one is released.
    pub(crate) think_s: f64,
    /// Prompt text.
    pub(crate) text: String,
    /// Prompt length in the workload (used when the engine reports no usage).
    pub(crate) prompt_tokens: u32,
    /// `max_tokens`.
    pub(crate) output_tokens: u32,
}

/// A single request, or a whole session's turns in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unit {
    pub(crate) jobs: VecDeque<Job>,
}

/// What every sender shares.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) target: Target,
    pub(crate) t0: Instant,
    pub(crate) progress: Progress,
}

impl Ctx {
    fn since_start(&self, at: Instant) -> f64 {
        at.duration_since(self.t0).as_secs_f64()
    }

    async fn send(&self, job: Job, scheduled_s: f64) -> RequestRecord {
        let record = RequestRecord {
            id: job.id,
            session: job.session.map(|s| s.0),
            turn: job.session.map(|s| s.1),
            scheduled_s,
            ..RequestRecord::default()
        };
        let r = client::send(
            &self.client,
            &self.target,
            job.text,
            job.prompt_tokens,
            job.output_tokens,
            self.t0,
            record,
        )
        .await;
        self.progress.record(&r);
        r
    }
}

fn at(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s.max(0.0))
}

/// Open loop: every unit starts at its `at_s`, however the earlier ones are doing.
pub(crate) async fn open_loop(ctx: Arc<Ctx>, units: Vec<Unit>) -> Vec<RequestRecord> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let expected: usize = units.iter().map(|u| u.jobs.len()).sum();
    for unit in units {
        let Some(first) = unit.jobs.front() else {
            continue;
        };
        sleep_until(at(ctx.t0, first.at_s)).await;
        let (ctx, tx) = (Arc::clone(&ctx), tx.clone());
        tokio::spawn(async move {
            let mut previous_end = None;
            for job in unit.jobs {
                let due = match previous_end {
                    None => job.at_s,
                    Some(end) => end + job.think_s,
                };
                sleep_until(at(ctx.t0, due)).await;
                let record = ctx.send(job, due).await;
                previous_end = Some(ctx.since_start(Instant::now()));
                // The receiver lives until every sender is gone.
                let _ = tx.send(record);
            }
        });
    }
    drop(tx);
    let mut records = Vec::with_capacity(expected);
    while let Some(r) = rx.recv().await {
        records.push(r);
    }
    records
}

/// A session whose next turn is released at `at_s`.
#[derive(Debug)]
struct Released {
    at_s: f64,
    seq: u64,
    unit: Unit,
}

impl PartialEq for Released {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Released {}

impl PartialOrd for Released {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Released {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at_s
            .total_cmp(&other.at_s)
            .then(self.seq.cmp(&other.seq))
    }
}

/// The closed loop's shared queue.
#[derive(Debug, Default)]
struct Queue {
    /// Single requests and sessions not started, in workload order.
    fresh: VecDeque<Unit>,
    /// Started sessions whose next turn waits on its think time.
    released: BinaryHeap<Reverse<Released>>,
    /// Sessions with a turn in flight and turns left (their next turn is not yet released).
    in_flight: usize,
    seq: u64,
}

/// A worker's next step.
enum Next {
    /// Send this job; `rest` are the session's later turns.
    Send { job: Job, rest: Unit },
    /// Nothing to send before `Some(t)` (a release time), or before a turn ends (`None`).
    Wait(Option<f64>),
    /// Nothing left.
    Done,
}

impl Queue {
    fn next(&mut self, now_s: f64, stop_s: Option<f64>) -> Next {
        if stop_s.is_some_and(|stop| now_s >= stop) {
            return Next::Done;
        }
        let due = self
            .released
            .peek()
            .is_some_and(|Reverse(r)| r.at_s <= now_s);
        let unit = if due {
            self.released.pop().map(|Reverse(r)| r.unit)
        } else {
            self.fresh.pop_front()
        };
        if let Some(mut unit) = unit
            && let Some(job) = unit.jobs.pop_front()
        {
            if !unit.jobs.is_empty() {
                self.in_flight += 1;
            }
            return Next::Send { job, rest: unit };
        }
        match self.released.peek() {
            Some(Reverse(r)) => Next::Wait(Some(r.at_s)),
            None if self.in_flight > 0 => Next::Wait(None),
            None => Next::Done,
        }
    }

    /// A turn of `rest`'s session ended at `end_s`: release the next one after its think time.
    fn turn_ended(&mut self, rest: Unit, end_s: f64) {
        let Some(next) = rest.jobs.front() else {
            return;
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        self.seq += 1;
        self.released.push(Reverse(Released {
            at_s: end_s + next.think_s,
            seq: self.seq,
            unit: rest,
        }));
    }
}

/// Closed loop: `users` workers, each sending its next request when the last one ends; no new
/// request starts after `stop_s` (seconds after the start), when given.
pub(crate) async fn closed_loop(
    ctx: Arc<Ctx>,
    units: Vec<Unit>,
    users: usize,
    stop_s: Option<f64>,
) -> Vec<RequestRecord> {
    let expected: usize = units.iter().map(|u| u.jobs.len()).sum();
    let queue = Arc::new(Mutex::new(Queue {
        fresh: units.into(),
        ..Queue::default()
    }));
    let notify = Arc::new(Notify::new());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..users.max(1) {
        let (ctx, queue, notify) = (Arc::clone(&ctx), Arc::clone(&queue), Arc::clone(&notify));
        workers.spawn(async move {
            let mut records = Vec::new();
            loop {
                // Registered before looking, so a turn ending in between still wakes us.
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let now_s = ctx.since_start(Instant::now());
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .next(now_s, stop_s);
                match next {
                    Next::Done => break,
                    Next::Wait(None) => notified.await,
                    Next::Wait(Some(t)) => {
                        tokio::select! {
                            () = notified => {}
                            () = sleep_until(at(ctx.t0, t)) => {}
                        }
                    }
                    Next::Send { job, rest } => {
                        let has_rest = !rest.jobs.is_empty();
                        records.push(ctx.send(job, now_s).await);
                        if has_rest {
                            let end_s = ctx.since_start(Instant::now());
                            queue
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .turn_ended(rest, end_s);
                            notify.notify_waiters();
                        }
                    }
                }
            }
            // A worker that leaves may strand no one: wake the others to look again.
            notify.notify_waiters();
            records
        });
    }
    let mut records = Vec::with_capacity(expected);
    while let Some(done) = workers.join_next().await {
        if let Ok(mut r) = done {
            records.append(&mut r);
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, session: Option<(u64, u32)>, at_s: f64, think_s: f64) -> Job {
        Job {
            id,
            session,
            at_s,
            think_s,
            text: String::new(),
            prompt_tokens: 1,
            output_tokens: 1,
        }
    }

    fn unit(jobs: Vec<Job>) -> Unit {
        Unit { jobs: jobs.into() }
    }

    fn id(n: Next) -> Option<(u64, Unit)> {
        match n {
            Next::Send { job, rest } => Some((job.id, rest)),
            _ => None,
        }
    }

    #[test]
    fn live_closed_queue_keeps_turns_ordered_and_prefers_released_turns() {
        let mut q = Queue {
            fresh: vec![
                unit(vec![
                    job(0, Some((0, 0)), 0.0, 0.0),
                    job(1, Some((0, 1)), 0.0, 1.0),
                ]),
                unit(vec![job(2, None, 0.0, 0.0)]),
                unit(vec![job(3, None, 0.0, 0.0)]),
            ]
            .into(),
            ..Queue::default()
        };
        let (first, rest) = id(q.next(0.0, None)).expect("turn 0");
        assert_eq!(first, 0);
        // Turn 1 is not released while turn 0 is in flight; fresh work goes first.
        let (second, _) = id(q.next(0.0, None)).expect("single");
        assert_eq!(second, 2);
        q.turn_ended(rest, 2.0);
        // Released at 3.0 (end 2.0 + think 1.0): before that, the fresh single goes.
        let (third, _) = id(q.next(2.5, None)).expect("single");
        assert_eq!(third, 3);
        assert!(matches!(q.next(2.5, None), Next::Wait(Some(t)) if t == 3.0));
        let (fourth, rest) = id(q.next(3.0, None)).expect("turn 1");
        assert_eq!(fourth, 1);
        assert!(rest.jobs.is_empty());
        assert!(matches!(q.next(3.0, None), Next::Done));
    }

    #[test]
    fn live_closed_queue_waits_for_a_turn_in_flight_and_stops_at_the_deadline() {
        let mut q = Queue {
            fresh: vec![unit(vec![
                job(0, Some((0, 0)), 0.0, 0.0),
                job(1, Some((0, 1)), 0.0, 0.0),
            ])]
            .into(),
            ..Queue::default()
        };
        let (_, rest) = id(q.next(0.0, None)).expect("turn 0");
        assert!(matches!(q.next(0.0, None), Next::Wait(None)));
        q.turn_ended(rest, 1.0);
        assert!(matches!(q.next(5.0, Some(5.0)), Next::Done));
        assert!(id(q.next(1.0, Some(5.0))).is_some());
    }
}
