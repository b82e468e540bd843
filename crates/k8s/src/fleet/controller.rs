//! The RayClusterFleet reconciler: reads the fleet's RayClusters, asks [`super::plan`] what to
//! do, does it, and writes the status through the status subresource when it changed.
//!
//! Level-triggered: each step starts from a fresh list (by the fleet's selector, kept to the
//! RayClusters whose controller reference is this fleet), so a restart loses nothing. A step on
//! an unchanged world makes one list call and no write. Under failure: a delete answered 404
//! (already gone) counts as done; 409 (the name now belongs to another object, the uid
//! precondition failed) leaves it to the next step; any other error stops the step, the status
//! written first counts only what was really done, and the error policy retries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::kuberay::RayCluster;
use super::plan::{self, Observed};
use super::types::RayClusterFleet;
use super::{FLEET_NAME_LABEL, TEMPLATE_HASH_LABEL, selector_string};
use crate::{Error, Scope};

/// How the controller runs (the manager fills it from flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Look at every fleet again after this long even without an event.
    pub resync: Duration,
    /// Retry a failed step after this long.
    pub retry: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            retry: Duration::from_secs(15),
        }
    }
}

/// The time source; tests inject a fixed one so availability after `minReadySeconds` does not
/// depend on the wall clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Timestamp::now))
    }
    /// A clock answering `f()`.
    pub fn new(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
    /// The time now.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// What each reconcile step shares.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Resync and retry periods.
    pub config: Config,
    /// The time source.
    pub clock: Clock,
}

impl Context {
    /// A context on the system clock.
    pub fn new(client: Client, config: Config) -> Self {
        Self {
            client,
            config,
            clock: Clock::system(),
        }
    }
}

/// Runs the controller (fleets, and the RayClusters they own) until the process ends.
pub async fn run(client: Client, scope: Scope, cfg: Config) -> Result<(), Error> {
    let (fleets, clusters) = match &scope.namespace {
        Some(ns) => (
            Api::<RayClusterFleet>::namespaced(client.clone(), ns),
            Api::<RayCluster>::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let ctx = Arc::new(Context::new(client, cfg));
    Controller::new(fleets, watcher::Config::default())
        .owns(clusters, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::warn!(error = %e, "rayclusterfleet reconcile failed");
            }
        })
        .await;
    Ok(())
}

/// Retries a failed step after `config.retry`; an invalid spec waits for the next change
/// (retrying cannot fix it).
pub fn error_policy(fleet: Arc<RayClusterFleet>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(fleet = %fleet.name_any(), error = %error, "rayclusterfleet step failed");
    match error {
        Error::Spec(_) => Action::await_change(),
        _ => Action::requeue(ctx.config.retry),
    }
}

/// One step for one fleet: list, plan, create, delete, status.
pub async fn reconcile(fleet: Arc<RayClusterFleet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if fleet.metadata.deletion_timestamp.is_some() {
        // Garbage collection deletes the RayClusters through their owner references.
        return Ok(Action::await_change());
    }
    let name = fleet.name_any();
    let ns = fleet
        .namespace()
        .ok_or_else(|| Error::Spec(format!("RayClusterFleet {name} has no namespace")))?;
    let uid = fleet
        .uid()
        .ok_or_else(|| Error::Other(format!("RayClusterFleet {name} has no uid")))?;
    plan::validate(&fleet).map_err(Error::Spec)?;
    let clusters: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = selector_string(&fleet.spec.selector);
    let listed = clusters
        .list(&ListParams::default().labels(&selector))
        .await?;
    let owned: Vec<RayCluster> = listed
        .items
        .into_iter()
        .filter(|c| controlled_by(c, &uid))
        .collect();
    let observed: Vec<Observed> = owned.iter().map(Observed::from_cluster).collect();
    let now = ctx.clock.now();
    let plan = plan::plan(&fleet, &observed, now).map_err(Error::Spec)?;

    let mut done = Outcome {
        after: observed,
        acted: false,
        again: false,
        failure: None,
    };
    done.delete(&clusters, &owned, &plan.delete).await;
    if done.failure.is_none() {
        let body = new_cluster(&fleet, &plan.hash, &uid);
        done.create(&clusters, &body, plan.create).await;
    }
    let Outcome {
        after,
        acted,
        again,
        failure,
    } = done;
    let all_done = failure.is_none() && !again;
    let status = if all_done {
        plan.status.clone()
    } else {
        plan::status(&fleet, &after, acted, now).map_err(Error::Spec)?
    };
    if fleet.status.as_ref() != Some(&status) {
        let fleets: Api<RayClusterFleet> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = Patch::Merge(json!({ "status": status }));
        fleets
            .patch_status(&name, &PatchParams::default(), &patch)
            .await?;
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    if again {
        return Ok(Action::requeue(ctx.config.retry));
    }
    let wait = plan
        .requeue_after
        .map_or(ctx.config.resync, |d| d.min(ctx.config.resync));
    Ok(Action::requeue(wait))
}

/// What a step's writes did: the RayClusters now there, whether anything changed, whether to
/// retry soon (a 409), and the error that stopped it.
struct Outcome {
    after: Vec<Observed>,
    acted: bool,
    again: bool,
    failure: Option<kube::Error>,
}

impl Outcome {
    /// Deletes `victims` (each with its uid as precondition, so a new object that took the name
    /// is never hit); 404 counts as gone, 409 as "look again".
    async fn delete(&mut self, api: &Api<RayCluster>, owned: &[RayCluster], victims: &[String]) {
        for victim in victims {
            let Some(c) = owned
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(victim))
            else {
                continue;
            };
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: c.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(victim, &dp).await {
                Ok(_) => {
                    self.acted = true;
                    self.after.retain(|o| &o.name != victim);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.after.retain(|o| &o.name != victim)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => self.again = true,
                Err(e) => {
                    self.failure = Some(e);
                    return;
                }
            }
        }
    }

    /// Creates `count` RayClusters from `body`, stopping at the first refusal.
    async fn create(&mut self, api: &Api<RayCluster>, body: &RayCluster, count: usize) {
        for _ in 0..count {
            match api.create(&PostParams::default(), body).await {
                Ok(made) => {
                    self.acted = true;
                    self.after.push(Observed::from_cluster(&made));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    self.again = true;
                    return;
                }
                Err(e) => {
                    self.failure = Some(e);
                    return;
                }
            }
        }
    }
}

/// Whether `fleet_uid` is the RayCluster's controller (owner reference with `controller: true`).
fn controlled_by(cluster: &RayCluster, fleet_uid: &str) -> bool {
    cluster
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == fleet_uid)
}

/// A RayCluster of the fleet's current template: the template's labels and annotations plus
/// the fleet-name and template-hash labels, owned by the fleet (controller, blocking deletion
/// of the owner in foreground until it is gone), named `<fleet>-<hash>-<random>` by the API
/// server.
pub fn new_cluster(fleet: &RayClusterFleet, hash: &str, fleet_uid: &str) -> RayCluster {
    let name = fleet.name_any();
    let template = &fleet.spec.template;
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    labels.insert(FLEET_NAME_LABEL.into(), name.clone());
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    let owner = OwnerReference {
        api_version: RayClusterFleet::api_version(&()).into_owned(),
        kind: RayClusterFleet::kind(&()).into_owned(),
        name: name.clone(),
        uid: fleet_uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut cluster = RayCluster::new("", template.spec.clone());
    cluster.metadata = ObjectMeta {
        generate_name: Some(format!("{name}-{hash}-")),
        namespace: fleet.namespace(),
        labels: Some(labels),
        annotations: tmeta.annotations,
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    cluster
}
