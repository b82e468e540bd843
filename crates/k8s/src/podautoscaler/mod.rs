//! The PodAutoscaler controller: AIBrix's `autoscaling.aibrix.ai/v1alpha1` PodAutoscaler on a
//! cluster, with the same policy code as `brix up` (`brix_autoscaler::Autoscaler`,
//! `Policy::from_document`) and the same metric reader (`brix_platform`'s).
//!
//! One reconcile per decision period (`next_decision_at`, the driver clock is seconds since
//! the controller started): the PodAutoscalers of the namespace (the oldest of several on one
//! target wins, the others set `MultiPodAutoscalerConflict` and do not scale), the target's
//! `/scale` (any kind that has one), its ready pods by the scale's `status.selector`, one
//! reading per metric source (`pod`: `http://<podIP>:<port><path>`; `external`: the
//! endpoint), a decision, a merge patch of `/scale` only when the count changes, and the
//! status (only when it changed). A failed read is missing data: the count holds and
//! `ScalingActive` is False with the reason (AIBrix reads it as zero).
//!
//! State: one `Autoscaler` (the metric windows) per PodAutoscaler UID, rebuilt when
//! `metadata.generation` changes, dropped once the object is gone from the controller's
//! store (checked every [`PRUNE_EVERY`]).

mod clock;
mod metrics;
mod plan;
mod status;
mod target;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brix_api::{PodAutoscalerResource, PodAutoscalerStatus};
use brix_autoscaler::{Autoscaler, FleetState, Schedules};
use brix_platform::autoscale::source::{Feed, HttpClient, http_client};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::core::ApiResource;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

pub use clock::Clock;
pub use metrics::{DEFAULT_METRIC_PORT, METRIC_PORT_LABEL, PORT_LABEL};

use crate::Error;
use crate::rbac::Rule;
use plan::{Planned, conflict_winner, plan, scheduled_bounds};
use status::{ABLE_TO_SCALE, CONFLICT, Next, SCALING_ACTIVE, VALID_SPEC, clamp};
use target::TargetRef;

/// The API calls this component makes. A target kind outside the table (any other CRD with
/// `/scale`) needs its own `get`/`patch` on `<plural>/scale`, granted by the operator.
pub const RULES: &[Rule] = &[
    Rule {
        group: "autoscaling.aibrix.ai",
        resources: &["podautoscalers"],
        verbs: &["get", "list", "watch"],
    },
    Rule {
        group: "autoscaling.aibrix.ai",
        resources: &["podautoscalers/status"],
        verbs: &["patch"],
    },
    Rule {
        group: "apps",
        resources: &[
            "deployments/scale",
            "statefulsets/scale",
            "replicasets/scale",
        ],
        verbs: &["get", "patch"],
    },
    Rule {
        group: "orchestration.aibrix.ai",
        resources: &["rayclusterfleets/scale"],
        verbs: &["get", "patch"],
    },
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["list"],
    },
];

/// How often the state of deleted PodAutoscalers is dropped.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Longest wait after failed reconciles (the backoff doubles from 5 s up to this).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The controller's settings (the manager fills them from flags).
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Most reconciles at once; 0 means no limit.
    pub concurrency: u16,
}

/// What reconciles share: the API client, the clock, the scrape client, and each
/// PodAutoscaler's autoscaler state by UID.
pub struct Context {
    client: Client,
    cfg: Config,
    clock: Clock,
    http: HttpClient,
    states: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Tracked>>>>,
    failures: Mutex<HashMap<String, u32>>,
}

/// One PodAutoscaler's state between reconciles.
struct Tracked {
    generation: Option<i64>,
    scaler: Autoscaler,
    feeds: Vec<Feed>,
    schedules: Schedules,
    /// Whether the spec has schedules (`status.scheduledBounds` is set then).
    scheduled: bool,
    target: TargetRef,
    /// The target's API resource, once resolved.
    resource: Option<ApiResource>,
    /// No API calls before this (a conflict or a missing target waits a period).
    hold_until: f64,
    /// A status computed at a decision and not written yet (the write failed): written at
    /// the next reconcile, so no decision goes unrecorded.
    pending: Option<PodAutoscalerStatus>,
}

