//! The ModelAdapter controller: the same placement code as `brix up` ([`brix_adapters::plan`])
//! over the pods a ModelAdapter selects, loads and unloads through each pod (vLLM's LoRA API,
//! or AIBrix's runtime sidecar when the pod has an `aibrix-runtime` container), and a status
//! that says only what the engines report: an instance is a pod whose `/v1/models` lists the
//! adapter, re-checked on every resync, so an adapter lost in an engine restart is loaded
//! again. The finalizer [`FINALIZER`] unloads the adapter from its pods before the object
//! goes.
//!
//! Per pod, a failed load backs off (5 s × 2^n, at most 300 s); only errors that may pass
//! (transport, timeouts, 5xx) are retried, and after [`MAX_FAILURES`] the adapter is Failed.
//! `additionalConfig.api-key` is sent as `Authorization: Bearer` to the engine and never
//! logged or written into the status.

mod act;
mod owned;
mod pods;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_api::{ModelAdapterResource, ModelAdapterStatus};
use brix_platform::adapters::engine::{EngineClient, Listing};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

pub use owned::{FIELD_MANAGER, MANAGED_BY};
pub use pods::{DEFAULT_PORT, PORT_LABEL, SIDECAR_CONTAINER, SIDECAR_PORT};

use crate::rbac::Rule;

/// The API calls this component makes.
pub const RULES: &[Rule] = &[
    Rule {
        group: "model.aibrix.ai",
        resources: &["modeladapters"],
        verbs: &["get", "list", "watch", "patch"],
    },
    Rule {
        group: "model.aibrix.ai",
        resources: &["modeladapters/status"],
        verbs: &["patch"],
    },
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["get", "list", "watch"],
    },
    // The owned headless Service and EndpointSlice, by server-side apply.
    Rule {
        group: "",
        resources: &["services"],
        // Server-side apply of an object that does not exist yet is also checked for `create`.
        verbs: &["create", "patch"],
    },
    Rule {
        group: "discovery.k8s.io",
        resources: &["endpointslices"],
        verbs: &["create", "patch"],
    },
];

/// The finalizer that unloads the adapter from its pods before the object is deleted.
pub const FINALIZER: &str = "model.aibrix.ai/adapter-unload";
/// Failed loads on a pod before the adapter is Failed (AIBrix's limit).
pub const MAX_FAILURES: u32 = 5;
/// First retry after a failed load; doubles per failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The controller's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// A pod takes adapters once Ready for this long (AIBrix: 5 s), so a flapping pod is
    /// not loaded and unloaded.
    pub ready_for: Duration,
    /// Resync while the adapter is not Ready.
    pub requeue_pending: Duration,
    /// Resync once Ready (re-verifies every pod still lists it).
    pub requeue_ready: Duration,
    /// The placement policy's knobs (`brix up`'s).
    pub placement: brix_adapters::Config,
    /// Keep AIBrix's owned objects: a headless Service named after the adapter and an
    /// EndpointSlice of its instances.
    pub owned_objects: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ready_for: Duration::from_secs(5),
            requeue_pending: Duration::from_secs(10),
            requeue_ready: Duration::from_secs(60),
            placement: brix_adapters::Config::default(),
            owned_objects: true,
        }
    }
}

/// The time source, injectable so tests decide when a pod has been ready long enough and when
/// a back-off ends.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What the reconciler shares: the client, the settings, and per-adapter memory (last
/// placement, drains, back-offs) keyed by the object's UID.
pub struct Context {
    client: kube::Client,
    cfg: Config,
    engine: EngineClient,
    clock: Clock,
    state: Mutex<BTreeMap<String, AdapterState>>,
}

/// What the controller remembers of one adapter between reconciles.
#[derive(Clone, Debug, Default)]
pub(crate) struct AdapterState {
    /// `metadata.generation` the back-offs belong to (a new spec retries at once).
    generation: Option<i64>,
    /// The last plan's pods (`None` before the first: then the status's instances).
    previous: Option<BTreeSet<String>>,
    /// Pods it is being drained from (no longer in `instances`): unloaded next round.
    draining: BTreeSet<String>,
    /// By pod.
    backoff: BTreeMap<String, Backoff>,
    /// What the owned Service and EndpointSlice were last applied with.
    owned: Option<owned::Owned>,
}

/// A pod where loading failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Backoff {
    failures: u32,
    /// When to try again; `None`: not until the spec changes or the pod is replaced.
    next: Option<Timestamp>,
    /// One line (engine status and message, or the transport error); never a secret.
    why: String,
}

