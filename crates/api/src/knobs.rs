//! The autoscaling knobs a PodAutoscaler sets through `autoscaling.aibrix.ai/*` annotations.
//!
//! AIBrix reads eight annotation keys (`pkg/controller/podautoscaler/context/context.go`) and
//! silently ignores every other key, including the legacy names its own sample manifests still
//! use (aibrix.md quirk 17). Brix reads the eight keys, reads the legacy names as aliases and
//! reports each as a [`Deprecation`], accepts the keys under `metadata.labels` too (where
//! older samples put them), and rejects any other `*autoscaling.aibrix.ai/` key.
//!
//! Brix's SLO-capacity policy adds three keys of its own under `autoscaling.brix.dev/`
//! (latency targets and the utilization to plan for); other keys there are refused too.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::autoscaler::PodAutoscalerSpec;
use crate::error::{Deprecation, FieldError, fail};
use crate::meta::ObjectMeta;

/// Prefix of the annotation keys AIBrix's autoscaler reads.
pub const ANNOTATION_PREFIX: &str = "autoscaling.aibrix.ai/";

/// AIBrix's default stable window (`observeWindowSeconds`).
const DEFAULT_STABLE_WINDOW: Duration = Duration::from_secs(180);
/// AIBrix's default panic window (`panicWindowSeconds`).
const DEFAULT_PANIC_WINDOW: Duration = Duration::from_secs(60);
/// Longest window AIBrix's CRD accepts.
const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// Longest latency target the SLO policy accepts (an hour: anything longer is a typo).
const MAX_SLO: Duration = Duration::from_secs(3600);

/// Everything that tunes a PodAutoscaler's algorithm, with AIBrix's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingKnobs {
    /// At most ×this replicas per decision (`max-scale-up-rate`, default 2).
    pub max_scale_up_rate: f64,
    /// At most ÷this replicas per decision (`max-scale-down-rate`, default 2).
    pub max_scale_down_rate: f64,
    /// No scale-up while the metric is within target × (1 + this) (`scale-up-tolerance`, 0.1).
    pub scale_up_tolerance: f64,
    /// No scale-down while the metric is within target × (1 − this) (`scale-down-tolerance`, 0.1).
    pub scale_down_tolerance: f64,
    /// KPA enters panic mode past this ratio (`panic-threshold`, default 2.0).
    pub panic_threshold: f64,
    /// Stabilization window for scale-up (`scale-up-cooldown-window`, default 0 s).
    pub scale_up_cooldown: Duration,
    /// Stabilization window for scale-down (`scale-down-cooldown-window`, default 300 s).
    pub scale_down_cooldown: Duration,
    /// Whether the target may go to zero (`scale-to-zero`, default false); `minReplicas`
    /// still clamps.
    pub scale_to_zero: bool,
    /// Averaging window of the stable signal (`spec.observeWindowSeconds`, default 180 s).
    pub stable_window: Duration,
    /// Averaging window of KPA's panic signal (`spec.panicWindowSeconds`, default 60 s, or the
    /// stable window if that is shorter).
    pub panic_window: Duration,
    /// SLO policy: time-to-first-token target (`autoscaling.brix.dev/ttft-slo-ms`, 1000 ms).
    pub ttft_slo: Duration,
    /// SLO policy: time-per-output-token target (`autoscaling.brix.dev/tpot-slo-ms`, 100 ms).
    pub tpot_slo: Duration,
    /// SLO policy: fraction of a replica's capacity at the SLO to plan for, leaving headroom
    /// for bursts inside a window (`autoscaling.brix.dev/target-utilization`, 0.8; 0 < x ≤ 1).
    pub target_utilization: f64,
    /// Seconds between decisions (`autoscaling.brix.dev/sync-period`, a Go duration); unset
    /// keeps the strategy's default (HPA 15 s, KPA 2 s, APA 10 s, SLO 5 s).
    pub sync_period: Option<Duration>,
    /// How long a zero recommendation must last before the target goes to zero
    /// (`autoscaling.brix.dev/scale-to-zero-grace-period`, Knative's 30 s).
    pub scale_to_zero_grace: Duration,
}

impl Default for ScalingKnobs {
    /// AIBrix's defaults (`NewBaseScalingContext`).
    fn default() -> Self {
        Self {
            max_scale_up_rate: 2.0,
            max_scale_down_rate: 2.0,
            scale_up_tolerance: 0.1,
            scale_down_tolerance: 0.1,
            panic_threshold: 2.0,
            scale_up_cooldown: Duration::ZERO,
            scale_down_cooldown: Duration::from_secs(300),
            scale_to_zero: false,
            stable_window: DEFAULT_STABLE_WINDOW,
            panic_window: DEFAULT_PANIC_WINDOW,
            ttft_slo: Duration::from_millis(1000),
            tpot_slo: Duration::from_millis(100),
            target_utilization: 0.8,
            sync_period: None,
            scale_to_zero_grace: Duration::from_secs(30),
        }
    }
}

