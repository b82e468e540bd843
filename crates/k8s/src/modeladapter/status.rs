//! The ModelAdapter's status in AIBrix's shape, from what the engines listed: instances are
//! pods whose `/v1/models` names the adapter (and that are not being drained), never pods it
//! was merely sent to.

use brix_adapters::Plan;
use brix_api::{Condition, ModelAdapterResource, ModelAdapterStatus};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::pods::PodInfo;
use super::{AdapterState, Backoff, Listings, MAX_FAILURES};

/// The status for this round; conditions keep their `lastTransitionTime` while their status
/// stays the same, so an unchanged world gives an unchanged status (and no patch).
pub(crate) fn compute(
    obj: &ModelAdapterResource,
    plan: &Plan,
    pods: &[PodInfo],
    listings: &Listings,
    state: &AdapterState,
    now: Timestamp,
) -> ModelAdapterStatus {
    let name = obj.name_any();
    let candidates: Vec<String> = pods
        .iter()
        .filter(|p| p.candidate)
        .map(|p| p.name.clone())
        .collect();
    let instances: Vec<String> = pods
        .iter()
        .filter(|p| p.candidate && !state.draining.contains(&p.name))
        .filter(|p| {
            listings
                .get(&p.name)
                .and_then(|l| l.as_ref().ok())
                .is_some_and(|l| l.adapters.contains(&name))
        })
        .map(|p| p.name.clone())
        .collect();
    let placed = plan.status.get(&name);
    let desired = placed.map_or(0, |s| s.wanted);
    let ready = instances.len() as u32;
    let failures: Vec<(&String, &Backoff)> = state
        .backoff
        .iter()
        .filter(|(p, _)| !instances.contains(p))
        .collect();
    let failed = failures.iter().any(|(_, b)| b.failed());
    let mut conditions = vec![cond(
        "Initialized",
        true,
        "Validated",
        "spec accepted".into(),
    )];
    conditions.push(match placed.and_then(|s| s.shortfall) {
        Some(why) => cond(
            "Scheduled",
            false,
            &format!("{why:?}"),
            format!(
                "placed on {} of {desired} pods ({} candidates)",
                placed.map_or(0, |s| s.placed),
                candidates.len()
            ),
        ),
        None => cond(
            "Scheduled",
            desired > 0,
            "Placed",
            format!("placed on {desired} pods"),
        ),
    });
    conditions.push(if desired > 0 && ready >= desired {
        cond(
            "Ready",
            true,
            "Loaded",
            format!("listed by {ready} of {desired} pods"),
        )
    } else if !failures.is_empty() {
        let reason = if failed { "LoadFailed" } else { "LoadRetrying" };
        let text: Vec<String> = failures
            .iter()
            .map(|(p, b)| format!("{p}: {} (attempt {} of {MAX_FAILURES})", b.why, b.failures))
            .collect();
        cond("Ready", false, reason, text.join("; "))
    } else {
        cond(
            "Ready",
            false,
            "Loading",
            format!("listed by {ready} of {desired} pods"),
        )
    });
    let phase = if failed && ready == 0 {
        "Failed"
    } else if ready > 0 {
        "Running"
    } else if placed.is_some_and(|s| s.placed > 0) {
        "Scheduled"
    } else {
        "Pending"
    };
    finish(obj, phase, conditions, candidates, instances, desired, now)
}

/// The status of an adapter whose spec cannot be acted on.
pub(crate) fn invalid(obj: &ModelAdapterResource, why: &str, now: Timestamp) -> ModelAdapterStatus {
    let conditions = vec![cond("Initialized", false, "InvalidSpec", why.to_string())];
    finish(obj, "Failed", conditions, Vec::new(), Vec::new(), 0, now)
}

fn finish(
    obj: &ModelAdapterResource,
    phase: &str,
    mut conditions: Vec<Condition>,
    candidates: Vec<String>,
    instances: Vec<String>,
    desired: u32,
    now: Timestamp,
) -> ModelAdapterStatus {
    let old = obj.status.as_ref();
    let generation = obj.metadata.generation;
    for c in &mut conditions {
        c.observed_generation = generation;
        let before = old.and_then(|s| s.conditions.iter().find(|o| o.kind == c.kind));
        c.last_transition_time = match before {
            Some(o) if o.status == c.status => o.last_transition_time.clone(),
            // metav1.Time: RFC 3339 in whole seconds, as the API server stores it.
            _ => Some(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        };
    }
    ModelAdapterStatus {
        phase: Some(phase.to_string()),
        ready_replicas: instances.len() as i32,
        desired_replicas: i32::try_from(desired).unwrap_or(i32::MAX),
        candidates,
        conditions,
        instances,
        observed_generation: generation,
    }
}

fn cond(kind: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        kind: kind.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: None,
        observed_generation: None,
    }
}

/// The merge patch that sets `st`, with empty lists written out so they clear old ones.
pub(crate) fn patch_body(st: &ModelAdapterStatus) -> Result<serde_json::Value, crate::Error> {
    let mut v = serde_json::to_value(st).map_err(|e| crate::Error::Other(e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        for k in ["candidates", "conditions", "instances"] {
            m.entry(k).or_insert_with(|| serde_json::json!([]));
        }
    }
    Ok(serde_json::json!({ "status": v }))
}
