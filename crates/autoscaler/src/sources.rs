//! Per-source state: the windows a source's readings go into, and the [`Signal`] the
//! algorithms read at a decision (stable and panic window values, the latest reading, or why
//! there is none).

use crate::policy::{Source, SourceKind};
use crate::window::{CounterWindow, Window};
use crate::{Load, Policy, Reading};

/// What a gateway source measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GatewayMetric {
    InFlight,
    Requests,
    PromptTokens,
    OutputTokens,
}

impl GatewayMetric {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gateway_in_flight" => Self::InFlight,
            "gateway_requests_per_second" => Self::Requests,
            "gateway_prompt_tokens_per_second" => Self::PromptTokens,
            "gateway_output_tokens_per_second" => Self::OutputTokens,
            _ => return None,
        })
    }

    /// The counter it is the rate of (`None`: a gauge).
    fn counter(self, load: &Load) -> Option<u64> {
        match self {
            Self::InFlight => None,
            Self::Requests => Some(load.requests),
            Self::PromptTokens => Some(load.prompt_tokens),
            Self::OutputTokens => Some(load.output_tokens),
        }
    }
}

/// The latest reading of a source, as HPA reads it (no window).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Latest {
    /// Each ready pod's value (`None`: that pod's value is missing).
    Pods(Vec<Option<f64>>),
    /// One value for the target.
    Total(f64),
}

/// One source as an algorithm sees it at a decision.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Signal {
    /// Per pod or total.
    pub kind: SourceKind,
    /// `targetValue` (per pod / per replica).
    pub target: f64,
    /// Mean over the stable window (per-pod mean for pod sources, total otherwise).
    pub stable: Option<f64>,
    /// Mean over the panic window (as `stable`).
    pub panic: Option<f64>,
    /// Mean over the stable window of the total over pods (Knative's "observed stable
    /// value": each tick's per-pod mean × the pods it covered); the value itself for total
    /// sources.
    pub stable_total: Option<f64>,
    /// The same over the panic window.
    pub panic_total: Option<f64>,
    /// The latest reading, if fresh.
    pub latest: Option<Latest>,
    /// Why a value is missing, for the decision's reason.
    pub missing: Option<String>,
}

/// One source's recorded readings.
#[derive(Clone, Debug)]
pub(crate) struct SourceState {
    gauge: Window,
    /// Pod sources: each tick's total over pods.
    totals: Window,
    counter: Option<(GatewayMetric, CounterWindow)>,
    in_flight: bool,
    pods: Option<(f64, Vec<Option<f64>>)>,
    failed: Option<String>,
}

impl SourceState {
    /// Empty windows for `source`, keeping the longest window `policy` reads.
    pub(crate) fn new(source: &Source, policy: &Policy) -> Self {
        let keep = keep_s(policy);
        let metric = (source.kind == SourceKind::Gateway)
            .then(|| GatewayMetric::parse(&source.metric))
            .flatten();
        Self {
            gauge: Window::new(keep),
            totals: Window::new(keep),
            counter: metric
                .filter(|m| *m != GatewayMetric::InFlight)
                .map(|m| (m, CounterWindow::new(keep))),
            in_flight: metric == Some(GatewayMetric::InFlight),
            pods: None,
            failed: None,
        }
    }

    /// Records a driver's reading; a failure records nothing (never a zero) and keeps its
    /// text for the reason.
    ///
    /// AIBrix defect fixed here: a failed scrape of an external source yields 0 in AIBrix,
    /// so an unreachable optimizer reads as "no load" and scales down (aibrix.md §2.3).
    pub(crate) fn observe(&mut self, reading: Reading, now: f64) {
        match reading {
            Reading::Failed(why) => self.failed = Some(bounded(why)),
            Reading::Total(v) => {
                if v.is_finite() {
                    self.gauge.record(now, v);
                    self.failed = None;
                }
            }
            Reading::Pods(values) => {
                // A value that is not a number is a pod whose value is missing.
                let values: Vec<Option<f64>> = values
                    .into_iter()
                    .map(|v| v.filter(|v| v.is_finite()))
                    .collect();
                let present: Vec<f64> = values.iter().flatten().copied().collect();
                if !present.is_empty() {
                    let mean = present.iter().sum::<f64>() / present.len() as f64;
                    self.gauge.record(now, mean);
                    self.totals.record(now, mean * values.len() as f64);
                    self.pods = Some((now, values));
                    self.failed = None;
                }
            }
        }
    }

