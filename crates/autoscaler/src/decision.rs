//! What a decision says: the replica count, the numbers it came from, and what held it back.

use std::fmt;

use serde::Serialize;

/// What kept the desired count from being the algorithm's raw recommendation (or why there was
/// none).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Limit {
    /// No usable metric (every source missing, stale or failed): the count is held.
    MissingMetrics(String),
    /// The metric is within the tolerance band around the target.
    Tolerance,
    /// Held by the stabilization window (the most conservative recommendation in it).
    Stabilization,
    /// Capped by the scale-up rate or policy.
    ScaleUpRate,
    /// Floored by the scale-down rate or policy.
    ScaleDownRate,
    /// Clamped to `minReplicas` (or a schedule's).
    MinReplicas,
    /// Clamped to `maxReplicas` (or a schedule's).
    MaxReplicas,
    /// KPA panic mode: no scale-down while panicking.
    Panic,
    /// Zero recommended, but not for the whole scale-to-zero grace period yet.
    ScaleToZeroGrace,
    /// Requests are held for a model with no replica: at least one is asked for.
    Activation,
    /// Replicas still starting cover the recommendation: no more are asked for.
    Starting,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingMetrics(why) => write!(f, "metrics missing ({why}): holding"),
            Self::Tolerance => f.write_str("within tolerance"),
            Self::Stabilization => f.write_str("stabilization window"),
            Self::ScaleUpRate => f.write_str("scale-up rate"),
            Self::ScaleDownRate => f.write_str("scale-down rate"),
            Self::MinReplicas => f.write_str("minReplicas"),
            Self::MaxReplicas => f.write_str("maxReplicas"),
            Self::Panic => f.write_str("panic mode: no scale-down"),
            Self::ScaleToZeroGrace => f.write_str("scale-to-zero grace period"),
            Self::Activation => f.write_str("requests held: activating"),
            Self::Starting => f.write_str("replicas starting"),
        }
    }
}

/// An algorithm's raw answer before stabilization, rate limits and bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recommendation {
    /// Replicas it asks for; `None` holds the current count (no usable input).
    pub replicas: Option<u32>,
    /// Named numbers it used (`stable`, `panic`, `ratio`, `capacity_rps`, ...), for the reason.
    pub inputs: Vec<(&'static str, f64)>,
    /// What the algorithm itself applied (tolerance, KPA's rate clamp, panic hold).
    pub limit: Option<Limit>,
    /// KPA: in panic mode.
    pub panic: bool,
}

/// One decision of one autoscaler.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// When (driver clock, seconds).
    pub at: f64,
    /// The count before.
    pub current: u32,
    /// The count decided.
    pub desired: u32,
    /// The algorithm's raw recommendation (`None`: it had no usable input).
    pub recommendation: Option<u32>,
    /// Named inputs.
    pub inputs: Vec<(String, f64)>,
    /// What limited it, in the order applied.
    pub limits: Vec<Limit>,
    /// KPA panic mode at this decision.
    pub panic: bool,
}

impl Decision {
    /// One line for `brix status` and logs:
    /// `3 -> 5 (recommended 6; stable=12.1 target=2; limited by scale-up rate)`.
    pub fn reason(&self) -> String {
        let mut s = format!("{} -> {}", self.current, self.desired);
        let rec = match self.recommendation {
            Some(r) => format!("recommended {r}"),
            None => "no recommendation".to_string(),
        };
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|(k, v)| format!("{k}={}", short(*v)))
            .collect();
        s.push_str(&format!(" ({rec}"));
        if !inputs.is_empty() {
            s.push_str(&format!("; {}", inputs.join(" ")));
        }
        if self.panic {
            s.push_str("; panic");
        }
        if !self.limits.is_empty() {
            let l: Vec<String> = self.limits.iter().map(ToString::to_string).collect();
            s.push_str(&format!("; limited by {}", l.join(", ")));
        }
        s.push(')');
        s
    }
}

/// A number in at most 4 significant digits, no trailing zeros.
fn short(v: f64) -> String {
    // `-0` (a ceiling of a tiny negative) prints as 0.
    let v = if v == 0.0 { 0.0 } else { v };
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
