//! When each request is sent: open-loop arrivals (Poisson, constant, the trace's own times)
//! or a closed loop of N users, and the duration or request cap that ends a run. Pure:
//! [`schedule`] is a function of the workload, the arrival, a seed and the limits.
//!
//! Only *starts* get arrival times: single requests and the first turn of each session. A
//! later turn is sent `think_s` after its previous turn ends, which only the run knows; its
//! `at_s` is set to a lower bound, the session's start plus the think times so far.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::rngs::SmallRng;
use thiserror::Error;

use super::Workload;
use super::seed::{Stream, exponential, rng};

/// How requests arrive; parsed from `poisson:5`, `constant:2`, `sine:12,3.6,120`,
/// `onoff:20,2,60,120`, `trace:0.5` (or `trace`) and `closed:16`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    /// A Poisson process of `rate` starts per second: exponential gaps with mean `1/rate`,
    /// the first start one gap after 0. The usual model of independent users.
    Poisson {
        /// Starts per second (> 0).
        rate: f64,
    },
    /// One start every `1/rate` seconds, the first at 0: the same offered load with no burstiness.
    Constant {
        /// Starts per second (> 0).
        rate: f64,
    },
    /// A Poisson process whose rate follows a sinusoid, `mean + amplitude·sin(2πt / period)`,
    /// starting at the mean and rising: AIBrix's autoscaling harness (12 ± 3.6 req/s, period
    /// 120 s). Drawn by thinning a Poisson process at the peak rate.
    Sine {
        /// Mean starts per second (> 0).
        mean: f64,
        /// Swing around the mean (0 ≤ amplitude ≤ mean).
        amplitude: f64,
        /// Seconds per cycle (> 0).
        period_s: f64,
    },
    /// Bursts: a Poisson process at `peak` starts per second for `on_s` seconds, then at
    /// `base` for `off_s`, repeating from a burst at 0.
    OnOff {
        /// Starts per second during a burst (> 0).
        peak: f64,
        /// Starts per second between bursts (≥ 0).
        base: f64,
        /// Burst length, seconds (> 0).
        on_s: f64,
        /// Quiet length, seconds (> 0).
        off_s: f64,
    },
    /// The workload's own times (a trace's timestamps, a saved file's `at_s`) times `scale`:
    /// 0.5 replays twice as fast. Generated workloads have every `at_s` at 0, so this sends
    /// them all at once.
    Trace {
        /// Multiplies every `at_s` (≥ 0).
        scale: f64,
    },
    /// A closed loop: `at_s` is 0 everywhere and the runner keeps `users` requests in flight.
    /// The users share one queue of ready requests: single requests and first turns in
    /// workload order, and a session's later turn once it is released, `think_s` after the
    /// previous turn's reply (so turns stay in order). Offered load adapts to the server.
    /// The live client and the fleet simulator release requests the same way.
    ClosedLoop {
        /// Concurrent users (≥ 1).
        users: usize,
    },
}

/// Whether the run must keep users busy instead of sending at `at_s`, for runners that branch
/// on the loop kind.
pub fn is_closed_loop(arrival: &Arrival) -> bool {
    matches!(arrival, Arrival::ClosedLoop { .. })
}

impl Arrival {
    /// The closed loop's user count, `None` for open-loop arrivals.
    pub fn users(&self) -> Option<usize> {
        match self {
            Self::ClosedLoop { users } => Some(*users),
            _ => None,
        }
    }
}

/// Why an arrival spec does not parse, naming the field.
#[derive(Debug, Error, PartialEq)]
pub enum ArrivalError {
    /// The kind before `:` is not one of the six.
    #[error(
        "unknown arrival `{kind}` (known: poisson:RATE, constant:RATE, sine:MEAN,AMPLITUDE,PERIOD_S, \
         onoff:PEAK,BASE,ON_S,OFF_S, trace:SCALE, closed:USERS)"
    )]
    UnknownKind {
        /// The kind given.
        kind: String,
    },
    /// The value after `:` is missing, does not parse, or is out of range.
    #[error("arrival `{kind}`: field `{field}`: expected {expected}, got `{value}`")]
    BadValue {
        /// The arrival kind.
        kind: &'static str,
        /// `rate`, `scale` or `users`.
        field: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

impl FromStr for Arrival {
    type Err = ArrivalError;

    fn from_str(spec: &str) -> Result<Self, ArrivalError> {
        let (kind, value) = spec.trim().split_once(':').unwrap_or((spec.trim(), ""));
        let value = value.trim();
        let bad = |kind: &'static str, field: &'static str, expected: &'static str| {
            ArrivalError::BadValue {
                kind,
                field,
                value: value.to_owned(),
                expected,
            }
        };
        let finite = value.parse::<f64>().ok().filter(|v| v.is_finite());
        let rate = |kind| {
            finite
                .filter(|v| *v > 0.0)
                .ok_or_else(|| bad(kind, "rate", "requests/s > 0"))
        };
        match kind {
            "poisson" => Ok(Self::Poisson {
                rate: rate("poisson")?,
            }),
            "constant" => Ok(Self::Constant {
                rate: rate("constant")?,
            }),
            "sine" => sine(value),
            "onoff" => on_off(value),
            "trace" if value.is_empty() => Ok(Self::Trace { scale: 1.0 }),
            "trace" => finite
                .filter(|v| *v >= 0.0)
                .map(|scale| Self::Trace { scale })
                .ok_or_else(|| bad("trace", "scale", "a time scale ≥ 0")),
            "closed" => value
                .parse::<usize>()
                .ok()
                .filter(|users| *users >= 1)
                .map(|users| Self::ClosedLoop { users })
                .ok_or_else(|| bad("closed", "users", "a whole number ≥ 1")),
            _ => Err(ArrivalError::UnknownKind {
                kind: kind.to_owned(),
            }),
        }
    }
}