impl Backoff {
    fn failed(&self) -> bool {
        self.failures >= MAX_FAILURES || self.next.is_none()
    }
}

impl Context {
    /// A context on the system clock.
    pub fn new(client: kube::Client, cfg: Config) -> Self {
        Self::with_clock(client, cfg, Arc::new(Timestamp::now))
    }

    /// A context whose time is `clock`'s.
    pub fn with_clock(client: kube::Client, cfg: Config, clock: Clock) -> Self {
        Self {
            client,
            cfg,
            engine: EngineClient::new(),
            clock,
            state: Mutex::new(BTreeMap::new()),
        }
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    fn take_state(&self, uid: &str) -> AdapterState {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.get(uid).cloned().unwrap_or_default()
    }

    fn put_state(&self, uid: &str, s: Option<AdapterState>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s {
            Some(s) => state.insert(uid.to_string(), s),
            None => state.remove(uid),
        };
    }
}

/// Runs the controller until the process ends: ModelAdapters in `scope`, requeued when a pod
/// they select changes.
pub async fn run(
    client: kube::Client,
    scope: crate::Scope,
    cfg: Config,
) -> Result<(), crate::Error> {
    let (adapters, pods): (Api<ModelAdapterResource>, Api<Pod>) = match &scope.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller = Controller::new(adapters, watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(Context::new(client, cfg));
    controller
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            let labels = pod.labels().clone();
            let ns = pod.namespace();
            store
                .state()
                .into_iter()
                .filter(|a| a.namespace() == ns && selects(a, &labels))
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "modeladapter reconcile");
            }
        })
        .await;
    Ok(())
}

/// Whether the adapter's selector (or base model) picks a pod with `labels`.
fn selects(a: &ModelAdapterResource, labels: &BTreeMap<String, String>) -> bool {
    let doc = document(a);
    match &doc.spec.pod_selector {
        Some(sel) if !sel.to_query().is_empty() => sel.matches(labels),
        _ => doc.target_model().is_some_and(|m| {
            labels
                .get(brix_api::MODEL_NAME_LABEL)
                .is_some_and(|l| l == m)
        }),
    }
}

/// The local document the adapters code takes, from the custom resource.
pub fn document(a: &ModelAdapterResource) -> brix_api::ModelAdapter {
    brix_api::ModelAdapter {
        api_version: brix_api::ADAPTER_API_VERSION.to_string(),
        metadata: brix_api::ObjectMeta {
            name: a.name_any(),
            namespace: a.namespace(),
            labels: a.labels().clone(),
            annotations: a.annotations().clone(),
        },
        spec: a.spec.clone(),
    }
}

/// One reconcile: the finalizer first, then place, load, verify and report (or, when the
/// object is being deleted, unload everywhere and let it go).
pub async fn reconcile(
    obj: Arc<ModelAdapterResource>,
    ctx: Arc<Context>,
) -> Result<Action, crate::Error> {
    let ns = obj
        .namespace()
        .ok_or_else(|| crate::Error::Spec("a ModelAdapter is namespaced".into()))?;
    let api: Api<ModelAdapterResource> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(a) => apply(&a, &api, &ns, &ctx).await,
            Event::Cleanup(a) => act::cleanup(&a, &ns, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => crate::Error::Kube(e),
        other => crate::Error::Other(other.to_string()),
    })
}

/// Requeue after an error: soon for API errors (a conflict resolves at once), later else.
pub fn error_policy(
    _obj: Arc<ModelAdapterResource>,
    err: &crate::Error,
    _ctx: Arc<Context>,
) -> Action {
    match err {
        crate::Error::Kube(_) => Action::requeue(Duration::from_secs(5)),
        _ => Action::requeue(Duration::from_secs(10)),
    }
}