/// One tunable, whichever name set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Knob {
    UpRate,
    DownRate,
    UpTolerance,
    DownTolerance,
    PanicThreshold,
    UpCooldown,
    DownCooldown,
    ScaleToZero,
    StableWindow,
    TtftSlo,
    TpotSlo,
    Utilization,
    SyncPeriod,
    ZeroGrace,
}

/// The keys AIBrix reads today.
const CANONICAL: [(&str, Knob); 8] = [
    ("autoscaling.aibrix.ai/max-scale-up-rate", Knob::UpRate),
    ("autoscaling.aibrix.ai/max-scale-down-rate", Knob::DownRate),
    (
        "autoscaling.aibrix.ai/scale-up-tolerance",
        Knob::UpTolerance,
    ),
    (
        "autoscaling.aibrix.ai/scale-down-tolerance",
        Knob::DownTolerance,
    ),
    (
        "autoscaling.aibrix.ai/panic-threshold",
        Knob::PanicThreshold,
    ),
    (
        "autoscaling.aibrix.ai/scale-up-cooldown-window",
        Knob::UpCooldown,
    ),
    (
        "autoscaling.aibrix.ai/scale-down-cooldown-window",
        Knob::DownCooldown,
    ),
    ("autoscaling.aibrix.ai/scale-to-zero", Knob::ScaleToZero),
];

/// Brix's keys: the SLO-capacity policy's targets, and the decision period and scale-to-zero
/// grace period every strategy reads.
const BRIX: [(&str, Knob); 5] = [
    ("autoscaling.brix.dev/ttft-slo-ms", Knob::TtftSlo),
    ("autoscaling.brix.dev/tpot-slo-ms", Knob::TpotSlo),
    ("autoscaling.brix.dev/target-utilization", Knob::Utilization),
    ("autoscaling.brix.dev/sync-period", Knob::SyncPeriod),
    (
        "autoscaling.brix.dev/scale-to-zero-grace-period",
        Knob::ZeroGrace,
    ),
];

/// Names older AIBrix versions and its sample manifests use; AIBrix now ignores them.
const LEGACY: [(&str, Knob); 9] = [
    (
        "autoscaling.aibrix.ai/up-fluctuation-tolerance",
        Knob::UpTolerance,
    ),
    (
        "autoscaling.aibrix.ai/down-fluctuation-tolerance",
        Knob::DownTolerance,
    ),
    (
        "apa.autoscaling.aibrix.ai/up-fluctuation-tolerance",
        Knob::UpTolerance,
    ),
    (
        "apa.autoscaling.aibrix.ai/down-fluctuation-tolerance",
        Knob::DownTolerance,
    ),
    ("apa.autoscaling.aibrix.ai/window", Knob::StableWindow),
    (
        "kpa.autoscaling.aibrix.ai/stable-window",
        Knob::StableWindow,
    ),
    (
        "kpa.autoscaling.aibrix.ai/scale-down-delay",
        Knob::DownCooldown,
    ),
    (
        "kpa.autoscaling.aibrix.ai/scale-up-cooldown",
        Knob::UpCooldown,
    ),
    (
        "kpa.autoscaling.aibrix.ai/panic-threshold",
        Knob::PanicThreshold,
    ),
];

/// Where a knob was set, and to what.
struct Setting<'a> {
    field: String,
    raw: &'a str,
}

/// Whether `key` belongs to the autoscaler (`autoscaling.aibrix.ai/`,
/// `*.autoscaling.aibrix.ai/`, or Brix's own `autoscaling.brix.dev/`, `*.autoscaling.brix.dev/`).
fn is_autoscaling_key(key: &str) -> bool {
    key.split_once('/').is_some_and(|(domain, _)| {
        ["autoscaling.aibrix.ai", "autoscaling.brix.dev"]
            .iter()
            .any(|d| domain == *d || domain.strip_suffix(d).is_some_and(|s| s.ends_with('.')))
    })
}

/// Reads the knobs from `metadata` and `spec`; also returns the legacy spellings it accepted.
pub(crate) fn resolve(
    meta: &ObjectMeta,
    spec: &PodAutoscalerSpec,
) -> Result<(ScalingKnobs, Vec<Deprecation>), FieldError> {
    let (settings, deprecations) = collect(meta)?;
    let mut knobs = ScalingKnobs::default();
    for (knob, setting) in &settings {
        apply(&mut knobs, *knob, setting)?;
    }
    apply_windows(&mut knobs, spec, settings.get(&Knob::StableWindow))?;
    Ok((knobs, deprecations))
}

