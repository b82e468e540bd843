//! The live autoscaler driver: one task per PodAutoscaler of the fleet file. It measures,
//! asks [`brix_autoscaler::Autoscaler::decide`], and applies the answer through the
//! [`Platform`] trait; every rule is the policy crate's (the virtual-time simulator drives the
//! same code), none is here.
//!
//! Every second: the target's replicas from the platform (a replica newly ready reports its
//! start-up time, fed to `observe_startup`), one reading per metric source ([`source`]), and
//! the gateway's per-model load (`observe_load`). Every `sync_s` (or at once when the
//! gateway's activator holds a request for a model at zero): a decision over [`FleetState`]
//! (`desired` as last set, `ready`, `starting`, `held`); a changed count is applied with
//! [`Platform::scale`], which drains what it removes and never removes a starting replica.

pub mod source;
mod status;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use brix_api::{EngineSpec, ModelSpec, Resource, Schedule};
use brix_autoscaler::{Autoscaler, FleetState, Policy, PolicyError, ReplicaProfile, Schedules};
use brix_gateway::{Activation, GatewayHandle};
use tokio::task::JoinSet;

pub use status::{AutoscalerStatus, DecisionStatus};

use crate::fleet::{FleetError, FleetFile};
use crate::platform::{Platform, ReplicaState};
use crate::runner::sim_config;
use source::{Feed, HttpClient};
use status::Series;

/// Seconds between readings.
const TICK: Duration = Duration::from_secs(1);
/// Decisions `brix status` shows per autoscaler.
const SHOWN: usize = 10;

/// One PodAutoscaler of a fleet file, resolved: its policy and how to read its sources.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The policy (strategy, bounds, sources, knobs, decision period).
    pub policy: Policy,
    feeds: Vec<Feed>,
    /// `spec.schedules` (applied in UTC by the policy).
    schedules: Vec<Schedule>,
    /// The model's replica count in the file (the count before any decision).
    initial: u32,
    /// Whether the gateway holds requests for the model while it has no replica.
    activation: bool,
    /// The name clients send for the target (its served name; the target is one deployment
    /// of it when they differ): what activation holds requests for.
    served: String,
}