async fn apply(
    obj: &ModelAdapterResource,
    api: &Api<ModelAdapterResource>,
    ns: &str,
    ctx: &Context,
) -> Result<Action, crate::Error> {
    let now = ctx.now();
    let uid = obj
        .uid()
        .unwrap_or_else(|| format!("{ns}/{}", obj.name_any()));
    let doc = document(obj);
    let key = obj.spec.additional_config.get("api-key").cloned();
    let selector = match pods::selector(&doc) {
        Ok(s) => s,
        Err(why) => {
            let st = status::invalid(obj, &why, now);
            patch_status(api, obj, st).await?;
            return Ok(Action::requeue(ctx.cfg.requeue_ready));
        }
    };
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let listed = pod_api
        .list(&ListParams::default().labels(&selector))
        .await?;
    let ready_for = SignedDuration::try_from(ctx.cfg.ready_for).unwrap_or(SignedDuration::ZERO);
    let pods: Vec<pods::PodInfo> = listed
        .items
        .iter()
        .filter_map(|p| pods::PodInfo::from_pod(p, now, ready_for))
        .collect();

    let mut state = ctx.take_state(&uid);
    if state.generation != obj.metadata.generation {
        state.backoff.clear();
        state.generation = obj.metadata.generation;
    }
    let live: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    state.backoff.retain(|p, _| live.contains(p.as_str()));
    state.draining.retain(|p| live.contains(p.as_str()));

    let mut listings = act::list(ctx, &pods, key.as_deref()).await;
    let name = obj.name_any();
    let previous = state.previous.clone().unwrap_or_else(|| {
        obj.status
            .as_ref()
            .map(|s| s.instances.iter().cloned().collect())
            .unwrap_or_default()
    });
    let snapshot = act::snapshot(&name, obj, &pods, &listings, &state, previous, &ctx.cfg);
    let plan = brix_adapters::plan(&snapshot).map_err(|e| crate::Error::Other(e.to_string()))?;
    let changed = act::execute(ctx, obj, &plan, &pods, &mut state, now).await;
    if !changed.is_empty() {
        // Ready only on what the engine lists: check the pods just changed again.
        let touched: Vec<pods::PodInfo> = pods
            .iter()
            .filter(|p| changed.contains(&p.name))
            .cloned()
            .collect();
        listings.extend(act::list(ctx, &touched, key.as_deref()).await);
    }
    state.previous = Some(plan.placement.get(&name).cloned().unwrap_or_default());
    let st = status::compute(obj, &plan, &pods, &listings, &state, now);
    let ready = st
        .conditions
        .iter()
        .any(|c| c.kind == "Ready" && c.status == "True");
    let draining = !state.draining.is_empty();
    let mut applied = Ok(());
    if ctx.cfg.owned_objects {
        let want = owned::Owned::of(obj, &pods, &st.instances);
        if state.owned.as_ref() != Some(&want) {
            applied = owned::apply(&ctx.client, ns, obj, &want).await;
            state.owned = applied.is_ok().then_some(want);
        }
    }
    ctx.put_state(&uid, Some(state));
    applied?;
    patch_status(api, obj, st).await?;
    Ok(Action::requeue(if ready && !draining {
        ctx.cfg.requeue_ready
    } else {
        ctx.cfg.requeue_pending
    }))
}

/// Writes `st` unless the object already shows it.
async fn patch_status(
    api: &Api<ModelAdapterResource>,
    obj: &ModelAdapterResource,
    st: ModelAdapterStatus,
) -> Result<(), crate::Error> {
    if obj.status.as_ref() == Some(&st) {
        return Ok(());
    }
    let body = status::patch_body(&st)?;
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(body),
    )
    .await?;
    Ok(())
}

/// By pod name: what its engine listed this round, or why it could not.
pub(crate) type Listings = BTreeMap<String, Result<Listing, String>>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn adapter(spec: serde_json::Value) -> ModelAdapterResource {
        serde_json::from_value(json!({
            "apiVersion": "model.aibrix.ai/v1alpha1", "kind": "ModelAdapter",
            "metadata": {"name": "sql", "namespace": "default"}, "spec": spec}))
        .expect("adapter")
    }

    #[test]
    fn a_pod_event_requeues_the_adapters_that_select_it() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let by_selector = adapter(json!({"artifactURL": "/a",
            "podSelector": {"matchLabels": {"app": "x"},
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}));
        assert!(selects(
            &by_selector,
            &labels(&[("app", "x"), ("zone", "a")])
        ));
        assert!(!selects(
            &by_selector,
            &labels(&[("app", "x"), ("zone", "b")])
        ));
        let by_model = adapter(json!({"artifactURL": "/a", "baseModel": "llama"}));
        assert!(selects(
            &by_model,
            &labels(&[(brix_api::MODEL_NAME_LABEL, "llama")])
        ));
        assert!(!selects(
            &by_model,
            &labels(&[(brix_api::MODEL_NAME_LABEL, "qwen")])
        ));
    }
}
