//! Talking to the pods: listing what each engine holds, turning that into the placement's
//! snapshot, carrying out the plan's loads and unloads with per-pod back-off, and the
//! finalizer's unloads.

use brix_adapters::{ActionKind, AdapterView, Plan, PodView, Snapshot};
use brix_api::{Artifact, ModelAdapterResource};
use brix_platform::adapters::engine::CallError;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use std::collections::BTreeSet;
use tokio::task::JoinSet;

use super::pods::PodInfo;
use super::{AdapterState, BACKOFF_BASE, BACKOFF_CAP, Backoff, Config, Context, Listings};

/// Every placement in a snapshot needs a base model; pods are already the adapter's by
/// selector, so one name serves both sides.
const BASE: &str = "base";

/// `/v1/models` of each candidate pod, concurrently (each call has its own timeout).
pub(crate) async fn list(ctx: &Context, pods: &[PodInfo], key: Option<&str>) -> Listings {
    let mut calls = JoinSet::new();
    for p in pods.iter().filter(|p| p.candidate) {
        let Some(address) = p.engine.clone() else {
            continue;
        };
        let (engine, name, key) = (ctx.engine.clone(), p.name.clone(), key.map(str::to_string));
        calls.spawn(async move {
            let r = engine.list(&address, key.as_deref()).await;
            (name, r.map_err(|e| scrub(&e.why, key.as_deref())))
        });
    }
    let mut out = Listings::new();
    while let Some(Ok((name, r))) = calls.join_next().await {
        if let Err(why) = &r {
            tracing::debug!(pod = %name, error = %why, "listing adapters");
        }
        out.insert(name, r);
    }
    out
}

/// The placement's view: the selected pods (ready = a candidate whose engine answered), and
/// this one adapter. Adapters the engines hold that are not this one count against capacity.
pub(crate) fn snapshot(
    name: &str,
    obj: &ModelAdapterResource,
    pods: &[PodInfo],
    listings: &Listings,
    state: &AdapterState,
    previous: BTreeSet<String>,
    cfg: &Config,
) -> Snapshot {
    let pod_views = pods
        .iter()
        .map(|p| {
            let listing = listings.get(&p.name).and_then(|l| l.as_ref().ok());
            PodView {
                name: p.name.clone(),
                base_model: BASE.into(),
                ready: p.candidate && listing.is_some(),
                max_loras: p.max_loras,
                max_cpu_loras: p.max_cpu_loras,
                loaded: listing.map(|l| l.adapters.clone()).unwrap_or_default(),
                // No gateway in this process: the status without the pod is the drain, and
                // a round later the copy may go.
                draining: state
                    .draining
                    .iter()
                    .filter(|d| **d == p.name)
                    .map(|_| (name.to_string(), true))
                    .collect(),
            }
        })
        .collect();
    let adapter = AdapterView {
        name: name.to_string(),
        base_model: BASE.into(),
        replicas: obj.spec.replicas,
        eligible: None,
        traffic_rps: 0.0,
        deleted: false,
    };
    Snapshot {
        pods: pod_views,
        adapters: vec![adapter],
        previous: [(name.to_string(), previous)].into_iter().collect(),
        config: cfg.placement.clone(),
    }
}

/// How a load reaches a pod.
enum Via {
    /// The engine's own loader with this `lora_path`.
    Engine(String),
    /// The runtime sidecar, which downloads the artifact itself.
    Sidecar,
}

/// Where `url` can be loaded from on a pod with (or without) the sidecar; `Err` says why it
/// cannot (the URL itself is not repeated: it may carry a token).
fn via(url: &str, sidecar: bool) -> Result<Via, String> {
    if sidecar {
        return Ok(Via::Sidecar);
    }
    match Artifact::parse(url) {
        Ok(Artifact::HuggingFace(id)) => Ok(Via::Engine(id.to_string())),
        Ok(Artifact::Local(path)) => Ok(Via::Engine(path.to_string())),
        Ok(_) => Err(format!(
            "artifactURL {}:// needs the {} sidecar on the pod (the engine loads only Hugging \
             Face ids and local paths)",
            url.split("://").next().unwrap_or_default(),
            super::SIDECAR_CONTAINER
        )),
        Err(why) => Err(format!("artifactURL: {why}")),
    }
}