/// One positional field: its name, what it must be, and the check.
type Field = (&'static str, &'static str, fn(f64) -> bool);

/// `value` split at commas into exactly `N` finite numbers, each checked by its field; the
/// error names the first bad field.
fn fields<const N: usize>(
    kind: &'static str,
    value: &str,
    names: [Field; N],
) -> Result<[f64; N], ArrivalError> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let mut out = [0.0; N];
    for (i, (field, expected, ok)) in names.into_iter().enumerate() {
        let raw = parts.get(i).copied().unwrap_or("");
        out[i] = raw
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && ok(*v))
            .ok_or_else(|| ArrivalError::BadValue {
                kind,
                field,
                value: raw.to_owned(),
                expected,
            })?;
    }
    if parts.len() > N {
        return Err(ArrivalError::BadValue {
            kind,
            field: "fields",
            value: value.to_owned(),
            expected: if N == 3 {
                "3 comma-separated numbers"
            } else {
                "4 comma-separated numbers"
            },
        });
    }
    Ok(out)
}

fn sine(value: &str) -> Result<Arrival, ArrivalError> {
    let [mean, amplitude, period_s] = fields(
        "sine",
        value,
        [
            ("mean", "requests/s > 0", |v| v > 0.0),
            ("amplitude", "requests/s ≥ 0", |v| v >= 0.0),
            ("period", "seconds > 0", |v| v > 0.0),
        ],
    )?;
    if amplitude > mean {
        return Err(ArrivalError::BadValue {
            kind: "sine",
            field: "amplitude",
            value: amplitude.to_string(),
            expected: "at most the mean (a rate cannot go below 0)",
        });
    }
    Ok(Arrival::Sine {
        mean,
        amplitude,
        period_s,
    })
}

fn on_off(value: &str) -> Result<Arrival, ArrivalError> {
    let [peak, base, on_s, off_s] = fields(
        "onoff",
        value,
        [
            ("peak", "requests/s > 0", |v| v > 0.0),
            ("base", "requests/s ≥ 0", |v| v >= 0.0),
            ("on", "seconds > 0", |v| v > 0.0),
            ("off", "seconds > 0", |v| v > 0.0),
        ],
    )?;
    Ok(Arrival::OnOff {
        peak,
        base,
        on_s,
        off_s,
    })
}

impl Arrival {
    /// Starts per second at time `t` for the time-varying kinds; `None` for the others.
    pub fn rate_at(&self, t: f64) -> Option<f64> {
        match *self {
            Self::Sine {
                mean,
                amplitude,
                period_s,
            } => Some(mean + amplitude * (std::f64::consts::TAU * t / period_s).sin()),
            Self::OnOff {
                peak,
                base,
                on_s,
                off_s,
            } => Some(if t.rem_euclid(on_s + off_s) < on_s {
                peak
            } else {
                base
            }),
            _ => None,
        }
    }

    /// The highest rate a time-varying kind reaches (the thinning envelope).
    fn peak_rate(&self) -> f64 {
        match *self {
            Self::Sine {
                mean, amplitude, ..
            } => mean + amplitude,
            Self::OnOff { peak, base, .. } => peak.max(base),
            _ => 0.0,
        }
    }
}

impl fmt::Display for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Poisson { rate } => write!(f, "poisson:{rate}"),
            Self::Constant { rate } => write!(f, "constant:{rate}"),
            Self::Sine {
                mean,
                amplitude,
                period_s,
            } => write!(f, "sine:{mean},{amplitude},{period_s}"),
            Self::OnOff {
                peak,
                base,
                on_s,
                off_s,
            } => write!(f, "onoff:{peak},{base},{on_s},{off_s}"),
            Self::Trace { scale } => write!(f, "trace:{scale}"),
            Self::ClosedLoop { users } => write!(f, "closed:{users}"),
        }
    }
}

