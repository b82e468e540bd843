//! A PodAutoscaler resolved for the controller: the spec validated (brix-api's rules for one
//! document), the policy and the metric feeds, the target; the conflict rule (the oldest
//! PodAutoscaler of a target wins); `status.scheduledBounds`.

use brix_api::{PodAutoscaler, PodAutoscalerResource, Resource, Schedule, validate_resources};
use brix_autoscaler::Policy;
use brix_platform::autoscale::source::Feed;
use kube::ResourceExt;

use super::Tracked;
use super::status::clamp;
use super::target::TargetRef;

/// A PodAutoscaler resolved into what the autoscaler runs.
pub(super) struct Planned {
    pub policy: Policy,
    pub feeds: Vec<Feed>,
    pub schedules: Vec<Schedule>,
    pub target: TargetRef,
}

/// The local document the policy code reads, from the custom resource.
fn document(pa: &PodAutoscalerResource) -> PodAutoscaler {
    use kube::Resource as _;
    PodAutoscaler {
        api_version: PodAutoscalerResource::api_version(&()).to_string(),
        metadata: brix_api::ObjectMeta {
            name: pa.name_any(),
            namespace: pa.namespace(),
            labels: pa.labels().clone(),
            annotations: pa.annotations().clone(),
        },
        spec: pa.spec.clone(),
    }
}

/// Validates the spec (brix-api's rules for one document, without the fleet file's: the
/// target may be any kind with `/scale`) and resolves it; `Err` names the field.
pub(super) fn plan(pa: &PodAutoscalerResource) -> Result<Planned, String> {
    let doc = document(pa);
    let target = TargetRef::of(&doc.spec.scale_target_ref)?;
    let mut local = doc.clone();
    local.spec.scale_target_ref.kind = None;
    local.spec.scale_target_ref.api_version = None;
    let name = local.spec.scale_target_ref.name.clone();
    validate_resources(&[Resource::PodAutoscaler(local)], &[name.as_str()]).map_err(|e| {
        let field = e.field.strip_prefix("resources[0].").unwrap_or(&e.field);
        format!("{field}: {}", e.message)
    })?;
    let policy = Policy::from_document(&doc, None).map_err(|e| match e {
        brix_autoscaler::PolicyError::NoProfile => "spec.scalingStrategy: SLO needs what one replica serves, which the Kubernetes controller does not know; use HPA, KPA or APA".to_string(),
        other => other.to_string(),
    })?;
    let mut feeds = Vec::new();
    for (i, source) in doc.spec.metrics_sources.iter().enumerate() {
        let at = format!("spec.metricsSources[{i}]");
        let feed = Feed::of(source, &at)?;
        if matches!(feed, Feed::Gateway) {
            return Err(format!(
                "{at}: an external source without an endpoint reads the gateway's own counts, which the Kubernetes controller does not have; give an endpoint, or use a pod source"
            ));
        }
        feeds.push(feed);
    }
    Ok(Planned {
        policy,
        feeds,
        schedules: doc.spec.schedules.clone(),
        target,
    })
}

/// The PodAutoscaler that wins `pa`'s target among `all` (the oldest valid one; then by name),
/// when it is another one. An invalid PodAutoscaler scales nothing, so it blocks no other.
pub(super) fn conflict_winner<'a>(
    pa: &PodAutoscalerResource,
    target: &TargetRef,
    all: &'a [PodAutoscalerResource],
) -> Option<&'a PodAutoscalerResource> {
    let key = |p: &PodAutoscalerResource| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.name_any(),
        )
    };
    let winner = all
        .iter()
        .filter(|p| plan(p).is_ok_and(|planned| planned.target.same_object(target)))
        .min_by_key(|p| key(p))?;
    (winner.metadata.uid != pa.metadata.uid).then_some(winner)
}

/// `status.scheduledBounds`: the schedule in force and the bounds it sets (the spec's where
/// it sets none); `None` without schedules.
pub(super) fn scheduled_bounds(t: &Tracked, now: f64) -> Option<brix_api::ScheduledBounds> {
    let policy = t.scaler.policy();
    if !t.scheduled {
        return None;
    }
    let active = t.schedules.active(now);
    Some(brix_api::ScheduledBounds {
        active_schedule: active.map(|(n, _, _)| n.to_string()),
        effective_min: clamp(
            active
                .and_then(|(_, min, _)| min)
                .unwrap_or(policy.min_replicas),
        ),
        effective_max: clamp(
            active
                .and_then(|(_, _, max)| max)
                .unwrap_or(policy.max_replicas),
        ),
    })
}