/// Carries out the plan's unloads and loads (drains and resumes are bookkeeping here);
/// returns the pods whose engine changed, to be listed again.
pub(crate) async fn execute(
    ctx: &Context,
    obj: &ModelAdapterResource,
    plan: &Plan,
    pods: &[PodInfo],
    state: &mut AdapterState,
    now: Timestamp,
) -> BTreeSet<String> {
    let key = obj.spec.additional_config.get("api-key").cloned();
    let name = obj.name_any();
    let mut calls = JoinSet::new();
    for a in plan.actions.iter().filter(|a| a.adapter == name) {
        let Some(pod) = pods.iter().find(|p| p.name == a.pod) else {
            continue;
        };
        match a.kind {
            ActionKind::Drain => {
                state.draining.insert(pod.name.clone());
                continue;
            }
            ActionKind::Resume => {
                state.draining.remove(&pod.name);
                continue;
            }
            ActionKind::Load | ActionKind::Unload => {}
        }
        if a.kind == ActionKind::Load
            && state
                .backoff
                .get(&pod.name)
                .is_some_and(|b| b.failed() || b.next.is_none_or(|t| now < t))
        {
            continue;
        }
        let (engine, p, key, kind) = (ctx.engine.clone(), pod.clone(), key.clone(), a.kind);
        let (name, url) = (name.clone(), obj.spec.artifact_url.clone());
        let extra = obj.spec.additional_config.clone();
        calls.spawn(async move {
            let r = match kind {
                ActionKind::Unload => unload(&engine, &p, &name, key.as_deref()).await,
                _ => match via(&url, p.sidecar.is_some()) {
                    Err(why) => Err(CallError {
                        why,
                        retryable: false,
                    }),
                    Ok(Via::Sidecar) => {
                        let at = p.sidecar.clone().unwrap_or_default();
                        engine
                            .sidecar_load(&at, &name, &url, &extra, key.as_deref())
                            .await
                    }
                    Ok(Via::Engine(path)) => {
                        let at = p.engine.clone().unwrap_or_default();
                        engine.load(&at, &name, &path, key.as_deref()).await
                    }
                },
            };
            (p.name, kind, r)
        });
    }
    let mut changed = BTreeSet::new();
    while let Some(Ok((pod, kind, r))) = calls.join_next().await {
        match r {
            Ok(()) => {
                tracing::info!(adapter = %name, %pod, action = ?kind, "adapter");
                if kind == ActionKind::Unload {
                    state.draining.remove(&pod);
                } else {
                    state.backoff.remove(&pod);
                }
                changed.insert(pod);
            }
            Err(e) => {
                let why = scrub(&e.why, key.as_deref());
                tracing::warn!(adapter = %name, %pod, action = ?kind, error = %why, "adapter");
                if kind == ActionKind::Load {
                    let failures = state.backoff.get(&pod).map_or(0, |b| b.failures) + 1;
                    let next = e.retryable.then(|| now + backoff(failures));
                    state.backoff.insert(
                        pod,
                        Backoff {
                            failures,
                            next,
                            why,
                        },
                    );
                }
            }
        }
    }
    changed
}

/// The wait after `failures` failed loads: 5 s × 2^(n-1), at most 300 s.
pub(crate) fn backoff(failures: u32) -> SignedDuration {
    let wait = BACKOFF_BASE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    SignedDuration::try_from(wait).unwrap_or(SignedDuration::from_secs(300))
}

/// `why` with the engine key blanked, should an engine ever echo it.
fn scrub(why: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if !k.is_empty() => why.replace(k, "***"),
        _ => why.to_string(),
    }
}

async fn unload(
    engine: &brix_platform::adapters::engine::EngineClient,
    p: &PodInfo,
    name: &str,
    key: Option<&str>,
) -> Result<(), CallError> {
    match (&p.sidecar, &p.engine) {
        (Some(at), _) => engine.sidecar_unload(at, name, key).await,
        (None, Some(at)) => engine.unload(at, name, key).await,
        (None, None) => Ok(()),
    }
}

/// The finalizer's work: unload from every pod that still exists among the status's
/// instances (and the last placement); an error that may pass keeps the finalizer.
pub(crate) async fn cleanup(
    obj: &ModelAdapterResource,
    ns: &str,
    ctx: &Context,
) -> Result<Action, crate::Error> {
    let uid = obj
        .uid()
        .unwrap_or_else(|| format!("{ns}/{}", obj.name_any()));
    let name = obj.name_any();
    let key = obj.spec.additional_config.get("api-key").cloned();
    let mut on: BTreeSet<String> = obj
        .status
        .as_ref()
        .map(|s| s.instances.iter().cloned().collect())
        .unwrap_or_default();
    on.extend(ctx.take_state(&uid).previous.unwrap_or_default());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let ready_for = SignedDuration::from_secs(0);
    for pod_name in &on {
        let Some(pod) = pods.get_opt(pod_name).await? else {
            continue;
        };
        let Some(p) = PodInfo::from_pod(&pod, ctx.now(), ready_for) else {
            continue;
        };
        match unload(&ctx.engine, &p, &name, key.as_deref()).await {
            Ok(()) => tracing::info!(adapter = %name, pod = %pod_name, "unloaded on delete"),
            Err(e) if e.retryable && pod.metadata.deletion_timestamp.is_none() => {
                return Err(crate::Error::Pod(format!(
                    "unloading {name} from {pod_name}: {}",
                    scrub(&e.why, key.as_deref())
                )));
            }
            Err(e) => tracing::warn!(adapter = %name, pod = %pod_name,
                error = %scrub(&e.why, key.as_deref()), "unload on delete failed; letting go"),
        }
    }
    ctx.put_state(&uid, None);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        let secs: Vec<i64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn engines_take_hub_ids_and_paths_other_artifacts_need_the_sidecar() {
        assert!(
            matches!(via("huggingface://org/repo", false), Ok(Via::Engine(p)) if p == "org/repo")
        );
        assert!(matches!(via("/models/sql", false), Ok(Via::Engine(p)) if p == "/models/sql"));
        assert!(matches!(via("s3://b/k", true), Ok(Via::Sidecar)));
        let err = via("https://u:tok@host/x", false).err().unwrap_or_default();
        assert!(err.contains("https://") && err.contains("aibrix-runtime") && !err.contains("tok"));
    }
}