/// An arrival with the limits that end a run, as one value a runner's config can hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrivalSpec {
    /// How requests arrive.
    pub arrival: Arrival,
    /// Keep only starts before this many seconds (sessions whole); `None` for no limit.
    pub duration_s: Option<f64>,
    /// Keep at most this many requests; `None` for no limit.
    pub max_requests: Option<usize>,
}

impl ArrivalSpec {
    /// [`schedule`] with this spec's arrival and limits.
    pub fn apply(&self, workload: Workload, seed: u64) -> Workload {
        schedule(
            workload,
            &self.arrival,
            seed,
            self.duration_s,
            self.max_requests,
        )
    }
}

/// The start times an arrival gives, in order.
struct Starts {
    arrival: Arrival,
    rng: SmallRng,
    count: u64,
    last: f64,
}

impl Starts {
    fn new(arrival: Arrival, seed: u64) -> Self {
        Self {
            arrival,
            rng: rng(seed, Stream::Arrival, &[]),
            count: 0,
            last: 0.0,
        }
    }

    /// The next start's time; `own` is the request's `at_s` as loaded.
    fn next(&mut self, own: f64) -> f64 {
        let at = match self.arrival {
            Arrival::Poisson { rate } => self.last + exponential(&mut self.rng, 1.0 / rate),
            Arrival::Constant { rate } => self.count as f64 / rate,
            Arrival::Sine { .. } | Arrival::OnOff { .. } => self.thinned(),
            Arrival::Trace { scale } => own * scale,
            Arrival::ClosedLoop { .. } => 0.0,
        };
        self.count += 1;
        self.last = at;
        at
    }
}

impl Starts {
    /// The next start of a time-varying Poisson process (Lewis and Shedler's thinning):
    /// candidates at the peak rate, each kept with probability rate(t) / peak.
    fn thinned(&mut self) -> f64 {
        let peak = self.arrival.peak_rate();
        let mut t = self.last;
        loop {
            t += exponential(&mut self.rng, 1.0 / peak);
            let keep: f64 = self.rng.random();
            if keep * peak < self.arrival.rate_at(t).unwrap_or(peak) {
                return t;
            }
        }
    }
}

/// Sets every request's `at_s` for `arrival` (seeded), then keeps the starts before
/// `duration_s` (a session is kept or dropped whole, by its first turn) and the first
/// `max_requests` requests, and renumbers `id` to positions. Workload order is kept: the
/// k-th start gets the k-th arrival time.
pub fn schedule(
    mut workload: Workload,
    arrival: &Arrival,
    seed: u64,
    duration_s: Option<f64>,
    max_requests: Option<usize>,
) -> Workload {
    let mut starts = Starts::new(*arrival, seed);
    // Session → (its start time, think time so far).
    let mut sessions: HashMap<u64, (f64, f64)> = HashMap::new();
    for request in &mut workload.requests {
        let continued = request
            .session
            .filter(|t| t.turn > 0)
            .and_then(|t| sessions.get_mut(&t.session).map(|clock| (clock, t.think_s)));
        request.at_s = match (continued, arrival) {
            (Some(_), Arrival::Trace { scale }) => request.at_s * scale,
            (Some(_), Arrival::ClosedLoop { .. }) => 0.0,
            (Some(((start, thought), think_s)), _) => {
                *thought += think_s;
                *start + *thought
            }
            (None, _) => {
                let at = starts.next(request.at_s);
                if let Some(turn) = request.session {
                    sessions.insert(turn.session, (at, 0.0));
                }
                at
            }
        };
    }
    if let Some(limit) = duration_s {
        trim_duration(&mut workload, limit);
    }
    if let Some(cap) = max_requests {
        workload.requests.truncate(cap);
    }
    for (position, request) in workload.requests.iter_mut().enumerate() {
        request.id = position as u64;
    }
    workload
}

/// Drops the starts at or after `limit` seconds, and every later turn of a dropped session.
fn trim_duration(workload: &mut Workload, limit: f64) {
    let mut dropped: HashSet<u64> = HashSet::new();
    let mut kept: HashSet<u64> = HashSet::new();
    workload.requests.retain(|request| match request.session {
        Some(turn) if kept.contains(&turn.session) && turn.turn > 0 => true,
        Some(turn) if dropped.contains(&turn.session) && turn.turn > 0 => false,
        session => {
            let keep = request.at_s < limit;
            if let Some(turn) = session {
                if keep {
                    kept.insert(turn.session)
                } else {
                    dropped.insert(turn.session)
                };
            }
            keep
        }
    });
}