    /// Records the gateway's view, if this is a gateway source.
    pub(crate) fn observe_load(&mut self, load: &Load, now: f64) {
        if self.in_flight {
            self.gauge.record(now, f64::from(load.in_flight));
        }
        if let Some((metric, window)) = &mut self.counter
            && let Some(counter) = metric.counter(load)
        {
            window.record(now, counter as f64);
        }
    }

    /// What the algorithms read at `now`.
    pub(crate) fn signal(&self, source: &Source, policy: &Policy, now: f64) -> Signal {
        let stable_w = policy.knobs.stable_window.as_secs_f64();
        let panic_w = policy.knobs.panic_window.as_secs_f64();
        let mut signal = Signal {
            kind: source.kind,
            target: source.target,
            stable: None,
            panic: None,
            stable_total: None,
            panic_total: None,
            latest: None,
            missing: None,
        };
        let age = match &self.counter {
            Some((_, w)) => w.age(now),
            None => self.gauge.age(now),
        };
        let why = match age {
            None => Some(match &self.failed {
                Some(f) => format!("{}: {f}", source.metric),
                None => format!("{}: no sample yet", source.metric),
            }),
            Some(a) if a > policy.stale_after_s => Some(format!(
                "{}: newest sample {a:.0} s old{}",
                source.metric,
                self.failed
                    .as_ref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            signal.missing = Some(why);
            return signal;
        }
        match &self.counter {
            Some((_, w)) => {
                signal.stable = w.rate(now, stable_w);
                signal.panic = w.rate(now, panic_w);
                signal.latest = w.rate(now, policy.sync_s.max(1.0)).map(Latest::Total);
                (signal.stable_total, signal.panic_total) = (signal.stable, signal.panic);
            }
            None => {
                signal.stable = self.gauge.average(now, stable_w);
                signal.panic = self.gauge.average(now, panic_w);
                signal.latest = match (&self.pods, source.kind) {
                    (Some((t, pods)), SourceKind::PerPod) if now - t <= policy.stale_after_s => {
                        Some(Latest::Pods(pods.clone()))
                    }
                    (_, SourceKind::PerPod) => None,
                    _ => self.gauge.latest().map(Latest::Total),
                };
                let totals = match source.kind {
                    SourceKind::PerPod => &self.totals,
                    SourceKind::Total | SourceKind::Gateway => &self.gauge,
                };
                signal.stable_total = totals.average(now, stable_w);
                signal.panic_total = totals.average(now, panic_w);
            }
        }
        if signal.stable.is_none() && signal.latest.is_none() {
            signal.missing = Some(format!("{}: not enough samples", source.metric));
        }
        signal
    }
}

/// Longest failure text kept (it comes from a remote endpoint and goes into every reason).
const MAX_FAILURE_CHARS: usize = 200;

/// `why`, cut to [`MAX_FAILURE_CHARS`] characters on one line.
fn bounded(why: String) -> String {
    let one_line: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_FAILURE_CHARS)
        .collect();
    if why.chars().count() > MAX_FAILURE_CHARS {
        format!("{one_line}…")
    } else {
        one_line
    }
}

/// The longest window any algorithm reads, plus slack.
fn keep_s(policy: &Policy) -> f64 {
    let k = &policy.knobs;
    k.stable_window
        .max(k.panic_window)
        .as_secs_f64()
        .max(policy.sync_s)
        .max(policy.stale_after_s)
        + 2.0
}