/// Resolves every PodAutoscaler of `file` into a policy; a document this fleet cannot run is
/// refused with the field named (an SLO policy over an engine command, whose capacity Brix
/// does not know; an https source; a bad Brix annotation).
pub fn plan(file: &FleetFile, name: &str) -> Result<Vec<Planned>, FleetError> {
    let mut out = Vec::new();
    for (i, r) in file.resources.iter().enumerate() {
        let Resource::PodAutoscaler(doc) = r else {
            continue;
        };
        let fail = |why: String| FleetError::Autoscaler {
            path: name.to_string(),
            why: format!("resources[{i}]{why}"),
        };
        let target = &doc.spec.scale_target_ref.name;
        let model = file
            .models
            .iter()
            .find(|m| &m.name == target)
            .ok_or_else(|| {
                fail(format!(
                    ".spec.scaleTargetRef.name: no model '{target}' in the file"
                ))
            })?;
        let policy = Policy::from_document(doc, replica_profile(model)).map_err(|e| match e {
            PolicyError::NoProfile => fail(format!(
                ".spec.scalingStrategy: SLO needs what one replica serves, and model '{target}' runs an engine command whose capacity Brix does not know; use a sim engine or another strategy"
            )),
            other => fail(format!(" (PodAutoscaler '{}'): {other}", doc.metadata.name)),
        })?;
        let feeds = doc
            .spec
            .metrics_sources
            .iter()
            .enumerate()
            .map(|(j, s)| Feed::of(s, &format!("spec.metricsSources[{j}]")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| fail(format!(".{why}")))?;
        if model.is_deployment()
            && let Some(j) = feeds.iter().position(|f| matches!(f, Feed::Gateway))
        {
            return Err(fail(format!(
                ".spec.metricsSources[{j}]: '{target}' is one deployment of '{}', and the gateway counts requests per served model, not per deployment; use a pod source, or an external one with an endpoint (the optimizer's /metrics/default/{target})",
                model.served_name()
            )));
        }
        out.push(Planned {
            served: model.served_name().to_string(),
            activation: policy.min_replicas == 0 || model.replicas == 0,
            initial: model.replicas,
            schedules: doc.spec.schedules.clone(),
            policy,
            feeds,
        });
    }
    Ok(out)
}

/// What one replica of `model` serves, for sim engines (from the model and GPU profiles and
/// the engine's limits); `None` for engine commands.
pub fn replica_profile(model: &ModelSpec) -> Option<ReplicaProfile> {
    let EngineSpec::Sim(sim) = &model.engine else {
        return None;
    };
    let cfg = sim_config(&model.name, sim).ok()?;
    // A live sim replica's start-up is its unready window: `startup_delay_s`, else its
    // cold-start model (`observe_startup` then feeds what the platform measures).
    ReplicaProfile::from_engine(&cfg.model, &cfg.gpu, &cfg.engine, sim.startup_s(&cfg.model)).ok()
}

/// The running autoscalers: their status, and their tasks (stopped on drop of the last
/// clone's [`Autoscalers::stop`]).
#[derive(Clone, Default)]
pub struct Autoscalers {
    entries: Vec<Arc<Entry>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

struct Entry {
    status: Mutex<AutoscalerStatus>,
}

impl Entry {
    fn status(&self) -> MutexGuard<'_, AutoscalerStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Autoscalers {
    /// Starts one driver task per planned autoscaler on the current runtime, declares the
    /// models that may scale from zero to the gateway's activator, and adds the
    /// autoscalers' series to the gateway's `/metrics`.
    pub fn start<P: Platform + Clone>(
        planned: Vec<Planned>,
        platform: P,
        gateway: GatewayHandle,
    ) -> Result<Self, prometheus::Error> {
        let series = Series::new()?;
        for c in series.collectors() {
            gateway.register_metrics(c)?;
        }
        let client: HttpClient = source::http_client();
        let epoch = Instant::now();
        // Schedules are daily windows: the policy needs the Unix time of the clock's zero.
        let epoch_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut tasks = JoinSet::new();
        let mut entries = Vec::new();
        for p in planned {
            let policy = &p.policy;
            let entry = Arc::new(Entry {
                status: Mutex::new(AutoscalerStatus {
                    name: policy.name.clone(),
                    model: policy.target.clone(),
                    strategy: policy.strategy.as_str().to_string(),
                    targets: policy
                        .sources
                        .iter()
                        .map(|s| format!("{}={}", s.metric, s.target))
                        .collect(),
                    min_replicas: policy.min_replicas,
                    max_replicas: policy.max_replicas,
                    sync_s: policy.sync_s,
                    desired: p.initial,
                    current: 0,
                    ready: 0,
                    starting: 0,
                    held: 0,
                    panic: false,
                    scale_events: 0,
                    last_error: None,
                    decisions: Vec::new(),
                }),
            });
            let schedules = Schedules::new(&p.schedules, epoch_unix_s);
            for name in schedules.unapplied() {
                tracing::warn!(autoscaler = %policy.name, schedule = %name, "schedule not applied: only UTC schedules are (no time-zone database)");
            }
            let activation = p.activation.then(|| gateway.enable_activation(&p.served));
            let driver = Driver {
                entry: entry.clone(),
                model: policy.target.clone(),
                labels: [policy.name.clone(), policy.target.clone()],
                desired: p.initial,
                scaler: Autoscaler::new(p.policy).with_schedules(schedules),
                feeds: p.feeds,
                platform: platform.clone(),
                gateway: gateway.clone(),
                activation,
                client: client.clone(),
                series: series.clone(),
                epoch,
            };
            tasks.spawn(driver.run());
            entries.push(entry);
        }
        Ok(Self {
            entries,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// Every autoscaler now, in file order.
    pub fn status(&self) -> Vec<AutoscalerStatus> {
        self.entries.iter().map(|e| e.status().clone()).collect()
    }

    /// Stops every driver (no more decisions; the replicas stay as they are).
    pub fn stop(&self) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

/// One autoscaler's loop and what it owns.
struct Driver<P> {
    entry: Arc<Entry>,
    model: String,
    labels: [String; 2],
    desired: u32,
    scaler: Autoscaler,
    feeds: Vec<Feed>,
    platform: P,
    gateway: GatewayHandle,
    activation: Option<Activation>,
    client: HttpClient,
    series: Series,
    epoch: Instant,
}

impl<P: Platform> Driver<P> {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: HashSet<String> = HashSet::new();
        let mut next_decision = 0.0;
        let names = self.labels.clone();
        let labels = [names[0].as_str(), names[1].as_str()];
        self.series
            .desired
            .with_label_values(&labels)
            .set(i64::from(self.desired));
        loop {
            let poked = tokio::select! {
                _ = tick.tick() => false,
                () = requested(self.activation.as_ref()) => true,
            };
            let now = self.epoch.elapsed().as_secs_f64();
            let replicas = match self.platform.replicas(&self.model).await {
                Ok(r) => r,
                Err(e) => {
                    self.entry.status().last_error = Some(e.to_string());
                    continue;
                }
            };
            for r in &replicas {
                if let Some(ms) = r.startup_ms
                    && seen.insert(r.id.clone())
                {
                    self.scaler.observe_startup(ms as f64 / 1000.0);
                }
            }
            seen.retain(|id| replicas.iter().any(|r| &r.id == id));
            let count = |s: ReplicaState| replicas.iter().filter(|r| r.state == s).count() as u32;
            let (ready, starting) = (count(ReplicaState::Ready), count(ReplicaState::Starting));
            let current = replicas
                .iter()
                .filter(|r| r.state != ReplicaState::Draining)
                .count() as u32;
            let held = self.activation.as_ref().map_or(0, Activation::held);
            // Held requests for a model at zero: decide at once, before reading anything.
            // The doorbell rings per held request; once replicas are asked for, the
            // regular ticks carry on.
            let activate = poked && held > 0 && self.desired == 0;
            if poked && !activate {
                continue;
            }
            if !activate {
                self.read(&replicas, now).await;
            }
            self.series
                .current
                .with_label_values(&labels)
                .set(i64::from(current));
            {
                let mut st = self.entry.status();
                (st.current, st.ready, st.starting, st.held) = (current, ready, starting, held);
            }
            // Half a tick of slack: a decision due at the tick is not put off by a jitter.
            if now + TICK.as_secs_f64() / 2.0 < next_decision && !activate {
                continue;
            }
            next_decision = now + self.scaler.policy().sync_s;
            let fleet = FleetState {
                desired: self.desired,
                ready,
                starting,
                held,
            };
            // Someone else set the count (`brix scale`): the autoscaler owns it, as an HPA
            // owns its Deployment's, so the next decision sets it again.
            let drifted = starting == 0 && current != self.desired;
            self.decide(&fleet, now, &labels, drifted).await;
        }
    }

    /// One reading per source, and the gateway's load.
    async fn read(&mut self, replicas: &[crate::platform::Replica], now: f64) {
        let ready: Vec<String> = replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Ready)
            .map(|r| r.address.clone())
            .collect();
        let mut failure = None;
        for (i, feed) in self.feeds.iter().enumerate() {
            if let Some(reading) = feed.read(&self.client, &ready).await {
                if let brix_autoscaler::Reading::Failed(why) = &reading {
                    tracing::debug!(autoscaler = %self.labels[0], source = i, why, "metric source failed");
                    failure = Some(why.clone());
                }
                self.scaler.observe(i, reading, now);
            }
        }
        self.scaler
            .observe_load(&self.gateway.load(&self.model), now);
        self.entry.status().last_error = failure;
    }

    async fn decide(&mut self, fleet: &FleetState, now: f64, labels: &[&str; 2], drifted: bool) {
        let d = self.scaler.decide(fleet, now);
        self.series.decisions.with_label_values(labels).inc();
        self.series
            .panic
            .with_label_values(labels)
            .set(i64::from(d.panic));
        let reason = d.reason();
        let changed = d.desired != self.desired;
        if changed || drifted {
            match self.platform.scale(&self.model, d.desired).await {
                Ok(()) if changed => {
                    tracing::info!(autoscaler = %labels[0], model = %self.model, from = self.desired, to = d.desired, reason, "scaling");
                    self.desired = d.desired;
                    self.series.scale_events.with_label_values(labels).inc();
                    self.series
                        .desired
                        .with_label_values(labels)
                        .set(i64::from(self.desired));
                    self.entry.status().scale_events += 1;
                }
                Ok(()) => {
                    tracing::info!(autoscaler = %labels[0], model = %self.model, to = d.desired, "count set elsewhere; restored");
                }
                Err(e) => {
                    tracing::warn!(autoscaler = %labels[0], error = %e, "scaling failed");
                    self.entry.status().last_error = Some(e.to_string());
                }
            }
        } else {
            tracing::debug!(autoscaler = %labels[0], reason, "decision");
        }
        let mut st = self.entry.status();
        st.desired = self.desired;
        st.panic = d.panic;
        st.decisions.push(DecisionStatus {
            at_s: d.at,
            current: d.current,
            desired: d.desired,
            reason,
        });
        let extra = st.decisions.len().saturating_sub(SHOWN);
        st.decisions.drain(..extra);
    }
}

/// Resolves when the activator held a request for the model; never without an activator.
async fn requested(activation: Option<&Activation>) {
    match activation {
        Some(a) => a.requested().await,
        None => std::future::pending().await,
    }
}