/// Every autoscaling key of the annotations, then the labels, by the knob it sets.
fn collect(
    meta: &ObjectMeta,
) -> Result<(BTreeMap<Knob, Setting<'_>>, Vec<Deprecation>), FieldError> {
    let mut deprecations = Vec::new();
    let mut settings: BTreeMap<Knob, Setting<'_>> = BTreeMap::new();
    for (map, place) in [(&meta.annotations, "annotations"), (&meta.labels, "labels")] {
        for (key, raw) in map.iter().filter(|(key, _)| is_autoscaling_key(key)) {
            let field = format!("metadata.{place}[{key}]");
            let (knob, deprecation) = identify(key, place).ok_or_else(|| {
                let known: Vec<&str> = CANONICAL.iter().chain(&BRIX).map(|(k, _)| *k).collect();
                FieldError::new(
                    &field,
                    format!("unknown autoscaling key; known keys: {}", known.join(", ")),
                )
            })?;
            if let Some(message) = deprecation {
                deprecations.push(Deprecation {
                    field: field.clone(),
                    message,
                });
            }
            match settings.get(&knob) {
                Some(first) if first.raw.trim() != raw.trim() => {
                    return fail(
                        field,
                        format!(
                            "sets the same knob as {} to a different value; keep one",
                            first.field
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    settings.insert(knob, Setting { field, raw });
                }
            }
        }
    }
    Ok((settings, deprecations))
}

/// The knob `key` sets and, for a legacy spelling or place, what to say about it.
fn identify(key: &str, place: &str) -> Option<(Knob, Option<String>)> {
    if let Some((_, knob)) = CANONICAL.iter().chain(&BRIX).find(|(k, _)| *k == key) {
        let note = (place == "labels").then(|| {
            "read from labels as older AIBrix did; move it to metadata.annotations".to_string()
        });
        return Some((*knob, note));
    }
    let (_, knob) = LEGACY.iter().find(|(k, _)| *k == key)?;
    let note = format!(
        "legacy name, which AIBrix ignores and Brix reads as {}; rename it",
        current_name(*knob)
    );
    Some((*knob, Some(note)))
}

/// Parses one setting's value into `knobs`; the error names the key.
fn apply(knobs: &mut ScalingKnobs, knob: Knob, setting: &Setting<'_>) -> Result<(), FieldError> {
    let raw = setting.raw.trim();
    let bad = |why: &str| fail(setting.field.clone(), format!("'{raw}' {why}"));
    let duration =
        || parse_go_duration(raw).map_err(|e| FieldError::new(&setting.field, e.to_string()));
    match knob {
        Knob::UpRate | Knob::DownRate => {
            let Some(v) = parse_float(raw).filter(|v| *v >= 1.0) else {
                return bad("is not a rate: expected a number ≥ 1");
            };
            if knob == Knob::UpRate {
                knobs.max_scale_up_rate = v;
            } else {
                knobs.max_scale_down_rate = v;
            }
        }
        Knob::UpTolerance => match parse_float(raw).filter(|v| *v >= 0.0) {
            Some(v) => knobs.scale_up_tolerance = v,
            None => return bad("is not a tolerance: expected a number ≥ 0"),
        },
        Knob::DownTolerance => match parse_float(raw).filter(|v| (0.0..1.0).contains(v)) {
            Some(v) => knobs.scale_down_tolerance = v,
            None => return bad("is not a scale-down tolerance: expected 0 ≤ x < 1"),
        },
        Knob::PanicThreshold => match parse_float(raw).filter(|v| *v > 1.0) {
            Some(v) => knobs.panic_threshold = v,
            None => return bad("is not a panic threshold: expected a number > 1"),
        },
        Knob::UpCooldown => knobs.scale_up_cooldown = duration()?,
        Knob::DownCooldown => knobs.scale_down_cooldown = duration()?,
        Knob::ScaleToZero => match parse_go_bool(raw) {
            Some(v) => knobs.scale_to_zero = v,
            None => return bad("is not a boolean: expected true or false"),
        },
        Knob::StableWindow => match duration()? {
            d if !d.is_zero() && d <= MAX_WINDOW => knobs.stable_window = d,
            _ => return bad("is not a window: expected 1s to 1h"),
        },
        Knob::TtftSlo | Knob::TpotSlo => {
            let max_ms = MAX_SLO.as_secs_f64() * 1e3;
            let Some(ms) = parse_float(raw).filter(|v| *v > 0.0 && *v <= max_ms) else {
                return bad("is not a latency target: expected milliseconds, 0 < x ≤ 3600000");
            };
            let d = Duration::from_secs_f64(ms / 1e3);
            if knob == Knob::TtftSlo {
                knobs.ttft_slo = d;
            } else {
                knobs.tpot_slo = d;
            }
        }
        Knob::Utilization => match parse_float(raw).filter(|v| *v > 0.0 && *v <= 1.0) {
            Some(v) => knobs.target_utilization = v,
            None => return bad("is not a utilization: expected 0 < x ≤ 1"),
        },
        Knob::SyncPeriod => match duration()? {
            d if !d.is_zero() && d <= MAX_WINDOW => knobs.sync_period = Some(d),
            _ => return bad("is not a decision period: expected 1s to 1h (e.g. 5s)"),
        },
        Knob::ZeroGrace => match duration()? {
            d if d <= MAX_WINDOW => knobs.scale_to_zero_grace = d,
            _ => return bad("is not a grace period: expected 0s to 1h (e.g. 30s)"),
        },
    }
    Ok(())
}

/// The stable window from the spec (which must agree with a legacy window annotation, if
/// any) and the panic window, which may not exceed it.
fn apply_windows(
    knobs: &mut ScalingKnobs,
    spec: &PodAutoscalerSpec,
    legacy: Option<&Setting<'_>>,
) -> Result<(), FieldError> {
    if let Some(secs) = spec.observe_window_seconds {
        let window = Duration::from_secs(secs.into());
        if let Some(Setting { field, .. }) = legacy
            && window != knobs.stable_window
        {
            return fail(
                "spec.observeWindowSeconds",
                format!("disagrees with {field}; keep one"),
            );
        }
        knobs.stable_window = window;
    }
    knobs.panic_window = match spec.panic_window_seconds {
        Some(secs) => {
            let window = Duration::from_secs(secs.into());
            if window > knobs.stable_window {
                return fail(
                    "spec.panicWindowSeconds",
                    format!(
                        "{secs} s is longer than the stable window ({} s)",
                        knobs.stable_window.as_secs()
                    ),
                );
            }
            window
        }
        None => DEFAULT_PANIC_WINDOW.min(knobs.stable_window),
    };
    Ok(())
}

/// The name to write instead of a legacy one.
fn current_name(knob: Knob) -> &'static str {
    match CANONICAL.iter().find(|(_, k)| *k == knob) {
        Some((name, _)) => name,
        None => "spec.observeWindowSeconds",
    }
}

/// A finite number, as Go's `strconv.ParseFloat` would read it for sane inputs.
fn parse_float(raw: &str) -> Option<f64> {
    raw.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a duration like 300s, 5m or 1h30m: {reason}")]
pub struct GoDurationError {
    input: String,
    reason: &'static str,
}

/// Parses a Go `time.ParseDuration` string (`300s`, `1.5h`, `1h30m`, `500ms`, `0`), which is
/// how AIBrix's cooldown annotations are written; negative durations are refused.
pub fn parse_go_duration(input: &str) -> Result<Duration, GoDurationError> {
    let err = |reason| GoDurationError {
        input: input.to_string(),
        reason,
    };
    let mut s = input.strip_prefix('+').unwrap_or(input);
    if s.starts_with('-') {
        return Err(err("must not be negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut nanos = 0.0_f64;
    while !s.is_empty() {
        let digits = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit (ns, us, ms, s, m or h)"))?;
        let (number, rest) = s.split_at(digits);
        if number.is_empty() || number == "." {
            return Err(err("expected a number before the unit"));
        }
        let value: f64 = number.parse().map_err(|_| err("bad number"))?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, tail) = rest.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err("unknown unit (ns, us, ms, s, m or h)")),
        };
        nanos += value * scale;
        s = tail;
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(err("too long"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let s = Duration::from_secs;
        for (input, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("300s", s(300)),
            ("5m", s(300)),
            ("1h30m", s(5400)),
            ("1.5h", s(5400)),
            ("+3m", s(180)),
            ("500ms", Duration::from_millis(500)),
            ("2us", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
        ] {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
        for bad in ["", "300", "-5s", "5x", "s", "1h30", ".s", "1d", "5 m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }

    #[test]
    fn autoscaling_keys() {
        assert!(is_autoscaling_key("autoscaling.aibrix.ai/x"));
        assert!(is_autoscaling_key("kpa.autoscaling.aibrix.ai/x"));
        assert!(!is_autoscaling_key("model.aibrix.ai/name"));
        assert!(!is_autoscaling_key("app.kubernetes.io/name"));
        assert!(!is_autoscaling_key("myautoscaling.aibrix.ai/x"));
        assert!(is_autoscaling_key("autoscaling.brix.dev/ttft-slo-ms"));
        assert!(is_autoscaling_key("slo.autoscaling.brix.dev/x"));
        assert!(!is_autoscaling_key("myautoscaling.brix.dev/x"));
        assert!(!is_autoscaling_key("brix.dev/x"));
    }
}
