//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! (which controller-runtime uses) does it, so several controller replicas run one active
//! manager.
//!
//! A candidate reads the Lease every `retry_period`. It takes it when it is absent (create) or
//! expired (`renewTime + leaseDurationSeconds` in the past, or no holder): an update carrying
//! the `resourceVersion` it read, so of two candidates racing, the API server lets one win
//! and answers the other 409. The leader renews every `retry_period`; a renewal refused with
//! 409, or one that has not succeeded for `renew_deadline`, means the lease is lost, and the
//! leader steps down before another replica can take it (`renew_deadline` <
//! `lease_duration`). On shutdown the leader releases the lease (no holder, one-second
//! duration) so a standby takes over at once.
//!
//! Written here rather than taken from `kube-lease-manager` 0.13 (which does depend on
//! kube 5): that crate is 2,700 lines with its own backoff and a `rand` dependency, and it
//! writes the Lease with PATCH (strategic merge and server-side apply), where this needs only
//! get, create and update with optimistic concurrency — the verbs the chart grants.
//!
//! Expiry is judged on the Lease's `renewTime` against this machine's clock, so clocks skewed
//! by more than a few seconds across replicas shorten or lengthen a dead leader's term by that
//! much.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

use crate::Error;
use crate::rbac::Rule;

/// The API calls leader election makes: get, create and update its Lease.
pub const RULES: &[Rule] = &[Rule {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["create", "get", "update"],
}];

/// Which Lease, who we are, and the timings (controller-runtime's defaults from [`Self::new`]).
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This replica's identity (the pod's name), written as `holderIdentity`.
    pub identity: String,
    /// How long a lease stays valid after its last renewal (15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down (10 s).
    pub renew_deadline: Duration,
    /// Time between attempts, for candidates and for the leader's renewals (2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A config with controller-runtime's timings: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The Lease as last written by us, while we hold it.
    held: Option<Lease>,
}

impl LeaderElector {
    /// An elector for `cfg`'s Lease; nothing is called until [`Self::try_acquire_or_renew`] or
    /// [`Self::run`].
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            held: None,
        }
    }

    /// One attempt: reads the Lease and takes or renews it when it is ours to take. `Ok(true)`
    /// when we hold it now; `Ok(false)` when another replica does (or won the race).
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(current) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.cfg.identity.as_str());
        if !mine && holder.is_some() && !expired(&spec, now) {
            self.held = None;
            return Ok(false);
        }
        let mut next = current;
        let mut s = spec.clone();
        s.holder_identity = Some(self.cfg.identity.clone());
        s.lease_duration_seconds = Some(secs);
        s.renew_time = Some(MicroTime(now));
        if !mine {
            s.acquire_time = Some(MicroTime(now));
            s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        next.spec = Some(s);
        let name = self.cfg.name.clone();
        self.write(self.api.replace(&name, &PostParams::default(), &next).await)
    }

    /// The outcome of a create or update: ours, lost to a concurrent writer, or an error.
    fn write(&mut self, result: Result<Lease, kube::Error>) -> Result<bool, Error> {
        match result {
            Ok(lease) => {
                self.held = Some(lease);
                Ok(true)
            }
            // 409: Conflict (an update lost) or AlreadyExists (a create lost).
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.held = None;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up, when we hold it: no holder, a one-second duration, so a standby
    /// takes it at its next attempt. A lease changed since our last write is left alone.
    pub async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.held.take() else {
            return Ok(());
        };
        if let Some(s) = lease.spec.as_mut() {
            s.holder_identity = None;
            s.lease_duration_seconds = Some(1);
            s.renew_time = Some(MicroTime(Timestamp::now()));
        }
        let name = self.cfg.name.clone();
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Campaigns and renews until `shutdown` resolves, publishing on `leading` whether this
    /// replica leads now; releases the lease on shutdown. Every API call is bounded by the
    /// renew deadline.
    pub async fn run(mut self, leading: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failing = false;
        // When we last held the lease for sure (None: we do not lead).
        let mut renewed: Option<tokio::time::Instant> = None;
        loop {
            let attempt =
                tokio::time::timeout(self.cfg.renew_deadline, self.try_acquire_or_renew());
            let outcome = tokio::select! {
                () = &mut shutdown => break,
                r = attempt => r.unwrap_or_else(|_| Err(Error::Other("lease call timed out".into()))),
            };
            match outcome {
                Ok(true) => {
                    if renewed.is_none() {
                        tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became the leader");
                        leading.send_replace(true);
                    }
                    renewed = Some(tokio::time::Instant::now());
                }
                Ok(false) => {
                    if renewed.take().is_some() {
                        tracing::warn!(lease = %self.cfg.name, "lost the lease to another replica; stepping down");
                        leading.send_replace(false);
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(lease = %self.cfg.name, error = %e, "leader election: lease call failed; retrying");
                    }
                    if renewed.is_some_and(|t| t.elapsed() >= self.cfg.renew_deadline) {
                        tracing::warn!(lease = %self.cfg.name, "could not renew the lease within the deadline; stepping down");
                        renewed = None;
                        self.held = None;
                        leading.send_replace(false);
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(self.cfg.retry_period) => {}
                    }
                    continue;
                }
            }
            if std::mem::take(&mut failing) {
                tracing::info!(lease = %self.cfg.name, "leader election: lease calls answer again");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.cfg.retry_period) => {}
            }
        }
        leading.send_replace(false);
        if renewed.is_some() {
            let release = tokio::time::timeout(self.cfg.renew_deadline, self.release());
            match release.await {
                Ok(Ok(())) => tracing::info!(lease = %self.cfg.name, "released the lease"),
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.cfg.name, error = %e, "releasing the lease")
                }
                Err(_) => tracing::warn!(lease = %self.cfg.name, "releasing the lease timed out"),
            }
        }
    }
}

/// Whether the lease's holder has let it lapse at `now`.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(MicroTime(renewed)) = spec.renew_time else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    renewed
        .checked_add(SignedDuration::from_secs(secs))
        .map_or(true, |until| until < now)
}
