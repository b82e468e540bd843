//! The PodAutoscaler's `status`, AIBrix's shape: conditions that keep their
//! `lastTransitionTime` while their status stays, `scalingHistory` (at most 5, newest last),
//! `desiredScale`, `actualScale`, `lastScaleTime`, `scheduledBounds`, `observedGeneration`.
//! Written with a merge patch of the status subresource, and only when it changed.

use brix_api::{Condition, PodAutoscalerResource, PodAutoscalerStatus, ScalingDecision};
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

/// Entries kept in `status.scalingHistory`.
pub(super) const HISTORY: usize = 5;

/// Condition types, as AIBrix names them.
pub(super) const VALID_SPEC: &str = "ValidSpec";
/// Another PodAutoscaler targets the same object.
pub(super) const CONFLICT: &str = "MultiPodAutoscalerConflict";
/// The target's `/scale` can be read and written.
pub(super) const ABLE_TO_SCALE: &str = "AbleToScale";
/// The metrics were read and a decision computed from them.
pub(super) const SCALING_ACTIVE: &str = "ScalingActive";
/// All of the above are good.
pub(super) const READY: &str = "Ready";

/// The next status, built from the current one.
pub(super) struct Next {
    /// The status being built.
    pub status: PodAutoscalerStatus,
    generation: Option<i64>,
    now: String,
}

impl Next {
    /// Starts from `current` (the object's status) for `generation` at RFC 3339 time `now`.
    pub(super) fn from(
        current: Option<&PodAutoscalerStatus>,
        generation: Option<i64>,
        now: String,
    ) -> Self {
        let mut status = current.cloned().unwrap_or_default();
        status.observed_generation = generation;
        Self {
            status,
            generation,
            now,
        }
    }

    /// Sets condition `kind`; its `lastTransitionTime` moves only when `ok` flips (or it is
    /// new).
    pub(super) fn condition(&mut self, kind: &str, ok: bool, reason: &str, message: String) {
        let status = if ok { "True" } else { "False" };
        let message = bounded(&message);
        let conditions = &mut self.status.conditions;
        let at = match conditions.iter().find(|c| c.kind == kind) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(self.now.clone()),
        };
        let c = Condition {
            kind: kind.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: at,
            observed_generation: self.generation,
        };
        match conditions.iter_mut().find(|c| c.kind == kind) {
            Some(slot) => *slot = c,
            None => conditions.push(c),
        }
    }

    /// Whether condition `kind` is `True` now.
    fn is_true(&self, kind: &str) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.kind == kind && c.status == "True")
    }

    /// Derives `Ready` from the others: a valid spec, no conflict, able to scale, scaling
    /// active.
    pub(super) fn ready(&mut self) {
        let conflict = self.is_true(CONFLICT);
        let missing: Vec<&str> = [VALID_SPEC, ABLE_TO_SCALE, SCALING_ACTIVE]
            .into_iter()
            .filter(|k| !self.is_true(k))
            .collect();
        let (ok, message) = match (conflict, missing.is_empty()) {
            (false, true) => (true, "the autoscaler is scaling its target".to_string()),
            (true, _) => (false, format!("{CONFLICT} is True")),
            (false, false) => (false, format!("not True: {}", missing.join(", "))),
        };
        let reason = if ok { "Ready" } else { "NotReady" };
        self.condition(READY, ok, reason, message);
    }

    /// Appends a scaling attempt to `scalingHistory` (the oldest beyond [`HISTORY`] drop).
    pub(super) fn record(
        &mut self,
        previous: u32,
        new: u32,
        reason: String,
        error: Option<String>,
    ) {
        let ok = error.is_none();
        let history = &mut self.status.scaling_history;
        history.push(ScalingDecision {
            timestamp: self.now.clone(),
            previous_scale: clamp(previous),
            new_scale: clamp(new),
            reason: bounded(&reason),
            success: error.is_none(),
            error: error.map(|e| bounded(&e)),
        });
        let extra = history.len().saturating_sub(HISTORY);
        history.drain(..extra);
        if ok {
            self.status.last_scale_time = Some(self.now.clone());
        }
    }
}

/// A replica count as the status's `int32`.
pub(super) fn clamp(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Longest message kept in a condition or history entry (texts can come from a remote
/// endpoint or the API server).
const MAX_CHARS: usize = 512;

/// `text` on one line, at most [`MAX_CHARS`] characters.
fn bounded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    if text.chars().count() > MAX_CHARS {
        out.push('…');
    }
    out
}

/// Patches `status` onto the object when it differs from `current`; `Ok(false)` when
/// nothing changed (no call made). Fields now unset are sent as `null` so the merge patch
/// clears them.
pub(super) async fn write(
    api: &Api<PodAutoscalerResource>,
    name: &str,
    current: Option<&PodAutoscalerStatus>,
    status: &PodAutoscalerStatus,
) -> Result<bool, kube::Error> {
    if current == Some(status) {
        return Ok(false);
    }
    let mut body = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        for key in [
            "lastScaleTime",
            "conditions",
            "scalingHistory",
            "scheduledBounds",
            "observedGeneration",
        ] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": body });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(true)
}
