//! When each request is sent, as `brix bench run`'s dispatcher (`live/dispatch.rs`) sends it.
//!
//! Units are single requests and sessions (a session's turns in workload order), in order of
//! their first request. Open loop: a unit starts at its first request's `at_s`; turn k+1 is
//! released `think_s` after turn k ends. Closed loop: N users share one queue; a free user takes
//! a session's released turn (think time over) first, else the next fresh unit, else waits;
//! after `stop_s` no user starts anything.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use super::Release;
use crate::workload::Workload;

/// A released turn: (time, order released, request).
#[derive(Clone, Copy, Debug)]
struct Released {
    at: f64,
    seq: u64,
    request: usize,
}

impl PartialEq for Released {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
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
        self.at.total_cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}

/// What the dispatcher asks of the event loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Action {
    /// Send this request now.
    Send(usize),
    /// Send this request at this time (open loop, and released turns).
    SendAt(usize, f64),
    /// Look again at this time (a closed-loop turn's think time ends).
    WakeAt(f64),
}

/// The client's side of a run.
pub(crate) struct Releaser {
    /// The next request of the same unit.
    next_turn: Vec<Option<usize>>,
    /// First requests of units not started, in order.
    fresh: VecDeque<usize>,
    /// Closed loop: turns whose think time runs, earliest first.
    released: BinaryHeap<Reverse<Released>>,
    seq: u64,
    /// Closed loop: users with nothing in flight (None: open loop).
    idle: Option<usize>,
    stop_s: Option<f64>,
    /// A wake-up already scheduled at this time.
    wake_at: Option<f64>,
}

impl Releaser {
    pub(crate) fn new(w: &Workload, release: Release) -> Self {
        let mut units: Vec<Vec<usize>> = Vec::new();
        let mut by_session: BTreeMap<u64, usize> = BTreeMap::new();
        for (i, r) in w.requests.iter().enumerate() {
            match r.session {
                Some(t) => {
                    let u = *by_session.entry(t.session).or_insert_with(|| {
                        units.push(Vec::new());
                        units.len() - 1
                    });
                    units[u].push(i);
                }
                None => units.push(vec![i]),
            }
        }
        let mut next_turn = vec![None; w.requests.len()];
        for u in &units {
            for pair in u.windows(2) {
                next_turn[pair[0]] = Some(pair[1]);
            }
        }
        let (idle, stop_s) = match release {
            Release::Open => (None, None),
            Release::Closed { users, stop_s } => (Some(users), stop_s),
        };
        Self {
            next_turn,
            fresh: units.iter().filter_map(|u| u.first().copied()).collect(),
            released: BinaryHeap::new(),
            seq: 0,
            idle,
            stop_s,
            wake_at: None,
        }
    }

    /// What to do at the start.
    pub(crate) fn start(&mut self, w: &Workload) -> Vec<Action> {
        if self.idle.is_none() {
            return self
                .fresh
                .drain(..)
                .map(|i| Action::SendAt(i, w.requests[i].at_s.max(0.0)))
                .collect();
        }
        self.dispatch(0.0)
    }

    /// Request `i` ended at `now` (answered or refused).
    pub(crate) fn ended(&mut self, w: &Workload, i: usize, now: f64) -> Vec<Action> {
        let next = self.next_turn[i].map(|n| {
            let think = w.requests[n].session.map_or(0.0, |t| t.think_s.max(0.0));
            (n, now + think)
        });
        let Some(idle) = self.idle.as_mut() else {
            return next
                .map(|(n, at)| Action::SendAt(n, at))
                .into_iter()
                .collect();
        };
        *idle += 1;
        if let Some((request, at)) = next {
            self.seq += 1;
            self.released.push(Reverse(Released {
                at,
                seq: self.seq,
                request,
            }));
        }
        self.dispatch(now)
    }

    /// A scheduled wake-up fired.
    pub(crate) fn wake(&mut self, now: f64) -> Vec<Action> {
        if self.wake_at.is_some_and(|t| t <= now) {
            self.wake_at = None;
        }
        self.dispatch(now)
    }

    /// Closed loop: hands free users their next request while there is one to send.
    fn dispatch(&mut self, now: f64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.stop_s.is_some_and(|stop| now >= stop) {
            return out;
        }
        while let Some(idle) = self.idle.filter(|n| *n > 0) {
            let due = self.released.peek().is_some_and(|Reverse(r)| r.at <= now);
            let next = if due {
                self.released.pop().map(|Reverse(r)| r.request)
            } else {
                self.fresh.pop_front()
            };
            match next {
                Some(i) => {
                    self.idle = Some(idle - 1);
                    out.push(Action::Send(i));
                }
                None => {
                    if let Some(Reverse(r)) = self.released.peek()
                        && self.wake_at.is_none_or(|t| t > r.at)
                    {
                        self.wake_at = Some(r.at);
                        out.push(Action::WakeAt(r.at));
                    }
                    break;
                }
            }
        }
        out
    }
}