impl Tracked {
    /// Writes `status` (when it differs from `current`); kept in `pending` until it is.
    async fn write(
        &mut self,
        pas: &Api<PodAutoscalerResource>,
        name: &str,
        current: Option<&PodAutoscalerStatus>,
        status: PodAutoscalerStatus,
    ) -> Result<(), Error> {
        self.pending = Some(status);
        if let Some(status) = &self.pending {
            status::write(pas, name, current, status).await?;
        }
        self.pending = None;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Context {
    /// A context on the real clock.
    pub fn new(client: Client, cfg: Config) -> Self {
        Self::with_clock(client, cfg, Clock::real())
    }

    /// A context on `clock` (tests pass [`Clock::manual`]).
    pub fn with_clock(client: Client, cfg: Config, clock: Clock) -> Self {
        Self {
            client,
            cfg,
            clock,
            http: http_client(),
            states: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The settings it runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The clock decisions are timed by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// UIDs of the PodAutoscalers with autoscaler state.
    pub fn tracked(&self) -> Vec<String> {
        let mut uids: Vec<String> = lock(&self.states).keys().cloned().collect();
        uids.sort();
        uids
    }

    /// Drops the state of PodAutoscaler `uid` (deleted, or its spec became invalid).
    pub fn forget(&self, uid: &str) {
        lock(&self.states).remove(uid);
        lock(&self.failures).remove(uid);
    }

    /// Drops the state of every PodAutoscaler not in `live` (the controller's store, so a
    /// deleted object's windows go within [`PRUNE_EVERY`]).
    pub fn prune(&self, live: &[Arc<PodAutoscalerResource>]) {
        let uids: HashSet<&str> = live
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        lock(&self.states).retain(|uid, _| uids.contains(uid.as_str()));
        lock(&self.failures).retain(|uid, _| uids.contains(uid.as_str()));
    }

    /// The state for `uid`, built (or rebuilt, when the generation changed) from `planned`.
    fn entry(
        &self,
        uid: &str,
        generation: Option<i64>,
        planned: Planned,
    ) -> Arc<tokio::sync::Mutex<Tracked>> {
        let mut states = lock(&self.states);
        if let Some(t) = states.get(uid)
            && t.try_lock().map_or(true, |t| t.generation == generation)
        {
            return t.clone();
        }
        let schedules = Schedules::new(&planned.schedules, self.clock.epoch_unix_s());
        for name in schedules.unapplied() {
            tracing::warn!(podautoscaler = %planned.policy.name, schedule = %name, "schedule not applied: only UTC schedules are (no time-zone database)");
        }
        let t = Arc::new(tokio::sync::Mutex::new(Tracked {
            generation,
            scaler: Autoscaler::new(planned.policy).with_schedules(schedules.clone()),
            feeds: planned.feeds,
            schedules,
            scheduled: !planned.schedules.is_empty(),
            target: planned.target,
            resource: None,
            hold_until: f64::NEG_INFINITY,
            pending: None,
        }));
        states.insert(uid.to_string(), t.clone());
        t
    }
}

/// One reconcile of `pa`: see the module docs. Tests call it against the mocked API.
pub async fn reconcile(pa: Arc<PodAutoscalerResource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let uid = pa
        .metadata
        .uid
        .clone()
        .ok_or_else(|| Error::Other("a PodAutoscaler without metadata.uid".into()))?;
    let ns = pa.namespace().unwrap_or_else(|| "default".into());
    let name = pa.name_any();
    let pas: Api<PodAutoscalerResource> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();
    let generation = pa.metadata.generation;
    let current = pa.status.as_ref();
    let mut next = Next::from(current, generation, ctx.clock.rfc3339(now));
    let planned = match plan(&pa) {
        Ok(p) => p,
        Err(why) => {
            ctx.forget(&uid);
            next.condition(VALID_SPEC, false, "InvalidSpec", why);
            next.ready();
            status::write(&pas, &name, current, &next.status).await?;
            return Ok(Action::await_change());
        }
    };
    let unapplied: Vec<String> = Schedules::new(&planned.schedules, 0.0).unapplied().to_vec();
    let entry = ctx.entry(&uid, generation, planned);
    let mut t = entry.lock().await;
    let due = t.scaler.next_decision_at().max(t.hold_until);
    if now < due {
        if let Some(status) = t.pending.take() {
            t.write(&pas, &name, current, status).await?;
        }
        return Ok(Action::requeue(Duration::from_secs_f64(due - now)));
    }
    let sync = Duration::from_secs_f64(t.scaler.policy().sync_s);
    let valid = if unapplied.is_empty() {
        "the spec is valid".to_string()
    } else {
        format!(
            "the spec is valid; schedules not applied (only UTC schedules are): {}",
            unapplied.join(", ")
        )
    };
    next.condition(VALID_SPEC, true, "ValidSpec", valid);

    // One autoscaler per target: the oldest wins.
    let all = pas.list(&ListParams::default()).await?;
    if let Some(winner) = conflict_winner(&pa, &t.target, &all.items) {
        let msg = format!(
            "PodAutoscaler '{}' (older) also targets {}; this one does not scale it",
            winner.name_any(),
            t.target.describe()
        );
        next.condition(CONFLICT, true, "MultiplePodAutoscalers", msg);
        next.ready();
        t.hold_until = now + sync.as_secs_f64();
        t.write(&pas, &name, current, next.status).await?;
        ctx.forget_failures(&uid);
        return Ok(Action::requeue(sync));
    }
    next.condition(
        CONFLICT,
        false,
        "NoConflict",
        format!("the only PodAutoscaler of {}", t.target.describe()),
    );

    // The target's scale.
    let resource = match &t.resource {
        Some(r) => r.clone(),
        None => match target::resolve(&ctx.client, &t.target).await? {
            Ok(r) => {
                t.resource = Some(r.clone());
                r
            }
            Err(why) => {
                return unable(
                    &mut t, &mut next, &pas, &name, current, now, sync, why, &ctx, &uid,
                )
                .await;
            }
        },
    };
    let scales = target::api(&ctx.client, &ns, &resource);
    let scale = match scales.get_scale(&t.target.name).await {
        Ok(s) => s,
        Err(e) if target::api_status(&e).is_some_and(|s| s.code == 404) => {
            let why = format!("{} not found in namespace {ns}", t.target.describe());
            return unable(
                &mut t, &mut next, &pas, &name, current, now, sync, why, &ctx, &uid,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    let spec_replicas = scale.spec.as_ref().and_then(|s| s.replicas);
    let (status_replicas, selector) = scale
        .status
        .as_ref()
        .map_or((0, None), |s| (s.replicas, s.selector.clone()));
    let desired_now = u32::try_from(spec_replicas.unwrap_or(status_replicas)).unwrap_or(0);
    let actual = u32::try_from(status_replicas).unwrap_or(0);

    // Its ready pods, and one reading per source.
    let mut failures = Vec::new();
    let ready: Vec<String> = match selector.as_deref().filter(|s| !s.is_empty()) {
        Some(sel) => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let list = pods.list(&ListParams::default().labels(sel)).await?;
            list.items
                .iter()
                .filter(|p| metrics::is_ready(p))
                .filter_map(metrics::address)
                .collect()
        }
        None => {
            failures.push(format!(
                "the scale of {} has no status.selector: no pods to read",
                t.target.describe()
            ));
            Vec::new()
        }
    };
    let tracked = &mut *t;
    failures
        .extend(metrics::read(&mut tracked.scaler, &tracked.feeds, &ctx.http, &ready, now).await);

    // The decision.
    let ready_n = u32::try_from(ready.len()).unwrap_or(u32::MAX);
    let fleet = FleetState {
        desired: desired_now,
        ready: ready_n,
        starting: actual.min(desired_now).saturating_sub(ready_n),
        held: 0,
    };
    let d = t.scaler.decide(&fleet, now);
    let reason = d.reason();
    let held_for = d.limits.iter().find_map(|l| match l {
        brix_autoscaler::Limit::MissingMetrics(why) => Some(why.clone()),
        _ => None,
    });
    match held_for {
        Some(why) => {
            let mut msg = format!("holding at {desired_now}: metrics missing ({why})");
            if !failures.is_empty() {
                msg.push_str(&format!("; {}", failures.join("; ")));
            }
            next.condition(SCALING_ACTIVE, false, "FailedGetMetrics", msg);
        }
        None if failures.is_empty() => next.condition(
            SCALING_ACTIVE,
            true,
            "ValidMetricFound",
            "every metric source was read".into(),
        ),
        None => next.condition(
            SCALING_ACTIVE,
            true,
            "ValidMetricFound",
            format!(
                "scaling on the samples in the window; failed now: {}",
                failures.join("; ")
            ),
        ),
    }
    next.status.desired_scale = clamp(d.desired);
    next.status.actual_scale = clamp(actual);
    next.status.scheduled_bounds = scheduled_bounds(&t, now);
    let mut result = Ok(());
    if d.desired != desired_now {
        match target::set_replicas(&scales, &t.target.name, d.desired).await {
            Ok(()) => {
                tracing::info!(podautoscaler = %name, namespace = %ns, from = desired_now, to = d.desired, %reason, "scaling");
                next.record(desired_now, d.desired, reason, None);
                next.condition(
                    ABLE_TO_SCALE,
                    true,
                    "SucceededRescale",
                    format!("set {} to {} replicas", t.target.describe(), d.desired),
                );
            }
            Err(e) => {
                tracing::warn!(podautoscaler = %name, namespace = %ns, error = %e, "scaling failed");
                next.record(desired_now, d.desired, reason, Some(e.to_string()));
                next.condition(
                    ABLE_TO_SCALE,
                    false,
                    "FailedUpdateScale",
                    format!(
                        "could not set {} to {} replicas: {e}",
                        t.target.describe(),
                        d.desired
                    ),
                );
                result = Err(Error::Kube(e));
            }
        }
    } else {
        next.condition(
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            format!("read the scale of {}", t.target.describe()),
        );
    }
    next.ready();
    t.write(&pas, &name, current, next.status).await?;
    result?;
    ctx.forget_failures(&uid);
    Ok(Action::requeue(sync))
}

/// The target cannot be scaled (no such kind, no such object): `AbleToScale=False`, wait a
/// period.
#[allow(clippy::too_many_arguments)]
async fn unable(
    t: &mut Tracked,
    next: &mut Next,
    pas: &Api<PodAutoscalerResource>,
    name: &str,
    current: Option<&PodAutoscalerStatus>,
    now: f64,
    sync: Duration,
    why: String,
    ctx: &Context,
    uid: &str,
) -> Result<Action, Error> {
    next.condition(ABLE_TO_SCALE, false, "FailedGetScale", why);
    next.ready();
    t.hold_until = now + sync.as_secs_f64();
    t.write(pas, name, current, std::mem::take(&mut next.status))
        .await?;
    ctx.forget_failures(uid);
    Ok(Action::requeue(sync))
}

impl Context {
    fn forget_failures(&self, uid: &str) {
        lock(&self.failures).remove(uid);
    }
}

/// After a failed reconcile: retry after 5 s, doubling per consecutive failure, at most
/// 5 minutes.
pub fn error_policy(pa: Arc<PodAutoscalerResource>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = pa.metadata.uid.clone().unwrap_or_default();
    let n = {
        let mut failures = lock(&ctx.failures);
        let n = failures.entry(uid).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let wait = Duration::from_secs(5)
        .saturating_mul(1u32 << (n - 1).min(10))
        .min(MAX_BACKOFF);
    tracing::warn!(podautoscaler = %pa.name_any(), %error, retry_s = wait.as_secs(), "reconcile failed");
    Action::requeue(wait)
}

/// Runs the controller over `scope` until the process ends.
pub async fn run(client: Client, scope: crate::Scope, cfg: Config) -> Result<(), Error> {
    let api: Api<PodAutoscalerResource> = match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let concurrency = cfg.concurrency;
    let ctx = Arc::new(Context::new(client, cfg));
    let controller = Controller::new(api, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(concurrency));
    let store = controller.store();
    let pruning = ctx.clone();
    let pruner = tokio::spawn(async move {
        if store.wait_until_ready().await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tick.tick().await;
            pruning.prune(&store.state());
        }
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "podautoscaler controller");
            }
        })
        .await;
    pruner.abort();
    Ok(())
}
